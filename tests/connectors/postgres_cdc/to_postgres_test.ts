/**
 * Change data capture PostgreSQL → PostgreSQL in direct mode (no Kafka):
 * `postgres_cdc` source → `postgres` sink pipelines built from connector
 * JSON as users write it, run with `runPipeline` against the private
 * PostgreSQL of `deno task test`.
 */
import postgres from "postgres";
import { assert, assertEquals, assertMatch } from "../../_assert.ts";
import { specsFrom, type SyncFixture, syncFixture, tableDigest } from "../../_batch.ts";
import {
  confirmedFlush,
  rowDigests,
  startStream,
  uniqueSlot,
  waitForActiveSlot,
} from "../../_cdc.ts";
import { waitUntil } from "../../_wait.ts";
import { builtinRegistry } from "../../../builtins.ts";
import { buildPipelines, parseConnectors } from "../../../core/config.ts";
import { ConfigError } from "../../../api/errors.ts";
import { MemoryOffsetStore } from "../../../core/offsets.ts";
import { isRetriable } from "../../../core/runtime.ts";
import { assertRejects } from "../../_assert.ts";
import { capturingLogs } from "../../_logs.ts";

/** A direct-mode pipeline from the fixture's source database into its target. */
async function cdcSpec(
  f: SyncFixture,
  slot: string,
  extra: Record<string, string | undefined> = {},
  name = "cdc",
) {
  const config: Record<string, string | undefined> = {
    "connector.class": "postgres_cdc",
    "connection.url": f.source.url,
    "topic.prefix": "src",
    "slot.name": slot,
    "publication.name": "cdc_publication",
    "snapshot.mode": "never",
    "poll.interval.ms": "20",
    "sink.class": "postgres",
    "sink.connection.url": f.target.url,
    "sink.table": "public.items",
    ...extra,
  };
  // An undefined value removes a default key.
  for (const [key, value] of Object.entries(config)) if (value === undefined) delete config[key];
  const [spec] = await specsFrom({ name, config });
  return spec;
}

const ITEMS_SOURCE = `create table public.items (id int primary key, name text, qty int);`;
const ITEMS_TARGET = `create table public.items (
  id int primary key, name text, qty int, deleted_at timestamptz, _source_lsn pg_lsn);`;

