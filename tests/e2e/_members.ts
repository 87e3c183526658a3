/**
 * Real `sluice run` processes for the cluster tests and benchmark: each one
 * a member of a group running the same configs, with its JSON log lines
 * collected as they come.
 *
 * @module
 */
const CLI = new URL("../../cli/main.ts", import.meta.url).pathname;
const ROOT = new URL("../..", import.meta.url).pathname;

/** One log line of a member. */
export interface LogLine {
  readonly level: string;
  readonly message: string;
  /** When the test read it (ms since the epoch). */
  readonly at: number;
}

/** A running `sluice run` process. */
export interface Member {
  readonly id: string;
  readonly child: Deno.ChildProcess;
  readonly lines: LogLine[];
  /** Resolves with the exit status once the process ended and its output was read. */
  readonly done: Promise<Deno.CommandStatus>;
}

/** Starts `sluice run <config>` as worker `id`, with its own offsets file in `dir`. */
export function startMember(
  id: string,
  config: string,
  dir: string,
  extra: readonly string[] = [],
): Member {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      CLI,
      "run",
      config,
      "--worker-id",
      id,
      "--offsets",
      `${dir}/${id}.offsets.json`,
      "--log-format",
      "json",
      "--listen",
      "off",
      ...extra,
    ],
    cwd: ROOT,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const lines: LogLine[] = [];
  const read = (async () => {
    let rest = "";
    for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) {
      const parts = (rest + chunk).split("\n");
      rest = parts.pop()!;
      for (const line of parts) {
        try {
          const entry = JSON.parse(line);
          lines.push({ level: entry.level, message: String(entry.message), at: Date.now() });
        } catch {
          lines.push({ level: "RAW", message: line, at: Date.now() });
        }
      }
    }
  })();
  const done = Promise.all([child.status, read]).then(([status]) => status);
  return { id, child, lines, done };
}

/** Kills a member with SIGKILL (no shutdown at all) and waits for it to be gone. */
export async function killMember(member: Member): Promise<void> {
  try {
    member.child.kill("SIGKILL");
  } catch {
    // already gone
  }
  await member.done;
}

/** Stops a member with SIGTERM; SIGKILL after `ms`. Returns its exit code. */
export async function stopMember(member: Member, ms = 30_000): Promise<number | undefined> {
  try {
    member.child.kill("SIGTERM");
  } catch {
    // already gone
  }
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<"late">((resolve) => timer = setTimeout(() => resolve("late"), ms));
  const result = await Promise.race([member.done, late]);
  clearTimeout(timer);
  if (result === "late") {
    await killMember(member);
    return undefined;
  }
  return result.code;
}

/** The lines of `member` matching `pattern`, optionally only those read after `since`. */
export function logged(member: Member, pattern: RegExp, since = 0): LogLine[] {
  return member.lines.filter((line) => line.at >= since && pattern.test(line.message));
}

/** The whole log of the members, for assertion messages. */
export function logsOf(members: readonly Member[], last = 40): string {
  return members.map((member) =>
    `--- ${member.id}\n${
      member.lines.slice(-last).map((line) => `${line.level} ${line.message}`).join("\n")
    }`
  ).join("\n");
}
