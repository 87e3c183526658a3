/**
 * `kafka`: reads topics as a member of a consumer group. It is the source of
 * every Kafka Connect *sink* connector config (a config whose
 * `connector.class` names a sink gets this source with its `topics`).
 *
 * - Offsets are committed to Kafka only after the sink made the records
 *   durable, so a crash re-delivers and never loses. Commits are limited to
 *   the partitions this member still owns and never move backwards.
 * - At most `max.poll.records` messages wait ahead of the pipeline; the
 *   client stops fetching until they are pulled (backpressure).
 * - Rebalances: a new assignment starts from the group's committed offsets;
 *   data still buffered for a revoked partition is dropped, not delivered.
 * - Values and keys are JSON (Kafka Connect's JsonConverter, with or without
 *   `schemas.enable`: a `{schema, payload}` envelope is unwrapped, and its
 *   bytes, decimals and temporal logical types are decoded by the schema,
 *   see `drivers/connect_schema.ts`). Keys must
 *   be JSON objects (`{"id":1}`). Integers beyond 2^53 become decimal
 *   strings, as the PostgreSQL drivers read int8. A message that does not
 *   decode fails in stage `KEY_CONVERTER` or `VALUE_CONVERTER` and follows
 *   `errors.tolerance`; a dead-letter topic receives its original bytes.
 * - The batch offset is `{ topic: { id, next: { partition: offset } } }`.
 *   When the pipeline's offset store (for example the postgres sink's, in the
 *   same transaction as the rows) holds a position ahead of the group's
 *   committed offset, the records before it are skipped: they were written.
 *   The topic id guards against a topic that was deleted and created again.
 *
 * ```json
 * { "name": "citizen-eligibility",
 *   "config": {
 *     "connector.class": "kafka",
 *     "bootstrap.servers": "127.0.0.1:9092",
 *     "topics": "warehouse-to-citizen.eligibility_snapshots",
 *     "group.id": "citizen-portal",
 *     "auto.offset.reset": "earliest",
 *     "max.poll.records": "500",
 *     "errors.tolerance": "all",
 *     "errors.deadletterqueue.topic.name": "dlq-eligibility-snapshots",
 *     "sink.class": "postgres",
 *     "sink.connection.url": "${env:CITIZEN_URL}",
 *     "sink.table": "public.eligibility_hints" } }
 * ```
 *
 * @module
 */
import { z } from "zod";
import { hostPortList, integer, list, positiveInteger } from "../api/options.ts";
import { defineSource, type RecordFailure, type SourceBatch } from "../api/plugin.ts";
import {
  isChangeEvent,
  type JsonValue,
  OLD_KEY_HEADER,
  type Row,
  type SluiceRecord,
  UNAVAILABLE_FIELDS_HEADER,
  unavailableFields,
} from "../api/record.ts";
import { RecordError, RetriableError } from "../api/errors.ts";
import { parseJsonExact } from "../api/json.ts";
import type { Logger } from "@logtape/logtape";
import {
  type ConsumerSettings,
  DEFAULT_SESSION_TIMEOUT_MS,
  type IncomingMessage,
  invalidTopicReason,
  isPermanentKafkaError,
  KafkaConsumer,
  kafkaErrorMessage,
  type PartitionPosition,
  rememberOriginal,
} from "../drivers/kafka.ts";
import { changePosition } from "../drivers/pg_codec.ts";
import {
  changeKafkaOffsets,
  kafkaGroupHolder,
  listKafkaOffsets,
  storedPositions,
  type TopicPosition,
  watchKafkaLag,
} from "./_kafka_offsets.ts";
import {
  type ConnectSchema,
  decodeBySchema,
  unavailableAfterFields,
  withoutUnavailableValues,
} from "../drivers/connect_schema.ts";
import { ConsumerLag } from "./_kafka_lag.ts";
import { AVRO_CONVERTERS, AvroReader, JSON_CONVERTER } from "../drivers/avro_converter.ts";
import { SchemaRegistry } from "../drivers/schema_registry.ts";

