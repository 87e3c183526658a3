/**
 * Helpers for the Kafka tests: pipeline specs from connector JSON as users
 * write them (with the worker's Kafka defaults), a stream source that emits
 * numbered records, a sink that keeps what it was given in memory, and raw
 * reads and writes through the Kafka driver.
 *
 * @module
 */
import { z } from "zod";
import { builtinRegistry } from "../builtins.ts";
import { buildPipelines, parseConnectors, type PipelineSpec } from "../core/config.ts";
import { MemoryOffsetStore } from "../core/offsets.ts";
import { type PipelineEnvironment, runPipeline, type RunReport } from "../core/pipeline.ts";
import { workerEnvironment } from "../cli/worker.ts";
import { integer, positiveInteger } from "../api/options.ts";
import { defineSink, defineSource, type SinkBatch } from "../api/plugin.ts";
import type { SluiceRecord } from "../api/record.ts";
import type { Registry } from "../core/registry.ts";
import {
  type IncomingMessage,
  KafkaAdmin,
  KafkaConsumer,
  KafkaProducer,
  type OutgoingMessage,
} from "../drivers/kafka.ts";
import { testKafkaBrokers } from "./_services.ts";
import { deadline, waitUntil } from "./_wait.ts";

/** A topic name no other test uses. */
export function uniqueName(prefix: string): string {
  return `${prefix}-${crypto.randomUUID().slice(0, 8)}`;
}

/**
 * Pauses a test plugin for `ms`: the simulated work of a slow sink or a
 * paced source (plugin behaviour, not a test waiting for something).
 */
function simulateWork(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// ---------------------------------------------------------------------------
// Test plugins

/** What a `collect` sink was given, shared with the test by name. */
export class Collector {
  readonly records: SluiceRecord[] = [];
  writes = 0;
  /** Writes begun (counted before the gate and the delay). */
  writesStarted = 0;
  /** While set, writes wait for it (to hold the pipeline back). */
  gate: Promise<void> | undefined;
  /** Every write takes at least this long (a slow sink). */
  writeDelayMs = 0;

  add(records: readonly SluiceRecord[]): void {
    this.records.push(...records);
    this.writes++;
  }

  /** Resolves once at least `count` records were written; fails after `timeoutMs`. */
  async waitFor(count: number, timeoutMs = 30_000): Promise<void> {
    await waitUntil(`${count} records in the sink`, () => {
      if (this.records.length < count) throw new Error(`${this.records.length} records`);
      return true;
    }, { timeoutMs });
  }
}

const collectors = new Map<string, Collector>();

/** A new collector, named for a `collect` sink's `collector` option. */
export function collector(): { name: string; collector: Collector } {
  const name = uniqueName("collector");
  const created = new Collector();
  collectors.set(name, created);
  return { name, collector: created };
}

/** A sink that keeps records in a {@linkcode Collector}. */
export const collectSink = defineSink({
  name: "collect",
  summary: "Keeps written records in memory (tests).",
  config: z.strictObject({ collector: z.string() }),
  create(config) {
    const target = collectors.get(config.collector);
    if (!target) throw new Error(`no collector named ${config.collector}`);
    return {
      async write(batch: SinkBatch) {
        target.writesStarted++;
        if (target.gate) await target.gate;
        if (target.writeDelayMs > 0) await simulateWork(target.writeDelayMs);
        target.add(batch.records);
        return { written: batch.records.length };
      },
      async close() {},
    };
  },
});

/**
 * A stream source of `count` numbered records in batches, one batch every
 * `interval.ms`: key `{"id": n % keys}`, value `{"id", "seq": n, "text"}`.
 * Its offset is the number of records emitted, so it resumes where it left.
 */
export const sequenceSource = defineSource({
  name: "sequence",
  mode: "stream",
  summary: "Emits numbered records (tests).",
  config: z.strictObject({
    topic: z.string(),
    count: positiveInteger(),
    keys: positiveInteger().default(10),
    "batch.size": positiveInteger().default(100),
    "interval.ms": integer().default(0),
  }),
  create(config, context) {
    let next = typeof context.offset === "number" ? context.offset : 0;
    return {
      async *read() {
        while (!context.signal.aborted) {
          if (next >= config.count) {
            await new Promise((resolve) => {
              context.signal.addEventListener("abort", resolve, { once: true });
            });
            return;
          }
          const records: SluiceRecord[] = [];
          const end = Math.min(config.count, next + config["batch.size"]);
          for (; next < end; next++) {
            records.push({
              topic: config.topic,
              key: { id: next % config.keys },
              value: { id: next % config.keys, seq: next, text: `record ${next} ✓` },
              headers: { "x-seq": String(next) },
            });
          }
          yield { records, offset: next };
          if (config["interval.ms"] > 0) await simulateWork(config["interval.ms"]);
        }
      },
      async close() {},
    };
  },
});

const fixtures = new Map<string, readonly SluiceRecord[]>();

/** Registers records for a `records` source; returns the name for its `fixture` option. */
export function fixture(records: readonly SluiceRecord[]): string {
  const name = uniqueName("fixture");
  fixtures.set(name, records);
  return name;
}

/** A batch source that emits the records of a {@linkcode fixture} in one batch. */
export const recordsSource = defineSource({
  name: "records",
  mode: "batch",
  summary: "Emits fixed records (tests).",
  config: z.strictObject({ fixture: z.string() }),
  create(config) {
    const records = fixtures.get(config.fixture);
    if (!records) throw new Error(`no fixture named ${config.fixture}`);
    return {
      async *read() {
        yield { records, offset: records.length };
      },
      async close() {},
    };
  },
});

/** The built-in plugins plus the test ones. */
export function testRegistry(): Registry {
  return builtinRegistry().register(collectSink).register(sequenceSource).register(recordsSource);
}

/**
 * Pipeline specs from connector JSON, loaded as the worker loads them: Kafka
 * plugins get the broker from the worker setting, sink connectors read from
 * the kafka source, sources without a sink write to kafka.
 */
export function kafkaSpecs(json: unknown, brokers = testKafkaBrokers()): Promise<PipelineSpec[]> {
  return buildPipelines(parseConnectors(json), {
    registry: testRegistry(),
    pluginDefaults: { "bootstrap.servers": brokers },
    sinkConnectorSource: "kafka",
    defaultSink: "kafka",
  });
}

/**
 * Runs a stream pipeline until `done` resolves, then stops it gracefully and
 * returns its report. Fails when the pipeline ends first or `ms` pass.
 */
export async function runUntil(
  spec: PipelineSpec,
  done: Promise<unknown>,
  options: { ms?: number; environment?: PipelineEnvironment } = {},
): Promise<RunReport> {
  const stop = new AbortController();
  const environment = options.environment ?? { offsets: new MemoryOffsetStore() };
  const run = runPipeline(spec, environment, { signal: stop.signal });
  const ended = run.then((report) => {
    throw new Error(`pipeline ${spec.name} ended early (${report.status})`, {
      cause: report.error,
    });
  });
  ended.catch(() => {});
  try {
    await deadline(`pipeline ${spec.name}`, Promise.race([done, ended]), options.ms ?? 30_000);
  } finally {
    stop.abort();
  }
  return await run;
}

/** The worker's environment (offsets file, Kafka dead-letter topics) in a temporary folder. */
export async function testWorkerEnvironment(): Promise<
  PipelineEnvironment & AsyncDisposable
> {
  const dir = await Deno.makeTempDir({ prefix: "sluice-kafka-test-" });
  const environment = workerEnvironment({
    offsetsFile: `${dir}/offsets.json`,
    bootstrapServers: testKafkaBrokers(),
  });
  return {
    ...environment,
    [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }),
  };
}

