/**
 * The plan's hybrid flow: one target table written by change data capture
 * and by an hourly batch job, both through the `postgres` sink's version
 * guard (`version.column`), against the real PostgreSQL and Kafka. CDC goes
 * direct (postgres_cdc → postgres) or through Kafka (postgres_cdc → kafka,
 * kafka → postgres); the batch is postgres_query → postgres.
 */
import type postgres from "postgres";
import { getLogger } from "@logtape/logtape";
import { assertEquals } from "../_assert.ts";
import { specsFrom, type SyncFixture, syncFixture } from "../_batch.ts";
import { rowDigests, startStream, uniqueSlot, waitForActiveSlot } from "../_cdc.ts";
import { kafkaSpecs, uniqueName } from "../_kafka.ts";
import { waitUntil } from "../_wait.ts";
import { MemoryOffsetStore } from "../../core/offsets.ts";
import { runPipeline } from "../../core/pipeline.ts";
import type { PipelineSpec } from "../../core/config.ts";
import type { SinkResult } from "../../api/plugin.ts";
import type { SluiceRecord } from "../../api/record.ts";

// now() in the trigger, as the example warehouse has it; REPLICA IDENTITY
// FULL so that a delete event's before image carries the version it saw.
const SOURCE_DDL = `
  create table public.profiles (
    id int primary key, name text, qty int, updated_at timestamptz not null default now());
  create index on public.profiles (updated_at, id);
  alter table public.profiles replica identity full;
  create function touch() returns trigger language plpgsql as
    $$ begin new.updated_at := now(); return new; end $$;
  create trigger profiles_touch before update on public.profiles
    for each row execute function touch();
  insert into public.profiles (id, name, qty) select g, 'p' || g, g from generate_series(1, 200) g;`;

const targetDdl = (positioned: boolean) => `
  create table public.profile_summary (
    id int primary key, display_name text, qty int, source_updated_at timestamptz,
    deleted_at timestamptz, synced_at timestamptz${positioned ? ", _source_lsn pg_lsn" : ""})`;

/** The sink options both paths share: the version guard on the mapped updated_at. */
const SINK = {
  table: "public.profile_summary",
  "fields.mapping": "name:display_name,updated_at:source_updated_at",
  "write.timestamp.column": "synced_at",
  "version.column": "source_updated_at",
};

const prefixed = (options: Record<string, string>) =>
  Object.fromEntries(Object.entries(options).map(([k, v]) => [`sink.${k}`, v]));

async function batchSpec(f: SyncFixture): Promise<PipelineSpec> {
  const [spec] = await specsFrom({
    name: "profiles_hourly",
    config: {
      "connector.class": "postgres_query",
      "connection.url": f.source.url,
      table: "public.profiles",
      mode: "incremental",
      "timestamp.column.name": "updated_at",
      "chunk.size": "50",
      "sink.class": "postgres",
      "sink.connection.url": f.target.url,
      ...prefixed(SINK),
    },
  });
  return spec;
}

const context = (spec: PipelineSpec) => ({
  pipeline: spec.name,
  logger: getLogger(["sluice", "test", "hybrid"]),
  signal: new AbortController().signal,
});

/** Reads what a full run of the batch source reads, without writing it yet. */
async function readBatch(spec: PipelineSpec): Promise<SluiceRecord[]> {
  const plugin = spec.source.plugin;
  const source = await plugin.create(spec.source.config as never, {
    ...context(spec),
    offset: undefined,
    fullRefresh: true,
  });
  const records: SluiceRecord[] = [];
  try {
    for await (const batch of source.read()) records.push(...batch.records);
  } finally {
    await source.close();
  }
  return records;
}

/** Writes records with the batch pipeline's sink, as its run would after reading them. */
async function writeBatch(spec: PipelineSpec, records: SluiceRecord[]): Promise<SinkResult> {
  const sink = await spec.sink.plugin.create(spec.sink.config as never, {
    ...context(spec),
    sourceMode: "batch",
  });
  try {
    return await sink.write({ records, reject: (failures) => Promise.reject(failures[0].error) });
  } finally {
    await sink.close();
  }
}

