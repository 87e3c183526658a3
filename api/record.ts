/**
 * The unit of data that flows through a pipeline.
 *
 * A batch source emits table rows: `value` is the row as an object of column
 * values. A CDC source emits change events: `value` is the Debezium envelope
 * `{ before, after, source, op, ts_ms }`. Transforms and sinks accept both.
 *
 * @module
 */

/** A value that survives `JSON.stringify` and back; used for offsets. */
export type JsonValue =
  | string
  | number
  | boolean
  | null
  | JsonValue[]
  | { [key: string]: JsonValue };

/** A row: column name → value. */
export type Row = Record<string, unknown>;

/** Debezium's operation codes: create, update, delete, read (snapshot), truncate. */
export type ChangeOp = "c" | "u" | "d" | "r" | "t";

/** The `source` block of a Debezium change event. */
export interface ChangeSource {
  version: string;
  connector: string;
  name: string;
  ts_ms: number;
  snapshot: string;
  db: string;
  schema: string;
  table: string;
  txId?: number | null;
  lsn?: number | null;
  [field: string]: unknown;
}

/** A Debezium change event envelope. */
export interface ChangeEvent {
  before: Row | null;
  after: Row | null;
  source: ChangeSource;
  op: ChangeOp;
  ts_ms: number;
  [field: string]: unknown;
}

/** One record in flight. Records are treated as immutable: transforms return new ones. */
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
}

/** True when `value` is shaped like a Debezium change event envelope. */
export function isChangeEvent(value: unknown): value is ChangeEvent {
  if (value === null || typeof value !== "object") return false;
  const op = (value as { op?: unknown }).op;
  return typeof op === "string" && "source" in value &&
    ("after" in value || "before" in value);
}

/**
 * The row a record carries: the `after` image of a change event (or `before`
 * for a delete), or the value itself for a batch row. Null for tombstones.
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
 * is never mutated. Tombstones pass through unchanged.
 */
export function mapRecordRows(
  record: SluiceRecord,
  mapRow: (row: Row) => Row,
): SluiceRecord {
  const value = record.value;
  if (value === null || value === undefined || typeof value !== "object") return record;
  if (isChangeEvent(value)) {
    return {
      ...record,
      value: {
        ...value,
        before: value.before ? mapRow(value.before) : value.before,
        after: value.after ? mapRow(value.after) : value.after,
      },
    };
  }
  return { ...record, value: mapRow(value as Row) };
}
