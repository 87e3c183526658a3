/**
 * Checks that the private services started by dev/with_services.ts work, and
 * that the Kafka client behind drivers/kafka.ts speaks to the Kafka 4 broker.
 * (kafkajs, measured against it in bench/kafka_clients_bench.ts, is not used
 * in tests: its request queue sets a negative timer, kafkajs issue 1751.)
 */
import { assertEquals, assertStrictEquals } from "../_assert.ts";
import postgres from "postgres";
import {
  Admin,
  Consumer,
  Producer,
  stringDeserializers,
  stringSerializers,
} from "@platformatic/kafka";
import { testKafkaBrokers, testPgUrl } from "../_services.ts";
import { deadline } from "../_wait.ts";

/** 100 keyed messages: key `k000`… with value `value-0`… */
const MESSAGES = Array.from({ length: 100 }, (_, i) => ({
  key: `k${String(i).padStart(3, "0")}`,
  value: `value-${i}`,
}));
const EXPECTED = new Map(MESSAGES.map((m) => [m.key, m.value]));

function uniqueName(prefix: string): string {
  return `${prefix}-${crypto.randomUUID().slice(0, 8)}`;
}

Deno.test("the private PostgreSQL runs with wal_level logical", async () => {
  const sql = postgres(testPgUrl(), { max: 1 });
  try {
    const [row] = await sql`SHOW wal_level`;
    assertStrictEquals(row.wal_level, "logical");
  } finally {
    await sql.end();
  }
});

Deno.test("the Kafka broker passes a produce and consume smoke test", async () => {
  const bootstrapBrokers = [testKafkaBrokers()];
  const clientId = "sluice-smoke-platformatic";
  const topic = uniqueName("smoke-platformatic");

  const admin = new Admin({ clientId, bootstrapBrokers });
  try {
    await admin.createTopics({ topics: [topic], partitions: 3, replicas: 1 });
  } finally {
    await admin.close();
  }

  const producer = new Producer({ clientId, bootstrapBrokers, serializers: stringSerializers });
  try {
    await producer.send({ messages: MESSAGES.map((m) => ({ topic, ...m })) });
  } finally {
    await producer.close();
  }

  const consumer = new Consumer({
    clientId,
    bootstrapBrokers,
    groupId: uniqueName("smoke-platformatic-group"),
    deserializers: stringDeserializers,
  });
  const got = new Map<string, string>();
  const partitions = new Set<number>();
  try {
    const stream = await consumer.consume({ topics: [topic], mode: "earliest" });
    try {
      await deadline(
        "consuming 100 messages with @platformatic/kafka",
        (async () => {
          for await (const message of stream) {
            got.set(message.key, message.value);
            partitions.add(message.partition);
            if (got.size === MESSAGES.length) break;
          }
        })(),
        30_000,
      );
    } finally {
      await stream.close();
    }
  } finally {
    await consumer.close();
  }
  assertEquals(got, EXPECTED);
  assertEquals([...partitions].sort(), [0, 1, 2]);
});