Deno.test("postgres_cdc accepts the plan's connector JSON and runs it in direct mode", async () => {
  const plan = {
    name: "warehouse-to-citizen-connector",
    config: {
      "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
      "database.hostname": "${env:WAREHOUSE_HOST}",
      "database.port": "${env:WAREHOUSE_PORT}",
      "database.user": "${env:WAREHOUSE_USER}",
      "database.password": "${env:WAREHOUSE_PASSWORD}",
      "database.dbname": "${env:WAREHOUSE_DB}",
      "database.server.name": "warehouse",
      "table.include.list":
        "public.golden_records,public.profile_360,eligibility.eligibility_snapshots,decision.applications",
      "topic.prefix": "warehouse-cdc",
      "slot.name": "warehouse_citizen_slot",
      "publication.name": "warehouse_citizen_publication",
      "plugin.name": "pgoutput",
      "snapshot.mode": "never",
      "transforms": "route",
      "transforms.route.type": "org.apache.kafka.connect.transforms.RegexRouter",
      "transforms.route.regex": "warehouse-cdc.public.(.*)",
      "transforms.route.replacement": "warehouse-to-citizen.$1",
    },
  };
  await using f = await syncFixture(
    "cdc_plan",
    `create table public.golden_records (id int primary key, name text);
     create table public.profile_360 (id int primary key, score numeric);
     create schema eligibility; create table eligibility.eligibility_snapshots (id int primary key);
     create schema decision; create table decision.applications (id int primary key);
     create table public.not_captured (id int primary key);`,
    `create schema "warehouse-to-citizen";
     create table "warehouse-to-citizen".golden_records (id int primary key, name text,
       deleted_at timestamptz);
     create table "warehouse-to-citizen".profile_360 (id int primary key, score numeric,
       deleted_at timestamptz);`,
  );
  const url = new URL(f.source.url);
  const env: Record<string, string> = {
    WAREHOUSE_HOST: url.hostname,
    WAREHOUSE_PORT: url.port,
    WAREHOUSE_USER: decodeURIComponent(url.username),
    WAREHOUSE_PASSWORD: "unused-with-trust-auth",
    WAREHOUSE_DB: f.source.name,
  };
  const providers = { env: (name: string) => env[name], readText: () => "" };
  const registry = builtinRegistry();

  // As written, with Kafka as the worker's sink: it validates.
  const [kafkaSpec] = await buildPipelines(parseConnectors(plan), {
    registry,
    providers,
    defaultSink: "kafka",
    pluginDefaults: { "bootstrap.servers": "127.0.0.1:9092" },
  });
  assertEquals(kafkaSpec.source.plugin.name, "postgres_cdc");

  // Another decoding plugin is refused, naming it.
  const wrong = { ...plan, config: { ...plan.config, "plugin.name": "decoderbufs" } };
  const error = await assertRejects(() =>
    buildPipelines(parseConnectors(wrong), { registry, providers, defaultSink: "kafka" })
  );
  assert(error instanceof ConfigError);
  assertMatch(error.message, /plugin\.name: only "pgoutput" is supported.*"decoderbufs"/);

  // Direct mode: the same JSON plus a postgres sink named by the routed topic.
  const direct = {
    ...plan,
    config: {
      ...plan.config,
      "sink.class": "postgres",
      "sink.connection.url": f.target.url,
      "sink.table.name.format": "${topic}",
    },
  };
  const [spec] = await buildPipelines(parseConnectors(direct), { registry, providers });
  const stream = startStream(spec);
  try {
    await waitForActiveSlot(f.sourceSql, "warehouse_citizen_slot");
    await f.sourceSql`insert into golden_records values (1, 'Ada'), (2, 'Grace')`;
    await f.sourceSql`insert into profile_360 values (1, 0.123456789012345678901234567890)`;
    await f.sourceSql`insert into not_captured values (1)`;
    await f.sourceSql`update golden_records set name = 'Ada L.' where id = 1`;
    await waitUntil("the routed rows", async () => {
      const rows = await f.targetSql`select name from "warehouse-to-citizen".golden_records
                                     where id = 1`;
      return rows[0]?.name === "Ada L.";
    });
    const [profile] = await f.targetSql`select score::text from "warehouse-to-citizen".profile_360`;
    assertEquals(profile.score, "0.123456789012345678901234567890");
  } finally {
    const report = await stream.stop();
    assertEquals(report.status, "stopped", report.error?.message);
  }
});

Deno.test("postgres_cdc streams inserts, updates, deletes and truncates into a postgres table", async () => {
  await using f = await syncFixture("cdc_events", ITEMS_SOURCE, ITEMS_TARGET);
  const slot = uniqueSlot("cdc_events");
  const stream = startStream(await cdcSpec(f, slot));
  try {
    await waitForActiveSlot(f.sourceSql, slot);
    await f.sourceSql`insert into items values (1, 'apple', 1), (2, 'pear', 2), (3, 'fig', 3)`;
    await f.sourceSql`update items set qty = 20 where id = 2`;
    await f.sourceSql`delete from items where id = 3`;
    await waitUntil("inserts, the update and the delete", async () => {
      const rows = await f.targetSql`
        select id, qty, deleted_at is not null as deleted from items order by id`;
      return JSON.stringify(rows.map((r) => [r.id, r.qty, r.deleted])) ===
        JSON.stringify([[1, 1, false], [2, 20, false], [3, 3, true]]);
    });
    await f.sourceSql`truncate items`;
    await waitUntil("the truncate (soft: every row marked deleted)", async () => {
      const [row] = await f
        .targetSql`select count(*)::int as n from items where deleted_at is null`;
      return row.n === 0;
    });
    await f.sourceSql`insert into items values (4, 'kiwi', 4)`;
    await waitUntil("a row after the truncate", async () => {
      const rows = await f.targetSql`select 1 from items where id = 4 and deleted_at is null`;
      return rows.length === 1;
    });
  } finally {
    const report = await stream.stop();
    assertEquals(report.status, "stopped", report.error?.message);
    assertEquals(report.stats.deadLettered, 0);
  }
});

