/**
 * Poison messages on a topic read by the kafka source: with errors.tolerance
 * all they go to the dead-letter topic with their original bytes and Kafka
 * Connect's error headers while the following messages land; with none they
 * stop the pipeline before anything after them is written or committed. A
 * record the kafka sink cannot write (illegal topic, larger than
 * max.request.size) fails alone.
 */
import { runPipeline } from "../../../core/pipeline.ts";
import { MemoryOffsetStore } from "../../../core/offsets.ts";
import { assert, assertEquals, assertMatch } from "../../_assert.ts";
import {
  bytes,
  collector,
  committedOffsets,
  createTopic,
  fixture,
  kafkaSpecs,
  produce,
  readTopic,
  runUntil,
  testWorkerEnvironment,
  text,
  uniqueName,
} from "../../_kafka.ts";
import { deadline } from "../../_wait.ts";

const POISON = '{"id": 1, "name": "unterminated';

/** A one-partition topic holding a valid message, a poison one, then three valid ones. */
async function topicWithPoison(): Promise<string> {
  const topic = uniqueName("poison");
  await createTopic(topic, 1);
  const valid = (id: number) => ({
    topic,
    key: bytes(JSON.stringify({ id })),
    value: bytes(JSON.stringify({ id, name: `n${id}` })),
    headers: [["trace", `t${id}`]] as [string, string][],
  });
  await produce([
    valid(0),
    { ...valid(1), value: bytes(POISON) },
    valid(2),
    valid(3),
    valid(4),
  ]);
  return topic;
}

Deno.test("a message that is not JSON goes to the dead-letter topic while the next ones land", async () => {
  const topic = await topicWithPoison();
  const dlq = uniqueName("dlq");
  const group = uniqueName("poison-group");
  const { name, collector: got } = collector();
  const [spec] = await kafkaSpecs({
    name: uniqueName("poison-all"),
    config: {
      "connector.class": "collect",
      collector: name,
      topics: topic,
      "group.id": group,
      "errors.tolerance": "all",
      "errors.deadletterqueue.topic.name": dlq,
    },
  });
  // The worker's environment: the dead-letter topic writer is wired there.
  await using environment = await testWorkerEnvironment();
  const landed = Promise.all([got.waitFor(4), readTopic(dlq, 1)]);
  const report = await runUntil(spec, landed, { environment });
  assertEquals(report.error, undefined);
  assertEquals(report.stats.deadLettered, 1);
  assertEquals(got.records.map((r) => r.key), [{ id: 0 }, { id: 2 }, { id: 3 }, { id: 4 }]);

  const [letter] = await readTopic(dlq, 1);
  assertEquals(text(letter.key), '{"id":1}');
  assertEquals(text(letter.value), POISON);
  const headers = Object.fromEntries(letter.headers.map(([k, v]) => [k, text(v)]));
  assertEquals(headers["trace"], "t1");
  assertEquals(headers["__connect.errors.topic"], topic);
  assertEquals(headers["__connect.errors.partition"], "0");
  assertEquals(headers["__connect.errors.offset"], "1");
  assertEquals(headers["__connect.errors.stage"], "VALUE_CONVERTER");
  assertEquals(headers["__connect.errors.connector.name"], spec.name);
  assertMatch(
    headers["__connect.errors.exception.message"] ?? "",
    /Cannot decode the value of .* partition 0 offset 1 as JSON/,
  );
  assertEquals(await committedOffsets(group, topic, 1), { "0": 5 });
});

Deno.test("with errors.tolerance none a message that is not JSON stops the pipeline", async () => {
  const topic = await topicWithPoison();
  const group = uniqueName("poison-group");
  const { name, collector: got } = collector();
  const [spec] = await kafkaSpecs({
    name: uniqueName("poison-none"),
    config: { "connector.class": "collect", collector: name, topics: topic, "group.id": group },
  });
  const report = await deadline(
    "the pipeline to stop",
    runPipeline(spec, { offsets: new MemoryOffsetStore() }),
    30_000,
  );
  assertEquals(report.status, "failed");
  assertEquals(report.error?.name, "ToleranceExceededError");
  assertMatch(report.error?.message ?? "", /VALUE_CONVERTER/);
  // The batch holding the poison message was not written, nor committed.
  assert(!got.records.some((r) => (r.key as { id: number }).id >= 1), "nothing after it landed");
  assertEquals(await committedOffsets(group, topic, 1), { "0": -1 });
});

