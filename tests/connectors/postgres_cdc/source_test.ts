/**
 * The `postgres_cdc` source on its own: the events it emits, its offsets,
 * and resuming inside a transaction. Runs against the private PostgreSQL of
 * `deno task test`.
 */
import postgres from "postgres";
import { assert, assertEquals, assertGreater, assertMatch } from "../../_assert.ts";
import { waitUntilSteady } from "../../_wait.ts";
import { createTestDatabase, type TestDatabase } from "../../_services.ts";
import { openSource, uniqueSlot, waitForActiveSlot } from "../../_cdc.ts";
import { ReplicationConnection } from "../../../connectors/postgres_cdc/_replication.ts";
import { dropSlot } from "../../../connectors/postgres_cdc/_slot.ts";
import type { ChangeEvent, SluiceRecord } from "../../../api/record.ts";

interface Fixture extends AsyncDisposable {
  db: TestDatabase;
  sql: postgres.Sql;
  slot: string;
  config(extra?: Record<string, string>): Record<string, string>;
}

async function fixture(name: string, ddl: string): Promise<Fixture> {
  const db = await createTestDatabase(name);
  const sql = postgres(db.url, { max: 2, onnotice: () => {} });
  await sql.unsafe(ddl);
  const slot = uniqueSlot("cdc_src");
  return {
    db,
    sql,
    slot,
    config: (extra = {}) => ({
      "connection.url": db.url,
      "topic.prefix": "shop",
      "slot.name": slot,
      "publication.name": "cdc_pub",
      "snapshot.mode": "never",
      "poll.interval.ms": "10",
      ...extra,
    }),
    async [Symbol.asyncDispose]() {
      await sql.end();
      await db.drop();
    },
  };
}

const event = (record: SluiceRecord) => record.value as ChangeEvent;
const isKey = (record: SluiceRecord, id: number) => (record.key as { id?: number })?.id === id;

Deno.test("postgres_cdc emits Debezium envelopes for inserts, updates, deletes and truncates", async () => {
  await using f = await fixture(
    "cdc_envelope",
    `create table public.items (id int primary key, name text, qty int);
     create table public.other (id int primary key);`,
  );
  const source = await openSource(f.config({ "table.include.list": "public\\.items" }));
  try {
    await waitForActiveSlot(f.sql, f.slot);
    await f.sql.begin(async (tx) => {
      await tx`insert into items values (1, 'apple', 3), (2, 'pear', 5)`;
      await tx`insert into other values (1)`;
    });
    await f.sql`update items set qty = 4 where id = 1`;
    await f.sql`delete from items where id = 2`;
    await f.sql`truncate items`;
    await source.take(6);
    const [c1, c2, u, d, tombstone, t] = source.records;
    assertEquals(c1.topic, "shop.public.items");
    assertEquals(c1.key, { id: 1 });
    const created = event(c1);
    assertEquals(created.op, "c");
    assertEquals(created.before, null);
    assertEquals(created.after, { id: 1, name: "apple", qty: 3 });
    assertEquals(created.source.connector, "postgresql");
    assertEquals(created.source.name, "shop");
    assertEquals(created.source.db, f.db.name);
    assertEquals(created.source.schema, "public");
    assertEquals(created.source.table, "items");
    assertEquals(created.source.snapshot, "false");
    assertEquals(created.source.xmin, null);
    assert(typeof created.source.txId === "number", "txId is a number");
    assert(typeof created.source.lsn === "number" && created.source.lsn > 0, "lsn is a number");
    assertMatch(String(created.source.sequence), /^\["\d+","\d+"\]$/);
    assert(Math.abs(created.source.ts_ms - Date.now()) < 60_000, "source.ts_ms is the commit time");
    assertEquals(event(c2).source.txId, created.source.txId);

    assertEquals(event(u).op, "u");
    assertEquals(event(u).before, null, "default replica identity: no old image on updates");
    assertEquals(event(u).after, { id: 1, name: "apple", qty: 4 });

    assertEquals(event(d).op, "d");
    assertEquals(d.key, { id: 2 });
    assertEquals(event(d).before, { id: 2 }, "default replica identity: the old key");
    assertEquals(event(d).after, null);
    assertEquals(tombstone.key, { id: 2 });
    assertEquals(tombstone.value, null);

    assertEquals(event(t).op, "t");
    assertEquals(t.key, null);
    assertEquals(t.topic, "shop.public.items");
    // A marker change written after them: once it arrives, public.other's would have too.
    await f.sql`insert into items values (3, 'marker', 0)`;
    const meanwhile = await source.readUntil("the marker", (r) => isKey(r, 3));
    assertEquals(
      meanwhile.map((r) => r.key),
      [{ id: 3 }],
      "changes of public.other are not captured",
    );
  } finally {
    await source.close();
  }
});

