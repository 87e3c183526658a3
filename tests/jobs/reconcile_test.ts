/**
 * The `reconcile` job against the real PostgreSQL: it finds exactly the rows
 * a test corrupted in the target, through the checked pipeline's masking and
 * renames; repair fixes them; fast and deep modes agree.
 */
import { assert, assertEquals, assertLessOrEqual, assertMatch } from "../_assert.ts";
import { MemoryOffsetStore } from "../../core/offsets.ts";
import { runPipeline, type RunReport } from "../../core/pipeline.ts";
import { ConfigError } from "../../api/errors.ts";
import type { ReconciliationFigures } from "../../api/plugin.ts";
import type { PipelineSpec } from "../../core/config.ts";
import { specsFrom, syncFixture } from "../_batch.ts";
import { capturingLogs } from "../_logs.ts";

const SOURCE_DDL = `
  create table public.people (
    id bigint primary key,
    full_name text not null,
    national_id text,
    email text,
    income numeric(12,2),
    tags text[],
    doc json,
    updated_at timestamptz not null default now());
  insert into public.people
  select g, 'Person ' || g, lpad(g::text, 12, '0'), 'p' || g || '@example.org',
         g * 1000.5, array['t' || (g % 3)], json_build_object('n', g),
         timestamptz '2024-01-01 00:00:00.123456+00' + g * interval '1 second'
  from generate_series(1, 3000) g;`;

// The key and the version are renamed; names, ids and emails are masked.
const TARGET_DDL = `
  create table public.people_summary (
    citizen_id bigint primary key,
    display_name text,
    national_id text,
    email text,
    income numeric(14,2),
    tags text[],
    doc json,
    source_updated_at timestamptz,
    synced_at timestamptz,
    deleted_at timestamptz);`;

const MASK_KEY = "0123456789abcdef0123456789abcdef";

function pipelines(
  source: string,
  target: string,
  reconciles: Record<string, string>[],
  sink: Record<string, string> = {},
) {
  return [
    {
      name: "people_sync",
      config: {
        "connector.class": "postgres_query",
        "connection.url": source,
        table: "public.people",
        mode: "full",
        transforms: "mask",
        "transforms.mask.type": "mask",
        "transforms.mask.fields": "full_name,national_id,email",
        "transforms.mask.key": MASK_KEY,
        "transforms.mask.fields.full_name.strategy": "partial",
        "transforms.mask.fields.full_name.keep.first": "1",
        "transforms.mask.fields.national_id.strategy": "hmac",
        "transforms.mask.fields.email.strategy": "email",
        "sink.class": "postgres",
        "sink.connection.url": target,
        "sink.table": "public.people_summary",
        "sink.fields.mapping": "id:citizen_id,full_name:display_name,updated_at:source_updated_at",
        "sink.write.timestamp.column": "synced_at",
        ...sink,
      },
    },
    ...reconciles.map((config, i) => ({
      name: `people_reconcile_${i}`,
      config: {
        "connector.class": "reconcile",
        pipeline: "people_sync",
        "sample.size": "20",
        ...config,
      },
    })),
  ];
}

async function run(
  spec: PipelineSpec,
): Promise<{ report: RunReport; found: ReconciliationFigures }> {
  const report = await runPipeline(spec, { offsets: new MemoryOffsetStore() });
  const check = report.validation.find((c) => c.name === "reconciliation");
  assert(check?.reconciliation, `no reconciliation check: ${report.error?.message}`);
  return { report, found: check.reconciliation };
}

/** The sample keys of the last run row, per kind, sorted. */
async function lastSamples(sql: import("postgres").Sql): Promise<Record<string, string[]>> {
  const [row] =
    await sql`select sample_keys from sluice_reconciliation_runs order by id desc limit 1`;
  const samples = row.sample_keys as Record<string, string[]>;
  return {
    missing: [...samples.missing].sort(),
    extra: [...samples.extra].sort(),
    different: [...samples.different].sort(),
  };
}

/** Corrupts the target: 2 versions changed, 3 rows deleted, 1 soft-deleted, 1 stray row. */
async function corrupt(sql: import("postgres").Sql): Promise<void> {
  await sql`update people_summary set source_updated_at = source_updated_at + interval '1 day'
            where citizen_id in (5, 2077)`;
  await sql`delete from people_summary where citizen_id in (10, 11, 2999)`;
  await sql`update people_summary set deleted_at = now() where citizen_id = 20`;
  await sql`insert into people_summary (citizen_id, display_name) values (999999, 'Stray')`;
}

