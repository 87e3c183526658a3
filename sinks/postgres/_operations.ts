/**
 * Records → operations on target tables: field mapping, the row each change
 * event writes, the checks that turn a record the table cannot take into a
 * failure instead of a silent drop, and the ordering of operations into
 * set-based runs.
 *
 * @module
 */
import type { Logger } from "@logtape/logtape";
import { RecordError } from "../../api/errors.ts";
import type { RecordFailure } from "../../api/plugin.ts";
import {
  type ChangeEvent,
  isChangeEvent,
  type Row,
  type SluiceRecord,
  sourceKeyFields,
} from "../../api/record.ts";
import type { Settings } from "./_settings.ts";
import type { TargetTable } from "./_table.ts";
import { changePosition } from "../../drivers/pg_codec.ts";
import { encodeText } from "../../drivers/pg_text.ts";

/** One upsert, delete or truncate, ready for the table. */
export interface Operation {
  kind: "upsert" | "delete" | "truncate";
  record: SluiceRecord;
  row: Row;
  /** The key columns' values as one string, computed once (see {@linkcode keyOf}). */
  key?: string;
  /**
   * Earlier operations on the same key in the same run folded into this one
   * (see `lastPerKey` in `_merge.ts`): they are written or skipped with it.
   */
  folded?: number;
}

/** Operations of one kind on one table, applied by one set-based statement. */
export interface Run {
  table: TargetTable;
  kind: Operation["kind"];
  operations: Operation[];
}

/** The identity of an operation's row in its table. */
export function keyOf(table: TargetTable, operation: Operation): string {
  if (operation.key !== undefined) return operation.key;
  const columns = table.primaryKey;
  operation.key = columns.length === 1
    ? String(operation.row[columns[0]])
    : columns.map((c) => String(operation.row[c])).join("\u001f");
  return operation.key;
}

/** A failure of the sink stage for `record`. */
export function sinkFailure(record: SluiceRecord, message: string): RecordFailure {
  const error = new RecordError(message, "sink");
  // The sink's call stack says nothing about a rejected row, and formatting it
  // (source-mapped, for the dead letter's stacktrace header) costs about a
  // millisecond per row: thousands of bad rows would spend seconds on it.
  error.stack = `${error.name}: ${message}`;
  return { record, error, stage: "sink" };
}

/** Maps record fields to target columns, remembering each table's answer per field. */
export class Projector {
  readonly #settings: Settings;
  readonly #logger: Logger;
  readonly #columnOf = new Map<TargetTable, Map<string, string | null>>();
  readonly #excludedLogged = new Set<string>();

  constructor(settings: Settings, logger: Logger) {
    this.#settings = settings;
    this.#logger = logger;
  }

  /** The column a field goes to in `table`, or null when the table lacks it. */
  columnOf(table: TargetTable, field: string): string | null {
    let columns = this.#columnOf.get(table);
    if (!columns) this.#columnOf.set(table, columns = new Map());
    let column = columns.get(field);
    if (column === undefined) {
      const mapped = this.#settings.mapping.get(field) ?? field;
      column = table.columns.has(mapped) ? mapped : null;
      columns.set(field, column);
    }
    return column;
  }

