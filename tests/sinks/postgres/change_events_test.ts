/**
 * The CDC behaviour of the `postgres` sink: the stale-event guard, unchanged
 * TOAST columns, and truncate events, with hand-made change events against
 * the private PostgreSQL of `deno task test`.
 */
import postgres from "postgres";
import { getLogger } from "@logtape/logtape";
import type { Logger } from "@logtape/logtape";
import { assertEquals, assertMatch } from "../../_assert.ts";
import { type TableOptions, TargetTable } from "../../../sinks/postgres/_table.ts";
import { SnapshotSweeper } from "../../../sinks/postgres/_sweep.ts";
import { createTestDatabase } from "../../_services.ts";
import postgresSink from "../../../sinks/postgres/mod.ts";
import type { Sink, SinkResult } from "../../../api/plugin.ts";
import type { ChangeOp, Row, SluiceRecord } from "../../../api/record.ts";
import { changeEvent } from "./_events.ts";
import { capturingLogs } from "../../_logs.ts";

/** A change event of public.items, as postgres_cdc makes it, at commit LSN `commit`. */
const change = (op: ChangeOp, row: Row | null, commit: number, key?: Row) =>
  changeEvent(op, row, commit, { key });

async function withSink(
  ddl: string,
  extra: Record<string, string>,
  fn: (
    write: (...records: SluiceRecord[]) => Promise<SinkResult>,
    sql: postgres.Sql,
  ) => Promise<void>,
) {
  const db = await createTestDatabase("cdc_sink");
  const sql = postgres(db.url, { max: 1, onnotice: () => {} });
  let sink: Sink | undefined;
  try {
    await sql.unsafe(ddl);
    const config = postgresSink.config.parse({
      "connection.url": db.url,
      table: "public.items",
      ...extra,
    });
    sink = await postgresSink.create(config, {
      pipeline: "cdc-sink-test",
      logger: getLogger(["sluice", "test"]),
      signal: new AbortController().signal,
    });
    const write = (...records: SluiceRecord[]) =>
      sink!.write({
        records,
        reject: (failures) => Promise.reject(failures[0].error),
      });
    await fn(write, sql);
  } finally {
    await sink?.close();
    await sql.end();
    await db.drop();
  }
}

const ITEMS = `create table public.items (
  id int primary key, name text, body text, deleted_at timestamptz, _source_lsn pg_lsn)`;

Deno.test("postgres sink skips change events older than the row's source position", async () => {
  await withSink(ITEMS, {}, async (write, sql) => {
    assertEquals(await write(change("c", { id: 1, name: "new" }, 200)), { written: 1, skipped: 0 });
    // A replay of an older update does not roll the row back.
    assertEquals(await write(change("u", { id: 1, name: "old" }, 100)), { written: 0, skipped: 1 });
    // Nor does an older delete delete it.
    assertEquals(await write(change("d", null, 150, { id: 1 })), { written: 0, skipped: 1 });
    let [row] = await sql`select name, deleted_at, _source_lsn::text as lsn from items`;
    assertEquals([row.name, row.deleted_at, row.lsn], ["new", null, "0/C8"]);
    // A newer delete applies (soft), and its tombstone is ignored.
    const tombstone: SluiceRecord = { topic: "shop.public.items", key: { id: 1 }, value: null };
    assertEquals(await write(change("d", null, 300, { id: 1 }), tombstone), {
      written: 1,
      skipped: 1,
    });
    // Replaying the create (position 200) cannot bring the row back.
    assertEquals(await write(change("c", { id: 1, name: "new" }, 200)), { written: 0, skipped: 1 });
    [row] = await sql`select name, deleted_at is not null as deleted, _source_lsn::text as lsn
                      from items`;
    assertEquals([row.name, row.deleted, row.lsn], ["new", true, "0/12C"]);
    // Events of one transaction (equal positions) apply in order.
    assertEquals(
      await write(change("c", { id: 2, name: "a" }, 400), change("u", { id: 2, name: "b" }, 400)),
      { written: 2, skipped: 0 },
    );
    assertEquals(await write(change("u", { id: 2, name: "c" }, 400)), { written: 1, skipped: 0 });
    [row] = await sql`select name from items where id = 2`;
    assertEquals(row.name, "c");
    // Events of one row from several partitions, older last in the batch: the newer wins.
    await write(
      change("u", { id: 2, name: "newest", body: "b" }, 600),
      change("u", { id: 2, name: "older" }, 500),
    );
    [row] = await sql`select name, body, _source_lsn::text as lsn from items where id = 2`;
    assertEquals([row.name, row.body, row.lsn], ["newest", "b", "0/258"]);
  });
});