const CORRUPTED = {
  missing: ["id=10", "id=11", "id=20", "id=2999"],
  extra: ["citizen_id=999999"],
  different: ["id=2077", "id=5"],
};

Deno.test("reconcile finds exactly the corrupted rows through masking and renames; repair fixes them", async () => {
  await using db = await syncFixture("reconcile", SOURCE_DDL, TARGET_DDL);
  const [sync, fast, deep, repair] = await specsFrom(pipelines(db.source.url, db.target.url, [
    { mode: "fast" },
    { mode: "deep", "chunk.size": "700" },
    { mode: "fast", repair: "true" },
  ]));
  const synced = await runPipeline(sync, { offsets: new MemoryOffsetStore() });
  assertEquals(synced.status, "succeeded", synced.error?.message);

  const clean = await run(fast);
  assertEquals(clean.report.status, "succeeded", clean.report.error?.message);
  assertEquals(clean.found.remaining, 0);
  assertEquals(clean.found.sourceRows, 3000);
  const cleanDeep = await run(deep);
  assertEquals(cleanDeep.report.status, "succeeded", cleanDeep.report.error?.message);
  assertEquals(
    cleanDeep.found.remaining,
    0,
    "deep mode sees the masked values as the sink wrote them",
  );

  await corrupt(db.targetSql);
  const byFast = await run(fast);
  assertEquals(byFast.report.status, "failed");
  assertMatch(byFast.report.error?.message ?? "", /Validation failed: reconciliation/);
  assertEquals(
    [byFast.found.missing, byFast.found.extra, byFast.found.different],
    [4, 1, 2],
  );
  assertEquals(await lastSamples(db.targetSql), CORRUPTED);
  const byDeep = await run(deep);
  assertEquals([byDeep.found.missing, byDeep.found.extra, byDeep.found.different], [4, 1, 2]);
  assertEquals(await lastSamples(db.targetSql), CORRUPTED, "fast and deep agree");

  const repaired = await run(repair);
  assertEquals(repaired.report.status, "succeeded", repaired.report.error?.message);
  assertEquals(repaired.found.repaired, 7);
  assertEquals(repaired.found.remaining, 0);
  const [stray] = await db
    .targetSql`select deleted_at from people_summary where citizen_id = 999999`;
  assert(stray.deleted_at !== null, "the stray row is soft-deleted (the sink's delete.mode)");
  const [back] = await db.targetSql`select display_name, deleted_at from people_summary
                                    where citizen_id = 20`;
  assertEquals(back.deleted_at, null);
  assertEquals(back.display_name[0], "P", "repaired rows went through the mask");
  assert(back.display_name !== "Person 20");

  const after = await run(fast);
  assertEquals(after.found.remaining, 0);
  assertEquals((await run(deep)).found.remaining, 0);
  const runs = await db.targetSql`select mode, missing, extra, different, repaired, remaining
                                  from sluice_reconciliation_runs order by id`;
  assertEquals(runs.length, 7);
  assertEquals(runs[4].repaired, "7");
});

Deno.test("repair writes past the sink's version guard: the target row is the wrong one", async () => {
  await using db = await syncFixture("reconcile_guarded", SOURCE_DDL, TARGET_DDL);
  const [sync, repair, check] = await specsFrom(pipelines(db.source.url, db.target.url, [
    { mode: "deep", repair: "true" },
    { mode: "deep" },
  ], { "sink.version.column": "source_updated_at" }));
  const synced = await runPipeline(sync, { offsets: new MemoryOffsetStore() });
  assertEquals(synced.status, "succeeded", synced.error?.message);
  // A version the source never had (newer), a value changed at the same
  // version, and a soft delete that kept the version: each would make the
  // guard skip an ordinary write of the source row.
  await db
    .targetSql`update people_summary set source_updated_at = source_updated_at + interval '1 day'
                     where citizen_id = 5`;
  await db.targetSql`update people_summary set income = 0 where citizen_id = 7`;
  await db.targetSql`update people_summary set deleted_at = now() where citizen_id = 20`;

  const repaired = await run(repair);
  assertEquals(repaired.report.status, "succeeded", repaired.report.error?.message);
  assertEquals([repaired.found.missing, repaired.found.different], [1, 2]);
  assertEquals(repaired.found.repaired, 3);
  assertEquals(repaired.found.remaining, 0);
  const rows = await db.targetSql`select citizen_id, income::text, deleted_at,
                                    source_updated_at = timestamptz '2024-01-01 00:00:00.123456+00'
                                      + citizen_id * interval '1 second' as same_version
                                  from people_summary where citizen_id in (5, 7, 20)
                                  order by citizen_id`;
  assertEquals(rows.map((r) => [r.citizen_id, r.income, r.deleted_at, r.same_version]), [
    ["5", "5002.50", null, true],
    ["7", "7003.50", null, true],
    ["20", "20010.00", null, true],
  ]);
  assertEquals((await run(check)).found.remaining, 0);

  // An ordinary run of the guarded pipeline still skips what is not newer.
  const again = await runPipeline(sync, { offsets: new MemoryOffsetStore() });
  assertEquals(again.status, "succeeded", again.error?.message);
  assertEquals(again.stats.written, 0);
});