const converter = (side: "key" | "value") =>
  z.enum([JSON_CONVERTER, ...AVRO_CONVERTERS] as [string, ...string[]]).default(JSON_CONVERTER)
    .describe(
      `Converter of the ${side}s read: ${JSON_CONVERTER} (JSON, with or without a {schema, payload} envelope), or an Avro converter (${
        AVRO_CONVERTERS.join(", ")
      }) with ${side}.converter.schema.registry.url.`,
    );

const registryUrl = (side: "key" | "value") =>
  z.url().optional().describe(
    `The schema registry's Confluent-compatible API for an Avro ${side}.converter (Apicurio: http://host:port/apis/ccompat/v7); writer schemas are fetched by the id in each message and cached.`,
  );

const fields = z.strictObject({
  "bootstrap.servers": hostPortList().describe(
    "Kafka brokers, host:port[,host:port]; defaults to the worker's --bootstrap / SLUICE_BOOTSTRAP_SERVERS.",
  ),
  "key.converter": converter("key"),
  "value.converter": converter("value"),
  "key.converter.schema.registry.url": registryUrl("key"),
  "value.converter.schema.registry.url": registryUrl("value"),
  topics: list().optional().describe(
    "Topics to read (comma-separated). Give this or topics.regex. Topics that do not exist yet are followed once they appear.",
  ),
  "topics.regex": z.string().optional().describe(
    "Read every topic whose whole name matches this regular expression; new matches are picked up every metadata.max.age.ms.",
  ),
  "group.id": z.string().min(1).optional().describe(
    'Consumer group; default "sluice-<pipeline name>".',
  ),
  "group.instance.id": z.string().regex(/^\S{1,249}$/, {
    error: "must be 1 to 249 characters without spaces",
  }).optional().describe(
    "Static membership (KIP-345): a stable id of this worker's member, one per worker and pipeline. A member restarted with the same id (before session.timeout.ms) gets its partitions back at once, without waiting for its old session or a rebalance. Two running workers must not share one: the newer takes the partitions over. Leaving it out makes a dynamic member, whose restart waits up to session.timeout.ms after a crash.",
  ),
  "client.id": z.string().min(1).optional().describe(
    'Client id in broker logs and metrics; default "sluice-<pipeline name>".',
  ),
  "auto.offset.reset": z.enum(["earliest", "latest", "none"]).default("earliest").describe(
    "Where a partition without a committed offset starts: earliest, latest, or none (fail).",
  ),
  "max.poll.records": positiveInteger().default(500).describe(
    "Most records per batch, and most records fetched ahead of the pipeline.",
  ),
  "fetch.max.bytes": positiveInteger().default(52428800).describe(
    "Most bytes one fetch returns.",
  ),
  "max.partition.fetch.bytes": positiveInteger().default(1048576).describe(
    "Most bytes one fetch returns per partition.",
  ),
  "fetch.max.wait.ms": positiveInteger().default(500).describe(
    "How long the broker may wait for data before answering a fetch.",
  ),
  "session.timeout.ms": positiveInteger().default(DEFAULT_SESSION_TIMEOUT_MS).describe(
    "A member not heard from for this long is removed from the group and its partitions go to the others: after a crash, the restarted (dynamic) member waits about this long. Kafka 4's Java client uses 45000; heartbeats here do not wait for processing, so a shorter one is safe. The broker accepts 6000 to 1800000 by default.",
  ),
  "heartbeat.interval.ms": positiveInteger().default(3000).describe(
    "Heartbeat period; sent independently of processing. Lower than session.timeout.ms (a third of it or less is advised).",
  ),
  "metadata.max.age.ms": positiveInteger().default(300000).describe(
    "How often to look for new topics matching topics.regex.",
  ),
  "request.timeout.ms": positiveInteger().default(30000).describe(
    "Timeout of one request to a broker.",
  ),
  "lag.poll.interval.ms": integer().pipe(z.number().min(0)).default(10000).describe(
    "How often the consumer lag per partition (messages and seconds) is read from the brokers for the metrics (ms); 0: never.",
  ),
});

