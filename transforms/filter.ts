/**
 * `filter`: keeps or drops records by a condition in CEL, the Common
 * Expression Language (a safe, non-Turing-complete language; nothing is
 * `eval`ed). The condition is parsed and type-checked when the config is
 * validated, so a typo fails before anything connects.
 *
 * Variables: `value` (also `row`) is the row: the `after` image of a change
 * event, `before` for a delete, the batch row itself, null for a tombstone;
 * `before` and `after` are the images (null for batch rows); `op` is the
 * Debezium operation (`c`, `u`, `d`, `r`, `t`; `r` for batch rows, "" for
 * tombstones); `db`, `schema`, `table`, `topic` are strings; `key` is the key
 * row or null; `headers` a map of strings.
 *
 * On change events the condition says, by default, which rows the target
 * holds (`change.events` rows), as a publication's row filter does: an
 * update whose new row fails it becomes a delete of that row (it may be at
 * the target from before; removing one it never had is harmless), and
 * deletes and truncates always pass. Judged event by event instead
 * (`change.events` events, Kafka Connect's Filter, and the default when the
 * condition reads `op`), a row an update takes out of the condition stays
 * at the target as it was.
 *
 * Reading a column a row does not have is an error (use `has(value.x)`),
 * except where the kind of event leaves columns out: a delete (its `before`
 * holds only the key under the default replica identity) and a truncate (no
 * row) cannot be judged, so they are kept whatever `action` says: dropping
 * one would lose a change, while keeping a delete of a row the target never
 * received is harmless. An update that left an unchanged TOAST value out
 * fails instead (dead letter or stop): kept, it would pass on a change to a
 * row the condition may exclude, and dropped, lose one to a row it keeps.
 * `REPLICA IDENTITY FULL` on the source table makes updates carry such
 * values, or the condition can decide with `has(after.x)`.
 * Numbers from rows are CEL doubles: compare them with any literal
 * (`value.amount > 100`), but write `1.0` or `int(value.n)` in arithmetic.
 * Tombstones are kept without evaluating unless `null.handling.mode` says
 * otherwise.
 *
 * ```json
 * {
 *   "transforms": "finalOnly,noDraftDeletes",
 *   "transforms.finalOnly.type": "filter",
 *   "transforms.finalOnly.condition": "table != 'applications' || value.status == 'final'",
 *   "transforms.noDraftDeletes.type": "filter",
 *   "transforms.noDraftDeletes.condition": "op == 'd' && value.status == 'draft'",
 *   "transforms.noDraftDeletes.action": "drop",
 *   "transforms.noDraftDeletes.change.events": "events"
 * }
 * ```
 *
 * @module
 */
import { z } from "zod";
import { Environment } from "@marcbachmann/cel-js";
import { defineTransform } from "../api/plugin.ts";
import {
  type ChangeEvent,
  isChangeEvent,
  recordRow,
  type Row,
  type SluiceRecord,
} from "../api/record.ts";
import { addIssue, tableOf } from "./_shared.ts";

const environment = new Environment({ unlistedVariablesAreDyn: false })
  .registerVariable("value", "dyn")
  .registerVariable("row", "dyn")
  .registerVariable("before", "dyn")
  .registerVariable("after", "dyn")
  .registerVariable("key", "dyn")
  .registerVariable("op", "string")
  .registerVariable("db", "string")
  .registerVariable("schema", "string")
  .registerVariable("table", "string")
  .registerVariable("topic", "string")
  .registerVariable("headers", "map<string, string>");

/** The first line of a CEL error (the rest draws a caret under the expression). */
function firstLine(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).split("\n")[0];
}

const config = z.strictObject({
  condition: z.string().min(1, "must not be empty").describe(
    "CEL condition over value (row), before, after, op, db, schema, table, topic, key, headers.",
  ),
  action: z.enum(["keep", "drop"]).default("keep").describe(
    "keep: only records matching the condition go on. drop: records matching it are dropped.",
  ),
  "null.handling.mode": z.enum(["keep", "drop", "evaluate"]).default("keep").describe(
    "Tombstones (null values): keep or drop them without evaluating, or evaluate the condition with value = null.",
  ),
  "change.events": z.enum(["rows", "events"]).optional().describe(
    "How change events are judged. rows: the condition says which rows the target holds; an update whose row fails it becomes a delete of its key (the row left them), and deletes and truncates always pass. events: each event is kept or dropped as it is (Kafka Connect's Filter), so a row that leaves the condition stays at the target as it was, and deletes can be dropped by op. Default: events when the condition reads op, else rows.",
  ),
}).superRefine((value, ctx) => {
  const checked = environment.check(value.condition);
  if (!checked.valid) {
    addIssue(ctx, "condition", `is not valid CEL: ${firstLine(checked.error)}`, value.condition);
  } else if (checked.type !== "bool" && checked.type !== "dyn") {
    addIssue(
      ctx,
      "condition",
      `must evaluate to a bool, but evaluates to ${checked.type}`,
      value.condition,
    );
  }
});