Deno.test("postgres_cdc carries every type byte for byte, in the snapshot and in the stream", async () => {
  const ddl = `
    create type mood as enum ('calm', 'busy', 'ünïcødé 🙂');
    create table public.types (
      id int primary key, big bigint, num numeric(40,20), num_free numeric, f8 float8, f4 float4,
      ts timestamptz, tsl timestamp, d date, t time, ttz timetz, iv interval, u uuid,
      j json, jb jsonb, b bytea, arr text[], iarr int[][], m mood, marr mood[], ok boolean,
      txt text, ch char(3), vc varchar(10), ip inet, bits bit varying(8), r int4range);
    create schema "Mixed Case";
    create table "Mixed Case"."Weird Table" (id int primary key, "Col" text, "select" int);`;
  const insert = (from: number) => `
    insert into public.types values
      (${from}, 9007199254740993, 12345678901234567890.12345678901234567890, 'NaN', 1.1, 0.1,
       '2024-02-29 23:59:59.123456+00', '1999-12-31 23:59:59.999999', '4713-01-01 BC',
       '24:00:00', '10:11:12.5+05:30', '1 year 2 mons 3 days 04:05:06.789', gen_random_uuid(),
       '{"b": 1,  "a": [1, 2, null], "b": 2}', '{"z": "\\u00e9", "a": {"k": [true, null]}}',
       '\\x00ff10', array['a,b', null, 'q"uote', '', 'back\\\\slash', 'NULL'],
       '{{1,null},{3,4}}', 'ünïcødé 🙂', array['calm', null, 'busy']::mood[], true,
       E'tab\\there\\nnew line \\\\ 🦀 नमस्ते', 'ab', 'x', '192.168.0.1/24', B'101', '[1,5)'),
      (${
    from + 1
  }, -9223372036854775808, -0.00000000000000000001, 123.4500, 'Infinity', '-Infinity',
       'infinity', '-infinity', 'infinity', '00:00:00', '00:00:00-12', '-1 days +00:00:00.000001',
       null, 'null', '[]', '', '{}', '{}', 'calm', '{}', false, '', null, null, '::1', B'', 'empty'),
      (${from + 2}, null, null, null, 'NaN', null, null, null, null, null, null, null, null,
       null, null, null, null, null, null, null, null, null, null, null, null, null, null);
    insert into "Mixed Case"."Weird Table" values (${from}, 'Ǆ 👩‍👩‍👧', ${from});`;
  await using f = await syncFixture("cdc_types", ddl + insert(1), ddl);
  const slot = uniqueSlot("cdc_types");
  const spec = await cdcSpec(f, slot, {
    "snapshot.mode": "initial",
    "sink.table": undefined,
    "transforms": "route,weird",
    "transforms.route.type": "org.apache.kafka.connect.transforms.RegexRouter",
    "transforms.route.regex": "src\\.(.*)",
    "transforms.route.replacement": "$1",
    // Topic names replace spaces with "_" (as Debezium does); route back to the quoted table.
    "transforms.weird.type": "org.apache.kafka.connect.transforms.RegexRouter",
    "transforms.weird.regex": "Mixed_Case\\.Weird_Table",
    "transforms.weird.replacement": '"Mixed Case"."Weird Table"',
    "sink.table.name.format": "${topic}",
    // The targets have no deleted_at: a stream must say how deletes apply.
    "sink.delete.mode": "hard",
  });
  const stream = startStream(spec);
  const columns = `id, big, num, num_free, f8, f4, ts, tsl, d, t, ttz, iv, u, j, jb, b, arr, iarr,
    m, marr, ok, txt, ch, vc, ip, bits, r`;
  try {
    await waitForActiveSlot(f.sourceSql, slot);
    await f.sourceSql.unsafe(insert(11));
    await f.sourceSql`update types set txt = txt || ' (updated)' where id in (2, 12)`;
    await waitUntil("all rows in the target", async () => {
      const [row] = await f.targetSql`select count(*)::int as n from types
                                      where txt like '%(updated)'`;
      return row.n === 2;
    });
    const source = await rowDigests(f.sourceSql, "public.types", "id", columns);
    const target = await rowDigests(f.targetSql, "public.types", "id", columns);
    assertEquals(Object.keys(target).length, 6);
    assertEquals(target, source);
    const quoted = `"Mixed Case"."Weird Table"`;
    await waitUntil("the quoted table", async () => {
      const [row] = await f.targetSql.unsafe(`select count(*)::int as n from ${quoted}`);
      return row.n === 2;
    });
    assertEquals(
      await rowDigests(f.targetSql, quoted, "id", `id, "Col", "select"`),
      await rowDigests(f.sourceSql, quoted, "id", `id, "Col", "select"`),
    );
  } finally {
    const report = await stream.stop();
    assertEquals(report.status, "stopped", report.error?.message);
  }
});

