/**
 * Prometheus metrics of a Sluice process, named `sluice_*` and labelled by
 * pipeline, fed by the engine through {@linkcode PipelineObserver} and by
 * the runtime's final job reports. `prom-client` renders the exposition
 * format; its default metrics give process memory and event-loop lag.
 *
 * Besides the Prometheus series, {@linkcode SluiceMetrics} keeps the few
 * plain numbers the in-process alert rules read (lag, failure counts, run
 * outcomes), so alerts never parse the exposition text.
 *
 * @module
 */
import type * as PromClient from "prom-client";
// The classes come from prom-client's own files rather than its index, which
// also loads the push gateway and cluster aggregation (node:http, node:https,
// node:cluster): about 8 MB and 0.1 s of start-up that `sluice run` never uses.
import RegistryClass from "prom-client/lib/registry.js";
import CounterClass from "prom-client/lib/counter.js";
import GaugeClass from "prom-client/lib/gauge.js";
import HistogramClass from "prom-client/lib/histogram.js";
import type { PipelineSpec } from "./config.ts";
import type {
  BatchReadEvent,
  BatchWrittenEvent,
  PipelineObserver,
  RecordsFailedEvent,
} from "./observer.ts";
import type { ReconciliationFigures } from "../api/plugin.ts";
import type { RunMetrics } from "./observer.ts";
import type { MetricDefinition, MetricLabels } from "../api/metrics.ts";
import type { RunReport } from "./pipeline.ts";
import type { JobReport } from "./runtime.ts";
import { standbyOf } from "./cluster.ts";

/** The parts of prom-client Sluice uses, typed by its declarations. */
const client = {
  Registry: RegistryClass as typeof PromClient.Registry,
  Counter: CounterClass as typeof PromClient.Counter,
  Gauge: GaugeClass as typeof PromClient.Gauge,
  Histogram: HistogramClass as typeof PromClient.Histogram,
};
declare namespace client {
  type Registry = PromClient.Registry;
  type Counter = PromClient.Counter;
  type Gauge = PromClient.Gauge;
  type Histogram = PromClient.Histogram;
  type Metric = PromClient.Metric;
}

/** What the alert rules read about one pipeline. */
export interface PipelineFigures {
  readonly mode: "batch" | "stream";
  /**
   * Records read and records that failed (dead-lettered, or dropped under
   * errors.tolerance all with no dead-letter destination), since start.
   */
  recordsRead: number;
  recordsFailed: number;
  /**
   * Dead letters waiting in each destination: its size as last read (see
   * `watchDeadLetters`), plus those written since; without a reader, those
   * written since start.
   */
  readonly deadLetters: Map<string, number>;
  /** Final job outcomes with their end time (batch jobs). */
  readonly runs: { at: number; ok: boolean }[];
  /** Whether the last final job run failed. */
  lastRunFailed: boolean;
  /**
   * The gauges the pipeline's plugins set (context.metrics), by metric name,
   * then by the series' labels as JSON; alert rules read them.
   */
  readonly pluginGauges: Map<string, Map<string, PluginSeries>>;
}

/** One series a plugin set: its labels (the pipeline's included) and value. */
export interface PluginSeries {
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

/** Reads a dead-letter destination's size for the `sluice_dead_letters` gauge. */
interface DeadLetterSizeProbe {
  readonly pipeline: string;
  readonly destination: string;
  readonly count: () => Promise<number>;
  readAt: number;
  reading?: Promise<void>;
}

/** Source commit times (ms) of batches read but not yet durable, oldest first. */
interface PendingBatch {
  readonly oldestEventMs?: number;
}

const SECONDS_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
const RUN_BUCKETS = [0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 1800, 3600, 7200];
const SIZE_BUCKETS = [1, 10, 50, 100, 500, 1000, 2000, 5000, 10000];

/** How often the event-loop monitor's timer is due, and how far back its gauge looks. */
const LOOP_SAMPLE_MS = 100;
const LOOP_WINDOW_SECONDS = 10;

/**
 * The event loop's lag as timer drift: a 100 ms interval timer notes how late
 * it fires, and the gauge shows the worst delay of the last 10 s (a timer
 * overdue at scrape time counts too). prom-client's
 * `nodejs_eventloop_lag_*` histogram comes from `monitorEventLoopDelay`,
 * which under Deno 2.9 misses stalls (a 300 ms blocking loop showed as
 * 10 ms), so this one is Sluice's own, and prom-client's is left out. The
 * timer is unref'd: it never keeps a process alive.
 */
class EventLoopMonitor {
  /** Worst delay (ms) per second of the window, by whole second. */
  readonly #worst = new Map<number, number>();
  #due = performance.now() + LOOP_SAMPLE_MS;

