/**
 * The one module that talks to Kafka. It wraps `@platformatic/kafka` (chosen
 * over kafkajs after `bench/kafka_clients_bench.ts`: faster, maintained,
 * heartbeats that do not depend on the processing loop) behind three small
 * classes, so the client could be swapped without touching the plugins:
 *
 * - {@linkcode KafkaProducer}: acks=all, idempotent by default, a whole batch
 *   per call (split into requests the broker accepts), keyed messages on the
 *   partition Java's default partitioner picks ({@linkcode partitionForKey}).
 * - {@linkcode KafkaConsumer}: a consumer group with manual, monotonic commits
 *   limited to the partitions it owns; pulls at most `maxPollRecords` at a time
 *   and stops fetching while nobody pulls (backpressure); follows topics that
 *   appear later (missing topics, `topics.regex`).
 * - {@linkcode KafkaAdmin}: create a topic with a partition count, list topics,
 *   look offsets up by time, and read or set a consumer group's offsets.
 *
 * Errors are classified by {@linkcode isPermanentKafkaError}: everything else
 * (broker down, leader moved, timeouts) is worth retrying.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import process from "node:process";
import type {
  Admin,
  API,
  Callback,
  Consumer,
  Message,
  MessagesStream,
  MessageToProduce,
  Producer,
  ProducerOptions,
} from "@platformatic/kafka";

type KafkaLibrary = typeof import("@platformatic/kafka");
let library: Promise<KafkaLibrary> | undefined;

/**
 * The client library, imported on first use: it costs about 50 MB of memory,
 * which processes that run no Kafka pipeline should not pay.
 */
function kafkaLibrary(): Promise<KafkaLibrary> {
  library ??= withGrantedEnvOnly(() => import("@platformatic/kafka"));
  return library;
}

type ProduceEncoding = typeof import("./_kafka_produce.ts");
type PartitionBatch = import("./_kafka_produce.ts").PartitionBatch;
type ProducerIdentity = import("./_kafka_produce.ts").ProducerIdentity;
let produceEncoding: Promise<ProduceEncoding> | undefined;

/** Sluice's own Produce request encoder, which imports the client library: loaded with it. */
function ownProduceEncoding(): Promise<ProduceEncoding> {
  produceEncoding ??= kafkaLibrary().then(() => import("./_kafka_produce.ts"));
  return produceEncoding;
}

/**
 * Runs `load` with `process.env` showing only the variables Deno grants.
 * The client's `debug` dependency lists every variable when it loads, which
 * needs the whole environment: under `sluice permissions`' narrow
 * `--allow-env=…` that would fail, and granting it would hand every secret
 * of the environment to any plugin.
 */
async function withGrantedEnvOnly<T>(load: () => Promise<T>): Promise<T> {
  if (Deno.permissions.querySync({ name: "env" }).state === "granted") return await load();
  const granted = (name: string | symbol) =>
    typeof name === "string" &&
    Deno.permissions.querySync({ name: "env", variable: name }).state === "granted";
  const view = new Proxy({} as Record<string, string>, {
    get: (_, name) => granted(name) ? Deno.env.get(name as string) : undefined,
    has: (_, name) => granted(name) && Deno.env.get(name as string) !== undefined,
    ownKeys: () => [],
  });
  const original = Object.getOwnPropertyDescriptor(process, "env")!;
  Object.defineProperty(process, "env", {
    configurable: true,
    enumerable: original.enumerable,
    writable: true,
    value: view,
  });
  try {
    return await load();
  } finally {
    Object.defineProperty(process, "env", original);
  }
}
import type { Logger } from "@logtape/logtape";

/** Connection settings shared by every client. */
export interface KafkaClientOptions {
  /** `host:port` pairs, as a list or one comma-separated string. */
  readonly bootstrapServers: string | readonly string[];
  readonly clientId: string;
  /** Timeout of one request to the broker, in ms. */
  readonly requestTimeoutMs?: number;
}

