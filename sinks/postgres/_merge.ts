/**
 * Applies runs of operations to a table: the last operation per key wins
 * (upserts of one key merged, so columns a change event left out keep the
 * value an earlier event gave them), rows are written in groups that carry
 * the same columns, by bulk COPY on a first load or by staging and a
 * set-based merge otherwise.
 *
 * @module
 */
import type { Logger } from "@logtape/logtape";
import { errorMessage } from "../../api/errors.ts";
import type { RecordFailure } from "../../api/plugin.ts";
import { type ChangeEvent, isChangeEvent } from "../../api/record.ts";
import { isConnectionError } from "../../drivers/postgres.ts";
import { type Savepoints, writeStaged } from "./_isolate.ts";
import { keyOf, type Operation, type Run, sinkFailure } from "./_operations.ts";
import { rejectedMessage } from "./_rejected.ts";
import { FOREIGN_KEY_HINT, FOREIGN_KEY_VIOLATION } from "./_foreign_keys.ts";
import { lossSql, lostDigitsMessage } from "./_digits.ts";
import { changePosition } from "../../drivers/pg_codec.ts";
import { keyHash, type Queryable, type TargetTable } from "./_table.ts";

/** Rows written and operations deliberately not applied. */
export interface Counts {
  written: number;
  skipped: number;
}

/** Key checksums over a run of the sink, for validation. */
export interface Totals {
  givenChecksum: bigint;
  writtenChecksum: bigint;
}

/** What applying runs needs besides the transaction. */
export interface MergeContext {
  readonly failures: RecordFailure[];
  readonly totals: Totals;
  readonly logger: Logger;
}

/** Operations on distinct keys that carry the same columns. */
interface Group {
  columns: string[];
  operations: Operation[];
}

/** Applies one run of same-kind operations on one table, isolating rejected rows. */
export async function applyRun(tx: Savepoints, run: Run, context: MergeContext): Promise<Counts> {
  const { table, kind, operations } = run;
  if (kind === "truncate") return await applyTruncates(tx, table, operations, context.failures);
  const counts: Counts = { written: 0, skipped: 0 };
  for (const round of versionRounds(table, operations)) {
    const unique = lastPerKey(table, kind, round, context.failures);
    for (const group of groupsOf(table, kind, unique)) {
      const result = await applyGroup(tx, table, kind, group, context);
      counts.written += result.written;
      counts.skipped += result.skipped;
    }
  }
  return counts;
}

/**
 * Splits a run on a version-guarded table into rounds applied one after
 * another, so that folding the operations of a key never lets an older
 * version replace a newer one: a key whose next operation does not carry a
 * version known to be at least as new (an out-of-order event, or versions
 * that cannot be compared here) starts a new round, and the database's
 * guard decides as if the two had come in separate batches.
 */
function versionRounds(table: TargetTable, operations: readonly Operation[]): Operation[][] {
  const column = table.versionColumn;
  if (column === undefined) return [operations as Operation[]];
  const rounds: Operation[][] = [[]];
  const versions = new Map<string, unknown>();
  for (const operation of operations) {
    const key = keyOf(table, operation);
    const version = operation.row[column];
    if (versions.has(key) && !notOlder(version, versions.get(key))) {
      rounds.push([]);
      versions.clear();
    }
    versions.set(key, version);
    rounds[rounds.length - 1].push(operation);
  }
  return rounds;
}

// An ISO date or timestamp as PostgreSQL prints it, and its UTC offset.
const ISO_TIME = /^(\d{4}-\d\d-\d\d(?:[ T]\d\d:\d\d:\d\d(?:\.\d+)?)?)(Z|[+-]\d\d(?::?\d\d){0,2})?$/;

/** True when version `later` is known to be at least as new as `earlier`. */
function notOlder(later: unknown, earlier: unknown): boolean {
  if (later === earlier) return true;
  if (typeof later === "number" && typeof earlier === "number") return later >= earlier;
  if (typeof later !== "string" || typeof earlier !== "string") return false;
  if (/^-?\d+$/.test(later) && /^-?\d+$/.test(earlier)) return BigInt(later) >= BigInt(earlier);
  const a = ISO_TIME.exec(later), b = ISO_TIME.exec(earlier);
  // Same offset, years 1000–9999: the text orders as the time does.
  return a !== null && b !== null && a[2] === b[2] &&
    a[1].replace("T", " ") >= b[1].replace("T", " ");
}

