/**
 * The consistent snapshot: every captured table read with COPY inside a
 * transaction that imported the snapshot exported by `CREATE_REPLICATION_SLOT`
 * (`SET TRANSACTION SNAPSHOT`). It shows exactly the transactions committed
 * before the slot's consistent point, and streaming starts at that point, so
 * no change is lost or delivered twice between snapshot and stream.
 *
 * Each table is read on its own short-lived connection (postgres.js can
 * leave a connection paused after `COPY … TO STDOUT`, see FACTS.md); the
 * replication connection that exported the snapshot stays idle meanwhile,
 * which keeps the snapshot importable.
 *
 * @module
 */
import type { Logger } from "@logtape/logtape";
import type { SluiceRecord } from "../../api/record.ts";
import { connect } from "../../drivers/postgres.ts";
import { parseCopyText } from "../../drivers/pg_types.ts";
import { type ChangePosition, type EventOptions, readRecord, Tables } from "./_changes.ts";
import { TEXT_SETTINGS } from "./_replication.ts";
import type { TableRef } from "./_slot.ts";

/** What a snapshot needs. */
export interface SnapshotOptions {
  readonly url: string;
  readonly applicationName: string;
  /**
   * The exported snapshot's name. Without one, each table is read in its own
   * repeatable-read transaction (a snapshot asked for by a signal while the
   * stream waits: see `_signals.ts`).
   */
  readonly snapshotName?: string;
  /** The position the records carry (the commit LSN the stream is held at). */
  readonly consistentPoint: bigint;
  readonly tables: readonly TableRef[];
  readonly catalog: Tables;
  readonly events: EventOptions;
  readonly batchSize: number;
  /** Rows' text (COPY) per chunk after which it ends early, for wide rows. */
  readonly batchBytes: number;
  readonly logger: Logger;
}

/**
 * Yields the snapshot's `op: "r"` records in chunks of at most `batchSize`.
 * `source.snapshot` follows Debezium: "first" on the first record, "last" on
 * the last, "first_in_data_collection" / "last_in_data_collection" on the
 * first and last record of each other table, and "true" in between. The
 * postgres sink removes, at a table's last record, the rows the snapshot did
 * not write (rows deleted at the source before it, see `sinks/postgres`).
 */
export async function* readSnapshot(options: SnapshotOptions): AsyncGenerator<SluiceRecord[]> {
  const started = BigInt(Date.now()) * 1000n;
  const position = (snapshot: string): ChangePosition => ({
    commitLsn: options.consistentPoint,
    lsn: options.consistentPoint,
    txId: null,
    micros: started,
    snapshot,
  });
  const middle = position("true");
  let first = true;
  let pending: SluiceRecord[] | undefined;
  const mark = (record: SluiceRecord, snapshot: string) => {
    const value = record.value as { source: { snapshot: string } };
    value.source = { ...value.source, snapshot };
  };
  for (const ref of options.tables) {
    const info = await options.catalog.define(await options.catalog.describe(ref.oid), false);
    if (!info.captured) continue;
    const sql = connect(options.url, {
      max: 1,
      applicationName: `${options.applicationName}:snapshot`,
      connection: { ...TEXT_SETTINGS },
    });
    let rows = 0;
    const firstOfTable = first ? position("first") : position("first_in_data_collection");
    try {
      await sql.unsafe("begin isolation level repeatable read read only");
      if (options.snapshotName !== undefined) {
        await sql.unsafe(
          `set transaction snapshot '${options.snapshotName.replaceAll("'", "''")}'`,
        );
      }
      const stream = await sql.unsafe(`copy (${Tables.snapshotQuery(info)}) to stdout`).readable();
      const names = info.fields.map((f) => f.name);
      const decoders = info.fields.map((f) => f.decode);
      for await (
        const chunk of parseCopyText(
          stream as AsyncIterable<Uint8Array>,
          names,
          decoders,
          options.batchSize,
          options.batchBytes,
        )
      ) {
        const records = chunk.map((row) => {
          const record = readRecord(info, row, rows === 0 ? firstOfTable : middle, options.events);
          first = false;
          rows++;
          return record;
        });
        if (pending) yield pending;
        pending = records;
      }
    } finally {
      await sql.end({ timeout: 0 });
    }
    if (rows > 0) mark(pending!.at(-1)!, "last_in_data_collection");
    options.logger.info("Snapshot of {table}: {rows} rows", {
      table: `${ref.schema}.${ref.table}`,
      rows,
    });
  }
  if (pending) {
    mark(pending[pending.length - 1], "last");
    yield pending;
  }
}