Deno.test("postgres_cdc never overwrites an unchanged TOAST column in the target", async () => {
  await using f = await syncFixture(
    "cdc_toast",
    `create table public.items (id int primary key, name text, qty int, body text);
     alter table public.items alter column body set storage external;`,
    `create table public.items (id int primary key, name text, qty int, body text,
       deleted_at timestamptz);`,
  );
  const slot = uniqueSlot("cdc_toast");
  const stream = startStream(await cdcSpec(f, slot));
  const body = `select string_agg(md5(g::text), '') from generate_series(1, 500) g`;
  try {
    await waitForActiveSlot(f.sourceSql, slot);
    await f.sourceSql.unsafe(`insert into items values (1, 'a', 1, (${body}))`);
    // Updates of other columns, some landing in the same batch as the insert.
    await f.sourceSql`update items set qty = 2 where id = 1`;
    await f.sourceSql`update items set name = 'b' where id = 1`;
    await waitUntil("the updates", async () => {
      const rows = await f.targetSql`select name from items where id = 1`;
      return rows[0]?.name === "b";
    });
    await f.sourceSql`update items set qty = 3 where id = 1`;
    await waitUntil("the last update", async () => {
      const rows = await f.targetSql`select qty from items where id = 1`;
      return rows[0]?.qty === 3;
    });
    const digest = "select id, name, qty, md5(body) from items";
    assertEquals(await tableDigest(f.targetSql, digest), await tableDigest(f.sourceSql, digest));
  } finally {
    await stream.stop();
  }
});

Deno.test("postgres_cdc picks up a column added mid-stream without a restart", async () => {
  await using f = await syncFixture(
    "cdc_ddl",
    ITEMS_SOURCE,
    `create table public.items (id int primary key, name text, qty int, color text,
       deleted_at timestamptz);`,
  );
  const slot = uniqueSlot("cdc_ddl");
  const stream = startStream(await cdcSpec(f, slot));
  try {
    await waitForActiveSlot(f.sourceSql, slot);
    await f.sourceSql`insert into items values (1, 'a', 1)`;
    await waitUntil("the first row", async () => (await f.targetSql`select 1 from items`).length);
    await f.sourceSql`alter table items add column color text`;
    await f.sourceSql`insert into items values (2, 'b', 2, 'red')`;
    await f.sourceSql`update items set color = 'blue' where id = 1`;
    await waitUntil("rows with the new column", async () => {
      const rows = await f.targetSql`select id, color from items order by id`;
      return rows.length === 2 && rows[0].color === "blue" && rows[1].color === "red";
    });
  } finally {
    const report = await stream.stop();
    assertEquals(report.status, "stopped", report.error?.message);
  }
});

Deno.test("postgres_cdc warns when a captured column is renamed or dropped mid-stream", async () => {
  await using f = await syncFixture(
    "cdc_rename",
    ITEMS_SOURCE,
    `create table public.items (id int primary key, name text, qty int, title text,
       deleted_at timestamptz);`,
  );
  await using logs = await capturingLogs();
  const slot = uniqueSlot("cdc_rename");
  const stream = startStream(await cdcSpec(f, slot));
  try {
    await waitForActiveSlot(f.sourceSql, slot);
    await f.sourceSql`insert into items values (1, 'a', 1)`;
    await waitUntil("the first row", async () => (await f.targetSql`select 1 from items`).length);
    await f.sourceSql`alter table items rename column name to title`;
    await f.sourceSql`insert into items values (2, 'b', 2)`;
    await waitUntil(
      "the second row",
      async () => (await f.targetSql`select 1 from items where title = 'b'`).length,
    );
    const warnings = logs.lines.filter((line) => line.includes("gone from the source"));
    assertEquals(warnings.length, 1, logs.lines.join("\n"));
    assertMatch(warnings[0], /Columns name of public\.items .*--full-refresh/);
  } finally {
    const report = await stream.stop();
    assertEquals(report.status, "stopped", report.error?.message);
  }
});

