/**
 * The unit of data that flows through a pipeline.
 *
 * A batch source emits table rows: `value` is the row as an object of column
 * values. A CDC source emits change events: `value` is the Debezium envelope
 * `{ before, after, source, op, ts_ms }`. Transforms and sinks accept both.
 *
 * @module
 */
import type { RecordSchemas } from "./schema.ts";

/**
 * A value that survives `JSON.stringify` and back; used for offsets.
 *
 * @example An offset a source hands back with a batch
 * ```ts
 * import type { JsonValue } from "@sluice/sluice";
 * import assert from "node:assert/strict";
 *
 * const offset: JsonValue = { lsn: "0/16B3748", snapshot: false };
 * assert.deepEqual(JSON.parse(JSON.stringify(offset)), offset);
 * ```
 */
export type JsonValue =
  | string
  | number
  | boolean
  | null
  | JsonValue[]
  | { [key: string]: JsonValue };

/**
 * A row: column name → value.
 *
 * @example A row as a batch source reads it
 * ```ts
 * import type { Row } from "@sluice/sluice";
 *
 * const row: Row = { id: 1, full_name: "Ada Lovelace", updated_at: "2024-05-01 10:00:00+00" };
 * ```
 */
export type Row = Record<string, unknown>;

/**
 * Debezium's operation codes: create, update, delete, read (snapshot), truncate.
 *
 * @example Telling inserts from snapshot reads
 * ```ts
 * import type { ChangeOp } from "@sluice/sluice";
 * import assert from "node:assert/strict";
 *
 * const isNewRow = (op: ChangeOp): boolean => op === "c" || op === "r";
 * assert.equal(isNewRow("r"), true);
 * assert.equal(isNewRow("d"), false);
 * ```
 */
export type ChangeOp = "c" | "u" | "d" | "r" | "t";

/**
 * The `source` block of a Debezium change event: where and when a change
 * happened.
 *
 * @example The source block of a change read from PostgreSQL
 * ```ts
 * import type { ChangeSource } from "@sluice/sluice";
 *
 * const source: ChangeSource = {
 *   version: "0.1.0",
 *   connector: "postgresql",
 *   name: "warehouse",
 *   ts_ms: 1714557600000,
 *   snapshot: "false",
 *   db: "smart_warehouse",
 *   schema: "public",
 *   table: "profile_360",
 *   txId: 771,
 *   lsn: 24023128,
 * };
 * ```
 */
export interface ChangeSource {
  /** The version of the connector that produced the event. */
  version: string;
  /** The connector kind, such as `postgresql`. */
  connector: string;
  /** The logical server name (Debezium's `topic.prefix`). */
  name: string;
  /** When the change was committed at the source, in milliseconds since the epoch. */
  ts_ms: number;
  /** `"true"`, `"last"` or `"false"`: whether the event comes from a snapshot. */
  snapshot: string;
  /** The database name. */
  db: string;
  /** The schema of the changed table. */
  schema: string;
  /** The changed table. */
  table: string;
  /** The source transaction id, when known. */
  txId?: number | null;
  /** The log sequence number of the change, when known. */
  lsn?: number | null;
  /** Connector-specific fields, kept as they came. */
  [field: string]: unknown;
}

/**
 * A Debezium change event envelope.
 *
 * @example An update of one row
 * ```ts
 * import { type ChangeEvent, isChangeEvent } from "@sluice/sluice";
 * import assert from "node:assert/strict";
 *
 * const event: ChangeEvent = {
 *   before: { id: 7, status: "pending" },
 *   after: { id: 7, status: "approved" },
 *   source: {
 *     version: "0.1.0",
 *     connector: "postgresql",
 *     name: "warehouse",
 *     ts_ms: 1714557600000,
 *     snapshot: "false",
 *     db: "smart_warehouse",
 *     schema: "public",
 *     table: "applications",
 *   },
 *   op: "u",
 *   ts_ms: 1714557600123,
 * };
 * assert.ok(isChangeEvent(event));
 * ```
 */
export interface ChangeEvent {
  /** The row before the change; null for inserts and snapshot reads. */
  before: Row | null;
  /** The row after the change; null for deletes. */
  after: Row | null;
  /** Where and when the change happened. */
  source: ChangeSource;
  /** What kind of change it is. */
  op: ChangeOp;
  /** When the connector processed the change, in milliseconds since the epoch. */
  ts_ms: number;
  /** Other envelope fields (for example `transaction`), kept as they came. */
  [field: string]: unknown;
}

