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
  /** The exported snapshot's name. */
  readonly snapshotName: string;
  readonly consistentPoint: bigint;
  readonly tables: readonly TableRef[];
  readonly catalog: Tables;
  readonly events: EventOptions;
  readonly batchSize: number;
  readonly logger: Logger;
}

/**
 * Yields the snapshot's `op: "r"` records in chunks of at most `batchSize`.
 * `source.snapshot` is "first" on the first record, "last" on the last and
 * "true" in between.
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
  for (const ref of options.tables) {
    const info = await options.catalog.define(await options.catalog.describe(ref.oid));
    if (!info.captured) continue;
    const sql = connect(options.url, {
      max: 1,
      applicationName: `${options.applicationName}:snapshot`,
      connection: { ...TEXT_SETTINGS },
    });
    let rows = 0;
    try {
      await sql.unsafe("begin isolation level repeatable read read only");
      await sql.unsafe(`set transaction snapshot '${options.snapshotName.replaceAll("'", "''")}'`);
      const stream = await sql.unsafe(`copy (${Tables.snapshotQuery(info)}) to stdout`).readable();
      const names = info.fields.map((f) => f.name);
      const decoders = info.fields.map((f) => f.decode);
      for await (
        const chunk of parseCopyText(
          stream as AsyncIterable<Uint8Array>,
          names,
          decoders,
          options.batchSize,
        )
      ) {
        const records = chunk.map((row) => {
          const record = readRecord(info, row, first ? position("first") : middle, options.events);
          first = false;
          return record;
        });
        rows += records.length;
        if (pending) yield pending;
        pending = records;
      }
    } finally {
      await sql.end({ timeout: 0 });
    }
    options.logger.info("Snapshot of {table}: {rows} rows", {
      table: `${ref.schema}.${ref.table}`,
      rows,
    });
  }
  if (pending) {
    const last = pending[pending.length - 1];
    const value = last.value as { source: { snapshot: string } };
    value.source = { ...value.source, snapshot: "last" };
    yield pending;
  }
}
