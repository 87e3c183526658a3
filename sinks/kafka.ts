/**
 * `kafka`: writes records to Kafka topics, and the Kafka dead-letter topic
 * writer used for `errors.deadletterqueue.topic.name`.
 *
 * Each record goes to `record.topic` (as transforms left it). The key is the
 * JSON of `record.key` and the value the JSON of `record.value`, as Kafka
 * Connect's JsonConverter writes them without schemas (`{"id":1}`); a null
 * value is a tombstone. Headers pass through. Keyed messages land on the
 * partition the Java producer would choose, so every event of one key stays
 * in order. `write` resolves only after all in-sync replicas acknowledged
 * every message of the batch (acks=all, idempotent producer). Missing topics
 * are created with `topic.creation.default.partitions` and
 * `topic.creation.default.replication.factor` (-1: the broker's defaults).
 *
 * A record with an illegal topic name, or too large for one request, fails
 * alone (stage `sink`) and follows `errors.tolerance`; a broker that is down
 * makes the runtime back off and retry the batch.
 *
 * ```json
 * { "name": "warehouse-to-citizen-connector",
 *   "config": {
 *     "connector.class": "postgres_cdc",
 *     "database.hostname": "${env:WAREHOUSE_HOST}",
 *     "database.dbname": "smart_warehouse",
 *     "topic.prefix": "warehouse-cdc",
 *     "sink.class": "kafka",
 *     "sink.bootstrap.servers": "127.0.0.1:9092",
 *     "sink.topic.creation.default.partitions": "6",
 *     "sink.topic.creation.default.replication.factor": "1",
 *     "errors.tolerance": "all",
 *     "errors.deadletterqueue.topic.name": "warehouse-cdc-dlq" } }
 * ```
 *
 * @module
 */
import { z } from "zod";
import { connectEnvelope } from "../drivers/connect_json.ts";
import { encodeJson } from "../api/json.ts";
import type { ConnectSchema } from "../api/schema.ts";
import {
  AVRO_CONVERTERS,
  AvroWriter,
  JSON_CONVERTER,
  type Side,
} from "../drivers/avro_converter.ts";
import { SchemaRegistry } from "../drivers/schema_registry.ts";
import { boolean, hostPortList, integer, positiveInteger } from "../api/options.ts";
import { deadLetterHeaders } from "../api/dead_letters.ts";
import { RecordError, RetriableError } from "../api/errors.ts";
import {
  type DeadLetterWriter,
  defineSink,
  type RecordFailure,
  type SinkBatch,
} from "../api/plugin.ts";
import type { SluiceRecord } from "../api/record.ts";
import { type ArenaLease, Utf8Arena } from "./_utf8_arena.ts";
import {
  type HeaderValue,
  invalidTopicReason,
  isPermanentKafkaError,
  KafkaAdmin,
  kafkaErrorMessage,
  KafkaProducer,
  messageSize,
  originalMessage,
  type OutgoingMessage,
  type TopicSettings,
  topicsOf,
} from "../drivers/kafka.ts";

const brokerDefault = () =>
  integer().pipe(z.number().refine((n) => n === -1 || n >= 1, "must be -1 or at least 1"));

const converter = (side: "key" | "value") =>
  z.string().default(JSON_CONVERTER).superRefine((name, context) => {
    if (name === JSON_CONVERTER || AVRO_CONVERTERS.includes(name)) return;
    context.addIssue({
      code: "custom",
      message: `must be ${JSON_CONVERTER} or ${AVRO_CONVERTERS.join(" or ")}`,
    });
  }).describe(
    `Converter of the ${side}s written: ${JSON_CONVERTER} (Kafka Connect's JSON, the default), or an Avro converter (${
      AVRO_CONVERTERS.join(", ")
    }) with ${side}.converter.schema.registry.url.`,
  );

const registryUrl = (side: "key" | "value") =>
  z.url().optional().describe(
    `The schema registry's Confluent-compatible API for an Avro ${side}.converter (Apicurio: http://host:port/apis/ccompat/v7). The ${side} schema is registered under "<topic>-${side}" and each message is written in the registry's wire format (magic byte 0, 4-byte schema id, Avro binary).`,
  );

