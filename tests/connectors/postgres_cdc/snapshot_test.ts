/**
 * `snapshot.mode` of `postgres_cdc` (initial, never / no_data, when_needed,
 * initial_only) in direct-mode pipelines into PostgreSQL, and the
 * consistency of the hand-over from snapshot to stream under concurrent
 * writes.
 */
import { assertEquals } from "../../_assert.ts";
import { specsFrom, type SyncFixture, syncFixture, tableDigest } from "../../_batch.ts";
import { startStream, uniqueSlot, waitForActiveSlot } from "../../_cdc.ts";
import { waitUntil } from "../../_wait.ts";
import { MemoryOffsetStore } from "../../../core/offsets.ts";

const SOURCE = `create table public.items (id int primary key, name text, qty int);
  insert into items select g, 'v' || g, g from generate_series(1, 100) g;`;
const TARGET = `create table public.items (
  id int primary key, name text, qty int, deleted_at timestamptz, _source_lsn pg_lsn);`;

async function spec(f: SyncFixture, slot: string, mode: string, extra = {}) {
  const [built] = await specsFrom({
    name: "snap",
    config: {
      "connector.class": "postgres_cdc",
      "connection.url": f.source.url,
      "topic.prefix": "src",
      "slot.name": slot,
      "snapshot.mode": mode,
      "poll.interval.ms": "20",
      "max.batch.size": "500",
      "sink.class": "postgres",
      "sink.connection.url": f.target.url,
      "sink.table": "public.items",
      ...extra,
    },
  });
  return built;
}

const live = "select id, name, qty from items where %s order by id";
const sourceDigest = (f: SyncFixture) => tableDigest(f.sourceSql, live.replace("%s", "true"));
const targetDigest = (f: SyncFixture) =>
  tableDigest(f.targetSql, live.replace("%s", "deleted_at is null"));

async function count(f: SyncFixture): Promise<number> {
  const [row] = await f.targetSql`select count(*)::int as n from items`;
  return row.n;
}

Deno.test("snapshot.mode initial copies existing rows, then streams, consistent under concurrent writes", async () => {
  await using f = await syncFixture(
    "cdc_snap_initial",
    SOURCE + `insert into items select g, 'v' || g, g from generate_series(101, 20000) g;`,
    TARGET,
  );
  const slot = uniqueSlot("snap_initial");
  const stream = startStream(await spec(f, slot, "initial"));
  // Writes racing the snapshot and the hand-over to the stream.
  let writes = 0;
  const deadline = Date.now() + 2000;
  while (Date.now() < deadline) {
    const id = 1 + Math.floor(Math.random() * 21000);
    const op = writes % 3;
    if (op === 0) {
      await f.sourceSql`insert into items values (${id}, 'n', ${writes})
                        on conflict (id) do update set qty = excluded.qty`;
    } else if (op === 1) await f.sourceSql`update items set qty = qty + 1 where id = ${id}`;
    else await f.sourceSql`delete from items where id = ${id}`;
    writes++;
  }
  try {
    await waitUntil(
      "the target to equal the source",
      async () => (await targetDigest(f)) === (await sourceDigest(f)),
      { timeoutMs: 60_000 },
    );
  } finally {
    const report = await stream.stop();
    assertEquals(report.status, "stopped", report.error?.message);
  }
});

Deno.test("snapshot.mode never (and its alias no_data) streams only new changes", async () => {
  for (const mode of ["never", "no_data"]) {
    await using f = await syncFixture(`cdc_snap_${mode}`, SOURCE, TARGET);
    const slot = uniqueSlot(`snap_${mode}`);
    const stream = startStream(await spec(f, slot, mode));
    try {
      await waitForActiveSlot(f.sourceSql, slot);
      await f.sourceSql`insert into items values (101, 'new', 101)`;
      await waitUntil("the new row", async () => (await count(f)) > 0);
      const rows = await f.targetSql`select id from items`;
      assertEquals(rows.map((r) => r.id), [101]);
    } finally {
      await stream.stop();
    }
  }
});

Deno.test("snapshot.mode when_needed takes a new snapshot when the slot is gone", async () => {
  await using f = await syncFixture("cdc_snap_needed", SOURCE, TARGET);
  const slot = uniqueSlot("snap_needed");
  const built = await spec(f, slot, "when_needed");
  const first = startStream(built);
  await waitUntil("the snapshot", async () => (await count(f)) === 100);
  await first.stop();

  await f.sourceSql`select pg_drop_replication_slot(${slot})`;
  await f.sourceSql`insert into items values (101, 'while the slot was gone', 101)`;
  const second = startStream(built);
  try {
    await waitUntil("the second snapshot", async () => (await count(f)) === 101);
    await waitForActiveSlot(f.sourceSql, slot);
    await f.sourceSql`insert into items values (102, 'streamed', 102)`;
    await waitUntil("the streamed row", async () => (await count(f)) === 102);
  } finally {
    await second.stop();
  }
  assertEquals(await targetDigest(f), await sourceDigest(f));
});

