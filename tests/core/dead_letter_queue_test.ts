/**
 * Where a dead letter resumes on replay, decided by the stage stored with
 * it: a sink failure skips every transform (it was transformed, and masked,
 * already); a transform's failure resumes at that transform; a converter
 * failure runs the whole chain; a stage the chain no longer has is not placed.
 */
import { assertEquals } from "../_assert.ts";
import { specsFrom } from "../_batch.ts";
import { resumeStep } from "../../core/dead_letter_queue.ts";

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
