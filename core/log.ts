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
  getStreamSink,
  getTextFormatter,
  jsonLinesFormatter,
  type LogLevel,
  reset,
} from "@logtape/logtape";

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
  const formatter = json
    ? jsonLinesFormatter
    : terminal && !Deno.env.get("NO_COLOR")
    ? getAnsiColorFormatter(text)
    : getTextFormatter(text);
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