/**
 * One record in flight. Records are treated as immutable: transforms return new ones.
 *
 * @example A batch row and a tombstone
 * ```ts
 * import type { SluiceRecord } from "@sluice/sluice";
 *
 * const row: SluiceRecord = {
 *   topic: "public.profile_360",
 *   key: { id: 1 },
 *   value: { id: 1, full_name: "Ada Lovelace" },
 * };
 * const tombstone: SluiceRecord = { topic: "warehouse.public.profile_360", key: { id: 1 }, value: null };
 * ```
 */
export interface SluiceRecord {
  /** Logical destination: a Kafka topic, or the table name a batch source read. */
  readonly topic: string;
  /** Key columns, or null when the record has no key. */
  readonly key: Row | null;
  /** A row, a change event, or null for a tombstone. */
  readonly value: unknown;
  /** Optional string headers, as in Kafka. */
  readonly headers?: Readonly<Record<string, string>>;
  /** Milliseconds since the epoch when the record was produced at its source. */
  readonly timestamp?: number;
  /** Where the record came from (Kafka partition/offset, CDC LSN), for dedup and dead letters. */
  readonly origin?: Readonly<Record<string, JsonValue>>;
  /**
   * The change's position in its source log as an integer, when the source
   * has one (postgres_cdc: the commit LSN of its transaction). Sinks skip
   * events older than what a row holds by it. It never leaves the process:
   * on Kafka the envelope's `source.sequence` and `source.lsn` carry it.
   */
  readonly position?: bigint;
  /**
   * The types of `key` and `value`, when the source knows them (postgres_cdc
   * attaches Debezium's schemas of each table), shared by every record of
   * one table shape. Sinks that write typed formats read them (the kafka
   * sink with `value.converter.schemas.enable=true`). A transform that
   * reshapes rows drops or replaces them.
   */
  readonly schemas?: RecordSchemas;
}

/**
 * True when `value` is shaped like a Debezium change event envelope.
 *
 * @example Change events and plain rows
 * ```ts
 * import { isChangeEvent } from "@sluice/sluice";
 * import assert from "node:assert/strict";
 *
 * assert.equal(isChangeEvent({ op: "d", before: { id: 1 }, after: null, source: {} }), true);
 * assert.equal(isChangeEvent({ id: 1, op: "a column named op" }), false);
 * assert.equal(isChangeEvent(null), false);
 * ```
 */
export function isChangeEvent(value: unknown): value is ChangeEvent {
  if (value === null || typeof value !== "object") return false;
  const op = (value as { op?: unknown }).op;
  return typeof op === "string" && "source" in value &&
    ("after" in value || "before" in value);
}

/**
 * The row a record carries: the `after` image of a change event (or `before`
 * for a delete), or the value itself for a batch row. Null for tombstones.
 *
 * @example The row of a batch record, of a delete event and of a tombstone
 * ```ts
 * import { recordRow } from "@sluice/sluice";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(recordRow({ topic: "t", key: null, value: { id: 1 } }), { id: 1 });
 * const deleted = { op: "d", before: { id: 2 }, after: null, source: {}, ts_ms: 0 };
 * assert.deepEqual(recordRow({ topic: "t", key: { id: 2 }, value: deleted }), { id: 2 });
 * assert.equal(recordRow({ topic: "t", key: { id: 2 }, value: null }), null);
 * ```
 */
export function recordRow(record: SluiceRecord): Row | null {
  const value = record.value;
  if (value === null || value === undefined) return null;
  if (isChangeEvent(value)) return value.after ?? value.before ?? null;
  return typeof value === "object" ? value as Row : null;
}

/**
 * Returns a record whose row images are replaced by `mapRow(row)`: `before`
 * and `after` for change events, the value itself for batch rows. The input
 * is never mutated. Tombstones pass through unchanged. The record's value
 * schema is dropped (the rows' shape may have changed); its key schema stays.
 *
 * @example Dropping a column from both images of a change event
 * ```ts
 * import { mapRecordRows, type SluiceRecord } from "@sluice/sluice";
 * import assert from "node:assert/strict";
 *
 * const record: SluiceRecord = {
 *   topic: "warehouse.public.citizens",
 *   key: { id: 1 },
 *   value: {
 *     op: "u",
 *     before: { id: 1, national_id: "A1", city: "Porto" },
 *     after: { id: 1, national_id: "A1", city: "Braga" },
 *     source: {},
 *     ts_ms: 0,
 *   },
 * };
 * const withoutId = mapRecordRows(record, ({ national_id: _, ...rest }) => rest);
 * assert.deepEqual((withoutId.value as { after: unknown }).after, { id: 1, city: "Braga" });
 * assert.equal((record.value as { after: { national_id: string } }).after.national_id, "A1");
 * ```
 */