Deno.test("postgres_cdc gives the whole old row with REPLICA IDENTITY FULL and splits key changes", async () => {
  await using f = await fixture(
    "cdc_identity",
    `create table public.people (id int primary key, name text, city text);
     alter table public.people replica identity full;`,
  );
  const source = await openSource(f.config({ "tombstones.on.delete": "false" }));
  try {
    await waitForActiveSlot(f.sql, f.slot);
    await f.sql`insert into people values (1, 'Ada', 'London')`;
    await f.sql`update people set city = 'Paris' where id = 1`;
    await f.sql`update people set id = 2 where id = 1`;
    await f.sql`delete from people where id = 2`;
    await source.take(5);
    const [, update, keyDelete, keyCreate, remove] = source.records.map(event);
    assertEquals(update.op, "u");
    assertEquals(update.before, { id: 1, name: "Ada", city: "London" });
    assertEquals(update.after, { id: 1, name: "Ada", city: "Paris" });
    // A key change is a delete of the old key and a create of the new one.
    assertEquals([keyDelete.op, keyCreate.op], ["d", "c"]);
    assertEquals(keyDelete.before, { id: 1, name: "Ada", city: "Paris" });
    assertEquals(source.records[2].key, { id: 1 });
    assertEquals(source.records[3].key, { id: 2 });
    assertEquals(remove.op, "d");
    assertEquals(remove.before, { id: 2, name: "Ada", city: "Paris" });
  } finally {
    await source.close();
  }
});

Deno.test("postgres_cdc leaves unchanged TOAST columns out of update events", async () => {
  await using f = await fixture(
    "cdc_toast",
    `create table public.docs (id int primary key, body text, n int);
     alter table public.docs alter column body set storage external;`,
  );
  const source = await openSource(f.config());
  try {
    await waitForActiveSlot(f.sql, f.slot);
    await f.sql`insert into docs values (1, repeat('toast ', 5000), 1)`;
    await f.sql`update docs set n = 2 where id = 1`;
    await source.take(2);
    const [insert, update] = source.records.map(event);
    assertEquals((insert.after!.body as string).length, 30000);
    assertEquals(update.after, { id: 1, n: 2 }, "body (unchanged, TOASTed) is left out");
  } finally {
    await source.close();
  }
});

Deno.test("postgres_cdc fills an update's unchanged TOAST columns from the whole old row REPLICA IDENTITY FULL sends", async () => {
  await using f = await fixture(
    "cdc_toast_full",
    `create table public.docs (id int primary key, body text, n int);
     alter table public.docs alter column body set storage external;
     alter table public.docs replica identity full;`,
  );
  const source = await openSource(f.config());
  try {
    await waitForActiveSlot(f.sql, f.slot);
    await f.sql`insert into docs values (1, repeat('toast ', 5000), 1)`;
    await f.sql`update docs set n = 2 where id = 1`;
    await source.take(2);
    const [, update] = source.records.map(event);
    assertEquals((update.before!.body as string).length, 30000, "PostgreSQL sent it in before");
    assertEquals(update.after, { id: 1, body: "toast ".repeat(5000), n: 2 });
    assertEquals(source.records[1].headers?.["__sluice.unavailable"], undefined);
  } finally {
    await source.close();
  }
});

Deno.test("postgres_cdc resumes inside a transaction from a partial offset without loss or duplicates", async () => {
  await using f = await fixture("cdc_partial", `create table public.t (id int primary key);`);
  const config = f.config({ "max.batch.size": "10", "tombstones.on.delete": "false" });
  const first = await openSource(config);
  let offset;
  try {
    await waitForActiveSlot(f.sql, f.slot);
    await f.sql`insert into t select g from generate_series(1, 100) g`;
    await first.take(40);
    offset = first.offsets[0] as { lsn: string; partial?: { events: number } };
    assertEquals(
      offset.partial?.events,
      40,
      "a batch waits for its transaction's end up to 4 × max.batch.size, then splits it",
    );
  } finally {
    await first.close();
  }
  const second = await openSource(config, offset);
  try {
    await second.take(60);
    const ids = second.records.map((r) => (r.key as { id: number }).id);
    assertEquals(ids, Array.from({ length: 60 }, (_, i) => i + 41));
    // The batch that filled up on the 100th change went before the commit arrived.
    const last = second.offsets.at(-1) as { partial?: { events: number } };
    assertEquals(last.partial?.events ?? 100, 100);
    await f.sql`insert into t values (101)`;
    const meanwhile = await second.readUntil("the marker row 101", (r) => isKey(r, 101));
    assertEquals(
      meanwhile.map((r) => r.key),
      [{ id: 101 }],
      "nothing after row 100 but the marker",
    );
  } finally {
    await second.close();
  }
});

