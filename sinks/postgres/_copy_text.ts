/**
 * The fast path of the postgres sink: rows that arrive as COPY text (a
 * `postgres_query` source with no transform) go into the target without
 * being decoded and encoded again, when that writes exactly what the
 * records would have written.
 *
 * That holds when every field has its own column (after `fields.mapping`)
 * whose type reads the source's text as the record's value would have
 * been read: the same type, or a widening of the same kind (`integer` into
 * `bigint`, `varchar` into `text`). Anything else, such as an excluded or
 * unknown field, another type, or a table that does not exist yet, takes
 * the decoded path (the reason is logged at debug level).
 *
 * Rows are bulk-COPYed on a first load (a chunk without an offset as one
 * COPY statement, its own transaction), else staged in a table of the
 * target's column types and merged by the same upsert as records (reading
 * typed columns instead of casting text). Whatever the target refuses (a
 * bad value, a missing version, a duplicate key) makes the chunk fall
 * back: its transaction rolls back and the chunk is written as records, so
 * bad rows are isolated and dead-lettered, and counted, exactly as they
 * would be.
 *
 * @module
 */
import type { CopyColumnType, CopyRows } from "../../api/plugin.ts";
import type { ColumnInfo } from "../../drivers/postgres.ts";
import { isConnectionError, quoteIdent } from "../../drivers/postgres.ts";
import type { Savepoints } from "./_isolate.ts";
import type { Projector } from "./_operations.ts";
import type { Queryable, TargetTable } from "./_table.ts";
import { copyTextKeepsDigits, type DigitLimit, lossSql } from "./_digits.ts";

/** OIDs below this are built-in types, the same in every database. */
const FIRST_USER_OID = 16384;

/**
 * Source type → target types that read its text as the decoded value's
 * text would be read: strings into strings, integers into wider numbers.
 */
const WIDENINGS = new Map<number, readonly number[]>([
  [25, [1043]], // text → varchar
  [1043, [25]], // varchar → text
  [1042, [25, 1043]], // char → text, varchar
  [21, [23, 20, 1700]], // smallint → integer, bigint, numeric
  [23, [20, 1700]], // integer → bigint, numeric
  [20, [1700]], // bigint → numeric
]);

/** Whether a target column takes the source type's text as the decoded path would. */
function takesAsIs(source: CopyColumnType, target: ColumnInfo): boolean {
  if (source.typeOid < FIRST_USER_OID) {
    // A query reports a domain column as its base type; the domain's input
    // checks its constraint as it would for the decoded value's text.
    const base = target.baseTypeOid ?? target.typeOid;
    return source.typeOid === target.typeOid || source.typeOid === base ||
      (WIDENINGS.get(source.typeOid)?.includes(base) ?? false);
  }
  // Enums and domains get other OIDs in another database: same name, same text.
  return target.typeOid >= FIRST_USER_OID && source.type === target.type;
}

/**
 * The target columns of the COPY fields, in field order, or why the rows
 * must be decoded instead.
 */
export function copyTextColumns(
  table: TargetTable,
  projector: Projector,
  fields: readonly CopyColumnType[],
): string[] | string {
  const columns: string[] = [];
  for (const field of fields) {
    const column = projector.columnOf(table, field.name);
    if (column === null) {
      // Records would leave an excluded field out, and fail on an unknown one.
      return projector.excluded(table, field.name)
        ? `field "${field.name}" is excluded (fields.exclude)`
        : `table "${table.name}" has no column for field "${field.name}"`;
    }
    if (columns.includes(column)) return `two fields go to column "${column}"`;
    const target = table.columns.get(column)!;
    if (!takesAsIs(field, target)) {
      return `field "${field.name}" (${field.type}) goes to column "${column}" of type ${target.type}`;
    }
    columns.push(column);
  }
  for (const key of table.primaryKey) {
    if (!columns.includes(key)) return `key column "${key}" is not among the fields`;
  }
  const version = table.versionColumn;
  if (version !== undefined && !columns.includes(version)) {
    return `version column "${version}" is not among the fields`;
  }
  return columns;
}

/** numeric, time, timestamp, timestamptz, timetz and their arrays → the scalar type. */
const SCALAR_OF = new Map<number, number>([
  [1231, 1700],
  [1183, 1083],
  [1115, 1114],
  [1185, 1184],
  [1270, 1266],
]);
const INTEGERS = new Set([20, 21, 23, 1005, 1007, 1016]);

