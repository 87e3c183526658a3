import { assert, assertEquals, assertMatch } from "../_assert.ts";
import { builtinRegistry } from "../../builtins.ts";
import { loadPipelines } from "../../core/config.ts";
import { MemoryOffsetStore } from "../../core/offsets.ts";
import { runPipeline } from "../../core/pipeline.ts";
import { type JobReport, Runtime } from "../../core/runtime.ts";
import { buckets } from "../fixtures/memory_sink.ts";
import { capturingLogs } from "../_logs.ts";
import { waitUntil } from "../_wait.ts";

/** Writes connector JSON into a temporary folder beside copies of the fixture plugins. */
async function configFolder(connectors: unknown[]): Promise<string> {
  const folder = await Deno.makeTempDir({ prefix: "sluice_scheduler_" });
  await Deno.writeTextFile(`${folder}/jobs.json`, JSON.stringify(connectors));
  return folder;
}

const fixtures = new URL("../fixtures/", import.meta.url).pathname;

function job(name: string, bucket: string, extra: Record<string, string> = {}) {
  return {
    name,
    config: {
      "connector.class": `${fixtures}numbers_source.ts`,
      "sink.class": `${fixtures}memory_sink.ts`,
      "sink.bucket": bucket,
      "job.retry.delay.ms": "10",
      ...extra,
    },
  };
}

async function load(connectors: unknown[]) {
  const folder = await configFolder(connectors);
  try {
    return await loadPipelines([folder], { registry: builtinRegistry() });
  } finally {
    await Deno.remove(folder, { recursive: true });
  }
}

Deno.test("plugins written by users load from a module path named in the config", async () => {
  const [spec] = await load([job("numbers", "path_loading", { count: "12" })]);
  assertEquals(spec.source.plugin.name, "numbers");
  const report = await runPipeline(spec, { offsets: new MemoryOffsetStore() });
  assertEquals(report.status, "succeeded", report.error?.message);
  assertEquals(buckets.get("path_loading")!.records.map((r) => r.key!.n), [
    1,
    2,
    3,
    4,
    5,
    6,
    7,
    8,
    9,
    10,
    11,
    12,
  ]);
});

Deno.test("a failing job is retried job.retries times, then succeeds", async () => {
  const [spec] = await load([job("flaky", "retries", { "fail.times": "2", "job.retries": "3" })]);
  const runtime = new Runtime([spec], { offsets: new MemoryOffsetStore() });
  const report = await runtime.runJob("flaky");
  assertEquals(report.status, "succeeded");
  assertEquals(report.attempts, 3);
  assertEquals(buckets.get("retries")!.records.length, 10);
});

Deno.test("a job that keeps failing stops after its retries and reports the error", async () => {
  const [spec] = await load([
    job("broken", "exhausted", { "fail.times": "9", "job.retries": "1" }),
  ]);
  const runtime = new Runtime([spec], { offsets: new MemoryOffsetStore() });
  const report = await runtime.runJob("broken");
  assertEquals(report.status, "failed");
  assertEquals(report.attempts, 2);
  assertEquals(report.error?.message, "planned failure 2");
});

Deno.test("a job that succeeds with dead letters says so in a warning", async () => {
  const [spec] = await load([
    job("tolerant", "tolerant", {
      count: "4",
      "errors.tolerance": "all",
      // Every record lacks the field: each fails in the transform.
      transforms: "drop",
      "transforms.drop.type": "mask",
      "transforms.drop.fields": "absent",
    }),
  ]);
  await using logs = await capturingLogs();
  const runtime = new Runtime([spec], { offsets: new MemoryOffsetStore() });
  const report = await runtime.runJob("tolerant");
  assertEquals([report.status, report.stats.deadLettered, report.stats.written], [
    "succeeded",
    4,
    0,
  ]);
  assert(
    logs.lines.some((line) =>
      line.startsWith("tolerant succeeded, but dead-lettered 4 records: read 4, written 0")
    ),
    logs.lines.join("\n"),
  );
});