const schema = fields.superRefine((config, context) => {
  const issue = (path: string, message: string, input: unknown) =>
    context.addIssue({ code: "custom", path: [path], message, input });
  const topics = config.topics ?? [];
  if ((topics.length > 0) === (config["topics.regex"] !== undefined)) {
    issue("topics", "give exactly one of topics and topics.regex", undefined);
  }
  for (const topic of topics) {
    const reason = invalidTopicReason(topic);
    if (reason) issue("topics", reason, topic);
  }
  if (config["topics.regex"] !== undefined) {
    try {
      new RegExp(config["topics.regex"]);
    } catch (error) {
      issue(
        "topics.regex",
        `is not a valid regular expression (${(error as Error).message})`,
        config["topics.regex"],
      );
    }
  }
  for (const side of ["key", "value"] as const) {
    if (
      config[`${side}.converter`] !== JSON_CONVERTER &&
      config[`${side}.converter.schema.registry.url`] === undefined
    ) {
      issue(
        `${side}.converter.schema.registry.url`,
        `is required with the Avro ${side}.converter`,
        undefined,
      );
    }
  }
  if (config["heartbeat.interval.ms"] >= config["session.timeout.ms"]) {
    issue(
      "heartbeat.interval.ms",
      `must be lower than session.timeout.ms (${config["session.timeout.ms"]}): current value is ${
        config["heartbeat.interval.ms"]
      }`,
      config["heartbeat.interval.ms"],
    );
  }
}).transform(settingsOf);

/** The parsed config of the kafka source, in the consumer's own words. */
export type KafkaSourceSettings =
  & Omit<ConsumerSettings, "clientId" | "groupId" | "logger">
  & {
    /** Default: "sluice-<pipeline name>". */
    readonly clientId?: string;
    /** Default: "sluice-<pipeline name>". */
    readonly groupId?: string;
    /** `topics.regex` as given, for `sluice plan`. */
    readonly topicsRegex?: string;
    /** How often the consumer lag is polled for the metrics (ms); 0: never. */
    readonly lagPollIntervalMs: number;
    /** Registry APIs of Avro keys and values; absent: JSON. */
    readonly avroRegistries: { readonly key?: string; readonly value?: string };
  };

function settingsOf(config: z.output<typeof fields>): KafkaSourceSettings {
  const pattern = config["topics.regex"];
  return {
    bootstrapServers: config["bootstrap.servers"],
    clientId: config["client.id"],
    requestTimeoutMs: config["request.timeout.ms"],
    groupId: config["group.id"],
    groupInstanceId: config["group.instance.id"],
    topicsRegex: pattern,
    subscription: pattern !== undefined
      ? { pattern: new RegExp(`^(?:${pattern})$`) }
      : { topics: config.topics ?? [] },
    autoOffsetReset: config["auto.offset.reset"],
    maxPollRecords: config["max.poll.records"],
    fetchMaxBytes: config["fetch.max.bytes"],
    maxPartitionFetchBytes: config["max.partition.fetch.bytes"],
    fetchMaxWaitMs: config["fetch.max.wait.ms"],
    sessionTimeoutMs: config["session.timeout.ms"],
    heartbeatIntervalMs: config["heartbeat.interval.ms"],
    metadataMaxAgeMs: config["metadata.max.age.ms"],
    lagPollIntervalMs: config["lag.poll.interval.ms"],
    avroRegistries: {
      key: config["key.converter"] === JSON_CONVERTER
        ? undefined
        : config["key.converter.schema.registry.url"],
      value: config["value.converter"] === JSON_CONVERTER
        ? undefined
        : config["value.converter.schema.registry.url"],
    },
  };
}

