/**
 * Schema handling in the manner of Kafka Connect's JDBC sink and Debezium's
 * JDBC sink: `auto.create` makes a missing table from a record, and
 * `schema.evolution` basic adds the columns records bring and widens a
 * column whose values outgrow it.
 *
 * Records carry values, not column types, so types are inferred from the
 * values, conservatively: a type that holds every value of its JavaScript
 * kind without loss (numbers → numeric, strings → text).
 *
 * @module
 */
import type { Row, SluiceRecord } from "../../api/record.ts";
import { isChangeEvent } from "../../api/record.ts";
import { createOnce, parseTableName, quoteIdent, type Sql } from "../../drivers/postgres.ts";
import { sinkFailure } from "./_operations.ts";
import type { Projector } from "./_operations.ts";
import type { RecordFailure } from "../../api/plugin.ts";
import type { Settings } from "./_settings.ts";
import type { TargetTable } from "./_table.ts";

/** The column type auto.create and evolution give a field, from one of its values. */
export function inferType(value: unknown): string {
  if (value === null || value === undefined) return "text";
  switch (typeof value) {
    case "boolean":
      return "boolean";
    case "number":
    case "bigint":
      return "numeric";
    case "string":
      return "text";
  }
  if (value instanceof Uint8Array) return "bytea";
  if (value instanceof Date) return "timestamptz";
  if (Array.isArray(value)) return "text[]";
  return "jsonb";
}

/** The row a record upserts: a change event's `after`, or the record's value. */
export function upsertRow(record: SluiceRecord): Row | undefined {
  const value = record.value;
  if (value === null || value === undefined || typeof value !== "object") return undefined;
  if (isChangeEvent(value)) {
    return value.op === "d" || value.op === "t" ? undefined : value.after ?? undefined;
  }
  return value as Row;
}

/**
 * Creates `name` from `record`: its fields (mapped) as columns, the key
 * fields as primary key, plus the soft-delete, write-timestamp and (for
 * change events) source-position columns the settings name.
 */
export async function createTable(
  sql: Sql,
  name: string,
  record: SluiceRecord,
  settings: Settings,
): Promise<void> {
  const columns = new Map<string, string>();
  const add = (row: Row | null | undefined) => {
    for (const [field, value] of Object.entries(row ?? {})) {
      if (settings.excludedFields.has(field)) continue;
      const column = settings.mapping.get(field) ?? field;
      if (!columns.has(column) || columns.get(column) === "text") {
        columns.set(column, inferType(value));
      }
    }
  };
  add(record.key);
  add(upsertRow(record));
  const key = settings.primaryKeyFields?.length
    ? settings.primaryKeyFields
    : Object.keys(record.key ?? {}).map((field) => settings.mapping.get(field) ?? field);
  if (key.length === 0) {
    throw new Error(
      `Cannot auto.create table "${name}": the record has no key; give primary.key.fields`,
    );
  }
  for (const column of key) if (!columns.has(column)) columns.set(column, "text");
  if (settings.deleteMode === "soft") columns.set(settings.softDeleteColumn, "timestamptz");
  if (settings.writeTimestampColumn) columns.set(settings.writeTimestampColumn, "timestamptz");
  if (settings.positionColumn && isChangeEvent(record.value)) {
    columns.set(settings.positionColumn, "pg_lsn");
  }
  const definitions = [...columns].map(([column, type]) =>
    `${quoteIdent(column)} ${type}${key.includes(column) ? " not null" : ""}`
  );
  definitions.push(`primary key (${key.map(quoteIdent).join(", ")})`);
  await createOnce(
    sql,
    `create table if not exists ${parseTableName(name).quoted} (${definitions.join(", ")})`,
  );
}

/** What a batch needs of a table before it can be written. */
export interface Evolution {
  /** New columns and their types. */
  readonly add: Map<string, string>;
  /** Columns to widen, and to which type. */
  readonly widen: Map<string, string>;
  /** Records whose values the table cannot take by widening. */
  readonly refused: RecordFailure[];
}

