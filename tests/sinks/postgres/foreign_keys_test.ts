/**
 * A target that has the source's foreign keys, fed by a direct CDC stream:
 * with `session.replication.role` replica the changes apply as PostgreSQL's
 * logical replication applies them (a key change the source cascades, a
 * child moved before its parent is deleted); with the default a snapshot
 * still copies parents first, and a key change the target would cascade
 * stops the stream with a message saying what to do.
 */
import type postgres from "postgres";
import { assert, assertEquals, assertMatch } from "../../_assert.ts";
import { specsFrom, type SyncFixture, syncFixture, tableDigest } from "../../_batch.ts";
import { startStream, uniqueSlot, waitForActiveSlot } from "../../_cdc.ts";
import { waitUntil } from "../../_wait.ts";

// By name, lines would come before orders.
const TABLES = (extra: string) =>
  `create table public.customers (id int primary key, name text ${extra});
   create table public.orders (id int primary key,
     customer int not null references customers on delete cascade ${extra});
   create table public.lines (id int primary key,
     order_id int not null references orders on delete cascade ${extra});
   create table public.categories (id int primary key, name text ${extra},
     parent int references categories on delete cascade %UPDATE%);`;
const SOURCE = TABLES("").replace("%UPDATE%", "on update cascade") +
  `insert into customers select g, 'c' || g from generate_series(1, 20) g;
   insert into orders select g, 1 + g % 20 from generate_series(1, 60) g;
   insert into lines select g, 1 + g % 60 from generate_series(1, 200) g;
   insert into categories values (10, 'A', null), (11, 'B', 10), (12, 'C', 11);`;
const TARGET = TABLES(", deleted_at timestamptz, _source_lsn pg_lsn").replace("%UPDATE%", "");

async function spec(f: SyncFixture, slot: string, extra: Record<string, string> = {}) {
  const [built] = await specsFrom({
    name: "fk",
    config: {
      "connector.class": "postgres_cdc",
      "connection.url": f.source.url,
      "topic.prefix": "src",
      "slot.name": slot,
      "poll.interval.ms": "20",
      "sink.class": "postgres",
      "sink.connection.url": f.target.url,
      transforms: "route",
      "transforms.route.type": "route",
      "transforms.route.regex": "src\\.(.*)",
      "transforms.route.replacement": "$1",
      "sink.table.name.format": "${topic}",
      "sink.delete.mode": "hard",
      ...extra,
    },
  });
  return built;
}

/** Each table's source columns, to compare source and target by. */
const COLUMNS: Record<string, string> = {
  customers: "id, name",
  orders: "id, customer",
  lines: "id, order_id",
  categories: "id, name, parent",
};
const digests = (sql: postgres.Sql) =>
  Promise.all(
    Object.entries(COLUMNS).map(([name, columns]) =>
      tableDigest(sql, `select ${columns} from ${name} order by id`)
    ),
  );

/** Waits for the first snapshot's last table (creating the slot waits for open transactions). */
async function snapshotLoaded(f: SyncFixture) {
  await waitUntil("the snapshot", async () => {
    const [row] = await f.targetSql`select count(*)::int as n from lines`;
    return row.n === 200;
  }, { timeoutMs: 60_000 });
}

Deno.test("with session.replication.role replica, a target with the source's foreign keys follows every change", async () => {
  await using f = await syncFixture("fk_replica", SOURCE, TARGET);
  const slot = uniqueSlot("fk_replica");
  const stream = startStream(await spec(f, slot, { "sink.session.replication.role": "replica" }));
  try {
    await snapshotLoaded(f);
    await waitForActiveSlot(f.sourceSql, slot);
    // A key change the source cascades to a child; the grandchild keeps its row.
    await f.sourceSql`update categories set id = 100 where id = 10`;
    // An order moved to another customer, then its old customer deleted with
    // the orders and lines the source cascades to.
    await f.sourceSql.begin(async (tx) => {
      await tx`update orders set customer = 2 where id = 3`;
      await tx`delete from customers where id = 3`;
    });
    await waitUntil(
      "the changes",
      async () =>
        JSON.stringify(await digests(f.targetSql)) === JSON.stringify(await digests(f.sourceSql)),
    );
  } finally {
    const report = await stream.stop();
    assertEquals(report.status, "stopped", report.error?.message);
  }
  const [{ n }] = await f.targetSql`select count(*)::int as n from categories`;
  assertEquals(n, 3, "the grandchild of the moved key is still there");
});

