/**
 * The `kafka` source's offsets as an operator sees and changes them.
 *
 * A Kafka source's position lives in two places: the consumer group's
 * committed offsets in Kafka (where a new run starts reading) and the
 * pipeline's stored offset (in the sink's table or the worker's file; the
 * records before it are skipped as already written). A change sets both,
 * so that the next run starts where it was asked to and skips nothing
 * before it. It is listed in Kafka Connect's words for sink connectors:
 * `{ "kafka_topic", "kafka_partition" }` → `{ "kafka_offset" }`.
 *
 * @module
 */
import type { OffsetChange, OffsetEntry, PluginContext } from "../api/plugin.ts";
import { OffsetChangeError } from "../api/errors.ts";
import type { JsonValue } from "../api/record.ts";
import { KafkaAdmin, type PartitionPosition } from "../drivers/kafka.ts";
import { pollMetrics } from "../api/metrics.ts";
import { LAG_MESSAGES } from "./_kafka_lag.ts";

/** The stored position of one topic: its id and the next offset per partition. */
export interface TopicPosition {
  id: string | null;
  next: Record<string, number>;
}

/** What the offsets functions need of the source's settings. */
export interface KafkaOffsetSettings {
  readonly bootstrapServers: string | readonly string[];
  readonly requestTimeoutMs?: number;
  readonly groupId?: string;
  readonly subscription: { readonly topics: readonly string[] } | { readonly pattern: RegExp };
}

/** Reads the positions of a stored offset; anything unrecognised is ignored. */
export function storedPositions(offset: JsonValue | undefined): Map<string, TopicPosition> {
  const result = new Map<string, TopicPosition>();
  if (!offset || typeof offset !== "object" || Array.isArray(offset)) return result;
  for (const [topic, value] of Object.entries(offset)) {
    if (!value || typeof value !== "object" || Array.isArray(value)) continue;
    const next = (value as Record<string, JsonValue>).next;
    if (!next || typeof next !== "object" || Array.isArray(next)) continue;
    const id = (value as Record<string, JsonValue>).id;
    const partitions: Record<string, number> = {};
    for (const [partition, position] of Object.entries(next)) {
      if (typeof position === "number" && Number.isSafeInteger(position)) {
        partitions[partition] = position;
      }
    }
    result.set(topic, { id: typeof id === "string" ? id : null, next: partitions });
  }
  return result;
}

function groupOf(settings: KafkaOffsetSettings, context: PluginContext): string {
  return settings.groupId ?? `sluice-${context.pipeline}`;
}

function adminOf(settings: KafkaOffsetSettings, context: PluginContext): KafkaAdmin {
  return new KafkaAdmin({
    bootstrapServers: settings.bootstrapServers,
    clientId: `sluice-${context.pipeline}-offsets`,
    requestTimeoutMs: settings.requestTimeoutMs,
  });
}

/** The topics the source reads now (a pattern is matched against the cluster's topics). */
async function topicsOf(admin: KafkaAdmin, settings: KafkaOffsetSettings): Promise<string[]> {
  const subscription = settings.subscription;
  if ("topics" in subscription) return [...subscription.topics];
  return (await admin.listTopics()).filter((topic) => subscription.pattern.test(topic)).sort();
}

const splitKey = (entry: string) => {
  const at = entry.lastIndexOf(":");
  return { topic: entry.slice(0, at), partition: Number(entry.slice(at + 1)) };
};

/** `GET …/offsets`: per partition, the further of the group's and the stored position. */
export async function listKafkaOffsets(
  settings: KafkaOffsetSettings,
  stored: JsonValue | undefined,
  context: PluginContext,
): Promise<OffsetEntry[]> {
  await using admin = adminOf(settings, context);
  const topics = await topicsOf(admin, settings);
  const next = await admin.groupOffsets(groupOf(settings, context), topics);
  for (const [topic, position] of storedPositions(stored)) {
    for (const [partition, offset] of Object.entries(position.next)) {
      const id = `${topic}:${partition}`;
      if ((next.get(id) ?? -1n) < BigInt(offset)) next.set(id, BigInt(offset));
    }
  }
  return [...next].map(([id, offset]) => ({ ...splitKey(id), offset }))
    .sort((a, b) => a.topic.localeCompare(b.topic) || a.partition - b.partition)
    .map(({ topic, partition, offset }) => ({
      partition: { kafka_topic: topic, kafka_partition: partition },
      offset: { kafka_offset: Number(offset) },
    }));
}

