/**
 * The stored offset and the slot's `confirmed_flush_lsn`: the slot never
 * confirms more than was stored, so a start that finds it further along (or
 * gone) knows changes were consumed elsewhere, and `offset.mismatch.strategy`
 * says what happens then.
 */
import { assert, assertEquals, assertMatch } from "../../_assert.ts";
import { specsFrom, type SyncFixture, syncFixture } from "../../_batch.ts";
import { confirmedFlush, startStream, uniqueSlot, waitForActiveSlot } from "../../_cdc.ts";
import { waitUntil } from "../../_wait.ts";
import { MemoryOffsetStore, type OffsetStore } from "../../../core/offsets.ts";
import type { JsonValue } from "../../../api/record.ts";
import type { RunReport } from "../../../core/pipeline.ts";
import { capturingLogs } from "../../_logs.ts";
import { parseLsn } from "../../../connectors/postgres_cdc/_lsn.ts";

const SOURCE = `create table public.items (id int primary key, name text);
  create table public.noise (id serial primary key, v text);
  insert into items values (1, 'before');`;
const TARGET = `create table public.items (
  id int primary key, name text, deleted_at timestamptz, _source_lsn pg_lsn);`;

async function spec(f: SyncFixture, slot: string, extra: Record<string, string> = {}) {
  const [built] = await specsFrom({
    name: "gap",
    config: {
      "connector.class": "postgres_cdc",
      "connection.url": f.source.url,
      "topic.prefix": "src",
      "slot.name": slot,
      "publication.name": `${slot}_pub`,
      "table.include.list": "public.items",
      "poll.interval.ms": "20",
      "offset.storage": "file",
      "sink.class": "postgres",
      "sink.connection.url": f.target.url,
      "sink.table": "public.items",
      ...extra,
    },
  });
  return built;
}

async function ids(f: SyncFixture): Promise<number[]> {
  const rows = await f.targetSql`select id from items where deleted_at is null order by id`;
  return rows.map((r) => r.id);
}

async function storedLsn(offsets: MemoryOffsetStore): Promise<bigint | undefined> {
  const offset = await offsets.read("gap") as { lsn?: string } | undefined;
  return offset?.lsn ? parseLsn(offset.lsn) : undefined;
}

/** The report of a run that must end by itself, failing, within 30 s. */
async function refusal(run: { done: Promise<RunReport>; stop(): Promise<RunReport> }) {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<"timeout">((resolve) =>
    timer = setTimeout(resolve, 30_000, "timeout")
  );
  const outcome = await Promise.race([run.done, timeout]);
  clearTimeout(timer);
  if (outcome === "timeout") {
    await run.stop();
    throw new Error("the start went on streaming instead of stopping");
  }
  assertEquals(outcome.status, "failed");
  return outcome;
}

/** Streams rows 1 and 2, then stops: the offset is stored, the slot stays. */
async function streamedOnce(f: SyncFixture, slot: string, offsets: MemoryOffsetStore) {
  const first = startStream(await spec(f, slot), offsets);
  try {
    await waitForActiveSlot(f.sourceSql, slot);
    await f.sourceSql`insert into items values (2, 'streamed')`;
    await waitUntil("row 2", async () => (await ids(f)).includes(2));
  } finally {
    const report = await first.stop();
    assertEquals(report.status, "stopped", report.error?.message);
  }
}

