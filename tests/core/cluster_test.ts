/**
 * The runtime's side of a group of processes, with an in-process source and
 * coordinator: standby streams, jobs claimed across the group, the local
 * limit on parallel jobs.
 */
import { z } from "zod";
import { assert, assertEquals } from "../_assert.ts";
import { waitUntil } from "../_wait.ts";
import {
  buildPipelines,
  type Claim,
  defineSink,
  defineSource,
  type JobCoordinator,
  MemoryOffsetStore,
  Registry,
  Runtime,
  StandbyError,
} from "../../mod.ts";
import { startApiServer } from "../../core/http/server.ts";
import { SluiceMetrics } from "../../core/metrics.ts";

let attempts = 0;
const slotSource = defineSource({
  name: "slot_source",
  mode: "stream",
  summary: "On standby for its first three attempts, then owns its slot until stopped.",
  config: z.strictObject({}),
  create: (_config, context) => ({
    async *read() {
      if (++attempts <= 3) throw new StandbyError('slot "s" is owned by worker b', 10);
      context.claimed?.("slot s");
      await new Promise((resolve) => context.signal.addEventListener("abort", resolve));
      yield { records: [] };
    },
    close: () => Promise.resolve(),
  }),
});

let concurrent = 0, peak = 0;
const slowJob = defineSource({
  name: "slow_job",
  mode: "batch",
  summary: "Takes a little while.",
  config: z.strictObject({}),
  create: () => ({
    async *read() {
      concurrent++;
      peak = Math.max(peak, concurrent);
      // Simulated work, so that runs would overlap without the limit.
      await new Promise((resolve) => setTimeout(resolve, 50));
      concurrent--;
      yield { records: [] };
    },
    close: () => Promise.resolve(),
  }),
});

const discard = defineSink({
  name: "discard",
  summary: "Accepts and forgets.",
  config: z.strictObject({}),
  create: () => ({
    write: (batch) => Promise.resolve({ written: batch.records.length }),
    close: () => Promise.resolve(),
  }),
});

const registry = new Registry([slotSource, slowJob, discard]);
const specs = (pipelines: { name: string; source: string; extra?: Record<string, string> }[]) =>
  buildPipelines(
    pipelines.map(({ name, source, extra }) => ({
      name,
      config: { "connector.class": source, "sink.class": "discard", ...extra },
      baseDir: ".",
    })),
    { registry },
  );

Deno.test("a stream whose slot another worker owns is on STANDBY, not FAILED, until it takes over", async () => {
  attempts = 0;
  const runtime = new Runtime(await specs([{ name: "stream", source: "slot_source" }]), {
    offsets: new MemoryOffsetStore(),
  });
  const states = new Set<string>();
  runtime.start();
  const control = runtime.control("stream");
  await waitUntil("the slot taken over", () => {
    states.add(control.state);
    return control.owns.includes("slot s");
  }, { intervalMs: 1 });
  assert(states.has("STANDBY"), [...states].join());
  assert(!states.has("FAILED"), [...states].join());
  assertEquals(control.state, "RUNNING");
  assertEquals(control.standby, undefined);
  assertEquals(attempts, 4);
  await runtime.stop();
});

/** An in-memory coordinator standing for the cluster database (held locks, recorded ticks). */
function sharedCoordinator(workerId: string, held: Set<string>, ticks: Set<string>) {
  const successes = new Map<string, number>();
  const coordinator: JobCoordinator = {
    workerId,
    claim(job, tick) {
      if (held.has(job)) return Promise.resolve<Claim>({ skipped: "running_elsewhere" });
      if (tick && ticks.has(`${job} ${tick}`)) {
        return Promise.resolve<Claim>({ skipped: "already_run" });
      }
      held.add(job);
      if (tick) ticks.add(`${job} ${tick}`);
      return Promise.resolve({
        lease: {
          finish(status) {
            held.delete(job);
            if (status === "succeeded") successes.set(job, Date.now());
            return Promise.resolve();
          },
        },
      });
    },
    lastSuccess: (jobs) =>
      Promise.resolve(
        new Map(jobs.flatMap((job) => {
          const at = successes.get(job);
          return at === undefined ? [] : [[job, at] as [string, number]];
        })),
      ),
    runningOn: (job) => Promise.resolve(held.has(job) ? "b" : undefined),
  };
  return coordinator;
}

