/**
 * Avro through a real schema registry (Apicurio Registry's Confluent-
 * compatible API, built and started by dev/registry.ts): postgres_cdc →
 * kafka sink with the Avro converter → kafka source with the Avro converter
 * → postgres, on the path matrix's table of every type; and schema changes
 * registering new versions under a BACKWARD compatibility rule.
 *
 * Left out of the matrix, beside the columns Debezium's representation
 * cannot carry (see connect_schemas_test.ts): arrays that are not one
 * plain dimension (`iarr2`, `tarr2`, and `iarr`, one of whose values has
 * explicit bounds). JSON carries them as nested arrays or text; an Avro
 * array of the element type cannot, so such a record fails alone with a
 * clear error, as it would with Kafka Connect's AvroConverter.
 */
import { assert, assertEquals } from "../_assert.ts";
import { startStream, uniqueSlot } from "../_cdc.ts";
import { kafkaSpecs, uniqueName } from "../_kafka.ts";
import { syncFixture } from "../_batch.ts";
import {
  assertSameColumns,
  type Column,
  debeziumRepresentable,
  matrixFixture,
  rows,
  TOUCH,
  waitForStreamingSlot,
  waitForTarget,
} from "../_matrix.ts";
import { waitUntil } from "../_wait.ts";
import { type RegistryServer, startRegistry } from "../../dev/registry.ts";
import { SchemaRegistry } from "../../drivers/schema_registry.ts";

const AVRO = "io.confluent.connect.avro.AvroConverter";
const LOSSY = new Set(["iv", "ttz"]);
const NOT_ONE_DIMENSION = new Set(["iarr", "iarr2", "tarr2"]);

const avroConverters = (url: string) => ({
  "key.converter": AVRO,
  "key.converter.schema.registry.url": url,
  "value.converter": AVRO,
  "value.converter.schema.registry.url": url,
});

/**
 * The two pipelines of each step: postgres_cdc → Kafka as Avro (with
 * `capture`'s extra keys), and Kafka → the target's `table`.
 */
function avroPipelines(registry: RegistryServer, options: {
  name: string;
  source: string;
  target: string;
  prefix: string;
  slot: string;
  table: string;
  capture?: Record<string, string>;
}) {
  return kafkaSpecs([
    {
      name: uniqueName(`${options.name}-capture`),
      config: {
        "connector.class": "postgres_cdc",
        "connection.url": options.source,
        "topic.prefix": options.prefix,
        "slot.name": options.slot,
        "publication.name": options.name,
        "snapshot.mode": "initial",
        "poll.interval.ms": "20",
        ...options.capture,
        ...avroConverters(registry.url),
      },
    },
    {
      name: uniqueName(`${options.name}-consume`),
      config: {
        "connector.class": "kafka",
        topics: `${options.prefix}.public.${options.table}`,
        "fetch.max.wait.ms": "50",
        ...avroConverters(registry.url),
        "sink.class": "postgres",
        "sink.connection.url": options.target,
        "sink.table": `public.${options.table}`,
        "sink.delete.mode": "hard",
      },
    },
  ]);
}

Deno.test("Avro with a schema registry: postgres_cdc → kafka → postgres keeps every type, and schema changes become BACKWARD-compatible versions", async (t) => {
  await using registry = await startRegistry();
  await t.step("every type of the matrix", () => matrix(registry));
  await t.step("a column added and a type widened", () => evolution(registry));
  await t.step("masked fields, registered as the strings the masks wrote", () => masked(registry));
});

async function matrix(registry: RegistryServer): Promise<void> {
  const keep = (column: Column) => !NOT_ONE_DIMENSION.has(column.name);
  const { f, columns } = await matrixFixture("matrix_avro", keep, debeziumRepresentable);
  await using _ = f;
  const slot = uniqueSlot("matrix_avro");
  const prefix = uniqueName("avro");
  const topic = `${prefix}.public.matrix`;
  const [capture, consume] = await avroPipelines(registry, {
    name: "matrix_avro",
    source: f.source.url,
    target: f.target.url,
    prefix,
    slot,
    table: "matrix",
  });
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
  const client = new SchemaRegistry(registry.url);
  assertEquals(await client.versions(`${topic}-key`), [1]);
  assertEquals(await client.versions(`${topic}-value`), [1]);
}