Deno.test("postgres sink never overwrites columns an update event left out (unchanged TOAST)", async () => {
  await withSink(ITEMS, {}, async (write, sql) => {
    const body = "x".repeat(10_000);
    // Insert and update of one key in one batch, and a row with a different column set.
    await write(
      change("c", { id: 1, name: "a", body }, 100),
      change("u", { id: 1, name: "b" }, 110),
      change("c", { id: 2, name: "z", body: "short" }, 120),
    );
    await write(change("u", { id: 1, name: "c" }, 130), change("u", { id: 2, name: "y" }, 130));
    const rows = await sql`select id, name, length(body) as size from items order by id`;
    assertEquals(rows.map((r) => [r.id, r.name, r.size]), [[1, "c", 10_000], [2, "y", 5]]);
  });
});

Deno.test("postgres sink fails an update without its unchanged TOAST value when the target lacks the row", async () => {
  await withSink(ITEMS, {}, async (write, sql) => {
    const untoasted = (id: number, commit: number): SluiceRecord => ({
      ...change("u", { id, name: "changed" }, commit),
      headers: { "__sluice.unavailable": '["body"]' },
    });
    await write(change("c", { id: 1, name: "a", body: "kept" }, 100));
    // Stored: the body stays. In the same batch as its create: taken from it.
    assertEquals(
      await write(untoasted(1, 110), change("c", { id: 3, name: "c", body: "new" }, 115), {
        ...untoasted(3, 120),
      }),
      { written: 3, skipped: 0 },
    );
    // Never received (filtered out upstream, say): inserted it would hold NULL.
    let error: Error | undefined;
    await write(untoasted(2, 130)).catch((e) => error = e);
    assertMatch(
      error?.message ?? "",
      /holds no row \{"id":2\}, and this update did not carry the unchanged TOAST value of "body".*REPLICA IDENTITY FULL/,
    );
    const rows = await sql`select id, name, body from items order by id`;
    assertEquals(rows.map((r) => [r.id, r.name, r.body]), [
      [1, "changed", "kept"],
      [3, "changed", "new"],
    ]);
  });
});

Deno.test("postgres sink takes a moved key's unsent values from the row its exact int64 old key names", async () => {
  const ddl = ITEMS.replace("id int primary key", "id bigint primary key");
  await withSink(ddl, {}, async (write, sql) => {
    // Neighbours as doubles: 2^53 + 1 parsed as a number is 2^53.
    await sql`insert into items (id, name, body) values
      (9007199254740992, 'a', 'the wrong row'), (9007199254740993, 'b', 'the right row')`;
    // Another producer's create after a key change, its int64 keys as JSON numbers.
    const moved: SluiceRecord = {
      ...change("c", { id: "9007199254740995", name: "moved" }, 500, { id: "9007199254740995" }),
      headers: {
        "__debezium.oldkey": '{"id":9007199254740993}',
        "__sluice.unavailable": '["body"]',
      },
    };
    assertEquals(await write(moved), { written: 1, skipped: 0 });
    const [row] = await sql`select body from items where id = 9007199254740995`;
    assertEquals(row.body, "the right row");
  });
});

Deno.test("postgres sink takes a moved key's values read from Kafka only from a row older than the move", async () => {
  await withSink(ITEMS, {}, async (write, sql) => {
    const kafka = { partition: 0, offset: 1 };
    const moved = (id: number, from: number, commit: number): SluiceRecord => ({
      ...change("c", { id, name: "moved" }, commit),
      origin: kafka,
      headers: {
        "__debezium.oldkey": JSON.stringify({ id: from }),
        "__sluice.unavailable": '["body"]',
      },
    });
    await write(change("c", { id: 1, name: "a", body: "row 1's body" }, 100));
    // A new row reused key 1 after the move, and its partition was read first.
    await write(change("c", { id: 1, name: "reused", body: "the new row's body" }, 300));
    let error: Error | undefined;
    await write(moved(2, 1, 200)).catch((e) => error = e);
    assertMatch(
      error?.message ?? "",
      /no row under the old key to take it from written before 0\/C8/,
    );
    // Written before the move, the row under the old key is the moved one.
    await write(change("c", { id: 5, name: "e", body: "row 5's body" }, 400));
    assertEquals(await write(moved(6, 5, 500)), { written: 1, skipped: 0 });
    const [row] = await sql`select body from items where id = 6`;
    assertEquals(row.body, "row 5's body");
  });
});