Deno.test("postgres_cdc applies deletes with default and full replica identity, soft and hard", async () => {
  await using f = await syncFixture(
    "cdc_deletes",
    `create table public.items (id int primary key, name text, qty int);
     create table public.full_items (id int primary key, name text, qty int);
     alter table public.full_items replica identity full;`,
    ITEMS_TARGET + `create table public.full_items (id int primary key, name text, qty int);`,
  );
  const soft = uniqueSlot("cdc_soft");
  const hard = uniqueSlot("cdc_hard");
  const softStream = startStream(
    await cdcSpec(f, soft, { "table.include.list": "public.items" }, "soft"),
  );
  const hardStream = startStream(
    await cdcSpec(f, hard, {
      "table.include.list": "public.full_items",
      "publication.name": "cdc_full_publication",
      "sink.table": "public.full_items",
      "sink.delete.mode": "hard",
    }, "hard"),
  );
  try {
    await waitForActiveSlot(f.sourceSql, soft);
    await waitForActiveSlot(f.sourceSql, hard);
    for (const table of ["items", "full_items"]) {
      await f.sourceSql.unsafe(`insert into ${table} values (1, 'a', 1), (2, 'b', 2)`);
      await f.sourceSql.unsafe(`delete from ${table} where id = 1`);
    }
    await waitUntil("the soft delete", async () => {
      const rows = await f.targetSql`select id, deleted_at is not null as deleted from items
                                     order by id`;
      return JSON.stringify(rows.map((r) => [r.id, r.deleted])) === "[[1,true],[2,false]]";
    });
    await waitUntil("the hard delete", async () => {
      const rows = await f.targetSql`select id from full_items order by id`;
      return JSON.stringify(rows.map((r) => r.id)) === "[2]";
    });
  } finally {
    await softStream.stop();
    await hardStream.stop();
  }
});

Deno.test("postgres_cdc without a primary key, REPLICA IDENTITY FULL: an update of the sink's key moves the row", async () => {
  await using f = await syncFixture(
    "cdc_nopk_move",
    `create table public.items (id int, name text, body text);
     alter table public.items replica identity full;`,
    ITEMS_TARGET.replace("qty int,", "body text,"),
  );
  const slot = uniqueSlot("cdc_nopk_move");
  const stream = startStream(await cdcSpec(f, slot, { "sink.primary.key.fields": "id" }));
  try {
    await waitForActiveSlot(f.sourceSql, slot);
    await f.sourceSql`insert into items
      values (51, 'a', repeat('toast ', 5000)), (60, 'b', 'x'), (70, 'c', 'y')`;
    await waitUntil("the rows", async () => (await f.targetSql`select 1 from items`).length === 3);
    // The body is TOASTed and unchanged: the new row takes it from the old image.
    await f.sourceSql`update items set id = 52 where id = 51`;
    await f.sourceSql`update items set id = 61, name = 'b2' where id = 60`;
    await f.sourceSql`update items set name = 'c2' where id = 70`;
    await waitUntil("the moved rows", async () => {
      const rows = await f.targetSql`select id, name, length(body) as body,
                                       deleted_at is not null as deleted from items order by id`;
      return JSON.stringify(rows.map((r) => [r.id, r.name, r.body, r.deleted])) ===
        JSON.stringify([
          [51, "a", 30000, true],
          [52, "a", 30000, false],
          [60, "b", 1, true],
          [61, "b2", 1, false],
          [70, "c2", 1, false],
        ]);
    });
  } finally {
    const report = await stream.stop();
    assertEquals(report.status, "stopped", report.error?.message);
    assertEquals(report.stats.deadLettered, 0);
  }
});

