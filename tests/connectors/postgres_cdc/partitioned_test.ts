/**
 * Partitioned source tables (fresh-user trial 2, item 1): a partitioned table
 * named in `table.include.list` is captured whole, snapshot and stream, under
 * its own name and key (`publish_via_partition_root`), a publication made
 * without via-root is fixed or refused loudly, and tables that start to be
 * streamed without a snapshot (item 7) are named in a warning.
 */
import postgres from "postgres";
import { assert, assertEquals, assertMatch } from "../../_assert.ts";
import { specsFrom, type SyncFixture, syncFixture, tableDigest } from "../../_batch.ts";
import { openSource, startStream, uniqueSlot, waitForActiveSlot } from "../../_cdc.ts";
import { capturingLogs } from "../../_logs.ts";
import { createTestDatabase } from "../../_services.ts";
import { waitUntil } from "../../_wait.ts";

const SOURCE = `
  create table public.ev (id int, region text, v text, primary key (id, region))
    partition by list (region);
  create table public.ev_eu partition of public.ev for values in ('eu');
  create table public.ev_us partition of public.ev for values in ('us');
  insert into ev values (1, 'eu', 'a'), (2, 'eu', 'b'), (3, 'us', 'c'), (4, 'us', 'd');`;
const TARGET = `create table public.ev (
  id int, region text, v text, deleted_at timestamptz, _source_lsn pg_lsn,
  primary key (id, region));`;

const live = "select id, region, v from ev where %s order by id, region";
const sourceDigest = (f: SyncFixture) => tableDigest(f.sourceSql, live.replace("%s", "true"));
const targetDigest = (f: SyncFixture) =>
  tableDigest(f.targetSql, live.replace("%s", "deleted_at is null"));

async function viaRoot(sql: postgres.Sql, publication: string): Promise<boolean | undefined> {
  const rows = await sql<{ viaroot: boolean }[]>`
    select pubviaroot as viaroot from pg_publication where pubname = ${publication}`;
  return rows[0]?.viaroot;
}

Deno.test("postgres_cdc captures a partitioned table whole under its own name: snapshot, stream and rows moving between partitions", async () => {
  await using f = await syncFixture("cdc_part_whole", SOURCE, TARGET);
  const slot = uniqueSlot("part_whole");
  const [spec] = await specsFrom({
    name: "part",
    config: {
      "connector.class": "postgres_cdc",
      "connection.url": f.source.url,
      "topic.prefix": "src",
      "slot.name": slot,
      "publication.name": "pub_part",
      "table.include.list": "public\\.ev",
      "snapshot.mode": "initial",
      "poll.interval.ms": "20",
      "sink.class": "postgres",
      "sink.connection.url": f.target.url,
      "sink.table": "public.ev",
    },
  });
  const stream = startStream(spec);
  const same = async () => (await targetDigest(f)) === (await sourceDigest(f));
  try {
    await waitUntil("the snapshot of both partitions", same, { timeoutMs: 30_000 });
    assertEquals(await viaRoot(f.sourceSql, "pub_part"), true);
    await waitForActiveSlot(f.sourceSql, slot);
    await f.sourceSql`insert into ev values (5, 'eu', 'e'), (6, 'us', 'f')`;
    await f.sourceSql`update ev set v = 'a2' where id = 1`;
    await f.sourceSql`delete from ev where id = 4`;
    // Moves the row from ev_eu to ev_us: PostgreSQL writes a delete and an insert.
    await f.sourceSql`update ev set region = 'us', v = 'moved' where id = 2`;
    await waitUntil("the streamed changes", same, { timeoutMs: 30_000 });
    const rows = await f.targetSql`
      select id, region, v, deleted_at is not null as deleted from ev where id in (2, 4)
      order by id, region`;
    assertEquals(rows.map((r) => [r.id, r.region, r.v, r.deleted]), [
      [2, "eu", "b", true],
      [2, "us", "moved", false],
      [4, "us", "d", true],
    ]);
  } finally {
    const report = await stream.stop();
    assertEquals(report.status, "stopped", report.error?.message);
  }
});

