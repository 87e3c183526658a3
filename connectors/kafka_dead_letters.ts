/**
 * The dead-letter topic (`errors.deadletterqueue.topic.name`) read and worked
 * off by `sluice dlq`.
 *
 * A message cannot leave a Kafka topic, so a replay ledger keeps what was
 * done: the compacted companion topic `<topic>.replayed`, keyed by the dead
 * letter's `partition:offset`. A dead letter with a ledger entry (replayed,
 * purged, or failed again and re-dead-lettered as a new message with its
 * attempt count raised) is no longer listed, replayed or counted.
 *
 * @module
 */
import {
  ATTEMPTS_HEADER,
  CHAIN_HEADER,
  deadLetterHeaders,
  type DeadLetterSelection,
  type DeadLetterStore,
  RECORD_TOPIC_HEADER,
  selectsDeadLetter,
  type StoredDeadLetter,
} from "../api/dead_letters.ts";
import { encodeJson } from "../api/json.ts";
import {
  KafkaAdmin,
  type KafkaClientOptions,
  KafkaProducer,
  readWholeTopics,
} from "../drivers/kafka.ts";
import { decodeMessage } from "./kafka.ts";

/** The ledger topic of dead-letter topic `topic`. */
export function ledgerTopicOf(topic: string): string {
  return `${topic}.replayed`;
}

const text = new TextDecoder();
const encoder = new TextEncoder();

function headerOf(headers: Record<string, string> | undefined, name: string) {
  return headers?.[name];
}

function bootstrapOf(config: unknown): string | undefined {
  if (typeof config !== "object" || config === null) return undefined;
  const record = config as Record<string, unknown>;
  const value = record["bootstrap.servers"] ?? record.bootstrapServers;
  return typeof value === "string" && value !== "" ? value : undefined;
}

/**
 * The factory behind `PipelineEnvironment.deadLetterTopicStore`: the
 * worker's Kafka, or else the pipeline's own Kafka source or sink, as for
 * writing dead letters.
 */
export function kafkaDeadLetterStores(
  workerBootstrapServers?: string,
): (
  topic: string,
  spec: { name: string; source: { config: unknown }; sink: { config: unknown } },
) => DeadLetterStore {
  return (topic, spec) => {
    const bootstrap = workerBootstrapServers || bootstrapOf(spec.source.config) ||
      bootstrapOf(spec.sink.config);
    if (!bootstrap) {
      throw new Error(
        `Pipeline "${spec.name}": errors.deadletterqueue.topic.name needs Kafka; set bootstrap.servers for the worker`,
      );
    }
    return kafkaDeadLetterStore(bootstrap, topic);
  };
}