export default defineSource({
  name: "kafka",
  aliases: ["kafka_source"],
  mode: "stream",
  summary: "Reads Kafka topics as a consumer group, committing offsets after the sink wrote.",
  plan(settings) {
    const subscription = settings.subscription;
    const topics = "topics" in subscription ? subscription.topics : undefined;
    return {
      subscribes: { topics, pattern: settings.topicsRegex },
      ...(topics && !settings.topicsRegex ? { emits: topics } : {}),
    };
  },
  config: schema,
  offsets: {
    list: listKafkaOffsets,
    change: changeKafkaOffsets,
    runningElsewhere: kafkaGroupHolder,
  },
  watch(settings, context) {
    return watchKafkaLag(settings, context, settings.lagPollIntervalMs);
  },
  create(settings, context) {
    const name = `sluice-${context.pipeline}`;
    const { topicsRegex: _, lagPollIntervalMs, avroRegistries, ...consumerSettings } = settings;
    const readers: AvroReaders = {
      key: avroRegistries.key ? new AvroReader(new SchemaRegistry(avroRegistries.key)) : undefined,
      value: avroRegistries.value
        ? new AvroReader(new SchemaRegistry(avroRegistries.value))
        : undefined,
    };
    const consumer = new KafkaConsumer({
      ...consumerSettings,
      clientId: settings.clientId ?? name,
      groupId: settings.groupId ?? name,
      logger: context.logger,
    });
    const positions = new Positions(consumer, storedPositions(context.offset));
    const lag = new ConsumerLag();
    consumer.onAssignment(({ revoked }) => lag.revoked(revoked));
    const lagPolling = lag.poll(consumer, context.metrics, lagPollIntervalMs, context.logger);
    // Shown in status: which partitions this process reads now.
    consumer.onAssignment(() => {
      const held = consumer.assignment.map((p) => `${p.topic}:${p.partition}`).sort();
      context.claimed?.(`partitions ${held.join(",") || "none"}`);
    });
    return {
      async *read(): AsyncGenerator<SourceBatch> {
        while (!context.signal.aborted) {
          let messages: IncomingMessage[];
          try {
            messages = await consumer.poll(1000, context.signal);
          } catch (error) {
            throw asPipelineError(error);
          }
          if (messages.length === 0) continue;
          lag.read(messages);
          try {
            await readers.key?.prepare(messages.map((m) => m.key));
            await readers.value?.prepare(messages.map((m) => m.value));
          } catch (error) {
            // The registry's own error says what failed (and is retriable).
            throw error instanceof RetriableError ? error : asPipelineError(error);
          }
          yield positions.batch(messages, context.logger, readers);
        }
      },
      commit: (offset) => commitOffsets(consumer, offset, context.logger, lag),
      async close() {
        await lagPolling.stop();
        await consumer.close();
      },
    };
  },
});

/**
 * What was read per partition (the batch offsets), and the positions the
 * pipeline's offset store says were written already (see the module doc).
 */
class Positions {
  /** Next offset of every partition read and still owned. */
  readonly #next = new Map<string, { topic: string; partition: number; next: bigint }>();
  readonly #written: Map<string, TopicPosition>;
  readonly #consumer: KafkaConsumer;

  constructor(consumer: KafkaConsumer, written: Map<string, TopicPosition>) {
    this.#consumer = consumer;
    this.#written = written;
    consumer.onAssignment(({ revoked }) => {
      for (const { topic, partition } of revoked) this.#next.delete(`${topic}:${partition}`);
    });
  }

