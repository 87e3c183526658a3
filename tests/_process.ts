/**
 * Child processes in tests: a `deno` command's output, a child's stderr.
 *
 * @module
 */

/** Runs `deno` with `args` to its end: its exit code and output as text. */
export async function runDeno(
  args: string[],
  options: { cwd?: string; env?: Record<string, string> } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const output = await new Deno.Command(Deno.execPath(), {
    args,
    cwd: options.cwd,
    env: options.env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}

/** The last `limit` characters a child wrote to its piped stderr, once it closes it. */
export async function stderrTail(child: Deno.ChildProcess, limit: number): Promise<string> {
  let text = "";
  for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) {
    text = (text + chunk).slice(-limit);
  }
  return text;
}
