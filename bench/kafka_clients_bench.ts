/**
 * Producer and consumer rates of the two Kafka clients Sluice could use,
 * kafkajs 2.2.4 and @platformatic/kafka, against the same broker in the same
 * run:
 *
 *     deno run -A dev/with_services.ts deno run -A bench/kafka_clients_bench.ts
 *
 * Each client produces `--messages` keyed JSON values of about `--size` bytes
 * in sends of `--batch` messages, one send in flight at a time (as the kafka
 * sink does: a batch is acknowledged before the next is written), with
 * acks=all and the idempotent producer. Then a consumer group reads them all
 * back from the earliest offset, committing offsets by hand after every
 * `--batch` messages (as the kafka source does after the sink wrote).
 * Rounds alternate the order of the clients (A B C, then C B A) so that none
 * always runs on a warmer broker. The third entry is Sluice's own wrapper
 * (drivers/kafka.ts, on @platformatic/kafka), to show what it costs. Options: `--messages 200000 --size 300
 * --batch 1000 --partitions 3 --rounds 2`.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { Buffer } from "node:buffer";
import { Kafka, logLevel, Partitioners } from "kafkajs";
import { Consumer, Producer } from "@platformatic/kafka";
import { KafkaConsumer, KafkaProducer, murmur2 } from "../drivers/kafka.ts";

const args = parseArgs({
  args: Deno.args,
  options: {
    messages: { type: "string", default: "200000" },
    size: { type: "string", default: "300" },
    batch: { type: "string", default: "1000" },
    partitions: { type: "string", default: "3" },
    rounds: { type: "string", default: "2" },
  },
});
const COUNT = Number(args.values.messages);
const SIZE = Number(args.values.size);
const BATCH = Number(args.values.batch);
const PARTITIONS = Number(args.values.partitions);
const ROUNDS = Number(args.values.rounds);
const WARMUP = 5_000;

const brokers: string = Deno.env.get("SLUICE_TEST_KAFKA_BROKERS") ??
  Deno.env.get("SLUICE_BOOTSTRAP_SERVERS") ?? fail(
    "No broker: run through `deno run -A dev/with_services.ts deno run -A bench/kafka_clients_bench.ts`",
  );

function fail(message: string): never {
  console.error(message);
  Deno.exit(2);
}

interface Message {
  key: Buffer;
  value: Buffer;
}

/** `count` messages keyed `{"id":n}` whose JSON value is about SIZE bytes. */
function makeMessages(count: number): Message[] {
  const messages: Message[] = [];
  for (let id = 0; id < count; id++) {
    const base = {
      id,
      citizen_id: crypto.randomUUID(),
      status: id % 3 === 0 ? "approved" : "pending",
      amount: (id * 37.5).toFixed(2),
      updated_at: new Date(1_700_000_000_000 + id * 1000).toISOString(),
      note: "",
    };
    const filler = Math.max(0, SIZE - JSON.stringify(base).length);
    base.note = "x".repeat(filler);
    messages.push({
      key: Buffer.from(JSON.stringify({ id })),
      value: Buffer.from(JSON.stringify(base)),
    });
  }
  return messages;
}

interface Rates {
  produce: number;
  consume: number;
  /** Milliseconds from starting the consumer to its first message (group join included). */
  firstMessageMs: number;
}

interface Client {
  name: string;
  produce(topic: string, messages: readonly Message[]): Promise<void>;
  /** Reads `count` messages in a new group; returns ms from start to first and to last message. */
  consume(topic: string, count: number): Promise<{ firstMs: number; lastMs: number }>;
}

