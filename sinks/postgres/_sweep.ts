/**
 * The sweep after a snapshot. A snapshot taken again (after one was
 * interrupted, after an offset reset, or for a slot that was lost) writes
 * every row its source table holds, but says nothing of the rows it does not
 * hold: rows an earlier attempt wrote and that were deleted at the source
 * before the new snapshot began. No delete event for them will ever come.
 *
 * Every snapshot record carries the snapshot's position (its consistent
 * point), and with a `source.position.column` each write stores it in the
 * row. So when the last snapshot record of a table arrives
 * (`source.snapshot` "last" or "last_in_data_collection", Debezium's
 * markers), the target rows the snapshot did not write are exactly the live
 * rows whose stored position is older than the snapshot's; one set-based
 * statement deletes them (soft or hard, as `delete.mode` says), in the
 * batch's transaction. Rows written by the stream since hold newer positions
 * and are kept. A swept row gets the snapshot's position, so a snapshot
 * record of it still on its way (another Kafka partition) revives it.
 *
 * A first snapshot into an empty table pays one `exists` query at its first
 * record and no sweep: a table that held no older live row when its
 * snapshot began, and got no older write since, has nothing to sweep.
 *
 * Without a position column the rows cannot be told apart; when the
 * snapshot finds the table already holding rows, the sink says so in a
 * warning.
 *
 * Nor can rows of different source tables merged into one target (routed
 * there on purpose, or written by several pipelines): a sweep after one
 * source's snapshot would delete the others' rows. `snapshot.sweep` false
 * turns sweeps off for such a sink, and a sink that has written rows of
 * another source table into the table skips the sweep and warns.
 *
 * @module
 */
import type { Logger } from "@logtape/logtape";
import { isChangeEvent, type SluiceRecord } from "../../api/record.ts";
import { changePosition } from "../../drivers/pg_codec.ts";
import type { Run } from "./_operations.ts";
import type { Queryable, TargetTable } from "./_table.ts";

/** Where a snapshot record stands in its table's snapshot. */
export interface SnapshotMark {
  readonly table: TargetTable;
  readonly edge: "first" | "last";
  /** The snapshot's position (its consistent point). */
  readonly position: bigint;
  /** The source table the snapshot read (`db.schema.table`). */
  readonly source: string;
}

/** The source table of a change event (`db.schema.table`), or undefined. */
function sourceOf(value: unknown): string | undefined {
  if (!isChangeEvent(value) || !value.source) return undefined;
  const { db, schema, table } = value.source as { db?: unknown; schema?: unknown; table?: unknown };
  return table === undefined ? undefined : `${db}.${schema}.${table}`;
}

const FIRST = new Set(["first", "first_in_data_collection"]);
const LAST = new Set(["last", "last_in_data_collection"]);

/** The mark of a record that begins or ends its table's snapshot; undefined otherwise. */
export function snapshotMark(table: TargetTable, record: SluiceRecord): SnapshotMark | undefined {
  const value = record.value;
  if (!isChangeEvent(value) || value.op !== "r") return undefined;
  const snapshot = value.source?.snapshot;
  const edge = LAST.has(snapshot) ? "last" : FIRST.has(snapshot) ? "first" : undefined;
  if (!edge) return undefined;
  const position = record.position ?? changePosition(value.source);
  return position === undefined
    ? undefined
    : { table, edge, position, source: sourceOf(value) ?? record.topic };
}

/** Decides, per target table, whether the end of a snapshot sweeps it, and sweeps. */
export class SnapshotSweeper {
  readonly #logger: Logger;
  /** Table → position of a snapshot that began with no older live row in it. */
  readonly #clean = new Map<string, bigint>();
  /** Tables already warned about (no position column), with the snapshot's position. */
  readonly #warned = new Map<string, bigint>();

  /** Table → the source tables whose change events this sink wrote there. */
  readonly #sources = new Map<string, Set<string>>();

  readonly #positionColumn: string;
  readonly #enabled: boolean;

  /**
   * `positionColumn`: the sink's `source.position.column`, named in the
   * warning; `enabled`: its `snapshot.sweep`.
   */
  constructor(logger: Logger, positionColumn: string, enabled = true) {
    this.#logger = logger;
    this.#positionColumn = positionColumn || "_source_lsn";
    this.#enabled = enabled;
  }