export function mapRecordRows(
  record: SluiceRecord,
  mapRow: (row: Row) => Row,
): SluiceRecord {
  const value = record.value;
  if (value === null || value === undefined || typeof value !== "object") return record;
  const base = record.schemas?.value ? withoutValueSchema(record) : record;
  if (isChangeEvent(value)) {
    return {
      ...base,
      value: {
        ...value,
        before: value.before ? mapRow(value.before) : value.before,
        after: value.after ? mapRow(value.after) : value.after,
      },
    };
  }
  return { ...base, value: mapRow(value as Row) };
}

/** The record with its key schema only: its rows are about to change shape. */
function withoutValueSchema(record: SluiceRecord): SluiceRecord {
  const { schemas, ...rest } = record;
  return schemas?.key ? { ...rest, schemas: { key: schemas.key } } : rest;
}

/**
 * The transform step's output with the schemas that still fit: a schema
 * the output carried over unchanged from its input (a `{ ...record }`
 * spread) is dropped for the part whose object the transform replaced, as
 * the shape may have changed; schemas a transform set itself are kept.
 */
export function withFittingSchemas(input: SluiceRecord, output: SluiceRecord): SluiceRecord {
  const schemas = output.schemas;
  if (schemas === undefined || schemas !== input.schemas) return output;
  const keepKey = output.key === input.key && schemas.key !== undefined;
  const keepValue = output.value === input.value && schemas.value !== undefined;
  if (keepKey === (schemas.key !== undefined) && keepValue === (schemas.value !== undefined)) {
    return output;
  }
  const { schemas: _, ...rest } = output;
  if (!keepKey && !keepValue) return rest;
  return { ...rest, schemas: keepKey ? { key: schemas.key } : { value: schemas.value } };
}

/**
 * Header naming the fields a change event's `after` leaves out because the
 * source did not send them (PostgreSQL's unchanged TOAST values), as a JSON
 * array of field names. A typed format (Connect JSON with schemas, Avro)
 * writes a missing optional field as null; the header tells a reader that
 * null is "not sent", so a sink keeps the stored value instead of writing it.
 */
export const UNAVAILABLE_FIELDS_HEADER = "__sluice.unavailable";

/**
 * Header of the create event of an update that changed the row's key: the
 * old key, as JSON (Debezium's header name). A sink takes the fields listed
 * in {@linkcode UNAVAILABLE_FIELDS_HEADER} from the row stored under it.
 */
export const OLD_KEY_HEADER = "__debezium.oldkey";

/** Header of the delete event of an update that changed the row's key: the new key, as JSON. */
export const NEW_KEY_HEADER = "__debezium.newkey";

/**
 * Header of a record whose key a transform replaced with other fields
 * (`value_to_key`): the fields of the key its source gave it, as a JSON
 * array. A sink keyed by columns outside the source's key cannot tell from
 * the new key whether an update moved the row; it reads the source's key
 * here (see {@linkcode sourceKeyFields}).
 */
export const SOURCE_KEY_HEADER = "__sluice.source.key";

/**
 * The fields of the key the record's source gave it: those listed in
 * {@linkcode SOURCE_KEY_HEADER} when a transform replaced the key, else the
 * key's own fields; none for a record without a key (a table without a
 * primary key); undefined for a key that is not a row.
 */
export function sourceKeyFields(record: SluiceRecord): readonly string[] | undefined {
  const header = record.headers?.[SOURCE_KEY_HEADER];
  if (header !== undefined) {
    try {
      const fields = JSON.parse(header);
      if (Array.isArray(fields) && fields.every((f) => typeof f === "string")) return fields;
    } catch {
      // Not ours: read the key itself.
    }
  }
  const key = record.key;
  if (key === null || key === undefined) return [];
  return typeof key === "object" && !Array.isArray(key) ? Object.keys(key) : undefined;
}

/**
 * The fields a record's row leaves out because its source did not send them
 * (see {@linkcode UNAVAILABLE_FIELDS_HEADER}); empty when there are none or
 * the header is not a JSON array of strings.
 *
 * @example An update that left a TOASTed column unchanged
 * ```ts
 * import { unavailableFields } from "@sluice/sluice";
 * import assert from "node:assert/strict";
 *
 * const fields = unavailableFields({
 *   topic: "app.public.documents",
 *   key: { id: 7 },
 *   value: { id: 7, title: "Renamed" },
 *   headers: { "__sluice.unavailable": '["body"]' },
 * });
 * assert.deepEqual(fields, ["body"]);
 * ```
 */
export function unavailableFields(record: SluiceRecord): string[] {
  const header = record.headers?.[UNAVAILABLE_FIELDS_HEADER];
  if (header === undefined) return [];
  try {
    const fields = JSON.parse(header);
    return Array.isArray(fields) && fields.every((f) => typeof f === "string") ? fields : [];
  } catch {
    return [];
  }
}