  /** Decodes `messages` into a batch whose offset covers them. */
  batch(
    messages: readonly IncomingMessage[],
    logger: Logger,
    readers: AvroReaders = {},
  ): SourceBatch {
    const records: SluiceRecord[] = [];
    const failures: RecordFailure[] = [];
    let skipped = 0;
    for (const message of messages) {
      this.#next.set(`${message.topic}:${message.partition}`, {
        topic: message.topic,
        partition: message.partition,
        next: message.offset + 1n,
      });
      if (this.#alreadyWritten(message)) {
        skipped++;
        continue;
      }
      const decoded = decodeMessage(message, readers);
      rememberOriginal(decoded.record, message);
      if (decoded.error) {
        failures.push({ record: decoded.record, error: decoded.error, stage: decoded.stage });
      } else records.push(decoded.record);
    }
    if (skipped > 0) {
      logger.info(
        "Skipped {count} records the sink had already written (offset store ahead of the group)",
        { count: skipped },
      );
    }
    return { records, failures, offset: this.#snapshot() };
  }

  /** True when `message` is before a position the sink already made durable. */
  #alreadyWritten(message: IncomingMessage): boolean {
    const stored = this.#written.get(message.topic);
    if (!stored) return false;
    const id = this.#consumer.topicIds.get(message.topic);
    if (stored.id !== null && id !== undefined && stored.id !== id) {
      this.#written.delete(message.topic); // the topic was created anew
      return false;
    }
    const next = stored.next[String(message.partition)];
    if (next === undefined) return false;
    if (message.offset < BigInt(next)) return true;
    delete stored.next[String(message.partition)]; // caught up: stop checking
    return false;
  }

  #snapshot(): JsonValue {
    const topics: Record<string, { id: string | null; next: Record<string, number> }> = {};
    for (const { topic, partition, next } of this.#next.values()) {
      topics[topic] ??= { id: this.#consumer.topicIds.get(topic) ?? null, next: {} };
      topics[topic].next[String(partition)] = Number(next);
    }
    return topics;
  }
}

/** Commits a batch offset the sink made durable to the group. */
async function commitOffsets(
  consumer: KafkaConsumer,
  offset: JsonValue,
  logger: Logger,
  lag: ConsumerLag,
): Promise<void> {
  const toCommit: PartitionPosition[] = [];
  for (const [topic, position] of storedPositions(offset)) {
    for (const [partition, next] of Object.entries(position.next)) {
      toCommit.push({ topic, partition: Number(partition), offset: BigInt(next) });
    }
  }
  try {
    await consumer.commit(toCommit);
    for (const { topic, partition, offset } of toCommit) lag.committed(topic, partition, offset);
  } catch (error) {
    if (isPermanentKafkaError(error)) throw asPipelineError(error);
    // The next commit carries these positions again; a rebalance or a
    // broker restart must not stop the pipeline for a missed commit.
    logger.warn("Committing offsets to Kafka failed, will retry: {error}", {
      error: kafkaErrorMessage(error),
    });
  }
}

/** Turns a client failure into what the runtime expects: retriable unless it cannot heal. */
function asPipelineError(error: unknown): Error {
  const message = kafkaErrorMessage(error);
  if (isPermanentKafkaError(error) || /has no committed offset/.test(message)) {
    return new Error(`Kafka consumer failed: ${message}`, { cause: error });
  }
  return new RetriableError(`Kafka consumer failed: ${message}`, { cause: error });
}

const utf8 = new TextDecoder("utf-8", { fatal: true });
const lenientUtf8 = new TextDecoder("utf-8");

type Decoded =
  | { record: SluiceRecord; error?: undefined; stage?: undefined }
  | { record: SluiceRecord; error: Error; stage: string };

/** Avro readers of keys and values (prepared for the batch); absent: JSON. */
export interface AvroReaders {
  readonly key?: AvroReader;
  readonly value?: AvroReader;
}

/**
 * Decodes one message into a record, or a record with the converter error
 * that stops it. With an Avro reader the key or value is Avro in the
 * registry's wire format, and the reader must have prepared its schema.
 */