  constructor() {
    const timer = setInterval(() => this.#note(performance.now()), LOOP_SAMPLE_MS);
    Deno.unrefTimer(timer);
  }

  #note(now: number): void {
    const late = Math.max(0, now - this.#due);
    this.#due = now + LOOP_SAMPLE_MS;
    const second = Math.floor(Date.now() / 1000);
    this.#worst.set(second, Math.max(this.#worst.get(second) ?? 0, late));
    for (const at of this.#worst.keys()) {
      if (at <= second - LOOP_WINDOW_SECONDS) this.#worst.delete(at);
    }
  }

  /** The worst delay of the window in seconds, counting a timer overdue now. */
  lagSeconds(): number {
    const now = performance.now();
    if (now > this.#due) this.#note(now);
    const since = Math.floor(Date.now() / 1000) - LOOP_WINDOW_SECONDS;
    let worst = 0;
    for (const [at, late] of this.#worst) if (at > since) worst = Math.max(worst, late);
    return worst / 1000;
  }
}

/**
 * prom-client's default metrics (`collectDefaultMetrics`), one module each,
 * but for its event-loop lag: under Deno 2.9 its `monitorEventLoopDelay`
 * histogram misses stalls, and a scrape with no sample since the last one
 * read NaN and a minimum of 9,223,372,036 s. `sluice_event_loop_lag_seconds`
 * takes its place. Literal imports, so `deno compile` sees each module.
 */
function defaultMetricModules(): Promise<{ default: unknown }[]> {
  return Promise.all([
    import("prom-client/lib/metrics/processCpuTotal.js"),
    import("prom-client/lib/metrics/processStartTime.js"),
    import("prom-client/lib/metrics/osMemoryHeap.js"),
    import("prom-client/lib/metrics/processOpenFileDescriptors.js"),
    import("prom-client/lib/metrics/processMaxFileDescriptors.js"),
    import("prom-client/lib/metrics/processResources.js"),
    import("prom-client/lib/metrics/processHandles.js"),
    import("prom-client/lib/metrics/processRequests.js"),
    import("prom-client/lib/metrics/heapSizeAndUsed.js"),
    import("prom-client/lib/metrics/heapSpacesSizeAndUsed.js"),
    import("prom-client/lib/metrics/version.js"),
    import("prom-client/lib/metrics/gc.js"),
  ]);
}

/** The metrics of one process. */
export class SluiceMetrics implements PipelineObserver {
  readonly registry: client.Registry = new client.Registry();
  readonly #figures = new Map<string, PipelineFigures>();
  readonly #pending = new Map<string, PendingBatch[]>();
  readonly #now: () => number;
  readonly #m;
  readonly #pluginMetrics = new Map<
    string,
    { kind: "gauge" | "counter"; labels: string; metric: client.Metric }
  >();
  /** Where the dead-letter gauge reads each destination's real size. */
  readonly #deadLetterSizes: DeadLetterSizeProbe[] = [];
  readonly #deadLetterRefreshMs: number;
  #defaultMetrics?: () => Promise<void>;
  #stateOf?: (pipeline: string) => string | undefined;
  #defaultMetricsLoaded?: Promise<void>;

  constructor(
    specs: readonly PipelineSpec[],
    options: { defaultMetrics?: boolean; now?: () => number; deadLetterRefreshMs?: number } = {},
  ) {
    this.#now = options.now ?? Date.now;
    this.#deadLetterRefreshMs = options.deadLetterRefreshMs ?? 15_000;
    for (const spec of specs) this.#addFigures(spec);
    if (options.defaultMetrics ?? true) {
      // prom-client's process metrics (memory, CPU, GC, handles) load on
      // the first scrape: about 4 MB that an unscraped process keeps.
      this.#defaultMetrics = async () => {
        const config = { prefix: "sluice_" };
        for (const { default: add } of await defaultMetricModules()) {
          (add as (registry: client.Registry, options: typeof config) => void)(
            this.registry,
            config,
          );
        }
      };
      const loop = new EventLoopMonitor();
      new client.Gauge({
        name: "sluice_event_loop_lag_seconds",
        help: "Worst event-loop delay in the last 10 s (how late a 100 ms timer fired).",
        registers: [this.registry],
        collect() {
          this.set(loop.lagSeconds());
        },
      });
    }
    this.#m = this.#createMetrics();
    for (const spec of specs) this.#m.queueDepth.set({ pipeline: spec.name }, 0);
  }

  /** Starts counting for a pipeline added while the process runs (`POST /connectors`). */
  track(spec: PipelineSpec): void {
    if (this.#figures.get(spec.name)?.mode === spec.source.plugin.mode) return;
    this.#addFigures(spec);
    this.#m.queueDepth.set({ pipeline: spec.name }, 0);
  }

  #addFigures(spec: PipelineSpec): void {
    this.#figures.set(spec.name, {
      mode: spec.source.plugin.mode,
      recordsRead: 0,
      recordsFailed: 0,
      deadLetters: new Map(),
      runs: [],
      lastRunFailed: false,
      pluginGauges: new Map(),
    });
    this.#pending.set(spec.name, []);
  }

