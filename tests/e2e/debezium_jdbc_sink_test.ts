/**
 * Debezium's JDBC sink connector (3.6.0.Final, on Kafka Connect standalone
 * from dev/connect.ts) reads a topic Sluice's postgres_cdc wrote with
 * JsonConverter schemas (`value.converter.schemas.enable=true`) and writes
 * the path matrix's table of every type into PostgreSQL; the target must
 * equal the source by `md5(row::text)` on every column the JDBC sink
 * itself can carry (see below for the others and why).
 */
import { assertEquals } from "../_assert.ts";
import { startStream, uniqueSlot } from "../_cdc.ts";
import { kafkaSpecs, uniqueName } from "../_kafka.ts";
import {
  assertSameColumns,
  type Column,
  debeziumRepresentable,
  matrixFixture,
  rows,
  waitForStreamingSlot,
} from "../_matrix.ts";
import { testKafkaBrokers } from "../_services.ts";
import { waitUntil } from "../_wait.ts";
import { startConnect } from "../../dev/connect.ts";
import { startRegistry } from "../../dev/registry.ts";

/**
 * Columns the JDBC sink cannot write (its task fails), as seen here:
 * - `timestamptz[]`: "Unable to find server array type for provided name
 *   timestamp(6) with time zone" (the PostgreSQL driver has no such array name);
 * - `bytea[]`: "byte[] nested inside Object[]" (UnsupportedOperationException);
 * - `time` 24:00:00 (MicroTime 86400000000): "Invalid value for NanoOfDay";
 * - `point` (io.debezium.data.geometry.Point): written through PostGIS's
 *   `ST_GeomFromWKB`, which plain PostgreSQL lacks;
 * - `mood[]` (an enum's array): "column is of type mood[] but expression is
 *   of type text[]";
 * - `numeric[]` (arrays of VariableScaleDecimal structs): written as the
 *   text `Struct{scale=2,value=[B@…}`.
 */
const JDBC_CANNOT_WRITE = new Set<string>(["tsarr", "barr", "t", "pt", "marr", "narr"]);

/**
 * Columns it writes, but not exactly (seen here):
 * - `real`/`double` NaN, ±Infinity and -0 come out as 0: JsonConverter
 *   writes NaN and infinities as strings (Jackson), and reads a string back
 *   as 0 for a float field;
 * - numeric NaN/±Infinity: Decimal has no form for them (null);
 * - infinite dates and timestamps have no Debezium form (Long bounds), and a
 *   BC timestamp loses its microseconds in the sink;
 * - `interval` as MicroDuration: months counted as 30.4375 days;
 * - `timetz` arrives in UTC, its offset gone;
 * - arrays with explicit bounds (sent as PostgreSQL's text) and
 *   multidimensional arrays: the sink writes `{}` or flattens them.
 */
const JDBC_LOSSY = new Set<string>([
  "f4",
  "f8",
  "num",
  "num_inf",
  "d",
  "d_neg",
  "ts",
  "iv",
  "ttz",
  "iarr",
  "iarr2",
  "tarr2",
]);

/** Converter keys of the Sluice capture and of the JDBC sink, per run. */
interface Converters {
  readonly label: string;
  readonly sluice: Record<string, string>;
  readonly jdbc: Record<string, string>;
  readonly leftOut: ReadonlySet<string>;
}