async function applyTruncates(
  tx: Savepoints,
  table: TargetTable,
  operations: readonly Operation[],
  failures: RecordFailure[],
): Promise<Counts> {
  const column = table.positionColumn;
  let written = 0;
  for (const { record } of operations) {
    const position = column
      ? record.position ?? changePosition((record.value as ChangeEvent).source)
      : undefined;
    const text = position === undefined ? undefined : table.positionText(position);
    // From Kafka, changes of the truncate's own transaction may have come first from other
    // partitions: their rows share its position, and nothing tells which came before it.
    if (text !== undefined && record.origin?.partition !== undefined) {
      if (await table.holdsRowsAt(tx, text)) {
        failures.push(sinkFailure(
          record,
          `Cannot apply a truncate of table "${table.name}" at ${text}: rows its own ` +
            `transaction wrote arrived first from other partitions, and whether each was ` +
            `written before or after the truncate is unknown. Re-sync the table (a new ` +
            `snapshot, or a reconcile job with repair)`,
        ));
        continue;
      }
    }
    await table.truncate(tx, text);
    written++;
  }
  return { written, skipped: 0 };
}

/**
 * The last operation per key, in the order of each key's last operation
 * (ON CONFLICT cannot touch a row twice). Upserts of one key are merged.
 * An operation without its key goes to `failures`.
 */
function lastPerKey(
  table: TargetTable,
  kind: "upsert" | "delete",
  operations: readonly Operation[],
  failures: RecordFailure[],
): Operation[] {
  const byKey = new Map<string, Operation>();
  operations: for (const operation of operations) {
    for (const column of table.primaryKey) {
      const value = operation.row[column];
      if (value === undefined || value === null) {
        // A delete carries the source's key and replica identity only.
        const carried = Object.keys(operation.row).filter((c) => operation.row[c] != null);
        const hint = kind === "delete" && value === undefined
          ? `: the delete carries only ${
            carried.length > 0 ? carried.map((c) => `"${c}"`).join(", ") : "no column"
          } (the source's key and replica identity); key the table by the columns the ` +
            `source's events are keyed by (primary.key.fields), or set REPLICA IDENTITY ` +
            `FULL on the source table`
          : "";
        failures.push(sinkFailure(
          operation.record,
          `key column "${column}" of table "${table.name}" is missing or null${hint}`,
        ));
        continue operations;
      }
    }
    const key = keyOf(table, operation);
    const earlier = byKey.get(key);
    if (earlier === undefined) {
      byKey.set(key, operation);
      continue;
    }
    // Re-inserted so that the map's order is the order of each key's last operation.
    byKey.delete(key);
    const folded = (earlier.folded ?? 0) + 1;
    // Events of one row on several Kafka partitions (a table keyed by
    // primary.key.fields, whose events carry no key) arrive in any order:
    // with source positions, the newer event wins whatever came last.
    const position = table.positionColumn;
    const [older, newer] = position !== undefined &&
        isBefore(operation.row[position], earlier.row[position])
      ? [operation, earlier]
      : [earlier, operation];
    byKey.set(
      key,
      kind === "upsert"
        ? { ...newer, row: { ...older.row, ...newer.row }, folded }
        : { ...newer, folded },
    );
  }
  return [...byKey.values()];
}

/** True when source position `a` is known to be before `b`. */
function isBefore(a: unknown, b: unknown): boolean {
  return typeof a === "bigint" && typeof b === "bigint" && a < b;
}

/** Groups with the same columns, so a row leaving a column out never overwrites it with null. */
function groupsOf(
  table: TargetTable,
  kind: "upsert" | "delete",
  operations: readonly Operation[],
): Group[] {
  const groups = new Map<string, Group>();
  const guards = [table.positionColumn, table.versionColumn];
  for (const operation of operations) {
    // A delete stages its key, and the position and version it carries.
    const columns = kind === "delete"
      ? [
        ...table.primaryKey,
        ...guards.filter((c): c is string => c !== undefined && operation.row[c] !== undefined),
      ]
      : Object.keys(operation.row);
    // Rows of one source list their fields in one order, so no sorting is needed.
    const signature = columns.join("\u0000");
    const group = groups.get(signature);
    if (group) group.operations.push(operation);
    else groups.set(signature, { columns, operations: [operation] });
  }
  return [...groups.values()];
}

