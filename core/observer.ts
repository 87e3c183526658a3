/**
 * The one interface through which the engine reports what it does, for
 * metrics and alerts. The pipeline and the runtime call it at a few points;
 * everything operational (Prometheus, alert rules, the REST API's run
 * history) hangs off it, so the data path stays free of operations code.
 *
 * Every method is optional and must return quickly: it runs on the data path.
 *
 * @module
 */
import type { RunReport } from "./pipeline.ts";
import type { SluiceRecord } from "../api/record.ts";
import type { PluginMetrics } from "../api/metrics.ts";

/** A batch the source produced, before transforms. */
export interface BatchReadEvent {
  /** The records read, as the source produced them. */
  readonly records: readonly SluiceRecord[];
  /** Records the source could not decode (they follow errors.tolerance). */
  readonly failures: number;
  /** Rows read as COPY text instead of records (see `CopyRows`); they count as records. */
  readonly copyRows?: number;
  /** Batches waiting between the source and the sink after this one was queued. */
  readonly queueDepth: number;
  /** What the source expects the whole run to read, when it can tell (batch sources). */
  readonly expectedRecords?: number;
}

/** A batch the sink made durable (its offset is committed right after). */
export interface BatchWrittenEvent {
  /** Records handed to the sink. */
  readonly records: number;
  /** Rows the sink reports it wrote. */
  readonly written: number;
  /** Records the sink skipped on purpose (stale events under the version guard). */
  readonly skipped: number;
  /** Records dropped by transforms in this batch. */
  readonly filtered: number;
  /** How long the sink write took, retries included. */
  readonly writeMs: number;
  /** Batches still waiting between the source and the sink. */
  readonly queueDepth: number;
}

/** Records that failed and were dead-lettered (or skipped with errors.tolerance all). */
export interface RecordsFailedEvent {
  /** How many records failed in this batch. */
  readonly count: number;
  /** Where they went, e.g. `file /var/dlq.jsonl`; undefined when only logged. */
  readonly destination?: string;
}

/**
 * The metrics of one run's plugins: what their context's `metrics` is, plus
 * the runtime's handle to remove every series they set when the run ends.
 *
 * @example Releasing a run's series
 * ```ts
 * import type { RunMetrics } from "@sluice/sluice";
 * import assert from "node:assert/strict";
 *
 * const series = new Set<string>();
 * const run: RunMetrics = {
 *   gauge: () => ({ set: (labels) => void series.add(JSON.stringify(labels)), remove() {} }),
 *   counter: () => ({ inc() {} }),
 *   release: () => series.clear(),
 * };
 * run.gauge({ name: "sluice_x", help: "x" }).set({}, 1);
 * run.release();
 * assert.equal(series.size, 0);
 * ```
 */
export interface RunMetrics extends PluginMetrics {
  /** Removes the gauge series this run set (counters keep their totals). */
  release(): void;
}

/**
 * Receives what pipelines do.
 *
 * @example Count written rows
 * ```ts
 * import type { PipelineObserver } from "@sluice/sluice";
 *
 * let written = 0;
 * const observer: PipelineObserver = {
 *   onBatchWritten(_pipeline, event) {
 *     written += event.written;
 *   },
 * };
 * observer.onBatchWritten?.("p", {
 *   records: 2, written: 2, skipped: 0, filtered: 0, writeMs: 1, queueDepth: 0,
 * });
 * if (written !== 2) throw new Error("not counted");
 * ```
 */
export interface PipelineObserver {
  /** A batch was read and queued. */
  onBatchRead?(pipeline: string, event: BatchReadEvent): void;
  /** A batch became durable. */
  onBatchWritten?(pipeline: string, event: BatchWrittenEvent): void;
  /** Records failed and were tolerated. */
  onRecordsFailed?(pipeline: string, event: RecordsFailedEvent): void;
  /** One run (one attempt of a job, or one life of a stream) ended. */
  onRunFinished?(report: RunReport): void;
  /** Metrics for the plugins of a run that starts now (their context's `metrics`). */
  pluginMetrics?(pipeline: string): RunMetrics;
  /** A scheduled or triggered run was skipped: another process of the group runs or ran it. */
  onTickSkipped?(pipeline: string, reason: "running_elsewhere" | "already_run"): void;
}

/** One observer that forwards to several. */
export function combineObservers(...observers: PipelineObserver[]): PipelineObserver {
  return {
    onBatchRead: (pipeline, event) => observers.forEach((o) => o.onBatchRead?.(pipeline, event)),
    onBatchWritten: (pipeline, event) =>
      observers.forEach((o) => o.onBatchWritten?.(pipeline, event)),
    onRecordsFailed: (pipeline, event) =>
      observers.forEach((o) => o.onRecordsFailed?.(pipeline, event)),
    onRunFinished: (report) => observers.forEach((o) => o.onRunFinished?.(report)),
    pluginMetrics: (pipeline) => {
      const owner = observers.find((o) => o.pluginMetrics);
      return owner?.pluginMetrics?.(pipeline) ?? {
        gauge: () => ({ set() {}, remove() {} }),
        counter: () => ({ inc() {} }),
        release() {},
      };
    },
  };
}
