/**
 * The kafka sink and the kafka source against the real broker: what one
 * writes the other reads back unchanged and in per-key order; offsets are
 * committed only after the sink wrote; the source reads no further ahead
 * than the pipeline pulls.
 */
import { runPipeline } from "../../core/pipeline.ts";
import { MemoryOffsetStore } from "../../core/offsets.ts";
import type { SluiceRecord } from "../../api/record.ts";
import { KafkaAdmin, KafkaConsumer, partitionForKey } from "../../drivers/kafka.ts";
import { testKafkaBrokers } from "../_services.ts";
import { assert, assertEquals } from "../_assert.ts";
import {
  bytes,
  collector,
  committedOffsets,
  createTopic,
  fixture,
  kafkaSpecs,
  produce,
  runUntil,
  uniqueName,
} from "../_kafka.ts";
import { deadline, waitUntil, waitUntilSteady } from "../_wait.ts";

/** A sink connector config reading `topic` into a collector (the kafka source is implied). */
function collectConfig(topic: string, collectorName: string, extra: Record<string, string> = {}) {
  return {
    name: uniqueName("collect"),
    config: { "connector.class": "collect", topics: topic, collector: collectorName, ...extra },
  };
}

Deno.test("kafka sink to kafka source keeps keys, values, headers, tombstones and per-key order", async () => {
  const topic = uniqueName("roundtrip");
  const records: SluiceRecord[] = [];
  for (let seq = 0; seq < 3000; seq++) {
    const id = seq % 20;
    records.push({
      topic,
      key: { id, region: "Zoë-Ångström ✓ 日本" },
      value: seq % 100 === 99 ? null : {
        id,
        seq,
        amount: "12345678901234567890.123456",
        big: "9223372036854775807",
        when: "2024-02-29T23:59:59.999999+05:30",
        tags: ["a", null, "c"],
        nested: { json: { deep: [1, 2.5, true] } },
        note: seq % 7 === 0 ? null : `row ${seq} \u0000 \u{1F600}`,
      },
      headers: { "x-seq": String(seq), "x-source": "roundtrip ✓" },
    });
  }
  const [writer] = await kafkaSpecs({
    name: uniqueName("writer"),
    config: {
      "connector.class": "records",
      fixture: fixture(records),
      "sink.class": "kafka",
      "sink.topic.creation.default.partitions": "4",
    },
  });
  const written = await runPipeline(writer, { offsets: new MemoryOffsetStore() });
  assertEquals(written.error, undefined);
  assertEquals(written.stats.written, records.length);

  const { name, collector: got } = collector();
  const [reader] = await kafkaSpecs(collectConfig(topic, name, { "max.poll.records": "250" }));
  const report = await runUntil(reader, got.waitFor(records.length));
  assertEquals(report.error, undefined);
  assertEquals(got.records.length, records.length);

  // Same keys, values and headers, in the same order per key.
  const perKey = (list: readonly SluiceRecord[]) => {
    const byKey = new Map<string, unknown[]>();
    for (const record of list) {
      const key = JSON.stringify(record.key);
      byKey.set(key, [...(byKey.get(key) ?? []), [record.value, record.headers]]);
    }
    return byKey;
  };
  assertEquals(perKey(got.records), perKey(records));
  // Tombstones arrive as null values; origins point at the Kafka message.
  assertEquals(got.records.filter((r) => r.value === null).length, 30);
  for (const record of got.records) {
    assertEquals(record.origin?.topic, topic);
    assert(typeof record.origin?.offset === "number" && typeof record.timestamp === "number");
  }
});

Deno.test("the kafka source unwraps {schema, payload} values and keeps large integers exact", async () => {
  const topic = uniqueName("debezium-json");
  await createTopic(topic, 1);
  const payload = {
    before: null,
    after: { id: 9007199254740993, amount: 1.5, name: "x" },
    source: { connector: "postgresql", table: "t" },
    op: "c",
    ts_ms: 1700000000000,
  };
  const withSchema = JSON.stringify({ schema: { type: "struct", fields: [] }, payload })
    .replace('"id":9007199254740992', '"id":9007199254740993');
  await produce([
    {
      topic,
      key: bytes('{"schema":{"type":"struct"},"payload":{"id":9007199254740993}}'),
      value: bytes(withSchema),
    },
    { topic, key: bytes('{"id":2}'), value: bytes('{"plain":true,"n":-12345678901234567890}') },
  ]);
  const { name, collector: got } = collector();
  const [reader] = await kafkaSpecs(collectConfig(topic, name));
  await runUntil(reader, got.waitFor(2));
  assertEquals<unknown[][]>(got.records.map((r) => [r.key, r.value]), [
    [{ id: "9007199254740993" }, {
      ...payload,
      after: { id: "9007199254740993", amount: 1.5, name: "x" },
    }],
    [{ id: 2 }, { plain: true, n: "-12345678901234567890" }],
  ]);
});

