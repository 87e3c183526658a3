/**
 * The runner with a sink that takes several writes at once
 * (`writesInFlight`): offsets are committed in order and only after their
 * write completed, and after a failed write that write and every later one
 * are written again in order.
 */
import { assertEquals } from "../_assert.ts";
import { z } from "zod";
import { buildPipelines } from "../../core/config.ts";
import { MemoryOffsetStore } from "../../core/offsets.ts";
import { runPipeline } from "../../core/pipeline.ts";
import { defineSink, defineSource } from "../../api/plugin.ts";
import type { JsonValue } from "../../api/record.ts";
import { RetriableError } from "../../api/errors.ts";
import { Registry } from "../../core/registry.ts";

/** What the sink and the source saw, in order. */
interface Log {
  events: string[];
  committed: JsonValue[];
}

function plugins(log: Log, failOnce: number | undefined) {
  const source = defineSource({
    name: "counting",
    mode: "batch",
    summary: "Ten batches of one record each; offset = batch number.",
    config: z.strictObject({}),
    create: () => ({
      async *read() {
        for (let n = 1; n <= 10; n++) {
          yield { records: [{ topic: "t", key: { n }, value: { n } }], offset: n };
        }
      },
      commit(offset: JsonValue) {
        log.committed.push(offset);
        log.events.push(`commit ${offset}`);
      },
      close: () => Promise.resolve(),
    }),
  });
  let failed = false;
  const sink = defineSink({
    name: "slow",
    summary: "Completes writes in reverse order of a window; fails one write once.",
    config: z.strictObject({}),
    create: () => ({
      writesInFlight: 3,
      async write(batch) {
        const n = (batch.records[0].value as { n: number }).n;
        log.events.push(`start ${n}`);
        // Later writes complete first: the runner must still commit in order.
        await new Promise((resolve) => setTimeout(resolve, 30 - (n % 3) * 10));
        if (n === failOnce && !failed) {
          failed = true;
          log.events.push(`fail ${n}`);
          throw new RetriableError(`write ${n} failed`);
        }
        log.events.push(`done ${n}`);
        return { written: 1 };
      },
      close: () => Promise.resolve(),
    }),
  });
  return new Registry([source, sink]);
}

async function run(failOnce?: number) {
  const log: Log = { events: [], committed: [] };
  const [spec] = await buildPipelines(
    [{
      name: "overlap",
      config: { "connector.class": "counting", "sink.class": "slow", "job.validate": "false" },
      baseDir: ".",
    }],
    { registry: plugins(log, failOnce) },
  );
  const offsets = new MemoryOffsetStore();
  const report = await runPipeline(spec, { offsets });
  return { log, report, stored: await offsets.read("overlap") };
}

Deno.test("overlapping writes commit their offsets in order, each after its write completed", async () => {
  const { log, report, stored } = await run();
  assertEquals(report.status, "succeeded");
  assertEquals(report.stats.written, 10);
  assertEquals(log.committed, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  assertEquals(stored, 10);
  // Several writes were started before the first one completed.
  assertEquals(log.events.slice(0, 3), ["start 1", "start 2", "start 3"]);
  for (const n of log.committed as number[]) {
    const done = log.events.indexOf(`done ${n}`);
    const committed = log.events.indexOf(`commit ${n}`);
    assertEquals(done >= 0 && done < committed, true, `write ${n} completed before its commit`);
  }
});

Deno.test("after a failed overlapping write, it and every later write are written again in order", async () => {
  const { log, report, stored } = await run(4);
  assertEquals(report.status, "succeeded");
  assertEquals(log.committed, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  assertEquals(stored, 10);
  const failedAt = log.events.indexOf("fail 4");
  // Once the writes in flight settled, the failed one and those after it
  // were started again one by one, each after the previous one completed.
  const replay = log.events.slice(failedAt + 1).filter((e) => e.startsWith("start"));
  const firstReplay = replay.indexOf("start 4");
  assertEquals(firstReplay >= 0, true, "write 4 was written again");
  const rest = log.events.slice(log.events.lastIndexOf("start 4"));
  const starts = rest.filter((e) => e.startsWith("start")).map((e) => Number(e.slice(6)));
  assertEquals(starts.slice(0, 2), [4, 5]);
  const again = rest.slice(0, rest.indexOf("start 5"));
  assertEquals(again.includes("done 4"), true, "write 4 completed before write 5 started again");
});