// ---------------------------------------------------------------------------
// Raw access through the driver

const client = (brokers: string) => ({ bootstrapServers: brokers, clientId: "sluice-tests" });

/** Creates a topic with `partitions` partitions. */
export async function createTopic(
  topic: string,
  partitions: number,
  brokers = testKafkaBrokers(),
): Promise<void> {
  const admin = new KafkaAdmin(client(brokers));
  try {
    await admin.createTopic(topic, { partitions, replicationFactor: 1 });
  } finally {
    await admin.close();
  }
}

/** Produces messages as they are (bytes untouched). */
export async function produce(
  messages: readonly OutgoingMessage[],
  options: { brokers?: string; maxRequestBytes?: number } = {},
): Promise<void> {
  const producer = new KafkaProducer({
    ...client(options.brokers ?? testKafkaBrokers()),
    maxRequestBytes: options.maxRequestBytes,
  });
  try {
    await producer.send(messages);
  } finally {
    await producer.close();
  }
}

/** Reads `count` messages of `topic` from the beginning in a fresh group. */
export async function readTopic(
  topic: string,
  count: number,
  brokers = testKafkaBrokers(),
): Promise<IncomingMessage[]> {
  const consumer = new KafkaConsumer({
    ...client(brokers),
    groupId: uniqueName("sluice-tests-reader"),
    subscription: { topics: [topic] },
    autoOffsetReset: "earliest",
    maxPollRecords: 1000,
  });
  const messages: IncomingMessage[] = [];
  try {
    await waitUntil(`${count} messages of ${topic}`, async () => {
      messages.push(...await consumer.poll(500));
      return messages.length >= count;
    }, { timeoutMs: 30_000, intervalMs: 0 });
  } finally {
    await consumer.close();
  }
  return messages;
}

/** The group's committed next-offsets of `topic`'s partitions ("p" → offset, -1 when none). */
export async function committedOffsets(
  groupId: string,
  topic: string,
  partitions: number,
  brokers = testKafkaBrokers(),
): Promise<Record<string, number>> {
  const consumer = new KafkaConsumer({
    ...client(brokers),
    groupId,
    subscription: { topics: [] },
    autoOffsetReset: "earliest",
    maxPollRecords: 1,
  });
  try {
    const list = Array.from({ length: partitions }, (_, partition) => ({ topic, partition }));
    const committed = await consumer.committedOffsets(list);
    return Object.fromEntries(
      [...committed].map(([key, offset]) => [key.split(":").pop()!, Number(offset)]),
    );
  } finally {
    await consumer.close();
  }
}

/** UTF-8 bytes of a string. */
export function bytes(text: string): Uint8Array {
  return new TextEncoder().encode(text);
}

/** A string from UTF-8 bytes. */
export function text(data: Uint8Array | null): string | null {
  return data === null ? null : new TextDecoder().decode(data);
}