async function jdbcSinkReads(converters: Converters): Promise<void> {
  const keep = (column: Column) =>
    !JDBC_CANNOT_WRITE.has(column.name) && !converters.leftOut.has(column.name);
  const { f, columns } = await matrixFixture(
    `dbz_jdbc_${converters.label}`,
    keep,
    debeziumRepresentable,
  );
  await using _ = f;
  const slot = uniqueSlot("dbz_jdbc");
  const prefix = uniqueName("jdbc");
  const topic = `${prefix}.public.matrix`;
  const [capture] = await kafkaSpecs([{
    name: uniqueName("jdbc-capture"),
    config: {
      "connector.class": "postgres_cdc",
      "connection.url": f.source.url,
      "topic.prefix": prefix,
      "slot.name": slot,
      "publication.name": "dbz_jdbc",
      "snapshot.mode": "initial",
      "poll.interval.ms": "20",
      "time.precision.mode": "adaptive",
      ...converters.sluice,
    },
  }]);
  const producer = startStream(capture);
  try {
    await waitForStreamingSlot(f.sourceSql, slot);
    const target = new URL(f.target.url);
    await using worker = await startConnect(testKafkaBrokers(), [{
      name: "jdbc-sink",
      config: {
        "connector.class": "io.debezium.connector.jdbc.JdbcSinkConnector",
        topics: topic,
        // stringtype=unspecified lets PostgreSQL cast the text of inet, ranges… itself.
        "connection.url":
          `jdbc:postgresql://${target.host}${target.pathname}?stringtype=unspecified`,
        "connection.username": decodeURIComponent(target.username),
        "connection.password": decodeURIComponent(target.password),
        "insert.mode": "upsert",
        "primary.key.mode": "record_key",
        "delete.enabled": "true",
        "schema.evolution": "none",
        "quote.identifiers": "true",
        "collection.name.format": "matrix",
        "use.time.zone": "UTC",
        "consumer.override.auto.offset.reset": "earliest",
        ...converters.jdbc,
      },
    }], { worker: { "connector.client.config.override.policy": "All" } });
    await f.sourceSql.unsafe(rows(debeziumRepresentable(columns), 101));
    await waitUntil("10 rows in the target", async () => {
      const status = await worker.status("jdbc-sink");
      if (status.tasks.includes("FAILED")) throw new Error(`the JDBC sink failed: ${status.trace}`);
      const [row] = await f.targetSql<{ n: number }[]>`select count(*)::int as n from matrix`;
      return row.n === 10;
    }, { timeoutMs: 60_000 });
    await assertSameColumns(f, columns.filter((c) => !JDBC_LOSSY.has(c.name)));
  } finally {
    const report = await producer.stop();
    assertEquals(report.error?.message, undefined);
  }
}

/** JsonConverter with schemas on keys and values: Sluice's keys, and the JDBC sink's. */
const SCHEMAS_ON = {
  "key.converter.schemas.enable": "true",
  "value.converter.schemas.enable": "true",
};
const JSON_WITH_SCHEMAS = {
  "key.converter": "org.apache.kafka.connect.json.JsonConverter",
  "value.converter": "org.apache.kafka.connect.json.JsonConverter",
  ...SCHEMAS_ON,
};

Deno.test("Debezium's JDBC sink applies a Sluice CDC topic written with schemas to PostgreSQL", async () => {
  await jdbcSinkReads({
    label: "json",
    sluice: SCHEMAS_ON,
    jdbc: JSON_WITH_SCHEMAS,
    leftOut: new Set(),
  });
});

/**
 * The same through Avro and the registry of dev/registry.ts: Sluice writes
 * the Confluent wire format, which Apicurio's AvroConverter reads by the
 * same ids (content ids). Left out: arrays that are not one plain dimension
 * (no Avro form, see avro_registry_test.ts); `"Mixed Case Col"`, which
 * Avro names `Mixed_Case_Col`, a column the JDBC sink does not find; and
 * the dates holding ±infinity, whose Debezium form (Java's Long bounds as a
 * day count) does not fit the int of io.debezium.time.Date: Sluice refuses
 * such a record rather than write a wrong day (JSON carries the number).
 */
Deno.test("Debezium's JDBC sink applies a Sluice CDC topic written as Avro through a schema registry", async () => {
  await using registry = await startRegistry();
  const avro = "io.confluent.connect.avro.AvroConverter";
  const apicurio = (side: "key" | "value") => ({
    [`${side}.converter`]: "io.apicurio.registry.utils.converter.AvroConverter",
    [`${side}.converter.apicurio.registry.url`]: registry.apicurioUrl,
    [`${side}.converter.apicurio.registry.as-confluent`]: "true",
    [`${side}.converter.apicurio.registry.use-id`]: "contentId",
    [`${side}.converter.apicurio.registry.headers.enabled`]: "false",
  });
  await jdbcSinkReads({
    label: "avro",
    sluice: {
      "key.converter": avro,
      "key.converter.schema.registry.url": registry.url,
      "value.converter": avro,
      "value.converter.schema.registry.url": registry.url,
    },
    jdbc: { ...apicurio("key"), ...apicurio("value") },
    leftOut: new Set(["iarr", "iarr2", "tarr2", `"Mixed Case Col"`, "d", "d_neg"]),
  });
});

/**
 * The same with JsonConverter schemas after `unwrap` (Debezium's
 * ExtractNewRecordState): the JDBC sink reads flattened rows by the row
 * schema unwrap gives them.
 */
Deno.test("Debezium's JDBC sink applies an unwrapped Sluice CDC topic written with schemas", async () => {
  await jdbcSinkReads({
    label: "unwrapped",
    sluice: {
      ...SCHEMAS_ON,
      transforms: "unwrap",
      "transforms.unwrap.type": "io.debezium.transforms.ExtractNewRecordState",
    },
    jdbc: JSON_WITH_SCHEMAS,
    leftOut: new Set(),
  });
});