const fields = z.strictObject({
  "key.converter": converter("key"),
  "value.converter": converter("value"),
  "key.converter.schema.registry.url": registryUrl("key"),
  "value.converter.schema.registry.url": registryUrl("value"),
  "key.converter.schemas.enable": boolean().default(false).describe(
    'Write keys as {"schema":…,"payload":…} with the key schema the source attached (JsonConverter with schemas.enable=true).',
  ),
  "value.converter.schemas.enable": boolean().default(false).describe(
    'Write values as {"schema":…,"payload":…} with the schema the source attached (postgres_cdc: Debezium\'s envelope schema), for consumers such as the Debezium JDBC sink; default false: plain JSON.',
  ),
  "bootstrap.servers": hostPortList().describe(
    "Kafka brokers, host:port[,host:port]; defaults to the worker's --bootstrap / SLUICE_BOOTSTRAP_SERVERS.",
  ),
  "client.id": z.string().min(1).optional().describe(
    'Client id in broker logs and metrics; default "sluice-<pipeline name>".',
  ),
  "enable.idempotence": boolean().default(true).describe(
    "Idempotent producer: retries inside the client never duplicate or reorder messages. With false, requests go one at a time (order kept), but a request retried after one partition failed writes the other partitions' records again: duplicates, as the broker cannot tell them apart.",
  ),
  "compression.type": z.enum(["none", "gzip", "snappy", "lz4", "zstd"]).default("none").describe(
    "Compression of record batches.",
  ),
  "max.request.size": positiveInteger().default(1048576).describe(
    "Largest produce request in bytes; bigger batches are split, and a single record larger than this fails alone.",
  ),
  "request.timeout.ms": positiveInteger().default(30000).describe(
    "How long to wait for the brokers to acknowledge a request.",
  ),
  "topic.creation.enable": boolean().default(true).describe(
    "Create missing topics (else rely on the broker's auto.create.topics.enable).",
  ),
  "topic.creation.default.partitions": brokerDefault().default(-1).describe(
    "Partitions of topics this sink creates; -1 uses the broker's num.partitions.",
  ),
  "topic.creation.default.replication.factor": brokerDefault().default(-1).describe(
    "Replication factor of topics this sink creates; -1 uses the broker's default.replication.factor.",
  ),
});

const schema = fields.superRefine((config, context) => {
  for (const side of ["key", "value"] as const) {
    const url = config[`${side}.converter.schema.registry.url`];
    if (AVRO_CONVERTERS.includes(config[`${side}.converter`]) && url === undefined) {
      context.addIssue({
        code: "custom",
        path: [`${side}.converter.schema.registry.url`],
        message: `is required with the Avro ${side}.converter`,
        input: url,
      });
    }
  }
});

const encoder = new TextEncoder();

/**
 * How keys and values are written: with their Connect schemas as JSON
 * (`keys`, `values`), or as Avro through a schema registry (`avroKeys`,
 * `avroValues`, which win when set).
 */
export interface SchemaSettings {
  readonly keys: boolean;
  readonly values: boolean;
  readonly avroKeys?: AvroWriter;
  readonly avroValues?: AvroWriter;
}

const SCHEMALESS: SchemaSettings = { keys: false, values: false };

/**
 * The Kafka message for a record: JSON key and value (plain, or JsonConverter's
 * `{schema, payload}` when `schemas` asks), string headers. Throws when a
 * value does not fit its schema.
 */
export function recordToMessage(
  record: SluiceRecord,
  schemas: SchemaSettings = SCHEMALESS,
  arena?: ArenaLease,
): OutgoingMessage {
  const headers = record.headers ? Object.entries(record.headers) : undefined;
  if (arena && !schemas.avroKeys && !schemas.avroValues) {
    // JSON on both sides: both texts go into the arena, as ranges of one buffer.
    return arena.message(
      record.topic,
      record.key === null || record.key === undefined ? null : jsonText(record, "key", schemas),
      record.value === null || record.value === undefined
        ? null
        : jsonText(record, "value", schemas),
      headers,
      record.timestamp,
    );
  }
  return {
    topic: record.topic,
    key: record.key === null || record.key === undefined
      ? null
      : schemas.avroKeys
      ? avroBytes(schemas.avroKeys, record, "key")
      : utf8(jsonText(record, "key", schemas), arena),
    value: record.value === null || record.value === undefined
      ? null
      : schemas.avroValues
      ? avroBytes(schemas.avroValues, record, "value")
      : utf8(jsonText(record, "value", schemas), arena),
    headers,
    timestamp: record.timestamp,
  };
}

