/**
 * `sluice dlq`: look at and work off a pipeline's dead letters, in whatever
 * destination it keeps them (table, JSON-lines file, Kafka topic).
 *
 * ```
 * sluice dlq list    <config>… <pipeline> [--stage s] [--since t] [--until t] [--id id] [--json]
 * sluice dlq show    <config>… <pipeline> <id> [--json]
 * sluice dlq replay  <config>… <pipeline> [selection]
 * sluice dlq purge   <config>… <pipeline> [selection] [--yes]
 * ```
 *
 * Exit codes: 0 done (every selected record replayed), 1 some records failed
 * again or were refused (or the sink failed), 2 bad usage or config.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { ConfigError } from "../api/errors.ts";
import type { DeadLetterSelection, StoredDeadLetter } from "../api/dead_letters.ts";
import { encodeJson } from "../api/json.ts";
import { redactSecrets } from "../api/redact.ts";
import { setUpLogging, tearDownLogging } from "../core/_log.ts";
import {
  openDeadLetterStore,
  replayDeadLetters,
  type ReplayOptions,
} from "../core/dead_letter_queue.ts";
import type { PipelineSpec } from "../core/config.ts";
import { formatTable } from "./_table.ts";
import { loadWithBuiltins, workerEnvironment, workerSettings } from "./worker.ts";

export const DLQ_USAGE = `Usage: sluice dlq <list|show|replay|purge> <config>… <pipeline> [options]

  list <config>… <pipeline>         the pipeline's dead letters: id, time, stage, error, attempts
  show <config>… <pipeline> <id>    one dead letter whole: record, error, SQLSTATE, trace
  replay <config>… <pipeline>       send them through the pipeline's transforms and sink again;
                                    a record leaves the destination once written durably, one
                                    that fails again stays with its attempts raised
  purge <config>… <pipeline>        delete them (shows what would go unless --yes)

Selection (list, replay, purge; every given one must match):
  --id <id>                  this dead letter (repeat, or comma-separate, for several)
  --stage <stage>            failed in this stage: a transform's alias, sink, VALUE_CONVERTER…
  --since <time>             dead-lettered at or after: ISO 8601, or 30m, 2h, 7d ago
  --until <time>             dead-lettered before it
Options:
  --json                     (list, show) JSON instead of a table
  --yes                      (purge) really delete
  --assume-transformed       (replay) also replay records that did not go through the
                             pipeline's current transform steps before their stage (steps
                             added or changed since, or dead letters of older versions)
  --write-unverified         (replay) also write records that nothing shows to be newer than
                             the target's row (no source position or version to compare, or
                             no target row and a source that cannot look rows up); a record
                             whose row the source deleted is never written
  --bootstrap <servers>      Kafka bootstrap servers (or $SLUICE_BOOTSTRAP_SERVERS)
  --log-level <level>        trace, debug, info, warning, error (default warning)

Exit codes: 0 done, 1 some records failed again or were not replayed, 2 bad usage.`;

class UsageError extends Error {}

/** Runs `sluice dlq …` and returns its exit code. */
export async function dlq(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: {
        id: { type: "string", multiple: true },
        stage: { type: "string", multiple: true },
        since: { type: "string" },
        until: { type: "string" },
        json: { type: "boolean" },
        yes: { type: "boolean" },
        "assume-transformed": { type: "boolean" },
        "write-unverified": { type: "boolean" },
        bootstrap: { type: "string" },
        offsets: { type: "string" },
        "log-level": { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (error) {
    console.error(`${(error as Error).message}\n\n${DLQ_USAGE}`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    console.log(DLQ_USAGE);
    return 0;
  }
  await setUpLogging({ level: (values["log-level"] ?? "warning") as "warning", format: "auto" });
  try {
    return await dispatch(values, positionals);
  } catch (error) {
    if (error instanceof UsageError) {
      console.error(`${error.message}\n\n${DLQ_USAGE}`);
      return 2;
    }
    if (error instanceof ConfigError) {
      console.error(error.message);
      return 2;
    }
    console.error(redactSecrets((error as Error)?.stack ?? String(error)));
    return 1;
  } finally {
    await tearDownLogging();
  }
}

type Flags = {
  id?: string[];
  stage?: string[];
  since?: string;
  until?: string;
  json?: boolean;
  yes?: boolean;
  "assume-transformed"?: boolean;
  "write-unverified"?: boolean;
  bootstrap?: string;
  offsets?: string;
};

async function dispatch(values: Flags, positionals: string[]): Promise<number> {
  const [command, ...rest] = positionals;
  if (!["list", "show", "replay", "purge"].includes(command)) {
    throw new UsageError(command ? `Unknown dlq command: ${command}` : "Name a dlq command.");
  }
  const id = command === "show" ? rest.pop() : undefined;
  const pipeline = rest.pop();
  if (!pipeline || rest.length === 0 || (command === "show" && !id)) {
    throw new UsageError(
      command === "show"
        ? "sluice dlq show needs config paths, a pipeline name and a dead-letter id."
        : `sluice dlq ${command} needs config paths and a pipeline name.`,
    );
  }
  const selection = selectionOf(values, id);
  const settings = workerSettings(values);
  const specs = await loadWithBuiltins(rest, settings);
  const spec = specs.find((candidate) => candidate.name === pipeline);
  if (!spec) {
    throw new UsageError(
      `No pipeline named "${pipeline}" in ${rest.join(", ")}. Pipelines: ${
        specs.map((s) => s.name).join(", ") || "none"
      }`,
    );
  }
  const store = openDeadLetterStore(spec, workerEnvironment(settings));
  if (!store) {
    throw new UsageError(
      `Pipeline "${pipeline}" keeps no dead letters: it sets none of errors.deadletterqueue.table.name, .file.path or .topic.name.`,
    );
  }
  try {
    const letters = await store.list(spec.name, selection);
    switch (command) {
      case "list":
        console.log(
          values.json ? encodeJson(letters, 2) : formatList(letters, store.description),
        );
        return 0;
      case "show":
        if (letters.length === 0) {
          console.error(
            `No dead letter "${id}" of pipeline "${pipeline}" in ${store.description}.`,
          );
          return 1;
        }
        console.log(values.json ? encodeJson(letters[0], 2) : formatLetter(letters[0]));
        return 0;
      case "purge":
        return await purge(store, letters, values.yes ?? false);
      default:
        return await replay(spec, store, letters, {
          assumeTransformed: values["assume-transformed"] ?? false,
          writeUnverified: values["write-unverified"] ?? false,
        });
    }
  } finally {
    await store.close();
  }
}

function selectionOf(values: Flags, showId: string | undefined): DeadLetterSelection {
  const ids = showId !== undefined
    ? [showId]
    : values.id?.flatMap((id) => id.split(",")).map((id) => id.trim()).filter(Boolean);
  return {
    ...(ids ? { ids } : {}),
    ...(values.stage ? { stages: values.stage } : {}),
    ...(values.since ? { since: parseTime("--since", values.since) } : {}),
    ...(values.until ? { until: parseTime("--until", values.until) } : {}),
  };
}

/** An ISO 8601 time, or a duration ago: `30s`, `15m`, `2h`, `7d`. */
export function parseTime(flag: string, text: string, now = Date.now()): Date {
  const relative = /^(\d+)(s|m|h|d)$/.exec(text.trim());
  if (relative) {
    const unit = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 }[relative[2]]!;
    return new Date(now - Number(relative[1]) * unit);
  }
  const at = Date.parse(text);
  if (Number.isNaN(at)) {
    throw new UsageError(
      `${flag} must be an ISO 8601 time or a duration such as 2h: current value is "${text}"`,
    );
  }
  return new Date(at);
}

function summary(error: string, width = 70): string {
  const line = error.replace(/\s+/g, " ").trim();
  return line.length > width ? `${line.slice(0, width - 1)}…` : line;
}

function formatList(letters: readonly StoredDeadLetter[], where: string): string {
  if (letters.length === 0) return `No dead letters in ${where}.`;
  const rows = letters.map((letter) => [
    letter.id,
    letter.failedAt.replace(/\.\d+Z$/, "Z"),
    letter.stage,
    summary(letter.errorCode ? `[${letter.errorCode}] ${letter.error}` : letter.error),
    String(letter.attempts),
  ]);
  const table = formatTable(["ID", "TIME", "STAGE", "ERROR", "ATTEMPTS"], rows, new Set([4]));
  return `${table}\n${letters.length} dead letter(s) in ${where}.`;
}

function formatLetter(letter: StoredDeadLetter): string {
  const lines = [
    `id:        ${letter.id}`,
    `pipeline:  ${letter.pipeline}`,
    `failed at: ${letter.failedAt}`,
    `stage:     ${letter.stage}`,
    `attempts:  ${letter.attempts}`,
    `error:     ${letter.errorClass}: ${letter.error}`,
  ];
  if (letter.errorCode) lines.push(`SQLSTATE:  ${letter.errorCode}`);
  lines.push(
    `record:    ${encodeJson(letter.record, 2).replaceAll("\n", "\n           ")}`,
  );
  if (letter.trace) lines.push(`trace:\n  ${letter.trace.replaceAll("\n", "\n  ")}`);
  return lines.join("\n");
}

async function purge(
  store: { description: string; remove(ids: readonly string[]): Promise<number> },
  letters: readonly StoredDeadLetter[],
  yes: boolean,
): Promise<number> {
  if (!yes) {
    if (letters.length > 0) console.log(formatList(letters, store.description));
    console.log(
      `Dry run: ${letters.length} dead letter(s) would be deleted. Add --yes to delete them.`,
    );
    return 0;
  }
  const removed = await store.remove(letters.map((letter) => letter.id));
  console.log(`Purged ${removed} dead letter(s) from ${store.description}.`);
  return 0;
}

async function replay(
  spec: PipelineSpec,
  store: Parameters<typeof replayDeadLetters>[1],
  letters: readonly StoredDeadLetter[],
  options: ReplayOptions,
): Promise<number> {
  if (letters.length === 0) {
    console.log(`Nothing to replay in ${store.description}.`);
    return 0;
  }
  const outcome = await replayDeadLetters(spec, store, letters, options);
  const parts = [`${outcome.replayed.length} replayed`];
  if (outcome.filtered.length > 0) parts.push(`${outcome.filtered.length} filtered`);
  parts.push(`${outcome.failed.length} failed again`);
  if (outcome.refused.length > 0) parts.push(`${outcome.refused.length} refused`);
  if (outcome.unplaced.length > 0) {
    parts.push(
      `${outcome.unplaced.length} left alone (their stage is no longer a transform of the pipeline)`,
    );
  }
  console.log(`${spec.name}: ${parts.join(", ")} (of ${letters.length} selected).`);
  for (const { letter, failure } of outcome.failed.slice(0, 20)) {
    console.log(`  ${letter.id} ${failure.stage}: ${summary(failure.error.message, 100)}`);
  }
  if (outcome.failed.length > 20) console.log(`  … and ${outcome.failed.length - 20} more`);
  if (outcome.refused.length > 0) {
    console.log(
      `${outcome.refused.length} not replayed, kept as they are (writing them could leave the ` +
        `target wrong; each says why):`,
    );
    for (const { letter, reason } of outcome.refused.slice(0, 20)) {
      console.log(`  ${letter.id} ${letter.stage}: ${reason}`);
    }
    if (outcome.refused.length > 20) console.log(`  … and ${outcome.refused.length - 20} more`);
  }
  const problems = outcome.failed.length + outcome.unplaced.length + outcome.refused.length;
  return problems > 0 ? 1 : 0;
}