Deno.test("deep mode finds a masked value changed in the target; fast mode compares keys and versions only", async () => {
  await using db = await syncFixture("reconcile_values", SOURCE_DDL, TARGET_DDL);
  const [sync, fast, deep, repair] = await specsFrom(pipelines(db.source.url, db.target.url, [
    { mode: "fast" },
    { mode: "deep" },
    { mode: "deep", repair: "true" },
  ]));
  await runPipeline(sync, { offsets: new MemoryOffsetStore() });
  await db.targetSql`update people_summary set national_id = 'tampered' where citizen_id = 42`;
  await db.targetSql`update people_summary set income = income + 0.01 where citizen_id = 43`;
  await db.targetSql`update people_summary set doc = '{"n": 0}' where citizen_id = 44`;
  assertEquals((await run(fast)).found.remaining, 0);
  const found = await run(deep);
  assertEquals(found.found.different, 3);
  assertEquals((await lastSamples(db.targetSql)).different, ["id=42", "id=43", "id=44"]);
  const repaired = await run(repair);
  assertEquals(repaired.report.status, "succeeded", repaired.report.error?.message);
  assertEquals(repaired.found.remaining, 0);
});

Deno.test("a table in sync costs one round of two aggregate queries in fast mode", async () => {
  await using db = await syncFixture("reconcile_cost", SOURCE_DDL, TARGET_DDL);
  const [sync, fast] = await specsFrom(pipelines(db.source.url, db.target.url, [{ mode: "fast" }]));
  await runPipeline(sync, { offsets: new MemoryOffsetStore() });
  await db.targetSql`analyze people_summary`;
  const clean = await run(fast);
  // The size estimate, then one aggregate per side.
  assertEquals(clean.found.queries, 3);
  const [row] = await db.targetSql`select count(*)::int as n from sluice_reconciliation_runs`;
  assertEquals(row.n, 1);

  // One drifted row: ranges of ~64 rows, so a second round is not needed either.
  await db.targetSql`update people_summary set source_updated_at = now() where citizen_id = 1500`;
  const drifted = await run(fast);
  assertEquals(drifted.found.different, 1);
  assertLessOrEqual(drifted.found.queries, 5);
});

Deno.test("fast mode falls back to deep, and says so, when the transforms change the key", async () => {
  await using db = await syncFixture(
    "reconcile_masked_key",
    `create table people (email text primary key, updated_at timestamptz default now());
     insert into people select 'p' || g || '@example.org', now() from generate_series(1, 200) g;`,
    `create table people_copy (email text primary key, updated_at timestamptz,
                               deleted_at timestamptz);`,
  );
  const [sync, fast] = await specsFrom([
    {
      name: "emails",
      config: {
        "connector.class": "postgres_query",
        "connection.url": db.source.url,
        table: "public.people",
        transforms: "mask",
        "transforms.mask.type": "mask",
        "transforms.mask.fields": "email",
        "transforms.mask.strategy": "hmac",
        "transforms.mask.key": MASK_KEY,
        "sink.class": "postgres",
        "sink.connection.url": db.target.url,
        "sink.table": "public.people_copy",
      },
    },
    { name: "check", config: { "connector.class": "reconcile", pipeline: "emails" } },
  ]);
  await runPipeline(sync, { offsets: new MemoryOffsetStore() });
  await db
    .targetSql`delete from people_copy where email in (select email from people_copy limit 3)`;
  const found = await run(fast);
  assertEquals(found.found.mode, "deep");
  assertEquals(found.found.missing, 3);
  const [row] = await db.targetSql`select note, sample_keys from sluice_reconciliation_runs`;
  assertMatch(row.note, /change the key field "email"/);
  // The clear emails the mask hides reach neither the target database nor the log.
  assert(!JSON.stringify(row.sample_keys).includes("@example.org"), row.sample_keys);
  assertEquals(row.sample_keys.missing, ["(source keys withheld: the pipeline masks its key)"]);
});

