/**
 * Incremental jobs and transactions that commit after a run's snapshot
 * (issue 7, item 2), against the real PostgreSQL.
 */
import { assertEquals } from "../../_assert.ts";
import { MemoryOffsetStore } from "../../../core/offsets.ts";
import { runPipeline } from "../../../core/pipeline.ts";
import { specsFrom, type SyncFixture, syncFixture } from "../../_batch.ts";

const SOURCE_DDL = `
  create table public.items (
    id int primary key,
    label text not null,
    updated_at timestamptz not null default now());
  create index on public.items (updated_at, id);
  insert into public.items (id, label, updated_at)
  select g, 'item ' || g, timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second'
  from generate_series(1, 7) g;`;

const TARGET_DDL = `
  create table public.items_copy (id int primary key, label text not null, updated_at timestamptz);`;

function connector(sourceUrl: string, targetUrl: string, extra: Record<string, string> = {}) {
  return {
    name: "items_sync",
    config: {
      "connector.class": "postgres_query",
      "connection.url": sourceUrl,
      "table": "public.items",
      "mode": "incremental",
      "sink.class": "postgres",
      "sink.connection.url": targetUrl,
      "sink.table": "public.items_copy",
      ...extra,
    },
  };
}

Deno.test("an update stamped before a newer committed row is synced once its transaction commits", async () => {
  await using db = await syncFixture("late_xid", SOURCE_DDL, TARGET_DDL);
  const [spec] = await specsFrom(connector(db.source.url, db.target.url));
  const offsets = new MemoryOffsetStore();
  const first = await runPipeline(spec, { offsets });
  assertEquals(first.stats.read, 7, first.error?.message);

  // T begins: its now() is fixed here, before row 8 exists.
  const t = await db.sourceSql.reserve();
  try {
    await t.unsafe("begin");
    await t.unsafe("select now()");
    // Another session commits row 8, stamped later than T's now().
    await db.sourceSql.unsafe(
      "insert into public.items (id, label, updated_at) values (8, 'item 8', clock_timestamp())",
    );
    // T updates row 7 with its (earlier) now(), after row 8 committed: T's
    // xid is newer than every committed one, and T stays open.
    await t.unsafe("update public.items set label = 'item 7 v2', updated_at = now() where id = 7");
    const [{ behind }] = await t.unsafe<{ behind: boolean }[]>(
      "select (select updated_at from public.items where id = 7) < (select updated_at from public.items where id = 8) as behind",
    );
    assertEquals(behind, true, "row 7's stamp must be earlier than row 8's");

    const run1 = await runPipeline(spec, { offsets });
    assertEquals(run1.status, "succeeded", run1.error?.message);
    assertEquals(run1.stats.read, 1, "run 1 sees row 8 only");
    await t.unsafe("commit");
  } finally {
    t.release();
  }

  const run2 = await runPipeline(spec, { offsets });
  assertEquals(run2.status, "succeeded", run2.error?.message);
  const [row7] = await db.targetSql<{ label: string }[]>`
    select label from public.items_copy where id = 7`;
  assertEquals(row7.label, "item 7 v2", "run 2 must pick up row 7");
  assertEquals(run2.validation.every((check) => check.ok), true, JSON.stringify(run2.validation));
});

/**
 * A transaction T that has written nothing when a run starts (no id, so no
 * snapshot lists it) writes a row stamped behind the run's watermark: the
 * next run, by the job reading as `sourceUrl`, must still sync it.
 */
async function lateRowOfIdleTransaction(db: SyncFixture, sourceUrl: string, label: string) {
  const [spec] = await specsFrom(connector(sourceUrl, db.target.url));
  const offsets = new MemoryOffsetStore();
  assertEquals((await runPipeline(spec, { offsets })).stats.read, 7);
  const t = await db.sourceSql.reserve();
  try {
    // T begins and reads: no transaction id yet, so no snapshot lists it.
    await t.unsafe("begin");
    await t.unsafe("select now()");
    await db.sourceSql.unsafe(
      "insert into public.items (id, label, updated_at) values (8, 'item 8', clock_timestamp())",
    );
    const run1 = await runPipeline(spec, { offsets });
    assertEquals(run1.stats.read, 1, run1.error?.message);
    // Only now does T write, stamped with its start time (behind row 8).
    await t.unsafe(`update public.items set label = '${label}', updated_at = now() where id = 7`);
    await t.unsafe("commit");
  } finally {
    t.release();
  }
  const run2 = await runPipeline(spec, { offsets });
  assertEquals(run2.status, "succeeded", run2.error?.message);
  const [row7] = await db.targetSql<{ label: string }[]>`
    select label from public.items_copy where id = 7`;
  assertEquals(row7.label, label);
}

Deno.test("a transaction that has written nothing yet when a run starts cannot hide its later row", async () => {
  await using db = await syncFixture("late_noxid", SOURCE_DDL, TARGET_DDL);
  await lateRowOfIdleTransaction(db, db.source.url, "item 7 v3");
});