Deno.test("a running postgres_cdc pipeline takes records again once the target got the missing column", async () => {
  await using f = await syncFixture("cdc_fix_target", ITEMS_SOURCE, ITEMS_TARGET);
  const slot = uniqueSlot("cdc_fix_target");
  const stream = startStream(
    await cdcSpec(f, slot, {
      "errors.tolerance": "all",
      "errors.deadletterqueue.table.name": "public.dead_letters",
    }),
  );
  try {
    await waitForActiveSlot(f.sourceSql, slot);
    await f.sourceSql`alter table items add column extra text`;
    await f.sourceSql`insert into items values (1, 'a', 1, 'x')`;
    await waitUntil(
      "the dead letter",
      async () =>
        (await f.targetSql`select to_regclass('public.dead_letters') is not null as t`)[0].t &&
        (await f.targetSql`select 1 from dead_letters`).length === 1,
    );
    await f.targetSql`alter table items add column extra text`;
    await f.sourceSql`insert into items values (2, 'b', 2, 'y')`;
    await waitUntil("the row after the fix", async () => {
      const rows = await f.targetSql`select id, extra from items`;
      return rows.length === 1 && rows[0].extra === "y";
    });
    assertEquals((await f.targetSql`select 1 from dead_letters`).length, 1);
  } finally {
    const report = await stream.stop();
    assertEquals(report.status, "stopped", report.error?.message);
  }
});

Deno.test("postgres_cdc heartbeats advance an idle, filtered slot's confirmed_flush_lsn", async () => {
  await using f = await syncFixture(
    "cdc_heartbeat",
    ITEMS_SOURCE + `create table public.noise (id serial primary key, v text);
                    create table public.heartbeat (id int primary key, at timestamptz);`,
    ITEMS_TARGET,
  );
  const slot = uniqueSlot("cdc_hb");
  const offsets = new MemoryOffsetStore();
  const spec = await cdcSpec(f, slot, {
    "table.include.list": "public.items",
    "publication.autocreate.mode": "filtered",
    "heartbeat.interval.ms": "200",
    "heartbeat.action.query":
      "insert into public.heartbeat values (1, now()) on conflict (id) do update set at = now()",
    "offset.storage": "file",
  });
  const stream = startStream(spec, offsets);
  try {
    await waitForActiveSlot(f.sourceSql, slot);
    const published = await f.sourceSql`select tablename from pg_publication_tables
                                        where pubname = 'cdc_publication'`;
    assertEquals(published.map((r) => r.tablename), ["items"]);
    // Plenty of WAL the slot does not publish.
    await f.sourceSql`insert into noise (v) select repeat('x', 200) from generate_series(1, 5000)`;
    const [{ lsn }] = await f.sourceSql`select (pg_current_wal_lsn() - '0/0')::text as lsn`;
    await waitUntil(
      "confirmed_flush_lsn to pass the unpublished WAL",
      async () => (await confirmedFlush(f.sourceSql, slot)) >= BigInt(lsn),
    );
    await waitUntil("the stored offset to pass it too", async () => {
      const offset = await offsets.read("cdc") as { lsn: string } | undefined;
      if (!offset) return false;
      const [hi, lo] = offset.lsn.split("/").map((part) => BigInt(`0x${part}`));
      return ((hi << 32n) | lo) >= BigInt(lsn);
    });
  } finally {
    const report = await stream.stop();
    assertEquals(report.status, "stopped", report.error?.message);
  }
});

Deno.test("postgres_cdc resumes after a restart without losing or repeating changes", async () => {
  await using f = await syncFixture("cdc_restart", ITEMS_SOURCE, ITEMS_TARGET);
  const slot = uniqueSlot("cdc_restart");
  const spec = await cdcSpec(f, slot, { "max.batch.size": "7" });
  // The sink keeps the offsets in the target, in the same transaction as the rows.
  const first = startStream(spec);
  await waitForActiveSlot(f.sourceSql, slot);
  await f.sourceSql`insert into items select g, 'v' || g, g from generate_series(1, 50) g`;
  await waitUntil("the first 50 rows", async () => {
    const [row] = await f.targetSql`select count(*)::int as n from items`;
    return row.n === 50;
  });
  const report1 = await first.stop();
  assertEquals(report1.status, "stopped", report1.error?.message);
  assertEquals(report1.stats.read, 50);

  // Written while Sluice is down.
  await f.sourceSql`insert into items select g, 'v' || g, g from generate_series(51, 80) g`;
  await f.sourceSql`update items set qty = qty + 1000 where id % 10 = 0`;

  const second = startStream(spec);
  try {
    await waitUntil("the changes made while stopped", async () => {
      const [row] = await f.targetSql`select count(*)::int as n, sum(qty)::int as s from items`;
      return row.n === 80 && row.s === 80 * 81 / 2 + 8 * 1000;
    });
    // Let more batches (and acknowledgements) pass before stopping.
    await f.sourceSql`insert into items values (81, 'last', 81)`;
    await waitUntil(
      "row 81",
      async () => (await f.targetSql`select 1 from items where id = 81`).length,
    );
  } finally {
    const report2 = await second.stop();
    assertEquals(report2.status, "stopped", report2.error?.message);
    assertEquals(report2.stats.read, 30 + 8 + 1, "every change exactly once");
  }
  const digest = "select id, name, qty from items order by id";
  assertEquals(await tableDigest(f.targetSql, digest), await tableDigest(f.sourceSql, digest));
});