const kafkajsClient: Client = {
  name: "kafkajs 2.2.4",
  async produce(topic, messages) {
    const kafka = new Kafka({
      clientId: "bench-kafkajs",
      brokers: [brokers],
      logLevel: logLevel.ERROR,
    });
    const producer = kafka.producer({
      idempotent: true,
      maxInFlightRequests: 1,
      createPartitioner: Partitioners.DefaultPartitioner, // Java-compatible murmur2
    });
    await producer.connect();
    try {
      for (let i = 0; i < messages.length; i += BATCH) {
        await producer.send({ topic, acks: -1, messages: messages.slice(i, i + BATCH) });
      }
    } finally {
      await producer.disconnect();
    }
  },
  async consume(topic, count) {
    const kafka = new Kafka({
      clientId: "bench-kafkajs",
      brokers: [brokers],
      logLevel: logLevel.ERROR,
    });
    const consumer = kafka.consumer({ groupId: `bench-kafkajs-${crypto.randomUUID()}` });
    const done = Promise.withResolvers<void>();
    let seen = 0;
    let first = 0;
    const start = performance.now();
    await consumer.connect();
    try {
      await consumer.subscribe({ topic, fromBeginning: true });
      await consumer.run({
        autoCommit: false,
        eachBatchAutoResolve: false,
        eachBatch: async ({ batch, resolveOffset, heartbeat }) => {
          if (first === 0) first = performance.now();
          let sinceCommit = 0;
          for (const message of batch.messages) {
            resolveOffset(message.offset);
            seen++;
            if (++sinceCommit === BATCH) {
              await consumer.commitOffsets([{
                topic,
                partition: batch.partition,
                offset: (BigInt(message.offset) + 1n).toString(),
              }]);
              sinceCommit = 0;
              await heartbeat();
            }
          }
          if (sinceCommit > 0) {
            await consumer.commitOffsets([{
              topic,
              partition: batch.partition,
              offset: (BigInt(batch.lastOffset()) + 1n).toString(),
            }]);
          }
          if (seen >= count) done.resolve();
        },
      });
      await done.promise;
      return { firstMs: first - start, lastMs: performance.now() - start };
    } finally {
      await consumer.disconnect();
    }
  },
};

const platformaticClient: Client = {
  name: "@platformatic/kafka 2.12.1",
  async produce(topic, messages) {
    const producer = new Producer({
      clientId: "bench-platformatic",
      bootstrapBrokers: [brokers],
      idempotent: true,
      acks: -1,
      // Its default partitioner is `murmur2 >>> 0`, not Java's `& 0x7fffffff`.
      partitioner: (_message, key) => key ? murmur2(key) & 0x7fffffff : 0,
    });
    try {
      for (let i = 0; i < messages.length; i += BATCH) {
        await producer.send({
          messages: messages.slice(i, i + BATCH).map((m) => ({
            topic,
            key: m.key,
            value: m.value,
          })),
        });
      }
    } finally {
      await producer.close();
    }
  },
  async consume(topic, count) {
    const consumer = new Consumer({
      clientId: "bench-platformatic",
      bootstrapBrokers: [brokers],
      groupId: `bench-platformatic-${crypto.randomUUID()}`,
      autocommit: false,
    });
    let seen = 0;
    let first = 0;
    const start = performance.now();
    try {
      const stream = await consumer.consume({
        topics: [topic],
        mode: "committed",
        fallbackMode: "earliest",
        autocommit: false,
      });
      const pending = new Map<number, { offset: bigint; leaderEpoch: number }>();
      const commit = async () => {
        const offsets = [...pending].map(([partition, { offset, leaderEpoch }]) => ({
          topic,
          partition,
          offset: offset + 1n,
          leaderEpoch,
        }));
        pending.clear();
        await consumer.commit({ offsets });
      };
      try {
        for await (const message of stream) {
          if (first === 0) first = performance.now();
          pending.set(message.partition, {
            offset: message.offset,
            leaderEpoch: message.leaderEpoch,
          });
          seen++;
          if (seen % BATCH === 0 || seen >= count) await commit();
          if (seen >= count) break;
        }
      } finally {
        await stream.close();
      }
      return { firstMs: first - start, lastMs: performance.now() - start };
    } finally {
      await consumer.close();
    }
  },
};