Deno.test("a source user who cannot see other users' transactions still finds a row they commit late", async () => {
  await using db = await syncFixture("late_hidden", SOURCE_DDL, TARGET_DDL);
  // Without pg_read_all_stats, pg_stat_activity shows other roles' sessions without their state.
  const role = `reader_${crypto.randomUUID().slice(0, 8)}`;
  await db.sourceSql.unsafe(`create role ${role} login; grant select on public.items to ${role}`);
  try {
    const reader = new URL(db.source.url);
    reader.username = role;
    await lateRowOfIdleTransaction(db, reader.toString(), "item 7 v4");
  } finally {
    await db.sourceSql.unsafe(`drop owned by ${role}; drop role ${role}`);
  }
});

Deno.test("after everything committed before a run, the next run reads nothing again", async () => {
  await using db = await syncFixture("late_quiet", SOURCE_DDL, TARGET_DDL);
  const [spec] = await specsFrom(connector(db.source.url, db.target.url));
  const offsets = new MemoryOffsetStore();
  assertEquals((await runPipeline(spec, { offsets })).stats.read, 7);
  await db.sourceSql.unsafe(
    "update public.items set label = 'again', updated_at = now() where id = 3",
  );
  assertEquals((await runPipeline(spec, { offsets })).stats.read, 1);
  const third = await runPipeline(spec, { offsets });
  assertEquals(third.status, "succeeded", third.error?.message);
  assertEquals(third.stats.read, 0);
});

Deno.test("a row stamped in the future does not let rows stamped later by now() hide behind it", async () => {
  await using db = await syncFixture("late_future", SOURCE_DDL, TARGET_DDL);
  const [spec] = await specsFrom(connector(db.source.url, db.target.url));
  const offsets = new MemoryOffsetStore();
  assertEquals((await runPipeline(spec, { offsets })).stats.read, 7);
  await db.sourceSql.unsafe(
    "insert into public.items values (8, 'from a clock ahead', now() + interval '1 day')",
  );
  assertEquals((await runPipeline(spec, { offsets })).stats.read, 1);
  // Stamped now(), behind row 8's watermark, by a transaction begun after the run.
  await db.sourceSql.unsafe(
    "update public.items set label = 'now', updated_at = now() where id = 2",
  );
  const run = await runPipeline(spec, { offsets });
  assertEquals(run.status, "succeeded", run.error?.message);
  const [row2] = await db.targetSql<{ label: string }[]>`
    select label from public.items_copy where id = 2`;
  assertEquals(row2.label, "now");
});

const TRIAL_DDL = `
  create table public.items (
    id int primary key,
    v text not null,
    updated_at timestamptz not null default now());
  insert into public.items (id, v) select g, 'v' || g from generate_series(1, 5) g;`;

const TRIAL_TARGET_DDL = `
  create table public.items_copy (id int primary key, v text not null, updated_at timestamptz);`;

/**
 * The trial's reproduction: an open transaction writes `first`, then
 * `more` (in a subtransaction); another session commits row 2100; a run;
 * the transaction commits; two more runs. Every row must have arrived.
 */
async function lateSubtransaction(name: string, first: string, more: string[]) {
  await using db = await syncFixture(name, TRIAL_DDL, TRIAL_TARGET_DDL);
  const [spec] = await specsFrom(connector(db.source.url, db.target.url));
  const offsets = new MemoryOffsetStore();
  assertEquals((await runPipeline(spec, { offsets })).stats.read, 5);
  const a = await db.sourceSql.reserve();
  try {
    await a.unsafe("begin");
    await a.unsafe(first);
    for (const statement of more) await a.unsafe(statement);
    await db.sourceSql.unsafe("insert into public.items (id, v) values (2100, 'other session')");
    const run1 = await runPipeline(spec, { offsets });
    assertEquals(run1.status, "succeeded", run1.error?.message);
    assertEquals(run1.stats.read, 1, "run 1 sees row 2100 only");
    await a.unsafe("commit");
  } finally {
    a.release();
  }
  for (const run of [1, 2]) {
    const result = await runPipeline(spec, { offsets });
    assertEquals(result.status, "succeeded", `run ${run + 1}: ${result.error?.message}`);
  }
  const source = await db.sourceSql<{ id: number }[]>`select id from public.items order by id`;
  const target = await db.targetSql<{ id: number }[]>`select id from public.items_copy order by id`;
  assertEquals(target.map((r) => r.id), source.map((r) => r.id));
}

Deno.test("a row written in a savepoint of a transaction open at a run arrives once it commits", async () => {
  await lateSubtransaction(
    "late_savepoint",
    "insert into public.items (id, v) values (7000, 'a')",
    [
      "savepoint s1",
      "insert into public.items (id, v) values (7001, 'in s1')",
    ],
  );
});