  #createMetrics() {
    const registers = [this.registry];
    const counter = (name: string, help: string, labelNames = ["pipeline"]) =>
      new client.Counter({ name, help, labelNames, registers });
    const gauge = (name: string, help: string, labelNames = ["pipeline"]) =>
      new client.Gauge({ name, help, labelNames, registers });
    const histogram = (name: string, help: string, buckets: number[]) =>
      new client.Histogram({ name, help, labelNames: ["pipeline"], buckets, registers });
    const figures = this.#figures;
    const lag = (name: string) => this.lagSeconds(name);
    const failed = (name: string) => this.streamFailed(name);
    return {
      batchRuns: counter(
        "sluice_batch_runs_total",
        "Finished batch job runs (after retries) by outcome.",
        ["pipeline", "outcome"],
      ),
      runDuration: histogram(
        "sluice_batch_run_duration_seconds",
        "Duration of batch job runs.",
        RUN_BUCKETS,
      ),
      lastSuccess: gauge(
        "sluice_batch_last_success_timestamp_seconds",
        "Unix time of the last successful batch job run.",
      ),
      lastRunFailed: gauge(
        "sluice_batch_last_run_failed",
        "1 when the last batch job run failed (after its retries), else 0.",
      ),
      ticksSkipped: counter(
        "sluice_batch_ticks_skipped_total",
        "Scheduled or triggered runs skipped because another worker of the group runs (running_elsewhere) or ran (already_run) them.",
        ["pipeline", "reason"],
      ),
      validationFailures: counter(
        "sluice_validation_failures_total",
        "Failed post-run validation checks.",
        ["pipeline", "check"],
      ),
      read: counter("sluice_records_read_total", "Records read from the source."),
      written: counter("sluice_records_written_total", "Records the sink made durable."),
      filtered: counter("sluice_records_filtered_total", "Records dropped by transforms."),
      failed: counter(
        "sluice_records_failed_total",
        "Records that failed in a transform or the sink and were tolerated.",
      ),
      deadLettered: counter(
        "sluice_records_dead_lettered_total",
        "Records sent to a dead-letter destination.",
      ),
      skipped: counter("sluice_records_skipped_total", "Records the sink chose not to apply."),
      deadLetters: counter(
        "sluice_dead_letters_total",
        "Dead letters written by this process, per destination.",
        ["pipeline", "destination"],
      ),
      deadLetterSize: new client.Gauge({
        name: "sluice_dead_letters",
        help:
          "Dead letters a destination holds now: grows as records are dead-lettered, and is read again from the destination (rows, lines, topic messages not in the replay ledger) at most every 15 s on scrape, so replayed and purged ones leave it.",
        labelNames: ["pipeline", "destination"],
        registers,
        collect: () => this.refreshDeadLetterSizes(),
      }),
      errors: counter(
        "sluice_errors_total",
        "Runs that ended in an error (a stream restart counts once).",
      ),
      batchSize: histogram("sluice_sink_batch_size", "Records per sink write.", SIZE_BUCKETS),
      writeSeconds: histogram(
        "sluice_sink_write_duration_seconds",
        "Sink write latency per batch, retries included.",
        SECONDS_BUCKETS,
      ),
      queueDepth: gauge("sluice_queue_depth", "Batches waiting between source and sink."),
      reconciliationRows: gauge(
        "sluice_reconciliation_rows",
        "Rows the last reconciliation run found, by kind: missing (in the source only), extra (in the target only), different, remaining (left after repair and re-check).",
        ["pipeline", "kind"],
      ),
      reconciliationRepaired: counter(
        "sluice_reconciliation_repaired_rows_total",
        "Differences a reconciliation wrote through the sink (repair).",
      ),
      reconciliationRuns: counter(
        "sluice_reconciliation_runs_total",
        "Reconciliation runs by result: in_sync, differences (some remain) or repaired (none remain).",
        ["pipeline", "result"],
      ),
      reconciliationLastRun: gauge(
        "sluice_reconciliation_last_run_timestamp_seconds",
        "Unix time of the last finished reconciliation run.",
      ),
      streamFailed: new client.Gauge({
        name: "sluice_stream_failed",
        help:
          "1 while a stream is FAILED: it stopped on an error it does not retry (or ran out of retries) and stays down until restarted; else 0.",
        labelNames: ["pipeline"],
        registers,
        collect() {
          for (const [name, figure] of figures) {
            if (figure.mode === "stream") this.set({ pipeline: name }, failed(name) ? 1 : 0);
          }
        },
      }),
      lag: new client.Gauge({
        name: "sluice_stream_lag_seconds",
        help:
          "Now minus the source commit time of the oldest event read but not yet durable; 0 when caught up.",
        labelNames: ["pipeline"],
        registers,
        collect() {
          for (const [name, figure] of figures) {
            if (figure.mode === "stream") this.set({ pipeline: name }, lag(name));
          }
        },
      }),
    };
  }