Deno.test("postgres_cdc: the slot never confirms past the stored offset, and an idle, filtered slot still moves without heartbeats", async () => {
  await using f = await syncFixture("cdc_gap_idle", SOURCE, TARGET);
  const slot = uniqueSlot("gap_idle");
  const offsets = new MemoryOffsetStore();
  const stream = startStream(await spec(f, slot, { "status.update.interval.ms": "200" }), offsets);
  try {
    await waitForActiveSlot(f.sourceSql, slot);
    await waitUntil("the snapshot", async () => (await ids(f)).length === 1);
    // WAL the publication does not carry: keepalives move the stream on.
    for (let round = 0; round < 5; round++) {
      await f.sourceSql`insert into noise (v) select repeat('x', 100) from generate_series(1, 500)`;
      for (let sample = 0; sample < 10; sample++) {
        // Read the slot first: a stored offset read after it must be at least as far.
        const confirmed = await confirmedFlush(f.sourceSql, slot);
        const stored = await storedLsn(offsets);
        assert(
          stored !== undefined && confirmed <= stored,
          `the slot confirmed ${confirmed}, past the stored offset ${stored}`,
        );
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
    const [{ lsn }] = await f.sourceSql`select pg_current_wal_lsn()::text as lsn`;
    await waitUntil(
      "the slot to confirm past the unpublished WAL, with heartbeat.interval.ms 0",
      async () => (await confirmedFlush(f.sourceSql, slot)) >= parseLsn(lsn),
      { timeoutMs: 20_000 },
    );
  } finally {
    const report = await stream.stop();
    assertEquals(report.status, "stopped", report.error?.message);
  }
});

Deno.test("postgres_cdc: a slot moved past the stored offset stops the start; trust_slot accepts the gap, when_needed snapshots", async () => {
  await using f = await syncFixture("cdc_gap_ahead", SOURCE, TARGET);
  const slot = uniqueSlot("gap_ahead");
  const offsets = new MemoryOffsetStore();
  await streamedOnce(f, slot, offsets);
  const stored = await storedLsn(offsets);

  // Another consumer of the slot takes row 3.
  await f.sourceSql`insert into items values (3, 'consumed elsewhere')`;
  await f.sourceSql`select pg_replication_slot_advance(${slot}, pg_current_wal_lsn())`;
  const confirmed = await confirmedFlush(f.sourceSql, slot);
  assert(stored !== undefined && confirmed > stored);

  const refused = await refusal(startStream(await spec(f, slot), offsets));
  assertMatch(
    refused.error?.message ?? "",
    /Replication slot "gap_ahead_\w+" has confirmed [0-9A-F]+\/[0-9A-F]+, past the stored offset [0-9A-F]+\/[0-9A-F]+: the changes in between are lost to this pipeline\. .*--to-earliest.*trust_slot/,
  );
  assertEquals(await storedLsn(offsets), stored, "the refused start stored nothing");

  // Accepting the gap: row 3 stays missing, later changes flow.
  const trusting = startStream(
    await spec(f, slot, { "offset.mismatch.strategy": "trust_slot" }),
    offsets,
  );
  try {
    await waitForActiveSlot(f.sourceSql, slot);
    await f.sourceSql`insert into items values (4, 'after the gap')`;
    await waitUntil("row 4", async () => (await ids(f)).includes(4));
    assertEquals(await ids(f), [1, 2, 4]);
  } finally {
    const report = await trusting.stop();
    assertEquals(report.status, "stopped", report.error?.message);
  }

  // when_needed copies everything again instead.
  await f.sourceSql`insert into items values (5, 'consumed elsewhere too')`;
  await f.sourceSql`select pg_replication_slot_advance(${slot}, pg_current_wal_lsn())`;
  const snapshotting = startStream(
    await spec(f, slot, { "snapshot.mode": "when_needed" }),
    offsets,
  );
  try {
    await waitUntil("a new snapshot", async () => (await ids(f)).length === 5);
    assertEquals(await ids(f), [1, 2, 3, 4, 5]);
  } finally {
    const report = await snapshotting.stop();
    assertEquals(report.status, "stopped", report.error?.message);
  }
});

Deno.test("postgres_cdc: a slot gone while an offset is stored stops the start, unless slot.drop.on.stop dropped it", async () => {
  await using f = await syncFixture("cdc_gap_gone", SOURCE, TARGET);
  const slot = uniqueSlot("gap_gone");
  const offsets = new MemoryOffsetStore();
  await streamedOnce(f, slot, offsets);
  await f.sourceSql`select pg_drop_replication_slot(${slot})`;
  await f.sourceSql`insert into items values (3, 'while the slot was gone')`;

  const refused = await refusal(startStream(await spec(f, slot), offsets));
  assertMatch(
    refused.error?.message ?? "",
    /Replication slot "gap_gone_\w+" is missing although an offset is stored \([0-9A-F]+\/[0-9A-F]+\): the changes made since then are lost/,
  );
  // --to-latest cannot help without a slot: not offered.
  assertMatch(
    refused.error?.message ?? "",
    /To accept the gap: offset\.mismatch\.strategy trust_slot, or --to-earliest with snapshot\.mode never\./,
  );
  const slots = await f.sourceSql`select 1 from pg_replication_slots where slot_name = ${slot}`;
  assertEquals(slots.length, 0, "the refused start made no slot");

  // A pipeline that drops its slot at every stop asked for that gap.
  await using logs = await capturingLogs();
  const dropping = startStream(await spec(f, slot, { "slot.drop.on.stop": "true" }), offsets);
  try {
    await waitForActiveSlot(f.sourceSql, slot);
    await f.sourceSql`insert into items values (4, 'streamed')`;
    await waitUntil("row 4", async () => (await ids(f)).includes(4));
    assertEquals(await ids(f), [1, 2, 4]);
    // The log names where the new slot starts, not the old offset.
    const at = (pattern: RegExp) =>
      logs.lines.map((line) => line.match(pattern)?.[1]).find(Boolean);
    const created = at(/^Created slot \S+ at (\S+)$/);
    assert(created !== undefined, logs.lines.join("\n"));
    assertEquals(at(/^Streaming from slot \S+ at (\S+)$/), created);
  } finally {
    const report = await dropping.stop();
    assertEquals(report.status, "stopped", report.error?.message);
  }
});

/**
 * An offset store whose first read answers what was stored earlier: the
 * stale read of a standby that read its offset just before the owner it
 * takes over from stored (and the slot confirmed) more, then stopped.
 */
class ReadBeforeTakeover implements OffsetStore {
  #first = true;
  constructor(readonly store: OffsetStore, readonly stale: JsonValue | undefined) {}
  read(key: string): Promise<JsonValue | undefined> {
    if (!this.#first) return this.store.read(key);
    this.#first = false;
    return Promise.resolve(this.stale);
  }
  write(key: string, value: JsonValue): Promise<void> {
    return this.store.write(key, value);
  }
  delete(key: string): Promise<void> {
    return this.store.delete(key);
  }
}

Deno.test("postgres_cdc: a standby that read its offset before the stopping owner stored more is no gap once it holds the slot", async () => {
  await using f = await syncFixture("cdc_gap_takeover", SOURCE, TARGET);
  const slot = uniqueSlot("gap_takeover");
  const offsets = new MemoryOffsetStore();
  await streamedOnce(f, slot, offsets);
  const stale = await offsets.read("gap");

  // The owner streams row 3, stores it and confirms it to the slot as it stops.
  const owner = startStream(await spec(f, slot), offsets);
  try {
    await waitForActiveSlot(f.sourceSql, slot);
    await f.sourceSql`insert into items values (3, 'the last row of the owner')`;
    await waitUntil("row 3", async () => (await ids(f)).includes(3));
  } finally {
    const report = await owner.stop();
    assertEquals(report.status, "stopped", report.error?.message);
  }
  const staleLsn = parseLsn((stale as { lsn: string }).lsn);
  assert(
    (await confirmedFlush(f.sourceSql, slot)) > staleLsn,
    "the slot confirmed past the stale read, as in the race",
  );

  const standby = startStream(await spec(f, slot), new ReadBeforeTakeover(offsets, stale));
  // A run that ends by itself ends the waits below with its error.
  const ended = standby.done.then((report) => {
    throw new Error(`the standby's run ended (${report.status}): ${report.error?.message}`);
  });
  ended.catch(() => {});
  try {
    await Promise.race([ended, waitForActiveSlot(f.sourceSql, slot)]);
    await f.sourceSql`insert into items values (4, 'after the takeover')`;
    await Promise.race([ended, waitUntil("row 4", async () => (await ids(f)).includes(4))]);
    assertEquals(await ids(f), [1, 2, 3, 4]);
  } finally {
    const report = await standby.stop();
    assertEquals(report.status, "stopped", report.error?.message);
  }
});

Deno.test("postgres_cdc: a server out of replication slots stops the start, naming max_replication_slots", async () => {
  await using f = await syncFixture("cdc_no_slots", SOURCE, TARGET);
  const slot = uniqueSlot("no_slots");
  // Physical slots count against max_replication_slots too, and hold no WAL unreserved.
  const [{ free }] = await f.sourceSql<{ free: number }[]>`
    select current_setting('max_replication_slots')::int - count(*)::int as free
    from pg_replication_slots`;
  const fillers = Array.from({ length: free }, (_, i) => `${slot}_filler_${i}`);
  for (const name of fillers) {
    await f.sourceSql`select pg_create_physical_replication_slot(${name})`;
  }
  try {
    const refused = await refusal(startStream(await spec(f, slot), new MemoryOffsetStore()));
    assertMatch(
      refused.error?.message ?? "",
      /Cannot create a replication slot on the source database .*: all replication slots are in use.*Raise max_replication_slots/,
    );
  } finally {
    for (const name of fillers) await f.sourceSql`select pg_drop_replication_slot(${name})`;
  }
});
