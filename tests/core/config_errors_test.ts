import { assertEquals } from "../_assert.ts";
import { builtinRegistry } from "../../builtins.ts";
import { buildPipelines, parseConnectors } from "../../core/config.ts";
import { ConfigError } from "../../api/errors.ts";

const env: Record<string, string> = { WAREHOUSE_URL: "postgres://u@127.0.0.1:1/w" };
const providers = {
  env: (name: string) => env[name],
  readText: (path: string) => {
    if (path.endsWith("secrets.properties")) return "citizen.password=s3cret\n# comment\n";
    throw new Deno.errors.NotFound(`no such file: ${path}`);
  },
};

async function problems(
  config: Record<string, unknown>,
  name = "job",
  defaultSink?: string,
): Promise<string[]> {
  try {
    await buildPipelines(parseConnectors({ name, config }), {
      registry: builtinRegistry(),
      providers,
      defaultSink,
    });
  } catch (error) {
    if (error instanceof ConfigError) return error.issues.map((i) => `${i.path}: ${i.message}`);
    throw error;
  }
  return [];
}

const valid = {
  "connector.class": "postgres_query",
  "connection.url": "${env:WAREHOUSE_URL}",
  "table": "public.profile_360",
  "sink.class": "postgres",
  "sink.connection.url":
    "postgres://citizen:${file:secrets.properties:citizen.password}@127.0.0.1:1/c",
  "sink.table": "public.profile_summary",
};

Deno.test("a valid config resolves ${env:…} and ${file:…} and has no problems", async () => {
  const specs = await buildPipelines(parseConnectors({ name: "job", config: valid }), {
    registry: builtinRegistry(),
    providers,
  });
  // The postgres sink's schema turns dotted keys into its settings object.
  const sink = specs[0].sink.config as { connection: Record<string, unknown> };
  assertEquals(sink.connection["connection.url"], "postgres://citizen:s3cret@127.0.0.1:1/c");
  assertEquals((specs[0].source.config as Record<string, unknown>).chunkSize, 2000);
});

