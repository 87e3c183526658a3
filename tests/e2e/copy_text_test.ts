/**
 * The batch fast path: `postgres_query` → `postgres` with no transform hands
 * rows on as COPY text. These tests prove the path is taken (the runner sees
 * COPY rows, the sink logs that it wrote them as text) and that it writes
 * the same bytes as the decoded path, and keeps every guarantee of it: bad
 * rows dead-lettered, the version guard, counts, and a fallback for configs
 * it cannot serve.
 */
import { assertEquals, assertMatch } from "../_assert.ts";
import { MemoryOffsetStore } from "../../core/offsets.ts";
import { runPipeline } from "../../core/pipeline.ts";
import type { PipelineObserver } from "../../core/observer.ts";
import { specsFrom, syncFixture, tableDigest } from "../_batch.ts";
import { waitUntil } from "../_wait.ts";
import { assertSameRows, digests, matrixFixture } from "../_matrix.ts";
import { capturingLogs } from "../_logs.ts";

/** An observer counting the rows that reached the runner as COPY text. */
function copyRowCounter(): { observer: PipelineObserver; rows: () => number } {
  let rows = 0;
  return {
    observer: { onBatchRead: (_pipeline, event) => rows += event.copyRows ?? 0 },
    rows: () => rows,
  };
}

const matrixJob = (name: string, source: string, target: string, extra = {}) => ({
  name,
  config: {
    "connector.class": "postgres_query",
    "connection.url": source,
    table: "public.matrix",
    mode: "full",
    "chunk.size": "2",
    "sink.class": "postgres",
    "sink.connection.url": target,
    "sink.table": "public.matrix",
    ...extra,
  },
});

Deno.test("a full sync without transforms copies COPY text through, byte for byte as the decoded path writes", async () => {
  const { f, columns } = await matrixFixture("copy_text_matrix");
  await using _ = f;
  await using logs = await capturingLogs();

  const counter = copyRowCounter();
  const [fast] = await specsFrom(matrixJob("fast", f.source.url, f.target.url));
  const first = await runPipeline(fast, {
    offsets: new MemoryOffsetStore(),
    observer: counter.observer,
  });
  assertEquals(first.error?.message, undefined);
  assertEquals(counter.rows(), 5, "every row reached the sink as COPY text");
  assertEquals(first.stats.written, 5);
  assertEquals(
    logs.lines.some((line) => line.includes("as COPY text, not decoded")),
    true,
    logs.lines.join("\n"),
  );
  assertEquals(logs.lines.filter((line) => line.includes("Rows are decoded")), []);
  await assertSameRows(f, columns);

  // Into the filled target: staged and merged, still the same bytes.
  const again = await runPipeline(fast, { offsets: new MemoryOffsetStore() });
  assertEquals(again.error?.message, undefined);
  assertEquals(again.stats.written, 5);
  assertEquals(again.validation.every((check) => check.ok), true, JSON.stringify(again.validation));
  await assertSameRows(f, columns);

  // The decoded path (a transform that keeps every record turns the fast path
  // off) into the emptied target: the same digests as the source, so as the fast path's.
  await f.targetSql.unsafe("truncate public.matrix");
  const decodedCounter = copyRowCounter();
  const [decoded] = await specsFrom(matrixJob("decoded", f.source.url, f.target.url, {
    transforms: "keep",
    "transforms.keep.type": "filter",
    "transforms.keep.condition": "true",
  }));
  const slow = await runPipeline(decoded, {
    offsets: new MemoryOffsetStore(),
    observer: decodedCounter.observer,
  });
  assertEquals(slow.error?.message, undefined);
  assertEquals(decodedCounter.rows(), 0, "with a transform the rows are decoded");
  assertEquals(await digests(f.targetSql), await digests(f.sourceSql));
});

const PEOPLE = `
  create table public.people (id int primary key, name text, v timestamptz, n int);`;

const peopleJob = (source: string, target: string, extra = {}) => ({
  name: "people",
  config: {
    "connector.class": "postgres_query",
    "connection.url": source,
    table: "public.people",
    mode: "full",
    "sink.class": "postgres",
    "sink.connection.url": target,
    "sink.table": "public.people",
    "errors.tolerance": "all",
    "errors.deadletterqueue.table.name": "public.dead_letters",
    ...extra,
  },
});

