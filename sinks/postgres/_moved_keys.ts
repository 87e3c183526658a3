/**
 * Rows written from changes that lack values the source did not send.
 *
 * PostgreSQL does not send an unchanged TOAST value, and an update that
 * changes the key becomes a delete of the old key and a create of the new
 * one. The create then lacks those values, and a plain insert would store
 * NULL in their place. Its `__debezium.oldkey` header names the row that
 * holds them: they are taken from the same batch when an earlier record of
 * it wrote that key, else from the target as it was before the batch. When
 * neither holds them, the record fails (dead letter or stop, as
 * configured) instead of being written with NULLs.
 *
 * A plain update keeps the stored values (an upsert leaves out what it
 * lacks), so long as there is a stored row: one the target never received
 * (filtered out upstream, deleted in the target, synced from a later
 * position) would be inserted with NULLs, so that update fails the same way.
 *
 * @module
 */
import { parseJsonExact } from "../../api/json.ts";
import type { RecordFailure } from "../../api/plugin.ts";
import { type ChangeEvent, OLD_KEY_HEADER, type Row, unavailableFields } from "../../api/record.ts";
import { changePosition } from "../../drivers/pg_codec.ts";
import { keyOf, type Operation, type Projector, sinkFailure } from "./_operations.ts";
import type { Queryable, TargetTable } from "./_table.ts";

/** An upsert that needs stored values, and where they are. */
interface Move {
  operation: Operation;
  /** The old key as the table's key columns. */
  oldKey: Row;
  /** Target columns to fill. */
  columns: string[];
  /** False for an update of the same key: its row must exist, its values stay as stored. */
  moved: boolean;
}

/**
 * Fills the values the source did not send into the upserts of moved keys;
 * returns the operations that can be written (the others went to `failures`).
 */
export async function fillMovedRows(
  sql: Queryable,
  table: TargetTable,
  projector: Projector,
  operations: Operation[],
  failures: RecordFailure[],
): Promise<Operation[]> {
  const moves = new Map<number, Move>();
  const failed = new Set<unknown>();
  const fail = (operation: Operation, message: string) => {
    failed.add(operation.record);
    failures.push(sinkFailure(operation.record, message));
  };
  for (let i = 0; i < operations.length; i++) {
    const move = moveOf(table, projector, operations[i]);
    if (typeof move === "string") fail(operations[i], move);
    else if (move) moves.set(i, move);
  }
  if (moves.size === 0 && failed.size === 0) return operations;

  // From the batch: the latest earlier upsert of the old key that holds the column.
  const fromTarget: Move[] = [];
  // Upserts still waiting for stored values, by operation: a key moved twice
  // in one batch (A → B → C) waits for what B waits for, from A's row.
  const waiting = new Map<Operation, Move>();
  const wait = (move: Move) => {
    fromTarget.push(move);
    waiting.set(move.operation, move);
  };
  for (const [index, move] of moves) {
    const oldKey = keyOf(table, {
      kind: "upsert",
      record: move.operation.record,
      row: move.oldKey,
    });
    const missing = new Set(move.columns);
    for (let j = index - 1; j >= 0 && missing.size > 0; j--) {
      const earlier = operations[j];
      if (earlier.kind !== "upsert" || keyOf(table, earlier) !== oldKey) continue;
      for (const column of missing) {
        if (column in earlier.row) {
          move.operation.row[column] = earlier.row[column];
          missing.delete(column);
        }
      }
      const upstream = waiting.get(earlier);
      if (upstream && missing.size > 0) {
        wait({ ...move, oldKey: upstream.oldKey, columns: [...missing] });
        missing.clear();
      }
    }
    if (missing.size > 0) wait({ ...move, columns: [...missing] });
  }

  // From the target, one query per set of columns (and position, for moves read from Kafka).
  const lookups: { move: Move; before?: string }[] = [];
  for (const move of fromTarget) {
    const before = olderThan(table, move);
    if (typeof before === "object") fail(move.operation, before.problem);
    else lookups.push({ move, before });
  }
  const byColumns = Map.groupBy(
    lookups,
    ({ move, before }) => `${move.columns.join("\u001f")}\u0000${before ?? ""}`,
  );
  for (const group of byColumns.values()) {
    const moves = group.map(({ move }) => move);
    const stored = await table.storedValues(
      sql,
      moves.map((m) => m.oldKey),
      moves[0].columns,
      group[0].before,
    );
    moves.forEach((move, i) => {
      const values = stored[i];
      if (values) {
        if (move.moved) Object.assign(move.operation.row, values);
        return;
      }
      if (!move.moved) {
        fail(
          move.operation,
          `table "${table.name}" holds no row ${JSON.stringify(move.oldKey)}, and this update ` +
            `did not carry the unchanged TOAST value of ${
              move.columns.map((c) => `"${c}"`).join(", ")
            }: inserted, the row would hold NULL there. Set REPLICA IDENTITY FULL on the ` +
            `source table to have such values sent, then re-sync the row`,
        );
        return;
      }
      fail(
        move.operation,
        `the key of a row of "${table.name}" changed from ${JSON.stringify(move.oldKey)}, ` +
          `and PostgreSQL did not send the unchanged TOAST value of ${
            move.columns.map((c) => `"${c}"`).join(", ")
          }; the target has no row under the old key to take it from${
            group[0].before === undefined ? "" : ` written before ${group[0].before}`
          }, so the row cannot be ` +
          `written whole. Set REPLICA IDENTITY FULL on the source table to have the values ` +
          `sent, then re-sync the row`,
      );
    });
  }
  return failed.size === 0
    ? operations
    : operations.filter((operation) => !failed.has(operation.record));
}

