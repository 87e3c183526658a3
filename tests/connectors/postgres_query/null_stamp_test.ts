/**
 * Incremental jobs and NULL in the timestamp column (TRIAL2 item 3), against
 * the real PostgreSQL: a run fails before reading, and no watermark is null.
 */
import { assert, assertEquals, assertStringIncludes } from "../../_assert.ts";
import { MemoryOffsetStore } from "../../../core/offsets.ts";
import { runPipeline } from "../../../core/pipeline.ts";
import { specsFrom, syncFixture } from "../../_batch.ts";

const SOURCE_DDL = `
  create table public.items (id int primary key, v text, updated_at timestamptz);
  insert into public.items (id, v, updated_at)
  select g, 'v' || g, timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second'
  from generate_series(1, 100) g;`;

const TARGET_DDL = `
  create table public.items_copy (id int primary key, v text, updated_at timestamptz);`;

function connector(sourceUrl: string, targetUrl: string, extra: Record<string, string> = {}) {
  return {
    name: "items_sync",
    config: {
      "connector.class": "postgres_query",
      "connection.url": sourceUrl,
      "table": "public.items",
      "mode": "incremental",
      "chunk.size": "100",
      "sink.class": "postgres",
      "sink.connection.url": targetUrl,
      "sink.table": "public.items_copy",
      // Offsets in the store the test reads.
      "offset.storage": "file",
      ...extra,
    },
  };
}

async function targetCount(sql: { unsafe: (q: string) => Promise<unknown[]> }) {
  const [row] = await sql.unsafe("select count(*)::int as n from public.items_copy") as {
    n: number;
  }[];
  return row.n;
}

for (const copy of ["true", "false"]) {
  Deno.test(`an incremental run (copy=${copy}) fails before reading when the timestamp column holds NULLs, and every run after it too`, async () => {
    await using db = await syncFixture(`null_ts_${copy}`, SOURCE_DDL, TARGET_DDL);
    await db.sourceSql.unsafe(
      "insert into public.items (id, v) select g, 'no stamp' from generate_series(101, 450) g",
    );
    const [spec] = await specsFrom(connector(db.source.url, db.target.url, { copy }));
    const offsets = new MemoryOffsetStore();
    for (const run of [1, 2]) {
      const result = await runPipeline(spec, { offsets });
      assertEquals(result.status, "failed", `run ${run}`);
      const message = result.error?.message ?? "";
      assertStringIncludes(message, `"updated_at"`);
      assertStringIncludes(message, "NULL in 350 of the rows");
      assertStringIncludes(message, "NOT NULL");
      assertStringIncludes(message, "mode full");
      assertEquals(result.stats.read, 0, `run ${run} reads nothing`);
      assertEquals(offsets.offsets.get(spec.name), undefined, "no watermark is stored");
    }
    assertEquals(await targetCount(db.targetSql), 0);
  });
}

Deno.test("NULLs appearing after the first run fail the next run, and its watermark stays as it was", async () => {
  await using db = await syncFixture("null_ts_later", SOURCE_DDL, TARGET_DDL);
  const [spec] = await specsFrom(connector(db.source.url, db.target.url));
  const offsets = new MemoryOffsetStore();
  const first = await runPipeline(spec, { offsets });
  assertEquals(first.status, "succeeded", first.error?.message);
  const watermark = offsets.offsets.get(spec.name) as { ts: string | null };
  assert(typeof watermark.ts === "string", JSON.stringify(watermark));
  await db.sourceSql.unsafe("update public.items set updated_at = null where id in (3, 4)");
  const second = await runPipeline(spec, { offsets });
  assertEquals(second.status, "failed");
  assertStringIncludes(second.error?.message ?? "", "NULL in 2 of the rows");
  assertEquals(offsets.offsets.get(spec.name), watermark);
  // Fixed at the source: the rows are stamped again and arrive.
  await db.sourceSql.unsafe("update public.items set updated_at = now() where updated_at is null");
  const third = await runPipeline(spec, { offsets });
  assertEquals(third.status, "succeeded", third.error?.message);
  assertEquals(third.stats.read, 2);
});

