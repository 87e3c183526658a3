/**
 * Helpers for the change-data-capture tests: running a stream pipeline in
 * the background, waiting for conditions, and reading slot state.
 *
 * @module
 */
import type postgres from "postgres";
import { getLogger } from "@logtape/logtape";
import postgresCdc from "../connectors/postgres_cdc/mod.ts";
import type { SourceBatch } from "../api/plugin.ts";
import type { JsonValue, SluiceRecord } from "../api/record.ts";
import type { PipelineSpec } from "../core/config.ts";
import { MemoryOffsetStore, type OffsetStore } from "../core/offsets.ts";
import { runPipeline, type RunReport } from "../core/pipeline.ts";
import { waitUntil } from "./_wait.ts";

/** A stream pipeline running in the background. */
export interface RunningStream {
  /** Stops the pipeline gracefully and returns its report. */
  stop(): Promise<RunReport>;
  /** Resolves when the run ends by itself (for example after a failure). */
  readonly done: Promise<RunReport>;
}

/** Starts `spec` with `offsets` (a fresh memory store by default). */
export function startStream(
  spec: PipelineSpec,
  offsets: OffsetStore = new MemoryOffsetStore(),
): RunningStream {
  const controller = new AbortController();
  const done = runPipeline(spec, { offsets }, { signal: controller.signal });
  return {
    done,
    stop() {
      controller.abort();
      return done;
    },
  };
}

/** A slot name no other test uses (slots are cluster-wide). */
export function uniqueSlot(prefix: string): string {
  return `${prefix}_${crypto.randomUUID().replaceAll("-", "").slice(0, 12)}`;
}

/** Waits until a walsender streams from `slot` (so changes made now are captured). */
export async function waitForActiveSlot(sql: postgres.Sql, slot: string): Promise<void> {
  // A slot being created is already listed as active, but it decodes only
  // what commits after its consistent point, which waits for every running
  // transaction on the server: until then confirmed_flush_lsn is null.
  await waitUntil(`slot ${slot} to be streaming`, async () => {
    const rows = await sql<{ active: boolean; created: boolean }[]>`
      select active, confirmed_flush_lsn is not null as created
      from pg_replication_slots where slot_name = ${slot}`;
    return rows[0]?.active === true && rows[0].created;
  }, { timeoutMs: 60_000 });
}

/** The slot's confirmed_flush_lsn as a bigint (0 when absent). */
export async function confirmedFlush(sql: postgres.Sql, slot: string): Promise<bigint> {
  const rows = await sql<{ lsn: string | null }[]>`
    select (confirmed_flush_lsn - '0/0')::text as lsn from pg_replication_slots
    where slot_name = ${slot}`;
  return BigInt(rows[0]?.lsn ?? "0");
}

/** md5 of each row's text, by key: `{ "1": "…", … }`. */
export async function rowDigests(
  sql: postgres.Sql,
  table: string,
  key: string,
  columns: string,
): Promise<Record<string, string>> {
  const rows = await sql.unsafe<{ k: string; digest: string }[]>(
    `select ${key}::text as k, md5(row(${columns})::text) as digest from ${table} order by ${key}`,
  );
  return Object.fromEntries(rows.map((row) => [row.k, row.digest]));
}

/** A `postgres_cdc` source opened directly (without a pipeline), for looking at its batches. */
export interface OpenSource {
  /** Reads batches (committing each) until at least `count` records arrived in total. */
  take(count: number, timeoutMs?: number): Promise<SourceBatch[]>;
  /** Every record read so far. */
  readonly records: SluiceRecord[];
  /** The offsets of the batches read so far. */
  readonly offsets: JsonValue[];
  /**
   * Reads until a record meets `marker` and returns every record that arrived
   * meanwhile (the marker last). Tests prove "nothing else came" by writing a
   * marker change after the ones that must not be captured.
   */
  readUntil(
    what: string,
    marker: (record: SluiceRecord) => boolean,
    timeoutMs?: number,
  ): Promise<SluiceRecord[]>;
  close(): Promise<void>;
}

/** Opens the source of `config` (a postgres_cdc config as users write it) at `offset`. */
export async function openSource(
  config: Record<string, string>,
  offset?: JsonValue,
  options: { commit?: boolean } = {},
): Promise<OpenSource> {
  const parsed = postgresCdc.config.parse(config);
  const controller = new AbortController();
  const source = await postgresCdc.create(parsed, {
    pipeline: "cdc-test",
    logger: getLogger(["sluice", "test", "cdc"]),
    signal: controller.signal,
    offset,
    fullRefresh: false,
  });
  const iterator = source.read()[Symbol.asyncIterator]();
  const records: SluiceRecord[] = [];
  const offsets: JsonValue[] = [];
  // Start reading at once, as a pipeline does: the slot is set up on the first pull.
  let pending: Promise<IteratorResult<SourceBatch>> | undefined = iterator.next();
  const next = async (timeoutMs: number): Promise<SourceBatch | undefined> => {
    pending ??= iterator.next();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const result = await Promise.race([
      pending,
      new Promise<"timeout">((resolve) => timer = setTimeout(() => resolve("timeout"), timeoutMs)),
    ]);
    clearTimeout(timer);
    if (result === "timeout") return undefined;
    pending = undefined;
    if (result.done) throw new Error("the source ended");
    const batch = result.value;
    records.push(...batch.records);
    if (batch.offset !== undefined) {
      offsets.push(batch.offset);
      if (options.commit !== false) await source.commit?.(batch.offset);
    }
    return batch;
  };
  return {
    records,
    offsets,
    async take(count, timeoutMs = 20_000) {
      const deadline = Date.now() + timeoutMs;
      const batches: SourceBatch[] = [];
      const target = records.length + count;
      while (records.length < target) {
        const left = deadline - Date.now();
        if (left <= 0) {
          throw new Error(`Timed out: ${records.length} of ${target} records arrived`);
        }
        const batch = await next(left);
        if (batch) batches.push(batch);
      }
      return batches;
    },
    async readUntil(what, marker, timeoutMs = 20_000) {
      const before = records.length;
      const deadline = Date.now() + timeoutMs;
      while (!records.slice(before).some(marker)) {
        const left = deadline - Date.now();
        if (left <= 0) {
          const seen = JSON.stringify(records.slice(before).map((r) => r.key));
          throw new Error(
            `Timed out after ${timeoutMs} ms waiting for ${what} (keys seen: ${seen})`,
          );
        }
        await next(left);
      }
      return records.slice(before);
    },
    async close() {
      controller.abort();
      if (pending) await pending.catch(() => {});
      await iterator.return?.(undefined);
      await source.close();
    },
  };
}