Deno.test("postgres_cdc snapshots existing rows as op r, then streams from the consistent point", async () => {
  await using f = await fixture(
    "cdc_snapshot",
    `create table public.t (id int primary key, v text);
     insert into t select g, 'v' || g from generate_series(1, 25) g;`,
  );
  const source = await openSource(f.config({ "snapshot.mode": "initial", "max.batch.size": "10" }));
  try {
    await source.take(25);
    const reads = source.records.map(event);
    assert(reads.every((e) => e.op === "r"), "snapshot events are op r");
    assertEquals(reads[0].source.snapshot, "first");
    assertEquals(reads[24].source.snapshot, "last");
    assertEquals(reads[10].source.snapshot, "true");
    assertEquals(source.offsets, [], "snapshot batches carry no offset");
    await f.sql`insert into t values (26, 'new')`;
    await source.take(1);
    assertEquals(source.offsets.length >= 2, true, "the end of the snapshot is an offset");
    assertEquals(event(source.records[25]).op, "c");
    assertEquals(source.records[25].key, { id: 26 });
  } finally {
    await source.close();
  }
});

Deno.test("postgres_cdc marks the first and last snapshot record of each table", async () => {
  await using f = await fixture(
    "cdc_snapshot_marks",
    `create table public.a (id int primary key);
     create table public.b (id int primary key);
     create table public.c (id int primary key);
     insert into a select generate_series(1, 3);
     insert into c values (1);`,
  );
  const source = await openSource(f.config({ "snapshot.mode": "initial", "max.batch.size": "2" }));
  try {
    await source.take(4);
    const marks = (table: string) =>
      source.records.map(event).filter((e) => e.source.table === table).map((e) =>
        e.source.snapshot
      );
    const [a, c] = [marks("a"), marks("c")];
    assertEquals(a.length, 3);
    assertEquals(c.length, 1);
    // The tables come in any order: one of them opens the snapshot, the other ends it.
    const aFirst = a[0] === "first";
    assertEquals(
      a,
      aFirst ? ["first", "true", "last_in_data_collection"] : [
        "first_in_data_collection",
        "true",
        "last",
      ],
    );
    assertEquals(
      c,
      [aFirst ? "last" : "last_in_data_collection"],
      "a one-row table's record ends it",
    );
  } finally {
    await source.close();
  }
});

Deno.test("postgres_cdc leaves excluded columns out of snapshot and stream events", async () => {
  await using f = await fixture(
    "cdc_columns",
    `create table public.people (id int primary key, name text, ssn text);
     insert into people values (1, 'Ada', '123');`,
  );
  const source = await openSource(f.config({
    "snapshot.mode": "initial",
    "column.exclude.list": "public\\.people\\.ssn",
  }));
  try {
    await source.take(1);
    await f.sql`insert into people values (2, 'Grace', '456')`;
    await source.take(1);
    assertEquals(source.records.map((r) => event(r).after), [
      { id: 1, name: "Ada" },
      { id: 2, name: "Grace" },
    ]);
  } finally {
    await source.close();
  }
});

Deno.test("postgres_cdc stops reading the stream while nobody pulls (TCP backpressure)", async () => {
  await using f = await fixture(
    "cdc_backpressure",
    `create table public.t (id int primary key, pad text);`,
  );
  const source = await openSource(f.config({ "max.batch.size": "100" }));
  try {
    await waitForActiveSlot(f.sql, f.slot);
    // 2,000 transactions, about 40 MB of WAL; the test does not pull meanwhile.
    for (let i = 0; i < 20; i++) {
      await f.sql.unsafe(`
        do $$ begin
          for g in ${i * 100 + 1}..${(i + 1) * 100} loop
            insert into t select g * 100 + k, repeat('x', 200) from generate_series(1, 100) k;
            commit;
          end loop;
        end $$`);
    }
    const [{ end }] = await f.sql`select pg_current_wal_lsn()::text as end`;
    // Once the walsender stops moving for a second, it is held back, not just slow
    // (its own position: the server's WAL also grows with other databases' writes).
    const sent = await waitUntilSteady("the walsender's sent_lsn", async () => {
      const [row] = await f.sql`select sent_lsn::text as sent from pg_stat_replication
        where application_name = 'sluice:cdc-test'`;
      return row.sent as string;
    }, 1000);
    const [{ behind }] = await f.sql`select (${end}::pg_lsn - ${sent}::pg_lsn)::bigint as behind`;
    assertGreater(Number(behind), 10_000_000, `the walsender is held back: ${behind} bytes`);
    // Pulling drains it all.
    await source.take(200_000, 120_000);
    assertEquals(source.records.length, 200_000);
  } finally {
    await source.close();
  }
});

