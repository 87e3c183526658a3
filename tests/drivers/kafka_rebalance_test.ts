/**
 * A partition that leaves a consumer and comes back without a committed
 * offset is read again from the start, not from where the client had
 * fetched to: the messages it fetched and dropped while the partition was
 * elsewhere were never written, and nobody committed them (found by the
 * rolling-restart test of tests/e2e/cluster_test.ts).
 */
import { assertEquals } from "../_assert.ts";
import { createTopic, produce, uniqueName } from "../_kafka.ts";
import { testKafkaBrokers } from "../_services.ts";
import { waitUntil } from "../_wait.ts";
import { type IncomingMessage, KafkaConsumer } from "../../drivers/kafka.ts";

Deno.test("a partition that comes back uncommitted is read again from its start", async () => {
  const topic = uniqueName("rebalance-back");
  await createTopic(topic, 2);
  const encode = (text: string) => new TextEncoder().encode(text);
  const messages = [];
  for (let i = 0; i < 400; i++) {
    messages.push({ topic, key: encode(`{"i":${i}}`), value: encode(`${i}`) });
  }
  await produce(messages);
  const groupId = uniqueName("rebalance-back-group");
  const member = (clientId: string) =>
    new KafkaConsumer({
      bootstrapServers: testKafkaBrokers(),
      clientId,
      groupId,
      subscription: { topics: [topic] },
      autoOffsetReset: "earliest",
      maxPollRecords: 20,
      sessionTimeoutMs: 6000,
      heartbeatIntervalMs: 500,
    });
  const a = member("a");
  const seen = new Map<number, Set<bigint>>([[0, new Set()], [1, new Set()]]);
  const take = (batch: IncomingMessage[]) => {
    for (const message of batch) seen.get(message.partition)!.add(message.offset);
  };
  try {
    // a owns both partitions and reads a little; its client fetches further ahead.
    await waitUntil("a reading", async () => {
      take(await a.poll(500));
      return seen.get(0)!.size + seen.get(1)!.size > 0;
    }, { timeoutMs: 30_000, intervalMs: 0 });
    const b = member("b");
    try {
      // b joins: one partition moves to b (which commits nothing), while a keeps polling.
      await waitUntil("one partition moved to b", async () => {
        take(await a.poll(200));
        await b.poll(200);
        return a.assignment.length === 1 && b.assignment.length === 1;
      }, { timeoutMs: 60_000, intervalMs: 0 });
    } finally {
      await b.close();
    }
    // b left: the partition comes back to a, uncommitted, and must be read from offset 0.
    const total = () => seen.get(0)!.size + seen.get(1)!.size;
    await waitUntil("a has read every message of both partitions", async () => {
      take(await a.poll(200));
      return total() === 400;
    }, { timeoutMs: 60_000, intervalMs: 0 }).catch((error) => {
      throw new Error(`${error.message}: a read ${seen.get(0)!.size} + ${seen.get(1)!.size}`);
    });
    assertEquals(total(), 400);
  } finally {
    await a.close();
  }
});
