/**
 * Log lines of Sluice's loggers during a test, as text.
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
