/**
 * A database or role may set its own output styles (`ALTER DATABASE … SET
 * DateStyle = 'SQL, DMY'`). Sluice's sessions send the settings its text
 * relies on at start-up, so a batch sync still writes the same values:
 * without them, 01/02/2024 printed day-first was read month-first by the
 * target, and a zero extra_float_digits rounded every float.
 */
import postgres from "postgres";
import { assertEquals } from "../_assert.ts";
import { MemoryOffsetStore } from "../../core/offsets.ts";
import { runPipeline } from "../../core/pipeline.ts";
import { specsFrom, syncFixture } from "../_batch.ts";

const TABLE = `create table public.styled (
  id int primary key, d date, ts timestamp, tstz timestamptz, iv interval, b bytea,
  f8 float8, f4 real)`;

/** The values in ISO text, read in a session that sets every style itself. */
async function isoRows(url: string) {
  const sql = postgres(url, {
    max: 1,
    onnotice: () => {},
    connection: {
      DateStyle: "ISO, MDY",
      IntervalStyle: "postgres",
      TimeZone: "UTC",
      bytea_output: "hex",
      extra_float_digits: "3",
    },
  });
  try {
    return await sql.unsafe(`select id, d::text, ts::text, tstz::text, iv::text, b::text,
      f8::text, f4::text from public.styled order by id`);
  } finally {
    await sql.end();
  }
}

Deno.test("a source database with its own DateStyle, IntervalStyle, bytea_output and float digits syncs exactly", async () => {
  await using f = await syncFixture("session_styles", TABLE, TABLE);
  await f.sourceSql.unsafe(`insert into public.styled values
    (1, '2024-02-01', '2024-02-01 10:11:12.123456', '2024-02-01 10:11:12.123456+00',
     '1 year 2 mons 3 days 04:05:06.7', '\\x00ff5c', 0.1::float8 + 0.2::float8, 1.1),
    (2, '0044-03-15 BC', '1999-12-31 23:59:59', '2000-01-01 00:00:00+05:30',
     '-1 days +02:00:00', '\\x', 1e-320, 3.4e38)`);
  const database = new URL(f.source.url).pathname.slice(1);
  await f.sourceSql.unsafe(`alter database "${database}" set DateStyle = 'SQL, DMY';
    alter database "${database}" set IntervalStyle = 'sql_standard';
    alter database "${database}" set bytea_output = 'escape';
    alter database "${database}" set extra_float_digits = '0';
    alter database "${database}" set TimeZone = 'Asia/Kolkata'`);
  const expected = await isoRows(f.source.url);

  // Both paths: COPY text straight through, and decoded records (a filter
  // that keeps every row turns the fast path off).
  for (
    const transforms of [{}, {
      transforms: "keep",
      "transforms.keep.type": "filter",
      "transforms.keep.condition": "true",
    }]
  ) {
    await f.targetSql.unsafe("truncate public.styled");
    const [spec] = await specsFrom({
      name: "styled",
      config: {
        "connector.class": "postgres_query",
        "connection.url": f.source.url,
        table: "public.styled",
        "sink.class": "postgres",
        "sink.connection.url": f.target.url,
        "sink.table": "public.styled",
        ...transforms,
      },
    });
    const run = await runPipeline(spec, { offsets: new MemoryOffsetStore() });
    assertEquals(run.error?.message, undefined);
    assertEquals(run.stats.written, 2);
    assertEquals(await isoRows(f.target.url), expected, JSON.stringify(transforms));
  }
});
