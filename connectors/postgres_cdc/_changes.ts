/**
 * Builds Debezium change events from pgoutput messages and snapshot rows.
 *
 * - key: the primary-key columns (for a table without one, the columns of a
 *   `REPLICA IDENTITY USING INDEX`; otherwise null);
 * - value: `{ before, after, source, op, ts_ms }`; `before` is the old image
 *   pgoutput sends (the key for REPLICA IDENTITY DEFAULT when the key
 *   changed or on deletes, the whole row with FULL), else null;
 * - unchanged TOAST columns come from the old row when PostgreSQL sent it
 *   whole (REPLICA IDENTITY FULL); otherwise they are left out of `after`,
 *   so a sink never overwrites their stored value, and named in the
 *   `__sluice.unavailable` header (a typed format writes a missing field as
 *   null);
 * - an update that changes the key becomes a delete of the old key (plus a
 *   tombstone) and a create of the new one, as Debezium does, with the
 *   `__debezium.newkey` and `__debezium.oldkey` headers. The create's
 *   unchanged TOAST values come from the old row when PostgreSQL sent it
 *   (REPLICA IDENTITY FULL); otherwise the header names them and a sink
 *   takes them from the row it stored under the old key.
 *
 * @module
 */
import {
  type ChangeEvent,
  type ChangeOp,
  type ChangeSource,
  NEW_KEY_HEADER,
  OLD_KEY_HEADER,
  type Row,
  type SluiceRecord,
  UNAVAILABLE_FIELDS_HEADER,
} from "../../api/record.ts";
import type { RecordSchemas } from "../../api/schema.ts";
import { quoteIdent, type Sql } from "../../drivers/postgres.ts";
import type { Decoder } from "../../drivers/pg_text.ts";
import type { CaptureFilter } from "./_filters.ts";
import {
  type PgOutputMessage,
  type Relation,
  type TupleValue,
  UNCHANGED_TOAST,
} from "./_pgoutput.ts";
import { columnFacts, tableSchemas } from "./_schemas.ts";
import { topicName, TopicNames } from "./_topics.ts";
import type { ValueDecoders } from "./_values.ts";

/** What every event of one pipeline shares. */
export interface EventOptions {
  /** `topic.prefix`: the logical server name, first part of every topic. */
  readonly prefix: string;
  /** The database name, for `source.db`. */
  readonly database: string;
  /** `source.version`. */
  readonly version: string;
  readonly tombstones: boolean;
  /** Operations not emitted (`skipped.operations`). */
  readonly skipped: ReadonlySet<ChangeOp>;
  readonly filter: CaptureFilter;
}

/** Where a change sits in the log. */
export interface ChangePosition {
  /** LSN of the commit of the change's transaction (snapshot: the consistent point). */
  readonly commitLsn: bigint;
  /** LSN of the change itself (snapshot: the consistent point). */
  readonly lsn: bigint;
  readonly txId: number | null;
  /** Commit time (snapshot: read time), microseconds since the Unix epoch. */
  readonly micros: bigint;
  /** `source.snapshot`: "false" while streaming. */
  readonly snapshot: string;
}

/** One captured column. */
export interface Field {
  /** Position in the relation's tuples. */
  readonly index: number;
  readonly name: string;
  readonly decode: Decoder;
  /**
   * Not optional in the value schema (NOT NULL, not a key column). Cleared
   * when a null arrives anyway: see {@link nullInRequired}.
   */
  required: boolean;
}

/** A relation as the events need it. */
export interface TableInfo {
  readonly relation: Relation;
  readonly captured: boolean;
  readonly topic: string;
  /** The captured columns, in table order. */
  readonly fields: readonly Field[];
  /** Indexes (into the relation's columns) of the key columns; empty: no key. */
  readonly keyIndexes: readonly number[];
  /** Indexes of the replica identity columns (what a `K` old tuple carries). */
  readonly identityIndexes: readonly number[];
  /** Debezium's key and envelope schemas of this shape (captured tables only). */
  schemas?: RecordSchemas;
  /** The schemas again, with the fields no longer `required` made optional. */
  readonly rebuildSchemas?: () => RecordSchemas;
  /** The key schema alone, for tombstones. */
  readonly keySchemas?: RecordSchemas;
}