  /**
   * Whether a field is left out on purpose: listed in `fields.exclude`, or
   * going to a generated column, whose value the target computes itself.
   */
  excluded(table: TargetTable, field: string): boolean {
    const column = this.#settings.mapping.get(field) ?? field;
    if (table.generatedColumns.has(column)) {
      const logged = `${table.name}\u0000${column}`;
      if (!this.#excludedLogged.has(logged)) {
        this.#excludedLogged.add(logged);
        this.#logger.info(
          "Column {column} of {table} is generated: the table computes it, so field {field} is not written to it",
          { column, table: table.name, field },
        );
      }
      return true;
    }
    if (!this.#settings.excludedFields.has(field)) return false;
    if (!this.#excludedLogged.has(table.name)) {
      this.#excludedLogged.add(table.name);
      this.#logger.debug("Fields excluded from {table}: {fields}", {
        table: table.name,
        fields: [...this.#settings.excludedFields].join(", "),
      });
    }
    return true;
  }

  /** The fields of `source` that `table` has no column for (excluded fields aside). */
  unknownFields(table: TargetTable, source: Row): string[] {
    const unknown: string[] = [];
    for (const field in source) {
      if (this.columnOf(table, field) === null && !this.excluded(table, field)) {
        unknown.push(field);
      }
    }
    return unknown;
  }

  /** The row as the table's columns; fields without a column are left out. */
  project(table: TargetTable, source: Row): Row {
    const row: Row = {};
    for (const field in source) {
      const column = this.columnOf(table, field);
      if (column !== null) row[column] = source[field];
    }
    return row;
  }

  /**
   * The operation a record makes on `table`; a failure when the table cannot
   * take it as configured; undefined when it deliberately changes nothing
   * (a tombstone after its positioned delete, a delete with delete.mode none).
   */
  operationOf(
    table: TargetTable,
    record: SluiceRecord,
  ): Operation | Operation[] | RecordFailure | undefined {
    const value = record.value;
    if (value === null || value === undefined) {
      if (!record.key) return undefined;
      // With a position column, an unpositioned tombstone (Debezium's, after
      // its delete event) is left to that event, which carries the delete and
      // its position: replayed later, the tombstone could delete a row that
      // was re-created since. A positioned one is a delete event flattened
      // (unwrap keeps the event's position): it deletes, guarded like one.
      if (table.positionColumn && record.position === undefined) return undefined;
      return this.#positioned(table, this.#delete(table, record, record.key), record.position);
    }
    if (!isChangeEvent(value)) {
      const blind = this.#flattenedBlindToMove(table, record);
      if (blind) return blind;
      // A row flattened from a change event keeps the event's position.
      return this.#positioned(table, this.#upsert(table, record, value as Row), record.position);
    }
    const blind = this.#blindToMove(table, record, value);
    if (blind) return blind;
    const operation = this.#movedKey(table, record, value) ?? this.#change(table, record, value);
    return this.#positioned(table, operation, record.position ?? changePosition(value.source));
  }

  /**
   * An update of a table keyed here by columns other than the event's key
   * (primary.key.fields, a target keyed otherwise) that lacks their old
   * values: whether the row moved to another key of this table cannot be
   * told, and upserted as it is, a moved row would leave its old row live
   * beside it. It fails (dead letter or stop) instead. The source's key
   * cannot have changed (PostgreSQL then sends the old key), so its columns
   * are safe; REPLICA IDENTITY FULL sends the old row, and `#movedKey` then
   * moves it.
   */
  #blindToMove(
    table: TargetTable,
    record: SluiceRecord,
    value: ChangeEvent,
  ): RecordFailure | undefined {
    if (value.op !== "u") return undefined;
    // Most tables are keyed by the event's key: no image is looked at then.
    const outside = this.#outsideSourceKey(table, record);
    if (outside.length === 0) return undefined;
    const before = value.before ? this.project(table, value.before) : {};
    const unknown = outside.filter((column) =>
      before[column] === undefined || before[column] === null
    );
    if (unknown.length === 0) return undefined;
    return sinkFailure(
      record,
      `Cannot tell whether this update moved the row to another key of table ${table.name}: ` +
        `its key ${unknown.map((c) => `"${c}"`).join(", ")} is not the event's key, and the ` +
        `event does not carry the old values (the source table's replica identity sends only ` +
        `its own key). Upserted, a moved row would leave its old row live. Set REPLICA ` +
        `IDENTITY FULL on the source table, or key the target by the source's key`,
    );
  }

  /**
   * A row flattened from a change event in this process (`unwrap` keeps the
   * event's position) into a table keyed by columns outside the event's
   * key: the old row is gone with the event, so an update that moved the
   * row to another key cannot be told from a create, and upserted it would
   * leave the old row live. Every such row fails, from the first one (the
   * snapshot's), so the configuration is fixed before an update is lost.
   * Rows read from Kafka carry no position: a flattened topic is upserted
   * by value as Kafka Connect's JDBC sink does (see the README).
   */
  #flattenedBlindToMove(table: TargetTable, record: SluiceRecord): RecordFailure | undefined {
    if (record.position === undefined) return undefined;
    const outside = this.#outsideSourceKey(table, record);
    if (outside.length === 0) return undefined;
    return sinkFailure(
      record,
      `Cannot place a row flattened from a change event (unwrap) in table ${table.name}: its ` +
        `key ${outside.map((c) => `"${c}"`).join(", ")} is not the event's key, and without ` +
        `the event an update that moved the row to another key looks like a create. ` +
        `Upserted, a moved row would leave its old row live. Leave unwrap out before the ` +
        `postgres sink (it applies change events itself, and moves such rows when the source ` +
        `table has REPLICA IDENTITY FULL), or key the target by the source's key`,
    );
  }

  /**
   * The table's key columns that the key the record's source gave it does
   * not hold (none for a record without a row key: nothing to compare).
   */
  #outsideSourceKey(table: TargetTable, record: SluiceRecord): string[] {
    const fields = sourceKeyFields(record);
    if (fields === undefined) return [];
    const sourceKey = new Set(fields.map((field) => this.columnOf(table, field)));
    return table.primaryKey.filter((column) => !sourceKey.has(column));
  }

  /** Writes `position` into the position column of the operation's rows, when the table has one. */
  #positioned<T extends Operation | Operation[] | RecordFailure | undefined>(
    table: TargetTable,
    operation: T,
    position: bigint | undefined,
  ): T {
    const column = table.positionColumn;
    // A bigint: the column's encoder writes it as an LSN or a number.
    if (operation && column && position !== undefined) {
      for (const one of Array.isArray(operation) ? operation : [operation]) {
        if ("kind" in one) one.row[column] = position;
      }
    }
    return operation;
  }

  /**
   * An update whose old image (REPLICA IDENTITY FULL) holds other values of
   * the table's key columns than its new one: the row moved to another key
   * of this table, though not of the source's (a table without a primary
   * key, keyed here by primary.key.fields). As for a key change the source
   * saw: a delete of the old key and an upsert of the new row, whose
   * unsent (TOAST) values come from the old image.
   */
  #movedKey(
    table: TargetTable,
    record: SluiceRecord,
    value: ChangeEvent,
  ): Operation[] | RecordFailure | undefined {
    if (value.op !== "u" || !value.before || !value.after) return undefined;
    const before = this.project(table, value.before);
    const after = this.project(table, value.after);
    let moved = false;
    for (const column of table.primaryKey) {
      const old = before[column], now = after[column];
      if (old === undefined || old === null || now === undefined || now === null) return undefined;
      if (!sameValue(old, now)) moved = true;
    }
    if (!moved) return undefined;
    const created = this.#upsert(table, record, { ...value.before, ...value.after });
    if (!("kind" in created)) return undefined;
    const deleted = this.#delete(table, record, value.before);
    // delete.mode none: the old row stays, on purpose.
    if (deleted === undefined) return [created];
    return "kind" in deleted ? [deleted, created] : deleted;
  }

  #change(
    table: TargetTable,
    record: SluiceRecord,
    value: ChangeEvent,
  ): Operation | RecordFailure | undefined {
    // A delete's `before` may hold only the key (default replica identity):
    // the key is all a delete needs.
    if (value.op === "d") return this.#delete(table, record, { ...value.before, ...record.key });
    if (value.op === "t") {
      if (table.deletes === "none") return undefined;
      if (table.deleteProblem) {
        return sinkFailure(record, `Cannot apply a truncate: ${table.deleteProblem}`);
      }
      const partition = record.origin?.partition;
      if (partition !== undefined && !table.positionColumn) {
        // Keyed changes spread over the topic's partitions; the truncate (no key) is on one.
        return sinkFailure(
          record,
          `Cannot apply a truncate read from partition ${partition} of "${record.topic}" to ` +
            `table "${table.name}": the changes to the table's rows may be on other partitions, ` +
            `read before or after it, and without a source position column the truncate would ` +
            `also remove rows written after it at the source. Add the column (alter table ` +
            `${table.name} add column "_source_lsn" pg_lsn) so that it removes only older rows, ` +
            `or set delete.mode to "none" to leave truncates out`,
        );
      }
      return { kind: "truncate", record, row: {} };
    }
    if (!value.after) return sinkFailure(record, `a "${value.op}" change event without "after"`);
    return this.#upsert(table, record, value.after);
  }

  #upsert(table: TargetTable, record: SluiceRecord, source: Row): Operation | RecordFailure {
    const unknown = this.unknownFields(table, source);
    if (unknown.length > 0) {
      // With one fixed table, the likelier cause is a record of another table.
      const fixed = this.#settings.table
        ? `; if records of topic "${record.topic}" come from another table than "${table.name}", ` +
          `remove sink.table so that table.name.format names each table from its topic`
        : "";
      const failure = sinkFailure(
        record,
        `table "${table.name}" has no column for field${unknown.length > 1 ? "s" : ""} ` +
          `${unknown.map((f) => `"${f}"`).join(", ")} (schema.evolution is "none"): add the ` +
          `column, map the field with fields.mapping, list it in fields.exclude, or set ` +
          `schema.evolution to "basic"${fixed}`,
      );
      // undefined_column: the sink describes the table again before it dead-letters this.
      Object.assign(failure.error, { code: "42703" });
      return failure;
    }
    const row = this.project(table, source);
    const version = table.versionColumn;
    if (version !== undefined && (row[version] === undefined || row[version] === null)) {
      return sinkFailure(
        record,
        `the record has no version for column "${version}" of table "${table.name}" ` +
          `(version.column), so the version guard cannot tell whether it is newer than the ` +
          `row: give the source's version field a value, or map it to that column with ` +
          `fields.mapping`,
      );
    }
    return { kind: "upsert", record, row };
  }

  #delete(
    table: TargetTable,
    record: SluiceRecord,
    image: Row,
  ): Operation | RecordFailure | undefined {
    if (table.deletes === "none") return undefined;
    if (table.deleteProblem) {
      return sinkFailure(record, `Cannot apply a delete: ${table.deleteProblem}`);
    }
    const row = this.project(table, image);
    // A delete without a version (a key-only before image) is unversioned,
    // not versioned null: it applies whatever the row's version.
    const version = table.versionColumn;
    if (version !== undefined && row[version] === null) delete row[version];
    return { kind: "delete", record, row };
  }
}