/** Keeps or drops records by a CEL condition. */
export const filter = defineTransform({
  name: "filter",
  summary: "Keeps or drops records by a CEL condition on fields, operation, table and topic.",
  config,
  create(options) {
    const program = environment.parse(options.condition);
    const variables = new Variables();
    const keepOnMatch = options.action === "keep";
    const nullMode = options["null.handling.mode"];
    const byRows =
      (options["change.events"] ?? (readsOp(options.condition) ? "events" : "rows")) ===
        "rows";
    return {
      apply(record) {
        const tombstone = record.value === null || record.value === undefined;
        if (tombstone && nullMode !== "evaluate") return nullMode === "keep" ? record : null;
        const event = isChangeEvent(record.value) ? record.value : undefined;
        // The target holds the rows that pass: removing one it never had is harmless,
        // keeping one the source removed is not.
        if (byRows && (event?.op === "d" || event?.op === "t")) return record;
        let result: unknown;
        try {
          variables.record = record;
          result = program(variables);
        } catch (error) {
          if (leftOutByEventKind(record, error)) return record;
          if (isChangeEvent(record.value) && record.value.op === "u" && isMissingKey(error)) {
            throw new Error(
              `filter: cannot judge an update on "${record.topic}": ${firstLine(error)}. ` +
                `PostgreSQL leaves an unchanged TOAST value out of an update, so whether the ` +
                `row passes is unknown; set REPLICA IDENTITY FULL on the source table to have ` +
                `it sent, or decide such updates in the condition with has(after.<column>)`,
              { cause: error },
            );
          }
          throw new Error(
            `filter: cannot evaluate the condition on a record on "${record.topic}": ${
              firstLine(error)
            }`,
            { cause: error },
          );
        }
        if (typeof result !== "boolean") {
          throw new Error(
            `filter: the condition gave ${typeof result}, not a bool, on a record on "${record.topic}"`,
          );
        }
        if (result === keepOnMatch) return record;
        // The row may be at the target from before this change: it leaves it.
        if (byRows && event?.op === "u") return leaving(record, event);
        return null;
      },
    };
  },
});

/**
 * An update whose new row fails the condition, as the delete of its row:
 * the old image when the event has one (a changed key, REPLICA IDENTITY
 * FULL), else the new row, whose key is the row's (an unchanged key is not
 * sent again in the old image).
 */
function leaving(record: SluiceRecord, event: ChangeEvent): SluiceRecord {
  return {
    ...record,
    value: { ...event, op: "d", before: event.before ?? event.after, after: null },
  };
}

/** Whether a CEL condition reads the `op` variable (string literals aside). */
function readsOp(condition: string): boolean {
  const code = condition.replace(/'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"/g, "''");
  return /(?<![\w.])op\b/.test(code);
}

/**
 * True when evaluation failed on a column that the kind of change event
 * leaves out (see the module doc), rather than on a mistake in the
 * condition or the data.
 */
function leftOutByEventKind(record: SluiceRecord, error: unknown): boolean {
  const value = record.value;
  if (!isChangeEvent(value) || !["d", "t"].includes(value.op)) return false;
  // A misspelt column fails on inserts and snapshot reads, which carry every column.
  return isMissingKey(error);
}

/** True when evaluation failed on a field the row lacks. */
function isMissingKey(error: unknown): boolean {
  return /^No such key: /.test(firstLine(error));
}

/**
 * The variables of the condition for the record being judged. One instance
 * per filter, re-pointed at each record: CEL reads only the variables the
 * condition names, so each is computed on demand and a record costs no
 * object of its own. Safe because evaluation is synchronous.
 */
class Variables {
  record: SluiceRecord = { topic: "", key: null, value: null };

  get value(): Row | null {
    return recordRow(this.record);
  }
  get row(): Row | null {
    return recordRow(this.record);
  }
  get before(): Row | null {
    const value = this.record.value;
    return isChangeEvent(value) ? value.before ?? null : null;
  }
  get after(): Row | null {
    const value = this.record.value;
    return isChangeEvent(value) ? value.after ?? null : null;
  }
  get key(): unknown {
    return this.record.key;
  }
  get op(): string {
    const value = this.record.value;
    if (isChangeEvent(value)) return value.op;
    return value === null || value === undefined ? "" : "r";
  }
  get db(): string {
    return tableOf(this.record).db;
  }
  get schema(): string {
    return tableOf(this.record).schema;
  }
  get table(): string {
    return tableOf(this.record).table;
  }
  get topic(): string {
    return this.record.topic;
  }
  get headers(): Readonly<Record<string, string>> {
    return this.record.headers ?? {};
  }
}
