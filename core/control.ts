/**
 * What an operator can do to one pipeline while the process runs: pause it
 * (the source is no longer read; what was read is still written), resume it,
 * stop it (the run ends gracefully and stays ended), restart it. Also the
 * pipeline's state in Kafka Connect's words and its recent runs.
 *
 * The runtime owns one control per pipeline and consults it around each run;
 * the REST API drives it.
 *
 * @module
 */
import type { RunReport } from "./pipeline.ts";

/**
 * Kafka Connect's connector states, plus STANDBY: another process of the
 * group owns what the pipeline needs (its replication slot), and this one
 * waits to take over.
 *
 * @example
 * ```ts
 * import type { ConnectorState } from "@sluice/sluice";
 * const state: ConnectorState = "PAUSED";
 * ```
 */
export type ConnectorState = "RUNNING" | "PAUSED" | "FAILED" | "STOPPED" | "STANDBY";

/** What the operator asked for. */
type Target = "running" | "paused" | "stopped";

/** How many finished runs a control remembers for the API. */
const HISTORY = 10;

/** A stream waiting out its backoff after a failed attempt. */
export interface Retry {
  /** The error the attempt failed with. */
  readonly error: Error;
  /** Failed attempts in a row, this one included. */
  readonly attempt: number;
  /** When the next attempt starts. */
  readonly nextAttemptAt: Date;
}

/**
 * The operator's handle on one pipeline: what the REST API's pause, resume,
 * stop and restart act on, and where its status comes from.
 *
 * @example The control of a pipeline, from the runtime
 * ```ts
 * import { MemoryOffsetStore, Runtime } from "@sluice/sluice";
 *
 * await using runtime = new Runtime([], { offsets: new MemoryOffsetStore() });
 * // With pipelines, runtime.control("name").state is "RUNNING", "PAUSED",
 * // "FAILED" or "STOPPED", as Kafka Connect reports it.
 * ```
 */
export class PipelineControl {
  /** The pipeline's name. */
  readonly name: string;
  #target: Target = "running";
  #run?: AbortController;
  #restartRequested = false;
  #failure?: Error;
  #retry?: Retry;
  #wakers: (() => void)[] = [];
  #history: RunReport[] = [];
  #runStartedAt?: Date;
  #restarts = 0;
  #standby?: string;
  #owns: string[] = [];

  /** A control for pipeline `name`, running until told otherwise. */
  constructor(name: string) {
    this.name = name;
  }

  /** The state shown by `GET /connectors/{name}/status`. */
  get state(): ConnectorState {
    if (this.#target === "stopped") return "STOPPED";
    if (this.#target === "paused") return "PAUSED";
    if (this.#failure) return "FAILED";
    return this.#standby ? "STANDBY" : "RUNNING";
  }

  /** Why the pipeline is on standby (another process owns its resource), or undefined. */
  get standby(): string | undefined {
    return this.#standby;
  }

  /** What this process owns for the pipeline, e.g. `slot warehouse_slot`. */
  get owns(): readonly string[] {
    return this.#owns;
  }

  /** Called by the runtime: on standby for `reason`, or (undefined) no longer. */
  setStandby(reason: string | undefined): void {
    this.#standby = reason;
    if (reason) this.#owns = [];
  }

  /**
   * Called when the run took a resource only one process may hold: standby
   * ends. A resource replaces an earlier one of its kind (its first word), so
   * `partitions t:0,t:3` replaces the partitions held before a rebalance.
   */
  claimed(resource: string): void {
    this.#standby = undefined;
    const kind = resource.split(" ")[0];
    this.#owns = [...this.#owns.filter((held) => held.split(" ")[0] !== kind), resource];
  }

  /** The error that put the pipeline in FAILED, with its stack and causes. */
  get failure(): Error | undefined {
    return this.#failure;
  }

  /** When the run in progress started, or undefined when none is running. */
  get runStartedAt(): Date | undefined {
    return this.#runStartedAt;
  }

  /** Finished runs, newest first (final reports of jobs; ends of streams). */
  get history(): readonly RunReport[] {
    return this.#history;
  }

  /** Whether a scheduled run may start now (not paused or stopped). */
  get runnable(): boolean {
    return this.#target === "running";
  }

  /** Whether the operator stopped the pipeline. */
  get stopped(): boolean {
    return this.#target === "stopped";
  }

  /** Called by the runtime as a run starts; the returned signal also ends it on stop or restart. */
  beginRun(signal: AbortSignal): AbortSignal {
    this.#run = new AbortController();
    this.#runStartedAt = new Date();
    return AbortSignal.any([signal, this.#run.signal]);
  }

  /** Called by the runtime when the run has ended. */
  endRun(): void {
    this.#owns = [];
    this.#run = undefined;
    this.#runStartedAt = undefined;
  }

  /** The failed attempt a stream is waiting out its backoff after, and when it tries again. */
  get retry(): Retry | undefined {
    return this.#runStartedAt ? undefined : this.#retry;
  }

  /** Called by the runtime: the stream failed and tries again after a backoff (undefined: it ran well). */
  setRetrying(retry: Retry | undefined): void {
    this.#retry = retry;
  }

  /** Called with every final report: a failure shows as FAILED until a later success. */
  record(report: RunReport): void {
    this.#history = [report, ...this.#history].slice(0, HISTORY);
    if (report.status === "failed") this.#failure = report.error;
    else if (report.status === "succeeded") this.#failure = undefined;
  }

  /** Stops reading the source; the batches already read are still written. */
  pause(): void {
    if (this.#target === "running") this.#target = "paused";
  }

  /** Resumes a paused pipeline, or starts a stopped one again. */
  resume(): void {
    this.#target = "running";
    this.#wake();
  }

  /** Ends the current run gracefully; nothing runs until resume or restart. */
  stop(): void {
    this.#target = "stopped";
    this.#run?.abort(new Error(`Pipeline "${this.name}" stopped by the operator`));
    this.#wake();
  }

  /** Ends the current run and starts a new one (clearing a failure). */
  restart(): void {
    this.#restarts++;
    this.#target = "running";
    this.#failure = undefined;
    if (this.#run) {
      this.#restartRequested = true;
      this.#run.abort(new Error(`Pipeline "${this.name}" restarted by the operator`));
    }
    this.#wake();
  }

  /** True once after `restart()` ended a run: the runtime then runs it again. */
  takeRestart(): boolean {
    const requested = this.#restartRequested;
    this.#restartRequested = false;
    return requested;
  }

  /** Resolves when the pipeline may read on: at once unless paused. */
  async gate(signal: AbortSignal): Promise<void> {
    while (this.#target === "paused" && !signal.aborted) await this.#nextChange(signal);
  }

  /** After an operator stop: waits for resume or restart (true) or `signal` (false). */
  async waitToRun(signal: AbortSignal): Promise<boolean> {
    while (this.#target === "stopped" && !signal.aborted) await this.#nextChange(signal);
    this.takeRestart();
    return !signal.aborted;
  }

  /** After a stream failed for good: waits for `restart()` (true) or `signal` (false). */
  async waitForRestart(signal: AbortSignal): Promise<boolean> {
    const seen = this.#restarts;
    while (this.#restarts === seen && !signal.aborted) await this.#nextChange(signal);
    this.takeRestart();
    return !signal.aborted;
  }

  #nextChange(signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        signal.removeEventListener("abort", done);
        resolve();
      };
      this.#wakers.push(done);
      signal.addEventListener("abort", done, { once: true });
    });
  }

  #wake(): void {
    for (const wake of this.#wakers.splice(0)) wake();
  }
}