/** Writes one group: COPY on a first load, else staged and merged, rejected rows isolated. */
async function applyGroup(
  tx: Savepoints,
  table: TargetTable,
  kind: "upsert" | "delete",
  group: Group,
  context: MergeContext,
): Promise<Counts> {
  const { columns } = group;
  const rounded = await refuseRounded(tx, table, columns, group.operations, context.failures);
  const operations = rounded.kept;
  if (operations.length === 0) return { written: rounded.folded, skipped: 0 };
  const rows = operations.map((op) => op.row);
  if (kind === "upsert" && table.bulk && !hasUpdates(operations)) {
    const copied = await tryBulkCopy(tx, table, columns, rows, context.logger);
    if (copied !== undefined) {
      // COPY writes every row: the operations folded into them are written too.
      const folded = operations.reduce((sum, op) => sum + (op.folded ?? 0), 0);
      return { written: copied + folded, skipped: 0 };
    }
  }
  await table.stage(tx, columns, rows);
  // Which keys were written matters only to count operations folded into
  // guarded writes (see addFolded).
  const keys = table.guarded && operations.some((op) => op.folded);
  const result = await writeStaged(tx, table, kind, columns, operations.length, keys);
  const rejected = new Set<number>();
  for (const reject of result.rejected) {
    rejected.add(reject.row - 1);
    const operation = operations[reject.row - 1];
    const message = rejectedMessage(table, operation.row, reject.message) +
      (reject.sqlstate === FOREIGN_KEY_VIOLATION ? FOREIGN_KEY_HINT : "");
    const failure = sinkFailure(operation.record, message);
    Object.assign(failure.error, { code: reject.sqlstate });
    context.failures.push(failure);
  }
  if (kind === "upsert" && table.guarded && result.count < operations.length) {
    // Snapshot rows the guard kept out are still rows the snapshot found.
    const snapshotRows = operations.flatMap((op, index) =>
      isChangeEvent(op.record.value) && op.record.value.op === "r" ? [index + 1] : []
    );
    await table.stampPositions(tx, columns, snapshotRows);
  }
  const applied = operations.filter((_, index) => !rejected.has(index));
  const givenKeys = result.givenKeys?.filter((_, index) => !rejected.has(index));
  const counts = account(table, kind, applied, { ...result, givenKeys }, context.totals);
  counts.written += rounded.folded;
  // A rejected operation is dead-lettered; the ones folded into it count as written, as before.
  for (const index of rejected) counts.written += operations[index].folded ?? 0;
  return counts;
}

/**
 * Hands the operations carrying a value that a column would round (see
 * `_digits.ts`) to `failures`, as rows PostgreSQL refuses are: PostgreSQL
 * itself would round it on COPY and on the merge's cast alike. Keys,
 * positions and versions of deletes are checked too (a rounded key would
 * delete another row). `folded`: operations folded into the refused ones,
 * counted as written as for refused rows.
 */
async function refuseRounded(
  tx: Savepoints,
  table: TargetTable,
  columns: readonly string[],
  operations: Operation[],
  failures: RecordFailure[],
): Promise<{ kept: Operation[]; folded: number }> {
  if (table.digitLimits.size === 0) return { kept: operations, folded: 0 };
  const refused = new Map<Operation, string>();
  for (const operation of operations) {
    const column = table.roundedColumn(columns, operation.row);
    if (column !== undefined) refused.set(operation, column);
  }
  await refuseCutIntervals(tx, table, columns, operations, refused);
  if (refused.size === 0) return { kept: operations, folded: 0 };
  let folded = 0;
  for (const operation of operations) {
    const column = refused.get(operation);
    if (column === undefined) continue;
    folded += operation.folded ?? 0;
    const limit = table.digitLimits.get(column)!;
    const message = lostDigitsMessage(limit, operation.row[column]);
    const failure = sinkFailure(
      operation.record,
      rejectedMessage(table, operation.row, message, column),
    );
    // numeric_value_out_of_range / datetime_field_overflow, as PostgreSQL would say.
    Object.assign(failure.error, {
      code: limit.kind === "varchar"
        ? "22001" // string_data_right_truncation
        : limit.kind === "numeric" || limit.kind === "real" || limit.kind === "double"
        ? "22003"
        : "22008",
    });
    failures.push(failure);
  }
  return { kept: operations.filter((operation) => !refused.has(operation)), folded };
}

/**
 * Adds to `refused` the operations whose value an interval column would
 * change: the text of an interval may spell a value many ways, and a type
 * such as `interval day` drops whole fields, so PostgreSQL itself compares
 * each value read as an interval and as the column's type (one statement
 * per such column; value by value only when one of them is no interval at
 * all, which the write then refuses anyway).
 */