Deno.test("postgres_cdc with an include regex matching a partitioned table and its partitions emits each change once, under the parent's topic", async () => {
  const db = await createTestDatabase("cdc_part_regex");
  const sql = postgres(db.url, { max: 1, onnotice: () => {} });
  try {
    await sql.unsafe(SOURCE);
    const slot = uniqueSlot("part_regex");
    const source = await openSource({
      "connection.url": db.url,
      "topic.prefix": "src",
      "slot.name": slot,
      "slot.drop.on.stop": "true",
      "publication.name": "pub_regex",
      "table.include.list": "public\\.ev.*",
      "snapshot.mode": "initial",
      "poll.interval.ms": "20",
    });
    try {
      // The slot exists once the snapshot is read: later changes are streamed.
      await source.take(4);
      await sql`update ev set region = 'us' where id = 1`;
      await sql`insert into ev values (99, 'eu', 'marker')`;
      await source.readUntil("the marker", (r) => (r.key as { id: number })?.id === 99);
      const events = source.records.filter((r) => r.value !== null);
      assertEquals(new Set(source.records.map((r) => r.topic)), new Set(["src.public.ev"]));
      const ops = events.map((r) => {
        const value = r.value as { op: string };
        const key = r.key as { id: number; region: string };
        return `${value.op} ${key.id}/${key.region}`;
      });
      assertEquals(ops, [
        "r 1/eu",
        "r 2/eu",
        "r 3/us",
        "r 4/us",
        "d 1/eu",
        "c 1/us",
        "c 99/eu",
      ]);
    } finally {
      await source.close();
    }
  } finally {
    await sql.end();
    await db.drop();
  }
});

Deno.test("postgres_cdc refuses a publication it does not manage that sends a partitioned table's changes under its partitions' names", async () => {
  const db = await createTestDatabase("cdc_part_disabled");
  const sql = postgres(db.url, { max: 1, onnotice: () => {} });
  try {
    await sql.unsafe(SOURCE + `create publication pub_old for table public.ev;`);
    const config = {
      "connection.url": db.url,
      "topic.prefix": "src",
      "slot.name": uniqueSlot("part_disabled"),
      "slot.drop.on.stop": "true",
      "publication.name": "pub_old",
      "publication.autocreate.mode": "disabled",
      "table.include.list": "public\\.ev",
      "snapshot.mode": "initial",
    };
    const source = await openSource(config);
    let error: Error | undefined;
    try {
      await source.take(1, 20_000);
    } catch (caught) {
      error = caught as Error;
    } finally {
      await source.close().catch(() => {});
    }
    assert(error, "the start fails");
    assertMatch(error.message, /public\.ev is partitioned/);
    assertMatch(
      error.message,
      /ALTER PUBLICATION "pub_old" SET \(publish_via_partition_root = true\)/,
    );
    assertEquals(
      await viaRoot(sql, "pub_old"),
      false,
      "a publication it does not manage is left alone",
    );
  } finally {
    await sql.end();
    await db.drop();
  }
});

Deno.test("postgres_cdc sets publish_via_partition_root on its own publication made without it, and warns that earlier rows were not copied", async () => {
  const db = await createTestDatabase("cdc_part_alter");
  const sql = postgres(db.url, { max: 1, onnotice: () => {} });
  await using logs = await capturingLogs();
  try {
    // As an earlier Sluice version left it: the parent published without via-root.
    await sql.unsafe(SOURCE + `create publication pub_prev for table public.ev;`);
    const slot = uniqueSlot("part_alter");
    const config = {
      "connection.url": db.url,
      "topic.prefix": "src",
      "slot.name": slot,
      "slot.drop.on.stop": "true",
      "publication.name": "pub_prev",
      "table.include.list": "public\\.ev",
      "snapshot.mode": "never",
      "poll.interval.ms": "20",
    };
    // Streamed before (an offset is stored), so nothing is copied at this start.
    const [{ lsn }] = await sql<{ lsn: string }[]>`select pg_current_wal_lsn()::text as lsn`;
    const source = await openSource(config, { lsn, txId: null });
    try {
      await waitForActiveSlot(sql, slot);
      assertEquals(await viaRoot(sql, "pub_prev"), true);
      await sql`insert into ev values (7, 'us', 'new')`;
      const [batch] = await source.take(1);
      assertEquals(batch.records[0].topic, "src.public.ev");
      assertEquals(batch.records[0].key, { id: 7, region: "us" });
    } finally {
      await source.close();
    }
    const warning = logs.lines.find((line) => line.includes("without a snapshot"));
    assert(warning, `a warning names the table: ${logs.lines.join("\n")}`);
    assertMatch(warning, /public\.ev start to be streamed now/);
    assertMatch(warning, /rows written before this start are not copied/);
  } finally {
    await sql.end();
    await db.drop();
  }
});