Deno.test("postgres sink applies truncate events per delete.mode, keeping later rows", async () => {
  await withSink(ITEMS, {}, async (write, sql) => {
    await write(change("c", { id: 1, name: "a" }, 100), change("c", { id: 2, name: "b" }, 300));
    assertEquals(await write(change("t", null, 200)), { written: 1, skipped: 0 });
    const rows = await sql`select id, deleted_at is not null as deleted from items order by id`;
    assertEquals(rows.map((r) => [r.id, r.deleted]), [[1, true], [2, false]]);
  });
  await withSink(
    ITEMS,
    { "delete.mode": "hard", "source.position.column": "" },
    async (write, sql) => {
      await write(change("c", { id: 1, name: "a" }, 100), change("c", { id: 2, name: "b" }, 300));
      await write(change("t", null, 200), change("c", { id: 3, name: "c" }, 200));
      const rows = await sql`select id from items order by id`;
      assertEquals(rows.map((r) => r.id), [3], "without positions a truncate removes every row");
      // From Kafka, the rows' changes may be on other partitions, read before it: refused.
      const fromKafka = {
        ...change("t", null, 400),
        origin: { topic: "shop.public.items", partition: 1, offset: 9 },
      };
      let error: Error | undefined;
      await write(fromKafka).catch((e) => error = e);
      assertMatch(error?.message ?? "", /truncate read from partition 1 .*_source_lsn/);
      assertEquals((await sql`select id from items`).length, 1);
    },
  );
  await withSink(ITEMS, { "delete.mode": "hard" }, async (write, sql) => {
    // With positions, the same truncate removes only the older rows.
    await write(change("c", { id: 1, name: "a" }, 100), change("c", { id: 2, name: "b" }, 300));
    const fromKafka = { ...change("t", null, 200), origin: { partition: 1, offset: 9 } };
    assertEquals(await write(fromKafka), { written: 1, skipped: 0 });
    assertEquals((await sql`select id from items`).map((r) => r.id), [2]);
    // A row of the truncate's own transaction came first from another partition:
    // inserted after the truncate (kept) or before it (removed)? Refused, not guessed.
    await write(change("c", { id: 3, name: "reloaded" }, 400));
    let error: Error | undefined;
    await write({ ...change("t", null, 400), origin: { partition: 2, offset: 4 } })
      .catch((e) => error = e);
    assertMatch(error?.message ?? "", /rows its own transaction wrote arrived first/);
    assertEquals((await sql`select id from items order by id`).map((r) => r.id), [2, 3]);
  });
});

/** A snapshot record at consistent point `at`, with its `source.snapshot` mark. */
function read(id: number, at: number, snapshot = "true", table = "items"): SluiceRecord {
  const record = change("r", { id, name: `snap ${id}` }, at);
  const value = record.value as { source: Record<string, unknown> };
  value.source = { ...value.source, snapshot, table };
  return record;
}

const liveIds = async (sql: postgres.Sql) =>
  (await sql`select id from items where deleted_at is null order by id`).map((r) => r.id);

Deno.test("postgres sink deletes, when a table's snapshot ends, the rows that snapshot did not write", async () => {
  await withSink(ITEMS, {}, async (write, sql) => {
    // An earlier (interrupted) snapshot at 100 wrote rows 1 to 5.
    await write(read(1, 100, "first"), read(2, 100), read(3, 100), read(4, 100), read(5, 100));
    // Rows 3 and 5 were deleted at the source before the new snapshot at 200.
    await write(read(1, 200, "first"), read(2, 200));
    await write(change("c", { id: 7, name: "streamed" }, 250), read(4, 200, "last"));
    assertEquals(await liveIds(sql), [1, 2, 4, 7], "rows 3 and 5 are soft-deleted");
    const [row3] = await sql`select _source_lsn::text as lsn from items where id = 3`;
    assertEquals(row3.lsn, "0/C8", "a swept row takes the snapshot's position");
    // A snapshot record still on its way (another partition) revives its row.
    await write(read(5, 200));
    assertEquals(await liveIds(sql), [1, 2, 4, 5, 7]);
  });
  await withSink(ITEMS, { "delete.mode": "hard" }, async (write, sql) => {
    await write(read(1, 100, "first"), read(2, 100), read(3, 100, "last"));
    await write(read(2, 200, "first"), read(3, 200, "last_in_data_collection"));
    assertEquals((await sql`select id from items order by id`).map((r) => r.id), [2, 3]);
  });
});