  /** Before the batch's writes: notes which tables a snapshot begins on empty. */
  async before(tx: Queryable, marks: readonly SnapshotMark[]): Promise<void> {
    if (!this.#enabled) return;
    for (const { table, edge, position } of marks) {
      if (edge !== "first" || table.deletes === "none" || table.deleteProblem) continue;
      if (!table.positionColumn) {
        await this.#warnUnpositioned(tx, table, position);
        continue;
      }
      if (await table.holdsOlderRows(tx, table.positionText(position))) {
        this.#clean.delete(table.name);
      } else {
        this.#clean.set(table.name, position);
      }
    }
  }

  /**
   * Forgets that a table was clean when the batch writes a row older than
   * its snapshot there (a late event of an earlier run).
   */
  watch(runs: readonly Run[]): void {
    this.#noteSources(runs);
    if (this.#clean.size === 0) return;
    for (const run of runs) {
      const since = this.#clean.get(run.table.name);
      const column = run.table.positionColumn;
      if (since === undefined || !column) continue;
      for (const operation of run.operations) {
        const position = operation.row[column];
        if (typeof position !== "bigint" || position < since) {
          this.#clean.delete(run.table.name);
          break;
        }
      }
    }
  }

  /** Remembers which source tables' change events went into which table. */
  #noteSources(runs: readonly Run[]): void {
    if (!this.#enabled) return;
    for (const run of runs) {
      if (!run.table.positionColumn) continue; // never swept
      let seen = this.#sources.get(run.table.name);
      let last: unknown;
      for (const operation of run.operations) {
        const source = (operation.record.value as { source?: unknown } | null)?.source;
        if (source === undefined || source === last) continue; // events share their source
        last = source;
        const name = sourceOf(operation.record.value);
        if (name === undefined || seen?.has(name)) continue;
        if (!seen) this.#sources.set(run.table.name, seen = new Set());
        seen.add(name);
      }
    }
  }

  /**
   * After the batch's writes, in its transaction: sweeps the tables whose
   * snapshot ended. Returns what to log once the transaction committed (a
   * batch rolled back deleted nothing).
   */
  async after(tx: Queryable, marks: readonly SnapshotMark[]): Promise<() => void> {
    const reports: (() => void)[] = [];
    for (const { table, edge, position, source } of marks) {
      if (edge !== "last" || table.deletes === "none" || table.deleteProblem) continue;
      if (!table.positionColumn || !this.#enabled) continue;
      if (this.#clean.get(table.name) === position) {
        this.#clean.delete(table.name);
        continue;
      }
      const others = [...this.#sources.get(table.name) ?? []].filter((name) => name !== source);
      if (others.length > 0) {
        this.#logger.warn(
          "Snapshot of {source} into {table} at {position} ended, but {table} also holds rows of {others}, which the sweep cannot tell apart: rows deleted at the source during an interrupted snapshot were not removed. Compare the tables (a reconcile job with repair), and set snapshot.sweep to false on this sink to say that merged tables are meant",
          { source, table: table.name, position: table.positionText(position), others },
        );
        continue;
      }
      const swept = await table.sweepOlderRows(tx, table.positionText(position));
      const fields = { table: table.name, position: table.positionText(position), swept };
      // Nothing swept is the usual end of a snapshot: not worth a line per table.
      reports.push(() =>
        swept === 0
          ? this.#logger.debug(
            "Snapshot of {table} at {position} ended: the target held no row it did not",
            fields,
          )
          : this.#logger.warn(
            "Snapshot of {table} at {position} ended: {swept} rows it did not hold (no longer at the source when it read the table) were deleted in the target ({mode}). If other source tables or pipelines write this table too, set snapshot.sweep to false on its sink: the sweep cannot tell their rows apart",
            { ...fields, mode: table.deletes },
          )
      );
    }
    return () => reports.forEach((report) => report());
  }

  async #warnUnpositioned(tx: Queryable, table: TargetTable, position: bigint): Promise<void> {
    if (this.#warned.get(table.name) === position) return;
    this.#warned.set(table.name, position);
    if (!(await table.holdsLiveRows(tx))) return;
    this.#logger.warn(
      "A snapshot begins writing into {table}, which already holds live rows, and the table has no source position column ({column}): rows deleted at the source before this snapshot will stay live there. Add the column (alter table {table} add column {column} pg_lsn) before the next snapshot so the sink removes them when it ends; for this one, compare the tables (a reconcile job with repair over a postgres_query pipeline of the same table)",
      { table: table.name, column: this.#positionColumn },
    );
  }
}