/** A side of a record as JSON: plain, or JsonConverter's `{schema, payload}` when `schemas` asks. */
function jsonText(record: SluiceRecord, side: Side, schemas: SchemaSettings): string {
  const withSchema = side === "key" ? schemas.keys : schemas.values;
  return withSchema
    ? connectEnvelope(record.schemas?.[side], record[side])
    : encodeJson(record[side]);
}

function utf8(text: string, arena: ArenaLease | undefined): Uint8Array {
  return arena ? arena.encode(text) : encoder.encode(text);
}

function avroBytes(writer: AvroWriter, record: SluiceRecord, side: Side): Uint8Array {
  const schema = record.schemas?.[side];
  if (!schema) throw new Error(missingSchema(side));
  return writer.encode(record.topic, side, schema, record[side]);
}

const missingSchema = (side: Side) =>
  `Avro needs the ${side}'s Connect schema and the record carries none (postgres_cdc attaches schemas; a transform that reshapes rows drops them)`;

/**
 * Registers the Avro schemas of a batch's records (once per schema and
 * subject; the writer caches). Returns why records whose schema is missing,
 * has no Avro form or was refused cannot be written; throws a
 * `RetriableError` when the registry cannot be reached.
 */
async function prepareAvro(
  records: readonly SluiceRecord[],
  settings: SchemaSettings,
): Promise<Map<SluiceRecord, string>> {
  const failed = new Map<SluiceRecord, string>();
  const refused = new Map<ConnectSchema, Map<string, string>>();
  for (const record of records) {
    for (const side of ["key", "value"] as const) {
      const writer = side === "key" ? settings.avroKeys : settings.avroValues;
      const value = record[side];
      if (!writer || value === null || value === undefined) continue;
      const schema = record.schemas?.[side];
      if (!schema) {
        failed.set(record, missingSchema(side));
        continue;
      }
      if (writer.ready(record.topic, side, schema)) continue;
      const subject = `${record.topic}-${side}`;
      let reason = refused.get(schema)?.get(subject);
      if (reason === undefined) {
        try {
          await writer.prepare(record.topic, side, schema);
          continue;
        } catch (error) {
          if (error instanceof RetriableError) throw error;
          reason = `the ${side} schema cannot be registered as ${subject}: ${
            (error as Error).message
          }`;
          if (!refused.has(schema)) refused.set(schema, new Map());
          refused.get(schema)!.set(subject, reason);
        }
      }
      failed.set(record, reason);
    }
  }
  return failed;
}

/** Creates each topic once per process lifetime of the writer; remembers what exists. */
class TopicCreator {
  readonly #known = new Set<string>();
  readonly #admin: KafkaAdmin;
  readonly #settings: TopicSettings;

  constructor(admin: KafkaAdmin, settings: TopicSettings) {
    this.#admin = admin;
    this.#settings = settings;
  }