/** The relations seen so far, refreshed by every Relation message. */
export class Tables {
  readonly #sql: Sql;
  readonly #decoders: ValueDecoders;
  readonly #options: EventOptions;
  readonly #tables = new Map<number, TableInfo>();
  readonly #topics: TopicNames;

  constructor(sql: Sql, decoders: ValueDecoders, options: EventOptions) {
    this.#sql = sql;
    this.#decoders = decoders;
    this.#options = options;
    this.#topics = new TopicNames(options.prefix);
  }

  get(oid: number): TableInfo | undefined {
    return this.#tables.get(oid);
  }

  /**
   * Describes a relation's (possibly new) shape: its key and decoders when
   * captured. The stream's Relation messages are remembered (`keep`), and
   * its changes decoded with them until the next one; a snapshot's
   * description of the live table is not, so a snapshot taken while the
   * stream waits (a signal) does not make the changes streamed after it,
   * written before a later ALTER, decode with the table's newer shape.
   */
  async define(relation: Relation, keep = true): Promise<TableInfo> {
    const { filter, prefix } = this.#options;
    const captured = filter.table(relation.schema, relation.table);
    const topic = captured
      ? await this.#topics.claim(this.#sql, filter, relation)
      : topicName(prefix, relation.schema, relation.table);
    const identityIndexes = relation.columns.flatMap((c, i) => c.identity ? [i] : []);
    let info: TableInfo;
    if (!captured) {
      info = { relation, captured, topic, fields: [], keyIndexes: [], identityIndexes };
    } else {
      const kept = relation.columns.flatMap((column, index) =>
        filter.column(relation.schema, relation.table, column.name) ? [{ column, index }] : []
      );
      const decoders = await this.#decoders.for(kept.map((k) => k.column));
      const keyNames = await this.#keyColumns(relation);
      const keyIndexes = keyNames.map((name) => relation.columns.findIndex((c) => c.name === name))
        .filter((index) => index >= 0);
      const keys = keyIndexes.map((index) => relation.columns[index].name);
      const facts = await columnFacts(this.#sql, relation.oid, kept.map((k) => k.column));
      const fields: Field[] = kept.map((k, i) => ({
        index: k.index,
        name: k.column.name,
        decode: decoders[i],
        required: !keys.includes(k.column.name) && (facts.get(k.column.name)?.notNull ?? false),
      }));
      const rebuildSchemas = () =>
        tableSchemas(
          topic,
          fields.map((f) => ({ name: f.name, facts: facts.get(f.name), optional: !f.required })),
          keys,
          this.#decoders.modes,
        );
      const schemas = rebuildSchemas();
      const keySchemas = schemas.key ? { key: schemas.key } : undefined;
      info = {
        relation,
        captured,
        topic,
        fields,
        keyIndexes,
        identityIndexes,
        schemas,
        keySchemas,
        rebuildSchemas,
      };
    }
    if (keep) this.#tables.set(relation.oid, info);
    return info;
  }

  /**
   * The key columns, in key order. Under the usual REPLICA IDENTITY DEFAULT
   * they are the columns the Relation message flags: pgoutput describes the
   * table as it was when the change was written, so a primary key altered
   * since, while the capture lagged behind, does not re-key the events
   * written before it (the live catalog would). They take the primary key's
   * column order when it still has the same columns. Under USING INDEX,
   * FULL or NOTHING the flags do not name the primary key (FULL flags every
   * column): the key is the primary key as the table has it now, else the
   * identity index's columns, else none.
   */
  async #keyColumns(relation: Relation): Promise<string[]> {
    const primary = (await this.#sql<{ name: string }[]>`
      select a.attname as name
      from pg_index i
      join lateral unnest(i.indkey) with ordinality as k(attnum, position) on true
      join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum
      where i.indrelid = ${relation.oid} and i.indisprimary
      order by k.position`).map((row) => row.name);
    const flagged = relation.columns.filter((c) => c.identity).map((c) => c.name);
    if (relation.replicaIdentity === "d") {
      const same = primary.length === flagged.length && flagged.every((n) => primary.includes(n));
      return same ? primary : flagged;
    }
    if (primary.length > 0) return primary;
    return relation.replicaIdentity === "i" ? flagged : [];
  }

  /**
   * A relation description from the catalog, for the snapshot: the shape
   * pgoutput sends, replica identity flags included.
   */
  async describe(oid: number): Promise<Relation> {
    const rows = await this.#sql<
      {
        schema: string;
        table: string;
        identity: string;
        name: string;
        type_oid: number;
        type_modifier: number;
        in_identity: boolean;
      }[]
    >`
      select n.nspname as schema, c.relname as table, c.relreplident as identity,
             a.attname as name, a.atttypid::int as type_oid, a.atttypmod as type_modifier,
             c.relreplident = 'f' or exists (
               select from pg_index i
               where i.indrelid = c.oid and a.attnum = any(i.indkey::int2[])
                 and case c.relreplident when 'd' then i.indisprimary
                                         when 'i' then i.indisreplident else false end
             ) as in_identity
      from pg_class c
      join pg_namespace n on n.oid = c.relnamespace
      join pg_attribute a on a.attrelid = c.oid
      where c.oid = ${oid} and a.attnum > 0 and not a.attisdropped and a.attgenerated = ''
      order by a.attnum`;
    if (rows.length === 0) throw new Error(`Table with oid ${oid} has no columns or is gone`);
    return {
      oid,
      schema: rows[0].schema,
      table: rows[0].table,
      replicaIdentity: rows[0].identity,
      columns: rows.map((row) => ({
        name: row.name,
        typeOid: row.type_oid,
        typeModifier: row.type_modifier,
        identity: row.in_identity,
      })),
    };
  }

  /** The `SELECT` the snapshot copies: the captured columns of the table. */
  static snapshotQuery(info: TableInfo): string {
    const columns = info.fields.map((f) => quoteIdent(f.name)).join(", ");
    const table = `${quoteIdent(info.relation.schema)}.${quoteIdent(info.relation.table)}`;
    return `select ${columns || "null"} from ${table}`;
  }
}

/** Appends the records of one change message to `records` (none when filtered out). */
export function changeRecords(
  info: TableInfo,
  message: PgOutputMessage,
  position: ChangePosition,
  options: EventOptions,
  records: SluiceRecord[],
): void {
  const emit = (
    op: ChangeOp,
    key: Row | null,
    before: Row | null,
    after: Row | null,
    headers?: Record<string, string>,
  ) => {
    if (options.skipped.has(op)) return;
    records.push(eventRecord(info, op, key, before, after, position, options, headers));
    if (op === "d" && options.tombstones) {
      records.push({
        topic: info.topic,
        key,
        value: null,
        timestamp: Number(position.micros / 1000n),
        schemas: info.keySchemas,
      });
    }
  };
  switch (message.type) {
    case "insert": {
      const after = rowOf(info, message.tuple);
      emit("c", keyOf(info, message.tuple), null, after);
      break;
    }
    case "update": {
      const after = rowOf(info, message.tuple);
      const newKey = keyOf(info, message.tuple);
      const old = message.oldTuple;
      if (old && keyChanged(info, old, message.tuple)) {
        const before = message.oldKind === "K" ? identityRow(info, old) : rowOf(info, old);
        const oldKey = keyOf(info, old);
        const unavailable = fillUnsent(info, after, message.tuple, message.oldKind, old);
        emit("d", oldKey, before, null, { [NEW_KEY_HEADER]: JSON.stringify(newKey) });
        const headers: Record<string, string> = { [OLD_KEY_HEADER]: JSON.stringify(oldKey) };
        if (unavailable.length > 0) {
          headers[UNAVAILABLE_FIELDS_HEADER] = JSON.stringify(unavailable);
        }
        emit("c", newKey, null, after, headers);
        break;
      }
      const before = !old
        ? null
        : message.oldKind === "K"
        ? identityRow(info, old)
        : rowOf(info, old);
      const unavailable = fillUnsent(info, after, message.tuple, message.oldKind, old);
      emit(
        "u",
        newKey,
        before,
        after,
        unavailable.length > 0
          ? { [UNAVAILABLE_FIELDS_HEADER]: JSON.stringify(unavailable) }
          : undefined,
      );
      break;
    }
    case "delete": {
      const before = message.oldKind === "K"
        ? identityRow(info, message.oldTuple)
        : rowOf(info, message.oldTuple);
      emit("d", keyOf(info, message.oldTuple), before, null);
      break;
    }
    case "truncate":
      emit("t", null, null, null);
      break;
  }
}

/** A snapshot (`op: "r"`) record of one row read by COPY. */
export function readRecord(
  info: TableInfo,
  row: Row,
  position: ChangePosition,
  options: EventOptions,
): SluiceRecord {
  for (const field of info.fields) {
    if (field.required && row[field.name] === null) nullInRequired(info, field);
  }
  let key: Row | null = null;
  if (info.keyIndexes.length > 0) {
    key = {};
    for (const index of info.keyIndexes) {
      const name = info.relation.columns[index].name;
      key[name] = row[name];
    }
  }
  return eventRecord(info, "r", key, null, row, position, options);
}

/**
 * Numbers derived from a position's bigints, kept from the previous event:
 * the changes of one transaction share its commit time and commit LSN, and
 * bigint arithmetic per event showed in profiles.
 */
const derived = { micros: -1n, tsMs: 0, tsUs: 0, commitLsn: -1n, commitNumber: 0, commitText: "" };

function eventRecord(
  info: TableInfo,
  op: ChangeOp,
  key: Row | null,
  before: Row | null,
  after: Row | null,
  position: ChangePosition,
  options: EventOptions,
  headers?: Record<string, string>,
): SluiceRecord {
  if (position.micros !== derived.micros) {
    derived.micros = position.micros;
    derived.tsMs = Number(position.micros / 1000n);
    derived.tsUs = Number(position.micros);
  }
  if (position.commitLsn !== derived.commitLsn) {
    derived.commitLsn = position.commitLsn;
    derived.commitNumber = Number(position.commitLsn);
    derived.commitText = String(position.commitLsn);
  }
  const { tsMs, tsUs, commitNumber, commitText } = derived;
  const lsn = Number(position.lsn);
  const source: ChangeSource = {
    version: options.version,
    connector: "postgresql",
    name: options.prefix,
    ts_ms: tsMs,
    snapshot: position.snapshot,
    db: options.database,
    // Debezium's ordering hint, as decimal LSN strings: [commit LSN of the
    // change's transaction, LSN of the change]. Sinks order events by it.
    // JSON.stringify makes one flat string: a template literal kept three
    // rope nodes and their parts alive, ~110 bytes more per record in flight.
    sequence: JSON.stringify([commitText, String(position.lsn)]),
    ts_us: tsUs,
    schema: info.relation.schema,
    table: info.relation.table,
    txId: position.txId,
    lsn,
    xmin: null,
  };
  const now = Date.now();
  const value: ChangeEvent = { before, after, source, op, ts_ms: now, ts_us: now * 1000 };
  const record: SluiceRecord = {
    topic: info.topic,
    key,
    value,
    timestamp: tsMs,
    origin: { lsn, commitLsn: commitNumber },
    position: position.commitLsn,
    schemas: info.schemas,
  };
  return headers ? { ...record, headers } : record;
}

/**
 * The captured fields PostgreSQL did not send in `tuple` (unchanged TOAST
 * values), except those `fallback` (a full old image) holds.
 */
function unsent(
  info: TableInfo,
  tuple: readonly TupleValue[],
  fallback?: readonly TupleValue[],
): string[] {
  const names: string[] = [];
  for (const field of info.fields) {
    if (tuple[field.index] !== UNCHANGED_TOAST) continue;
    if (fallback && fallback[field.index] !== UNCHANGED_TOAST) continue;
    names.push(field.name);
  }
  return names;
}

/**
 * Completes an update's `after` with the unchanged TOAST values the old
 * image holds (REPLICA IDENTITY FULL sends the whole old row), and returns
 * the captured fields still unsent.
 */
function fillUnsent(
  info: TableInfo,
  after: Row,
  tuple: readonly TupleValue[],
  oldKind: "K" | "O" | undefined,
  old: readonly TupleValue[] | undefined,
): string[] {
  const full = oldKind === "O" ? old : undefined;
  if (full) {
    for (const field of info.fields) {
      const value = full[field.index];
      if (tuple[field.index] !== UNCHANGED_TOAST || value === UNCHANGED_TOAST) continue;
      after[field.name] = value === null || value === undefined ? null : field.decode(value);
    }
  }
  return unsent(info, tuple, full);
}

/** The captured columns of a tuple; unchanged TOAST values are left out. */
export function rowOf(info: TableInfo, tuple: readonly TupleValue[]): Row {
  const row: Row = {};
  for (const field of info.fields) {
    const value = tuple[field.index];
    if (value === UNCHANGED_TOAST || value === undefined) continue;
    if (value !== null) row[field.name] = field.decode(value);
    else {
      row[field.name] = null;
      if (field.required) nullInRequired(info, field);
    }
  }
  return row;
}

/**
 * A null in a NOT NULL column: the change was written before the constraint
 * was added, and the capture, decoding it later, read the constraint from
 * the table as it is now (pgoutput does not send NOT NULL). The column turns
 * optional in this shape's schemas from this event on, rather than events
 * that a schema-checking converter would refuse.
 */
function nullInRequired(info: TableInfo, field: Field): void {
  field.required = false;
  if (info.rebuildSchemas) info.schemas = info.rebuildSchemas();
}

/** The replica identity columns of a `K` old tuple (the others are sent as nulls). */
function identityRow(info: TableInfo, tuple: readonly TupleValue[]): Row {
  const row: Row = {};
  for (const field of info.fields) {
    if (!info.identityIndexes.includes(field.index)) continue;
    const value = tuple[field.index];
    if (value === UNCHANGED_TOAST || value === undefined) continue;
    row[field.name] = value === null ? null : field.decode(value);
  }
  return row;
}

function keyOf(info: TableInfo, tuple: readonly TupleValue[]): Row | null {
  if (info.keyIndexes.length === 0) return null;
  const key: Row = {};
  for (const index of info.keyIndexes) {
    const value = tuple[index];
    const field = info.fields.find((f) => f.index === index);
    const name = info.relation.columns[index].name;
    key[name] = value === null || value === undefined || value === UNCHANGED_TOAST
      ? null
      : field
      ? field.decode(value)
      : value;
  }
  return key;
}

function keyChanged(
  info: TableInfo,
  before: readonly TupleValue[],
  after: readonly TupleValue[],
): boolean {
  if (info.keyIndexes.length === 0) return false;
  return info.keyIndexes.some((index) =>
    after[index] !== UNCHANGED_TOAST && before[index] !== UNCHANGED_TOAST &&
    before[index] !== after[index]
  );
}
