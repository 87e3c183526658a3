/**
 * The Kafka producer against the real broker: overlapping sends split into
 * many requests keep each key's order with nothing doubled (the broker
 * checks every batch's sequence numbers), keys land where the Java producer
 * puts them, and the client's own encoding (compression, or idempotence
 * off) writes the same messages.
 */
import {
  KafkaProducer,
  partitionForKey,
  type ProducerSettings,
  RangeMessage,
} from "../../drivers/kafka.ts";
import { assert, assertEquals } from "../_assert.ts";
import { bytes, createTopic, produce, readTopic, text, uniqueName } from "../_kafka.ts";
import { testKafkaBrokers } from "../_services.ts";

const PARTITIONS = 3;

Deno.test("overlapping sends split into many requests keep every key's order, once each", async () => {
  const topic = uniqueName("producer-order");
  await createTopic(topic, PARTITIONS);
  const producer = new KafkaProducer({
    bootstrapServers: testKafkaBrokers(),
    clientId: "producer-order",
    // Small requests: each call becomes several, five in flight at a time.
    maxRequestBytes: 6_000,
  });
  const calls = 12;
  const perCall = 400;
  try {
    const sends: Promise<void>[] = [];
    for (let call = 0; call < calls; call++) {
      sends.push(producer.send(Array.from({ length: perCall }, (_, i) => {
        const n = call * perCall + i;
        return {
          topic,
          // Every tenth message without a key: all on one partition, in order.
          key: n % 10 === 9 ? null : bytes(`k${n % 23}`),
          value: bytes(JSON.stringify({ n })),
          // Decreasing: negative timestamp deltas within a batch.
          timestamp: 1_700_000_000_000 - n,
        };
      })));
    }
    await Promise.all(sends);
  } finally {
    await producer.close();
  }
  const messages = await readTopic(topic, calls * perCall);
  assertEquals(messages.length, calls * perCall);
  const seen = new Set<number>();
  const lastOfKey = new Map<string, number>();
  const keylessPartitions = new Set<number>();
  for (const message of messages) {
    const n = (JSON.parse(text(message.value)!) as { n: number }).n;
    assert(!seen.has(n), `message ${n} written twice`);
    seen.add(n);
    assertEquals(message.timestamp, 1_700_000_000_000 - n);
    if (message.key === null) {
      keylessPartitions.add(message.partition);
      assert((lastOfKey.get("") ?? -1) < n, `keyless: ${n} after ${lastOfKey.get("")}`);
      lastOfKey.set("", n);
      continue;
    }
    const key = text(message.key)!;
    assertEquals(message.partition, partitionForKey(message.key, PARTITIONS), key);
    assert((lastOfKey.get(key) ?? -1) < n, `${key}: ${n} after ${lastOfKey.get(key)}`);
    lastOfKey.set(key, n);
  }
  assertEquals([...keylessPartitions], [0]);
});

for (
  const [name, settings] of [
    ["gzip", { compression: "gzip" }],
    ["without idempotence", { idempotent: false }],
  ] as [string, Partial<ProducerSettings>][]
) {
  Deno.test(`a producer ${name} writes keys, values, headers and tombstones as given`, async () => {
    const topic = uniqueName("producer-variant");
    // Years before the first record's time (now): a delta beyond 32 bits. The
    // client's own encoding (used with compression) gets the broker to refuse
    // that as out of range; recent times pass.
    const stamp = settings.compression ? Date.now() - 60_000 : 1_600_000_000_000;
    await createTopic(topic, PARTITIONS);
    // The partitions used below, led once by an idempotent producer: without idempotence, a
    // request failing on a partition of a topic just made is retried whole (duplicates).
    await produce([{ topic, key: bytes("a"), value: bytes("warm") }, {
      topic,
      key: null,
      value: bytes("warm"),
    }]);
    const producer = new KafkaProducer({
      bootstrapServers: testKafkaBrokers(),
      clientId: "producer-variant",
      ...settings,
    });
    try {
      await producer.send([
        { topic, key: bytes("a"), value: bytes("1"), headers: [["h", "x"], ["h", bytes("y")]] },
        { topic, key: bytes("a"), value: null, timestamp: stamp },
        { topic, key: null, value: bytes("é") },
        // The kafka sink's messages: key and value as ranges of one buffer
        // (with compression the client reads them through views). Not sent
        // without idempotence: a request that fails on one partition of a
        // topic just made is retried whole, and a fourth partition in it
        // made that (and duplicates of the others) likely.
        ...(settings.compression ? [new RangeMessage(topic, bytes("..b2"), 2, 3, 3, 4)] : []),
      ]);
    } finally {
      await producer.close();
    }
    const messages = (await readTopic(topic, settings.compression ? 6 : 5))
      .filter((message) => text(message.value) !== "warm");
    const keyed = messages.filter((message) => text(message.key) === "a");
    assertEquals(
      keyed.map((message) => [
        text(message.value),
        message.headers.map(([header, value]) => `${header}=${text(value)}`),
      ]),
      [["1", ["h=x", "h=y"]], [null, []]],
    );
    const ranged = messages.filter((message) => text(message.key) === "b");
    assertEquals(
      ranged.map((message) => [text(message.value), message.headers]),
      settings.compression ? [["2", []]] : [],
    );
    assertEquals(keyed[1].timestamp, stamp);
    assertEquals(messages.filter((message) => message.key === null).map((m) => text(m.value)), [
      "é",
    ]);
  });
}