/** The columns to add and widen so `table` can take the upserts of `records`. */
export function planEvolution(
  table: TargetTable,
  records: readonly SluiceRecord[],
  projector: Projector,
): Evolution {
  const evolution: Evolution = { add: new Map(), widen: new Map(), refused: [] };
  for (const record of records) {
    const row = upsertRow(record);
    if (!row) continue;
    for (const field of projector.unknownFields(table, row)) {
      const type = inferType(row[field]);
      const earlier = evolution.add.get(field);
      if (earlier === undefined || earlier === "text") evolution.add.set(field, type);
    }
    const problem = widenFor(table, row, projector, evolution.widen);
    if (problem) evolution.refused.push(sinkFailure(record, problem));
  }
  return evolution;
}

const INTEGER_LADDER = ["smallint", "integer", "bigint", "numeric"];
const LIMITS: Record<string, bigint> = {
  smallint: 32767n,
  integer: 2147483647n,
  bigint: 9223372036854775807n,
};

/**
 * Records in `widen` the widenings the row's values need; returns a
 * sentence when a value would need a narrowing or another kind of type.
 */
function widenFor(
  table: TargetTable,
  row: Row,
  projector: Projector,
  widen: Map<string, string>,
): string | undefined {
  for (const field in row) {
    const column = projector.columnOf(table, field);
    if (column === null) continue;
    const current = widen.get(column) ?? table.columns.get(column)!.type;
    const value = row[field];
    const rung = INTEGER_LADDER.indexOf(current);
    if (rung >= 0 && rung < 3 && (typeof value === "number" || typeof value === "string")) {
      const needed = integerTypeFor(value);
      if (needed === undefined) {
        if (typeof value === "string") continue; // Not a number: the database judges it.
        return `column "${column}" of table "${table.name}" is ${current}; the value ${value} ` +
          `is not an integer, and schema.evolution only widens a column within its kind ` +
          `(smallint → integer → bigint → numeric, varchar(n) → longer), never narrows it or ` +
          `changes its kind: change the column yourself`;
      }
      if (INTEGER_LADDER.indexOf(needed) > rung) widen.set(column, needed);
      continue;
    }
    const varchar = /^character varying\((\d+)\)$/.exec(current);
    if (varchar && typeof value === "string" && [...value].length > Number(varchar[1])) {
      widen.set(column, `character varying(${[...value].length})`);
    }
  }
  return undefined;
}

/** The narrowest integer type that holds `value`; undefined when it is not an integer. */
function integerTypeFor(value: number | string): string | undefined {
  let integer: bigint;
  if (typeof value === "number") {
    if (!Number.isInteger(value)) return undefined;
    integer = BigInt(value);
  } else {
    if (!/^[+-]?\d+$/.test(value.trim())) return undefined;
    integer = BigInt(value.trim());
  }
  const magnitude = integer < 0n ? -integer - 1n : integer;
  for (const type of ["smallint", "integer", "bigint"]) {
    if (magnitude <= LIMITS[type]) return type;
  }
  return "numeric";
}

/** Applies an evolution's column additions and widenings, in one transaction. */
export async function applyEvolution(
  sql: Sql,
  table: TargetTable,
  evolution: Evolution,
  settings: Settings,
): Promise<string[]> {
  const changes: string[] = [];
  for (const [field, type] of evolution.add) {
    const column = settings.mapping.get(field) ?? field;
    changes.push(`add column if not exists ${quoteIdent(column)} ${type}`);
  }
  for (const [column, type] of evolution.widen) {
    changes.push(
      `alter column ${quoteIdent(column)} type ${type} using ${quoteIdent(column)}::${type}`,
    );
  }
  if (changes.length === 0) return [];
  await sql.begin(async (tx) => {
    await tx.unsafe("select pg_advisory_xact_lock(hashtext($1))", [table.quoted]);
    await tx.unsafe(`alter table ${table.quoted} ${changes.join(", ")}`);
  });
  return changes;
}
