/**
 * Metrics a plugin reports about what only it can see, such as how far a
 * replication slot or a consumer group is behind. The runtime hands every
 * plugin a {@linkcode PluginMetrics} in its context (`context.metrics`);
 * series get the pipeline's label added, appear in `/metrics` next to the
 * engine's own `sluice_*` series, and are removed when the run ends (a
 * stopped stream shows no stale lag).
 *
 * Without an operations side (a plain `runPipeline` call) the context has
 * no `metrics`; plugins therefore use it with optional chaining.
 *
 * @module
 */
/** @internal LogTape's `Logger` is public in LogTape (see api/plugin.ts). */
import type { Logger } from "@logtape/logtape";

/** Label values of one series, by label name (the `pipeline` label is added). */
export type MetricLabels = Readonly<Record<string, string | number>>;

/**
 * A metric a plugin declares: a Prometheus name (by convention
 * `sluice_<what>_<unit>`), a help text, and its labels besides `pipeline`.
 *
 * @example The slot lag gauge of postgres_cdc
 * ```ts
 * import type { MetricDefinition } from "@sluice/sluice";
 *
 * const slotLag: MetricDefinition = {
 *   name: "sluice_replication_slot_lag_bytes",
 *   help: "WAL bytes the slot's consumer has not confirmed.",
 *   labels: ["slot"],
 * };
 * ```
 */
export interface MetricDefinition {
  /** The series name, `[a-zA-Z_:][a-zA-Z0-9_:]*`; the same name must mean the same metric everywhere. */
  readonly name: string;
  /** One sentence for the exposition's `# HELP` line. */
  readonly help: string;
  /** Label names besides `pipeline`, which is added. */
  readonly labels?: readonly string[];
}

/**
 * A gauge a plugin sets: a value that goes up and down (lag, sizes).
 *
 * @example Setting and removing a partition's lag
 * ```ts
 * import type { MetricLabels, PluginGauge } from "@sluice/sluice";
 * import assert from "node:assert/strict";
 *
 * const values = new Map<string, number>();
 * const gauge: PluginGauge = {
 *   set: (labels: MetricLabels, value: number) => void values.set(JSON.stringify(labels), value),
 *   remove: (labels: MetricLabels) => void values.delete(JSON.stringify(labels)),
 * };
 * gauge.set({ topic: "orders", partition: 0 }, 12);
 * gauge.remove({ topic: "orders", partition: 0 });
 * assert.equal(values.size, 0);
 * ```
 */
export interface PluginGauge {
  /** Sets the series with these labels to `value`. */
  set(labels: MetricLabels, value: number): void;
  /** Removes the series with these labels (for example a partition no longer assigned). */
  remove(labels: MetricLabels): void;
}

/**
 * A counter a plugin increments: a total that only grows (Prometheus
 * derives rates from it).
 *
 * @example Counting failed polls
 * ```ts
 * import type { PluginCounter } from "@sluice/sluice";
 * import assert from "node:assert/strict";
 *
 * let total = 0;
 * const failures: PluginCounter = { inc: (_labels, by = 1) => void (total += by) };
 * failures.inc({ slot: "sluice" });
 * assert.equal(total, 1);
 * ```
 */
export interface PluginCounter {
  /** Adds `by` (default 1, never negative) to the series with these labels. */
  inc(labels: MetricLabels, by?: number): void;
}

/**
 * Where a plugin declares its own metrics; found in its context as
 * `context.metrics` when the process exposes metrics. Declaring the same
 * name twice (two runs, two pipelines) returns the same metric; declaring it
 * with other labels throws.
 *
 * @example A source that reports how many rows wait upstream
 * ```ts
 * import { getLogger } from "@logtape/logtape";
 * import { defineSource, type PluginGauge, type PluginMetrics } from "@sluice/sluice";
 * import { z } from "zod";
 * import assert from "node:assert/strict";
 *
 * const waiting = defineSource({
 *   name: "waiting",
 *   mode: "batch",
 *   summary: "Reads nothing; reports 7 rows waiting.",
 *   config: z.strictObject({}),
 *   create(_config, context) {
 *     context.metrics?.gauge({
 *       name: "sluice_upstream_waiting_rows",
 *       help: "Rows waiting upstream.",
 *       labels: ["table"],
 *     }).set({ table: "orders" }, 7);
 *     return { async *read() {}, close: () => Promise.resolve() };
 *   },
 * });
 *
 * const seen: number[] = [];
 * const metrics: PluginMetrics = {
 *   gauge: (): PluginGauge => ({ set: (_labels, value) => void seen.push(value), remove() {} }),
 *   counter: () => ({ inc() {} }),
 * };
 * await waiting.create({}, {
 *   pipeline: "p",
 *   logger: getLogger(["example"]),
 *   signal: new AbortController().signal,
 *   offset: undefined,
 *   fullRefresh: false,
 *   metrics,
 * });
 * assert.deepEqual(seen, [7]);
 * ```
 */