async function refuseCutIntervals(
  tx: Savepoints,
  table: TargetTable,
  columns: readonly string[],
  operations: readonly Operation[],
  refused: Map<Operation, string>,
): Promise<void> {
  for (const column of columns) {
    const limit = table.digitLimits.get(column);
    if (!limit?.loose.startsWith("interval")) continue;
    const checked = operations.filter((op) => !refused.has(op) && op.row[column] != null);
    if (checked.length === 0) continue;
    const values = checked.map((op) => table.encode(column, op.row[column]));
    const query = (sql: Queryable, texts: (string | null)[]) =>
      sql.unsafe<{ n: number }[]>(
        `select u.n::int as n from unnest($1::text[]) with ordinality as u(v, n)
          where ${lossSql(limit, "u", "v")}`,
        [texts] as never[],
      );
    let cut: number[];
    try {
      cut = (await tx.savepoint((sp) => query(sp, values))).map((row) => row.n - 1);
    } catch (error) {
      if (isConnectionError(error)) throw error;
      cut = [];
      for (let i = 0; i < values.length; i++) {
        try {
          if ((await tx.savepoint((sp) => query(sp, [values[i]]))).length > 0) cut.push(i);
        } catch (error) {
          if (isConnectionError(error)) throw error;
        }
      }
    }
    for (const index of cut) refused.set(checked[index], column);
  }
}

/** An update event means the row exists: COPY would only fail, so merge. */
function hasUpdates(operations: readonly Operation[]): boolean {
  return operations.some((op) => isChangeEvent(op.record.value) && op.record.value.op === "u");
}

/** COPYs rows straight into the table; undefined when bulk mode has just ended. */
async function tryBulkCopy(
  tx: Savepoints,
  table: TargetTable,
  columns: readonly string[],
  rows: Parameters<TargetTable["copyInto"]>[2],
  logger: Logger,
): Promise<number | undefined> {
  try {
    return await tx.savepoint((sp) => table.copyInto(sp, columns, rows));
  } catch (error) {
    if (isConnectionError(error)) throw error;
    table.bulk = false;
    logger.debug("Bulk COPY into {table} ended: {error}", {
      table: table.name,
      error: errorMessage(error),
    });
    return undefined;
  }
}

/** Adds a write to the key checksums and says what was written and skipped. */
function account(
  table: TargetTable,
  kind: "upsert" | "delete",
  applied: readonly Operation[],
  result: {
    count: number;
    checksum: bigint;
    given?: bigint;
    writtenKeys?: ReadonlySet<string>;
    givenKeys?: readonly string[];
  },
  totals: Totals,
): Counts {
  // Only the stale-event and version guards may skip upserts; any other row
  // the database did not write (a trigger, a rule) must fail validation.
  const staleGuard = kind === "upsert" && table.guarded;
  if (kind === "upsert") {
    totals.writtenChecksum += result.checksum;
    if (result.count === applied.length || !staleGuard) {
      totals.givenChecksum += result.given ?? applied.reduce(
        (sum, op) => sum + keyHash(table.primaryKey.map((c) => op.row[c])),
        0n,
      );
    } else {
      // Stale events were skipped on purpose: the check covers what was written.
      totals.givenChecksum += result.checksum;
    }
  }
  // A delete of a row that is absent (or already deleted), or an event
  // older than the row (stale-event or version guard), changes nothing: skipped.
  const skipped = kind === "upsert" && !staleGuard ? 0 : applied.length - result.count;
  const counts = { written: result.count, skipped };
  addFolded(applied, result, counts);
  return counts;
}

/**
 * Counts the operations folded into applied ones with them: written when
 * their operation was, skipped when it was skipped (a replay of a stream
 * must not report its older events as written).
 */
function addFolded(
  applied: readonly Operation[],
  result: { count: number; writtenKeys?: ReadonlySet<string>; givenKeys?: readonly string[] },
  counts: Counts,
): void {
  let folded = 0;
  for (const op of applied) folded += op.folded ?? 0;
  if (folded === 0) return;
  const { writtenKeys, givenKeys } = result;
  if (result.count === applied.length || (result.count > 0 && !(writtenKeys && givenKeys))) {
    // All written, or (after bad-row isolation, which reports no keys) some:
    // counted as written, as an unguarded write would be.
    counts.written += folded;
  } else if (result.count === 0) {
    counts.skipped += folded;
  } else {
    // Both hashed by PostgreSQL, of the keys as their columns spell them.
    applied.forEach((op, index) => {
      if (writtenKeys!.has(givenKeys![index])) counts.written += op.folded ?? 0;
      else counts.skipped += op.folded ?? 0;
    });
  }
}
