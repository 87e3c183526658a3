/**
 * Hand-made change events for the postgres sink's tests.
 *
 * @module
 */
import type { ChangeOp, Row, SluiceRecord } from "../../../api/record.ts";

/**
 * A change event as postgres_cdc makes it, of `public.<table>` (default
 * `items`) at commit LSN `commit`, on topic `shop.public.<table>` unless
 * given; keyed by `key`, else by the row's `id`.
 */
export function changeEvent(
  op: ChangeOp,
  row: Row | null,
  commit: number,
  { key, table = "items", topic = `shop.public.${table}` }: {
    key?: Row;
    table?: string;
    topic?: string;
  } = {},
): SluiceRecord {
  const image = row ?? key ?? {};
  return {
    topic,
    key: key ?? (row ? { id: row.id } : null),
    value: {
      before: op === "d" ? image : null,
      after: op === "d" || op === "t" ? null : row,
      source: {
        version: "test",
        connector: "postgresql",
        name: "shop",
        ts_ms: 0,
        snapshot: "false",
        db: "src",
        sequence: `["${commit}","${commit}"]`,
        schema: "public",
        table,
        txId: 1,
        lsn: commit,
      },
      op,
      ts_ms: 0,
    },
  };
}