Deno.test("a row written in a released savepoint and in a nested one arrives once its transaction commits", async () => {
  await lateSubtransaction("late_released", "insert into public.items (id, v) values (7000, 'a')", [
    "savepoint s1",
    "insert into public.items (id, v) values (7001, 'in s1')",
    "release savepoint s1",
    "savepoint s2",
    "savepoint s3",
    "insert into public.items (id, v) values (7002, 'in s3')",
  ]);
});

Deno.test("a row written in a PL/pgSQL EXCEPTION block of a long transaction arrives once it commits", async () => {
  await lateSubtransaction(
    "late_exception",
    "insert into public.items (id, v) values (9000, 'a')",
    [
      `do $$ begin
       begin
         insert into public.items (id, v) values (9500, 'in the block');
       exception when unique_violation then null;
       end;
     end $$`,
    ],
  );
});

Deno.test("a transaction whose only write is in an EXCEPTION block cannot hide its row", async () => {
  await lateSubtransaction("late_exc_only", "select now()", [
    `do $$ begin
       begin
         insert into public.items (id, v) values (9500, 'in the block');
       exception when unique_violation then null;
       end;
     end $$`,
  ]);
});

Deno.test("a watermark stored with the older mark (xmax and running list) still finds a savepoint's row", async () => {
  await using db = await syncFixture("late_oldmark", TRIAL_DDL, TRIAL_TARGET_DDL);
  // Offsets in the store given here, where the test can rewrite them.
  const file = { "offset.storage": "file" };
  const [spec] = await specsFrom(connector(db.source.url, db.target.url, file));
  const offsets = new MemoryOffsetStore();
  assertEquals((await runPipeline(spec, { offsets })).stats.read, 5);
  const a = await db.sourceSql.reserve();
  try {
    await a.unsafe("begin");
    await a.unsafe("insert into public.items (id, v) values (7000, 'a')");
    await a.unsafe("savepoint s1");
    await a.unsafe("insert into public.items (id, v) values (7001, 'in s1')");
    await db.sourceSql.unsafe("insert into public.items (id, v) values (2100, 'other session')");
    // The snapshot as the previous version stored it: 32-bit xmax and running list.
    const [old] = await db.sourceSql<{ xmax: string; xip: string[] }[]>`
      select (pg_snapshot_xmax(s)::text::numeric % 4294967296)::text as xmax,
             array(select (x::text::numeric % 4294967296)::text from pg_snapshot_xip(s) x) as xip
      from pg_current_snapshot() s`;
    assertEquals((await runPipeline(spec, { offsets })).stats.read, 1);
    const stored = offsets.offsets.get(spec.name) as Record<string, unknown>;
    assertEquals(typeof stored.ts, "string");
    offsets.offsets.set(spec.name, { ...stored, snapshot: old });
    await a.unsafe("commit");
  } finally {
    a.release();
  }
  const run = await runPipeline(spec, { offsets });
  assertEquals(run.status, "succeeded", run.error?.message);
  const target = await db.targetSql<{ id: number }[]>`select id from public.items_copy order by id`;
  assertEquals(target.map((r) => r.id), [1, 2, 3, 4, 5, 2100, 7000, 7001]);
});

Deno.test("a mark that cannot be placed among this server's ids re-reads every row behind the watermark", async () => {
  await using db = await syncFixture("late_badmark", TRIAL_DDL, TRIAL_TARGET_DDL);
  const file = { "offset.storage": "file" };
  const [spec] = await specsFrom(connector(db.source.url, db.target.url, file));
  const offsets = new MemoryOffsetStore();
  assertEquals((await runPipeline(spec, { offsets })).stats.read, 5);
  const stored = offsets.offsets.get(spec.name) as Record<string, unknown>;
  // An xmin from the future (a restored or another server): nothing can be ruled out.
  offsets.offsets.set(spec.name, { ...stored, snapshot: { xmin: "99999999999999" } });
  const run = await runPipeline(spec, { offsets });
  assertEquals(run.status, "succeeded", run.error?.message);
  assertEquals(run.stats.read, 5);
});

Deno.test("an incremental job over a view runs again and again (a view has no xmin to scan by)", async () => {
  await using db = await syncFixture("late_view", SOURCE_DDL, TARGET_DDL);
  await db.sourceSql.unsafe("create view public.items_view as select * from public.items");
  const json = connector(db.source.url, db.target.url, {
    table: "public.items_view",
    "key.columns": "id",
  });
  const [spec] = await specsFrom(json);
  const offsets = new MemoryOffsetStore();
  assertEquals((await runPipeline(spec, { offsets })).stats.read, 7);
  await db.sourceSql.unsafe(
    "insert into public.items (id, label, updated_at) values (8, 'item 8', now())",
  );
  for (const expected of [1, 0]) {
    const run = await runPipeline(spec, { offsets });
    assertEquals(run.status, "succeeded", run.error?.message);
    assertEquals(run.stats.read, expected);
  }
});