Deno.test("postgres_cdc drops its slot on stop with slot.drop.on.stop", async () => {
  await using f = await fixture("cdc_drop_slot", `create table public.t (id int primary key);`);
  const source = await openSource(f.config({ "slot.drop.on.stop": "true" }));
  await waitForActiveSlot(f.sql, f.slot);
  await source.close();
  const slots = await f.sql`select 1 from pg_replication_slots where slot_name = ${f.slot}`;
  assertEquals(slots.length, 0);
});

Deno.test("dropping a slot never ends another process' walsender, and ends its own lingering one", async () => {
  await using f = await fixture(
    "cdc_drop_busy",
    `create table public.t (id int primary key); create publication busy_pub for table public.t;`,
  );
  const other = new ReplicationConnection(f.db.url, "sluice:other-process");
  let closed = false;
  try {
    await other.createSlot(f.slot, false);
    await other.tryLock("424242");
    await other.start(f.slot, "busy_pub", 0n);
    await waitForActiveSlot(f.sql, f.slot);
    const pid = other.pid!;
    assert(pid > 0, "the replication connection knows its walsender's pid");

    const error = await dropSlot(f.sql, f.slot, { waitMs: 500 }).then(
      () => undefined,
      (e: Error) => e,
    );
    assertMatch(String(error?.message), new RegExp(`still in use by walsender pid ${pid}`));
    const [held] = await f.sql`select active_pid from pg_replication_slots
      where slot_name = ${f.slot}`;
    assertEquals(held.active_pid, pid, "the other process' walsender still streams");

    // The same walsender as this process' own (closed, but not gone yet) is ended.
    await dropSlot(f.sql, f.slot, { ownPid: pid, waitMs: 10_000 });
    const slots = await f.sql`select 1 from pg_replication_slots where slot_name = ${f.slot}`;
    assertEquals(slots.length, 0);
    await other.close().catch(() => {});
    closed = true;
  } finally {
    if (!closed) await other.close().catch(() => {});
    await f.sql`select pg_drop_replication_slot(slot_name) from pg_replication_slots
      where slot_name = ${f.slot} and not active`;
  }
});

Deno.test("postgres_cdc with publication.autocreate.mode disabled needs an existing publication", async () => {
  await using f = await fixture("cdc_no_pub", `create table public.t (id int primary key);`);
  const source = await openSource(f.config({ "publication.autocreate.mode": "disabled" }));
  try {
    const error = await source.take(1, 5000).then(() => undefined, (e: Error) => e);
    assertMatch(String(error?.message), /Publication "cdc_pub" does not exist/);
  } finally {
    await source.close();
  }
});

Deno.test("postgres_cdc ends batches at max.batch.bytes: wide rows stay bounded, in the snapshot and the stream", async () => {
  await using f = await fixture(
    "cdc_batch_bytes",
    `create table public.docs (id int primary key, body text not null);
     insert into docs select g, repeat(chr(65 + g), 5000) from generate_series(1, 20) g;`,
  );
  // 5,000 bytes a row: the fourth row of a batch reaches 20,000 bytes and ends it.
  const source = await openSource(
    f.config({ "snapshot.mode": "initial", "max.batch.bytes": "20000", "max.batch.size": "100" }),
  );
  try {
    // The slot was created before the snapshot: rows written now are streamed next.
    const snapshot = await source.take(20);
    await f
      .sql`insert into docs select g, repeat(chr(45 + g), 5000) from generate_series(21, 40) g`;
    const stream = await source.take(20);
    for (const [phase, batches] of [["snapshot", snapshot], ["stream", stream]] as const) {
      const sizes = batches.map((batch) => batch.records.length);
      assert(sizes.every((size) => size <= 4), `${phase} batches of ${sizes.join(", ")} rows`);
      assertGreater(sizes.length, 4, `${phase}: ${sizes.join(", ")}`);
    }
    assertEquals(
      source.records.map((r) => (r.key as { id: number }).id),
      Array.from({ length: 40 }, (_, i) => i + 1),
    );
    assertEquals((event(source.records[39]).after as { body: string }).body.length, 5000);
  } finally {
    await source.close();
  }
});