Deno.test("postgres_cdc warns, naming it, when a table created since the last start is added to the publication without a snapshot", async () => {
  const db = await createTestDatabase("cdc_new_table");
  const sql = postgres(db.url, { max: 1, onnotice: () => {} });
  await using logs = await capturingLogs();
  try {
    await sql.unsafe(`create table public.c_old (id int primary key);`);
    const slot = uniqueSlot("new_table");
    const config = {
      "connection.url": db.url,
      "topic.prefix": "src",
      "slot.name": slot,
      "publication.name": "pub_new",
      "table.include.list": "public\\.c_.*",
      "snapshot.mode": "initial",
      "poll.interval.ms": "20",
    };
    const first = await openSource({ ...config, "snapshot.mode": "never" });
    let offset;
    try {
      await waitForActiveSlot(sql, slot);
      await sql`insert into c_old values (1)`;
      await first.take(1);
      offset = first.offsets.at(-1);
      // Created while running: not in the publication until the next start.
      await sql.unsafe(`create table public.c_new (id int primary key);
        insert into c_new values (1);`);
    } finally {
      await first.close();
    }
    assert(!logs.lines.some((line) => line.includes("without a snapshot")));
    const second = await openSource({ ...config, "slot.drop.on.stop": "true" }, offset);
    try {
      await waitForActiveSlot(sql, slot);
      const warning = logs.lines.find((line) => line.includes("without a snapshot"));
      assert(warning, `a warning names the table: ${logs.lines.join("\n")}`);
      assertMatch(warning, /^public\.c_new start to be streamed now/);
      assertMatch(warning, /offsets reset/);
    } finally {
      await second.close();
    }
  } finally {
    await sql.end();
    await db.drop();
  }
});

Deno.test("postgres_cdc captures a partition named alone under its own name", async () => {
  const db = await createTestDatabase("cdc_part_alone");
  const sql = postgres(db.url, { max: 1, onnotice: () => {} });
  try {
    await sql.unsafe(SOURCE);
    const source = await openSource({
      "connection.url": db.url,
      "topic.prefix": "src",
      "slot.name": uniqueSlot("part_alone"),
      "slot.drop.on.stop": "true",
      "publication.name": "pub_alone",
      "table.include.list": "public\\.ev_eu",
      "snapshot.mode": "initial",
      "poll.interval.ms": "20",
    });
    try {
      await source.take(2);
      await sql`insert into ev values (10, 'us', 'not captured'), (11, 'eu', 'marker')`;
      await source.readUntil("the marker", (r) => (r.key as { id: number })?.id === 11);
      assertEquals(
        source.records.map((r) => `${r.topic} ${(r.key as { id: number }).id}`),
        ["src.public.ev_eu 1", "src.public.ev_eu 2", "src.public.ev_eu 11"],
      );
    } finally {
      await source.close();
    }
  } finally {
    await sql.end();
    await db.drop();
  }
});

Deno.test("postgres_cdc keeps streaming partitions under their own names from an all-tables publication without via-root that it captures whole", async () => {
  const db = await createTestDatabase("cdc_part_alltables");
  const sql = postgres(db.url, { max: 1, onnotice: () => {} });
  await using logs = await capturingLogs();
  try {
    await sql.unsafe(SOURCE + `create publication pub_all for all tables;`);
    const source = await openSource({
      "connection.url": db.url,
      "topic.prefix": "src",
      "slot.name": uniqueSlot("part_all"),
      "slot.drop.on.stop": "true",
      "publication.name": "pub_all",
      "snapshot.mode": "initial",
      "poll.interval.ms": "20",
    });
    try {
      await source.take(4);
      await sql`insert into ev values (12, 'us', 'marker')`;
      await source.readUntil("the marker", (r) => (r.key as { id: number })?.id === 12);
      assertEquals(
        source.records.map((r) => `${r.topic} ${(r.key as { id: number }).id}`),
        [
          "src.public.ev_eu 1",
          "src.public.ev_eu 2",
          "src.public.ev_us 3",
          "src.public.ev_us 4",
          "src.public.ev_us 12",
        ],
      );
    } finally {
      await source.close();
    }
    assertEquals(
      await viaRoot(sql, "pub_all"),
      false,
      "an existing all-tables publication is kept",
    );
    assert(
      logs.lines.some((line) => line.includes("arrive under their partitions' names")),
      logs.lines.join("\n"),
    );
  } finally {
    await sql.end();
    await db.drop();
  }
});
