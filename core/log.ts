/**
 * Logging setup: readable colored lines on a terminal, JSON lines otherwise
 * (for log shippers). Plugins log through `context.logger`.
 *
 * @module
 */
import {
  configure,
  getAnsiColorFormatter,
  getStreamSink,
  jsonLinesFormatter,
  type LogLevel,
  type LogRecord,
  reset,
} from "@logtape/logtape";
import { redactSecrets } from "../api/redact.ts";

/** Log output format. */
export type LogFormat = "auto" | "text" | "json";

/**
 * Configures LogTape for the `sluice` category, writing to stderr so that
 * stdout stays free for command output.
 */
export async function setUpLogging(
  options: { level?: LogLevel; format?: LogFormat } = {},
): Promise<void> {
  const format = options.format ?? "auto";
  const json = format === "json" || (format === "auto" && !Deno.stderr.isTerminal());
  const plain = json ? jsonLinesFormatter : getAnsiColorFormatter({
    timestamp: "time",
    category: ".",
  });
  // Whatever a plugin or a driver error put in a line, no password leaves.
  const formatter = (record: LogRecord) => redactSecrets(plain(record));
  await configure({
    reset: true,
    sinks: { stderr: getStreamSink(Deno.stderr.writable, { formatter }) },
    loggers: [
      { category: ["sluice"], lowestLevel: options.level ?? "info", sinks: ["stderr"] },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["stderr"] },
    ],
  });
}

/** Flushes and removes the logging configuration. */
export async function tearDownLogging(): Promise<void> {
  await reset();
}
