/**
 * The publication must not break the source application (issue 7, item 6):
 * PostgreSQL refuses UPDATE and DELETE on a published table without a
 * replica identity, for every session. With an include list only the
 * captured tables are published, and a captured table without a usable
 * replica identity stops the pipeline at start, before anything is published.
 */
import postgres from "postgres";
import { getLogger } from "@logtape/logtape";
import postgresCdc from "../../../connectors/postgres_cdc/mod.ts";
import { assert, assertEquals, assertMatch, assertRejects } from "../../_assert.ts";
import { createTestDatabase } from "../../_services.ts";
import { openSource, uniqueSlot, waitForActiveSlot } from "../../_cdc.ts";
import { waitUntil } from "../../_wait.ts";
import { isRetriable } from "../../../core/runtime.ts";
import { preparePublication } from "../../../connectors/postgres_cdc/_slot.ts";
import { CaptureFilter } from "../../../connectors/postgres_cdc/_filters.ts";
import { capturingLogs } from "../../_logs.ts";

const DDL = `
  create table public.items (id int primary key, name text);
  create table public.audit_log (at timestamptz default now(), note text);
  insert into public.audit_log (note) values ('first');`;

async function publishedTables(sql: postgres.Sql, publication: string): Promise<string[]> {
  const rows = await sql<{ name: string }[]>`
    select schemaname || '.' || tablename as name from pg_publication_tables
    where pubname = ${publication} order by 1`;
  return rows.map((row) => row.name);
}

Deno.test("postgres_cdc with an include list leaves writes on other tables without a key working", async () => {
  const db = await createTestDatabase("cdc_pub_filtered");
  const sql = postgres(db.url, { max: 1, onnotice: () => {} });
  try {
    await sql.unsafe(DDL);
    const slot = uniqueSlot("pub");
    const source = await openSource({
      "connection.url": db.url,
      "topic.prefix": "src",
      "slot.name": slot,
      "slot.drop.on.stop": "true",
      "publication.name": "pub_filtered",
      "snapshot.mode": "never",
      "table.include.list": "public.items",
      "poll.interval.ms": "20",
    });
    try {
      await waitForActiveSlot(sql, slot);
      await sql`insert into items values (1, 'a')`;
      const [batch] = await source.take(1);
      assertEquals(batch.records[0].topic, "src.public.items");
      assertEquals(await publishedTables(sql, "pub_filtered"), ["public.items"]);
      // A plain session of the source application, as before the pipeline started.
      const updated = await sql`update audit_log set note = 'changed' where note = 'first'`;
      assertEquals(updated.count, 1);
      const deleted = await sql`delete from audit_log`;
      assertEquals(deleted.count, 1);
    } finally {
      await source.close();
    }
  } finally {
    await sql.end();
    await db.drop();
  }
});

Deno.test("postgres_cdc refuses at start to capture a table without a primary key, naming it", async () => {
  const db = await createTestDatabase("cdc_pub_nokey");
  const sql = postgres(db.url, { max: 1, onnotice: () => {} });
  try {
    await sql.unsafe(DDL);
    const config = {
      "connection.url": db.url,
      "topic.prefix": "src",
      "slot.name": uniqueSlot("nokey"),
      "slot.drop.on.stop": "true",
      "publication.name": "pub_nokey",
      "snapshot.mode": "never",
      "table.include.list": "public\\..*",
    };
    const source = await postgresCdc.create(postgresCdc.config.parse(config), {
      pipeline: "cdc-nokey",
      logger: getLogger(["sluice", "test", "cdc"]),
      signal: new AbortController().signal,
      offset: undefined,
      fullRefresh: false,
    });
    const error = await assertRejects(async () => {
      for await (const _ of source.read()) { /* fails before the first batch */ }
    });
    await source.close();
    assertMatch(
      error.message,
      /Cannot capture public\.audit_log: without a usable replica identity.*public\.audit_log has no primary key/,
    );
    assertMatch(error.message, /REPLICA IDENTITY FULL/);
    assert(!isRetriable(error), "a missing replica identity does not heal by retrying");
    assertEquals(await publishedTables(sql, "pub_nokey"), [], "nothing was published");
    const updated = await sql`update audit_log set note = 'changed'`;
    assertEquals(updated.count, 1);

    // With a replica identity the same table is captured.
    await sql`alter table audit_log replica identity full`;
    const again = await openSource(config);
    try {
      await waitForActiveSlot(sql, config["slot.name"]);
      await sql`update audit_log set note = 'again'`;
      const [batch] = await again.take(1);
      assertEquals(batch.records[0].topic, "src.public.audit_log");
      assertEquals(await publishedTables(sql, "pub_nokey"), ["public.audit_log", "public.items"]);
    } finally {
      await again.close();
    }
  } finally {
    await sql.end();
    await db.drop();
  }
});