Deno.test("without it, a snapshot copies parents first, and a key change the target would cascade stops loudly", async () => {
  await using f = await syncFixture("fk_origin", SOURCE, TARGET);
  const slot = uniqueSlot("fk_origin");
  const stream = startStream(await spec(f, slot));
  await snapshotLoaded(f);
  await waitForActiveSlot(f.sourceSql, slot);
  // A hard delete of key 10 would take 11 and 12 with it at the target.
  await f.sourceSql`update categories set id = 100 where id = 10`;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), 30_000);
  });
  const report = await Promise.race([stream.done, timeout]) ?? await stream.stop();
  clearTimeout(timer);
  assertEquals(report.status, "failed", "the key change went through");
  assertMatch(
    report.error!.message,
    /Cannot apply a key change to table "public\.categories": .*foreign key categories_parent_fkey of categories acts ON DELETE .* Set the sink's session\.replication\.role to replica/,
  );
  const kept = await f.targetSql`select id from categories order by id`;
  assertEquals(kept.map((row) => row.id), [10, 11, 12], "nothing was deleted");
});

Deno.test("session.replication.role replica without the right to set it stops the start, naming the GRANT", async () => {
  await using f = await syncFixture("fk_grant", SOURCE, TARGET);
  const role = uniqueSlot("sluice_no_grant");
  await f.targetSql.unsafe(`create role ${role} login`);
  try {
    const url = new URL(f.target.url);
    url.username = role;
    const report = await startStream(
      await spec(f, uniqueSlot("fk_grant"), {
        "sink.connection.url": url.href,
        "sink.session.replication.role": "replica",
      }),
    ).done;
    assertEquals(report.status, "failed");
    assertMatch(
      report.error!.message,
      /session\.replication\.role is replica, but the sink's user may not set session_replication_role .*GRANT SET ON PARAMETER session_replication_role TO/,
    );
    const slots = await f
      .sourceSql`select 1 from pg_replication_slots where slot_name like 'fk_grant%'`;
    assert(slots.length === 0, "the source was never opened");
  } finally {
    await f.targetSql.unsafe(`drop role ${role}`);
  }
});

Deno.test("a source transaction past max.batch.size lands in one target transaction: a deferred key cycle holds", async () => {
  const cycle = (extra: string) =>
    `create table public.departments (id int primary key, manager int ${extra});
     create table public.employees (id int primary key,
       department int not null references departments ${extra});
     alter table departments add constraint manager_fk foreign key (manager)
       references employees deferrable initially deferred;`;
  await using f = await syncFixture(
    "fk_deferred",
    cycle(""),
    cycle(", deleted_at timestamptz, _source_lsn pg_lsn"),
  );
  const slot = uniqueSlot("fk_deferred");
  const stream = startStream(await spec(f, slot, { "max.batch.size": "100" }));
  try {
    await waitForActiveSlot(f.sourceSql, slot);
    // 60 departments whose managers (90 employees) come after them: a batch
    // cut at 100 changes would commit departments without their managers.
    await f.sourceSql.begin(async (tx) => {
      await tx`insert into departments select g, 1000 + g from generate_series(1, 60) g`;
      await tx`insert into employees select 1000 + g, 1 + g % 60 from generate_series(1, 90) g`;
    });
    await waitUntil("the transaction", async () => {
      const [row] = await f.targetSql`select count(*)::int as n from employees`;
      return row.n === 90;
    });
  } finally {
    const report = await stream.stop();
    assertEquals(report.status, "stopped", report.error?.message);
  }
});

Deno.test("a TRUNCATE … CASCADE at the source empties target tables that keep their foreign keys, children first", async () => {
  const ddl = (extra: string) =>
    `create table public.parents (id int primary key ${extra});
     create table public.children (id int primary key, parent int not null references parents ${extra});
     insert into parents select g from generate_series(1, 5) g;
     insert into children select g, 1 + g % 5 from generate_series(1, 10) g;`;
  await using f = await syncFixture("fk_truncate", ddl(""), ddl(", _source_lsn pg_lsn"));
  await f.targetSql`truncate parents cascade`;
  const slot = uniqueSlot("fk_truncate");
  const stream = startStream(await spec(f, slot));
  try {
    await waitUntil("the snapshot", async () => {
      const [row] = await f.targetSql`select count(*)::int as n from children`;
      return row.n === 10;
    }, { timeoutMs: 60_000 });
    await waitForActiveSlot(f.sourceSql, slot);
    await f.sourceSql`truncate parents cascade`;
    await waitUntil("the truncate", async () => {
      const [row] = await f.targetSql`select
        (select count(*) from parents) + (select count(*) from children) as n`;
      return Number(row.n) === 0;
    });
  } finally {
    const report = await stream.stop();
    assertEquals(report.status, "stopped", report.error?.message);
  }
});