Deno.test("a record a transform fails goes to the dead-letter topic with its original bytes", async () => {
  const source = uniqueName("transform-fail");
  const dlq = uniqueName("dlq");
  // Write two records through the sink; the reader's cast fails on one.
  const [writer] = await kafkaSpecs({
    name: uniqueName("writer"),
    config: {
      "connector.class": "records",
      fixture: fixture([
        { topic: source, key: { id: 1 }, value: { id: 1, n: "12" } },
        { topic: source, key: { id: 2 }, value: { id: 2, n: "not a number" } },
      ]),
      "sink.class": "kafka",
    },
  });
  assertEquals((await runPipeline(writer, { offsets: new MemoryOffsetStore() })).error, undefined);

  const { name, collector: got } = collector();
  const [reader] = await kafkaSpecs({
    name: uniqueName("reader"),
    config: {
      "connector.class": "collect",
      collector: name,
      topics: source,
      transforms: "cast",
      "transforms.cast.type": "org.apache.kafka.connect.transforms.Cast$Value",
      "transforms.cast.spec": "n:int32",
      "errors.tolerance": "all",
      "errors.deadletterqueue.topic.name": dlq,
    },
  });
  await using environment = await testWorkerEnvironment();
  const landed = Promise.all([got.waitFor(1), readTopic(dlq, 1)]);
  const report = await runUntil(reader, landed, { environment });
  assertEquals(report.stats.deadLettered, 1);
  const [letter] = await readTopic(dlq, 1);
  assertEquals(text(letter.key), '{"id":2}');
  assertEquals(text(letter.value), '{"id":2,"n":"not a number"}');
  const headers = Object.fromEntries(letter.headers.map(([k, v]) => [k, text(v)]));
  assertEquals(headers["__connect.errors.stage"], "cast");
  assertEquals(headers["__connect.errors.topic"], source);
});

Deno.test("a record routed to an illegal topic name fails alone in the kafka sink", async () => {
  const good = uniqueName("good");
  const dlq = uniqueName("dlq");
  const [spec] = await kafkaSpecs({
    name: uniqueName("bad-topic"),
    config: {
      "connector.class": "records",
      fixture: fixture([
        { topic: good, key: { id: 1 }, value: { id: 1 } },
        { topic: "not a topic!", key: { id: 2 }, value: { id: 2 } },
      ]),
      "sink.class": "kafka",
      "errors.tolerance": "all",
      "errors.deadletterqueue.topic.name": dlq,
    },
  });
  await using environment = await testWorkerEnvironment();
  const report = await runPipeline(spec, environment);
  assertEquals(report.error, undefined);
  assertEquals([report.stats.written, report.stats.deadLettered], [1, 1]);
  const [letter] = await readTopic(dlq, 1);
  assertEquals([text(letter.key), text(letter.value)], ['{"id":2}', '{"id":2}']);
  const headers = Object.fromEntries(letter.headers.map(([k, v]) => [k, text(v)]));
  assertEquals(headers["__connect.errors.stage"], "sink");
  assertMatch(headers["__connect.errors.exception.message"] ?? "", /topic names are/);
  assertEquals((await readTopic(good, 1)).map((m) => text(m.value)), ['{"id":1}']);
});

Deno.test("a record larger than max.request.size fails alone; the rest lands once each, over several requests", async () => {
  const good = uniqueName("split");
  const dlq = uniqueName("dlq");
  const records = Array.from({ length: 40 }, (_, id) => ({
    topic: good,
    key: { id },
    value: { id, text: (id === 17 ? "x".repeat(5_000) : "y".repeat(150)) + "é" },
  }));
  const [spec] = await kafkaSpecs({
    name: uniqueName("oversize"),
    config: {
      "connector.class": "records",
      fixture: fixture(records),
      "sink.class": "kafka",
      // About ten of the small records per request.
      "sink.max.request.size": "2000",
      "errors.tolerance": "all",
      "errors.deadletterqueue.topic.name": dlq,
    },
  });
  await using environment = await testWorkerEnvironment();
  const report = await runPipeline(spec, environment);
  assertEquals(report.error, undefined);
  assertEquals([report.stats.written, report.stats.deadLettered], [39, 1]);
  const [letter] = await readTopic(dlq, 1);
  assertEquals(text(letter.key), '{"id":17}');
  const headers = Object.fromEntries(letter.headers.map(([k, v]) => [k, text(v)]));
  assertMatch(headers["__connect.errors.exception.message"] ?? "", /larger than max.request.size/);
  const landed = await readTopic(good, 39);
  // Each key once, and every key's record whole.
  assertEquals(
    landed.map((m) => JSON.parse(text(m.key)!).id).sort((a, b) => a - b),
    records.map((r) => r.key.id).filter((id) => id !== 17),
  );
  for (const message of landed) {
    const { id, text: body } = JSON.parse(text(message.value)!);
    assertEquals(body, "y".repeat(150) + "é", `record ${id}`);
  }
});
