/**
 * Runtime.add / replace / remove (what the REST API's create, update and
 * delete apply): a replaced stream ends its run cleanly, its offset
 * committed, and starts again with the new spec from there; a removed one
 * stops for good without stopping the runtime; an added one starts.
 */
import { assert, assertEquals } from "../_assert.ts";
import { collector, kafkaSpecs } from "../_kafka.ts";
import { waitUntil } from "../_wait.ts";
import { MemoryOffsetStore } from "../../core/offsets.ts";
import { Runtime } from "../../core/runtime.ts";

function sequence(name: string, topic: string, sink: string) {
  return {
    name,
    config: {
      "connector.class": "sequence",
      topic,
      count: "100000",
      "batch.size": "10",
      "interval.ms": "10",
      "sink.class": "collect",
      "sink.collector": sink,
    },
  };
}

Deno.test("a replaced stream commits its offset and resumes there with the new spec; removed and added ones stop and start", async () => {
  const { name: sink, collector: collected } = collector();
  const [first] = await kafkaSpecs(sequence("numbers", "before", sink));
  const offsets = new MemoryOffsetStore();
  await using runtime = new Runtime([first], { offsets });
  assertEquals(runtime.start(), true);
  await collected.waitFor(50);

  const [second] = await kafkaSpecs(sequence("numbers", "after", sink));
  await runtime.replace(second);
  const committed = await offsets.read("numbers");
  const before = collected.records.filter((r) => r.topic === "before").length;
  assertEquals(
    committed,
    before,
    "the offset of everything written is committed before the restart",
  );
  await waitUntil(
    "records of the new spec",
    () => collected.records.some((r) => r.topic === "after"),
  );
  const firstAfter = collected.records.find((r) => r.topic === "after")!;
  assertEquals((firstAfter.value as { seq: number }).seq, committed, "resumed where it left off");
  assertEquals(runtime.pipelines.get("numbers"), second);
  assertEquals(runtime.control("numbers").state, "RUNNING");

  // Added: starts at once.
  const { name: otherSink, collector: other } = collector();
  const [added] = await kafkaSpecs(sequence("letters", "letters", otherSink));
  runtime.add(added);
  await other.waitFor(20);

  // Removed: its run ends, nothing more arrives, the runtime goes on.
  await runtime.remove("numbers");
  const count = collected.records.length;
  assertEquals(runtime.pipelines.has("numbers"), false);
  await other.waitFor(other.records.length + 20);
  assertEquals(collected.records.length, count);
  assert(!runtime.signal.aborted, "removing a stream does not stop the runtime");
  await runtime.remove("letters");
  assert(!runtime.signal.aborted, "nor does removing the last one");
});