export interface PluginMetrics {
  /** Declares (or finds) a gauge. */
  gauge(definition: MetricDefinition): PluginGauge;
  /** Declares (or finds) a counter. */
  counter(definition: MetricDefinition): PluginCounter;
}

/** The counter of failed polls that {@linkcode pollMetrics} keeps. */
export const POLL_FAILURES: MetricDefinition = {
  name: "sluice_metric_poll_failures_total",
  help: "Polls of a plugin's metrics (slot lag, consumer lag) that failed; the data flow goes on.",
  labels: ["poll"],
};

/** What {@linkcode pollMetrics} needs. */
export interface MetricsPolling {
  /** The context's metrics; without them nothing is polled. */
  readonly metrics: PluginMetrics | undefined;
  /** The context's logger: the first failure of a streak is logged as a warning. */
  readonly logger: Logger;
  /** Names the poll in logs and in the failure counter's `poll` label, e.g. `replication_slot`. */
  readonly name: string;
  /** Milliseconds between the end of one poll and the start of the next; 0: never poll. */
  readonly intervalMs: number;
  /** Reads the figures and sets the gauges; a rejection is logged and counted, never thrown. */
  readonly poll: (metrics: PluginMetrics) => Promise<void>;
}

/**
 * Runs `poll` now and then every `intervalMs` (never two at once) until
 * stopped. A failing poll must not stop the data: its error is logged once
 * per streak of failures and counted in `sluice_metric_poll_failures_total`
 * (labels `pipeline`, `poll`). `stop()` waits for a poll in flight (at most
 * 2 s, so an unreachable server does not hold a shutdown); whatever that
 * poll sets after `stop()` is ignored, so no stale series outlives the run.
 *
 * @example Polling an upstream backlog, with one failure on the way
 * ```ts
 * import { getLogger } from "@logtape/logtape";
 * import { pollMetrics, type PluginMetrics } from "@sluice/sluice";
 * import assert from "node:assert/strict";
 *
 * const values: number[] = [];
 * let failures = 0;
 * const metrics: PluginMetrics = {
 *   gauge: () => ({ set: (_labels, value) => void values.push(value), remove() {} }),
 *   counter: () => ({ inc: () => void failures++ }),
 * };
 * let calls = 0;
 * const polling = pollMetrics({
 *   metrics,
 *   logger: getLogger(["example"]),
 *   name: "backlog",
 *   intervalMs: 5,
 *   poll(metrics) {
 *     if (++calls === 2) return Promise.reject(new Error("upstream unreachable"));
 *     metrics.gauge({ name: "sluice_backlog_rows", help: "Rows waiting." }).set({}, calls);
 *     return Promise.resolve();
 *   },
 * });
 * while (calls < 3) await new Promise((resolve) => setTimeout(resolve, 5));
 * await polling.stop();
 * assert.deepEqual(values.slice(0, 2), [1, 3]);
 * assert.equal(failures, 1);
 * ```
 */
export function pollMetrics(options: MetricsPolling): { stop(): Promise<void> } {
  const { metrics, logger, name, intervalMs } = options;
  if (!metrics || intervalMs <= 0) return { stop: () => Promise.resolve() };
  const failures = metrics.counter(POLL_FAILURES);
  let stopped = false;
  let failing = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let current: Promise<void> = Promise.resolve();
  // Gauges that ignore what a poll still in flight sets after stop().
  const guarded: PluginMetrics = {
    gauge(definition) {
      const gauge = metrics.gauge(definition);
      return {
        set: (labels, value) => stopped ? undefined : gauge.set(labels, value),
        remove: (labels) => stopped ? undefined : gauge.remove(labels),
      };
    },
    counter: (definition) => metrics.counter(definition),
  };
  const run = async () => {
    try {
      await options.poll(guarded);
      if (failing) logger.info("Polling {poll} metrics works again", { poll: name });
      failing = false;
    } catch (error) {
      failures.inc({ poll: name });
      if (!failing && !stopped) {
        logger.warn("Polling {poll} metrics failed (logged once until it works again): {error}", {
          poll: name,
          error: (error as Error)?.message ?? String(error),
        });
      }
      failing = true;
    }
    if (!stopped) timer = setTimeout(() => current = run(), intervalMs);
  };
  current = run();
  return {
    async stop() {
      stopped = true;
      clearTimeout(timer);
      let waited: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        current,
        new Promise((resolve) => waited = setTimeout(resolve, 2_000)),
      ]);
      clearTimeout(waited);
    },
  };
}
