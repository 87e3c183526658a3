/**
 * Consumer lag of the `kafka` source, per assigned partition, for the
 * metrics (polled every `lag.poll.interval.ms`):
 *
 * - `sluice_kafka_consumer_lag_messages`: the partition's log end offset
 *   (high watermark) minus the group's committed offset, as
 *   `kafka-consumer-groups --describe` shows it. The source commits only
 *   after the sink made records durable, so this counts what is not written
 *   yet.
 * - `sluice_kafka_consumer_lag_seconds`: 0 when the message lag is 0; else
 *   now minus the timestamp of the oldest message read from the partition
 *   and not committed yet (the oldest unprocessed message); when none of the
 *   waiting messages was read yet, now minus the timestamp of the last
 *   committed message, an upper bound until the next message is read. Not
 *   reported while neither is known. Timestamps are the messages' own
 *   (producer `CreateTime` or broker `LogAppendTime`).
 *
 * A partition without a committed offset is measured from the first offset
 * read in this run, or not reported.
 *
 * @module
 */
import type { Logger } from "@logtape/logtape";
import { type MetricDefinition, type PluginMetrics, pollMetrics } from "../api/metrics.ts";
import type { IncomingMessage, KafkaConsumer, TopicPartition } from "../drivers/kafka.ts";

/** A batch's messages of one partition, while not committed. */
interface Pending {
  readonly first: bigint;
  readonly last: bigint;
  readonly firstTimestamp: number;
  readonly lastTimestamp: number;
}

interface PartitionState {
  readonly topic: string;
  readonly partition: number;
  /** Batches read and not committed, in offset order. */
  pending: Pending[];
  /** Timestamp of the last committed message, when known. */
  committedTimestamp?: number;
  /** First offset read in this run (for a partition without a committed offset). */
  firstRead?: bigint;
}

/** Messages after the committed offset, per partition. */
export const LAG_MESSAGES: MetricDefinition = {
  name: "sluice_kafka_consumer_lag_messages",
  help:
    "Messages in the partition after the group's committed offset (log end offset minus committed offset).",
  labels: ["topic", "partition"],
};

/** Age of the oldest message not yet written, per partition. */
export const LAG_SECONDS: MetricDefinition = {
  name: "sluice_kafka_consumer_lag_seconds",
  help:
    "Age of the partition's oldest message not yet written by the sink (by message timestamp); 0 when caught up.",
  labels: ["topic", "partition"],
};

const partitionKey = (topic: string, partition: number) => `${topic}:${partition}`;

/** What was read and committed per partition, and the poll that turns it into gauges. */
export class ConsumerLag {
  readonly #partitions = new Map<string, PartitionState>();
  readonly #reported = new Map<string, { topic: string; partition: number }>();

  /** Notes a batch's messages as read. */
  read(messages: readonly IncomingMessage[]): void {
    const batches = new Map<string, Pending & { topic: string; partition: number }>();
    for (const message of messages) {
      const id = partitionKey(message.topic, message.partition);
      const seen = batches.get(id);
      batches.set(id, {
        topic: message.topic,
        partition: message.partition,
        first: seen?.first ?? message.offset,
        firstTimestamp: seen?.firstTimestamp ?? message.timestamp,
        last: message.offset,
        lastTimestamp: message.timestamp,
      });
    }
    for (const [id, { topic, partition, ...pending }] of batches) {
      const state = this.#state(id, topic, partition);
      state.firstRead ??= pending.first;
      state.pending.push(pending);
    }
  }

  /** Notes that everything before `next` in the partition was committed. */
  committed(topic: string, partition: number, next: bigint): void {
    const state = this.#partitions.get(partitionKey(topic, partition));
    if (!state) return;
    while (state.pending.length > 0 && state.pending[0].last < next) {
      state.committedTimestamp = state.pending.shift()!.lastTimestamp;
    }
  }

  /** Forgets partitions taken away by a rebalance. */
  revoked(partitions: readonly TopicPartition[]): void {
    for (const { topic, partition } of partitions) {
      this.#partitions.delete(partitionKey(topic, partition));
    }
  }

  /** Polls the brokers every `intervalMs` and sets the gauges. */
  poll(
    consumer: KafkaConsumer,
    metrics: PluginMetrics | undefined,
    intervalMs: number,
    logger: Logger,
    now: () => number = Date.now,
  ): { stop(): Promise<void> } {
    return pollMetrics({
      metrics,
      logger,
      name: "kafka_consumer",
      intervalMs,
      poll: async (metrics) => {
        const messages = metrics.gauge(LAG_MESSAGES);
        const seconds = metrics.gauge(LAG_SECONDS);
        const assignment = consumer.assignment;
        const [ends, committed] = await Promise.all([
          consumer.endOffsets(assignment),
          consumer.committedOffsets(assignment),
        ]);
        const shown = new Set<string>();
        for (const { topic, partition } of assignment) {
          const id = partitionKey(topic, partition);
          const labels = { topic, partition };
          const end = ends.get(id);
          const state = this.#partitions.get(id);
          let from = committed.get(id) ?? -1n;
          if (from < 0n) from = state?.firstRead ?? -1n;
          if (end === undefined || from < 0n) continue;
          const behind = end > from ? end - from : 0n;
          messages.set(labels, Number(behind));
          shown.add(id);
          const oldest = state?.pending[0]?.firstTimestamp ?? state?.committedTimestamp;
          if (behind === 0n) seconds.set(labels, 0);
          else if (oldest !== undefined) seconds.set(labels, Math.max(0, (now() - oldest) / 1000));
          else seconds.remove(labels);
        }
        for (const [id, labels] of this.#reported) {
          if (shown.has(id)) continue;
          messages.remove(labels);
          seconds.remove(labels);
        }
        this.#reported.clear();
        for (const id of shown) {
          const at = id.lastIndexOf(":");
          this.#reported.set(id, { topic: id.slice(0, at), partition: Number(id.slice(at + 1)) });
        }
      },
    });
  }

  #state(id: string, topic: string, partition: number): PartitionState {
    let state = this.#partitions.get(id);
    if (!state) {
      state = { topic, partition, pending: [] };
      this.#partitions.set(id, state);
    }
    return state;
  }
}