Deno.test("a sweep rolled back with its batch deletes nothing and says nothing was deleted", async () => {
  await using logs = await capturingLogs();
  await withSink(
    `${ITEMS}; alter table public.items add constraint no_bad check (name <> 'bad')`,
    {},
    async (write, sql) => {
      await write(read(1, 100, "first"), read(2, 100), read(3, 100, "last"));
      await write(read(1, 200, "first"));
      // The batch that ends the snapshot also holds a record the target refuses:
      // with failures rejected, the whole batch (and its sweep of row 3) rolls back.
      const bad = change("c", { id: 9, name: "bad" }, 250);
      const failed = await write(read(2, 200, "last"), bad).then(() => false, () => true);
      assertEquals(failed, true);
      assertEquals(await liveIds(sql), [1, 2, 3], "row 3 was not swept");
    },
  );
  const claims = logs.lines.filter((line) => /ended: [1-9]\d* rows it did not hold/.test(line));
  assertEquals(claims, [], "no sweep is reported for a batch that rolled back");
});

Deno.test("postgres sink sweeps a snapshot that began on an empty table only when an older row arrived", async () => {
  await withSink(ITEMS, {}, async (write, sql) => {
    await write(read(1, 200, "first"), read(2, 200));
    // A late event of an earlier run, older than the snapshot.
    await write(change("c", { id: 9, name: "old" }, 150));
    await write(read(3, 200, "last"));
    assertEquals(await liveIds(sql), [1, 2, 3], "row 9 was not in the snapshot");
  });
  await withSink(ITEMS, {}, async (write, sql) => {
    await write(read(1, 200, "first"), read(2, 200, "last"));
    assertEquals(await liveIds(sql), [1, 2]);
  });
});

Deno.test("postgres sink warns when a snapshot begins on a filled table it cannot sweep (no position column)", async () => {
  const db = await createTestDatabase("cdc_sink_sweep");
  const sql = postgres(db.url, { max: 1, onnotice: () => {} });
  try {
    await sql`create table items (id int primary key, name text, deleted_at timestamptz)`;
    const options = { insertMode: "upsert", deleteMode: "soft", softDeleteColumn: "deleted_at" };
    const table = (await TargetTable.open(sql, "public.items", options as TableOptions))!;
    const warnings: string[] = [];
    const logger = { warn: (message: string) => warnings.push(message) } as unknown as Logger;
    const sweeper = new SnapshotSweeper(logger, "_source_lsn");
    await sweeper.before(sql, [{
      table,
      edge: "first",
      position: 200n,
      source: "src.public.items",
    }]);
    assertEquals(warnings, [], "an empty table needs no sweep");
    await sql`insert into items values (1, 'earlier')`;
    await sweeper.before(sql, [{
      table,
      edge: "first",
      position: 300n,
      source: "src.public.items",
    }]);
    assertEquals(warnings.length, 1);
    assertMatch(warnings[0], /add column \{column\} pg_lsn/);
  } finally {
    await sql.end();
    await db.drop();
  }
});

Deno.test("postgres sink does not sweep a table that rows of another source table were merged into", async () => {
  // Two source tables routed into one target: a snapshot redone for one must not delete the other's rows.
  await withSink(ITEMS, {}, async (write, sql) => {
    await write(read(1, 100, "first", "shard_a"), read(2, 100, "last", "shard_a"));
    await write(read(11, 110, "first", "shard_b"), read(12, 110, "last", "shard_b"));
    await write(read(11, 200, "first", "shard_b"), read(12, 200, "last", "shard_b"));
    assertEquals(await liveIds(sql), [1, 2, 11, 12]);
  });
  // Another pipeline wrote shard_a's rows (this sink never saw them): snapshot.sweep false says so.
  await withSink(ITEMS, { "snapshot.sweep": "false" }, async (write, sql) => {
    await sql`insert into items (id, name, _source_lsn) values (1, 'other pipeline', '0/10')`;
    await write(read(11, 200, "first", "shard_b"), read(12, 200, "last", "shard_b"));
    assertEquals(await liveIds(sql), [1, 11, 12]);
  });
  // The same without the setting: the sweep takes row 1 (what the option is for).
  await withSink(ITEMS, {}, async (write, sql) => {
    await sql`insert into items (id, name, _source_lsn) values (1, 'other pipeline', '0/10')`;
    await write(read(11, 200, "first", "shard_b"), read(12, 200, "last", "shard_b"));
    assertEquals(await liveIds(sql), [11, 12]);
  });
});