  async ensure(topics: Iterable<string>): Promise<string[]> {
    const created: string[] = [];
    for (const topic of topics) {
      if (this.#known.has(topic)) continue;
      if (await this.#admin.createTopic(topic, this.#settings)) created.push(topic);
      this.#known.add(topic);
    }
    return created;
  }
}

/** A failure that the runtime retries, unless Kafka says it cannot heal. */
function kafkaFailure(what: string, error: unknown): Error {
  const message = `${what}: ${kafkaErrorMessage(error)}`;
  return isPermanentKafkaError(error)
    ? new Error(message, { cause: error })
    : new RetriableError(message, { cause: error });
}

export default defineSink({
  name: "kafka",
  aliases: ["kafka_sink"],
  summary:
    "Writes records to Kafka topics, keyed and partitioned like the Java producer (keyless records all on partition 0, in order), acks=all.",
  plan: () => ({ writesTopics: true, destination: "kafka" }),
  config: schema,
  create(config, context) {
    const client = {
      bootstrapServers: config["bootstrap.servers"],
      clientId: config["client.id"] ?? `sluice-${context.pipeline}`,
      requestTimeoutMs: config["request.timeout.ms"],
    };
    const producer = new KafkaProducer({
      ...client,
      idempotent: config["enable.idempotence"],
      compression: config["compression.type"],
      maxRequestBytes: config["max.request.size"],
    });
    producer.preload();
    const avroWriter = (side: Side) => {
      const url = config[`${side}.converter.schema.registry.url`];
      return AVRO_CONVERTERS.includes(config[`${side}.converter`]) && url
        ? new AvroWriter(new SchemaRegistry(url))
        : undefined;
    };
    const schemas: SchemaSettings = {
      keys: config["key.converter.schemas.enable"],
      values: config["value.converter.schemas.enable"],
      avroKeys: avroWriter("key"),
      avroValues: avroWriter("value"),
    };
    const avro = schemas.avroKeys !== undefined || schemas.avroValues !== undefined;
    const admin = config["topic.creation.enable"] ? new KafkaAdmin(client) : undefined;
    const topics = admin
      ? new TopicCreator(admin, {
        partitions: config["topic.creation.default.partitions"],
        replicationFactor: config["topic.creation.default.replication.factor"],
      })
      : undefined;

    const arena = new Utf8Arena();
    // Topic names already checked, so the pattern runs once per topic.
    const validTopics = new Set<string>();
    /** The messages of a batch, and the records that cannot be written (stage `sink`). */
    const encodeBatch = async (batch: SinkBatch, lease: ArenaLease) => {
      const messages: OutgoingMessage[] = [];
      const failures: RecordFailure[] = [];
      const unregistered = avro ? await prepareAvro(batch.records, schemas) : undefined;
      for (const record of batch.records) {
        let reason = validTopics.has(record.topic) ? undefined : invalidTopicReason(record.topic);
        if (!reason && validTopics.size < 10_000) validTopics.add(record.topic);
        reason ??= unregistered?.get(record);
        let message: OutgoingMessage | undefined;
        if (!reason) {
          try {
            message = recordToMessage(record, schemas, lease);
          } catch (error) {
            reason = `the record does not fit its schema: ${(error as Error).message}`;
          }
        }
        const tooLarge = message && messageSize(message) > config["max.request.size"];
        if (message && !tooLarge) {
          messages.push(message);
          continue;
        }
        const why = reason ??
          `the record is larger than max.request.size (${config["max.request.size"]} bytes)`;
        failures.push({
          record,
          error: new RecordError(`Cannot write to Kafka: ${why}`, "sink"),
          stage: "sink",
        });
      }
      return { messages, failures };
    };

    // Writes may overlap (writesInFlight); each is encoded (Avro schemas
    // registered) and issued to the producer only after the previous one
    // was, so their messages keep the order of the calls. Once one failed, the writes already started fail too (none is
    // issued on a fresh client ahead of it), until none is left: the runtime
    // then writes them again, in order.
    let issuing: Promise<unknown> = Promise.resolve();
    let pending = 0;
    let issueError: unknown;
    const issue = async (batch: SinkBatch, lease: ArenaLease) => {
      if (issueError !== undefined) throw issueError;
      try {
        const { messages, failures } = await encodeBatch(batch, lease);
        if (failures.length > 0) await batch.reject(failures);
        if (messages.length === 0) return undefined;
        try {
          const created = await topics?.ensure(topicsOf(messages)) ?? [];
          for (const topic of created) context.logger.info("Created topic {topic}", { topic });
        } catch (error) {
          throw kafkaFailure("Cannot create Kafka topics", error);
        }
        return { acked: producer.send(messages), count: messages.length };
      } catch (error) {
        issueError = error;
        throw error;
      }
    };

    return {
      // Two batches awaiting acknowledgement keep the broker busy while the
      // next one is encoded; every batch more holds ~0.7 KB of live
      // record objects per CDC event (they outlive the young generation and are
      // promoted). Draining a 1M-event backlog: 4 in flight peaked ~10 MB
      // higher than 2 at the same rate.
      writesInFlight: 2,

      async write(batch: SinkBatch) {
        if (pending === 0) issueError = undefined;
        pending++;
        const lease = arena.lease();
        let acknowledged = false;
        try {
          const issued = issuing.then(() => issue(batch, lease));
          issuing = issued.catch(() => {});
          const sent = await issued;
          if (!sent) {
            acknowledged = true; // nothing reached the client
            return { written: 0 };
          }
          try {
            await sent.acked;
          } catch (error) {
            issueError ??= error;
            throw kafkaFailure("Cannot write to Kafka", error);
          }
          acknowledged = true;
          return { written: sent.count };
        } finally {
          // Only acknowledged messages are done with for sure: the client
          // retries from them until then.
          if (acknowledged) lease.release();
          else lease.abandon();
          pending--;
        }
      },

      async close() {
        await producer.close();
        await admin?.close();
      },
    };
  },
});

// ---------------------------------------------------------------------------
// Dead-letter topic

function bootstrapOf(config: unknown): string | undefined {
  if (typeof config !== "object" || config === null) return undefined;
  // A kafka source's settings name it bootstrapServers.
  const record = config as Record<string, unknown>;
  const value = record["bootstrap.servers"] ?? record.bootstrapServers;
  return typeof value === "string" && value !== "" ? value : undefined;
}

/** What the dead-letter topic factory reads of a pipeline (a `PipelineSpec` fits). */
export interface DeadLetterPipeline {
  name: string;
  source: { config: unknown };
  sink: { config: unknown };
  options: {
    "errors.deadletterqueue.topic.replication.factor": number;
    "errors.deadletterqueue.context.headers.enable": boolean;
  };
}

/**
 * The factory behind `errors.deadletterqueue.topic.name` (the runtime's
 * `PipelineEnvironment.deadLetterTopic`). It reaches the worker's Kafka, or
 * else the pipeline's own Kafka source or sink, and creates the topic with
 * one partition and `errors.deadletterqueue.topic.replication.factor`.
 *
 * A dead letter carries the failed record's original key, value and headers
 * (byte for byte when it was read from Kafka), plus Kafka Connect's
 * `__connect.errors.*` headers unless
 * `errors.deadletterqueue.context.headers.enable` is false.
 */
export function kafkaDeadLetterTopics(
  workerBootstrapServers?: string,
): (topic: string, spec: DeadLetterPipeline) => Promise<DeadLetterWriter> {
  return async (topic, spec) => {
    const bootstrap = workerBootstrapServers || bootstrapOf(spec.source.config) ||
      bootstrapOf(spec.sink.config);
    if (!bootstrap) {
      throw new Error(
        `Cannot start pipeline "${spec.name}": errors.deadletterqueue.topic.name needs Kafka; set bootstrap.servers for the worker`,
      );
    }
    const reason = invalidTopicReason(topic);
    if (reason) {
      throw new Error(
        `Cannot start pipeline "${spec.name}": errors.deadletterqueue.topic.name is invalid: ${reason}`,
      );
    }
    const client = { bootstrapServers: bootstrap, clientId: `sluice-${spec.name}-dlq` };
    const admin = new KafkaAdmin(client);
    try {
      await admin.createTopic(topic, {
        partitions: 1,
        replicationFactor: spec.options["errors.deadletterqueue.topic.replication.factor"],
      });
    } catch (error) {
      throw kafkaFailure(`Cannot create the dead-letter topic "${topic}"`, error);
    } finally {
      await admin.close().catch(() => {});
    }
    const producer = new KafkaProducer(client);
    const withContext = spec.options["errors.deadletterqueue.context.headers.enable"];
    return {
      description: `Kafka topic ${topic}`,
      async write(failures, pipeline) {
        const messages = failures.map((failure) =>
          deadLetter(topic, failure, pipeline, withContext)
        );
        try {
          await producer.send(messages);
        } catch (error) {
          throw kafkaFailure(`Cannot write dead letters to Kafka topic "${topic}"`, error);
        }
      },
      close: () => producer.close(),
    };
  };
}

function deadLetter(
  topic: string,
  failure: RecordFailure,
  pipeline: string,
  withContext: boolean,
): OutgoingMessage {
  const original = originalMessage(failure.record);
  const message = original ?? recordToMessage(failure.record);
  const headers: (readonly [string, HeaderValue])[] = [...(message.headers ?? [])];
  if (withContext) headers.push(...Object.entries(deadLetterHeaders(failure, pipeline)));
  return {
    topic,
    key: message.key,
    value: message.value,
    headers,
    timestamp: failure.record.timestamp,
  };
}