/** 40,000 rows: about 2.5 MB of COPY text, so several chunks of about 1 MiB. */
const FILL = `insert into public.people
  select g, E'name\\t' || g || E'\\\\ \\n🙂', timestamptz '2026-01-01 00:00:00+00' + g * interval '1 s', g
  from generate_series(1, 40000) g`;

Deno.test("a row the target refuses in a COPY text chunk is dead-lettered, the rest of the chunk lands", async () => {
  for (const filled of [false, true]) {
    await using f = await syncFixture(
      `copy_text_refused_${filled}`,
      PEOPLE,
      PEOPLE + "alter table public.people add constraint no_seven check (id <> 7);",
    );
    await using logs = await capturingLogs();
    await f.sourceSql.unsafe(FILL);
    // A filled target takes the merge; an empty one the bulk COPY.
    if (filled) await f.targetSql.unsafe("insert into public.people (id) values (1), (2), (20)");
    const [spec] = await specsFrom(peopleJob(f.source.url, f.target.url));
    const report = await runPipeline(spec, { offsets: new MemoryOffsetStore() });
    assertEquals(report.status, "succeeded", report.error?.message);
    assertEquals(report.stats.read, 40000);
    assertEquals(report.stats.written, 39999);
    assertEquals(report.stats.deadLettered, 1);
    const letters = await f.targetSql<{ key: string; error: string }[]>`
      select record_key::text as key, error from dead_letters`;
    assertEquals(letters.map((letter) => letter.key), ['{"id": 7}']);
    assertMatch(letters[0].error, /no_seven/);
    const [{ n }] = await f.targetSql`select count(*)::int as n from people where n is not null`;
    assertEquals(n, 39999);
    assertEquals(
      logs.lines.some((line) => line.includes("refused a row of the chunk")),
      true,
      "the refused chunk fell back to records",
    );
    assertEquals(logs.lines.some((line) => line.includes("as COPY text, not decoded")), true);
  }
});

Deno.test("a COPY text chunk with a value its column would round is written as records, the value dead-lettered", async () => {
  const source = `create table public.people (id int primary key, amount numeric, v timestamptz,
                    exact numeric(6,2), n int, name text);`;
  const target = `create table public.people (id int primary key, amount numeric(6,2),
                    v timestamptz(0), exact numeric(8,2), n int, name varchar(8));`;
  for (const filled of [false, true]) {
    await using f = await syncFixture(`copy_text_rounding_${filled}`, source, target);
    await using logs = await capturingLogs();
    await f.sourceSql.unsafe(`insert into public.people
      select g, g % 1000 + 0.25, timestamptz '2026-01-01 00:00:00+00' + g * interval '1 s',
             g % 1000 + 0.5, g, 'n' || g from generate_series(1, 60000) g`);
    await f.sourceSql.unsafe(`update public.people set amount = 1.2345 where id = 7;
      update public.people set v = '2026-01-01 10:00:00.7+00' where id = 9;
      update public.people set name = 'Ă¥ngströ   ' where id = 13;
      update public.people set name = 'Ă¥ngströ' where id = 14;
      update public.people set amount = 1.2300 where id = 11`);
    if (filled) await f.targetSql.unsafe("insert into public.people (id) values (1), (2), (20)");
    const [spec] = await specsFrom(peopleJob(f.source.url, f.target.url));
    const report = await runPipeline(spec, { offsets: new MemoryOffsetStore() });
    assertEquals(report.status, "succeeded", report.error?.message);
    assertEquals([report.stats.written, report.stats.deadLettered], [59997, 3]);
    assertEquals(
      report.validation.every((check) => check.ok),
      true,
      JSON.stringify(report.validation),
    );
    const [{ n }] = await f.targetSql`select count(*)::int as n from people where n is not null`;
    assertEquals(n, 59997);
    const letters = await f.targetSql<{ key: string; error: string }[]>`
      select record_key::text as key, error from dead_letters order by (record_key->>'id')::int`;
    assertEquals(letters.map((letter) => letter.key), ['{"id": 7}', '{"id": 9}', '{"id": 13}']);
    assertMatch(
      letters[2].error,
      /\(column "name", key \{"id":13\}\): value "Ă¥ngströ {3}" is longer than type character varying\(8\) by trailing spaces/,
    );
    assertMatch(
      letters[0].error,
      /\(column "amount", key \{"id":7\}\): value "1\.2345" has more digits than type numeric\(6,2\)/,
    );
    assertMatch(
      letters[1].error,
      /\(column "v", key \{"id":9\}\): value "2026-01-01 10:00:00\.7\+00"/,
    );
    const rows = await f
      .targetSql`select id, amount::text, v::text, name from people
                 where id in (7, 9, 11, 13, 14) order by id`;
    assertEquals(rows.map((r) => [r.id, r.amount, r.v, r.name]), [
      [11, "1.23", "2026-01-01 00:00:11+00", "n11"],
      [14, "14.25", "2026-01-01 00:00:14+00", "Ă¥ngströ"],
    ]);
    assertEquals(
      logs.lines.some((line) => line.includes("a value of the chunk would be rounded")),
      true,
    );
  }
});