Deno.test("a manual run refused by the group says so; the local limit keeps jobs one at a time", async () => {
  const held = new Set<string>(), ticks = new Set<string>();
  const jobs = await specs([
    { name: "one", source: "slow_job", extra: { "job.validate": "false" } },
    { name: "two", source: "slow_job", extra: { "job.validate": "false" } },
  ]);
  const coordinator = sharedCoordinator("a", held, ticks);
  await using runtime = new Runtime(jobs, { offsets: new MemoryOffsetStore() }, {
    coordinator: () => coordinator,
    maxParallelJobs: 1,
  });
  peak = 0;
  const [first, second] = await Promise.all([runtime.runJob("one"), runtime.runJob("two")]);
  assertEquals([first.status, second.status], ["succeeded", "succeeded"]);
  assertEquals(peak, 1);
  held.add("one"); // another worker runs it now
  let refused: Error | undefined;
  await runtime.runJob("one").catch((error) => refused = error);
  assertEquals(
    refused?.message,
    'Job "one" is running on another worker of the group; not starting it twice',
  );
});

Deno.test("what a pipeline owns is replaced kind by kind (partitions after a rebalance)", async () => {
  attempts = 10; // the slot source owns its slot at once
  await using runtime = new Runtime(await specs([{ name: "owner", source: "slot_source" }]), {
    offsets: new MemoryOffsetStore(),
  });
  const control = runtime.control("owner");
  control.claimed("partitions t:0,t:1");
  control.claimed("slot s");
  control.claimed("partitions t:2");
  assertEquals(control.owns, ["slot s", "partitions t:2"]);
});

Deno.test("the REST status says STANDBY with the owner, then what this member owns", async () => {
  attempts = -1_000_000; // on standby until told otherwise
  const pipelines = await specs([{ name: "watched", source: "slot_source" }]);
  const runtime = new Runtime(pipelines, { offsets: new MemoryOffsetStore() }, {
    workerId: "w1",
  });
  await using server = await startApiServer({
    runtime,
    metrics: new SluiceMetrics(pipelines, { defaultMetrics: false }),
    configs: new Map(),
    registry,
    offsets: new MemoryOffsetStore(),
    version: "test",
  }, { listen: { hostname: "127.0.0.1", port: 0 } });
  const status = async () => {
    const response = await fetch(`${server.url}/connectors/watched/status`);
    return (await response.json()).connector;
  };
  runtime.start();
  try {
    await waitUntil("standby", async () => (await status()).state === "STANDBY");
    const standby = await status();
    assertEquals(standby.member, "w1");
    assertEquals(standby.trace, 'Standby: slot "s" is owned by worker b');
    attempts = 10; // the owner went away: the next attempt takes the slot
    await waitUntil("running", async () => (await status()).state === "RUNNING");
    assertEquals((await status()).owns, ["slot s"]);
  } finally {
    await runtime.stop();
  }
});

Deno.test("an offsets change over REST is refused while another worker of the group runs the job", async () => {
  const held = new Set<string>();
  const jobs = await specs([{
    name: "one",
    source: "slow_job",
    extra: { "job.validate": "false" },
  }]);
  const coordinator = sharedCoordinator("a", held, new Set());
  await using runtime = new Runtime(jobs, { offsets: new MemoryOffsetStore() }, {
    coordinator: () => coordinator,
  });
  await using server = await startApiServer({
    runtime,
    metrics: new SluiceMetrics(jobs, { defaultMetrics: false }),
    configs: new Map(),
    registry,
    offsets: new MemoryOffsetStore(),
    version: "test",
  }, { listen: { hostname: "127.0.0.1", port: 0 } });
  const stop = await fetch(`${server.url}/connectors/one/stop`, { method: "PUT" });
  await stop.body?.cancel();
  assert(stop.ok, `stop answered ${stop.status}`);
  held.add("one"); // worker b is in the middle of a run: it would store its watermark at the end
  const refused = await fetch(`${server.url}/connectors/one/offsets`, { method: "DELETE" });
  assertEquals(refused.status, 400);
  const body = await refused.json();
  assert(/worker b is running the job now/.test(body.message), body.message);
  held.delete("one");
  const reset = await fetch(`${server.url}/connectors/one/offsets`, { method: "DELETE" });
  assertEquals(reset.status, 200, await reset.clone().text());
  await reset.body?.cancel();
});