export function decodeMessage(message: IncomingMessage, readers: AvroReaders = {}): Decoded {
  const headers: Record<string, string> = {};
  for (const [name, value] of message.headers) headers[name] = lenientUtf8.decode(value);
  const base = {
    topic: message.topic,
    headers,
    timestamp: message.timestamp,
    origin: {
      topic: message.topic,
      partition: message.partition,
      offset: Number(message.offset),
    },
  };
  let key: Row | null = null;
  let keyError: Error | undefined;
  if (message.key !== null && message.key.length > 0) {
    try {
      const parsed = readers.key
        ? readers.key.decode(message.key)
        : unwrapEnvelope(parseJson(message.key));
      if (parsed !== null && (typeof parsed !== "object" || Array.isArray(parsed))) {
        throw new Error(
          `keys must be JSON objects such as {"id":1}: got ${JSON.stringify(parsed)}`.slice(0, 300),
        );
      }
      key = parsed as Row | null;
    } catch (error) {
      keyError = error as Error;
    }
  }
  let value: unknown = null;
  let valueError: Error | undefined;
  if (message.value !== null) {
    try {
      if (readers.value) value = readers.value.decode(message.value);
      else {
        const parsed = parseJson(message.value);
        // Debezium's create after a key change: what it did not send is dropped below.
        if (headers[OLD_KEY_HEADER] !== undefined && !headers[UNAVAILABLE_FIELDS_HEADER]) {
          const unavailable = unavailableAfterFields(parsed);
          if (unavailable.length > 0) {
            headers[UNAVAILABLE_FIELDS_HEADER] = JSON.stringify(unavailable);
          }
        }
        value = unwrapEnvelope(parsed);
      }
    } catch (error) {
      valueError = error as Error;
      value = rawText(message.value);
    }
  }
  if (headers[UNAVAILABLE_FIELDS_HEADER] !== undefined && value !== null && !valueError) {
    value = withoutFields(value, unavailableFields({ topic: message.topic, key, value, headers }));
  }
  // The change's source position, decoded once here at the JSON edge.
  const position = isChangeEvent(value) ? changePosition(value.source) : undefined;
  const record: SluiceRecord = position === undefined
    ? { ...base, key, value }
    : { ...base, key, value, position };
  const where = `${message.topic} partition ${message.partition} offset ${message.offset}`;
  if (keyError) {
    return {
      record,
      error: new RecordError(
        `Cannot decode the key of ${where} as ${
          readers.key ? "Avro" : "JSON"
        }: ${keyError.message}`,
        "KEY_CONVERTER",
        { cause: keyError },
      ),
      stage: "KEY_CONVERTER",
    };
  }
  if (valueError) {
    return {
      record,
      error: new RecordError(
        `Cannot decode the value of ${where} as ${
          readers.value ? "Avro" : "JSON"
        }: ${valueError.message}`,
        "VALUE_CONVERTER",
        { cause: valueError },
      ),
      stage: "VALUE_CONVERTER",
    };
  }
  return { record };
}

/**
 * The value without the fields its source did not send: a typed converter
 * wrote them as null, which a sink would store over the kept value.
 */
function withoutFields(value: unknown, fields: readonly string[]): unknown {
  if (fields.length === 0 || typeof value !== "object" || value === null) return value;
  const drop = (row: Row): Row => {
    const kept = { ...row };
    for (const field of fields) delete kept[field];
    return kept;
  };
  if (isChangeEvent(value)) return value.after ? { ...value, after: drop(value.after) } : value;
  return Array.isArray(value) ? value : drop(value as Row);
}

/** The bytes as text when they are UTF-8, else the bytes themselves. */
function rawText(bytes: Uint8Array): string | Uint8Array {
  try {
    return utf8.decode(bytes);
  } catch {
    return bytes;
  }
}

/** JSON.parse of UTF-8 bytes; integers beyond 2^53 are kept exact as decimal strings. */
function parseJson(bytes: Uint8Array): unknown {
  return parseJsonExact(utf8.decode(bytes));
}

/**
 * `{schema, payload}` (JsonConverter with schemas.enable=true) → the payload,
 * decoded by its schema (bytes, decimals, temporal logical types).
 */
function unwrapEnvelope(value: unknown): unknown {
  if (value === null || typeof value !== "object" || Array.isArray(value)) return value;
  const keys = Object.keys(value);
  if (keys.length === 2 && "schema" in value && "payload" in value) {
    const { schema, payload } = value as { schema: ConnectSchema | null; payload: unknown };
    return schema ? decodeBySchema(schema, payload) : withoutUnavailableValues(payload);
  }
  return withoutUnavailableValues(value);
}
