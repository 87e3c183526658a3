/**
 * Topic names of captured tables (issue 7, item 9): characters Kafka does not
 * allow become `_`, the envelope keeps the real names, and two tables that
 * would share a topic are refused at validation or at start.
 */
import postgres from "postgres";
import { assert, assertEquals, assertMatch } from "../../_assert.ts";
import { builtinRegistry } from "../../../builtins.ts";
import { buildPipelines, parseConnectors } from "../../../core/config.ts";
import type { ConfigError } from "../../../api/errors.ts";
import type { ChangeEvent } from "../../../api/record.ts";
import { literalTables, topicName } from "../../../connectors/postgres_cdc/_topics.ts";
import { createTestDatabase, testKafkaBrokers } from "../../_services.ts";
import { startStream, uniqueSlot, waitForActiveSlot } from "../../_cdc.ts";
import { readTopic, runUntil, uniqueName } from "../../_kafka.ts";

Deno.test("topic names replace what Kafka does not allow with _ and keep dots, dashes and digits", () => {
  assertEquals(topicName("shop", "public", "order items"), "shop.public.order_items");
  assertEquals(topicName("shop-1", "Sales", "prix/€"), "shop-1.Sales.prix__");
  assertEquals(topicName("w", "public", "profile_360"), "w.public.profile_360");
  assertEquals(literalTables(["public.order items", "public\\.a", "public\\..*"]), [
    { schema: "public", table: "order items" },
    { schema: "public", table: "a" },
  ]);
});

Deno.test("two listed tables that would share a topic fail validation, naming both", async () => {
  const config = {
    "connector.class": "postgres_cdc",
    "connection.url": "postgres://u@127.0.0.1:5432/w",
    "topic.prefix": "shop",
    "table.include.list": "public.order items,public.order_items",
    "sink.class": "postgres",
    "sink.connection.url": "postgres://u@127.0.0.1:5432/c",
    "sink.table": "public.t",
  };
  let problems: string[] = [];
  try {
    await buildPipelines(parseConnectors({ name: "cdc", config }), {
      registry: builtinRegistry(),
    });
  } catch (error) {
    problems = (error as ConfigError).issues.map((i) => `${i.path}: ${i.message}`);
  }
  assertEquals(problems, [
    'cdc: config.table.include.list: "public"."order items" and "public"."order_items" would share the topic "shop.public.order_items" once characters Kafka does not allow are replaced with "_"; capture only one of them (table.exclude.list) or rename one',
  ]);
});

Deno.test("a table whose name has a space streams to Kafka under a sanitized topic with its real name in source", async () => {
  const db = await createTestDatabase("cdc_topic_space");
  const sql = postgres(db.url, { max: 2, onnotice: () => {} });
  const prefix = uniqueName("spaced");
  try {
    await sql.unsafe(`create table public."order items" (id int primary key, qty int)`);
    const slot = uniqueSlot("cdc_topic");
    const [spec] = await buildPipelines(
      parseConnectors({
        name: "spaced",
        config: {
          "connector.class": "postgres_cdc",
          "connection.url": db.url,
          "topic.prefix": prefix,
          "slot.name": slot,
          "slot.drop.on.stop": "true",
          "publication.name": "spaced_pub",
          "snapshot.mode": "never",
          "table.include.list": "public.order items",
          "poll.interval.ms": "10",
          "sink.class": "kafka",
          "sink.bootstrap.servers": testKafkaBrokers(),
        },
      }),
      { registry: builtinRegistry() },
    );
    const topic = `${prefix}.public.order_items`;
    const read = (async () => {
      await waitForActiveSlot(sql, slot);
      await sql.unsafe(`insert into public."order items" values (1, 3)`);
      return await readTopic(topic, 1);
    })();
    const report = await runUntil(spec, read);
    assertEquals(report.error, undefined, report.error?.message);
    const [message] = await read;
    const value = JSON.parse(new TextDecoder().decode(message.value as Uint8Array)) as ChangeEvent;
    assertEquals(value.after, { id: 1, qty: 3 });
    assertEquals([value.source.schema, value.source.table], ["public", "order items"]);
  } finally {
    await sql.end();
    await db.drop();
  }
});

Deno.test("two captured tables that would share a topic stop the stream at start, loudly", async () => {
  const db = await createTestDatabase("cdc_topic_clash");
  const sql = postgres(db.url, { max: 2, onnotice: () => {} });
  try {
    await sql.unsafe(`
      create table public."a b" (id int primary key);
      create table public.a_b (id int primary key);
      insert into public.a_b values (1);`);
    const [spec] = await buildPipelines(
      parseConnectors({
        name: "clash",
        config: {
          "connector.class": "postgres_cdc",
          "connection.url": db.url,
          "topic.prefix": "shop",
          "slot.name": uniqueSlot("cdc_clash"),
          "slot.drop.on.stop": "true",
          "publication.name": "clash_pub",
          // A pattern: the tables are known only once connected.
          "table.include.list": "public\\.a.b",
          "sink.class": "kafka",
          "sink.bootstrap.servers": testKafkaBrokers(),
        },
      }),
      { registry: builtinRegistry() },
    );
    const report = await startStream(spec).done;
    assertEquals(report.status, "failed");
    assert(report.error, "the failure carries its error");
    assertMatch(
      report.error.message,
      /"public"\."a b" and "public"\."a_b" would share the topic "shop\.public\.a_b"/,
    );
    assertEquals(report.stats.read, 0, "nothing was emitted under the shared topic");
  } finally {
    await sql.end();
    await db.drop();
  }
});
