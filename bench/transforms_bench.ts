/**
 * Throughput of the transform chain the citizen portal uses — mask (hmac +
 * partial) → filter → dedup → route — on 1,000,000 synthetic profile change
 * events, beside the same records passed through an empty chain (a plain
 * loop that calls nothing) in the same run. Also prints each stage alone.
 *
 * Records are generated in batches of 10,000 outside the timed sections, so
 * memory stays bounded and only transform work is measured. Through the
 * pipeline runner the source makes them while the run is timed; the time it
 * spends doing so is measured and also shown taken out, and the target is
 * judged on that figure in CPU time (three alternating runs, medians).
 *
 *     deno run -A bench/transforms_bench.ts [records]
 *
 * @module
 */
import process from "node:process";
import { getLogger } from "@logtape/logtape";
import { z } from "zod";
import { builtinPlugins } from "../builtins.ts";
import { buildPipelines, parseConnectors } from "../core/config.ts";
import { MemoryOffsetStore } from "../core/offsets.ts";
import { runPipeline } from "../core/pipeline.ts";
import { Registry } from "../core/registry.ts";
import {
  defineSink,
  defineSource,
  type Plugin,
  type Transform,
  type TransformPlugin,
} from "../api/plugin.ts";
import type { SluiceRecord } from "../api/record.ts";
import { dedup } from "../transforms/dedup/mod.ts";
import { filter } from "../transforms/filter.ts";
import { mask } from "../transforms/mask/mod.ts";
import { route } from "../transforms/route.ts";

const TOTAL = Number(Deno.args[0] ?? 1_000_000);
const BATCH = 10_000;
const CITIES = ["Stockholm", "Göteborg", "Malmö", "Uppsala", "Lund", "Umeå"];
const STATUSES = [
  "active",
  "active",
  "active",
  "active",
  "active",
  "active",
  "active",
  "active",
  "active",
  "closed",
];

/** Batch `n` of synthetic profile inserts; every 100th event repeats the one before it. */
function batch(n: number): SluiceRecord[] {
  const records: SluiceRecord[] = new Array(BATCH);
  for (let i = 0; i < BATCH; i++) {
    const seq = n * BATCH + i;
    const id = seq % 100 === 99 ? seq - 1 : seq; // 1% redeliveries for dedup
    records[i] = {
      topic: "warehouse.public.profiles",
      key: { id },
      value: {
        before: null,
        after: {
          id,
          full_name: `Person ${id} Svensson`,
          phone: `+4670${String(1_000_000 + (id % 9_000_000)).padStart(7, "0")}`,
          email: `person.${id}@example.se`,
          national_id: `19${String(50 + (id % 50))}0614-${String(id % 10_000).padStart(4, "0")}`,
          city: CITIES[id % CITIES.length],
          status: STATUSES[id % STATUSES.length],
          updated_at: "2026-01-01T00:00:00Z",
        },
        source: {
          version: "0.1.0",
          connector: "postgresql",
          name: "warehouse",
          ts_ms: 1_767_225_600_000,
          snapshot: "false",
          db: "smart_warehouse",
          schema: "public",
          table: "profiles",
          lsn: 1_000_000 + id,
        },
        op: "c",
        ts_ms: 1_767_225_600_000,
      },
    };
  }
  return records;
}

const context = {
  pipeline: "bench",
  logger: getLogger(["sluice", "bench"]),
  signal: new AbortController().signal,
};

// deno-lint-ignore no-explicit-any
async function create(plugin: TransformPlugin<any>, options: Record<string, string>) {
  return await plugin.create(plugin.config.parse(options), context);
}