/** Opens the dead-letter topic `topic` on `bootstrapServers` as a store. */
export function kafkaDeadLetterStore(bootstrapServers: string, topic: string): DeadLetterStore {
  const client: KafkaClientOptions = { bootstrapServers, clientId: "sluice-dlq" };
  const ledger = ledgerTopicOf(topic);
  let producer: KafkaProducer | undefined;
  let ledgerReady: Promise<unknown> | undefined;

  const mark = async (ids: readonly string[], state: string) => {
    ledgerReady ??= (async () => {
      const admin = new KafkaAdmin(client);
      try {
        await admin.createTopic(ledger, {
          partitions: 1,
          replicationFactor: -1,
          configs: { "cleanup.policy": "compact" },
        });
      } finally {
        await admin.close();
      }
    })();
    await ledgerReady;
    producer ??= new KafkaProducer(client);
    const at = new Date().toISOString();
    await producer.send(ids.map((id) => ({
      topic: ledger,
      key: encoder.encode(id),
      value: encoder.encode(encodeJson({ state, at })),
    })));
  };

  /** Every live dead letter of the topic (any pipeline): messages without a ledger entry. */
  const live = async (): Promise<StoredDeadLetter[]> => {
    const read = await readWholeTopics(client, [topic, ledger]);
    const messages = read.get(topic)!;
    const done = read.get(ledger)!;
    const gone = new Set<string>();
    for (const entry of done) {
      if (entry.key === null) continue;
      // A tombstone would bring a dead letter back: nobody writes one, but honour it.
      if (entry.value === null) gone.delete(text.decode(entry.key));
      else gone.add(text.decode(entry.key));
    }
    const letters: StoredDeadLetter[] = [];
    for (const message of messages) {
      const id = `${message.partition}:${message.offset}`;
      if (!gone.has(id)) letters.push(letterOf(message, id));
    }
    return letters;
  };

  return {
    description: `Kafka topic ${topic}`,
    async list(pipeline: string, selection: DeadLetterSelection) {
      return (await live()).filter((letter) =>
        ownedBy(letter, pipeline) && selectsDeadLetter(selection, letter)
      );
    },
    async count(pipeline: string) {
      return (await live()).filter((letter) => ownedBy(letter, pipeline)).length;
    },
    async remove(ids) {
      if (ids.length === 0) return 0;
      await mark(ids, "removed");
      return ids.length;
    },
    async failedAgain(again) {
      if (again.length === 0) return;
      producer ??= new KafkaProducer(client);
      // The new dead letter is durable before the old one is marked: a crash
      // between the two leaves both, never neither.
      await producer.send(again.map(({ letter, failure }) => {
        const attempts = letter.attempts + 1;
        const record = failure.record;
        const headers: [string, string][] = [
          ...Object.entries(record.headers ?? {}),
          ...Object.entries(deadLetterHeaders(failure, letter.pipeline)),
          [ATTEMPTS_HEADER, String(attempts)],
          ["__sluice.errors.first.failed.at", letter.failedAt],
        ];
        return {
          topic,
          key: record.key === null ? null : encoder.encode(encodeJson(record.key)),
          value: record.value === null ? null : encoder.encode(encodeJson(record.value)),
          headers,
        };
      }));
      await mark(again.map(({ letter }) => letter.id), "failed again");
    },
    async close() {
      await producer?.close();
    },
  };
}

/**
 * Whether `letter` is one of `pipeline`'s. Without context headers
 * (`errors.deadletterqueue.context.headers.enable` false) a dead letter
 * names no pipeline and counts as one of every pipeline writing the topic.
 */
function ownedBy(letter: StoredDeadLetter, pipeline: string): boolean {
  return letter.pipeline === pipeline || letter.pipeline === "";
}

/** A dead-letter message as a stored dead letter, its record decoded as the kafka source does. */
function letterOf(
  message: Parameters<typeof decodeMessage>[0],
  id: string,
): StoredDeadLetter {
  const decoded = decodeMessage(message);
  const all = decoded.record.headers ?? {};
  const context = (name: string) => headerOf(all, name);
  const headers = Object.fromEntries(
    Object.entries(all).filter(([name]) =>
      !name.startsWith("__connect.errors.") && !name.startsWith("__sluice.errors.")
    ),
  );
  const topic = context(RECORD_TOPIC_HEADER) ?? context("__connect.errors.topic") ?? message.topic;
  const code = context("__sluice.errors.code");
  const trace = context("__connect.errors.exception.stacktrace");
  const { origin: _origin, ...record } = decoded.record;
  return {
    id,
    pipeline: context("__connect.errors.connector.name") ?? "",
    stage: context("__connect.errors.stage") ?? "unknown",
    error: context("__connect.errors.exception.message") ?? "",
    errorClass: context("__connect.errors.exception.class.name") ?? "Error",
    ...(code ? { errorCode: code } : {}),
    ...(trace ? { trace } : {}),
    failedAt: context("__sluice.errors.first.failed.at") ?? context("__sluice.errors.failed.at") ??
      new Date(message.timestamp).toISOString(),
    attempts: Number(context(ATTEMPTS_HEADER) ?? "1") || 1,
    record: { ...record, topic, headers },
    ...(context(CHAIN_HEADER) !== undefined ? { chain: context(CHAIN_HEADER) } : {}),
  };
}
