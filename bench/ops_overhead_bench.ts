/**
 * What operating Sluice costs: batch and CDC throughput with the metrics
 * observer, the alert evaluator and the HTTP endpoint on (scraped every
 * `--scrape-ms`, 15 s by default like Prometheus) versus all of it off, in the same
 * run, trials interleaved (off, on, off, on, …), medians compared.
 *
 * - batch: a full `postgres_query` → `postgres` job of N rows into an
 *   emptied target.
 * - CDC: `postgres_cdc` → `postgres` (direct mode) catching up a backlog of
 *   N single-row inserts made while the stream was stopped.
 *
 * With operations on, the CDC source also polls its slot's lag (the
 * plugin metrics, every `lag.poll.interval.ms`, 10 s by default).
 *
 * Target: "on" ≥ 97% of "off". The machine's load average (1 min) is printed
 * with every pair: the machine is shared, and a pair measured while the
 * load moved says little.
 *
 * ```
 * deno run -A --unstable-cron bench/ops_overhead_bench.ts [--rows 200000] [--events 50000] [--trials 3] [--scrape-ms 15000]
 * ```
 * Uses SLUICE_TEST_PG_URL when set (`deno task bench` sets it), else starts a
 * private PostgreSQL.
 *
 * @module
 */
import { parseArgs } from "node:util";
import process from "node:process";
import postgres from "postgres";
import { builtinRegistry } from "../builtins.ts";
import { buildPipelines, parseConnectors, type PipelineSpec } from "../core/config.ts";
import { startPostgres } from "../dev/postgres.ts";
import { AlertManager } from "../core/alerts.ts";
import { startApiServer } from "../core/http/server.ts";
import { SluiceMetrics } from "../core/metrics.ts";
import { MemoryOffsetStore } from "../core/offsets.ts";
import { type PipelineEnvironment, runPipeline, type RunReport } from "../core/pipeline.ts";
import { Runtime } from "../core/runtime.ts";
import { pollSlotLag } from "../connectors/postgres_cdc/_slot_metrics.ts";
import { getLogger } from "@logtape/logtape";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    rows: { type: "string", default: "200000" },
    events: { type: "string", default: "50000" },
    trials: { type: "string", default: "5" },
    // Prometheus scrapes every 15 s by default; 1000 is a harsh variant.
    "scrape-ms": { type: "string", default: "15000" },
    // A/A control: both sides off, to show the noise floor of this machine.
    control: { type: "boolean", default: false },
  },
});
const rows = Number(values.rows);
const events = Number(values.events);
const trials = Number(values.trials);
const scrapeMs = Number(values["scrape-ms"]);

const external = Deno.env.get("SLUICE_TEST_PG_URL");
const server = external ? undefined : await startPostgres();
const adminUrl = external ?? server!.url;
const urlFor = (db: string) => Object.assign(new URL(adminUrl), { pathname: `/${db}` }).href;
const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
const SRC = "bench_ops_src";
const DST = "bench_ops_dst";

const metricsOf = new Map<string, SluiceMetrics>();

/** An environment with operations on (metrics, alerts, endpoint, a scraper) or off. */
async function environment(specs: PipelineSpec[], on: boolean) {
  const offsets = new MemoryOffsetStore();
  if (!on || values.control) {
    return { env: { offsets } as PipelineEnvironment, close: async () => {} };
  }
  // One metrics object per process, as in `sluice run`: prom-client's default
  // metrics start an event-loop monitor and a GC observer that are never
  // stopped, so one per trial would pile up.
  metricsOf.set(specs[0].name, metricsOf.get(specs[0].name) ?? new SluiceMetrics(specs));
  const metrics = metricsOf.get(specs[0].name)!;
  const env: PipelineEnvironment = { offsets, observer: metrics };
  const runtime = new Runtime(specs, env);
  const alerts = new AlertManager(metrics);
  alerts.start();
  const api = await startApiServer({
    runtime,
    metrics,
    alerts,
    configs: new Map(),
    registry: builtinRegistry(),
    offsets,
    version: "bench",
  }, { listen: { hostname: "127.0.0.1", port: 0 } });
  const scrape = async () => {
    alerts.evaluate();
    await (await fetch(`${api.url}/metrics`)).text();
  };
  await scrape(); // once at the start, so even a short trial pays for one
  const scraper = setInterval(scrape, scrapeMs);
  return {
    env,
    async close() {
      clearInterval(scraper);
      await alerts[Symbol.asyncDispose]();
      await api[Symbol.asyncDispose]();
    },
  };
}