/** Applies `change` to the group's committed offsets and returns the new stored offset. */
export async function changeKafkaOffsets(
  settings: KafkaOffsetSettings,
  stored: JsonValue | undefined,
  change: OffsetChange,
  context: PluginContext,
): Promise<JsonValue | undefined> {
  await using admin = adminOf(settings, context);
  const group = groupOf(settings, context);
  const topics = await topicsOf(admin, settings);
  try {
    if (change.to === "reset") {
      // Forget the group's offsets: the next run starts at auto.offset.reset.
      const committed = await admin.groupOffsets(group, topics);
      await admin.deleteGroupOffsets(group, [...committed.keys()].map(splitKey));
      return undefined;
    }
    const positions = storedPositions(stored);
    const set: PartitionPosition[] = [];
    const forget: { topic: string; partition: number }[] = [];
    if (change.to === "entries") {
      for (const [index, entry] of change.entries.entries()) {
        const { topic, partition, offset } = parseEntry(entry, index);
        if (offset === null) forget.push({ topic, partition });
        else set.push({ topic, partition, offset: BigInt(offset) });
      }
    } else {
      if (topics.length === 0) {
        throw new OffsetChangeError("No topic matches the source's topics.regex; nothing to move");
      }
      const at = change.to === "timestamp" ? change.at : change.to;
      for (const [id, offset] of await admin.listOffsets(topics, at)) {
        set.push({ ...splitKey(id), offset });
      }
    }
    const ids = await admin.describeTopics([...new Set(set.map((p) => p.topic))]);
    const unknown = set.filter((p) => !ids.has(p.topic)).map((p) => p.topic);
    if (unknown.length > 0) {
      throw new OffsetChangeError(`No such topic: ${[...new Set(unknown)].join(", ")}`);
    }
    const beyond = set.filter((p) => p.partition >= ids.get(p.topic)!.partitions);
    if (beyond.length > 0) {
      throw new OffsetChangeError(
        `No such partition: ${beyond.map((p) => `${p.topic} ${p.partition}`).join(", ")}`,
      );
    }
    await admin.deleteGroupOffsets(group, forget);
    await admin.alterGroupOffsets(group, set);
    for (const { topic, partition } of forget) {
      delete positions.get(topic)?.next[String(partition)];
    }
    for (const { topic, partition, offset } of set) {
      const position = positions.get(topic) ?? { id: null, next: {} };
      position.id = ids.get(topic)!.id;
      position.next[String(partition)] = Number(offset);
      positions.set(topic, position);
    }
    const result: Record<string, JsonValue> = {};
    for (const [topic, position] of positions) {
      if (Object.keys(position.next).length > 0) result[topic] = { ...position };
    }
    return Object.keys(result).length > 0 ? result : undefined;
  } catch (error) {
    if (error instanceof OffsetChangeError) throw error;
    throw new OffsetChangeError(
      `Cannot change the offsets of consumer group "${group}": ${(error as Error).message}`,
      { cause: error },
    );
  }
}

/** The members of the source's consumer group, if it has any: they would commit over a change. */
export async function kafkaGroupHolder(
  settings: KafkaOffsetSettings,
  context: PluginContext,
): Promise<string | undefined> {
  await using admin = adminOf(settings, context);
  const group = groupOf(settings, context);
  const members = await admin.groupMembers(group);
  if (members.length === 0) return undefined;
  return `consumer group "${group}" has ${members.length} member(s): ${
    members.map((m) => `${m.clientId} at ${m.host}`).join(", ")
  }`;
}

/** One Kafka Connect entry: `{ kafka_topic, kafka_partition }` → `{ kafka_offset }` or null. */
function parseEntry(entry: OffsetEntry, index: number) {
  const topic = entry.partition?.kafka_topic;
  const partition = entry.partition?.kafka_partition;
  const offset = entry.offset === null ? null : entry.offset?.kafka_offset;
  const where = `offsets[${index}]`;
  if (typeof topic !== "string" || topic === "") {
    throw new OffsetChangeError(`${where}.partition.kafka_topic must be a topic name`);
  }
  if (typeof partition !== "number" || !Number.isSafeInteger(partition) || partition < 0) {
    throw new OffsetChangeError(
      `${where}.partition.kafka_partition must be a partition number: current value is ${
        JSON.stringify(partition)
      }`,
    );
  }
  if (
    offset !== null && (typeof offset !== "number" || !Number.isSafeInteger(offset) || offset < 0)
  ) {
    throw new OffsetChangeError(
      `${where}.offset.kafka_offset must be an offset (0 or more), or the offset null to forget it: current value is ${
        JSON.stringify(offset)
      }`,
    );
  }
  return { topic, partition, offset: offset as number | null };
}

/**
 * The group's lag per partition while no run of the pipeline reads (see
 * `SourcePlugin.watch`): the partition's end offset minus the group's
 * committed offset, every `intervalMs`. Messages the topic's retention
 * deletes before a stopped stream comes back are lost to it, so the lag
 * must stay visible then. Its age would need the message at the committed
 * offset, so `sluice_kafka_consumer_lag_seconds` is not reported meanwhile;
 * nor is a partition the group never committed (nothing says where it
 * would start).
 */
export function watchKafkaLag(
  settings: KafkaOffsetSettings,
  context: PluginContext,
  intervalMs: number,
): { stop(): Promise<void> } {
  if (!context.metrics || intervalMs <= 0) return { stop: () => Promise.resolve() };
  const admin = adminOf(settings, context);
  const group = groupOf(settings, context);
  const polling = pollMetrics({
    metrics: context.metrics,
    logger: context.logger,
    name: "kafka_consumer",
    intervalMs,
    async poll(metrics) {
      const topics = [...(await admin.describeTopics(await topicsOf(admin, settings))).keys()];
      if (topics.length === 0) return;
      const [ends, committed] = await Promise.all([
        admin.listOffsets(topics, "latest"),
        admin.groupOffsets(group, topics),
      ]);
      const lag = metrics.gauge(LAG_MESSAGES);
      for (const [id, next] of committed) {
        const end = ends.get(id);
        if (end !== undefined) lag.set(splitKey(id), Number(end > next ? end - next : 0n));
      }
    },
  });
  return {
    async stop() {
      await polling.stop();
      await admin.close();
    },
  };
}