Deno.test("a COPY text chunk with an interval its column would cut is checked by PostgreSQL and dead-lettered", async () => {
  for (const filled of [false, true]) {
    await using f = await syncFixture(
      `copy_text_interval_${filled}`,
      "create table public.people (id int primary key, span interval);",
      "create table public.people (id int primary key, span interval day);",
    );
    await f.sourceSql.unsafe(`insert into public.people
      select g, g * interval '1 day' from generate_series(1, 100) g;
      update public.people set span = '1 day 03:00' where id = 2`);
    if (filled) await f.targetSql.unsafe("insert into public.people (id) values (1)");
    const [spec] = await specsFrom(peopleJob(f.source.url, f.target.url));
    const report = await runPipeline(spec, { offsets: new MemoryOffsetStore() });
    assertEquals(report.status, "succeeded", report.error?.message);
    assertEquals([report.stats.written, report.stats.deadLettered], [99, 1]);
    const [letter] = await f.targetSql<{ error: string }[]>`select error from dead_letters`;
    assertMatch(
      letter.error,
      /\(column "span", key \{"id":2\}\): value "1 day 03:00:00" does not fit type interval day whole/,
    );
    const [{ n }] = await f.targetSql`select count(*)::int as n from people where span is not null`;
    assertEquals(n, 99);
  }
});

Deno.test("COPY text into columns that keep every digit of the source's type is not checked", async () => {
  const source = `create table public.people (id int primary key, exact numeric(6,2),
                    v timestamptz(3), name varchar(6));`;
  const target = `create table public.people (id int primary key, exact numeric(8,3),
                    v timestamptz(3), name varchar(6));`;
  await using f = await syncFixture("copy_text_no_rounding", source, target);
  await using logs = await capturingLogs();
  await f.sourceSql.unsafe(`insert into public.people
    select g, g % 1000 + 0.25, timestamptz '2026-01-01 00:00:00.123+00' + g * interval '1 s',
           'n' || g from generate_series(1, 1000) g`);
  const [spec] = await specsFrom(peopleJob(f.source.url, f.target.url));
  const report = await runPipeline(spec, { offsets: new MemoryOffsetStore() });
  assertEquals(report.status, "succeeded", report.error?.message);
  assertEquals(report.stats.written, 1000);
  assertEquals(logs.lines.some((line) => line.includes("as COPY text, not decoded")), true);
  assertEquals(logs.lines.filter((line) => line.includes("Rows are decoded")), []);
  const [{ bulk }] = await f.targetSql`select count(*)::int as bulk from people`;
  assertEquals(bulk, 1000);
});