const SOURCE_ROWS = "(select id, name, qty, updated_at from public.profiles) t";
const TARGET_ROWS = `(select id, display_name as name, qty, source_updated_at as updated_at
  from public.profile_summary where deleted_at is null) t`;

function digests(sql: postgres.Sql, rows: string) {
  return rowDigests(sql, rows, "id", "name, qty, updated_at");
}

/** Waits until the target's live rows are the source's rows, value for value. */
async function waitForSameRows(f: SyncFixture, what: string): Promise<void> {
  let source: Record<string, string> = {};
  let target: Record<string, string> = {};
  await waitUntil(what, async () => {
    source = await digests(f.sourceSql, SOURCE_ROWS);
    target = await digests(f.targetSql, TARGET_ROWS);
    return JSON.stringify(source) === JSON.stringify(target);
  }, { timeoutMs: 60_000 }).catch((error) => {
    const differ = Object.keys({ ...source, ...target }).filter((k) => source[k] !== target[k]);
    throw new Error(`${(error as Error).message}; rows that differ: ${differ.join(", ")}`);
  });
}

/**
 * The scenario both CDC paths run: the exact race (a batch that read rows
 * before CDC changed or deleted them writes after), a repair of a missed
 * event, interleaved CDC changes and hourly runs, and equal-version replays.
 */
async function hybridScenario(f: SyncFixture, batch: PipelineSpec): Promise<void> {
  const offsets = new MemoryOffsetStore();
  const first = await runPipeline(batch, { offsets });
  assertEquals([first.error, first.stats.written], [undefined, 200]);

  // The race: the batch reads every row, then CDC updates and deletes some
  // and one CDC event is lost (the target row is older than the source's),
  // then the batch writes what it read.
  const late = await readBatch(batch);
  assertEquals(late.length, 200);
  await f.sourceSql`update public.profiles set name = name || '-cdc', qty = qty + 1000
                    where id <= 20`;
  await f.sourceSql`delete from public.profiles where id between 41 and 50`;
  await waitUntil("CDC to apply the updates and deletes", async () => {
    const [{ updated, deleted }] = await f.targetSql`
      select count(*) filter (where display_name like '%-cdc')::int as updated,
             count(*) filter (where deleted_at is not null)::int as deleted
      from public.profile_summary`;
    return updated === 20 && deleted === 10;
  }, { timeoutMs: 60_000 });
  await f.targetSql`update public.profile_summary set display_name = 'missed',
                    source_updated_at = source_updated_at - interval '1 hour' where id = 100`;
  // Rows 1–20 are older in the batch, 41–50 were deleted at the version it
  // read, the rest are equal: only the row with the missed event is written.
  assertEquals(await writeBatch(batch, late), { written: 1, skipped: 199 });
  await waitForSameRows(f, "the target to hold the source's rows after the late batch");
  const [{ deleted }] = await f.targetSql`
    select count(*)::int as deleted from public.profile_summary where deleted_at is not null`;
  assertEquals(deleted, 10);

  // Interleaved: CDC changes keep coming while hourly runs read and write.
  for (let round = 0; round < 3; round++) {
    const changes = (async () => {
      for (let i = 0; i < 20; i++) {
        const id = 51 + ((round * 37 + i * 7) % 150);
        await f.sourceSql`update public.profiles set qty = qty + 1, name = ${`r${round}-${i}`}
                          where id between ${id} and ${id + 4}`;
      }
      await f.sourceSql`delete from public.profiles where id = ${60 + round}`;
      await f.sourceSql`insert into public.profiles (id, name, qty)
                        values (${1000 + round}, ${`new ${round}`}, ${round})`;
    })();
    const [report] = await Promise.all([runPipeline(batch, { offsets }), changes]);
    assertEquals(report.error, undefined);
    assertEquals(report.stats.read, report.stats.written + report.stats.skipped);
  }
  await waitForSameRows(f, "the target to hold the source's rows after interleaved runs");

  // Equal versions: a re-run of everything writes nothing, not even the write timestamp.
  const stamps = await rowDigests(f.targetSql, "public.profile_summary", "id", "synced_at");
  const everything = await readBatch(batch);
  assertEquals(await writeBatch(batch, everything), { written: 0, skipped: everything.length });
  assertEquals(await rowDigests(f.targetSql, "public.profile_summary", "id", "synced_at"), stamps);

  // A full refresh rewrites the rows at their version (it repairs), but
  // leaves the soft-deleted ones deleted.
  const refresh = await runPipeline(batch, { offsets }, { fullRefresh: true });
  assertEquals([refresh.error, refresh.stats.written], [undefined, refresh.stats.read]);
  await waitForSameRows(f, "the target to hold the source's rows after a full refresh");
  const [{ deletedAfter }] = await f.targetSql`
    select count(*)::int as "deletedAfter" from public.profile_summary where deleted_at is not null`;
  assertEquals(deletedAfter, 13);
}