Deno.test("the kafka source commits only after the sink wrote: a stop in between re-delivers", async () => {
  const topic = uniqueName("commit");
  const group = uniqueName("commit-group");
  await createTopic(topic, 2);
  await produce(
    Array.from({ length: 100 }, (_, i) => ({
      topic,
      key: bytes(JSON.stringify({ id: i })),
      value: bytes(JSON.stringify({ i })),
    })),
  );

  // The sink writes, then the process "dies" before the offset is committed.
  class CrashingStore extends MemoryOffsetStore {
    override write(): Promise<void> {
      return Promise.reject(new Error("crash between write and commit"));
    }
  }
  const first = collector();
  const [crashing] = await kafkaSpecs(
    collectConfig(topic, first.name, { "group.id": group, "max.poll.records": "30" }),
  );
  const stop = new AbortController();
  const crashed = await deadline(
    "the crash",
    runPipeline(crashing, { offsets: new CrashingStore() }, { signal: stop.signal }),
    30_000,
  );
  assertEquals(crashed.status, "failed");
  assert(first.collector.records.length > 0, "the sink wrote before the crash");
  assertEquals(await committedOffsets(group, topic, 2), { "0": -1, "1": -1 });

  // Restarted: everything is delivered again, then committed.
  const second = collector();
  const [restarted] = await kafkaSpecs(
    collectConfig(topic, second.name, { "group.id": group, "max.poll.records": "30" }),
  );
  await runUntil(restarted, second.collector.waitFor(100));
  assertEquals(
    new Set(second.collector.records.map((r) => (r.value as { i: number }).i)).size,
    100,
  );
  const committed = await committedOffsets(group, topic, 2);
  assertEquals(committed["0"] + committed["1"], 100);

  // And a third run has nothing left to read: it gets only a marker written
  // after the commit to each partition (a partition is read in order).
  const markers = [0, 1].map((partition) => {
    let id = 1000;
    while (partitionForKey(bytes(JSON.stringify({ id })), 2) !== partition) id++;
    return { topic, key: bytes(JSON.stringify({ id })), value: bytes(JSON.stringify({ i: id })) };
  });
  await produce(markers);
  const third = collector();
  const [again] = await kafkaSpecs(
    collectConfig(topic, third.name, { "group.id": group }),
  );
  await runUntil(again, third.collector.waitFor(2));
  assertEquals(
    third.collector.records.map((r) => (r.value as { i: number }).i).sort(),
    markers.map((m) => JSON.parse(new TextDecoder().decode(m.value!)).i).sort(),
  );
});

Deno.test("the kafka source reads no further ahead than the pipeline pulls", async () => {
  const topic = uniqueName("backpressure");
  await createTopic(topic, 2);
  const total = 20_000;
  // Small requests make small record batches: a fetch returns whole batches.
  await produce(
    Array.from({ length: total }, (_, i) => ({
      topic,
      key: bytes(JSON.stringify({ id: i })),
      value: bytes(JSON.stringify({ i, pad: "x".repeat(50) })),
    })),
    { maxRequestBytes: 10_000 },
  );

  // Pipeline level: a stuck sink holds the source back after a few batches.
  const { name, collector: got } = collector();
  const release = Promise.withResolvers<void>();
  got.gate = release.promise;
  const [spec] = await kafkaSpecs(
    collectConfig(topic, name, { "max.poll.records": "100", "queue.max.batches": "2" }),
  );
  const stop = new AbortController();
  const run = runPipeline(spec, { offsets: new MemoryOffsetStore() }, { signal: stop.signal });
  await waitUntil("the first write to reach the stuck sink", () => got.writesStarted > 0);
  // Proves that nothing more is read while the sink is stuck: an interval
  // that starts once the sink is stuck, long enough for several fetches.
  await new Promise((resolve) => setTimeout(resolve, 2000));
  stop.abort();
  release.resolve();
  const report = await run;
  // One batch in the sink, two queued, one waiting to be queued.
  assert(report.stats.read <= 400, `read ${report.stats.read} records while the sink was stuck`);
  assert(report.stats.read >= 100, `read ${report.stats.read}`);

  // Client level: fetched data waiting to be pulled stays bounded.
  const consumer = new KafkaConsumer({
    bootstrapServers: testKafkaBrokers(),
    clientId: "sluice-tests",
    groupId: uniqueName("backpressure-group"),
    subscription: { topics: [topic] },
    autoOffsetReset: "earliest",
    maxPollRecords: 100,
    maxPartitionFetchBytes: 16_384,
  });
  try {
    let first: unknown[] = [];
    await waitUntil("a first poll with messages", async () => {
      first = await consumer.poll(500);
      return first.length > 0;
    }, { timeoutMs: 30_000, intervalMs: 0 });
    const buffered = await waitUntilSteady("the messages buffered", () => consumer.buffered, 1000);
    assert(buffered < 1000, `${buffered} messages buffered while nobody pulled (of ${total})`);
  } finally {
    await consumer.close();
  }
});

Deno.test("the kafka source skips what its offset store says the sink already wrote", async () => {
  const topic = uniqueName("stored");
  await createTopic(topic, 1);
  await produce(
    Array.from({ length: 10 }, (_, i) => ({
      topic,
      key: bytes(JSON.stringify({ id: i })),
      value: bytes(JSON.stringify({ i })),
    })),
  );
  const admin = new KafkaAdmin({ bootstrapServers: testKafkaBrokers(), clientId: "sluice-tests" });
  const id = (await admin.describeTopics([topic])).get(topic)!.id;
  await admin.close();

  // As a sink that stores offsets with its rows would have left them: up to 6 written.
  const run = async (topicId: string, expected: number) => {
    const { name, collector: got } = collector();
    const [spec] = await kafkaSpecs(collectConfig(topic, name));
    const offsets = new MemoryOffsetStore();
    await offsets.write(spec.name, { [topic]: { id: topicId, next: { "0": 6 } } });
    const report = await runUntil(spec, got.waitFor(expected), {
      environment: { offsets },
    });
    assertEquals(report.error, undefined);
    return got.records.map((r) => (r.value as { i: number }).i);
  };
  assertEquals(await run(id, 4), [6, 7, 8, 9]);
  // A topic id that does not match (the topic was created anew): nothing is skipped.
  assertEquals(await run("AAAAAAAAAAAAAAAAAAAAAA", 10), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
});