Deno.test("snapshot.mode initial_only copies the tables and ends, leaving the slot at the snapshot", async () => {
  await using f = await syncFixture("cdc_snap_only", SOURCE, TARGET);
  const slot = uniqueSlot("snap_only");
  const built = await spec(f, slot, "initial_only");
  const offsets = new MemoryOffsetStore();
  const report = await startStream(built, offsets).done;
  assertEquals(report.status, "succeeded", report.error?.message);
  assertEquals(report.stats.read, 100);
  assertEquals(await count(f), 100);
  const slots = await f.sourceSql`select 1 from pg_replication_slots where slot_name = ${slot}`;
  assertEquals(
    slots.length,
    1,
    "the slot stays for a later stream to start where the snapshot ended",
  );

  // Run again: the snapshot was taken, nothing more to do.
  await f.sourceSql`insert into items values (101, 'later', 101)`;
  const again = await startStream(built, offsets).done;
  assertEquals(again.status, "succeeded");
  assertEquals(again.stats.read, 0);
});

/**
 * A versioned table of `rows` rows (`sink.version.column` updated_at) after
 * a first snapshot, ready for a second one: `again` drops the offset and
 * streams until `done`, then the target's live rows must be the source's.
 */
async function versionedSnapshot(name: string, rows: number, extra: Record<string, string> = {}) {
  const f = await syncFixture(
    name,
    `create table public.items (id int primary key, name text,
       updated_at timestamptz not null default now());
     insert into items select g, 'v' || g, now() from generate_series(1, ${rows}) g;`,
    `create table public.items (id int primary key, name text, updated_at timestamptz not null,
       deleted_at timestamptz, _source_lsn pg_lsn);`,
  );
  const slot = uniqueSlot(name);
  const built = await spec(f, slot, "initial", {
    "offset.storage": "file",
    "sink.version.column": "updated_at",
    ...extra,
  });
  const offsets = new MemoryOffsetStore();
  const live = async () => {
    const [row] = await f.targetSql`select count(*)::int as n from items where deleted_at is null`;
    return row.n;
  };
  const first = startStream(built, offsets);
  await waitUntil("the first snapshot", async () => (await live()) === rows);
  await first.stop();
  const again = async (what: string, done: () => Promise<boolean>) => {
    await offsets.delete("snap");
    const second = startStream(built, offsets);
    try {
      await waitUntil(what, done);
      await waitForActiveSlot(f.sourceSql, slot);
    } finally {
      const report = await second.stop();
      assertEquals(report.status, "stopped", report.error?.message);
    }
    const query = "select id, name, updated_at from items where %s order by id";
    assertEquals(
      await tableDigest(f.targetSql, query.replace("%s", "deleted_at is null")),
      await tableDigest(f.sourceSql, query.replace("%s", "true")),
    );
  };
  return { f, live, again, [Symbol.asyncDispose]: () => f[Symbol.asyncDispose]() };
}

Deno.test("a snapshot taken again keeps the rows the version guard finds already current (the sweep spares them)", async () => {
  await using s = await versionedSnapshot("snap_versioned", 1000, { "max.batch.size": "300" });
  // Ten rows change; then a new snapshot (an offset reset; a lost slot under
  // when_needed and a snapshot killed halfway do the same).
  await s.f.sourceSql`update items set name = name || '!', updated_at = now() where id <= 10`;
  await s.again("the second snapshot's updates", async () => {
    const [row] = await s.f.targetSql`select count(*)::int as n from items where name like '%!'`;
    return row.n === 10;
  });
  assertEquals(await s.live(), 1000, "rows at the source, at an unchanged version, stay live");
});

Deno.test("a snapshot taken again revives rows a sweep wrongly soft-deleted at their version", async () => {
  await using s = await versionedSnapshot("snap_revive", 500);
  // What Sluice before 523ca93 left after a snapshot taken again: rows still
  // at the source, soft-deleted at the version and position the snapshot gave.
  await s.f.targetSql`update items set deleted_at = now() where id <= 100`;
  await s.again("the second snapshot to revive them", async () => (await s.live()) === 500);
});