Deno.test("a reconcile job names a batch pipeline and takes its transforms and sink", async () => {
  const base = pipelines("postgres://localhost/a", "postgres://localhost/b", []);
  const specs = await specsFrom([...base, {
    name: "check",
    config: {
      "connector.class": "reconcile",
      pipeline: "people_sync",
      "job.schedule": "0 3 * * *",
    },
  }]);
  assertEquals(specs[1].sink.plugin.name, "postgres");
  assertEquals(specs[1].transforms.map((t) => t.alias), ["mask"]);
  assertEquals(specs[1].subject?.name, "people_sync");

  let error: unknown;
  try {
    await specsFrom([...base, {
      name: "check",
      config: {
        "connector.class": "reconcile",
        pipeline: "nope",
        "sink.class": "postgres",
        transforms: "x",
        "transforms.x.type": "cast",
        "transforms.x.spec": "id:int64",
      },
    }]);
  } catch (caught) {
    error = caught;
  }
  assert(error instanceof ConfigError, String(error));
  const message = error.message;
  assertMatch(
    message,
    /check: config.sink.class: "reconcile" uses the sink of the pipeline it names/,
  );
  assertMatch(message, /check: config.transforms: "reconcile" runs the transforms/);
  const unknown = await specsFrom([...base, {
    name: "check",
    config: { "connector.class": "reconcile", pipeline: "nope" },
  }]).catch((caught) => caught as Error);
  assert(unknown instanceof ConfigError, String(unknown));
  assertMatch(unknown.message, /check: config.pipeline: names "nope", which is not a pipeline/);

  // A pipeline whose sink names its tables per record cannot be compared: validate says so.
  const perTopic = pipelines("postgres://localhost/a", "postgres://localhost/b", []);
  delete (perTopic[0].config as Record<string, string>)["sink.table"];
  const unfit = await specsFrom([...perTopic, {
    name: "check",
    config: { "connector.class": "reconcile", pipeline: "people_sync" },
  }]).catch((caught) => caught as Error);
  assert(unfit instanceof ConfigError, String(unfit));
  assertMatch(
    unfit.message,
    /check: config.pipeline: names "people_sync": its sink has no fixed table \(sink.table\)/,
  );
});

Deno.test("repair of a pipeline that reads a where-subset deletes only rows its whole source table lacks", async () => {
  await using db = await syncFixture("reconcile_where", SOURCE_DDL, TARGET_DDL);
  const half = { where: "id <= 1500" };
  const [, repair] = await specsFrom(
    pipelines(db.source.url, db.target.url, [
      { mode: "fast", repair: "true" },
    ]).map((p, i) => i === 0 ? { ...p, config: { ...p.config, ...half } } : p),
  );
  // Another pipeline wrote rows 1501–3000 (id > 1500) into the same table.
  const [all] = await specsFrom(pipelines(db.source.url, db.target.url, []));
  assertEquals((await runPipeline(all, { offsets: new MemoryOffsetStore() })).stats.written, 3000);
  // Row 7 was deleted at the source; the repair may delete it in the target.
  await db.sourceSql`delete from people where id = 7`;
  const repaired = await run(repair);
  assertEquals(repaired.found.extra, 1501, "rows outside the where, and row 7");
  assertEquals(repaired.found.repaired, 1);
  const [{ live, gone }] = await db.targetSql`
    select count(*) filter (where deleted_at is null)::int as live,
           array_agg(citizen_id) filter (where deleted_at is not null) as gone
    from people_summary`;
  assertEquals([live, gone], [2999, ["7"]]);
});