Deno.test("depends.on runs a job after its upstream succeeded, and skips it when the upstream failed", async () => {
  const specs = await load([
    job("scheme_sync", "upstream", { "delay.ms": "20" }),
    job("profile_sync", "downstream", { "job.depends.on": "scheme_sync" }),
    job("bad_upstream", "never", { "fail.times": "9", "job.retries": "0" }),
    job("after_bad", "skipped", { "job.depends.on": "bad_upstream" }),
  ]);
  const runtime = new Runtime(specs, { offsets: new MemoryOffsetStore() });
  const reports: JobReport[] = [];
  runtime.onReport((report) => reports.push(report));
  await runtime.runJob("scheme_sync", { withDownstream: true });
  await runtime.idle();
  await runtime.runJob("bad_upstream", { withDownstream: true });
  await runtime.idle();
  assertEquals(reports.map((r) => `${r.pipeline}:${r.status}`), [
    "scheme_sync:succeeded",
    "profile_sync:succeeded",
    "bad_upstream:failed",
  ]);
  const upstreamDone = Math.max(...buckets.get("upstream")!.at);
  assert(Math.min(...buckets.get("downstream")!.at) > upstreamDone, "downstream ran first");
  assertEquals(buckets.get("skipped"), undefined);
});

Deno.test("a job that takes longer than job.timeout.ms fails with a timeout", async () => {
  const [spec] = await load([
    job("slow", "timeout", {
      "delay.ms": "50",
      count: "100",
      "job.timeout.ms": "120",
      "job.retries": "0",
    }),
  ]);
  const runtime = new Runtime([spec], { offsets: new MemoryOffsetStore() });
  const report = await runtime.runJob("slow");
  assertEquals(report.status, "failed");
  assertEquals(report.error?.message, "Timed out after 120 ms");
});

Deno.test("graceful shutdown finishes the batch in flight, commits its offset, and a restart resumes there", async () => {
  const [spec] = await load([
    job("long", "shutdown", { count: "100", "chunk.size": "10", "sink.delay.ms": "30" }),
  ]);
  const offsets = new MemoryOffsetStore();
  const stop = new AbortController();
  // Stop once a few chunks are written: the run is then mid-way.
  const midway = waitUntil(
    "a first chunk in the sink",
    () => (buckets.get("shutdown")?.records.length ?? 0) >= 10,
    { intervalMs: 5 },
  ).then(() => stop.abort());
  const first = await runPipeline(spec, { offsets }, { signal: stop.signal });
  await midway;
  assertEquals(first.status, "stopped");
  const written = buckets.get("shutdown")!.records.length;
  assert(written > 0 && written < 100, `wrote ${written}`);
  assertEquals(offsets.offsets.get("long"), written, "offset = last number written");

  const second = await runPipeline(spec, { offsets });
  assertEquals(second.status, "succeeded");
  const numbers = buckets.get("shutdown")!.records.map((r) => r.key!.n as number);
  assertEquals(numbers, Array.from({ length: 100 }, (_, i) => i + 1), "no gap, no duplicate");
});

Deno.test("scheduled jobs are put on their cron schedule and the runtime stops cleanly", async () => {
  const specs = await load([job("nightly", "cron", { "job.schedule": "0 0 * * *" })]);
  const runtime = new Runtime(specs, { offsets: new MemoryOffsetStore() });
  assertEquals(runtime.start(), true, "a schedule keeps the runtime running");
  await runtime.stop();
  assertMatch(String(runtime.signal.aborted), /true/);
});

Deno.test("a 6-field schedule (seconds first) runs its job every second, with the tick's time", async () => {
  const specs = await load([job("every_second", "seconds", { "job.schedule": "* * * * * *" })]);
  const ticks: string[] = [];
  const runtime = new Runtime(specs, { offsets: new MemoryOffsetStore() }, {
    coordinator: () => ({
      workerId: "test",
      claim(_job, tick) {
        ticks.push(tick ?? "manual");
        return Promise.resolve({ lease: { finish: () => Promise.resolve() } });
      },
      lastSuccess: () => Promise.resolve(new Map()),
    }),
  });
  runtime.start();
  await waitUntil("two ticks", () => ticks.length >= 2, { timeoutMs: 10_000 });
  await runtime.stop();
  for (const tick of ticks) assertMatch(tick, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000Z$/);
  assert(ticks[1] > ticks[0], ticks.join());
});