/** Whether two values of a key column are the same value (as their text). */
function sameValue(a: unknown, b: unknown): boolean {
  return a === b || encodeText(a) === encodeText(b);
}

/**
 * Splits one table's consecutive operations into runs that keep each key's
 * order: round n holds every key's n-th streak of same-kind operations (its
 * upserts, merged, or its deletes), as a delete run then an upsert run.
 * Change streams interleave upserts and deletes of different keys; this
 * keeps them to a few statements instead of one per alternation. A
 * truncate is a barrier: it ends the rounds before it.
 *
 * Deleting first never breaks a unique column (a delete only frees values),
 * but it does break a foreign key from the table to itself: a category moved
 * to another parent, then its old parent deleted, would find the parent
 * deleted before the move. With `selfReferencing`, runs therefore follow the
 * operations' own order, one run per streak of one kind.
 */
export function runsOf(
  table: TargetTable,
  operations: readonly Operation[],
  selfReferencing = false,
): Run[] {
  // Batch rows are all upserts: one run, nothing to order.
  const kind = operations[0]?.kind;
  if (kind !== "truncate" && operations.every((operation) => operation.kind === kind)) {
    return kind ? [{ table, kind, operations: [...operations] }] : [];
  }
  if (selfReferencing) return streaksOf(table, operations);
  const runs: Run[] = [];
  let streaks = new Map<string, Operation[][]>();
  const flush = () => {
    runs.push(...rounds(table, streaks));
    streaks = new Map();
  };
  for (const operation of operations) {
    if (operation.kind === "truncate") {
      flush();
      runs.push({ table, kind: "truncate", operations: [operation] });
      continue;
    }
    const key = keyOf(table, operation);
    const list = streaks.get(key);
    const last = list?.at(-1);
    if (!list) streaks.set(key, [[operation]]);
    else if (last![0].kind === operation.kind) last!.push(operation);
    else list.push([operation]);
  }
  flush();
  return runs;
}