/** Sluice's own wrapper (drivers/kafka.ts) over @platformatic/kafka, as the plugins use it. */
const sluiceDriverClient: Client = {
  name: "sluice drivers/kafka.ts",
  async produce(topic, messages) {
    const producer = new KafkaProducer({ bootstrapServers: brokers, clientId: "bench-sluice" });
    try {
      for (let i = 0; i < messages.length; i += BATCH) {
        await producer.send(messages.slice(i, i + BATCH).map((m) => ({ topic, ...m })));
      }
    } finally {
      await producer.close();
    }
  },
  async consume(topic, count) {
    const consumer = new KafkaConsumer({
      bootstrapServers: brokers,
      clientId: "bench-sluice",
      groupId: `bench-sluice-${crypto.randomUUID()}`,
      subscription: { topics: [topic] },
      autoOffsetReset: "earliest",
      maxPollRecords: BATCH,
    });
    let seen = 0;
    let first = 0;
    const start = performance.now();
    try {
      while (seen < count) {
        const batch = await consumer.poll(1000);
        if (batch.length === 0) continue;
        if (first === 0) first = performance.now();
        seen += batch.length;
        const next = new Map<number, bigint>();
        for (const m of batch) next.set(m.partition, m.offset + 1n);
        await consumer.commit(
          [...next].map(([partition, offset]) => ({ topic, partition, offset })),
        );
      }
      return { firstMs: first - start, lastMs: performance.now() - start };
    } finally {
      await consumer.close();
    }
  },
};

async function createTopic(topic: string): Promise<void> {
  const admin = new Kafka({ clientId: "bench-admin", brokers: [brokers], logLevel: logLevel.ERROR })
    .admin();
  await admin.connect();
  try {
    await admin.createTopics({
      topics: [{ topic, numPartitions: PARTITIONS }],
      waitForLeaders: true,
    });
  } finally {
    await admin.disconnect();
  }
}

async function measure(client: Client, messages: readonly Message[]): Promise<Rates> {
  const tag = client.name.split(" ")[0].replace(/[^a-z]/g, "");
  const warmTopic = `bench-warm-${tag}-${crypto.randomUUID().slice(0, 8)}`;
  await createTopic(warmTopic);
  await client.produce(warmTopic, messages.slice(0, WARMUP));
  await client.consume(warmTopic, WARMUP);

  const topic = `bench-${tag}-${crypto.randomUUID().slice(0, 8)}`;
  await createTopic(topic);
  const t0 = performance.now();
  await client.produce(topic, messages);
  const produceMs = performance.now() - t0;
  const { firstMs, lastMs } = await client.consume(topic, messages.length);
  return {
    produce: messages.length / (produceMs / 1000),
    consume: messages.length / ((lastMs - firstMs) / 1000),
    firstMessageMs: firstMs,
  };
}

const messages = makeMessages(COUNT);
const avgBytes = Math.round(messages.reduce((n, m) => n + m.value.length, 0) / COUNT);
console.log(
  `${COUNT} messages, values ~${avgBytes} B JSON with keys, ${PARTITIONS} partitions, ` +
    `sends of ${BATCH} (acks=all, idempotent), manual commit every ${BATCH}; broker ${brokers}; ` +
    `Deno ${Deno.version.deno}, ${navigator.hardwareConcurrency} CPUs`,
);
const clients = [kafkajsClient, platformaticClient, sluiceDriverClient];
const results = new Map<string, Rates[]>(clients.map((c) => [c.name, []]));
for (let round = 0; round < ROUNDS; round++) {
  const order = round % 2 === 0 ? clients : [...clients].reverse();
  for (const client of order) {
    const rates = await measure(client, messages);
    results.get(client.name)!.push(rates);
    console.log(
      `round ${round + 1} ${client.name.padEnd(26)} produce ${fmt(rates.produce)} msg/s  ` +
        `consume ${fmt(rates.consume)} msg/s  (first message after ${
          rates.firstMessageMs.toFixed(0)
        } ms)`,
    );
  }
}

function fmt(n: number): string {
  return Math.round(n).toLocaleString("en-US").padStart(9);
}
function mean(values: number[]): number {
  return values.reduce((a, b) => a + b, 0) / values.length;
}

console.log("\nmean over rounds:");
const summary = clients.map((client) => {
  const rates = results.get(client.name)!;
  const produce = mean(rates.map((r) => r.produce));
  const consume = mean(rates.map((r) => r.consume));
  console.log(
    `  ${client.name.padEnd(26)} produce ${fmt(produce)} msg/s  consume ${fmt(consume)} msg/s`,
  );
  return { produce, consume };
});
const [a, b] = summary;
console.log(
  `  ratio ${clients[1].name} / ${clients[0].name}: produce ${
    (b.produce / a.produce).toFixed(2)
  }x, ` +
    `consume ${(b.consume / a.consume).toFixed(2)}x`,
);
