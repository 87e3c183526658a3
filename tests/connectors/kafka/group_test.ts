/**
 * The kafka source as a consumer group member: two pipelines in one group
 * share the partitions across a rebalance and together read everything once
 * committed; `topics.regex` and topics that do not exist yet are followed.
 */
import { MemoryOffsetStore } from "../../../core/offsets.ts";
import { runPipeline } from "../../../core/pipeline.ts";
import type { SluiceRecord } from "../../../api/record.ts";
import { assert, assertEquals } from "../../_assert.ts";
import {
  bytes,
  collector,
  committedOffsets,
  createTopic,
  kafkaSpecs,
  produce,
  uniqueName,
} from "../../_kafka.ts";
import { waitUntil } from "../../_wait.ts";

function messages(topic: string, from: number, count: number) {
  return Array.from({ length: count }, (_, i) => ({
    topic,
    key: bytes(JSON.stringify({ id: from + i })),
    value: bytes(JSON.stringify({ seq: from + i })),
  }));
}

const seqs = (records: readonly SluiceRecord[]) =>
  new Set(records.map((r) => (r.value as { seq: number }).seq));

Deno.test("two kafka sources in one group share the partitions across a rebalance", async () => {
  const topic = uniqueName("group");
  const group = uniqueName("group-id");
  await createTopic(topic, 4);
  await produce(messages(topic, 0, 2000));
  const member = (collectorName: string) => ({
    name: uniqueName("member"),
    config: {
      "connector.class": "collect",
      collector: collectorName,
      topics: topic,
      "group.id": group,
      "max.poll.records": "50",
      "session.timeout.ms": "6000",
      "heartbeat.interval.ms": "500",
    },
  });
  const a = collector();
  const b = collector();
  // Slow sinks, so that work is left when B arrives.
  a.collector.writeDelayMs = b.collector.writeDelayMs = 100;
  const [specA, specB] = await kafkaSpecs([member(a.name), member(b.name)]);
  const stopA = new AbortController();
  const stopB = new AbortController();
  const runA = runPipeline(specA, { offsets: new MemoryOffsetStore() }, { signal: stopA.signal });
  let runB: ReturnType<typeof runPipeline> | undefined;
  try {
    await a.collector.waitFor(100);
    runB = runPipeline(specB, { offsets: new MemoryOffsetStore() }, { signal: stopB.signal });
    await produce(messages(topic, 2000, 2000));
    await waitUntil(
      "both members together reading all 4000",
      () => new Set([...seqs(a.collector.records), ...seqs(b.collector.records)]).size >= 4000,
      { timeoutMs: 60_000, intervalMs: 200 },
    );
    assert(b.collector.records.length > 0, "the second member got partitions");
    // Let the last commits land, then stop both.
    await waitUntil("the group to commit all 4000", async () => {
      const committed = await committedOffsets(group, topic, 4);
      const sum = Object.values(committed).reduce((total, offset) => total + offset, 0);
      if (sum !== 4000) throw new Error(`committed ${sum}`);
      return true;
    }, { timeoutMs: 30_000, intervalMs: 200 });
  } finally {
    stopA.abort();
    stopB.abort();
  }
  const [reportA, reportB] = await Promise.all([runA, runB!]);
  assertEquals([reportA.error, reportB.error], [undefined, undefined]);
  const committed = await committedOffsets(group, topic, 4);
  assertEquals(Object.values(committed).reduce((sum, offset) => sum + offset, 0), 4000);
});

Deno.test("the kafka source follows topics.regex and topics created after it started", async () => {
  const prefix = uniqueName("rx");
  const missing = `${prefix}-late`;
  const { name, collector: got } = collector();
  const [byRegex, byName] = await kafkaSpecs([
    {
      name: uniqueName("regex"),
      config: {
        "connector.class": "collect",
        collector: name,
        "topics.regex": `${prefix}\\.(one|two)`,
        "metadata.max.age.ms": "1000",
      },
    },
    {
      name: uniqueName("late"),
      config: { "connector.class": "collect", collector: name, topics: missing },
    },
  ]);
  const stop = new AbortController();
  const runs = [byRegex, byName].map((spec) =>
    runPipeline(spec, { offsets: new MemoryOffsetStore() }, { signal: stop.signal })
  );
  try {
    // Both run with nothing to read yet. A source without topics shows no
    // state to wait on (no assignment, no group), so this interval only puts
    // their start before the topics exist. A loaded machine can shorten that
    // lead; the later topic below (created after records arrived) does not
    // depend on it.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    await createTopic(`${prefix}.one`, 1);
    await createTopic(`${prefix}.other`, 1);
    await createTopic(missing, 1);
    await produce([
      ...messages(`${prefix}.one`, 0, 10),
      ...messages(`${prefix}.other`, 100, 10),
      ...messages(missing, 200, 10),
    ]);
    await got.waitFor(20);
    await createTopic(`${prefix}.two`, 1);
    await produce(messages(`${prefix}.two`, 300, 10));
    await got.waitFor(30);
    // A marker on a subscribed topic, written after everything else: once it
    // arrived, a record of the unmatched topic would have arrived too.
    await produce(messages(`${prefix}.one`, 400, 1));
    await got.waitFor(31);
  } finally {
    stop.abort();
  }
  for (const report of await Promise.all(runs)) assertEquals(report.error, undefined);
  const topics = new Set(got.records.map((r) => r.topic));
  assertEquals([...topics].sort(), [`${prefix}-late`, `${prefix}.one`, `${prefix}.two`].sort());
  assertEquals(got.records.length, 31);
});
