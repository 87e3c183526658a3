/**
 * Every built-in sink (and the user-written memory sink of the fixtures)
 * runs the sink contract against its real target. A new sink gets it by
 * adding one harness to the table (the last test fails until it has one).
 */
import postgres from "postgres";
import kafkaSink from "../../sinks/kafka.ts";
import { sinks } from "../../sinks/mod.ts";
import postgresSink from "../../sinks/postgres/mod.ts";
import memorySink, { buckets } from "../fixtures/memory_sink.ts";
import { assertEquals } from "../_assert.ts";
import { createTestDatabase, testKafkaBrokers } from "../_services.ts";
import { readTopic, text, uniqueName } from "../_kafka.ts";
import {
  foldLog,
  pick,
  sinkContract,
  type SinkHarness,
  type TargetState,
} from "./sink_contract.ts";

const postgresHarness: SinkHarness = {
  plugin: postgresSink,
  truncate: "deletes every row", // soft deletes (the default delete.mode)
  async setup() {
    const db = await createTestDatabase("contract_sink");
    const admin = postgres(db.url, { max: 1, onnotice: () => {} });
    await admin`create table public.items (id int primary key, name text, deleted_at timestamptz)`;
    await admin.end();
    return {
      config: { "connection.url": db.url, table: "public.items" },
      topic: "contract.public.items",
      async state() {
        const fresh = postgres(db.url, { max: 1, onnotice: () => {} });
        try {
          const rows = await fresh`select id, name, deleted_at from items order by id`;
          const state: TargetState = {};
          for (const row of rows) state[row.id] = row.deleted_at ? "deleted" : pick(row);
          return state;
        } finally {
          await fresh.end();
        }
      },
      [Symbol.asyncDispose]: () => db.drop(),
    };
  },
};

const kafkaHarness: SinkHarness = {
  plugin: kafkaSink,
  truncate: "changes nothing", // a keyless event on the topic; consumers decide
  setup() {
    const topic = uniqueName("contract-sink");
    return Promise.resolve({
      config: { "bootstrap.servers": testKafkaBrokers() },
      topic,
      async state(written: number) {
        const messages = await readTopic(topic, written);
        return foldLog(messages.map((m) => ({
          key: m.key === null ? null : JSON.parse(text(m.key)!),
          value: m.value === null ? null : JSON.parse(text(m.value)!),
        })));
      },
      async [Symbol.asyncDispose]() {},
    });
  },
};

const memoryHarness: SinkHarness = {
  plugin: memorySink,
  truncate: "changes nothing",
  setup() {
    const bucket = uniqueName("contract-bucket");
    return Promise.resolve({
      config: { bucket },
      topic: "contract",
      state: () => Promise.resolve(foldLog(buckets.get(bucket)?.records ?? [])),
      [Symbol.asyncDispose]() {
        buckets.delete(bucket);
        return Promise.resolve();
      },
    });
  },
};

const TABLE: SinkHarness[] = [postgresHarness, kafkaHarness, memoryHarness];

for (const harness of TABLE) sinkContract(harness);

Deno.test("every built-in sink is in the contract table", () => {
  const covered = TABLE.map((harness) => harness.plugin.name).filter((name) => name !== "memory");
  assertEquals(covered.sort(), sinks.map((plugin) => plugin.name).sort());
});
