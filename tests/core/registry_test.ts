import { assert, assertEquals, assertRejects, assertThrows } from "../_assert.ts";
import { builtinCatalog, lazyBuiltinRegistry } from "../../_builtin_catalog.ts";
import { builtinPlugins } from "../../builtins.ts";
import { buildPipelines, parseConnectors } from "../../core/config.ts";
import { Registry } from "../../core/registry.ts";
import { defineTransform } from "../../api/plugin.ts";
import { z } from "zod";

Deno.test("every catalog entry names its plugin's kind, name and aliases", async () => {
  assertEquals(builtinCatalog.length, builtinPlugins.length);
  for (const entry of builtinCatalog) {
    const plugin = await entry.load();
    assertEquals(
      { kind: entry.kind, name: entry.name, aliases: entry.aliases ?? [] },
      { kind: plugin.kind, name: plugin.name, aliases: plugin.aliases ?? [] },
    );
  }
});

Deno.test("a lazy registry loads only the plugins a config names", async () => {
  const registry = lazyBuiltinRegistry();
  const [spec] = await buildPipelines(
    parseConnectors({
      name: "cdc",
      config: {
        "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
        "connection.url": "postgres://u@127.0.0.1:1/w",
        "topic.prefix": "w",
        "sink.class": "postgres",
        "sink.connection.url": "postgres://u@127.0.0.1:1/c",
        "sink.table": "public.items",
        transforms: "route",
        "transforms.route.type": "org.apache.kafka.connect.transforms.RegexRouter",
        "transforms.route.regex": "w\\.(.*)",
        "transforms.route.replacement": "$1",
      },
    }),
    { registry, defaultSink: "kafka" },
  );
  assertEquals(spec.source.plugin.name, "postgres_cdc");
  assertEquals(registry.find("transform", "route")?.name, "route");
  // Never named: still not imported, and saying so rather than answering undefined.
  assertThrows(() => registry.find("transform", "filter"), Error, "not loaded yet");
  assertThrows(() => registry.list("transform"), Error, "not loaded yet");
  // The default sink and the sink connectors' source are Kafka's: not wanted here.
  assertThrows(() => registry.find("sink", "kafka"), Error, "not loaded yet");
  assertThrows(() => registry.find("source", "kafka"), Error, "not loaded yet");
  assertEquals((await registry.loadAll()).list("transform").length, 10);
});

Deno.test("a lazy registry loads the implicit ends a config gets without naming them", async () => {
  const registry = lazyBuiltinRegistry();
  const options = { registry, defaultSink: "kafka", sinkConnectorSource: "kafka" };
  // A source without sink.class writes to the default sink.
  const [toKafka] = await buildPipelines(
    parseConnectors({
      name: "cdc",
      config: {
        "connector.class": "postgres_cdc",
        "connection.url": "postgres://u@127.0.0.1:1/w",
        "topic.prefix": "w",
        "bootstrap.servers": "127.0.0.1:9092",
      },
    }),
    options,
  );
  assertEquals(toKafka.sink.plugin.name, "kafka");
  assertThrows(() => registry.find("source", "kafka"), Error, "not loaded yet");
  // A sink connector in connector.class reads with the Kafka source.
  const [fromKafka] = await buildPipelines(
    parseConnectors({
      name: "consumer",
      config: {
        "connector.class": "postgres",
        "connection.url": "postgres://u@127.0.0.1:1/c",
        "table.name.format": "public.items",
        topics: "w.public.items",
        "bootstrap.servers": "127.0.0.1:9092",
      },
    }),
    options,
  );
  assertEquals([fromKafka.source.plugin.name, fromKafka.sink.plugin.name], ["kafka", "postgres"]);
});

Deno.test("a lazy registry's unknown names list the valid ones without loading them", async () => {
  const registry = lazyBuiltinRegistry();
  const found = await registry.resolve("sink", "postgress", ".");
  assertEquals(
    found,
    'unknown sink "postgress"; valid sinks are: kafka, postgres',
  );
  assertThrows(() => registry.find("sink", "postgres"), Error, "not loaded yet");
  assert(registry.has("sink", "postgres"));
  assertEquals(registry.kindsOf("kafka"), ["source", "sink"]);
});

Deno.test("a lazy plugin that loads something else is refused, and may be retried", async () => {
  let attempts = 0;
  const noop = defineTransform({
    name: "noop",
    summary: "Passes records through.",
    config: z.strictObject({}),
    create: () => ({ apply: (record) => record }),
  });
  const registry = new Registry([
    { kind: "transform", name: "other", load: () => Promise.resolve(noop) },
    {
      kind: "transform",
      name: "noop",
      load: () => ++attempts === 1 ? Promise.reject(new Error("disk busy")) : Promise.resolve(noop),
    },
  ]);
  await assertRejects(
    () => registry.load("transform", "other"),
    Error,
    'The lazy transform "other" loaded something else: the transform "noop"',
  );
  await assertRejects(() => registry.load("transform", "noop"), Error, "disk busy");
  assertEquals(await registry.load("transform", "noop"), noop);
});