Deno.test("COPY text keeps the version guard: older rows are skipped, a row without a version fails", async () => {
  await using f = await syncFixture("copy_text_version", PEOPLE, PEOPLE);
  await using logs = await capturingLogs();
  await f.sourceSql.unsafe(FILL);
  await f.sourceSql.unsafe("update public.people set v = null where id = 3");
  // Row 5 is newer in the target: the batch must not roll it back.
  await f.targetSql.unsafe(
    "insert into public.people values (5, 'newer', '2027-01-01 00:00:00+00', 0), (6, 'older', '2020-01-01 00:00:00+00', 0)",
  );
  const [spec] = await specsFrom(peopleJob(f.source.url, f.target.url, {
    "sink.version.column": "v",
  }));
  const report = await runPipeline(spec, { offsets: new MemoryOffsetStore() });
  assertEquals(report.status, "succeeded", report.error?.message);
  assertEquals(report.stats.deadLettered, 1);
  assertEquals(report.stats.skipped, 1);
  assertEquals(report.stats.written, 39998);
  const [kept] = await f.targetSql`select name from people where id = 5`;
  assertEquals(kept.name, "newer");
  const [updated] = await f.targetSql`select n from people where id = 6`;
  assertEquals(updated.n, 6);
  const letters = await f.targetSql<{ key: string }[]>`
    select record_key::text as key from dead_letters`;
  assertEquals(letters.map((letter) => letter.key), ['{"id": 3}']);
  assertEquals(logs.lines.some((line) => line.includes("as COPY text, not decoded")), true);
});

Deno.test("a config the COPY text path cannot serve falls back to decoded records and says why", async () => {
  await using f = await syncFixture(
    "copy_text_fallback",
    PEOPLE,
    "create table public.people (id int primary key, v timestamptz, n bigint);",
  );
  await using logs = await capturingLogs();
  await f.sourceSql.unsafe(FILL);
  const [spec] = await specsFrom(peopleJob(f.source.url, f.target.url, {
    "sink.fields.exclude": "name",
  }));
  const report = await runPipeline(spec, { offsets: new MemoryOffsetStore() });
  assertEquals(report.status, "succeeded", report.error?.message);
  assertEquals(report.stats.written, 40000);
  assertEquals(
    logs.lines.some((line) => line.includes('field "name" is excluded (fields.exclude)')),
    true,
  );
  assertEquals(logs.lines.some((line) => line.includes("as COPY text, not decoded")), false);
  const [{ n }] = await f.targetSql`select count(n)::int as n from people`;
  assertEquals(n, 40000);
});

const CLI = new URL("../../cli/main.ts", import.meta.url).pathname;

/** 200,000 rows: about 13 chunks of COPY text, so a kill lands between commits. */
const FILL_LARGE = `insert into public.people
  select g, 'name ' || g || repeat('x', 40), timestamptz '2026-01-01 00:00:00+00' + g * interval '1 s', g
  from generate_series(1, 200000) g`;

Deno.test("a COPY text load killed between its chunks' commits is completed by the next run, in full and incremental mode", async () => {
  for (const mode of ["full", "incremental"]) {
    await using f = await syncFixture(`copy_text_killed_${mode}`, PEOPLE, PEOPLE);
    await f.sourceSql.unsafe(FILL_LARGE);
    const dir = await Deno.makeTempDir({ prefix: "sluice_copy_kill_" });
    try {
      const config = `${dir}/jobs.json`;
      await Deno.writeTextFile(
        config,
        JSON.stringify([peopleJob(f.source.url, f.target.url, {
          mode,
          "timestamp.column.name": "v",
        })]),
      );
      const offsets = `${dir}/offsets.json`;
      const child = new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", CLI, "job", "run", "people", config, "--offsets", offsets],
        stdin: "null",
        stdout: "null",
        stderr: "null",
      }).spawn();
      let landed = 0;
      await waitUntil("the first chunks to commit", async () => {
        [{ n: landed }] = await f.targetSql<{ n: number }[]>`
          select count(*)::int as n from people`;
        return landed > 0;
      }, { intervalMs: 10, timeoutMs: 60_000 });
      child.kill("SIGKILL");
      await child.status;
      const [{ n: atKill }] = await f.targetSql<{ n: number }[]>`
        select count(*)::int as n from people`;
      // Whole chunks only: a kill never leaves part of a chunk behind.
      assertEquals(atKill < 200000, true, `the load had already finished (${atKill} rows)`);
      // The watermark is stored only with the last chunk: nothing to resume from.
      const stored = await f
        .targetSql`select "offset" from sluice_offsets where pipeline = 'people'`;
      assertEquals(stored.length, 0, JSON.stringify(stored));

      const [spec] = await specsFrom(peopleJob(f.source.url, f.target.url, {
        mode,
        "timestamp.column.name": "v",
      }));
      const report = await runPipeline(spec, { offsets: new MemoryOffsetStore() });
      assertEquals(report.status, "succeeded", report.error?.message);
      assertEquals(report.stats.read, 200000);
      assertEquals(report.stats.written, 200000);
      assertEquals(report.validation.every((check) => check.ok), true);
      const query = "select * from people order by id";
      assertEquals(await tableDigest(f.targetSql, query), await tableDigest(f.sourceSql, query));
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  }
});