Deno.test("deep mode counts a source value the target's column cannot take as a difference, and goes on", async () => {
  await using db = await syncFixture(
    "reconcile_unfit",
    `create table public.items (id int primary key, status text, note varchar(20));
     insert into public.items select g, case when g % 2 = 0 then 'active' else 'closed' end, 'n' || g
     from generate_series(1, 500) g;`,
    `create type item_status as enum ('active', 'closed');
     create table public.items (id int primary key, status item_status, note varchar(8),
                                deleted_at timestamptz);`,
  );
  const [sync, deep] = await specsFrom([
    {
      name: "items_sync",
      config: {
        "connector.class": "postgres_query",
        "connection.url": db.source.url,
        table: "public.items",
        mode: "full",
        "sink.class": "postgres",
        "sink.connection.url": db.target.url,
        "sink.table": "public.items",
        "errors.tolerance": "all",
        "errors.deadletterqueue.table.name": "public.dead_letters",
      },
    },
    {
      name: "items_reconcile",
      config: {
        "connector.class": "reconcile",
        pipeline: "items_sync",
        mode: "deep",
        "chunk.size": "100",
        "sample.size": "20",
      },
    },
  ]);
  assertEquals((await runPipeline(sync, { offsets: new MemoryOffsetStore() })).status, "succeeded");
  // Since the sync: a label the target's enum lacks, a note too long for it, a new row with both.
  await db.sourceSql`update items set status = 'archived' where id in (3, 250)`;
  await db.sourceSql`update items set note = 'far too long for it' where id = 499`;
  await db.sourceSql`update items set note = 'changed' where id = 7`;
  await db.sourceSql`insert into items values (501, 'archived', 'new')`;
  await using logs = await capturingLogs();
  const { report, found } = await run(deep);
  // Differences fail the run's validation; the comparison itself went through.
  assertEquals(report.error?.message, "Validation failed: reconciliation");
  assertEquals([found.missing, found.extra, found.different], [1, 0, 4]);
  assertEquals((await lastSamples(db.targetSql)).different, ["id=250", "id=3", "id=499", "id=7"]);
  const refused = logs.lines.filter((line) => line.includes("cannot take"));
  assertEquals(refused.length, 4, refused.join("\n"));
  assertMatch(refused.join("\n"), /Source row id=250 .*invalid input value for enum item_status/);

  // Every row refused: the types no longer match, and the run says so instead of counting.
  await db.sourceSql`update items set status = 'archived'`;
  const mismatch = await runPipeline(deep, { offsets: new MemoryOffsetStore() });
  assertEquals(mismatch.status, "failed");
  assertMatch(
    mismatch.error?.message ?? "",
    /^More than 100 source rows hold values the target's columns cannot take \(the last: id=\d+: invalid input value for enum item_status: "archived"\); make the target's column types match/,
  );
});

Deno.test("a source row the target cannot take is named without its key when the pipeline masks the key", async () => {
  await using db = await syncFixture(
    "reconcile_unfit_masked",
    `create table people (email text primary key, note text);
     insert into people select 'p' || g || '@example.org', 'n' || g from generate_series(1, 50) g;`,
    `create table people_copy (email text primary key, note varchar(8), deleted_at timestamptz);`,
  );
  const [sync, deep] = await specsFrom([
    {
      name: "emails",
      config: {
        "connector.class": "postgres_query",
        "connection.url": db.source.url,
        table: "public.people",
        transforms: "mask",
        "transforms.mask.type": "mask",
        "transforms.mask.fields": "email",
        "transforms.mask.strategy": "hmac",
        "transforms.mask.key": MASK_KEY,
        "sink.class": "postgres",
        "sink.connection.url": db.target.url,
        "sink.table": "public.people_copy",
      },
    },
    { name: "check", config: { "connector.class": "reconcile", pipeline: "emails", mode: "deep" } },
  ]);
  assertEquals((await runPipeline(sync, { offsets: new MemoryOffsetStore() })).status, "succeeded");
  await db.sourceSql`update people set note = 'far too long for it' where email = 'p7@example.org'`;
  await using logs = await capturingLogs();
  const { found } = await run(deep);
  assertEquals([found.missing, found.extra, found.different], [0, 0, 1]);
  const refused = logs.lines.filter((line) => line.includes("cannot take"));
  assertEquals(refused.length, 1, logs.lines.join("\n"));
  assertMatch(refused[0], /Source row \(key withheld: the pipeline masks it\) holds a value/);
  assert(!logs.lines.join("\n").includes("@example.org"), "a masked key reaches the log");
});
