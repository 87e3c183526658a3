/**
 * Keyed messages must land on the partition the Java producer chooses, so
 * that Sluice and Java/Debezium producers writing the same keys agree, and
 * all events of one key stay in order.
 */
import { runPipeline } from "../../../core/pipeline.ts";
import { MemoryOffsetStore } from "../../../core/offsets.ts";
import { murmur2, partitionForKey } from "../../../drivers/kafka.ts";
import { assertEquals } from "../../_assert.ts";
import { bytes, fixture, kafkaSpecs, readTopic, text, uniqueName } from "../../_kafka.ts";

/**
 * Ground truth from the real Java client (kafka-clients 4.2.2, the jar that
 * dev/kafka.ts ensureKafkaJars() caches), printed by a one-file Java program
 * run as `java -cp kafka-clients-4.2.2.jar:slf4j-api.jar Vectors.java`, calling
 * `Utils.murmur2(key.getBytes(UTF_8))` and
 * `BuiltInPartitioner.partitionForKey(keyBytes, n)` for n = 1, 3, 6, 7, 12.
 */
const JAVA_VECTORS: [key: string, murmur2: number, partitions: number[]][] = [
  ["", 275646681, [0, 0, 3, 2, 9]],
  ["a", -1563381124, [0, 1, 4, 5, 4]],
  ["ab", 316155434, [0, 2, 2, 0, 2]],
  ["abc", 479470107, [0, 0, 3, 4, 3]],
  ["abcd", -1323649548, [0, 2, 2, 5, 8]],
  ["abcde", 461995741, [0, 1, 1, 4, 1]],
  ['{"id":1}', -56768732, [0, 0, 0, 3, 0]],
  ['{"id":2}', -1705675864, [0, 1, 4, 5, 4]],
  ['{"id":42}', 486015037, [0, 1, 1, 4, 1]],
  ['{"id":1000000}', -14095689, [0, 2, 5, 3, 11]],
  ['{"citizen_id":"7c9e6679-7425-40de-944b-e07fc1f90ae7"}', 189217111, [0, 1, 1, 6, 7]],
  ['{"family_id":17,"member_no":3}', -1811274247, [0, 1, 1, 3, 1]],
  ['{"name":"Zo\u00eb \u00c5ngstr\u00f6m \u2713 \u65e5\u672c"}', 1434387009, [0, 0, 3, 6, 9]],
  ["k000", 1371640351, [0, 1, 1, 4, 7]],
  ["k099", 779333952, [0, 0, 0, 5, 0]],
  ["\u00ff\u00fe\u00fd", -827240790, [0, 2, 2, 4, 2]],
];
const PARTITION_COUNTS = [1, 3, 6, 7, 12];

Deno.test("murmur2 and partitionForKey give the Java client's values", () => {
  for (const [key, hash, partitions] of JAVA_VECTORS) {
    assertEquals(murmur2(bytes(key)), hash, `murmur2 of ${JSON.stringify(key)}`);
    assertEquals(
      PARTITION_COUNTS.map((n) => partitionForKey(bytes(key), n)),
      partitions,
      `partitions of ${JSON.stringify(key)}`,
    );
  }
});

Deno.test("murmur2 over a range of a larger buffer equals murmur2 of those bytes alone", () => {
  for (const [key, hash] of JAVA_VECTORS) {
    const inner = bytes(key);
    // Bytes before and after the key, which the range must leave out.
    const padded = new Uint8Array(inner.length + 7).fill(0xab);
    padded.set(inner, 3);
    assertEquals(murmur2(padded, 3, 3 + inner.length), hash, `murmur2 of ${JSON.stringify(key)}`);
  }
});

Deno.test("the kafka sink puts each key on the partition the Java producer chooses", async () => {
  // Seven partitions: not a power of two, so a sign error in the hash would show.
  const topic = uniqueName("partitioning");
  const jsonKeys = JAVA_VECTORS.map(([key]) => key).filter((key) => key.startsWith("{"));
  const [spec] = await kafkaSpecs({
    name: uniqueName("partitioning"),
    config: {
      "connector.class": "records",
      fixture: fixture(jsonKeys.map((key, i) => ({ topic, key: JSON.parse(key), value: { i } }))),
      "sink.class": "kafka",
      "sink.topic.creation.default.partitions": "7",
    },
  });
  const report = await runPipeline(spec, { offsets: new MemoryOffsetStore() });
  assertEquals(report.error, undefined);
  assertEquals(report.stats.written, jsonKeys.length);

  const messages = await readTopic(topic, jsonKeys.length);
  // The sink re-encodes each key as JSON; it must give the bytes Java hashed.
  const placed = new Map(messages.map((m) => [text(m.key), m.partition]));
  const seven = PARTITION_COUNTS.indexOf(7);
  for (const [key, , partitions] of JAVA_VECTORS) {
    if (key.startsWith("{")) assertEquals(placed.get(key), partitions[seven], key);
  }
});
