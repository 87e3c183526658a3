/**
 * Logging setup: readable colored lines on a terminal, JSON lines otherwise
 * (for log shippers); `--log-format text` into a file or pipe, or with
 * `NO_COLOR` set, writes plain lines without ANSI escapes. Plugins log through `context.logger`.
 *
 * @module
 */
import {
  configure,
  getAnsiColorFormatter,
  getTextFormatter,
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
  const terminal = Deno.stderr.isTerminal();
  const json = format === "json" || (format === "auto" && !terminal);
  // Strings print bare (`orders_cdc stopped`, not `"orders_cdc" "stopped"`);
  // colours only on a terminal, and never when NO_COLOR is set (no-color.org).
  const text = { timestamp: "time", category: ".", value: "bare" } as const;
  const plain = json
    ? jsonLine
    : terminal && !Deno.env.get("NO_COLOR")
    ? getAnsiColorFormatter(text)
    : getTextFormatter(text);
  // Whatever a plugin or a driver error put in a line, no password leaves.
  const formatter = (record: LogRecord) => redactSecrets(plain(record));
  await configure({
    reset: true,
    sinks: { stderr: stderrSink(formatter) },
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

const LEVELS: Record<LogLevel, string> = {
  trace: "TRACE",
  debug: "DEBUG",
  info: "INFO",
  warning: "WARN",
  error: "ERROR",
  fatal: "FATAL",
};

/**
 * One JSON object per line in the shape of LogTape's JSON Lines formatter,
 * but with the message rendered as people read it (strings bare, like the
 * text lines) and bigints (LSNs) and errors kept instead of failing or
 * becoming `{}`.
 */
export function jsonLine(record: LogRecord): string {
  const message = record.message.map((part, i) =>
    i % 2 === 0 || typeof part === "string" ? String(part) : Deno.inspect(part)
  ).join("");
  return JSON.stringify(
    {
      "@timestamp": new Date(record.timestamp).toISOString(),
      level: LEVELS[record.level],
      message,
      logger: record.category.join("."),
      properties: record.properties,
    },
    (_key, value) =>
      typeof value === "bigint"
        ? value.toString()
        : value instanceof Error
        ? { name: value.name, message: value.message, stack: value.stack }
        : value,
  ) + "\n";
}

/**
 * Writes each line to stderr before the logging call returns, so log lines
 * and the command's own output (the run summary on stdout) appear in the
 * order they happened, also when both go to one file.
 */
function stderrSink(formatter: (record: LogRecord) => string): (record: LogRecord) => void {
  const encoder = new TextEncoder();
  return (record) => {
    const bytes = encoder.encode(formatter(record));
    let written = 0;
    while (written < bytes.length) written += Deno.stderr.writeSync(bytes.subarray(written));
  };
}
