/**
 * `unwrap`: Debezium's ExtractNewRecordState. Replaces a change event with
 * its row: `after` for creates, updates and snapshot reads. Deletes follow
 * `delete.tombstone.handling.mode`:
 *
 * | mode | delete event becomes | incoming tombstone |
 * |---|---|---|
 * | `tombstone` (default) | a tombstone (same key, null value) | dropped |
 * | `drop` | nothing | dropped |
 * | `rewrite` | the `before` row with `__deleted: "true"` | dropped |
 * | `rewrite-with-tombstone` | the `before` row with `__deleted: "true"` | kept |
 * | `delete-to-tombstone` | a tombstone | kept |
 *
 * In the rewrite modes other rows get `__deleted: "false"`. Truncate events
 * are dropped with a warning (a row cannot express them), except in
 * `rewrite-with-tombstone`, which passes them on. An update's row lacks the
 * columns of unchanged TOAST values and a rewritten delete's row holds only
 * the key (default replica identity); sinks keep the stored values of
 * absent columns. `route.by.field` reads `after`, then `before`, then the
 * key, and fails saying why when none holds the field.
 * Records that are not change events pass unchanged.
 *
 * `add.fields` / `add.headers` copy metadata into the row or the headers:
 * `op`, `ts_ms`, `ts_us`, `ts_ns` come from the envelope, `id`,
 * `total_order`, `data_collection_order` from the transaction block, other
 * names from `source`; `source.x` and `transaction.x` name the block
 * explicitly. The new name is the prefix (default `__`) plus the entry with
 * dots turned into underscores (`source.ts_ms` → `__source_ts_ms`), or
 * `entry:name` chooses it. A name the event does not have is skipped; a name
 * in a missing block is null (headers with null values are left out, as
 * Sluice headers are strings).
 *
 * A change event that carries schemas (postgres_cdc's, for JsonConverter's
 * `schemas.enable` and Avro) gives its row the schema Debezium gives it: the
 * `after` struct, then each added field with the type it has in the event
 * (optional), then `__deleted` (optional string) in the rewrite modes. A row
 * that `drop.fields.header.name` shortened, or whose added field has no
 * type in the event's schema, is written without a value schema.
 *
 * `drop.fields.header.name` names a header listing fields (comma-separated
 * or a JSON array) to remove from the row; with
 * `drop.fields.keep.schema.compatible` (default) key columns stay, and
 * `drop.fields.from.key` removes them from the key too when it is off.
 *
 * ```json
 * {
 *   "transforms": "unwrap",
 *   "transforms.unwrap.type": "io.debezium.transforms.ExtractNewRecordState",
 *   "transforms.unwrap.delete.tombstone.handling.mode": "rewrite",
 *   "transforms.unwrap.add.fields": "op,table,lsn,source.ts_ms",
 *   "transforms.unwrap.add.headers": "op"
 * }
 * ```
 *
 * @module
 */
import { z } from "zod";
import { defineTransform } from "../api/plugin.ts";
import { type ChangeEvent, isChangeEvent, type Row, type SluiceRecord } from "../api/record.ts";
import type { ConnectSchema, RecordSchemas } from "../api/schema.ts";
import { boolean, list } from "../api/options.ts";
import { addIssue, eventField, whyMissing } from "./_shared.ts";

const MODES = [
  "tombstone",
  "drop",
  "rewrite",
  "rewrite-with-tombstone",
  "delete-to-tombstone",
] as const;
const ENVELOPE_FIELDS = new Set(["op", "ts_ms", "ts_us", "ts_ns"]);
const TRANSACTION_FIELDS = new Set(["id", "total_order", "data_collection_order"]);
const IMAGES = new Set(["before", "after", "source", "transaction"]);
const ENTRY = /^(?:(source|transaction)\.)?([A-Za-z_][\w]*)(?::([\w.-]+))?$/;

const config = z.strictObject({
  "delete.tombstone.handling.mode": z.enum(MODES).default("tombstone").describe(
    "What deletes and tombstones become: tombstone, drop, rewrite, rewrite-with-tombstone or delete-to-tombstone.",
  ),
  "add.fields": list().default([]).describe(
    'Metadata copied into the row: "op", "table", "lsn", "source.ts_ms", "transaction.id", optionally "entry:newName".',
  ),
  "add.fields.prefix": z.string().default("__").describe("Prefix of the added field names."),
  "add.headers": list().default([]).describe(
    "Metadata copied into headers, same syntax as add.fields.",
  ),
  "add.headers.prefix": z.string().default("__").describe("Prefix of the added header names."),
  "route.by.field": z.string().min(1).optional().describe(
    "Row field whose value becomes the topic (the before row for deletes).",
  ),
  "drop.fields.header.name": z.string().min(1).optional().describe(
    "Header listing fields to remove from the row (comma-separated or a JSON array).",
  ),
  "drop.fields.from.key": boolean().default(false).describe(
    "Also remove the listed fields from the key (only when keep.schema.compatible is false).",
  ),
  "drop.fields.keep.schema.compatible": boolean().default(true).describe(
    "Keep key columns in the row even when listed, so the row keeps its identity.",
  ),
}).superRefine((value, ctx) => {
  for (const option of ["add.fields", "add.headers"] as const) {
    for (const entry of value[option]) {
      if (!ENTRY.test(entry)) {
        addIssue(
          ctx,
          option,
          'entries must be "field", "source.field" or "transaction.field", optionally followed by ":newName"',
          entry,
        );
      }
    }
  }
});