async function chainOf(stages: string[]): Promise<Transform[]> {
  const all: Record<string, () => Promise<Transform>> = {
    mask: () =>
      create(mask, {
        fields: "full_name,national_id,phone",
        strategy: "hmac",
        key: "bench-only-key-bench-only-key-0123456789",
        "fields.phone.strategy": "partial",
        "fields.phone.keep.last": "2",
      }),
    filter: () => create(filter, { condition: "value.status == 'active'" }),
    dedup: () => create(dedup, { "id.mode": "cdc" }),
    route: () =>
      create(route, { regex: "warehouse\\.(\\w+)\\.(\\w+)", replacement: "citizen.$1.$2" }),
  };
  return await Promise.all(stages.map((stage) => all[stage]()));
}

/**
 * Runs `TOTAL` records through `chain` the way the pipeline runner does
 * (an empty chain is the same loop calling nothing); returns records/s.
 */
async function measure(chain: Transform[]): Promise<{ rate: number; out: number }> {
  let elapsed = 0;
  let out = 0;
  for (let n = 0; n < TOTAL / BATCH; n++) {
    const records = batch(n);
    const kept: SluiceRecord[] = [];
    const start = performance.now();
    next: for (const record of records) {
      let current: SluiceRecord | null = record;
      for (const step of chain) {
        const applied: SluiceRecord | null | Promise<SluiceRecord | null> = step.apply(current!);
        current = applied instanceof Promise ? await applied : applied;
        if (current === null) continue next;
      }
      kept.push(current!);
    }
    for (const step of chain) await step.commit?.();
    elapsed += performance.now() - start;
    out += kept.length;
  }
  return { rate: TOTAL / (elapsed / 1000), out };
}

const format = (rate: number) => `${Math.round(rate).toLocaleString("en-US")} records/s`;

/** The median of three runs, each with a fresh chain (dedup starts empty). */
async function median(stages: string[]): Promise<{ rate: number; out: number }> {
  const runs = [];
  for (let i = 0; i < 3; i++) runs.push(await measure(await chainOf(stages)));
  return runs.sort((a, b) => a.rate - b.rate)[1];
}

const empty = await median([]);
const chain = await median(["mask", "filter", "dedup", "route"]);

console.log(`${TOTAL.toLocaleString("en-US")} profile change events, Deno ${Deno.version.deno}`);
console.log(`empty chain (same loop, no steps):  ${format(empty.rate)}`);
console.log(`mask+filter+dedup+route:            ${format(chain.rate)}  (${chain.out} kept)`);
const ratio = chain.rate / empty.rate;
console.log(`ratio chain / empty:                ${(ratio * 100).toFixed(2)}%`);
console.log(
  `target (chain keeps >= 50% of the empty chain's throughput): ${
    ratio >= 0.5 ? "met" : "NOT met"
  }`,
);
for (const stage of ["mask", "filter", "dedup", "route"]) {
  const alone = await measure(await chainOf([stage]));
  console.log(`  ${stage.padEnd(8)} alone:                   ${format(alone.rate)}`);
}