async function evolution(registry: RegistryServer): Promise<void> {
  const f = await syncFixture(
    "avro_evolve",
    "create table public.evolve (id int primary key, a int); insert into evolve values (1, 10);",
    "create table public.evolve (id int primary key, a bigint, b text);",
  );
  await using _ = f;
  const slot = uniqueSlot("avro_evolve");
  const prefix = uniqueName("evolve");
  const topic = `${prefix}.public.evolve`;
  const client = new SchemaRegistry(registry.url);
  // A rule set before the first schema: every change below must pass it.
  await client.setCompatibility(`${topic}-value`, "BACKWARD");
  const [capture, consume] = await avroPipelines(registry, {
    name: "avro_evolve",
    source: f.source.url,
    target: f.target.url,
    prefix,
    slot,
    table: "evolve",
  });
  const producer = startStream(capture);
  const consumer = startStream(consume);
  const sameRows = async (count: number) => {
    const digest = async (sql: typeof f.sourceSql) =>
      (await sql`select id, md5(row(id, a::bigint, b)::text) as d from evolve order by id`)
        .map((r) => `${r.id}:${r.d}`).join(",");
    await waitUntil(`${count} equal rows in the target`, async () => {
      const [source, target] = [await digest(f.sourceSql), await digest(f.targetSql)];
      return target === source && target.split(",").length === count;
    }, { timeoutMs: 40_000 });
  };
  try {
    await waitForStreamingSlot(f.sourceSql, slot);
    // The snapshot must have read the table before it changes, or its
    // schema already holds the change.
    await waitUntil("the snapshot row in the target", async () => {
      const [row] = await f.targetSql<{ n: number }[]>`select count(*)::int as n from evolve`;
      return row.n === 1;
    }, { timeoutMs: 40_000 });
    await f.sourceSql`alter table evolve add column b text`;
    await f.sourceSql.unsafe("update evolve set a = 11 where id = 1; update evolve set b = 'x'");
    await f.sourceSql`insert into evolve values (2, 20, 'two')`;
    await f.sourceSql`alter table evolve alter column a type bigint`;
    await f.sourceSql`insert into evolve values (3, 5000000000, 'three')`;
    await sameRows(3);
  } finally {
    const reports = [await producer.stop(), await consumer.stop()];
    assertEquals(reports.map((r) => r.error?.message), [undefined, undefined]);
  }
  // Snapshot (a int), then b added, then a widened to bigint: three versions.
  const versions = await client.versions(`${topic}-value`);
  assertEquals(versions, [1, 2, 3]);
  assert((await client.versions(`${topic}-key`)).length === 1, "the key never changed");
}

async function masked(registry: RegistryServer): Promise<void> {
  // The source's national_id is a number and ref a uuid; their pseudonyms
  // are text, in the topic's schema and in the target.
  const f = await syncFixture(
    "avro_mask",
    `create table public.people (ref uuid primary key, national_id bigint not null, city text);
     insert into people values ('6f1c2a3e-0d4b-4c55-9e77-0123456789ab', 199001011234, 'Lund');`,
    "create table public.people (ref text primary key, national_id text not null, city text);",
  );
  await using _ = f;
  const slot = uniqueSlot("avro_mask");
  const prefix = uniqueName("masked");
  const topic = `${prefix}.public.people`;
  const [capture, consume] = await avroPipelines(registry, {
    name: "avro_mask",
    source: f.source.url,
    target: f.target.url,
    prefix,
    slot,
    table: "people",
    capture: {
      transforms: "mask",
      "transforms.mask.type": "mask",
      "transforms.mask.fields": "ref,national_id",
      "transforms.mask.strategy": "hmac",
      "transforms.mask.key": "k".repeat(32),
    },
  });
  const producer = startStream(capture);
  const consumer = startStream(consume);
  try {
    await waitForStreamingSlot(f.sourceSql, slot);
    await f.sourceSql`insert into people values (gen_random_uuid(), 198512240000, 'Umeå')`;
    await f.sourceSql`delete from people where city = 'Lund'`;
    await waitUntil("the masked rows in the target", async () => {
      const rows = await f.targetSql<{ city: string }[]>`select city from people`;
      return rows.length === 1 && rows[0].city === "Umeå";
    }, { timeoutMs: 40_000 });
    const [row] = await f.targetSql<{ ref: string; national_id: string }[]>`select * from people`;
    assert(/^[0-9a-f]{64}$/.test(row.ref) && /^[0-9a-f]{64}$/.test(row.national_id), row.ref);
  } finally {
    const reports = [await producer.stop(), await consumer.stop()];
    assertEquals(reports.map((r) => r.error?.message), [undefined, undefined]);
  }
  const client = new SchemaRegistry(registry.url);
  assertEquals(await client.versions(`${topic}-value`), [1]);
  assertEquals(await client.versions(`${topic}-key`), [1]);
  const latest = await fetch(`${registry.url}/subjects/${topic}-key/versions/latest`);
  const key = JSON.parse((await latest.json()).schema);
  // Not Debezium's io.debezium.data.Uuid: the digest is no UUID.
  assertEquals(key.fields, [{ name: "ref", type: "string" }]);
}
