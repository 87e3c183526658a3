/**
 * Log lines of Sluice's loggers during a test, and of child processes, as text.
 *
 * @module
 */
import { configure, type LogRecord, reset } from "@logtape/logtape";

/** Captures the `sluice` loggers' lines (debug and up) until disposed. */
export async function capturingLogs(): Promise<{ lines: string[] } & AsyncDisposable> {
  const lines: string[] = [];
  await configure({
    reset: true,
    sinks: {
      memory: (record: LogRecord) =>
        lines.push(record.message.map((part) => String(part)).join("")),
    },
    loggers: [
      { category: ["sluice"], lowestLevel: "debug", sinks: ["memory"] },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: [] },
    ],
  });
  return { lines, [Symbol.asyncDispose]: () => reset() };
}

/** The last `limit` characters a child wrote to its piped stderr, once it closes it. */
export async function stderrTail(child: Deno.ChildProcess, limit: number): Promise<string> {
  let text = "";
  for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) {
    text = (text + chunk).slice(-limit);
  }
  return text;
}
