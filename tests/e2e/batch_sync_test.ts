import { assert, assertEquals, assertMatch } from "../_assert.ts";
import { MemoryOffsetStore } from "../../core/offsets.ts";
import { runPipeline } from "../../core/pipeline.ts";
import { specsFrom, syncFixture, tableDigest } from "../_batch.ts";

const SOURCE_DDL = `
  create type mood as enum ('calm', 'busy');
  create table public.people (
    id bigint primary key,
    full_name text not null,
    income numeric(30,10),
    born date,
    seen_at timestamptz,
    nap interval,
    tags text[],
    scores int[],
    doc jsonb,
    photo bytea,
    state mood,
    active boolean,
    uid uuid,
    updated_at timestamptz not null default now());
  create index on public.people (updated_at, id);`;

const TARGET_DDL = `
  create type mood as enum ('calm', 'busy');
  create table public.people_copy (
    id bigint primary key,
    display_name text not null,
    income numeric(30,10),
    born date,
    seen_at timestamptz,
    nap interval,
    tags text[],
    scores int[],
    doc jsonb,
    photo bytea,
    state mood,
    active boolean,
    uid uuid,
    updated_at timestamptz,
    synced_at timestamptz,
    deleted_at timestamptz);`;

const INSERT_PEOPLE = (from: number, to: number, updatedAt = "now()") => `
  insert into public.people
  select g, 'Person ' || g || case when g % 7 = 0 then E' \\\\ tab\\there\\nनमस्ते 🙂' else '' end,
         (g * 1234567.0123456789)::numeric(30,10), date '1980-01-01' + g,
         timestamptz '2024-03-01 10:00:00.123456+00' + g * interval '1 microsecond',
         make_interval(hours => g % 5, mins => g % 60),
         array['x' || g, null, 'q"uote,comma'], array[g, null, -g],
         jsonb_build_object('n', g, 'nested', jsonb_build_array(1, 'two', null)),
         decode(lpad(to_hex(g), 8, '0'), 'hex'),
         (case when g % 2 = 0 then 'calm' else 'busy' end)::mood,
         g % 3 = 0, md5(g::text)::uuid, ${updatedAt}
  from generate_series(${from}, ${to}) g`;

const COLUMNS =
  "id, income, born, seen_at, nap, tags, scores, doc, photo, state, active, uid, updated_at";

function connector(sourceUrl: string, targetUrl: string, extra: Record<string, string> = {}) {
  return {
    name: "people_sync",
    config: {
      "connector.class": "postgres_query",
      "connection.url": sourceUrl,
      "table": "public.people",
      "mode": "incremental",
      "chunk.size": "100",
      "sink.class": "postgres",
      "sink.connection.url": targetUrl,
      "sink.table": "public.people_copy",
      "sink.fields.mapping": "full_name:display_name",
      "sink.write.timestamp.column": "synced_at",
      ...extra,
    },
  };
}

Deno.test("postgres_query copies every type losslessly in a full sync", async () => {
  await using db = await syncFixture("full", SOURCE_DDL, TARGET_DDL);
  await db.sourceSql.unsafe(INSERT_PEOPLE(1, 1500));
  const [spec] = await specsFrom(connector(db.source.url, db.target.url, { mode: "full" }));
  const report = await runPipeline(spec, { offsets: new MemoryOffsetStore() });
  assertEquals(report.status, "succeeded", report.error?.message);
  assertEquals(report.stats.read, 1500);
  assertEquals(report.stats.written, 1500);
  assert(report.validation.length >= 2 && report.validation.every((check) => check.ok));
  const query = `select ${COLUMNS} from public.people order by id`;
  const copied = `select ${COLUMNS} from public.people_copy order by id`;
  assertEquals(await tableDigest(db.targetSql, copied), await tableDigest(db.sourceSql, query));
  const names = await tableDigest(db.targetSql, "select display_name from people_copy order by id");
  assertEquals(names, await tableDigest(db.sourceSql, "select full_name from people order by id"));
});