/** Splits `bootstrap.servers` ("a:9092,b:9092", optionally `PLAINTEXT://a:9092`) into addresses. */
export function parseBootstrapServers(servers: string | readonly string[]): string[] {
  const list = typeof servers === "string" ? servers.split(",") : [...servers];
  return list.map((server) => server.trim().replace(/^[A-Za-z_]+:\/\//, ""))
    .filter((server) => server.length > 0);
}

function baseOptions(options: KafkaClientOptions) {
  const timeout = options.requestTimeoutMs ?? 30_000;
  return {
    clientId: options.clientId,
    bootstrapBrokers: parseBootstrapServers(options.bootstrapServers),
    // `timeout` is what the broker may take (produce acks); `requestTimeout`
    // is how long the client waits for any answer before giving up.
    timeout,
    requestTimeout: timeout,
    connectTimeout: Math.min(timeout, 10_000),
  };
}

// ---------------------------------------------------------------------------
// Partitioning

/**
 * Kafka's murmur2 (`org.apache.kafka.common.utils.Utils.murmur2`), as a
 * signed 32-bit integer.
 */
export function murmur2(data: Uint8Array, start = 0, end = data.length): number {
  const m = 0x5bd1e995;
  const length = end - start;
  let h = 0x9747b28c ^ length;
  const length4 = start + (length & ~3);
  for (let i = start; i < length4; i += 4) {
    let k = data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24);
    k = Math.imul(k, m);
    k ^= k >>> 24;
    k = Math.imul(k, m);
    h = Math.imul(h, m) ^ k;
  }
  switch (length & 3) {
    case 3:
      h ^= data[length4 + 2] << 16;
    // falls through
    case 2:
      h ^= data[length4 + 1] << 8;
    // falls through
    case 1:
      h ^= data[length4];
      h = Math.imul(h, m);
  }
  h ^= h >>> 13;
  h = Math.imul(h, m);
  h ^= h >>> 15;
  return h | 0;
}

/**
 * Where keyless messages go: one partition, so that they keep their order.
 * The events of a table without a primary key carry no key, and spread
 * round robin (or sticky, as the Java producer does) the changes of one row
 * would be applied in another order than they were made.
 */
export const KEYLESS_PARTITION = 0;

/**
 * The partition the Java producer's default partitioner chooses for a key
 * (`BuiltInPartitioner.partitionForKey`: `(murmur2(key) & 0x7fffffff) % n`).
 * (`@platformatic/kafka`'s own default uses `>>> 0`, which differs whenever
 * the hash is negative and `n` is not a power of two.)
 */
export function partitionForKey(key: Uint8Array, partitions: number): number {
  return (murmur2(key) & 0x7fffffff) % partitions;
}

/** {@linkcode partitionForKey} of a message, reading a {@linkcode RangeMessage}'s key in place. */
function partitionOf(message: OutgoingMessage, partitions: number): number {
  if (message instanceof RangeMessage) {
    return (murmur2(message.bytes, message.keyStart, message.keyEnd) & 0x7fffffff) % partitions;
  }
  return partitionForKey(message.key!, partitions);
}

// ---------------------------------------------------------------------------
// Errors

/** Kafka error codes that no amount of retrying fixes. */
const PERMANENT_API_ERRORS = new Set([
  "MESSAGE_TOO_LARGE",
  "RECORD_LIST_TOO_LARGE",
  "INVALID_TOPIC_EXCEPTION",
  "INVALID_RECORD",
  "INVALID_REQUIRED_ACKS",
  "TOPIC_AUTHORIZATION_FAILED",
  "GROUP_AUTHORIZATION_FAILED",
  "CLUSTER_AUTHORIZATION_FAILED",
  "TRANSACTIONAL_ID_AUTHORIZATION_FAILED",
  "SASL_AUTHENTICATION_FAILED",
  "UNSUPPORTED_VERSION",
  "UNSUPPORTED_COMPRESSION_TYPE",
  "INVALID_PARTITIONS",
  "INVALID_REPLICATION_FACTOR",
  "POLICY_VIOLATION",
  "INVALID_CONFIG",
  // Another running consumer took this group.instance.id over.
  "FENCED_INSTANCE_ID",
]);
const PERMANENT_CLIENT_ERRORS = new Set([
  "PLT_KFK_AUTHENTICATION",
  "PLT_KFK_UNSUPPORTED_API",
  "PLT_KFK_UNSUPPORTED_COMPRESSION",
  "PLT_KFK_UNSUPPORTED",
]);

/** Every error in `error`'s tree: itself, its `cause`s and aggregated `errors`. */
function* errorTree(error: unknown, depth = 0): Generator<Record<string, unknown>> {
  if (depth > 8 || typeof error !== "object" || error === null) return;
  const node = error as Record<string, unknown>;
  yield node;
  if (Array.isArray(node.errors)) {
    for (const inner of node.errors) yield* errorTree(inner, depth + 1);
  }
  if (node.cause !== undefined) yield* errorTree(node.cause, depth + 1);
}

/**
 * True when a Kafka error cannot go away by itself (authorization, a message
 * too large, an invalid topic name, an unsupported feature). Connection
 * losses, timeouts, leader changes and rebalances are not permanent.
 */
export function isPermanentKafkaError(error: unknown): boolean {
  for (const node of errorTree(error)) {
    if (typeof node.apiId === "string" && PERMANENT_API_ERRORS.has(node.apiId)) return true;
    if (typeof node.code === "string" && PERMANENT_CLIENT_ERRORS.has(node.code)) return true;
  }
  return false;
}

/** True when `error` carries the Kafka error code `apiId` (e.g. `TOPIC_ALREADY_EXISTS`). */
export function hasKafkaErrorCode(error: unknown, apiId: string): boolean {
  for (const node of errorTree(error)) if (node.apiId === apiId) return true;
  return false;
}

/** The most telling message in a Kafka error tree, for logs and error messages. */
export function kafkaErrorMessage(error: unknown): string {
  const messages: string[] = [];
  for (const node of errorTree(error)) {
    const message = typeof node.message === "string" ? node.message : undefined;
    const detail = typeof node.apiId === "string" ? `${node.apiId}: ${message}` : message;
    if (detail && !messages.includes(detail)) messages.push(detail);
  }
  return messages.length > 0 ? messages.join("; ") : String(error);
}

// ---------------------------------------------------------------------------
// Topic names

const TOPIC_NAME = /^[A-Za-z0-9._-]{1,249}$/;

/** Why `topic` is not a legal Kafka topic name, or undefined when it is. */
export function invalidTopicReason(topic: string): string | undefined {
  if (topic === "." || topic === "..") return `"${topic}" is not allowed as a topic name`;
  if (!TOPIC_NAME.test(topic)) {
    return `topic names are 1 to 249 characters of [A-Za-z0-9._-]: current value is ${
      JSON.stringify(topic)
    }`;
  }
  return undefined;
}

// ---------------------------------------------------------------------------
// Admin

/** How to create a topic; -1 means the broker's default. */
export interface TopicSettings {
  readonly partitions: number;
  readonly replicationFactor: number;
  /** Topic configs, such as `cleanup.policy`. */
  readonly configs?: Readonly<Record<string, string>>;
}

/** Creates and lists topics. */
export class KafkaAdmin {
  readonly #options: KafkaClientOptions;
  #admin: Promise<Admin> | undefined;

  constructor(options: KafkaClientOptions) {
    this.#options = options;
  }

  #client(): Promise<Admin> {
    this.#admin ??= kafkaLibrary().then(({ Admin }) => new Admin(baseOptions(this.#options)));
    return this.#admin;
  }

  /** Creates `topic` unless it exists. Returns true when this call created it. */
  async createTopic(topic: string, settings: TopicSettings): Promise<boolean> {
    try {
      await (await this.#client()).createTopics({
        topics: [topic],
        partitions: settings.partitions,
        replicas: settings.replicationFactor,
        configs: Object.entries(settings.configs ?? {}).map(([name, value]) => ({ name, value })),
      });
      return true;
    } catch (error) {
      if (hasKafkaErrorCode(error, "TOPIC_ALREADY_EXISTS")) return false;
      throw error;
    }
  }

  /** Topic names in the cluster, without internal topics. */
  async listTopics(): Promise<string[]> {
    return await (await this.#client()).listTopics();
  }

  /** Partition count and topic id of each existing topic among `topics`. */
  async describeTopics(
    topics: readonly string[],
  ): Promise<Map<string, { id: string; partitions: number }>> {
    const result = new Map<string, { id: string; partitions: number }>();
    if (topics.length === 0) return result;
    const admin = await this.#client();
    const metadata = await admin.metadata({ topics: [...topics], forceUpdate: true });
    for (const [name, topic] of metadata.topics) {
      result.set(name, { id: topic.id, partitions: topic.partitionsCount });
    }
    return result;
  }

  /**
   * The offset of each partition of `topics` at `at`: the first offset
   * (`earliest`), the end (`latest`), or the first record stamped at or after
   * a time (the end when none is). Keys are `topic:partition`.
   */
  async listOffsets(
    topics: readonly string[],
    at: "earliest" | "latest" | Date,
  ): Promise<Map<string, bigint>> {
    const described = await this.describeTopics(topics);
    const missing = topics.filter((topic) => !described.has(topic));
    if (missing.length > 0) throw new Error(`No such topic: ${missing.join(", ")}`);
    const request = (timestamp: bigint) =>
      [...described].map(([name, { partitions }]) => ({
        name,
        partitions: Array.from({ length: partitions }, (_, partitionIndex) => ({
          partitionIndex,
          timestamp,
        })),
      }));
    const admin = await this.#client();
    const stamp = at === "earliest" ? -2n : at === "latest" ? -1n : BigInt(at.getTime());
    const found = await admin.listOffsets({ topics: request(stamp) });
    const ends = at instanceof Date ? await admin.listOffsets({ topics: request(-1n) }) : [];
    const result = new Map<string, bigint>();
    for (const topic of ends) {
      for (const p of topic.partitions) result.set(key(topic.name, p.partitionIndex), p.offset);
    }
    for (const topic of found) {
      for (const p of topic.partitions) {
        // No record at or after the time: the partition's end.
        if (p.offset >= 0n) result.set(key(topic.name, p.partitionIndex), p.offset);
      }
    }
    return result;
  }

  /** A consumer group's committed next-offsets for `topics`, keyed `topic:partition`. */
  async groupOffsets(groupId: string, topics: readonly string[]): Promise<Map<string, bigint>> {
    const admin = await this.#client();
    const groups = await admin.listConsumerGroupOffsets({ groups: [groupId] });
    const result = new Map<string, bigint>();
    for (const group of groups) {
      for (const topic of group.topics) {
        if (!topics.includes(topic.name)) continue;
        for (const p of topic.partitions) {
          if (p.committedOffset >= 0n) {
            result.set(key(topic.name, p.partitionIndex), p.committedOffset);
          }
        }
      }
    }
    return result;
  }

  /**
   * Sets a consumer group's committed offsets (the group must have no active
   * member: the broker refuses otherwise).
   */
  async alterGroupOffsets(groupId: string, positions: Iterable<PartitionPosition>): Promise<void> {
    const byTopic = new Map<string, { partition: number; offset: bigint }[]>();
    for (const { topic, partition, offset } of positions) {
      byTopic.set(topic, [...(byTopic.get(topic) ?? []), { partition, offset }]);
    }
    if (byTopic.size === 0) return;
    await (await this.#client()).alterConsumerGroupOffsets({
      groupId,
      topics: [...byTopic].map(([name, partitionOffsets]) => ({ name, partitionOffsets })),
    });
  }

  /** The client id and host of each member of consumer group `groupId` (none: nobody consumes). */
  async groupMembers(groupId: string): Promise<{ clientId: string; host: string }[]> {
    const groups = await (await this.#client()).describeGroups({ groups: [groupId] });
    const group = groups.get(groupId);
    return [...(group?.members.values() ?? [])].map((member) => ({
      clientId: member.clientId,
      host: member.clientHost,
    }));
  }

  /** Forgets a consumer group's committed offsets of the given partitions. */
  async deleteGroupOffsets(groupId: string, partitions: readonly TopicPartition[]): Promise<void> {
    const byTopic = new Map<string, number[]>();
    for (const { topic, partition } of partitions) {
      byTopic.set(topic, [...(byTopic.get(topic) ?? []), partition]);
    }
    if (byTopic.size === 0) return;
    await (await this.#client()).deleteConsumerGroupOffsets({
      groupId,
      topics: [...byTopic].map(([name, partitionIndexes]) => ({ name, partitionIndexes })),
    });
  }

  /** Closes the admin client's connections. */
  async close(): Promise<void> {
    if (this.#admin) await (await this.#admin).close();
  }

  /** Same as {@linkcode KafkaAdmin.close}, for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

// ---------------------------------------------------------------------------
// Producer

/** A header value: text (UTF-8) or raw bytes. */
export type HeaderValue = string | Uint8Array;

/** One message to produce. A null value is a tombstone. */
export interface OutgoingMessage {
  readonly topic: string;
  readonly key: Uint8Array | null;
  readonly value: Uint8Array | null;
  /** Header name/value pairs; a name may repeat. */
  readonly headers?: readonly (readonly [string, HeaderValue])[];
  /** Milliseconds since the epoch; the broker's time when omitted. */
  readonly timestamp?: number;
}

/**
 * A message whose key and value are ranges of one shared buffer (the kafka
 * sink's UTF-8 arena) instead of views of their own. A message lives until
 * the broker acknowledges it, long enough for V8 to move it to the old
 * generation; each view was one more object moved and collected there per
 * message. `key` and `value` make views on demand, for the rare readers; the
 * producer reads the ranges.
 */
export class RangeMessage implements OutgoingMessage {
  constructor(
    readonly topic: string,
    /** The buffer holding the key and the value. */
    readonly bytes: Uint8Array,
    /** Where the key starts in {@linkcode bytes}; -1 for a null key. */
    readonly keyStart: number,
    readonly keyEnd: number,
    /** Where the value starts; -1 for a null value (a tombstone). */
    readonly valueStart: number,
    readonly valueEnd: number,
    readonly headers?: readonly (readonly [string, HeaderValue])[],
    readonly timestamp?: number,
  ) {}

  get key(): Uint8Array | null {
    return this.keyStart < 0 ? null : this.bytes.subarray(this.keyStart, this.keyEnd);
  }

  get value(): Uint8Array | null {
    return this.valueStart < 0 ? null : this.bytes.subarray(this.valueStart, this.valueEnd);
  }
}

/** Bytes of a message's key, -1 when null, without making a view of it. */
export function keyLength(message: Pick<OutgoingMessage, "key">): number {
  if (message instanceof RangeMessage) {
    return message.keyStart < 0 ? -1 : message.keyEnd - message.keyStart;
  }
  return message.key ? message.key.length : -1;
}

/** Bytes of a message's value, -1 for a tombstone, without making a view of it. */
export function valueLength(message: Pick<OutgoingMessage, "value">): number {
  if (message instanceof RangeMessage) {
    return message.valueStart < 0 ? -1 : message.valueEnd - message.valueStart;
  }
  return message.value ? message.value.length : -1;
}

/** Producer settings. */
export interface ProducerSettings extends KafkaClientOptions {
  /** Exactly-once per partition within a producer session (needs acks=all). Default true. */
  readonly idempotent?: boolean;
  readonly compression?: "none" | "gzip" | "snappy" | "lz4" | "zstd";
  /** Upper bound of one produce request in bytes; a batch larger than this is split. */
  readonly maxRequestBytes?: number;
}

/** Bytes a message takes in a record batch, roughly (record overhead included). */
export function messageSize(message: OutgoingMessage): number {
  let size = 24 + Math.max(0, keyLength(message)) + Math.max(0, valueLength(message));
  for (const [name, value] of message.headers ?? []) {
    size += 8 + name.length * 3 + (typeof value === "string" ? value.length * 3 : value.length);
  }
  return size;
}

/** The distinct topics of `messages` (without an array per message: runs of one topic are common). */
export function topicsOf(messages: readonly OutgoingMessage[]): Set<string> {
  const topics = new Set<string>();
  let last: string | undefined;
  for (const { topic } of messages) {
    if (topic === last) continue;
    last = topic;
    topics.add(topic);
  }
  return topics;
}

function toBuffer(bytes: Uint8Array): Buffer {
  if (Buffer.isBuffer(bytes)) return bytes;
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/**
 * Requests a producer keeps in flight: with idempotence, the broker keeps
 * order (and spots duplicates) for up to five per partition, as the Java
 * producer's `max.in.flight.requests.per.connection` limit says.
 */
const MAX_REQUESTS_IN_FLIGHT = 5;

/** A request waiting for its turn. */
interface QueuedRequest {
  readonly messages: readonly OutgoingMessage[];
  readonly resolve: () => void;
  readonly reject: (error: unknown) => void;
}

/**
 * Produces with acks=all. `send` resolves once the broker acknowledged every
 * message of the call. Calls may overlap: their requests go out in call
 * order, up to five at a time (one without idempotence), so messages of one
 * partition land in call order (the idempotent producer's sequence numbers
 * make the broker refuse anything else). After a failed request the client is rebuilt, so an
 * idempotent producer never continues with sequence numbers the broker may
 * not have seen; the requests in flight with it fail too.
 *
 * Without compression, each request's messages are grouped per partition
 * and numbered here, in call order, and the record batches are encoded by
 * `_kafka_produce.ts` in one pass; the client gets one message per batch and
 * keeps the producer id, leaders, retries and the connection.
 */
export class KafkaProducer {
  readonly #settings: ProducerSettings;
  #producer: Producer | undefined;
  readonly #queue: QueuedRequest[] = [];
  #active = 0;
  /**
   * The current client finished a request: its idempotent producer id is
   * set up. Until then one request at a time, so that two first requests do
   * not each initialize one.
   */
  #warm = false;

  /**
   * Record batches are encoded by `_kafka_produce.ts` rather than the
   * client (uncompressed batches only; the client compresses): records are
   * grouped per partition and numbered here, and the client sees one
   * message per partition batch.
   */
  readonly #ownBatches: boolean;
  /** Own batches are grouped, numbered and handed to the client one request after the other. */
  #issuing: Promise<unknown> = Promise.resolve();

  constructor(settings: ProducerSettings) {
    this.#settings = settings;
    this.#ownBatches = (settings.compression ?? "none") === "none";
  }

  /**
   * Starts importing the client library (about half a second of CPU) without
   * waiting for it, so that a sink being started loads it while its source
   * connects rather than when the first batch is ready. A failure surfaces
   * at the first send.
   */
  preload(): void {
    const load = this.#ownBatches ? ownProduceEncoding() : kafkaLibrary();
    load.catch(() => {});
  }

  async #client(): Promise<Producer> {
    if (this.#producer) return this.#producer;
    const library = await kafkaLibrary();
    const Producer: ProducerClass = this.#ownBatches
      ? ownBatchProducer(library, await ownProduceEncoding())
      : library.Producer;
    if (this.#producer) return this.#producer;
    const idempotent = this.#settings.idempotent ?? true;
    const options: ProducerOptions<Buffer, Buffer, Buffer, Buffer> = {
      ...baseOptions(this.#settings),
      idempotent,
      acks: -1,
      compression: this.#settings.compression ?? "none",
      // The returned number is reduced modulo the partition count by the client.
      partitioner: (_message, key) => key ? murmur2(key) & 0x7fffffff : KEYLESS_PARTITION,
      retries: 3,
      retryDelay: 250,
    };
    this.#producer = new Producer(options);
    return this.#producer;
  }

  /**
   * Sends `messages` and resolves once all are acknowledged by all in-sync
   * replicas. The requests are queued before this returns, so a later call
   * never overtakes an earlier one.
   */
  send(messages: readonly OutgoingMessage[]): Promise<void> {
    const limit = this.#settings.maxRequestBytes ?? 1_000_000;
    const acks: Promise<void>[] = [];
    let chunk: OutgoingMessage[] = [];
    let bytes = 0;
    for (const message of messages) {
      const size = messageSize(message);
      if (chunk.length > 0 && bytes + size > limit) {
        acks.push(this.#enqueue(chunk));
        chunk = [];
        bytes = 0;
      }
      chunk.push(message);
      bytes += size;
    }
    if (chunk.length > 0) acks.push(this.#enqueue(chunk));
    return Promise.all(acks).then(() => {});
  }

  #enqueue(messages: readonly OutgoingMessage[]): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#queue.push({ messages, resolve, reject });
      this.#next();
    });
  }

  /** Starts queued requests, in order, while fewer than the limit are in flight. */
  #next(): void {
    // Without idempotence a retried request could land after a later one:
    // then one request at a time, like the Java producer with ordering kept.
    const idempotent = this.#settings.idempotent ?? true;
    const limit = this.#warm && idempotent ? MAX_REQUESTS_IN_FLIGHT : 1;
    while (this.#active < limit && this.#queue.length > 0) {
      const request = this.#queue.shift()!;
      this.#active++;
      this.#sendChunk(request.messages).then(request.resolve, request.reject).finally(() => {
        this.#active--;
        this.#next();
      });
    }
  }

  async #sendChunk(messages: readonly OutgoingMessage[]): Promise<void> {
    const producer = this.#producer ?? await this.#client();
    try {
      if (this.#ownBatches) {
        // Registered synchronously, in the order #next starts requests.
        const issued = this.#issuing.then(() => this.#issueOwnBatches(producer, messages));
        this.#issuing = issued.catch(() => {});
        await (await issued).acked;
      } else {
        await producer.send({ messages: messages.map(forClientBatches) });
      }
      if (this.#producer === producer) this.#warm = true;
    } catch (error) {
      if (this.#producer === producer) {
        this.#producer = undefined;
        this.#warm = false;
        // Requests queued behind this one must not overtake it on a new client.
        for (const queued of this.#queue.splice(0)) queued.reject(error);
      }
      await producer.close(true).catch(() => {});
      throw error;
    }
  }

  /**
   * Groups `messages` into one batch per partition (keys on the partition
   * the Java producer picks, keyless messages on partition 0), gives each batch
   * the next sequence numbers of its partition, and hands them to the
   * client. Resolves once the client took them (not acknowledged: `acked`).
   */
  async #issueOwnBatches(
    producer: Producer,
    messages: readonly OutgoingMessage[],
  ): Promise<{ acked: Promise<unknown> }> {
    const topics = [...topicsOf(messages)];
    const { topics: described } = await producer.metadata({ topics });
    const byTopic = new Map<string, PartitionBatch[]>();
    const batches: PartitionBatch[] = [];
    for (const message of messages) {
      let partitions = byTopic.get(message.topic);
      if (!partitions) {
        partitions = [];
        byTopic.set(message.topic, partitions);
      }
      const count = described.get(message.topic)?.partitionsCount;
      if (!count) throw new Error(`No partitions known for topic ${message.topic}`);
      const partition = keyLength(message) >= 0 ? partitionOf(message, count) : KEYLESS_PARTITION;
      let batch = partitions[partition];
      if (!batch) {
        batch = { topic: message.topic, partition, records: [], firstSequence: -1 };
        partitions[partition] = batch;
        batches.push(batch);
      }
      (batch.records as OutgoingMessage[]).push(message);
    }
    if (this.#settings.idempotent ?? true) {
      const next = nextSequences(producer);
      for (const batch of batches) {
        const key = `${batch.topic}:${batch.partition}`;
        const first = next.get(key) ?? 0;
        (batch as { firstSequence: number }).firstSequence = first;
        // Sequence numbers wrap from 2^31 - 1 to 0, as the Java producer's do.
        next.set(key, (first + batch.records.length) % 2147483648);
      }
    }
    // The client's message per batch: partition set, the batch as its value.
    const carriers = batches.map((batch) => ({
      topic: batch.topic,
      partition: batch.partition,
      value: batch,
    }));
    return { acked: producer.send({ messages: carriers as unknown as ClientMessage[] }) };
  }

  /** Closes the producer's connections; call it after the last `send` resolved. */
  async close(): Promise<void> {
    const producer = this.#producer;
    this.#producer = undefined;
    this.#warm = false;
    await producer?.close(true);
  }

  /** Same as {@linkcode KafkaProducer.close}, for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

type ClientMessage = MessageToProduce<Buffer, Buffer, Buffer, Buffer>;

/** A message as the client encodes it: Buffers, a bigint timestamp, headers in a map. */
function forClientBatches(message: OutgoingMessage): ClientMessage {
  return {
    topic: message.topic,
    key: message.key ? toBuffer(message.key) : undefined,
    value: message.value ? toBuffer(message.value) : undefined,
    headers: message.headers ? toHeaderMap(message.headers) : undefined,
    timestamp: message.timestamp === undefined ? undefined : BigInt(message.timestamp),
  };
}

/**
 * The next sequence number of each `topic:partition` a client writes to with
 * its idempotent producer id. A client whose id changes is discarded
 * (`sendChunk`), so the numbers start at 0 with each client.
 */
const sequencesOfClients = new WeakMap<Producer, Map<string, number>>();

function nextSequences(producer: Producer): Map<string, number> {
  let next = sequencesOfClients.get(producer);
  if (!next) {
    next = new Map();
    sequencesOfClients.set(producer, next);
  }
  return next;
}

function toHeaderMap(headers: readonly (readonly [string, HeaderValue])[]): Map<Buffer, Buffer> {
  // Keys are distinct Buffer objects, so a header name may appear twice.
  const map = new Map<Buffer, Buffer>();
  for (const [name, value] of headers) {
    map.set(Buffer.from(name), typeof value === "string" ? Buffer.from(value) : toBuffer(value));
  }
  return map;
}

/**
 * The client's Producer, except that its Produce requests are encoded by
 * `_kafka_produce.ts`: the messages {@linkcode KafkaProducer} gives it are
 * partition batches, already numbered. The client keeps doing the rest: the
 * idempotent producer id and epoch, leaders, the connection, retries (which
 * encode the same batches with the same sequence numbers again) and the
 * parsing of the response.
 */
function ownBatchProducer(library: KafkaLibrary, encoding: ProduceEncoding): ProducerClass {
  ownBatchProducerClass ??= defineOwnBatchProducer(library, encoding);
  return ownBatchProducerClass;
}
type ProducerClass = new (options: ProducerOptions<Buffer, Buffer, Buffer, Buffer>) => Producer;
let ownBatchProducerClass: ProducerClass | undefined;

function defineOwnBatchProducer(library: KafkaLibrary, encoding: ProduceEncoding): ProducerClass {
  const kGetApi: KafkaLibrary["kGetApi"] = library.kGetApi;
  // The request body is the same from v9 to v11; the responses differ.
  const parsers = new Map([
    [9, library.produceV9.parseResponse],
    [10, library.produceV10.parseResponse],
    [11, library.produceV11.parseResponse],
  ]);
  return class OwnBatchProducer extends library.Producer<Buffer, Buffer, Buffer, Buffer> {
    readonly #apis = new Map<number, unknown>();
    /** The idempotent producer id and epoch the first request was written with. */
    #identity: { id: bigint; epoch: number } | undefined;

    override [kGetApi]<A extends unknown[], R>(name: string, callback: Callback<API<A, R>>): void {
      if (name !== "Produce") return super[kGetApi](name, callback);
      super[kGetApi](name, (error, api) => {
        if (error || !api) return callback(error);
        const parse = parsers.get(api.version);
        if (!parse) {
          return callback(
            new library.UnsupportedApiError(
              `The broker speaks Produce v${api.version}; Sluice writes v9 to v11 (Kafka 2.8 or later)`,
            ),
          );
        }
        if (!this.#apis.has(api.version)) {
          const create = (
            acks: number,
            timeout: number,
            carriers: readonly { partition: number; value: PartitionBatch }[],
            options: ProducerIdentity,
          ) => this.#request(acks, timeout, carriers, options);
          this.#apis.set(api.version, library.createAPI(0, api.version, create, parse));
        }
        callback(null, this.#apis.get(api.version) as API<A, R>);
      });
    }

    #request(
      acks: number,
      timeout: number,
      carriers: readonly { partition: number; value: PartitionBatch }[],
      options: ProducerIdentity,
    ) {
      const batches = carriers.map((carrier) => {
        if (carrier.partition !== carrier.value.partition) {
          throw new Error(
            `A batch for partition ${carrier.value.partition} was routed to ${carrier.partition}`,
          );
        }
        return carrier.value;
      });
      if (options.producerId !== undefined) {
        const epoch = options.producerEpoch ?? 0;
        this.#identity ??= { id: options.producerId, epoch };
        if (this.#identity.id !== options.producerId || this.#identity.epoch !== epoch) {
          // The client got itself a new producer id (its recovery from
          // UNKNOWN_PRODUCER_ID or OUT_OF_ORDER_SEQUENCE_NUMBER): the
          // numbers given here belong to the old one. Failing, without
          // retries, discards this client; the batches are written again in
          // order on a new one.
          throw Object.assign(
            new Error("The idempotent producer id changed while batches were in flight"),
            { canRetry: false },
          );
        }
      }
      return encoding.produceRequestWriter(acks, timeout, batches, options);
    }
  };
}

// ---------------------------------------------------------------------------
// Consumer

/** A message read from Kafka, bytes untouched. */
export interface IncomingMessage {
  readonly topic: string;
  readonly partition: number;
  readonly offset: bigint;
  /** Leader epoch of the record batch, for commits (-1 when unknown). */
  readonly leaderEpoch: number;
  readonly key: Uint8Array | null;
  readonly value: Uint8Array | null;
  readonly headers: readonly (readonly [string, Uint8Array])[];
  /** Milliseconds since the epoch. */
  readonly timestamp: number;
}

/** A partition and the next offset to read from it. */
export interface PartitionPosition {
  readonly topic: string;
  readonly partition: number;
  readonly offset: bigint;
  readonly leaderEpoch?: number;
}

/** Which topics a consumer follows. */
export type Subscription =
  | { readonly topics: readonly string[] }
  | { readonly pattern: RegExp };

/** Consumer settings (Java consumer names in comments). */
export interface ConsumerSettings extends KafkaClientOptions {
  readonly groupId: string;
  /**
   * `group.instance.id`: makes this member static (KIP-345). A member that
   * comes back with the same id before its session expired takes over its
   * old member id and partitions at once, without waiting for the dead
   * session or a rebalance.
   */
  readonly groupInstanceId?: string;
  readonly subscription: Subscription;
  /** `auto.offset.reset`: where a partition without a committed offset starts. */
  readonly autoOffsetReset: "earliest" | "latest" | "none";
  /** `max.poll.records`: most messages per poll, and what is buffered ahead of the pipeline. */
  readonly maxPollRecords: number;
  /** `fetch.max.bytes` */
  readonly fetchMaxBytes?: number;
  /** `max.partition.fetch.bytes` */
  readonly maxPartitionFetchBytes?: number;
  /** `fetch.max.wait.ms` */
  readonly fetchMaxWaitMs?: number;
  /** `session.timeout.ms` (default {@linkcode DEFAULT_SESSION_TIMEOUT_MS}) */
  readonly sessionTimeoutMs?: number;
  /** `heartbeat.interval.ms` */
  readonly heartbeatIntervalMs?: number;
  /** `metadata.max.age.ms`: how often to look for new topics matching the subscription. */
  readonly metadataMaxAgeMs?: number;
  readonly logger?: Logger;
}

/** A topic partition. */
export interface TopicPartition {
  readonly topic: string;
  readonly partition: number;
}

/** Called after each rebalance with what was assigned and what was taken away. */
export type AssignmentListener = (change: {
  assigned: readonly TopicPartition[];
  revoked: readonly TopicPartition[];
}) => void;

/**
 * How long a member that stopped heartbeating keeps its partitions. Kafka 4's
 * Java consumer uses 45 s (KIP-735), and KIP-848's broker-side
 * `group.consumer.session.timeout.ms` is 45 s too: a crashed, restarted
 * consumer then waits that long for its partitions. Heartbeats here are
 * sent by a timer, independent of processing, so the pre-3.0 default of
 * 10 s is safe and brings a restarted dynamic member back in about 10 s (a
 * static member, `group.instance.id`, comes back at once).
 */
export const DEFAULT_SESSION_TIMEOUT_MS = 10_000;

const key = (topic: string, partition: number) => `${topic}:${partition}`;
function parseKey(entry: string): TopicPartition {
  const at = entry.lastIndexOf(":");
  return { topic: entry.slice(0, at), partition: Number(entry.slice(at + 1)) };
}

/**
 * A consumer group member that is pulled: {@linkcode poll} returns what has
 * been fetched (waiting a little when nothing has), and fetching stops while
 * `maxPollRecords` messages wait to be pulled. Offsets are committed only by
 * {@linkcode commit}.
 */
export class KafkaConsumer {
  readonly #settings: ConsumerSettings;
  #consumer: Consumer | undefined;
  #consumerReady: Promise<Consumer> | undefined;
  readonly #admin: KafkaAdmin;
  #stream: MessagesStream<Buffer, Buffer, Buffer, Buffer> | undefined;
  #topics: string[] = [];
  #missing = "";
  #topicIds = new Map<string, string>();
  #nextTopicCheck = 0;
  #failure: unknown;
  #wake: (() => void) | undefined;
  #assigned = new Set<string>();
  /** Highest offset committed per partition while it is assigned to us. */
  #committed = new Map<string, bigint>();
  #listeners: AssignmentListener[] = [];
  #closed = false;

  constructor(settings: ConsumerSettings) {
    this.#settings = settings;
    this.#admin = new KafkaAdmin(settings);
  }

  /** The group client, created on first use. */
  #client(): Promise<Consumer> {
    this.#consumerReady ??= kafkaLibrary().then(({ Consumer }) => this.#create(Consumer));
    return this.#consumerReady;
  }

  #create(ConsumerClass: KafkaLibrary["Consumer"]): Consumer {
    const settings = this.#settings;
    const sessionTimeout = settings.sessionTimeoutMs ?? DEFAULT_SESSION_TIMEOUT_MS;
    const consumer = new ConsumerClass<Buffer, Buffer, Buffer, Buffer>({
      // A JoinGroup request legitimately blocks until every member rejoined or
      // a dead one's session expired; a shorter client timeout turns that into
      // an endless join-retry loop (the Java client waits rebalance timeout + 5 s).
      ...baseOptions({
        ...settings,
        requestTimeoutMs: Math.max(settings.requestTimeoutMs ?? 30_000, sessionTimeout + 5_000),
      }),
      groupId: settings.groupId,
      ...(settings.groupInstanceId ? { groupInstanceId: settings.groupInstanceId } : {}),
      autocommit: false,
      sessionTimeout,
      // Members rejoin at once (heartbeats do not wait for processing).
      rebalanceTimeout: sessionTimeout,
      heartbeatInterval: settings.heartbeatIntervalMs ?? 3_000,
      maxWaitTime: settings.fetchMaxWaitMs ?? 500,
      maxBytes: settings.fetchMaxBytes ?? 52_428_800,
      maxBytesPerPartition: settings.maxPartitionFetchBytes ?? 1_048_576,
      highWaterMark: settings.maxPollRecords,
      retries: 3,
      retryDelay: 500,
    });
    consumer.on("consumer:group:join", () => this.#onJoin(consumer.assignments ?? []));
    // A rejoin the client starts by itself (a heartbeat saw a rebalance)
    // reports its failure as an 'error' event, which an emitter without a
    // listener throws: the process ended (seen when a member stopped during
    // a rolling restart). Failing the next poll lets the pipeline retry;
    // while closing, the failure is expected.
    consumer.on("error", (error: unknown) => {
      if (this.#closed) return;
      this.#failure ??= error;
      this.#wake?.();
    });
    this.#consumer = consumer;
    return consumer;
  }

  /** Calls `listener` after every (re)balance. */
  onAssignment(listener: AssignmentListener): void {
    this.#listeners.push(listener);
  }

  /** The partitions assigned to this member now. */
  get assignment(): TopicPartition[] {
    return [...this.#assigned].map(parseKey);
  }

  /** Messages fetched but not pulled yet (bounded by about `maxPollRecords` plus one fetch). */
  get buffered(): number {
    return this.#stream?.readableLength ?? 0;
  }

  /** The followed topics and their ids (a recreated topic gets a new id). */
  get topicIds(): ReadonlyMap<string, string> {
    return this.#topicIds;
  }

  #onJoin(assignments: readonly { topic: string; partitions: number[] }[]): void {
    const now = new Set<string>();
    const assigned: TopicPartition[] = [];
    for (const { topic, partitions } of assignments) {
      for (const partition of partitions) {
        now.add(key(topic, partition));
        if (!this.#assigned.has(key(topic, partition))) {
          assigned.push({ topic, partition });
        }
      }
    }
    const revoked = [...this.#assigned].filter((entry) => !now.has(entry)).map(parseKey);
    for (const { topic, partition } of revoked) this.#committed.delete(key(topic, partition));
    // The client keeps its own fetch position of a partition across
    // rebalances and, when the group has no committed offset for it, resumes
    // from there after the partition comes back: past the messages it fetched
    // and we dropped while the partition was elsewhere, which nobody
    // committed. Forgetting the position makes the client's refresh (which
    // runs after this listener) start from the committed offset, or else
    // from auto.offset.reset.
    const positions = this.#stream?.offsetsToFetch;
    for (const { topic, partition } of [...revoked, ...assigned]) {
      positions?.delete(key(topic, partition));
    }
    this.#assigned = now;
    if (assigned.length === 0 && revoked.length === 0) return;
    this.#settings.logger?.info(
      "Group {group} assignment: {assigned} assigned, {revoked} revoked; now {partitions}",
      {
        group: this.#settings.groupId,
        assigned: assigned.length,
        revoked: revoked.length,
        partitions: [...now].sort().join(", "),
      },
    );
    for (const listener of this.#listeners) listener({ assigned, revoked });
  }

  /**
   * Up to `maxPollRecords` messages. Waits at most `timeoutMs` when none are
   * buffered; returns an empty list on timeout or when `signal` aborts. Throws
   * when the connection to the group failed for good (the caller restarts).
   */
  async poll(timeoutMs: number, signal?: AbortSignal): Promise<IncomingMessage[]> {
    if (Date.now() >= this.#nextTopicCheck) await this.#followTopics();
    const messages = this.#take();
    if (messages.length > 0 || signal?.aborted) return messages;
    await this.#waitForData(timeoutMs, signal);
    return this.#take();
  }

  #take(): IncomingMessage[] {
    if (this.#failure !== undefined) throw this.#failure;
    const stream = this.#stream;
    const out: IncomingMessage[] = [];
    if (!stream) return out;
    while (out.length < this.#settings.maxPollRecords) {
      const message = stream.read() as Message<Buffer, Buffer, Buffer, Buffer> | null;
      if (message === null) break;
      // Data still buffered for a partition that was taken away is not ours to deliver.
      if (!this.#assigned.has(key(message.topic, message.partition))) continue;
      out.push(toIncoming(message));
    }
    return out;
  }

  #waitForData(timeoutMs: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", done);
        this.#wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      signal?.addEventListener("abort", done, { once: true });
      this.#wake = done;
    });
  }

  /** Subscribes to the topics that exist and match; re-subscribes when that set changes. */
  async #followTopics(): Promise<void> {
    const subscription = this.#settings.subscription;
    const existing = await this.#admin.listTopics();
    const wanted = "pattern" in subscription
      ? existing.filter((topic) => subscription.pattern.test(topic))
      : subscription.topics.filter((topic) => existing.includes(topic));
    wanted.sort();
    const missing = "topics" in subscription
      ? subscription.topics.filter((topic) => !existing.includes(topic))
      : [];
    // Look again soon while something is missing, else at the metadata age.
    this.#nextTopicCheck = Date.now() +
      (missing.length > 0 || wanted.length === 0
        ? 1_000
        : this.#settings.metadataMaxAgeMs ?? 300_000);
    if (missing.join("\n") !== this.#missing) {
      this.#missing = missing.join("\n");
      if (missing.length > 0) {
        this.#settings.logger?.info("Waiting for topic(s) {topics} to exist", {
          topics: missing.join(", "),
        });
      }
    }
    if (wanted.join("\n") === this.#topics.join("\n")) return;

    if (this.#stream) {
      this.#settings.logger?.info("Following topics {topics} (was {previous})", {
        topics: wanted.join(", "),
        previous: this.#topics.join(", "),
      });
      const old = this.#stream;
      this.#stream = undefined;
      await old.close().catch(() => {});
    }
    this.#topics = wanted;
    if (wanted.length === 0) return;
    const described = await this.#admin.describeTopics(wanted);
    this.#topicIds = new Map([...described].map(([topic, { id }]) => [topic, id]));
    const stream = await (await this.#client()).consume({
      topics: wanted,
      mode: "committed",
      fallbackMode: this.#settings.autoOffsetReset === "none"
        ? "fail"
        : this.#settings.autoOffsetReset,
      autocommit: false,
      highWaterMark: this.#settings.maxPollRecords,
    });
    // A 'readable' listener puts the stream in paused mode; the client fetches
    // only while its buffer is below highWaterMark.
    stream.on("readable", () => this.#wake?.());
    stream.on("error", (error) => {
      if (this.#stream !== stream) return;
      this.#failure = error;
      this.#wake?.();
    });
    stream.on("close", () => {
      if (this.#stream !== stream || this.#closed) return;
      this.#failure ??= new Error("The Kafka consumer stream ended unexpectedly");
      this.#wake?.();
    });
    this.#stream = stream;
    // The join happened inside consume(); make sure our view of it is current.
    this.#onJoin(this.#consumer?.assignments ?? []);
  }

  /**
   * Commits the given next-offsets for the partitions this member still owns,
   * skipping any that would move a committed offset backwards. Resolves once
   * the coordinator stored them.
   */
  async commit(positions: Iterable<PartitionPosition>): Promise<void> {
    const offsets = [];
    for (const position of positions) {
      const id = key(position.topic, position.partition);
      if (!this.#assigned.has(id)) continue;
      const previous = this.#committed.get(id);
      if (previous !== undefined && previous >= position.offset) continue;
      offsets.push({
        topic: position.topic,
        partition: position.partition,
        offset: position.offset,
        leaderEpoch: position.leaderEpoch ?? -1,
      });
    }
    if (offsets.length === 0) return;
    await (await this.#client()).commit({ offsets });
    for (const offset of offsets) {
      const id = key(offset.topic, offset.partition);
      if (this.#assigned.has(id)) this.#committed.set(id, offset.offset);
    }
  }

  /** The group's committed next-offsets for the given partitions (-1 when none). */
  async committedOffsets(partitions: readonly TopicPartition[]): Promise<Map<string, bigint>> {
    const byTopic = new Map<string, number[]>();
    for (const { topic, partition } of partitions) {
      byTopic.set(topic, [...(byTopic.get(topic) ?? []), partition]);
    }
    const result = new Map<string, bigint>();
    if (byTopic.size === 0) return result;
    const committed = await (await this.#client()).listCommittedOffsets({
      topics: [...byTopic].map(([topic, list]) => ({ topic, partitions: list })),
    });
    for (const [topic, offsets] of committed) {
      offsets.forEach((offset, partition) => result.set(key(topic, partition), offset));
    }
    return result;
  }

  /**
   * The log end offset (high watermark: the offset the next produced message
   * gets) of each given partition, keyed `topic:partition`.
   */
  async endOffsets(partitions: readonly TopicPartition[]): Promise<Map<string, bigint>> {
    const byTopic: Record<string, number[]> = {};
    for (const { topic, partition } of partitions) (byTopic[topic] ??= []).push(partition);
    const result = new Map<string, bigint>();
    if (partitions.length === 0) return result;
    const ends = await (await this.#client()).listOffsets({
      topics: Object.keys(byTopic),
      partitions: byTopic,
    });
    for (const [topic, offsets] of ends) {
      offsets.forEach((offset, partition) => {
        if (offset !== undefined) result.set(key(topic, partition), offset);
      });
    }
    return result;
  }

  /** Leaves the group and closes connections. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#wake?.();
    const stream = this.#stream;
    this.#stream = undefined;
    await stream?.close().catch(() => {});
    // Leaving the group politely lets the others rebalance at once; an
    // unreachable broker must not hold the pipeline's shutdown or restart.
    // A client still being created is waited for, so it can be closed too.
    const consumer = this.#consumerReady
      ? await this.#consumerReady.catch(() => undefined)
      : undefined;
    const closing = consumer
      ? consumer.close().catch(() => consumer.close(true)).catch(() => {})
      : Promise.resolve();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const gaveUp = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(true), 10_000);
    });
    if (await Promise.race([closing.then(() => false), gaveUp])) {
      this.#settings.logger?.warn("Leaving group {group} timed out; its session will expire", {
        group: this.#settings.groupId,
      });
    }
    clearTimeout(timer);
    await this.#admin.close().catch(() => {});
  }

  /** Same as {@linkcode KafkaConsumer.close}, for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

function toIncoming(message: Message<Buffer, Buffer, Buffer, Buffer>): IncomingMessage {
  return {
    topic: message.topic,
    partition: message.partition,
    offset: message.offset,
    leaderEpoch: message.leaderEpoch ?? -1,
    key: message.key ?? null,
    value: message.value ?? null,
    headers: message.headerEntries.map(([name, value]) => [
      name.toString("utf8"),
      value ?? new Uint8Array(0),
    ]),
    timestamp: Number(message.timestamp),
  };
}

// ---------------------------------------------------------------------------
// Original bytes of consumed records

const originals = new WeakMap<object, IncomingMessage>();

/**
 * Remembers the message a record was decoded from, so that a dead letter of
 * that record carries the original key, value and headers byte for byte (as
 * Kafka Connect's dead-letter queue does).
 */
export function rememberOriginal(record: object, message: IncomingMessage): void {
  originals.set(record, message);
}

/** The message `record` was decoded from, when it came from Kafka in this process. */
export function originalMessage(record: object): IncomingMessage | undefined {
  return originals.get(record);
}

/**
 * Every message of `topic` from the log start to the high watermark as it
 * was when the call began, read by a throwaway consumer group that commits
 * nothing. Empty when the topic does not exist.
 */
export async function readWholeTopic(
  options: KafkaClientOptions,
  topic: string,
  timeoutMs = 60_000,
): Promise<IncomingMessage[]> {
  return (await readWholeTopics(options, [topic], timeoutMs)).get(topic)!;
}

/**
 * {@linkcode readWholeTopic} for several topics at once, with one consumer
 * (one group join, which is most of the time a small read takes).
 */
export async function readWholeTopics(
  options: KafkaClientOptions,
  topics: readonly string[],
  timeoutMs = 60_000,
): Promise<Map<string, IncomingMessage[]>> {
  const found = new Map(topics.map((topic) => [topic, [] as IncomingMessage[]]));
  /** The high watermark of each partition that has messages, by `topic:partition`. */
  const remaining = new Map<string, bigint>();
  const admin = new KafkaAdmin(options);
  try {
    const existing = new Set(await admin.listTopics());
    const present = topics.filter((topic) => existing.has(topic));
    if (present.length > 0) {
      const [starts, ends] = await Promise.all([
        admin.listOffsets(present, "earliest"),
        admin.listOffsets(present, "latest"),
      ]);
      for (const [partition, end] of ends) {
        if (end > (starts.get(partition) ?? 0n)) remaining.set(partition, end);
      }
    }
  } finally {
    await admin.close();
  }
  if (remaining.size === 0) return found;
  const reading = [...new Set([...remaining.keys()].map((entry) => parseKey(entry).topic))];
  const consumer = new KafkaConsumer({
    ...options,
    groupId: `sluice-reader-${crypto.randomUUID()}`,
    subscription: { topics: reading },
    autoOffsetReset: "earliest",
    maxPollRecords: 1000,
  });
  const giveUp = Date.now() + timeoutMs;
  try {
    while (remaining.size > 0) {
      if (Date.now() > giveUp) {
        throw new Error(
          `Reading Kafka topics ${reading.join(", ")} took longer than ${timeoutMs} ms`,
        );
      }
      for (const message of await consumer.poll(500)) {
        const partition = key(message.topic, message.partition);
        const end = remaining.get(partition);
        if (end === undefined || message.offset >= end) continue;
        found.get(message.topic)!.push(message);
        if (message.offset + 1n >= end) remaining.delete(partition);
      }
    }
  } finally {
    await consumer.close();
  }
  return found;
}