/** Consecutive operations of one kind as one run each, in their order; a truncate alone. */
function streaksOf(table: TargetTable, operations: readonly Operation[]): Run[] {
  const runs: Run[] = [];
  for (const operation of operations) {
    const last = runs.at(-1);
    if (last && last.kind === operation.kind && operation.kind !== "truncate") {
      last.operations.push(operation);
    } else runs.push({ table, kind: operation.kind, operations: [operation] });
  }
  return runs;
}

/** Round n: every key's n-th streak, deletes first. */
function rounds(table: TargetTable, streaks: ReadonlyMap<string, Operation[][]>): Run[] {
  const runs: Run[] = [];
  for (let round = 0;; round++) {
    const deletes: Operation[] = [];
    const upserts: Operation[] = [];
    for (const list of streaks.values()) {
      const streak = list[round];
      if (!streak) continue;
      (streak[0].kind === "delete" ? deletes : upserts).push(...streak);
    }
    if (deletes.length === 0 && upserts.length === 0) return runs;
    if (deletes.length > 0) runs.push({ table, kind: "delete", operations: deletes });
    if (upserts.length > 0) runs.push({ table, kind: "upsert", operations: upserts });
  }
}

/**
 * Runs of tables that foreign keys link, regrouped so that each table is
 * written once per streak of one kind: consecutive upsert runs become one
 * run per table, parents' first (`rank` ascending); consecutive delete runs
 * one run per table, children's first; consecutive truncates (a source
 * `TRUNCATE … CASCADE` names several tables) children's first too.
 *
 * Why this keeps every key satisfied: within a streak of upserts no row is
 * deleted, so a child's parent is either already there or written before it;
 * within a streak of deletes no row is written, so a child that still points
 * at a parent is gone before it. Per table the operations keep their order,
 * so per key nothing changes. A transaction that alternates an application
 * and its documents then costs two runs per streak, not a run per record.
 */
export function byDependency(runs: readonly Run[], rank: ReadonlyMap<string, number>): Run[] {
  const regrouped: Run[] = [];
  let streak: Run[] = [];
  const flush = () => {
    const direction = streak[0]?.kind === "upsert" ? 1 : -1;
    const order = (run: Run) => direction * rank.get(run.table.name)!;
    regrouped.push(...streak.sort((a, b) => order(a) - order(b)));
    streak = [];
  };
  for (const run of runs) {
    if (streak.length > 0 && run.kind !== streak[0].kind) flush();
    // Each truncate stays a run of its own; upserts and deletes merge per table.
    const same = run.kind === "truncate"
      ? undefined
      : streak.find((other) => other.table.name === run.table.name);
    if (same) same.operations.push(...run.operations);
    else streak.push({ ...run, operations: [...run.operations] });
  }
  flush();
  return regrouped;
}
