/**
 * The postgres sink against a real change stream (postgres_cdc in direct
 * mode) whose source table changes shape mid-stream: auto.create, schema
 * evolution, unknown fields per errors.tolerance, key changes, and a target
 * that cannot apply deletes.
 */
import { assert, assertEquals, assertMatch } from "../../_assert.ts";
import { specsFrom, type SyncFixture, syncFixture } from "../../_batch.ts";
import { startStream, uniqueSlot, waitForActiveSlot } from "../../_cdc.ts";
import { waitUntil } from "../../_wait.ts";

async function cdcSpec(f: SyncFixture, slot: string, extra: Record<string, string> = {}) {
  const [spec] = await specsFrom({
    name: "cdc_schema",
    config: {
      "connector.class": "postgres_cdc",
      "connection.url": f.source.url,
      "topic.prefix": "src",
      "slot.name": slot,
      "publication.name": `pub_${slot}`,
      "snapshot.mode": "never",
      "poll.interval.ms": "20",
      "sink.class": "postgres",
      "sink.connection.url": f.target.url,
      "sink.table": "public.items",
      ...extra,
    },
  });
  return spec;
}

/** Deadline for a change to reach the target: the shared test server may be busy. */
const LOADED = 60_000;

const SOURCE = `create table public.items (id int primary key, name text, qty int)`;

Deno.test("a stream evolves its target when a source column is added, renamed and widened", async () => {
  await using f = await syncFixture(
    "cdc_evolve",
    `create table public.items (id int primary key, name text, qty int, n int)`,
    `create table public.items (id int primary key, name text, qty int, n int,
       deleted_at timestamptz, _source_lsn pg_lsn)`,
  );
  const slot = uniqueSlot("cdc_evolve");
  const stream = startStream(await cdcSpec(f, slot, { "sink.schema.evolution": "basic" }));
  try {
    await waitForActiveSlot(f.sourceSql, slot);
    await f.sourceSql`insert into items values (1, 'a', 1, 1)`;
    await f.sourceSql`alter table items add column color text`;
    await f.sourceSql`insert into items values (2, 'b', 2, 2, 'red')`;
    await f.sourceSql`alter table items rename column qty to quantity`;
    await f.sourceSql`update items set quantity = 20 where id = 2`;
    await f.sourceSql`alter table items alter column n type bigint`;
    await f.sourceSql`insert into items values (3, 'c', 3, 5000000000, 'blue')`;
    await waitUntil("rows with the new columns", async () => {
      const rows = await f.targetSql`select n::text from items where id = 3`;
      return rows[0]?.n === "5000000000";
    }, { timeoutMs: LOADED });
    const rows = await f.targetSql`select id, name, qty, n::text, color, quantity::text
                                   from items order by id`;
    assertEquals(rows.map((r) => [r.id, r.name, r.qty, r.n, r.color, r.quantity]), [
      [1, "a", 1, "1", null, null],
      [2, "b", 2, "2", "red", "20"],
      [3, "c", null, "5000000000", "blue", "3"],
    ]);
    const [{ type }] = await f.targetSql`select format_type(atttypid, atttypmod) as type
      from pg_attribute where attrelid = 'public.items'::regclass and attname = 'n'`;
    assertEquals(type, "bigint", "int widened to bigint");
  } finally {
    const report = await stream.stop();
    assertEquals(report.status, "stopped", report.error?.message);
    assertEquals(report.stats.deadLettered, 0);
  }
});

Deno.test("a stream with auto.create makes its target from the first change event", async () => {
  await using f = await syncFixture("cdc_create", SOURCE, "select 1");
  const slot = uniqueSlot("cdc_create");
  const stream = startStream(await cdcSpec(f, slot, { "sink.auto.create": "true" }));
  try {
    await waitForActiveSlot(f.sourceSql, slot);
    await f.sourceSql`insert into items values (1, 'a', 1)`;
    await f.sourceSql`delete from items where id = 1`;
    await f.sourceSql`insert into items values (2, 'b', 2)`;
    await waitUntil("the created table", async () => {
      const rows = await f.targetSql`select id::int, name, deleted_at is not null as deleted
                                     from items order by id`.catch(() => []);
      return JSON.stringify(rows.map((r) => [r.id, r.name, r.deleted])) ===
        '[[1,"a",true],[2,"b",false]]';
    }, { timeoutMs: LOADED });
  } finally {
    const report = await stream.stop();
    assertEquals(report.status, "stopped", report.error?.message);
  }
});