Deno.test("postgres_cdc fails retriably when the connection is lost and resumes on the next run", async () => {
  await using f = await syncFixture("cdc_retry", ITEMS_SOURCE, ITEMS_TARGET);
  const slot = uniqueSlot("cdc_retry");
  const spec = await cdcSpec(f, slot);
  const first = startStream(spec);
  await waitForActiveSlot(f.sourceSql, slot);
  await f.sourceSql`insert into items values (1, 'a', 1)`;
  await waitUntil("row 1", async () => (await f.targetSql`select 1 from items`).length);
  await f.sourceSql`select pg_terminate_backend(active_pid) from pg_replication_slots
                    where slot_name = ${slot}`;
  const report = await first.done;
  assertEquals(report.status, "failed");
  assert(isRetriable(report.error), `retriable: ${report.error?.message}`);
  await f.sourceSql`insert into items values (2, 'b', 2)`;
  const second = startStream(spec);
  try {
    await waitUntil(
      "row 2",
      async () => (await f.targetSql`select 1 from items where id = 2`).length,
    );
  } finally {
    const report2 = await second.stop();
    assertEquals(report2.stats.read, 1);
  }
});

Deno.test("a signal snapshots a table whose rows were never streamed into the target, and later changes land on them", async () => {
  const table = (name: string, target: boolean) =>
    `create table public.${name} (id int primary key, name text${
      target ? ", deleted_at timestamptz, _source_lsn pg_lsn" : ""
    });`;
  const signals = `create table public.sig (id text primary key, type text not null, data text);`;
  await using f = await syncFixture(
    "cdc_signal",
    table("items", false) + table("extra", false) + signals +
      `insert into public.extra values (1, 'one'), (2, 'two'), (3, 'three');`,
    table("items", true) + table("extra", true) +
      `create table public.sig (id text primary key, type text, data text, deleted_at timestamptz);`,
  );
  const slot = uniqueSlot("cdc_signal");
  const stream = startStream(
    await cdcSpec(f, slot, {
      "sink.table": undefined,
      "signal.data.collection": "public.sig",
      "transforms": "route",
      "transforms.route.type": "org.apache.kafka.connect.transforms.RegexRouter",
      "transforms.route.regex": "src\\.(.*)",
      "transforms.route.replacement": "$1",
    }),
  );
  try {
    await waitForActiveSlot(f.sourceSql, slot);
    await f.sourceSql`insert into public.items values (1, 'streamed')`;
    await f.sourceSql`insert into public.sig values ('add-extra', 'execute-snapshot',
      '{"data-collections": ["public.extra"], "type": "incremental"}')`;
    await f.sourceSql`update public.extra set name = 'ONE' where id = 1`;
    await f.sourceSql`delete from public.extra where id = 2`;
    await waitUntil("the snapshot and the changes after it", async () => {
      const rows = await f.targetSql`
        select id, name, deleted_at is not null as deleted from public.extra order by id`;
      return JSON.stringify(rows.map((r) => [r.id, r.name, r.deleted])) ===
        JSON.stringify([[1, "ONE", false], [3, "three", false]]);
    });
    // The snapshot reads the table as it is when the stream reaches the
    // signal: row 2, deleted since, is not in it, and its delete then
    // finds nothing to mark.
    const items = await f.targetSql`select id, name from public.items`;
    assertEquals(items.map((r) => [r.id, r.name]), [[1, "streamed"]]);
  } finally {
    const report = await stream.stop();
    assertEquals(report.status, "stopped", report.error?.message);
    assertEquals(report.stats.deadLettered, 0);
  }
});