Deno.test("CDC direct and hourly batches into one table end with the newest version of every row", async () => {
  await using f = await syncFixture("hybrid_direct", SOURCE_DDL, targetDdl(true));
  const slot = uniqueSlot("hybrid");
  const [cdc] = await specsFrom({
    name: "profiles_cdc",
    config: {
      "connector.class": "postgres_cdc",
      "connection.url": f.source.url,
      "topic.prefix": "wh",
      "slot.name": slot,
      "publication.name": "hybrid_publication",
      "snapshot.mode": "never",
      "poll.interval.ms": "20",
      "sink.class": "postgres",
      "sink.connection.url": f.target.url,
      ...prefixed(SINK),
    },
  });
  const stream = startStream(cdc);
  try {
    await waitForActiveSlot(f.sourceSql, slot);
    await hybridScenario(f, await batchSpec(f));
  } finally {
    const report = await stream.stop();
    assertEquals(report.error, undefined);
  }
});

Deno.test("CDC through Kafka and hourly batches into one table end with the newest version of every row", async () => {
  await using f = await syncFixture("hybrid_kafka", SOURCE_DDL, targetDdl(false));
  const slot = uniqueSlot("hybrid_kafka");
  const prefix = uniqueName("wh");
  const topic = `${prefix}.public.profiles`;
  const consumer = (name: string) => ({
    name,
    config: {
      "connector.class": "postgres",
      topics: topic,
      "connection.url": f.target.url,
      ...SINK,
    },
  });
  const [capture, apply] = await kafkaSpecs([
    {
      name: "profiles_cdc",
      config: {
        "connector.class": "postgres_cdc",
        "connection.url": f.source.url,
        "topic.prefix": prefix,
        "slot.name": slot,
        "publication.name": "hybrid_publication",
        "snapshot.mode": "never",
        "poll.interval.ms": "20",
      },
    },
    consumer(uniqueName("profile-updates")),
  ]);
  const streams = [startStream(capture), startStream(apply)];
  try {
    await waitForActiveSlot(f.sourceSql, slot);
    await hybridScenario(f, await batchSpec(f));
  } finally {
    for (const stream of streams) assertEquals((await stream.stop()).error, undefined);
  }

  // Replaying the whole topic (a new consumer group) changes nothing.
  const before = await rowDigests(f.targetSql, "public.profile_summary", "id", "profile_summary");
  const [replay] = await kafkaSpecs(consumer(uniqueName("profile-replay")));
  // The sink keeps each pipeline's Kafka positions in its offsets table.
  const position = async (pipeline: string) => {
    const rows = await f.targetSql<{ offset: string }[]>`
      select "offset"::text as offset from public.sluice_offsets where pipeline = ${pipeline}`;
    return rows[0]?.offset;
  };
  const end = await position(apply.name);
  assertEquals(typeof end, "string");
  const replaying = startStream(replay);
  let report;
  try {
    await waitUntil("the replay to reach the end of the topic", async () => {
      return await position(replay.name) === end;
    }, { timeoutMs: 60_000 });
  } finally {
    report = await replaying.stop();
  }
  assertEquals(report.error, undefined);
  assertEquals([report.stats.written, report.stats.skipped > 0], [0, true]);
  assertEquals(
    await rowDigests(f.targetSql, "public.profile_summary", "id", "profile_summary"),
    before,
  );
});
