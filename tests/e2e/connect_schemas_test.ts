/**
 * Kafka Connect's JsonConverter with `schemas.enable=true` on the path
 * postgres_cdc → kafka sink → kafka source → postgres, on the path
 * matrix's table of every type: the topic carries Debezium's schemas
 * (`{schema, payload}`), and the target equals the source.
 *
 * Some values cannot travel in Debezium's representation, so their columns
 * are compared apart or left out (as with Debezium itself):
 * - `interval` is `io.debezium.time.MicroDuration`, microseconds with a
 *   month counted as 30.4375 days: "1 year" comes back as "365 days 06:00:00";
 * - `timetz` is `io.debezium.time.ZonedTime`, in UTC: the offset is gone.
 * Numeric NaN and ±Infinity have no Decimal form, and `varbit` without a
 * length as `io.debezium.data.Bits` bytes loses leading zeros: such records
 * fail (where Debezium writes them changed), so the rows here hold
 * ordinary values in those columns (`debeziumRepresentable`).
 */
import { assert, assertEquals } from "../_assert.ts";
import { startStream, uniqueSlot } from "../_cdc.ts";
import { kafkaSpecs, uniqueName } from "../_kafka.ts";
import { syncFixture } from "../_batch.ts";
import { waitUntil } from "../_wait.ts";
import {
  assertSameColumns,
  COLUMNS,
  debeziumRepresentable,
  matrixFixture,
  rows,
  TOUCH,
  waitForStreamingSlot,
  waitForTarget,
} from "../_matrix.ts";

/** Columns whose values Debezium's representation cannot carry exactly. */
const LOSSY = new Set(["iv", "ttz"]);

Deno.test("JsonConverter with schemas: postgres_cdc → kafka {schema, payload} → postgres keeps every type Debezium can carry", async () => {
  const { f, columns } = await matrixFixture(
    "matrix_schemas",
    undefined,
    debeziumRepresentable,
  );
  await using _ = f;
  const slot = uniqueSlot("matrix_schemas");
  const prefix = uniqueName("schemas");
  const [capture, consume] = await kafkaSpecs([
    {
      name: uniqueName("schemas-capture"),
      config: {
        "connector.class": "postgres_cdc",
        "connection.url": f.source.url,
        "topic.prefix": prefix,
        "slot.name": slot,
        "publication.name": "matrix_schemas",
        "snapshot.mode": "initial",
        "poll.interval.ms": "20",
        "key.converter": "org.apache.kafka.connect.json.JsonConverter",
        "key.converter.schemas.enable": "true",
        "value.converter": "org.apache.kafka.connect.json.JsonConverter",
        "value.converter.schemas.enable": "true",
      },
    },
    {
      name: uniqueName("schemas-consume"),
      config: {
        "connector.class": "kafka",
        topics: `${prefix}.public.matrix`,
        "fetch.max.wait.ms": "50",
        "sink.class": "postgres",
        "sink.connection.url": f.target.url,
        "sink.table": "public.matrix",
        "sink.delete.mode": "hard",
      },
    },
  ]);
  const producer = startStream(capture);
  const consumer = startStream(consume);
  try {
    await waitForStreamingSlot(f.sourceSql, slot);
    await f.sourceSql.unsafe(rows(debeziumRepresentable(columns), 101));
    await waitForTarget(f, 10, 0);
    await f.sourceSql.unsafe(TOUCH);
    await waitForTarget(f, 10, 2);
    await assertSameColumns(f, columns.filter((c) => !LOSSY.has(c.name)));
  } finally {
    const reports = [await producer.stop(), await consumer.stop()];
    assertEquals(reports.map((r) => r.error?.message), [undefined, undefined]);
  }
  assert(COLUMNS.some((c) => LOSSY.has(c.name)));
});

Deno.test("JsonConverter with schemas: dates and timestamps before 1 AD and at ±infinity arrive as they left, in each time.precision.mode, and intervals with interval.handling.mode string", async () => {
  for (const mode of ["isostring", "adaptive", "connect"]) {
    await using f = await syncFixture(
      `schemas_bc_${mode}`,
      `create table public.times (id int primary key, tstz timestamptz, ts timestamp, d date,
         iv interval);
       insert into times values
         (1, '0044-03-15 12:00:00+00 BC', '0044-03-15 BC', '0044-03-15 BC', '1 mon'),
         (2, '0001-01-01 00:00:00+00 BC', 'infinity', '-infinity', '-1 days +02:00:00'),
         (3, '-infinity', '-infinity', 'infinity', '1 year 2 mons -3 days -04:05:06.789'),
         (4, '2024-02-29 10:11:12.5+05:30', '2024-02-29 10:11:12.5', '2024-02-29', '00:00:00');`,
      `create table public.times (id int primary key, tstz timestamptz, ts timestamp, d date,
         iv interval, deleted_at timestamptz);`,
    );
    const slot = uniqueSlot(`schemas_bc_${mode}`);
    const prefix = uniqueName("schemas-bc");
    const specs = await kafkaSpecs([
      {
        name: `${prefix}-capture`,
        config: {
          "connector.class": "postgres_cdc",
          "connection.url": f.source.url,
          "topic.prefix": prefix,
          "slot.name": slot,
          "publication.name": `${slot}_pub`,
          "table.include.list": "public.times",
          "poll.interval.ms": "20",
          "time.precision.mode": mode,
          "interval.handling.mode": "string",
          "value.converter": "org.apache.kafka.connect.json.JsonConverter",
          "value.converter.schemas.enable": "true",
        },
      },
      {
        name: `${prefix}-apply`,
        config: {
          "connector.class": "kafka",
          topics: `${prefix}.public.times`,
          "fetch.max.wait.ms": "50",
          "sink.class": "postgres",
          "sink.connection.url": f.target.url,
          "sink.table": "public.times",
        },
      },
    ]);
    const streams = specs.map((spec) => startStream(spec));
    const text = (sql: typeof f.sourceSql) =>
      sql`select id, tstz::text, ts::text, d::text, iv::text from times order by id`;
    try {
      await waitUntil(
        `the four rows (${mode})`,
        async () => (await text(f.targetSql)).length === 4,
      );
      assertEquals(await text(f.targetSql), await text(f.sourceSql), mode);
    } finally {
      const reports = await Promise.all(streams.map((stream) => stream.stop()));
      assertEquals(reports.map((r) => r.error?.message), [undefined, undefined]);
    }
  }
});