Deno.test("an unknown plugin is named, with the valid ones and a suggestion", async () => {
  const found = await problems({ ...valid, "connector.class": "postgres_qery" });
  assertEquals(found.length, 1);
  assertEquals(
    found[0].replace(/valid sources are: [^(]*/, "valid sources are: …"),
    'job: config.connector.class: unknown source "postgres_qery"; valid sources are: …(did you mean "postgres_query"?)',
  );
});

Deno.test("missing and mistyped keys are all reported at once with their paths", async () => {
  const found = await problems({
    "connector.class": "postgres_query",
    "connection.url": "postgres://127.0.0.1/w",
    "mode": "sometimes",
    "chunk.size": "many",
    "chunk_size": "10",
    "sink.class": "postgres",
    "sink.table": "t",
    "errors.tolerance": "some",
    "job.retries": "-1",
  });
  assertEquals(found.sort(), [
    'job: config.chunk.size: expected an integer: current value is "many"',
    'job: config.chunk_size: is not an option of source "postgres_query" (did you mean "chunk.size"?)',
    'job: config.errors.tolerance: must be one of "none", "all": current value is "some"',
    "job: config.job.retries: Too small: expected number to be >=0: current value is -1",
    'job: config.mode: must be one of "full", "bulk", "incremental", "timestamp": current value is "sometimes"',
    "job: config.sink.connection.url: is required: give connection.url, or database.hostname with database.dbname",
    "job: config.table: give exactly one of table and query",
  ]);
});

Deno.test("a misspelt key is suggested as the user writes it, with its prefix", async () => {
  const found = await problems({ ...valid, "sink.tabel": "t", "schedule": "0 * * * *" });
  assertEquals(found.sort(), [
    'job: config.schedule: is not an option of source "postgres_query" (did you mean "job.schedule"?)',
    'job: config.sink.tabel: is not an option of sink "postgres" (did you mean "sink.table"?)',
  ]);
});

Deno.test("a bad schedule is named even when the source's options fail too", async () => {
  const found = await problems({ ...valid, "chunk.size": "many", "job.schedule": "61 * * * *" });
  assertEquals(found.length, 2);
  assertEquals(found[0], 'job: config.chunk.size: expected an integer: current value is "many"');
  assertEquals(
    found[1].startsWith("job: config.job.schedule: is not a valid cron expression"),
    true,
  );
});

Deno.test("a bad schedule is named even when another runtime option fails", async () => {
  const found = await problems({ ...valid, "errors.tolerence": "all", "job.schedule": "hourly" });
  assertEquals(found.sort(), [
    'job: config.errors.tolerence: is not an option of the pipeline (did you mean "errors.tolerance"?)',
    'job: config.job.schedule: must be a 5-field cron expression in UTC such as "0 0 * * *" (or 6 fields, seconds first): current value is "hourly"',
  ]);
});

Deno.test("a misspelt CDC source is named alone, without errors of the Kafka sink it would default to", async () => {
  const found = await problems(
    {
      "connector.class": "postgress_cdc",
      "database.hostname": "127.0.0.1",
      "topic.prefix": "x",
    },
    "job",
    "kafka",
  );
  assertEquals(found.length, 1);
  assertEquals(found[0].includes('(did you mean "postgres_cdc"?)'), true);
});

Deno.test("an unresolved ${env:…} names the variable and the key", async () => {
  const found = await problems({ ...valid, "connection.url": "${env:WAREHOUSE_PASSWORD}" });
  assertEquals(found, [
    'job: config.connection.url: environment variable "WAREHOUSE_PASSWORD" is not set',
  ]);
});

Deno.test("an unreadable ${file:…} and a missing key are reported", async () => {
  const found = await problems({
    ...valid,
    "connection.url": "${file:missing.properties:url}",
    "sink.connection.url": "${file:secrets.properties:nope}",
  });
  assertEquals(found.length, 2);
  assertEquals(
    found[1],
    'job: config.sink.connection.url: key "nope" is not in file "secrets.properties"',
  );
});

Deno.test("transforms and predicates are checked: unknown types, unlisted aliases, bad negate", async () => {
  const found = await problems({
    ...valid,
    "transforms": "a",
    "transforms.a.type": "no_such_transform",
    "transforms.a.negate": "maybe",
    "transforms.b.type": "route",
  });
  assertEquals(found.sort(), [
    'job: config.transforms.a.negate: expected "true" or "false": current value is "maybe"',
    'job: config.transforms.a.type: unknown transform "no_such_transform"; valid transforms are: ' +
    builtinRegistry().list("transform").map((p) => p.name).join(", "),
    'job: config.transforms.b.type: configures "b", which is not listed in "transforms"',
  ]);
});

Deno.test("job schedules and dependencies are checked across pipelines", async () => {
  const connectors = parseConnectors([
    { name: "a", config: { ...valid, "job.depends.on": "c" } },
    { name: "b", config: { ...valid, "job.depends.on": "a" } },
    { name: "c", config: { ...valid, "job.depends.on": "b" } },
    { name: "d", config: { ...valid, "job.schedule": "every day", "job.depends.on": "nobody" } },
    { name: "e", config: { ...valid, "job.schedule": "61 * * * *" } },
  ]);
  let messages: string[] = [];
  try {
    await buildPipelines(connectors, { registry: builtinRegistry(), providers });
  } catch (error) {
    messages = (error as ConfigError).issues.map((i) => `${i.path}: ${i.message}`);
  }
  assertEquals(messages, [
    'd: config.job.schedule: must be a 5-field cron expression in UTC such as "0 0 * * *" (or 6 fields, seconds first): current value is "every day"',
    'e: config.job.schedule: is not a valid cron expression (invalid value for minute: 61): current value is "61 * * * *"',
    "a: config.job.depends.on: forms a cycle: a -> c -> b -> a",
  ]);
});

Deno.test("a malformed connector entry is reported before plugins are looked at", () => {
  let messages: string[] = [];
  try {
    parseConnectors([{ config: {} }, { name: "x", config: [], extra: 1 }], "jobs.json");
  } catch (error) {
    messages = (error as ConfigError).issues.map((i) => `${i.path}: ${i.message}`);
  }
  assertEquals(messages, [
    "jobs.json[0].name: is required and must be a non-empty string",
    "jobs.json[1].config: is required and must be an object",
    'jobs.json[1].extra: unknown field; expected only "name" and "config"',
  ]);
});

Deno.test("the ConfigError message lists every problem, one per line", () => {
  const error = new ConfigError([
    { path: "a: config.x", message: "is required" },
    { path: "b: config.y", message: 'expected an integer: current value is "z"' },
  ]);
  assertEquals(
    error.message,
    'Invalid configuration (2 problems):\n  - a: config.x: is required\n  - b: config.y: expected an integer: current value is "z"',
  );
});

Deno.test("a source without sink.class writes to Kafka, and Kafka Connect's topic.creation keys go to that sink", async () => {
  const [spec] = await buildPipelines(
    parseConnectors({
      name: "capture",
      config: {
        "connector.class": "postgres_cdc",
        "database.hostname": "127.0.0.1",
        "database.dbname": "smart_warehouse",
        "topic.prefix": "warehouse-cdc",
        "topic.creation.default.partitions": "6",
      },
    }),
    {
      registry: builtinRegistry(),
      pluginDefaults: { "bootstrap.servers": "127.0.0.1:9092" },
      sinkConnectorSource: "kafka",
      defaultSink: "kafka",
    },
  );
  assertEquals(spec.sink.plugin.name, "kafka");
  const sink = spec.sink.config as Record<string, unknown>;
  assertEquals(sink["topic.creation.default.partitions"], 6);
  assertEquals(sink["bootstrap.servers"], "127.0.0.1:9092");
});

Deno.test("converter keys go to the kafka sink, are ignored by ends that speak records, and an Avro converter needs a registry", async () => {
  const options = {
    registry: builtinRegistry(),
    pluginDefaults: { "bootstrap.servers": "127.0.0.1:9092" },
    sinkConnectorSource: "kafka",
    defaultSink: "kafka",
  };
  const [capture] = await buildPipelines(
    parseConnectors({
      name: "capture",
      config: {
        "connector.class": "postgres_cdc",
        "database.hostname": "127.0.0.1",
        "database.dbname": "smart_warehouse",
        "topic.prefix": "warehouse-cdc",
        "value.converter": "org.apache.kafka.connect.json.JsonConverter",
        "value.converter.schemas.enable": "true",
      },
    }),
    options,
  );
  const sink = capture.sink.config as Record<string, unknown>;
  assertEquals(sink["value.converter.schemas.enable"], true);
  assertEquals(sink["key.converter.schemas.enable"], false);
  assertEquals(
    await problems({ ...valid, "value.converter.schemas.enable": "true" }),
    [],
    "postgres → postgres: accepted and unused",
  );
  assertEquals(
    await problems({
      "connector.class": "postgres_query",
      "connection.url": "${env:WAREHOUSE_URL}",
      "table": "public.profile_360",
      "sink.class": "kafka",
      "sink.bootstrap.servers": "127.0.0.1:9092",
      "value.converter": "io.confluent.connect.avro.AvroConverter",
      "key.converter": "org.apache.kafka.connect.storage.StringConverter",
    }),
    [
      'job: config.sink.key.converter: must be org.apache.kafka.connect.json.JsonConverter or io.confluent.connect.avro.AvroConverter or io.apicurio.registry.utils.converter.AvroConverter: current value is "org.apache.kafka.connect.storage.StringConverter"',
      "job: config.sink.value.converter.schema.registry.url: is required with the Avro value.converter",
    ],
  );
});
