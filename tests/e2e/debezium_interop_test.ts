/**
 * Sluice and the real Debezium side by side, on the path matrix's table of
 * every type. One Kafka Connect standalone worker (dev/connect.ts; the
 * jars come from Maven) runs Debezium's PostgreSQL connector twice, with
 * `schemas.enable` true and false, and Sluice's kafka source → postgres
 * sink must apply both topics so that the target equals the source by
 * `md5(row::text)`, snapshot and stream, unchanged TOAST values included.
 *
 * Values Debezium's representation cannot carry are compared apart or left
 * out, with the reason (see LOSSY below).
 */
import { assertEquals } from "../_assert.ts";
import { startStream } from "../_cdc.ts";
import { kafkaSpecs, uniqueName } from "../_kafka.ts";
import {
  assertSameColumns,
  type Column,
  matrixFixture,
  rows,
  TOUCH,
  waitForTarget,
} from "../_matrix.ts";
import { testKafkaBrokers } from "../_services.ts";
import { type ConnectorProperties, startConnect } from "../../dev/connect.ts";
import type { SyncFixture } from "../_batch.ts";

/** Debezium's PostgreSQL connector reading `url`'s database into topics `<prefix>.…`. */
function debezium(
  name: string,
  url: string,
  prefix: string,
  schemas: boolean,
  extra: Record<string, string> = {},
): ConnectorProperties {
  const parsed = new URL(url);
  return {
    name,
    config: {
      "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
      "database.hostname": parsed.hostname,
      "database.port": parsed.port,
      "database.user": decodeURIComponent(parsed.username),
      "database.password": decodeURIComponent(parsed.password),
      "database.dbname": parsed.pathname.slice(1),
      "topic.prefix": prefix,
      "plugin.name": "pgoutput",
      "slot.name": prefix.replaceAll("-", "_"),
      "publication.name": `${prefix.replaceAll("-", "_")}_pub`,
      "publication.autocreate.mode": "filtered",
      "table.include.list": "public.matrix",
      "snapshot.mode": "initial",
      "slot.drop.on.stop": "true",
      // Connector-level converter settings count only with the converter named.
      "key.converter": "org.apache.kafka.connect.json.JsonConverter",
      "value.converter": "org.apache.kafka.connect.json.JsonConverter",
      "key.converter.schemas.enable": String(schemas),
      "value.converter.schemas.enable": String(schemas),
      ...extra,
    },
  };
}

/**
 * Columns left out of the table: Debezium 3.6.1 itself mangles these values
 * (seen in its output), and some come out of range for PostgreSQL:
 * - `date` BC dates come out as AD, ±infinity as arbitrary day counts;
 * - `timestamp` infinity as 9223372036825200000 µs (year 292278994);
 * - `timestamptz[]` infinity as `+292269055-12-02T23:00:00.000000Z`;
 * - multidimensional arrays as Java's `[Ljava.lang.String;@…` or nulls;
 * - arrays of an enum as null.
 */
const DEBEZIUM_MANGLES = new Set(["d", "d_neg", "ts", "tsarr", "tarr2", "iarr2", "marr"]);

/**
 * Columns Debezium cannot carry exactly, by run:
 * - `interval` as MicroDuration counts a month as 30.4375 days;
 * - numeric NaN and ±Infinity have no Decimal form (null);
 * - `timetz` is sent in UTC, its offset gone;
 * - `varbit` as Bits bytes loses leading zeros;
 * - arrays lose explicit bounds (`[0:1]={7,8}` comes as `{7,8}`).
 */
const LOSSY_WITH_SCHEMAS = new Set(["iv", "num", "num_inf", "narr", "vbits", "ttz", "iarr"]);
/**
 * Schemaless (Debezium's string/isostring modes) a value's type must be
 * guessed from the target column, which fails for bit strings (sent as
 * little-endian base64 bytes) and points (sent as a struct); left out.
 */
const UNTYPED_SCHEMALESS = new Set(["bits", "vbits", "pt"]);
/**
 * Schemaless: `timetz` in UTC and arrays without bounds, as above; numeric
 * arrays holding NaN or infinities come as null; `time` 24:00:00 as
 * `00:00:00` (Debezium's isostring).
 */
const LOSSY_SCHEMALESS = new Set(["ttz", "iarr", "narr", "t"]);

Deno.test("the real Debezium PostgreSQL connector's topics, with and without schemas, land in PostgreSQL through Sluice value for value", async (t) => {
  const keep = (column: Column) => !DEBEZIUM_MANGLES.has(column.name);
  const withSchemas = await matrixFixture("dbz_schemas", keep);
  await using _a = withSchemas.f;
  const schemaless = await matrixFixture(
    "dbz_plain",
    (column) => keep(column) && !UNTYPED_SCHEMALESS.has(column.name),
  );
  await using _b = schemaless.f;
  const prefixA = uniqueName("dbzs");
  const prefixB = uniqueName("dbzp");
  const brokers = testKafkaBrokers();
  await using worker = await startConnect(brokers, [
    debezium("dbz-schemas", withSchemas.f.source.url, prefixA, true),
    debezium("dbz-plain", schemaless.f.source.url, prefixB, false, {
      "decimal.handling.mode": "string",
      "time.precision.mode": "isostring",
      "interval.handling.mode": "string",
    }),
  ]);
  const consume = (f: SyncFixture, prefix: string) => ({
    name: uniqueName(`${prefix}-consume`),
    config: {
      "connector.class": "kafka",
      topics: `${prefix}.public.matrix`,
      "fetch.max.wait.ms": "50",
      "sink.class": "postgres",
      "sink.connection.url": f.target.url,
      "sink.table": "public.matrix",
      "sink.delete.mode": "hard",
    },
  });
  const specs = await kafkaSpecs([
    consume(withSchemas.f, prefixA),
    consume(schemaless.f, prefixB),
  ]);
  const streams = specs.map((spec) => startStream(spec));
  const runs: [string, { f: SyncFixture; columns: Column[] }, Set<string>][] = [
    ["schemas.enable=true", withSchemas, LOSSY_WITH_SCHEMAS],
    ["schemas.enable=false", schemaless, LOSSY_SCHEMALESS],
  ];
  try {
    for (const [label, { f, columns }, lossy] of runs) {
      await t.step(`${label}: snapshot, stream and unchanged TOAST values`, async () => {
        await waitForTarget(f, 5, 0);
        await f.sourceSql.unsafe(rows(columns, 101));
        await waitForTarget(f, 10, 0);
        await f.sourceSql.unsafe(TOUCH);
        await waitForTarget(f, 10, 2);
        await assertSameColumns(f, columns.filter((c) => !lossy.has(c.name)));
      });
    }
  } finally {
    const reports = [];
    for (const stream of streams) reports.push(await stream.stop());
    const status = await worker.status("dbz-schemas");
    assertEquals(reports.map((r) => r.error?.message), [undefined, undefined]);
    assertEquals(status.connector, "RUNNING");
  }
});