/**
 * The fractional digits every value of a source column has at most, when
 * its type says so: its numeric scale or fractional-second precision
 * (integers have none); undefined when unknown or unbounded.
 */
function sourceDigits(source: CopyColumnType): number | undefined {
  if (INTEGERS.has(source.typeOid)) return 0;
  const modifier = source.typeModifier;
  if (modifier === undefined) return undefined;
  const oid = SCALAR_OF.get(source.typeOid) ?? source.typeOid;
  if (oid === 1700) {
    // numeric's modifier: ((precision << 16) | scale) + 4, scale an 11-bit signed number.
    return modifier < 0 ? undefined : ((((modifier - 4) & 0x7ff) ^ 1024) - 1024);
  }
  if (oid === 1083 || oid === 1114 || oid === 1184 || oid === 1266) {
    return modifier < 0 ? 6 : modifier;
  }
  return undefined;
}

/**
 * The columns of a COPY text chunk whose values PostgreSQL could round
 * (see `_digits.ts`): a target column keeps fewer fractional digits than
 * the source's type guarantees. A chunk is checked for them on the server
 * before it is written.
 */
export function roundingColumns(
  table: TargetTable,
  columns: readonly string[],
  fields: readonly CopyColumnType[],
): string[] {
  if (table.digitLimits.size === 0) return [];
  return columns.filter((column, i) => {
    const limit = table.digitLimits.get(column);
    // COPY text reaches a date or float column only from its own type (see takesAsIs).
    if (!limit || limit.kind === "date" || limit.kind === "real" || limit.kind === "double") {
      return false;
    }
    if (limit.kind === "varchar") {
      // A varchar source no longer than the column cannot be cut. Array
      // literals are not looked into (their rows, as records, are).
      const { typeOid, typeModifier } = fields[i];
      return !limit.array &&
        !(typeOid === 1043 && typeModifier !== undefined && typeModifier >= 4 &&
          typeModifier - 4 <= limit.digits);
    }
    const digits = sourceDigits(fields[i]);
    // An interval's type may also cut fields off: always checked.
    return limit.loose.startsWith("interval") || digits === undefined || digits > limit.digits;
  });
}

/**
 * Of the `rounding` columns, those whose values the rows are checked for
 * on the server (intervals, whose text may lose whole fields); the others
 * are checked in the text itself. False when a value in the text would be
 * rounded: the chunk is written as records, which refuses it.
 */
export function checkCopyText(
  columns: readonly string[],
  rounding: readonly string[],
  table: TargetTable,
  text: Uint8Array,
): string[] | false {
  const limits = new Map<number, DigitLimit>();
  const server: string[] = [];
  for (const column of rounding) {
    const limit = table.digitLimits.get(column)!;
    if (limit.loose.startsWith("interval")) server.push(column);
    else limits.set(columns.indexOf(column), limit);
  }
  if (limits.size > 0 && !copyTextKeepsDigits(text, columns.length, limits)) return false;
  return server;
}

/** What a chunk wrote, to be accounted once its transaction committed. */
export interface CopyTextWrite {
  written: number;
  skipped: number;
  /** Rows COPYed in bulk mode. */
  bulkRows: number;
  /** Key checksums of the rows given and written (see `mergeWithKeySums` in `_table.ts`). */
  givenChecksum: bigint;
  writtenChecksum: bigint;
}

/**
 * Bulk-COPYs a chunk (a first load into an empty table) as one statement on
 * its own: a COPY outside a transaction block commits as a whole or not at
 * all, as the chunk's own transaction would, without the round trips of
 * BEGIN, a savepoint and COMMIT. For chunks that carry no offset (the offset
 * goes in the same transaction as the rows). Undefined when the target
 * refused the chunk: bulk mode ends, and the caller writes it with
 * {@linkcode writeCopyText}.
 */
export async function bulkCopyText(
  sql: Queryable,
  table: TargetTable,
  columns: readonly string[],
  copy: CopyRows,
  options: { debug: (message: string) => void; rounding?: readonly string[] },
): Promise<CopyTextWrite | undefined> {
  if (!bulkFits(table, options.rounding ?? [])) return undefined;
  try {
    await table.copyTextInto(sql, columns, copy.text);
  } catch (error) {
    if (isConnectionError(error)) throw error;
    table.bulk = false;
    options.debug(`Bulk COPY into ${table.name} ended: ${(error as Error).message}`);
    return undefined;
  }
  return { ...NOTHING, written: copy.count, bulkRows: copy.count };
}