Deno.test("postgres_cdc says a table with a primary key but REPLICA IDENTITY NOTHING needs REPLICA IDENTITY DEFAULT", async () => {
  const db = await createTestDatabase("cdc_pub_nothing");
  const sql = postgres(db.url, { max: 1, onnotice: () => {} });
  try {
    await sql.unsafe(`create table public.items (id int primary key, name text);
      alter table public.items replica identity nothing;`);
    const source = await postgresCdc.create(
      postgresCdc.config.parse({
        "connection.url": db.url,
        "topic.prefix": "src",
        "slot.name": uniqueSlot("nothing"),
        "slot.drop.on.stop": "true",
        "publication.name": "pub_nothing",
        "snapshot.mode": "never",
        "table.include.list": "public\\.items",
      }),
      {
        pipeline: "cdc-nothing",
        logger: getLogger(["sluice", "test", "cdc"]),
        signal: new AbortController().signal,
        offset: undefined,
        fullRefresh: false,
      },
    );
    const error = await assertRejects(async () => {
      for await (const _ of source.read()) { /* fails before the first batch */ }
    });
    await source.close();
    assertMatch(
      error.message,
      /public\.items has a primary key but REPLICA IDENTITY NOTHING \(run ALTER TABLE "public"\."items" REPLICA IDENTITY DEFAULT/,
    );
  } finally {
    await sql.end();
    await db.drop();
  }
});

Deno.test("postgres_cdc refuses at start a replica identity index that leaves out the primary key", async () => {
  const db = await createTestDatabase("cdc_pub_narrow");
  const sql = postgres(db.url, { max: 1, onnotice: () => {} });
  try {
    await sql.unsafe(
      `create table public.items (id int primary key, code text not null unique, v text);
      alter table public.items replica identity using index items_code_key;`,
    );
    const config = {
      "connection.url": db.url,
      "topic.prefix": "src",
      "slot.name": uniqueSlot("narrow"),
      "slot.drop.on.stop": "true",
      "publication.name": "pub_narrow",
      "snapshot.mode": "never",
      "table.include.list": "public\\.items",
    };
    const source = await postgresCdc.create(postgresCdc.config.parse(config), {
      pipeline: "cdc-narrow",
      logger: getLogger(["sluice", "test", "cdc"]),
      signal: new AbortController().signal,
      offset: undefined,
      fullRefresh: false,
    });
    const error = await assertRejects(async () => {
      for await (const _ of source.read()) { /* fails before the first batch */ }
    });
    await source.close();
    assertMatch(
      error.message,
      /^Cannot capture public\.items \(REPLICA IDENTITY USING INDEX items_code_key on \(code\), primary key \(id\)\): its events are keyed by the primary key/,
    );
    assertMatch(error.message, /REPLICA IDENTITY DEFAULT \(the primary key\) or FULL/);
    assert(!isRetriable(error));
    assertEquals(await publishedTables(sql, "pub_narrow"), [], "nothing was published");

    // An identity index holding the key is fine.
    await sql.unsafe(`create unique index items_id_code on public.items (id, code);
      alter table public.items replica identity using index items_id_code;`);
    const again = await openSource(config);
    try {
      await waitForActiveSlot(sql, config["slot.name"]);
      await sql`insert into items values (1, 'a', 'x')`;
      await sql`delete from items where id = 1`;
      const isDelete = (r: { value: unknown }) => (r.value as { op?: string } | null)?.op === "d";
      const records: { key: unknown; value: unknown }[] = [];
      while (!records.some(isDelete)) records.push(...(await again.take(1))[0].records);
      assertEquals(records.find(isDelete)!.key, { id: 1 });
    } finally {
      await again.close();
    }
  } finally {
    await sql.end();
    await db.drop();
  }
});

Deno.test("postgres_cdc publishes all tables only when no include list is given or when asked", () => {
  const base = { "connection.url": "postgres://h/db", "topic.prefix": "p" };
  const parse = (extra: Record<string, string>) =>
    postgresCdc.config.parse({ ...base, ...extra }).autocreate;
  assertEquals(parse({}), "all_tables");
  assertEquals(parse({ "table.include.list": "public.items" }), "filtered");
  assertEquals(parse({ "schema.include.list": "public" }), "filtered");
  assertEquals(
    parse({ "table.include.list": "public.items", "publication.autocreate.mode": "all_tables" }),
    "all_tables",
  );
});

Deno.test("a stop interrupts postgres_cdc while its slot waits for a running transaction", async () => {
  const db = await createTestDatabase("cdc_stop_setup");
  const sql = postgres(db.url, { max: 2, onnotice: () => {} });
  try {
    await sql.unsafe(DDL);
    const slot = uniqueSlot("blocked");
    // A transaction that has written and stays open: CREATE_REPLICATION_SLOT waits for it.
    const reserved = await sql.reserve();
    await reserved`begin`;
    await reserved`insert into items values (99, 'open')`;
    const controller = new AbortController();
    const source = await postgresCdc.create(
      postgresCdc.config.parse({
        "connection.url": db.url,
        "topic.prefix": "src",
        "slot.name": slot,
        "slot.drop.on.stop": "true",
        "snapshot.mode": "never",
        "table.include.list": "public.items",
      }),
      {
        pipeline: "cdc-stop",
        logger: getLogger(["sluice", "test", "cdc"]),
        signal: controller.signal,
        offset: undefined,
        fullRefresh: false,
      },
    );
    const reading = (async () => {
      for await (const _ of source.read()) { /* nothing arrives while the slot waits */ }
    })();
    await waitUntil("the slot creation to wait", async () => {
      const rows = await sql`select 1 from pg_stat_activity
        where datname = ${db.name} and backend_type = 'walsender'
          and wait_event_type = 'Lock' and wait_event = 'transactionid'`;
      return rows.length > 0;
    });
    const stoppedAt = Date.now();
    controller.abort();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const ended = await Promise.race([
      reading.then(() => true),
      new Promise<false>((resolve) => timer = setTimeout(() => resolve(false), 10_000)),
    ]);
    clearTimeout(timer);
    const tookMs = Date.now() - stoppedAt;
    await reserved`rollback`; // lets a read that did not stop finish, so the test ends
    reserved.release();
    await reading;
    await source.close();
    assert(ended, "the read did not end within 10 s of the stop");
    assert(tookMs < 5_000, `the stop took ${tookMs} ms`);
  } finally {
    await sql.end();
    await db.drop();
  }
});

Deno.test("a user who may not create the publication is told what was attempted and the two remedies", async () => {
  const db = await createTestDatabase("cdc_pub_grant");
  const sql = postgres(db.url, { max: 1, onnotice: () => {} });
  const role = `sluice_np_${crypto.randomUUID().slice(0, 8)}`;
  try {
    await sql.unsafe(`${DDL}
      create role ${role} login replication;
      grant select on all tables in schema public to ${role};`);
    const url = new URL(db.url);
    url.username = role;
    const source = await postgresCdc.create(
      postgresCdc.config.parse({
        "connection.url": url.toString(),
        "topic.prefix": "src",
        "slot.name": uniqueSlot("grant"),
        "slot.drop.on.stop": "true",
        "publication.name": "pub_grant",
        "snapshot.mode": "never",
        "table.include.list": "public.items",
      }),
      {
        pipeline: "cdc-grant",
        logger: getLogger(["sluice", "test", "cdc"]),
        signal: new AbortController().signal,
        offset: undefined,
        fullRefresh: false,
      },
    );
    const error = await assertRejects(async () => {
      for await (const _ of source.read()) { /* fails before the first batch */ }
    });
    await source.close();
    assertMatch(
      error.message,
      /Cannot create or alter publication "pub_grant" \(publication\.autocreate\.mode filtered\): permission denied/,
    );
    assertMatch(error.message, /grant the connector's user/);
    assertMatch(
      error.message,
      /run "CREATE PUBLICATION "pub_grant" FOR TABLE "public"\."items"" and set publication\.autocreate\.mode to disabled/,
    );
    assert(!isRetriable(error), "a missing privilege does not heal by retrying");
  } finally {
    await sql.end();
    await db.drop();
    const admin = postgres(new URL("/postgres", db.url).toString(), { max: 1, onnotice: () => {} });
    await admin.unsafe(`drop role if exists ${role}`).catch(() => {});
    await admin.end();
  }
});

Deno.test("pipelines that start together on one new publication all get their tables into it", async () => {
  const db = await createTestDatabase("cdc_pub_race");
  const tables = ["a", "b", "c", "d"];
  const sessions = tables.map(() => postgres(db.url, { max: 1, onnotice: () => {} }));
  try {
    await sessions[0].unsafe(
      tables.map((t) => `create table public.${t} (id int primary key);`).join(""),
    );
    // Each pipeline looks, finds no publication, and creates it (or adds its table) at once.
    await Promise.all(tables.map((table, i) =>
      preparePublication(
        sessions[i],
        "pub_race",
        "filtered",
        new CaptureFilter({ "table.include.list": [`public\\.${table}`] }),
        getLogger(["sluice", "test"]),
      )
    ));
    assertEquals(await publishedTables(sessions[0], "pub_race"), tables.map((t) => `public.${t}`));
  } finally {
    for (const session of sessions) await session.end();
    await db.drop();
  }
});

Deno.test("an include-list entry that matches no table is named at start, with the table it may have meant", async () => {
  const db = await createTestDatabase("cdc_pub_typo");
  const sql = postgres(db.url, { max: 1, onnotice: () => {} });
  try {
    await sql.unsafe(`create schema billing;
      create table public.customers (id int primary key);
      create table billing.invoices (id int primary key);`);
    await using logs = await capturingLogs();
    await preparePublication(
      sql,
      "pub_typo",
      "filtered",
      new CaptureFilter({
        "table.include.list": ["public\\.custmers", "billing\\..*", "public.not_yet_created"],
        "schema.include.list": ["public", "biling"],
      }),
      getLogger(["sluice", "test"]),
    );
    const warned = logs.lines.filter((line) => line.includes("matches no"));
    assertEquals(warned, [
      "table.include.list entry public\\.custmers matches no table of the database (did you mean public.customers?): nothing is captured for it. A table created later is captured from the next start",
      "table.include.list entry public.not_yet_created matches no table of the database: nothing is captured for it. A table created later is captured from the next start",
      "schema.include.list entry biling matches no schema with tables of the database (did you mean billing?): nothing is captured for it. A table created later is captured from the next start",
    ]);
  } finally {
    await sql.end();
    await db.drop();
  }
});