// The same comparison through the pipeline runner: a source that yields the
// records, the chain (or none), and a sink that only counts. This includes
// the runtime's per-record work (queue, stats, dead-letter routing).
const source = defineSource({
  name: "bench_records",
  mode: "batch",
  summary: "Yields the benchmark's records.",
  config: z.strictObject({}),
  create: () => ({
    async *read() {
      for (let n = 0; n < TOTAL / BATCH; n++) {
        const wall = performance.now(), cpu = process.cpuUsage();
        const records = batch(n);
        generation.wallMs += performance.now() - wall;
        generation.cpuMs += cpuMsSince(cpu);
        yield { records };
      }
    },
    async close() {},
  }),
});
/** Time the source spent making records in the current run, subtracted from the run's time. */
const generation = { wallMs: 0, cpuMs: 0 };
const cpuMsSince = (start: NodeJS.CpuUsage) => {
  const used = process.cpuUsage(start);
  return (used.user + used.system) / 1000;
};
const sink = defineSink({
  name: "bench_count",
  summary: "Counts records.",
  config: z.strictObject({}),
  create: () => ({
    write: (written) => Promise.resolve({ written: written.records.length }),
    async close() {},
  }),
});
const registry = new Registry([...builtinPlugins, source, sink] as Plugin[]);
const CHAIN_CONFIG = {
  "transforms": "mask,filter,dedup,route",
  "transforms.mask.type": "mask",
  "transforms.mask.fields": "full_name,national_id,phone",
  "transforms.mask.strategy": "hmac",
  "transforms.mask.key": "bench-only-key-bench-only-key-0123456789",
  "transforms.mask.fields.phone.strategy": "partial",
  "transforms.mask.fields.phone.keep.last": "2",
  "transforms.filter.type": "filter",
  "transforms.filter.condition": "value.status == 'active'",
  "transforms.dedup.type": "dedup",
  "transforms.dedup.id.mode": "cdc",
  "transforms.route.type": "route",
  "transforms.route.regex": "warehouse\\.(\\w+)\\.(\\w+)",
  "transforms.route.replacement": "citizen.$1.$2",
};
/** Records per second of one run, with and without the time spent making records. */
interface RuntimeRates {
  readonly wall: number;
  readonly wallWithoutGeneration: number;
  readonly cpuWithoutGeneration: number;
}
async function throughRuntime(withChain: boolean): Promise<RuntimeRates> {
  const [spec] = await buildPipelines(
    parseConnectors({
      name: withChain ? "chain" : "empty",
      config: {
        "connector.class": "bench_records",
        "sink.class": "bench_count",
        "job.validate": "false",
        ...(withChain ? CHAIN_CONFIG : {}),
      },
    }),
    { registry },
  );
  generation.wallMs = generation.cpuMs = 0;
  const started = performance.now(), cpu = process.cpuUsage();
  const report = await runPipeline(spec, { offsets: new MemoryOffsetStore() });
  const wallMs = performance.now() - started, cpuMs = cpuMsSince(cpu);
  if (report.status !== "succeeded") throw report.error;
  return {
    wall: TOTAL / (wallMs / 1000),
    wallWithoutGeneration: TOTAL / ((wallMs - generation.wallMs) / 1000),
    cpuWithoutGeneration: TOTAL / ((cpuMs - generation.cpuMs) / 1000),
  };
}
// Empty and chain runs alternate, three of each, and each figure is a median:
// on a shared machine the load changes between two back-to-back runs.
const runs: { empty: RuntimeRates[]; chain: RuntimeRates[] } = { empty: [], chain: [] };
for (let i = 0; i < 3; i++) {
  runs.empty.push(await throughRuntime(false));
  runs.chain.push(await throughRuntime(true));
}
const medianOf = (rates: RuntimeRates[], figure: keyof RuntimeRates) =>
  rates.map((rate) => rate[figure]).sort((a, b) => a - b)[1];
console.log(`\nThrough the pipeline runner (a source yielding the records, a sink counting them):`);
const rows: [string, keyof RuntimeRates][] = [
  ["records made inside the timed run, wall", "wall"],
  ["making records not counted, wall", "wallWithoutGeneration"],
  ["making records not counted, CPU time", "cpuWithoutGeneration"],
];
for (const [label, figure] of rows) {
  const empty = medianOf(runs.empty, figure), chain = medianOf(runs.chain, figure);
  console.log(`  ${label}:`);
  console.log(`    empty chain:                    ${format(empty)}`);
  console.log(`    mask+filter+dedup+route:        ${format(chain)}`);
  console.log(`    ratio chain / empty:            ${(chain / empty * 100).toFixed(1)}%`);
}
// The target compares the runner's own work: records made outside the timed
// part (as in the loop above), CPU time so that other processes on the
// machine do not decide it.
const runtimeRatio = medianOf(runs.chain, "cpuWithoutGeneration") /
  medianOf(runs.empty, "cpuWithoutGeneration");
console.log(
  `  target (chain keeps >= 50% of the empty chain's rate, making records not counted, CPU time): ${
    runtimeRatio >= 0.5 ? "met" : "NOT met"
  } (${(runtimeRatio * 100).toFixed(1)}%)`,
);