Deno.test("a nullable timestamp column without NULLs is read, and rows outside where do not count", async () => {
  await using db = await syncFixture("null_ts_where", SOURCE_DDL, TARGET_DDL);
  await db.sourceSql.unsafe("insert into public.items (id, v) values (500, 'skipped')");
  const [spec] = await specsFrom(
    connector(db.source.url, db.target.url, { where: "updated_at is not null" }),
  );
  const offsets = new MemoryOffsetStore();
  const run = await runPipeline(spec, { offsets });
  assertEquals(run.status, "succeeded", run.error?.message);
  assertEquals(run.stats.read, 100);
  assert(typeof (offsets.offsets.get(spec.name) as { ts: unknown }).ts === "string");
});

Deno.test("an incremental query whose timestamp column holds NULLs fails before reading", async () => {
  await using db = await syncFixture("null_ts_query", SOURCE_DDL, TARGET_DDL);
  await db.sourceSql.unsafe("update public.items set updated_at = null where id = 7");
  const json = connector(db.source.url, db.target.url, {
    query: "select id, v, updated_at from public.items",
    "key.columns": "id",
  });
  delete (json.config as Record<string, string>).table;
  const [spec] = await specsFrom(json);
  const run = await runPipeline(spec, { offsets: new MemoryOffsetStore() });
  assertEquals(run.status, "failed");
  assertStringIncludes(run.error?.message ?? "", "the query");
  assertStringIncludes(run.error?.message ?? "", "NULL in 1 of the rows");
});

Deno.test("key.columns that do not identify a row fail the run before reading, naming why", async () => {
  await using db = await syncFixture("key_columns", SOURCE_DDL, TARGET_DDL);
  await db.sourceSql.unsafe(`
    alter table public.items add column tenant text not null default 'a', add column code text;
    create unique index on public.items (code);`);
  await db.targetSql.unsafe(
    "alter table public.items_copy add column tenant text, add column code text",
  );
  const refused = async (columns: string) => {
    const [spec] = await specsFrom(
      connector(db.source.url, db.target.url, { "key.columns": columns }),
    );
    const offsets = new MemoryOffsetStore();
    const run = await runPipeline(spec, { offsets });
    assertEquals(run.status, "failed", columns);
    assertEquals(run.stats.read, 0);
    assertEquals(offsets.offsets.get(spec.name), undefined, "no watermark was stored");
    return run.error?.message ?? "";
  };
  // Part of a key: rows with equal stamps and keys fall between chunks.
  assertStringIncludes(await refused("tenant"), "no primary key or unique index");
  // Unique but nullable: keyset reading never reaches the NULL rows.
  assertStringIncludes(await refused("code"), '"code" may be NULL');
  // A superset of the primary key identifies rows.
  const [spec] = await specsFrom(
    connector(db.source.url, db.target.url, { "key.columns": "tenant,id" }),
  );
  const run = await runPipeline(spec, { offsets: new MemoryOffsetStore() });
  assertEquals(run.status, "succeeded", run.error?.message);
  assertEquals(await targetCount(db.targetSql), 100);
});

Deno.test("an incremental job keyed by a bytea column stores a watermark the next runs can use", async () => {
  await using db = await syncFixture(
    "bytea_key",
    `create table public.items (id bytea primary key, v text, updated_at timestamptz not null);
     insert into public.items select decode(lpad(to_hex(g), 4, '0'), 'hex'), 'v' || g,
       timestamptz '2024-01-01 00:00:00+00' from generate_series(1, 30) g;`,
    `create table public.items_copy (id bytea primary key, v text, updated_at timestamptz);`,
  );
  const [spec] = await specsFrom(connector(db.source.url, db.target.url, { "chunk.size": "7" }));
  const offsets = new MemoryOffsetStore();
  assertEquals((await runPipeline(spec, { offsets })).stats.read, 30);
  const stored = JSON.parse(JSON.stringify(offsets.offsets.get(spec.name)));
  assertEquals(stored.key, ["\\x001e"]);
  await db.sourceSql.unsafe(
    "insert into public.items values ('\\xffff', 'late', '2024-01-01 00:00:00+00')",
  );
  const next = await runPipeline(spec, { offsets });
  assertEquals(next.status, "succeeded", next.error?.message);
  assertEquals(next.stats.read, 1);
  assertEquals(await targetCount(db.targetSql), 31);
});