Deno.test("an incremental job misses no row when thousands share one updated_at across chunks", async () => {
  await using db = await syncFixture("equal_ts", SOURCE_DDL, TARGET_DDL);
  const sameMoment = "timestamptz '2024-05-05 05:05:05.555555+00'";
  await db.sourceSql.unsafe(INSERT_PEOPLE(1, 3000, sameMoment));
  // copy=false forces keyset chunks from the first run on.
  const [spec] = await specsFrom(connector(db.source.url, db.target.url, { copy: "false" }));
  const offsets = new MemoryOffsetStore();
  const first = await runPipeline(spec, { offsets });
  assertEquals(first.status, "succeeded", first.error?.message);
  assertEquals(first.stats.read, 3000);

  // 2,500 more rows with the very same timestamp, some of them with smaller ids.
  await db.sourceSql.unsafe(`update public.people set id = id + 10000 where id <= 500`);
  await db.sourceSql.unsafe(INSERT_PEOPLE(3001, 5000, sameMoment));
  const second = await runPipeline(spec, { offsets });
  assertEquals(second.status, "succeeded", second.error?.message);
  const [{ count }] = await db.targetSql`select count(*)::int as count from people_copy`;
  assertEquals(count, 5500); // 5,000 ids plus the 500 renumbered copies of 1..500
  const missing = await db.sourceSql`select id from people`;
  const present = new Set((await db.targetSql`select id from people_copy`).map((r) => r.id));
  assertEquals(missing.filter((r) => !present.has(r.id)).length, 0);
});

Deno.test("a row committed late by a long transaction with an old updated_at is still synced", async () => {
  await using db = await syncFixture("late_commit", SOURCE_DDL, TARGET_DDL);
  await db.sourceSql.unsafe(INSERT_PEOPLE(1, 200, "timestamptz '2024-01-01 00:00:00+00'"));
  const [spec] = await specsFrom(connector(db.source.url, db.target.url));
  const offsets = new MemoryOffsetStore();

  // A long transaction writes a row stamped before anything else, and waits.
  const late = await db.sourceSql.reserve();
  await late.unsafe("begin");
  await late.unsafe(INSERT_PEOPLE(9999, 9999, "timestamptz '2023-01-01 00:00:00+00'"));
  // Meanwhile newer rows commit and the job runs past them.
  await db.sourceSql.unsafe(INSERT_PEOPLE(201, 300, "timestamptz '2024-02-01 00:00:00+00'"));
  const before = await runPipeline(spec, { offsets });
  assertEquals(before.stats.read, 300);
  await late.unsafe("commit");
  late.release();

  const after = await runPipeline(spec, { offsets });
  assertEquals(after.status, "succeeded", after.error?.message);
  const rows = await db.targetSql`select id from people_copy where id = 9999`;
  assertEquals(rows.length, 1, "the late row must arrive on the next run");
  // Once nothing is in flight any more, later runs read nothing again.
  const quiet = await runPipeline(spec, { offsets });
  assertEquals(quiet.stats.read, 0);
});

Deno.test("re-running a job neither duplicates nor loses rows", async () => {
  await using db = await syncFixture("rerun", SOURCE_DDL, TARGET_DDL);
  await db.sourceSql.unsafe(INSERT_PEOPLE(1, 700));
  const [spec] = await specsFrom(connector(db.source.url, db.target.url));
  const offsets = new MemoryOffsetStore();
  await runPipeline(spec, { offsets });
  const digest = await tableDigest(db.targetSql, `select ${COLUMNS} from people_copy order by id`);
  const again = await runPipeline(spec, { offsets });
  assertEquals(again.stats.read, 0);
  const refresh = await runPipeline(spec, { offsets }, { fullRefresh: true });
  assertEquals(refresh.stats.read, 700);
  assertEquals(refresh.status, "succeeded", refresh.error?.message);
  assertEquals(
    await tableDigest(db.targetSql, `select ${COLUMNS} from people_copy order by id`),
    digest,
  );
  const [{ count }] = await db.targetSql`select count(*)::int as count from people_copy`;
  assertEquals(count, 700);
});

Deno.test("a row the target rejects goes to the dead-letter table while the rest land", async () => {
  await using db = await syncFixture("dead_letter", SOURCE_DDL, TARGET_DDL);
  await db.targetSql.unsafe(
    "alter table people_copy add constraint no_1234 check (id <> 1234)",
  );
  await db.sourceSql.unsafe(INSERT_PEOPLE(1, 2000));
  const [spec] = await specsFrom(connector(db.source.url, db.target.url, {
    "errors.tolerance": "all",
    "errors.deadletterqueue.table.name": "public.sync_dead_letters",
  }));
  const report = await runPipeline(spec, { offsets: new MemoryOffsetStore() });
  assertEquals(report.status, "succeeded", report.error?.message);
  assertEquals(report.stats.deadLettered, 1);
  assertEquals(report.stats.written, 1999);
  const [{ count }] = await db.targetSql`select count(*)::int as count from people_copy`;
  assertEquals(count, 1999);
  const letters = await db.targetSql<{ error: string; key: string; stage: string }[]>`
    select error, record_key::text as key, stage from sync_dead_letters`;
  assertEquals(letters.length, 1);
  assertEquals(letters[0].key, '{"id": 1234}');
  assertEquals(letters[0].stage, "sink");
  assertMatch(letters[0].error, /violates check constraint "no_1234"/);
});