Deno.test("postgres_cdc names generated columns it cannot carry, and a generated target column computes them", async () => {
  const generated = `total int generated always as (qty * 2) stored`;
  await using f = await syncFixture(
    "cdc_generated",
    `create table public.items (id int primary key, name text, qty int, ${generated});
     insert into items (id, name, qty) values (1, 'snapshotted', 5);`,
    `create table public.items (id int primary key, name text, qty int, ${generated},
       deleted_at timestamptz, _source_lsn pg_lsn);`,
  );
  await using logs = await capturingLogs();
  const slot = uniqueSlot("cdc_generated");
  const stream = startStream(await cdcSpec(f, slot, { "snapshot.mode": "initial" }));
  try {
    await waitForActiveSlot(f.sourceSql, slot);
    await f.sourceSql`insert into items (id, name, qty) values (2, 'streamed', 7)`;
    await f.sourceSql`update items set qty = 9 where id = 1`;
    await waitUntil(
      "both rows",
      async () => (await f.targetSql`select 1 from items where qty in (7, 9)`).length === 2,
    );
    assertEquals(
      await tableDigest(f.targetSql, "select id, qty, total from items order by id"),
      await tableDigest(f.sourceSql, "select id, qty, total from items order by id"),
    );
    const warnings = logs.lines.filter((line) => line.includes("Generated columns"));
    assertEquals(warnings.length, 1, logs.lines.join("\n"));
    assertMatch(
      warnings[0],
      /public\.items\.total .*generated there too: public\.items: total integer generated always as \(\(?qty \* 2\)?\) stored/,
    );
    // One added while the table streams is named when its new shape arrives, alone.
    await f.targetSql`alter table items add column triple int`;
    await f.sourceSql`alter table items add column triple int generated always as (qty * 3) stored`;
    await f.sourceSql`insert into items (id, name, qty) values (3, 'after', 1)`;
    await waitUntil(
      "the third row",
      async () => (await f.targetSql`select 1 from items where id = 3`).length === 1,
    );
    const later = logs.lines.filter((line) => line.includes("Generated columns"));
    assertEquals(later.length, 2, logs.lines.join("\n"));
    assertMatch(later[1], /^Generated columns public\.items\.triple are left out/);
  } finally {
    const report = await stream.stop();
    assertEquals(report.status, "stopped", report.error?.message);
  }
});

Deno.test("postgres_cdc names the open transactions its slot creation waits for", async () => {
  await using f = await syncFixture("cdc_slot_wait", ITEMS_SOURCE, ITEMS_TARGET);
  await using logs = await capturingLogs();
  const holder = postgres(f.source.url, { max: 1, onnotice: () => {} });
  const slot = uniqueSlot("cdc_slot_wait");
  let stream: ReturnType<typeof startStream> | undefined;
  const held = Promise.withResolvers<number>();
  const release = Promise.withResolvers<void>();
  // A transaction with an id, left open: the slot cannot be created before it ends.
  const open = holder.begin(async (tx) => {
    const [{ pid }] = await tx`select pg_backend_pid() as pid`;
    await tx`insert into items values (100, 'held', 1)`;
    held.resolve(pid);
    await release.promise;
  });
  try {
    const pid = await held.promise;
    stream = startStream(await cdcSpec(f, slot));
    const waits = (line: string) => line.includes(`Creating replication slot ${slot} waits`);
    await waitUntil("the warning", () => logs.lines.some(waits), { timeoutMs: 20_000 })
      .catch((error) => {
        throw new Error(`${error.message}\n${logs.lines.join("\n")}`);
      });
    const warning = logs.lines.find(waits)!;
    assertMatch(warning, new RegExp(`pid ${pid} \\(postgres.*\\): insert into items values`));
    release.resolve();
    await open;
    await waitForActiveSlot(f.sourceSql, slot);
  } finally {
    release.resolve();
    await open.catch(() => {});
    const report = await stream?.stop();
    assertEquals(report?.status, "stopped", report?.error?.message);
    await holder.end();
  }
});