/**
 * For a moved key read from Kafka, the position its old key's stored row
 * must be older than: the delete of the old key, and a new row reusing it,
 * may sit on other partitions and have been applied first, and the row
 * under the old key is the moved one only if written before the move.
 * Undefined when the order is the source's (no Kafka partition); a
 * problem when nothing can tell (no position column).
 */
function olderThan(table: TargetTable, move: Move): string | undefined | { problem: string } {
  const record = move.operation.record;
  if (!move.moved || record.origin?.partition === undefined) return undefined;
  const position = record.position ?? changePosition((record.value as ChangeEvent)?.source);
  if (!table.positionColumn || position === undefined) {
    return {
      problem:
        `the key of a row of "${table.name}" changed from ${
          JSON.stringify(move.oldKey)
        }, and PostgreSQL did not send the unchanged TOAST value of ${
          move.columns.map((c) => `"${c}"`).join(", ")
        }; read from Kafka, the row under the old key may already be a newer one (its ` +
        `changes are on other partitions), and without a source position column nothing ` +
        `tells. Add the column (alter table ${table.name} add column "_source_lsn" pg_lsn), ` +
        `or set REPLICA IDENTITY FULL on the source table to have the values sent`,
    };
  }
  return table.positionText(position);
}

/** What an upsert needs from its old key's row; a message when it cannot say. */
function moveOf(
  table: TargetTable,
  projector: Projector,
  operation: Operation,
): Move | string | undefined {
  if (operation.kind !== "upsert") return undefined;
  const record = operation.record;
  const fields = unavailableFields(record);
  if (fields.length === 0) return undefined;
  const columns = fields
    .map((field) => projector.columnOf(table, field))
    .filter((column): column is string => column !== null && !(column in operation.row));
  if (columns.length === 0) return undefined;
  const header = record.headers?.[OLD_KEY_HEADER];
  if (header === undefined) {
    const ownKey = Object.fromEntries(table.primaryKey.map((c) => [c, operation.row[c]]));
    return { operation, oldKey: ownKey, columns, moved: false };
  }
  let parsed: unknown;
  try {
    // Exact: a rounded int64 would name a neighbouring row and copy its values.
    parsed = parseJsonExact(header);
  } catch {
    parsed = undefined;
  }
  const oldKey = parsed && typeof parsed === "object" && !Array.isArray(parsed)
    ? projector.project(table, parsed as Row)
    : undefined;
  if (!oldKey || table.primaryKey.some((column) => oldKey[column] == null)) {
    return `the key of a row of "${table.name}" changed, and the values of ${
      columns.map((c) => `"${c}"`).join(", ")
    } were not sent; its ${OLD_KEY_HEADER} header (${
      header.slice(0, 200)
    }) does not give the old key's columns ${
      table.primaryKey.map((c) => `"${c}"`).join(", ")
    }, so they cannot be taken from the stored row`;
  }
  return { operation, oldKey, columns, moved: true };
}
