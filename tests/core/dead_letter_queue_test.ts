/**
 * Where a dead letter resumes on replay, decided by the stage stored with
 * it: a sink failure skips every transform (it was transformed, and masked,
 * already); a transform's failure resumes at that transform; a converter
 * failure runs the whole chain; a stage the chain no longer has is not placed.
 */
import { assertEquals, assertMatch } from "../_assert.ts";
import { chainBefore, chainDifference, chainOfStage } from "../../core/_chain.ts";
import { specsFrom } from "../_batch.ts";
import { resumeStep } from "../../core/dead_letter_queue.ts";
import { runPipeline } from "../../core/pipeline.ts";
import { MemoryOffsetStore } from "../../core/offsets.ts";

Deno.test("a replayed dead letter resumes at the stage stored with it", async () => {
  const [spec] = await specsFrom({
    name: "items_sync",
    config: {
      "connector.class": "postgres_query",
      "connection.url": "postgres://u@127.0.0.1:1/db",
      "table": "public.items",
      "transforms": "hide,types",
      "transforms.hide.type": "mask",
      "transforms.hide.fields": "note",
      "transforms.types.type": "cast",
      "transforms.types.spec": "code:int32",
      "sink.class": "postgres",
      "sink.connection.url": "postgres://u@127.0.0.1:1/db",
      "sink.table": "public.items",
    },
  });
  assertEquals(resumeStep(spec, "sink"), 2);
  assertEquals(resumeStep(spec, "types"), 1);
  assertEquals(resumeStep(spec, "hide"), 0);
  assertEquals(resumeStep(spec, "VALUE_CONVERTER"), 0);
  assertEquals(resumeStep(spec, "KEY_CONVERTER"), 0);
  assertEquals(resumeStep(spec, "renamed_since"), undefined);
});

Deno.test("a dead letter's chain fingerprint names the steps added, changed or gone since", async () => {
  const config = (extra: Record<string, string>) => ({
    name: "items_sync",
    config: {
      "connector.class": "postgres_query",
      "connection.url": "postgres://u@127.0.0.1:1/db",
      "table": "public.items",
      "sink.class": "postgres",
      "sink.connection.url": "postgres://u@127.0.0.1:1/db",
      "sink.table": "public.items",
      ...extra,
    },
  });
  const types = { "transforms.types.type": "cast", "transforms.types.spec": "code:int32" };
  const mask = (salt: string) => ({
    "transforms.hide.type": "mask",
    "transforms.hide.fields": "v",
    "transforms.hide.strategy": "hash",
    "transforms.hide.salt": salt,
  });
  const [before] = await specsFrom(config({ transforms: "types", ...types }));
  const [after] = await specsFrom(config({ transforms: "types,hide", ...types, ...mask("a") }));
  const [resalted] = await specsFrom(config({ transforms: "types,hide", ...types, ...mask("b") }));
  const old = chainOfStage(before, "sink")!;
  assertEquals(old, chainOfStage(before, "sink"));
  assertEquals(chainOfStage(after, "types"), "");
  // The salt is in the fingerprint only as part of a hash.
  assertEquals(chainOfStage(after, "sink")!.includes("pepper"), false);
  assertEquals(chainDifference(old, chainBefore(before, 1)), undefined);
  assertMatch(chainDifference(old, chainBefore(after, 2))!, /did not go through "hide" \(mask\)/);
  assertMatch(
    chainDifference(chainOfStage(after, "sink")!, chainOfStage(resalted, "sink")!)!,
    /configuration of "hide" changed/,
  );
  assertMatch(
    chainDifference(chainOfStage(after, "sink")!, old)!,
    /"hide", no longer in the chain/,
  );
});

Deno.test("a dead-letter file in a missing folder fails the pipeline at start, before it connects", async () => {
  const dir = await Deno.makeTempDir({ prefix: "sluice_dlq_" });
  try {
    // Port 1 refuses connections: connecting first would fail with another error.
    const [spec] = await specsFrom({
      name: "items_sync",
      config: {
        "connector.class": "postgres_query",
        "connection.url": "postgres://u@127.0.0.1:1/db",
        "table": "public.items",
        "sink.class": "postgres",
        "sink.connection.url": "postgres://u@127.0.0.1:1/db",
        "sink.table": "public.items",
        "errors.tolerance": "all",
        "errors.deadletterqueue.file.path": `${dir}/missing/dead.jsonl`,
      },
    });
    const report = await runPipeline(spec, { offsets: new MemoryOffsetStore() });
    assertEquals(report.status, "failed");
    assertMatch(
      report.error!.message,
      /^Cannot start pipeline "items_sync": errors\.deadletterqueue\.file\.path ".*\/missing\/dead\.jsonl" cannot be written: .*\(create its folder first\)/,
    );
    await Deno.mkdir(`${dir}/missing`);
    const again = await runPipeline(spec, { offsets: new MemoryOffsetStore() });
    assertMatch(again.error!.message, /127\.0\.0\.1:1/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