interface Reference {
  readonly block: "envelope" | "source" | "transaction";
  readonly field: string;
  readonly name: string;
}

function references(entries: readonly string[], prefix: string): Reference[] {
  return entries.map((entry) => {
    const [, block, field, rename] = ENTRY.exec(entry)!;
    const name = prefix + (rename ?? entry.replaceAll(".", "_"));
    if (block) return { block: block as Reference["block"], field, name };
    return { block: "envelope", field, name }; // refined per event by blockOf()
  });
}

function blockOf(event: ChangeEvent, ref: Reference): Reference["block"] {
  if (ref.block !== "envelope") return ref.block;
  if (ENVELOPE_FIELDS.has(ref.field) || (ref.field in event && !IMAGES.has(ref.field))) {
    return "envelope";
  }
  return TRANSACTION_FIELDS.has(ref.field) ? "transaction" : "source";
}

/** The value of a reference: undefined when the event does not have it. */
function lookUp(event: ChangeEvent, ref: Reference): unknown {
  const block = blockOf(event, ref);
  const container = block === "envelope" ? event : event[block] as Row | null | undefined;
  if (container === null || container === undefined) return null;
  return ref.field in container ? container[ref.field] ?? null : undefined;
}

/** Flattens Debezium change events to their row state. */
export const unwrap = defineTransform({
  name: "unwrap",
  aliases: ["io.debezium.transforms.ExtractNewRecordState"],
  summary:
    "Replaces a Debezium change event with its row (ExtractNewRecordState), handling deletes and tombstones.",
  config,
  create(options, context) {
    const mode = options["delete.tombstone.handling.mode"];
    const rewrite = mode === "rewrite" || mode === "rewrite-with-tombstone";
    const fields = references(options["add.fields"], options["add.fields.prefix"]);
    const headers = references(options["add.headers"], options["add.headers.prefix"]);
    const opHeader = headers.find((ref) => ref.block === "envelope" && ref.field === "op");

    const withHeaders = (record: SluiceRecord, event: ChangeEvent): SluiceRecord["headers"] => {
      if (headers.length === 0) return record.headers;
      const out: Record<string, string> = { ...record.headers };
      for (const ref of headers) {
        const value = lookUp(event, ref);
        if (value !== null && value !== undefined) out[ref.name] = headerText(value);
      }
      return out;
    };

    const topicOf = (record: SluiceRecord): string => {
      const field = options["route.by.field"];
      if (field === undefined) return record.topic;
      // after, else before (an unchanged TOAST value), else the key (a delete).
      const value = eventField(record, field);
      if (value === null || value === undefined) {
        const why = value === null ? "it is null" : `it is missing: ${whyMissing(record)}`;
        throw new Error(
          `unwrap: cannot route a record on "${record.topic}" by field "${field}": ${why}`,
        );
      }
      return String(value);
    };

    const rowSchemas = new RowSchemas(fields, rewrite);
    /**
     * `out` with `image` as its row (listed fields dropped, metadata added),
     * and the row's schema when the event carried one.
     */
    const withRow = (
      record: SluiceRecord,
      event: ChangeEvent,
      image: Row,
      deleted: boolean,
      out: SluiceRecord,
    ): SluiceRecord => {
      const kept = dropListedFields(image, record, options);
      const row: Row = { ...kept };
      // Which added fields the event has, and from which block: the row's shape.
      const envelope = kept === image ? record.schemas?.value : undefined;
      let shape = "";
      for (const ref of fields) {
        const value = lookUp(event, ref);
        if (value !== undefined) row[ref.name] = value;
        if (envelope) shape += value === undefined ? "-" : blockOf(event, ref)[0];
      }
      if (rewrite) row.__deleted = deleted ? "true" : "false";
      const schema = envelope && rowSchemas.of(envelope, shape);
      if (!schema) return { ...out, value: row };
      const key = out.key === record.key ? record.schemas?.key : undefined;
      return {
        ...out,
        value: row,
        schemas: key ? rowSchemas.withKey(key, schema) : { value: schema },
      };
    };

    return {
      apply(record) {
        const value = record.value;
        if (value === null || value === undefined) {
          if (mode === "delete-to-tombstone") return record;
          if (mode !== "rewrite-with-tombstone") return null;
          if (!opHeader) return record;
          return { ...record, headers: { ...record.headers, [opHeader.name]: "d" } };
        }
        if (!isChangeEvent(value)) return record;
        const event = value;
        if (event.op === "t") {
          if (mode === "rewrite-with-tombstone") return record;
          // A row cannot say "empty the table"; say so rather than drop it quietly.
          context.logger.warn(
            "unwrap dropped a truncate of {table} (delete.tombstone.handling.mode {mode}): the target is not emptied",
            { table: `${event.source?.schema}.${event.source?.table}`, mode },
          );
          return null;
        }
        if (event.op === "d") {
          if (mode === "drop") return null;
          const before = event.before;
          const topic = topicOf(record);
          const headers = withHeaders(record, event);
          const key = dropFromKey(record, options);
          if (!rewrite || before === null) return { ...record, topic, headers, key, value: null };
          return withRow(record, event, before, true, { ...record, topic, headers, key });
        }
        const after = event.after;
        const topic = topicOf(record);
        const headers = withHeaders(record, event);
        const out = { ...record, topic, headers, key: dropFromKey(record, options) };
        return after === null ? { ...out, value: null } : withRow(record, event, after, false, out);
      },
    };
  },
});