async function batchTrial(spec: PipelineSpec, target: postgres.Sql, on: boolean) {
  await target`truncate items`;
  const { env, close } = await environment([spec], on);
  const started = performance.now();
  const report = await runPipeline(spec, env, { fullRefresh: true });
  const seconds = (performance.now() - started) / 1000;
  await close();
  if (report.status !== "succeeded") throw report.error;
  return rows / seconds;
}

async function cdcTrial(
  spec: PipelineSpec,
  source: postgres.Sql,
  target: postgres.Sql,
  on: boolean,
) {
  await target`truncate items`;
  await source`truncate items`;
  const { env, close } = await environment([spec], on);
  // The stream's slot exists (created by the first trial); make the backlog while it is stopped.
  await source.unsafe(`do $$ begin for i in 1..${events} loop
    insert into items values (i, 'event ' || i); commit; end loop; end $$`);
  const stop = new AbortController();
  const started = performance.now();
  let ended: RunReport | undefined;
  const run = runPipeline(spec, env, { signal: stop.signal }).then((report) => ended = report);
  for (;;) {
    const [{ n }] = await target`select count(*)::int as n from items`;
    if (n >= events) break;
    if (ended) throw new Error(`The stream ended early (${ended.status}): ${ended.error?.message}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  const seconds = (performance.now() - started) / 1000;
  stop.abort();
  const report = await run;
  await close();
  if (report.status === "failed") throw report.error;
  return events / seconds;
}

const load = () => Deno.loadavg().map((x) => x.toFixed(2)).join(" ");

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** Throughput and this process's CPU time per item of one trial. */
async function measure(trial: (on: boolean) => Promise<number>, on: boolean, items: number) {
  const cpu = process.cpuUsage();
  const rate = await trial(on);
  const used = process.cpuUsage(cpu);
  return { rate, cpuMicrosPerItem: (used.user + used.system) / items };
}

/**
 * Trials in pairs, the order alternating (off-on, on-off, …) so that a drift
 * of the shared machine's load falls on both sides; the figure is the median
 * of the pairs' on/off ratios.
 */
async function compare(
  name: string,
  unit: string,
  items: number,
  trial: (on: boolean) => Promise<number>,
) {
  await trial(false); // warm-up: JIT, connections, first COPY path
  const ratios: number[] = [];
  const cpuRatios: number[] = [];
  const off: number[] = [];
  const on: number[] = [];
  const cpu = { off: [] as number[], on: [] as number[] };
  for (let i = 0; i < trials; i++) {
    const order = i % 2 === 0 ? [false, true] : [true, false];
    const pair: Record<string, number> = {};
    const pairCpu: Record<string, number> = {};
    for (const enabled of order) {
      const figure = await measure(trial, enabled, items);
      pair[String(enabled)] = figure.rate;
      pairCpu[String(enabled)] = figure.cpuMicrosPerItem;
      (enabled ? on : off).push(figure.rate);
      cpu[enabled ? "on" : "off"].push(figure.cpuMicrosPerItem);
    }
    ratios.push(pair["true"] / pair["false"]);
    cpuRatios.push(pairCpu["true"] / pairCpu["false"]);
    console.log(
      `  pair ${i + 1}: off ${Math.round(pair["false"])}, on ${Math.round(pair["true"])} → ${
        (100 * pair["true"] / pair["false"]).toFixed(1)
      }%; load average ${load()}`,
    );
  }
  const ratio = median(ratios);
  const round = (x: number) => Math.round(x).toLocaleString("en");
  console.log(
    `${name}: off ${round(median(off))} ${unit}, on ${round(median(on))} ${unit} (medians); ` +
      `on/off ${(ratio * 100).toFixed(1)}% (median of ${trials} interleaved pairs; target ≥ 97%) ` +
      (ratio >= 0.97 ? "OK" : "BELOW"),
  );
  console.log(
    `  Sluice CPU per item: off ${median(cpu.off).toFixed(1)} µs, on ${
      median(cpu.on).toFixed(1)
    } µs; pair ratios ${ratios.map((r) => (r * 100).toFixed(0) + "%").join(", ")}`,
  );
  // CPU time per item suffers less than wall-clock rates from other processes' load.
  console.log(
    `  Sluice CPU per item on/off: ${
      (median(cpuRatios) * 100).toFixed(1)
    }% (median of the pairs; ≤ 103% matches the target)`,
  );
}

try {
  for (const db of [SRC, DST]) {
    // A slot left by an interrupted run would keep the database from going.
    await admin`select pg_drop_replication_slot(slot_name) from pg_replication_slots
                where database = ${db} and not active`;
    await admin.unsafe(`drop database if exists ${db} with (force)`);
    await admin.unsafe(`create database ${db}`);
  }
  const source = postgres(urlFor(SRC), { max: 1, onnotice: () => {} });
  const target = postgres(urlFor(DST), { max: 1, onnotice: () => {} });
  await source`create table items (id int primary key, name text, updated_at timestamptz not null default now())`;
  await target`create table items (id int primary key, name text, updated_at timestamptz,
    deleted_at timestamptz, _source_lsn pg_lsn)`;

  await source`insert into items (id, name) select g, 'row ' || g from generate_series(1, ${rows}) g`;
  const [batch] = await buildPipelines(
    parseConnectors({
      name: "bench_batch",
      config: {
        "connector.class": "postgres_query",
        "connection.url": urlFor(SRC),
        table: "public.items",
        "sink.class": "postgres",
        "sink.connection.url": urlFor(DST),
        "sink.table": "public.items",
        "offset.storage": "file",
      },
    }),
    { registry: builtinRegistry() },
  );
  console.log(
    `load average (1, 5, 15 min) at start: ${load()}; ${navigator.hardwareConcurrency} CPUs`,
  );
  console.log(
    `batch: ${
      rows.toLocaleString("en")
    } rows, ${trials} trials each, /metrics scraped every ${scrapeMs} ms`,
  );
  await compare("batch full sync", "rows/s", rows, (on) => batchTrial(batch, target, on));

  if (events > 0) await cdcComparison(source, target);
  await source.end();
  await target.end();
  console.log(`load average at end: ${load()}`);
} finally {
  await admin`select pg_drop_replication_slot(slot_name) from pg_replication_slots
              where slot_name = 'bench_ops_slot' and not active`.catch(() => {});
  for (const db of [SRC, DST]) await admin.unsafe(`drop database if exists ${db} with (force)`);
  await admin.end();
  await server?.stop();
}

/** The CDC half: a slot made once, then a backlog caught up per trial. */
async function cdcComparison(source: postgres.Sql, target: postgres.Sql) {
  const [cdc] = await buildPipelines(
    parseConnectors({
      name: "bench_cdc",
      config: {
        "connector.class": "postgres_cdc",
        "connection.url": urlFor(SRC),
        "topic.prefix": "bench",
        "slot.name": "bench_ops_slot",
        "publication.name": "bench_ops_publication",
        "snapshot.mode": "never",
        "sink.class": "postgres",
        "sink.connection.url": urlFor(DST),
        "sink.table": "public.items",
        "offset.storage": "file",
      },
    }),
    { registry: builtinRegistry() },
  );
  // Create the slot once: a run that starts and stops at once.
  const created = new AbortController();
  const first = runPipeline(cdc, { offsets: new MemoryOffsetStore() }, { signal: created.signal });
  for (;;) {
    const slots =
      await admin`select 1 from pg_replication_slots where slot_name = 'bench_ops_slot'`;
    if (slots.length > 0) break;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  created.abort();
  await first;
  console.log(
    `CDC: backlog of ${events.toLocaleString("en")} single-row transactions, ${trials} trials each`,
  );
  await compare(
    "CDC catch-up (direct mode)",
    "events/s",
    events,
    (on) => cdcTrial(cdc, source, target, on),
  );
  await slotPollCost(source);
}

/** What one slot-lag poll costs (it runs every lag.poll.interval.ms, 10 s by default). */
async function slotPollCost(source: postgres.Sql) {
  const polls = 200;
  let done = 0;
  const metrics = new SluiceMetrics([], { defaultMetrics: false }).pluginMetrics("bench");
  const counting = {
    gauge: (definition: Parameters<typeof metrics.gauge>[0]) => {
      const gauge = metrics.gauge(definition);
      return {
        set: (labels: Record<string, string>, value: number) => {
          gauge.set(labels, value);
          if (definition.name.endsWith("retained_wal_bytes")) done++;
        },
        remove: gauge.remove,
      };
    },
    counter: metrics.counter,
  };
  const cpu = process.cpuUsage();
  const started = performance.now();
  const polling = pollSlotLag(source, "bench_ops_slot", counting, 1, getLogger(["bench"]));
  while (done < polls) await new Promise((resolve) => setTimeout(resolve, 5));
  await polling.stop();
  const ms = (performance.now() - started) / done;
  const used = process.cpuUsage(cpu);
  console.log(
    `slot lag poll: ${ms.toFixed(2)} ms per poll wall clock (1 ms pause included), ${
      ((used.user + used.system) / done / 1000).toFixed(3)
    } ms of Sluice CPU per poll; every 10 s that is ${
      ((used.user + used.system) / done / 1000 / 10_000 * 100).toFixed(4)
    }% of one core`,
  );
}