/** What a chunk that wrote nothing yet counts. */
const NOTHING = { skipped: 0, givenChecksum: 0n, writtenChecksum: 0n };

/**
 * Whether a chunk may go in with a plain COPY: a first load, without a
 * version guard, which must see every row's version first (a null one
 * fails its record, which a bulk COPY would store), and without `rounding`
 * columns, whose values must be checked first (COPY would round them).
 */
function bulkFits(table: TargetTable, rounding: readonly string[]): boolean {
  return table.bulk && table.versionColumn === undefined && rounding.length === 0;
}

/**
 * Writes a chunk of COPY text into `table` inside `tx`: bulk COPY on a first
 * load, else staged and merged. Undefined when the target refused a row:
 * the caller rolls back and writes the chunk as records.
 */
export async function writeCopyText(
  tx: Savepoints,
  table: TargetTable,
  columns: readonly string[],
  copy: CopyRows,
  options: { debug: (message: string) => void; rounding?: readonly string[] },
): Promise<CopyTextWrite | undefined> {
  const { text, count } = copy;
  const rounding = options.rounding ?? [];
  if (bulkFits(table, rounding)) {
    try {
      await tx.savepoint((sp) => table.copyTextInto(sp, columns, text));
      return { ...NOTHING, written: count, bulkRows: count };
    } catch (error) {
      if (isConnectionError(error)) throw error;
      table.bulk = false;
      options.debug(`Bulk COPY into ${table.name} ended: ${(error as Error).message}`);
    }
  }
  await table.stageText(tx, columns, text);
  if (rounding.length > 0 && await wouldRound(tx, table, columns, rounding)) return undefined;
  // Checked rows of a first load go in without the merge's conflict handling.
  if (table.bulk && table.versionColumn === undefined) {
    try {
      await tx.savepoint((sp) => table.insertStaged(sp, columns));
      return { ...NOTHING, written: count, bulkRows: count };
    } catch (error) {
      if (isConnectionError(error)) throw error;
      table.bulk = false;
      options.debug(`Bulk insert into ${table.name} ended: ${(error as Error).message}`);
    }
  }
  const version = table.versionColumn;
  if (version !== undefined) {
    const [{ missing }] = await tx.unsafe<{ missing: boolean }[]>(
      `select exists (select 1 from ${table.typedStagingName(columns)} s
        where s.${quoteIdent(version)} is null) as missing`,
    );
    if (missing) return undefined;
  }
  let merged;
  try {
    // No savepoint: a refused merge rolls the whole transaction back anyway.
    [merged] = await table.mergeWithKeySums(tx, columns);
  } catch (error) {
    if (isConnectionError(error)) throw error;
    return undefined;
  }
  // Only the guards may leave rows alone; any other shortfall fails validation.
  const skipped = table.guarded ? count - merged.n : 0;
  const writtenChecksum = BigInt(merged.s);
  // As for records: rows a guard skipped on purpose are left out of the check.
  const givenChecksum = table.guarded && merged.n !== count ? writtenChecksum : BigInt(merged.g);
  return { written: merged.n, skipped, bulkRows: 0, givenChecksum, writtenChecksum };
}

/**
 * Whether a staged row holds a value one of the `rounding` columns would
 * round, as PostgreSQL reads it; a value it cannot read at all counts too
 * (records then isolate it).
 */
async function wouldRound(
  tx: Savepoints,
  table: TargetTable,
  columns: readonly string[],
  rounding: readonly string[],
): Promise<boolean> {
  const conditions = rounding.map((column) =>
    lossSql(table.digitLimits.get(column)!, "s", quoteIdent(column))
  );
  try {
    const [{ lossy }] = await tx.savepoint((sp) =>
      sp.unsafe<{ lossy: boolean }[]>(
        `select exists (select 1 from ${table.typedStagingName(columns)} s
           where ${conditions.join(" or ")}) as lossy`,
      )
    );
    return lossy;
  } catch (error) {
    if (isConnectionError(error)) throw error;
    return true;
  }
}