function headerText(value: unknown): string {
  if (typeof value === "string") return value;
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

function listedFields(record: SluiceRecord, header: string | undefined): string[] {
  const text = header === undefined ? undefined : record.headers?.[header];
  if (!text) return [];
  if (text.trimStart().startsWith("[")) {
    try {
      const parsed = JSON.parse(text);
      if (Array.isArray(parsed)) return parsed.map(String);
    } catch {
      // Not JSON after all: read it as a comma-separated list below.
    }
  }
  return text.split(",").map((name) => name.trim()).filter((name) => name !== "");
}

function dropListedFields(row: Row, record: SluiceRecord, options: z.output<typeof config>): Row {
  const names = listedFields(record, options["drop.fields.header.name"]);
  if (names.length === 0) return row;
  const keepKey = options["drop.fields.keep.schema.compatible"];
  const out = { ...row };
  for (const name of names) {
    if (!(keepKey && record.key && name in record.key)) delete out[name];
  }
  return out;
}

function dropFromKey(record: SluiceRecord, options: z.output<typeof config>): Row | null {
  if (!record.key || !options["drop.fields.from.key"]) return record.key;
  if (options["drop.fields.keep.schema.compatible"]) return record.key;
  const names = listedFields(record, options["drop.fields.header.name"]);
  if (names.length === 0) return record.key;
  const key = { ...record.key };
  for (const name of names) delete key[name];
  return key;
}

/**
 * The schema of unwrapped rows: made once per envelope schema and per set of
 * added fields an event holds (a field the event lacks is not added).
 */
class RowSchemas {
  readonly #fields: readonly Reference[];
  readonly #rewrite: boolean;
  readonly #rows = new WeakMap<ConnectSchema, Map<string, ConnectSchema | null>>();
  readonly #withKeys = new WeakMap<ConnectSchema, WeakMap<ConnectSchema, RecordSchemas>>();

  constructor(fields: readonly Reference[], rewrite: boolean) {
    this.#fields = fields;
    this.#rewrite = rewrite;
  }

  /**
   * The row's schema, or undefined when the envelope does not type every
   * part of it. `shape` has a character per added field: "-" when the event
   * lacks it, else the first letter of its block (envelope, source,
   * transaction).
   */
  of(envelope: ConnectSchema, shape: string): ConnectSchema | undefined {
    let byFields = this.#rows.get(envelope);
    if (!byFields) this.#rows.set(envelope, byFields = new Map());
    let row = byFields.get(shape);
    if (row === undefined) {
      row = this.#build(envelope, shape) ?? null;
      byFields.set(shape, row);
    }
    return row ?? undefined;
  }

  /** Key and value schemas, one object per pair. */
  withKey(key: ConnectSchema, value: ConnectSchema): RecordSchemas {
    let byValue = this.#withKeys.get(key);
    if (!byValue) this.#withKeys.set(key, byValue = new WeakMap());
    let schemas = byValue.get(value);
    if (!schemas) byValue.set(value, schemas = { key, value });
    return schemas;
  }

  #build(envelope: ConnectSchema, shape: string): ConnectSchema | undefined {
    const part = (fields: readonly ConnectSchema[] | undefined, name: string) =>
      fields?.find((field) => field.field === name);
    const after = part(envelope.fields, "after");
    if (after?.type !== "struct" || !after.fields) return undefined;
    const fields = [...after.fields];
    const put = (field: ConnectSchema) => {
      const at = fields.findIndex((f) => f.field === field.field);
      if (at >= 0) fields[at] = field; // the added value replaced the column's, as in the row
      else fields.push(field);
    };
    for (let i = 0; i < this.#fields.length; i++) {
      const block = shape[i];
      if (block === "-") continue;
      const ref = this.#fields[i];
      const source = block === "e"
        ? part(envelope.fields, ref.field)
        : part(part(envelope.fields, block === "s" ? "source" : "transaction")?.fields, ref.field);
      if (!source) return undefined;
      const { field: _, ...type } = source;
      put({ ...type, optional: true, field: ref.name });
    }
    if (this.#rewrite) put({ type: "string", optional: true, field: "__deleted" });
    const { field: _, ...row } = after;
    return { ...row, fields };
  }
}