Deno.test("an incremental run hands its changed rows on as COPY text, each chunk committing the watermark of its last row", async () => {
  // Text keys with quotes and backslashes, and ties on the timestamp: the
  // watermark is written into the COPY's query as literals.
  await using f = await syncFixture(
    "copy_text_incremental",
    "create table public.tags (k text primary key, v timestamptz not null, n int)",
    "create table public.tags (k text primary key, v timestamptz, n int)",
  );
  const keys = ["a", "O'Brien", "back\\slash", "quote''s", "tab\tkey", "z\\'mixed", "é"];
  const insert = (suffix: string, at: string) =>
    f.sourceSql.unsafe(
      `insert into tags select k || $1, timestamptz '${at}', 0 from unnest($2::text[]) k
       on conflict (k) do update set v = excluded.v, n = tags.n + 1`,
      [suffix, keys],
    );
  await insert("", "2026-01-01 00:00:00+00");
  const job = {
    name: "tags",
    config: {
      "connector.class": "postgres_query",
      "connection.url": f.source.url,
      table: "public.tags",
      mode: "incremental",
      "timestamp.column.name": "v",
      "chunk.size": "2",
      "sink.class": "postgres",
      "sink.connection.url": f.target.url,
      "sink.table": "public.tags",
      // In the store the test watches, rather than in the sink.
      "offset.storage": "file",
    },
  };
  const [spec] = await specsFrom(job);
  const offsets = new MemoryOffsetStore();
  const first = await runPipeline(spec, { offsets });
  assertEquals(first.status, "succeeded", first.error?.message);

  // Changed rows sharing one new timestamp, a chunk boundary among them.
  await insert("", "2026-01-02 00:00:00+00");
  await insert("-2", "2026-01-02 00:00:00+00");
  const stored: unknown[] = [];
  const watching: MemoryOffsetStore = Object.assign(new MemoryOffsetStore(), {
    read: (key: string) => offsets.read(key),
    write: async (key: string, value: never) => {
      stored.push(value);
      await offsets.write(key, value);
    },
  });
  const counter = copyRowCounter();
  const second = await runPipeline(spec, { offsets: watching, observer: counter.observer });
  assertEquals(second.status, "succeeded", second.error?.message);
  assertEquals(second.stats.read, 14, "exactly the changed rows");
  assertEquals(counter.rows(), 14, "all of them as COPY text");
  assertEquals(second.validation.every((check) => check.ok), true);
  // Seven chunks of two rows, then the run's final position.
  assertEquals(stored.length, 8, JSON.stringify(stored));
  const [{ order }] = await f.sourceSql<{ order: string[] }[]>`
    select array_agg(k order by v, k) as order from tags where v = '2026-01-02 00:00:00+00'`;
  assertEquals(order.length, 14);
  for (let chunk = 0; chunk < 7; chunk++) {
    assertEquals((stored[chunk] as { key: string[] }).key, [order[chunk * 2 + 1]]);
  }

  // Nothing changed: nothing read. One more change: only it.
  const third = await runPipeline(spec, { offsets });
  assertEquals(third.stats.read, 0);
  await f
    .sourceSql`update tags set v = '2026-01-03 00:00:00+00', n = 99 where k = ${"z\\'mixed-2"}`;
  const fourth = await runPipeline(spec, { offsets });
  assertEquals(fourth.stats.read, 1);
  const query = "select k, v, n from tags order by k";
  assertEquals(await tableDigest(f.targetSql, query), await tableDigest(f.sourceSql, query));
});