Deno.test("with schema evolution off a renamed source column stops the stream, and nothing is lost", async () => {
  const target = `create table public.items (id int primary key, name text, qty int,
                    deleted_at timestamptz, _source_lsn pg_lsn)`;
  await using f = await syncFixture("cdc_no_evolve", SOURCE, target);
  const slot = uniqueSlot("cdc_no_evolve");
  const stream = startStream(await cdcSpec(f, slot));
  await waitForActiveSlot(f.sourceSql, slot);
  await f.sourceSql`insert into items values (1, 'a', 1)`;
  await waitUntil("row 1", async () => (await f.targetSql`select 1 from items`).length, {
    timeoutMs: LOADED,
  });
  await f.sourceSql`alter table items rename column qty to quantity`;
  await f.sourceSql`insert into items values (2, 'b', 2)`;
  const report = await stream.done;
  assertEquals(report.status, "failed");
  assertMatch(report.error!.message, /no column for field "quantity"/);
  // The target gains the column; the same stream resumes and the row arrives.
  await f.targetSql`alter table items add column quantity int`;
  const again = startStream(await cdcSpec(f, slot));
  try {
    await waitUntil("row 2 after the restart", async () => {
      const rows = await f.targetSql`select quantity from items where id = 2`;
      return rows[0]?.quantity === 2;
    }, { timeoutMs: LOADED });
  } finally {
    await again.stop();
  }
});

Deno.test("with errors.tolerance all an unknown field goes to the dead letters", async () => {
  const target = `create table public.items (id int primary key, name text, qty int,
                    deleted_at timestamptz)`;
  await using f = await syncFixture("cdc_unknown_dlq", SOURCE, target);
  const slot = uniqueSlot("cdc_unknown");
  const stream = startStream(
    await cdcSpec(f, slot, {
      "errors.tolerance": "all",
      "errors.deadletterqueue.table.name": "public.dead_letters",
    }),
  );
  try {
    await waitForActiveSlot(f.sourceSql, slot);
    await f.sourceSql`alter table items add column color text`;
    await f.sourceSql`insert into items values (1, 'a', 1, 'red')`;
    await waitUntil("the dead letter", async () => {
      const rows = await f.targetSql`select error, record_value->'after'->>'color' as color
                                     from dead_letters`.catch(() => []);
      return rows[0]?.color === "red" && rows[0];
    }, { timeoutMs: LOADED });
  } finally {
    const report = await stream.stop();
    assertEquals(report.stats.deadLettered, 1);
  }
});

Deno.test("a key change at the source leaves no old row behind in the target", async () => {
  const target = `create table public.items (id int primary key, name text, qty int,
                    deleted_at timestamptz, _source_lsn pg_lsn)`;
  for (const mode of ["soft", "hard"]) {
    await using f = await syncFixture(`cdc_key_${mode}`, SOURCE, target);
    const slot = uniqueSlot(`cdc_key_${mode}`);
    const stream = startStream(await cdcSpec(f, slot, { "sink.delete.mode": mode }));
    try {
      await waitForActiveSlot(f.sourceSql, slot);
      await f.sourceSql`insert into items values (1, 'a', 1)`;
      await f.sourceSql`update items set id = 10 where id = 1`;
      await waitUntil("the moved row", async () => {
        const rows = await f.targetSql`select id, deleted_at is not null as deleted from items
                                       order by id`;
        const live = rows.filter((r) => !r.deleted).map((r) => r.id);
        return JSON.stringify(live) === "[10]" &&
          (mode === "hard" ? rows.length === 1 : rows.length === 2);
      }, { timeoutMs: LOADED });
    } finally {
      const report = await stream.stop();
      assertEquals(report.status, "stopped", report.error?.message);
    }
  }
});

Deno.test("a stream whose target has no soft-delete column fails before reading any change", async () => {
  const target = `create table public.items (id int primary key, name text, qty int)`;
  await using f = await syncFixture("cdc_no_soft", SOURCE, target);
  const slot = uniqueSlot("cdc_no_soft");
  const report = await startStream(await cdcSpec(f, slot)).done;
  assertEquals(report.status, "failed");
  assertMatch(
    report.error!.message,
    /^Cannot start pipeline "cdc_schema": delete\.mode is "soft" but table "public\.items" has no column "deleted_at"/,
  );
  const slots = await f.sourceSql`select 1 from pg_replication_slots where slot_name = ${slot}`;
  assert(slots.length === 0, "the source was never opened");
});