Deno.test("with errors.tolerance none a rejected row stops the job and nothing of its batch commits", async () => {
  await using db = await syncFixture("tolerance_none", SOURCE_DDL, TARGET_DDL);
  await db.targetSql.unsafe("alter table people_copy add constraint no_150 check (id <> 150)");
  await db.sourceSql.unsafe(INSERT_PEOPLE(1, 300));
  const [spec] = await specsFrom(connector(db.source.url, db.target.url, { copy: "false" }));
  const report = await runPipeline(spec, { offsets: new MemoryOffsetStore() });
  assertEquals(report.status, "failed");
  assertMatch(report.error!.message, /^Tolerance exceeded in error handler/);
  const [{ count }] = await db.targetSql`select count(*)::int as count from people_copy`;
  assertEquals(count, 100, "only the first chunk (ids 1-100) was committed");
  const [{ offset }] = await db.targetSql`select "offset" from sluice_offsets`;
  assertEquals(offset.key, [100]);
});

Deno.test("a job whose target silently drops rows fails its validation", async () => {
  await using db = await syncFixture("validation", SOURCE_DDL, TARGET_DDL);
  await db.targetSql.unsafe(`
    create function skip_odd() returns trigger language plpgsql as
      $$ begin if new.id = 77 then return null; end if; return new; end $$;
    create trigger skip_odd before insert on people_copy for each row execute function skip_odd();`);
  await db.sourceSql.unsafe(INSERT_PEOPLE(1, 200));
  const [spec] = await specsFrom(connector(db.source.url, db.target.url));
  const report = await runPipeline(spec, { offsets: new MemoryOffsetStore() });
  assertEquals(report.status, "failed", JSON.stringify(report.validation));
  assertMatch(report.error!.message, /^Validation failed: /);
  const failed = report.validation.filter((check) => !check.ok).map((check) => check.name);
  // A first load goes in by COPY (caught by the row count); later ones are merged
  // (caught by the written count and the key checksum).
  assert(failed.includes("target row count"), failed.join(", "));
  await db.targetSql.unsafe("truncate people_copy");
  await db.targetSql.unsafe("insert into people_copy (id, display_name) values (1, 'x')");
  const merged = await runPipeline(spec, { offsets: new MemoryOffsetStore() }, {
    fullRefresh: true,
  });
  assertEquals(merged.status, "failed");
  const mergedFailed = merged.validation.filter((check) => !check.ok).map((check) => check.name);
  assert(mergedFailed.includes("record counts"), mergedFailed.join(", "));
  assert(mergedFailed.includes("target key checksum"), mergedFailed.join(", "));
});

Deno.test("the source row count of a full read is taken in the run's snapshot, while other sessions insert", async () => {
  await using db = await syncFixture("count_snapshot", SOURCE_DDL, TARGET_DDL);
  await db.sourceSql.unsafe(INSERT_PEOPLE(1, 20_000, "'2024-01-01'"));
  // Rows committed all along: a count in any snapshot but the run's own
  // would hold some the COPY does not, and fail the validation.
  let inserting = true;
  let next = 100_000;
  const inserter = (async () => {
    while (inserting) {
      await db.sourceSql.unsafe(INSERT_PEOPLE(next, next + 9, "'2024-01-01'"));
      next += 10;
    }
  })();
  try {
    for (const mode of ["full", "incremental"]) {
      const [spec] = await specsFrom(connector(db.source.url, db.target.url, { mode }));
      const report = await runPipeline(spec, { offsets: new MemoryOffsetStore() }, {
        fullRefresh: true,
      });
      assertEquals(report.status, "succeeded", report.error?.message);
      const check = report.validation.find((c) => c.name === "source row count");
      assert(check?.ok, JSON.stringify(report.validation));
      assert(report.stats.read >= 20_000, `${mode}: read ${report.stats.read}`);
    }
  } finally {
    inserting = false;
    await inserter;
  }
  assert(next > 100_010, "the other session committed rows during the runs");
});