  /**
   * Tells the metrics where to read each pipeline's state (the runtime's
   * controls), for `sluice_stream_failed` and the stream_failed rule.
   */
  watchStates(stateOf: (pipeline: string) => string | undefined): void {
    this.#stateOf = stateOf;
  }

  /** Whether the stream `pipeline` is FAILED: down for good until restarted. */
  streamFailed(pipeline: string): boolean {
    return this.#figures.get(pipeline)?.mode === "stream" && this.#stateOf?.(pipeline) === "FAILED";
  }

  /** The figures the alert rules read, by pipeline. */
  get figures(): ReadonlyMap<string, PipelineFigures> {
    return this.#figures;
  }

  /**
   * A stream's lag in seconds: now minus the commit time of the oldest event
   * read but not yet durable, or 0 when everything read is durable. (Measured
   * from the last durable event instead, one new event after an idle hour
   * would show an hour of lag.)
   */
  lagSeconds(pipeline: string): number {
    const pending = this.#pending.get(pipeline) ?? [];
    const oldest = pending.find((batch) => batch.oldestEventMs !== undefined)?.oldestEventMs;
    if (oldest === undefined) return 0;
    return Math.max(0, (this.#now() - oldest) / 1000);
  }

  /**
   * The metrics a run's plugins report (`context.metrics`), labelled with the
   * pipeline; the gauge series they set are removed by `release()`.
   */
  pluginMetrics(pipeline: string): RunMetrics {
    const set = new Map<
      string,
      { name: string; gauge: client.Gauge; labels: Record<string, string> }
    >();
    const figures = this.#figures.get(pipeline)?.pluginGauges;
    const keep = (name: string, labels: Record<string, string>, value?: number) => {
      if (!figures) return;
      const series = figures.get(name) ?? new Map<string, PluginSeries>();
      figures.set(name, series);
      if (value === undefined) series.delete(JSON.stringify(labels));
      else series.set(JSON.stringify(labels), { labels, value });
    };
    const labelsOf = (definition: MetricDefinition, labels: MetricLabels) => {
      const result: Record<string, string> = { pipeline };
      for (const name of definition.labels ?? []) {
        const value = labels[name];
        if (value === undefined) {
          throw new Error(`Metric ${definition.name} needs a value for label "${name}"`);
        }
        result[name] = String(value);
      }
      return result;
    };
    return {
      gauge: (definition) => {
        const gauge = this.#pluginMetric(definition, "gauge") as client.Gauge;
        return {
          set(labels, value) {
            const all = labelsOf(definition, labels);
            gauge.set(all, value);
            keep(definition.name, all, value);
            set.set(`${definition.name}${JSON.stringify(all)}`, {
              name: definition.name,
              gauge,
              labels: all,
            });
          },
          remove(labels) {
            const all = labelsOf(definition, labels);
            gauge.remove(all);
            keep(definition.name, all);
            set.delete(`${definition.name}${JSON.stringify(all)}`);
          },
        };
      },
      counter: (definition) => {
        const counter = this.#pluginMetric(definition, "counter") as client.Counter;
        return { inc: (labels, by = 1) => counter.inc(labelsOf(definition, labels), by) };
      },
      release() {
        for (const { name, gauge, labels } of set.values()) {
          gauge.remove(labels);
          keep(name, labels);
        }
        set.clear();
      },
    };
  }

  /** The plugin metric of that name, created on first use; a clash of kind or labels throws. */
  #pluginMetric(definition: MetricDefinition, kind: "gauge" | "counter"): client.Metric {
    const { name, help } = definition;
    const labelNames = ["pipeline", ...(definition.labels ?? [])];
    const known = this.#pluginMetrics.get(name);
    if (known) {
      if (known.kind !== kind || known.labels !== labelNames.join(",")) {
        throw new Error(
          `Metric ${name} is already declared as a ${known.kind} with labels ${known.labels}; cannot declare it as a ${kind} with labels ${labelNames}`,
        );
      }
      return known.metric;
    }
    if (!/^[a-zA-Z_:][a-zA-Z0-9_:]*$/.test(name)) {
      throw new Error(`"${name}" is not a valid metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)`);
    }
    for (const label of definition.labels ?? []) {
      if (!/^[a-zA-Z_][a-zA-Z0-9_]*$/.test(label) || label.startsWith("__")) {
        throw new Error(`Metric ${name}: "${label}" is not a valid label name`);
      }
      if (label === "pipeline") throw new Error(`Metric ${name}: the pipeline label is added`);
    }
    if (this.registry.getSingleMetric(name)) {
      throw new Error(`Metric ${name} is one of Sluice's own; choose another name`);
    }
    const options = { name, help, labelNames, registers: [this.registry] };
    const metric = kind === "gauge" ? new client.Gauge(options) : new client.Counter(options);
    this.#pluginMetrics.set(name, { kind, labels: labelNames.join(","), metric });
    return metric;
  }

  /**
   * Has the `sluice_dead_letters` gauge of `pipeline` at `destination` read
   * the destination's real size with `count` (on scrape, at most every 15 s).
   */
  watchDeadLetters(pipeline: string, destination: string, count: () => Promise<number>): void {
    this.#deadLetterSizes.push({ pipeline, destination, count, readAt: -Infinity });
  }

  /**
   * Starts the due reads of dead-letter sizes and waits for them up to 2 s;
   * a slower one lands on a later scrape or alert evaluation.
   */
  async refreshDeadLetterSizes(): Promise<void> {
    const now = this.#now();
    const reads = this.#deadLetterSizes.map((probe) => {
      if (!probe.reading && now - probe.readAt >= this.#deadLetterRefreshMs) {
        probe.readAt = now;
        const labels = { pipeline: probe.pipeline, destination: probe.destination };
        probe.reading = probe.count().then(
          (size) => {
            this.#m.deadLetterSize.set(labels, size);
            this.#figures.get(probe.pipeline)?.deadLetters.set(probe.destination, size);
          },
          // Unreachable right now: keep the last value (the counters still move).
          () => {},
        ).finally(() => probe.reading = undefined);
      }
      return probe.reading;
    }).filter((read) => read !== undefined);
    if (reads.length === 0) return;
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      Promise.all(reads),
      new Promise((resolve) => timer = setTimeout(resolve, 2000)),
    ]);
    clearTimeout(timer);
  }

  /** The exposition text for `/metrics`. */
  async render(): Promise<string> {
    if (this.#defaultMetrics) this.#defaultMetricsLoaded ??= this.#defaultMetrics();
    await this.#defaultMetricsLoaded;
    return await this.registry.metrics();
  }

  onBatchRead(pipeline: string, event: BatchReadEvent): void {
    const figure = this.#figures.get(pipeline);
    if (!figure) return;
    const count = event.records.length + event.failures + (event.copyRows ?? 0);
    figure.recordsRead += count;
    this.#m.read.inc({ pipeline }, count);
    this.#m.queueDepth.set({ pipeline }, event.queueDepth + 1);
    if (figure.mode === "stream") {
      let oldest: number | undefined;
      for (const record of event.records) {
        const at = record.timestamp;
        if (at !== undefined && (oldest === undefined || at < oldest)) oldest = at;
      }
      this.#pending.get(pipeline)!.push({ oldestEventMs: oldest });
    }
  }

  onBatchWritten(pipeline: string, event: BatchWrittenEvent): void {
    const figure = this.#figures.get(pipeline);
    if (!figure) return;
    const labels = { pipeline };
    this.#m.written.inc(labels, event.written);
    if (event.filtered) this.#m.filtered.inc(labels, event.filtered);
    if (event.skipped) this.#m.skipped.inc(labels, event.skipped);
    if (event.records > 0) {
      this.#m.batchSize.observe(labels, event.records);
      this.#m.writeSeconds.observe(labels, event.writeMs / 1000);
    }
    this.#m.queueDepth.set(labels, event.queueDepth);
    if (figure.mode === "stream") this.#pending.get(pipeline)!.shift();
  }

  onRecordsFailed(pipeline: string, event: RecordsFailedEvent): void {
    const figure = this.#figures.get(pipeline);
    if (!figure) return;
    figure.recordsFailed += event.count;
    this.#m.failed.inc({ pipeline }, event.count);
    if (event.destination === undefined) return;
    this.#m.deadLettered.inc({ pipeline }, event.count);
    this.#m.deadLetters.inc({ pipeline, destination: event.destination }, event.count);
    this.#m.deadLetterSize.inc({ pipeline, destination: event.destination }, event.count);
    figure.deadLetters.set(
      event.destination,
      (figure.deadLetters.get(event.destination) ?? 0) + event.count,
    );
  }

  onRunFinished(report: RunReport): void {
    // Batches still queued when a run ends are read again by the next run.
    this.#pending.set(report.pipeline, []);
    this.#m.queueDepth.set({ pipeline: report.pipeline }, 0);
    // A standby attempt (another worker owns the slot) is not an error.
    if (report.status === "failed" && !standbyOf(report.error)) {
      this.#m.errors.inc({ pipeline: report.pipeline });
    }
    for (const check of report.validation) {
      if (check.reconciliation) this.#reconciled(report.pipeline, check.reconciliation);
    }
  }

  #reconciled(pipeline: string, found: ReconciliationFigures): void {
    const rows = this.#m.reconciliationRows;
    rows.set({ pipeline, kind: "missing" }, found.missing);
    rows.set({ pipeline, kind: "extra" }, found.extra);
    rows.set({ pipeline, kind: "different" }, found.different);
    rows.set({ pipeline, kind: "remaining" }, found.remaining);
    if (found.repaired > 0) this.#m.reconciliationRepaired.inc({ pipeline }, found.repaired);
    const differed = found.missing + found.extra + found.different > 0;
    const result = found.remaining > 0 ? "differences" : differed ? "repaired" : "in_sync";
    this.#m.reconciliationRuns.inc({ pipeline, result });
    this.#m.reconciliationLastRun.set({ pipeline }, this.#now() / 1000);
  }

  onTickSkipped(pipeline: string, reason: "running_elsewhere" | "already_run"): void {
    this.#m.ticksSkipped.inc({ pipeline, reason });
  }

  /** Takes the runtime's final report of a job (after its retries). */
  onJobFinished(report: JobReport): void {
    const figure = this.#figures.get(report.pipeline);
    if (!figure || figure.mode !== "batch" || report.status === "stopped") return;
    const pipeline = report.pipeline;
    const ok = report.status === "succeeded";
    const now = this.#now();
    this.#m.batchRuns.inc({ pipeline, outcome: report.status });
    this.#m.runDuration.observe({ pipeline }, report.durationMs / 1000);
    this.#m.lastRunFailed.set({ pipeline }, ok ? 0 : 1);
    if (ok) this.#m.lastSuccess.set({ pipeline }, now / 1000);
    for (const check of report.validation) {
      if (!check.ok) this.#m.validationFailures.inc({ pipeline, check: check.name });
    }
    figure.lastRunFailed = !ok;
    figure.runs.push({ at: now, ok });
    // A day of outcomes is plenty for the success-rate rule.
    while (figure.runs.length > 0 && figure.runs[0].at < now - 7 * 86_400_000) figure.runs.shift();
  }
}
