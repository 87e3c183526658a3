/**
 * The runtime: many pipelines in one process. Batch pipelines run as jobs on
 * a cron schedule (with retries, timeouts and `depends.on`); stream pipelines
 * run as supervised tasks that restart after transient faults. Several
 * processes can run the same pipelines: see `cluster.ts`.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import type { PipelineSpec } from "./config.ts";
import { errorMessage, RetriableError } from "../api/errors.ts";
import { type PipelineEnvironment, runPipeline, type RunReport, sleep } from "./pipeline.ts";
import { PipelineControl } from "./control.ts";
import { nextRunTime, scheduleJob } from "./_schedule.ts";
import {
  type GroupRun,
  type JobCoordinator,
  type JobLease,
  type SkipReason,
  standbyOf,
} from "./cluster.ts";

const logger = getLogger(["sluice", "runtime"]);

/**
 * Options of a manual or scheduled job run.
 *
 * @example A manual full refresh that reports at once
 * ```ts
 * import type { JobRunOptions } from "@sluice/sluice";
 *
 * const options: JobRunOptions = { fullRefresh: true, noRetries: true };
 * ```
 */
export interface JobRunOptions {
  /** Ignore the stored watermark and read everything. */
  readonly fullRefresh?: boolean;
  /** Re-sync the rows changed at or after this time; the stored watermark stays. */
  readonly since?: Date;
  /** Run the jobs that depend on this one after it succeeds. */
  readonly withDownstream?: boolean;
  /** Skip retries (a manual run that should report at once). */
  readonly noRetries?: boolean;
}

/**
 * The outcome of one job run, including its retries.
 *
 * @example Flagging a job that needed retries
 * ```ts
 * import type { JobReport } from "@sluice/sluice";
 * import assert from "node:assert/strict";
 *
 * const flaky = (report: JobReport): boolean => report.status === "succeeded" && report.attempts > 1;
 * assert.equal(flaky({
 *   pipeline: "scheme_sync",
 *   status: "succeeded",
 *   attempts: 2,
 *   stats: { read: 1, written: 1, filtered: 0, deadLettered: 0, skipped: 0 },
 *   startedAt: new Date(),
 *   durationMs: 5,
 *   validation: [],
 * }), true);
 * ```
 */
export interface JobReport extends RunReport {
  /** How many attempts it took (1 when the first succeeded). */
  readonly attempts: number;
}

/**
 * How a runtime runs among others and within its process.
 *
 * @example Three jobs at a time, coordinated through a group-wide coordinator
 * ```ts
 * import type { JobCoordinator, RuntimeOptions } from "@sluice/sluice";
 *
 * const alone: JobCoordinator = {
 *   workerId: "local",
 *   claim: () => Promise.resolve({ lease: { finish: () => Promise.resolve() } }),
 *   lastSuccess: () => Promise.resolve(new Map()),
 * };
 * const options: RuntimeOptions = { maxParallelJobs: 3, coordinator: () => alone };
 * ```
 */
export interface RuntimeOptions {
  /** Keep failed streams waiting for a restart instead of ending the process. */
  readonly keepFailed?: boolean;
  /**
   * The group-wide coordinator of a batch job (locks, ticks, `depends.on`
   * across processes), or undefined to run it as if alone.
   */
  readonly coordinator?: (spec: PipelineSpec) => JobCoordinator | undefined;
  /** Most batch jobs running at once in this process (default: no limit). */
  readonly maxParallelJobs?: number;
  /** This process's name in its group, for status. */
  readonly workerId?: string;
}

/**
 * Listens to job and stream outcomes (for summaries and metrics).
 *
 * @example Counting failures
 * ```ts
 * import type { ReportListener } from "@sluice/sluice";
 *
 * let failures = 0;
 * const countFailures: ReportListener = (report) => {
 *   if (report.status === "failed") failures++;
 * };
 * ```
 */
export type ReportListener = (report: JobReport) => void;

/**
 * Runs and supervises a set of pipelines: batch jobs with retries, timeouts
 * and `depends.on`, streams restarted after transient faults. Stop it with
 * {@linkcode Runtime.stop}, or let `await using` stop it.
 *
 * @example Running a job by hand, then stopping at the end of the scope
 * ```ts
 * import {
 *   buildPipelines,
 *   defineSink,
 *   defineSource,
 *   type JobReport,
 *   MemoryOffsetStore,
 *   Registry,
 *   Runtime,
 * } from "@sluice/sluice";
 * import { z } from "zod";
 * import assert from "node:assert/strict";
 *
 * const one = defineSource({
 *   name: "one",
 *   mode: "batch",
 *   summary: "One record.",
 *   config: z.strictObject({}),
 *   create: () => ({
 *     async *read() {
 *       yield { records: [{ topic: "t", key: { id: 1 }, value: { id: 1 } }] };
 *     },
 *     close: () => Promise.resolve(),
 *   }),
 * });
 * const discard = defineSink({
 *   name: "discard",
 *   summary: "Accepts and forgets.",
 *   config: z.strictObject({}),
 *   create: () => ({
 *     write: (batch) => Promise.resolve({ written: batch.records.length }),
 *     close: () => Promise.resolve(),
 *   }),
 * });
 * const specs = await buildPipelines(
 *   [{ name: "once", config: { "connector.class": "one", "sink.class": "discard" }, baseDir: "." }],
 *   { registry: new Registry([one, discard]) },
 * );
 *
 * const reports: JobReport[] = [];
 * {
 *   await using runtime = new Runtime(specs, { offsets: new MemoryOffsetStore() });
 *   runtime.onReport((report) => reports.push(report));
 *   const report = await runtime.runJob("once");
 *   assert.equal(report.status, "succeeded");
 *   assert.equal(report.attempts, 1);
 * }
 * assert.equal(reports.length, 1);
 * ```
 */
export class Runtime implements AsyncDisposable {
  readonly #specs: Map<string, PipelineSpec>;
  readonly #environment: PipelineEnvironment;
  readonly #shutdown = new AbortController();
  readonly #running = new Map<string, Promise<JobReport | undefined>>();
  readonly #tasks = new Set<Promise<unknown>>();
  readonly #listeners: ReportListener[] = [];
  /** Last successful run time of each job, for `depends.on`. */
  readonly #lastSuccess = new Map<string, number>();
  /** Streams still supervised (running or waiting to restart). */
  readonly #liveStreams = new Set<string>();
  /** Streams that failed and stay stopped. */
  readonly #failedStreams = new Set<string>();
  #schedules = 0;
  #streamsStarted = false;
  /** The operator's handle on each pipeline (pause, resume, stop, restart, state). */
  readonly #controls = new Map<string, PipelineControl>();
  readonly #keepFailed: boolean;
  /** Aborted when the pipeline is removed or replaced (and on shutdown). */
  readonly #lifetimes = new Map<string, AbortController>();
  /** The supervised stream or running job of each pipeline. */
  readonly #pipelineTasks = new Map<string, Set<Promise<unknown>>>();
  /** Pipelines being removed or replaced: their end does not stop the runtime. */
  readonly #retiring = new Set<string>();
  #started = false;
  readonly #coordinator: RuntimeOptions["coordinator"];
  readonly #jobSlots: JobSlots;
  readonly #workerId: string | undefined;

  /**
   * Prepares `specs`; nothing runs until {@linkcode Runtime.start} or
   * {@linkcode Runtime.runJob}. By default the runtime stops itself once no
   * pipeline can run any more (every stream failed for good, no job
   * scheduled), so that a supervisor sees the process end;
   * `keepFailed: true` keeps failed streams waiting for a restart instead,
   * as a Kafka Connect worker keeps FAILED connectors.
   */
  constructor(
    specs: readonly PipelineSpec[],
    environment: PipelineEnvironment,
    options: RuntimeOptions = {},
  ) {
    this.#keepFailed = options.keepFailed ?? false;
    this.#coordinator = options.coordinator;
    this.#jobSlots = new JobSlots(options.maxParallelJobs ?? Infinity);
    this.#workerId = options.workerId;
    this.#specs = new Map(specs.map((spec) => [spec.name, spec]));
    for (const name of this.#specs.keys()) {
      this.#controls.set(name, new PipelineControl(name));
      this.#lifetimes.set(name, new AbortController());
    }
    this.#environment = {
      ...environment,
      gate: (name, signal) => this.control(name).gate(signal),
      claimed: (name, resource) => {
        const control = this.control(name);
        if (control.standby) {
          logger.info("{pipeline} took over {resource}", { pipeline: name, resource });
        }
        control.claimed(resource);
      },
    };
    this.onReport((report) => this.control(report.pipeline).record(report));
  }

  /** The control of pipeline `name` (throws for an unknown name). */
  control(name: string): PipelineControl {
    const control = this.#controls.get(name);
    if (!control) throw new Error(`Unknown pipeline "${name}"`);
    return control;
  }

  /** Aborted when the runtime stops. */
  get signal(): AbortSignal {
    return this.#shutdown.signal;
  }

  /** Calls `listener` with every finished job run and stream run. */
  onReport(listener: ReportListener): void {
    this.#listeners.push(listener);
  }

  /** The pipeline specs, by name. */
  get pipelines(): ReadonlyMap<string, PipelineSpec> {
    return this.#specs;
  }

  /**
   * Starts everything: streams begin, scheduled jobs are put on their cron schedule,
   * and batch jobs with neither a schedule nor upstream jobs run once now.
   * Returns whether anything keeps running (streams or schedules). When
   * every stream has ended (failed for good, or finished) and no job is
   * scheduled or running, the runtime stops itself: `signal` aborts.
   */
  start(): boolean {
    this.#started = true;
    let longRunning = false;
    for (const spec of this.#specs.values()) {
      if (this.#launch(spec, true)) longRunning = true;
    }
    return longRunning;
  }

  /**
   * Starts one pipeline as {@linkcode Runtime.start} does: a stream is
   * supervised, a scheduled job goes on its schedule ({@linkcode scheduleJob}), and (when `runOnce`) a
   * job with neither a schedule nor upstream jobs runs now. Returns whether
   * it keeps running.
   */
  #launch(spec: PipelineSpec, runOnce: boolean): boolean {
    if (spec.source.plugin.mode === "stream") {
      this.#liveStreams.add(spec.name);
      this.#streamsStarted = true;
      this.#track(
        this.#superviseStream(spec).finally(() => this.#streamEnded(spec.name)),
        spec.name,
      );
      return true;
    }
    const schedule = spec.options["job.schedule"];
    if (schedule) {
      scheduleJob(
        cronName(spec.name),
        schedule,
        this.#signalOf(spec.name),
        (tick) => this.#scheduledRun(spec.name, tick),
      );
      logger.info("Scheduled {pipeline} at {schedule} (UTC); first run at {next}", {
        pipeline: spec.name,
        schedule,
        next: nextRunTime(schedule) ?? "(unknown)",
      });
      this.#schedules++;
      return true;
    }
    if (runOnce && spec.options["job.depends.on"].length === 0) {
      void this.runJob(spec.name, { withDownstream: true });
    }
    return false;
  }

  /**
   * Adds a pipeline while the runtime runs (`POST /connectors`): once the
   * runtime has started, it starts as it would have at start.
   */
  add(spec: PipelineSpec): void {
    this.#install(spec);
    if (this.#started && !this.#shutdown.signal.aborted) this.#launch(spec, true);
  }

  /**
   * Replaces a pipeline's spec (`PUT /connectors/{name}/config`): a stream
   * run ends gracefully, its offsets committed, and starts again with the
   * new spec; a job's schedule is replaced (a run in progress ends first).
   * Pause and stop carry over, as the run history does.
   */
  async replace(spec: PipelineSpec): Promise<void> {
    await this.#retire(spec.name);
    this.#install(spec);
    if (this.#started && !this.#shutdown.signal.aborted) this.#launch(spec, false);
  }

  /**
   * Removes a pipeline (`DELETE /connectors/{name}`): its run ends
   * gracefully (offsets committed) and its schedule is dropped.
   */
  async remove(name: string): Promise<void> {
    await this.#retire(name);
    this.#controls.delete(name);
  }

  #install(spec: PipelineSpec): void {
    if (this.#specs.has(spec.name)) throw new Error(`Pipeline "${spec.name}" exists already`);
    this.#specs.set(spec.name, spec);
    if (!this.#controls.has(spec.name)) {
      this.#controls.set(spec.name, new PipelineControl(spec.name));
    }
    this.#lifetimes.set(spec.name, new AbortController());
  }

  /** Ends a pipeline's stream, schedule and running job, and forgets its spec. */
  async #retire(name: string): Promise<void> {
    const spec = this.#specs.get(name);
    if (!spec) throw new Error(`Unknown pipeline "${name}"`);
    this.#retiring.add(name);
    try {
      this.#lifetimes.get(name)?.abort(
        new Error(`Pipeline "${name}" is being replaced or removed`),
      );
      while ((this.#pipelineTasks.get(name)?.size ?? 0) > 0) {
        await Promise.allSettled([...this.#pipelineTasks.get(name)!]);
      }
    } finally {
      this.#retiring.delete(name);
    }
    this.#specs.delete(name);
    this.#lifetimes.delete(name);
    this.#liveStreams.delete(name);
    this.#failedStreams.delete(name);
    if (spec.source.plugin.mode === "batch" && spec.options["job.schedule"] && this.#started) {
      this.#schedules--;
    }
    // A runtime left without streams does not stop when its jobs end.
    this.#streamsStarted = [...this.#liveStreams, ...this.#failedStreams].length > 0;
  }

  /** Aborted on shutdown and when the pipeline is replaced or removed. */
  #signalOf(name: string): AbortSignal {
    const lifetime = this.#lifetimes.get(name);
    return lifetime
      ? AbortSignal.any([this.#shutdown.signal, lifetime.signal])
      : this.#shutdown.signal;
  }

  /** Resolves when every job and stream started so far has ended. */
  async idle(): Promise<void> {
    while (this.#tasks.size > 0) await Promise.allSettled([...this.#tasks]);
  }

  /**
   * Runs a batch job now, with its retries, and returns its report. A job
   * already running is not started twice: the running one's report is returned.
   */
  runJob(name: string, options: JobRunOptions = {}): Promise<JobReport> {
    const spec = this.#specs.get(name);
    if (!spec) {
      const names = [...this.#specs.keys()].join(", ");
      return Promise.reject(new Error(`Unknown job "${name}"; jobs are: ${names}`));
    }
    if (spec.source.plugin.mode !== "batch") {
      return Promise.reject(new Error(`"${name}" is a stream pipeline, not a batch job`));
    }
    return this.#startRun(spec, options).then((report) => {
      if (report) return report;
      throw new Error(
        `Job "${name}" is running on another worker of the group; not starting it twice`,
      );
    });
  }

  /** Starts a run unless one is in flight here; undefined when the group skipped it. */
  #startRun(spec: PipelineSpec, options: JobRunOptions, tick?: string) {
    const running = this.#running.get(spec.name);
    if (running) {
      logger.info("{pipeline} is already running; not starting it twice", { pipeline: spec.name });
      return running;
    }
    const run = this.#claimAndRun(spec, options, tick).finally(() => {
      this.#running.delete(spec.name);
      if (!this.#retiring.has(spec.name)) this.#stopWhenNothingCanRun();
    });
    this.#running.set(spec.name, run);
    this.#track(run, spec.name);
    return run;
  }

  /**
   * Waits for a free job slot of this process, claims the run across the
   * group (when a coordinator is configured), runs it with its retries and
   * records how it ended. Undefined when another process runs (or ran) it.
   */
  async #claimAndRun(
    spec: PipelineSpec,
    options: JobRunOptions,
    tick: string | undefined,
  ): Promise<JobReport | undefined> {
    const release = await this.#jobSlots.acquire(this.#shutdown.signal);
    let final: JobReport | undefined;
    try {
      if (this.#shutdown.signal.aborted) return undefined;
      const lease = await this.#claim(spec, tick);
      if (lease === "skipped") return undefined;
      try {
        final = await this.#runWithRetries(spec, options);
      } finally {
        await lease?.finish(final?.status ?? "failed").catch((error) =>
          logger.warn("Recording the end of {pipeline} in the cluster database failed: {error}", {
            pipeline: spec.name,
            error: errorMessage(error),
          })
        );
      }
    } catch (error) {
      final = {
        pipeline: spec.name,
        status: "failed",
        stats: { read: 0, written: 0, filtered: 0, deadLettered: 0, skipped: 0 },
        startedAt: new Date(),
        durationMs: 0,
        validation: [],
        error: error instanceof Error ? error : new Error(String(error)),
        attempts: 0,
      };
      this.#log(final, 0);
    } finally {
      release();
    }
    await this.#finished(spec, options, final);
    return final;
  }

  /** The group-wide lease of a run, undefined when alone, "skipped" when another process has it. */
  async #claim(spec: PipelineSpec, tick: string | undefined) {
    const coordinator = this.#coordinator?.(spec);
    if (!coordinator) return undefined;
    let claim;
    try {
      claim = await coordinator.claim(spec.name, tick);
    } catch (error) {
      throw new Error(
        `Cannot start ${spec.name}: ${errorMessage(error)}`,
        { cause: error },
      );
    }
    if ("lease" in claim) return claim.lease as JobLease;
    this.#skipped(spec.name, claim.skipped, tick, claim.holder);
    return "skipped" as const;
  }

  #skipped(name: string, reason: SkipReason, tick: string | undefined, holder?: string): void {
    const fields = {
      pipeline: name,
      tick: tick ?? "manual run",
      holder: holder ?? "another worker",
    };
    if (reason === "running_elsewhere") {
      logger.info("Skipping {pipeline} ({tick}): still running on {holder}", fields);
    } else {
      logger.info("Skipping {pipeline} ({tick}): another worker ran this tick", fields);
    }
    this.#environment.observer?.onTickSkipped?.(name, reason);
  }

  /**
   * The latest run of job `name` anywhere in the group (which worker ran
   * which tick), when a coordinator records runs; undefined otherwise.
   */
  async lastGroupRun(name: string): Promise<GroupRun | undefined> {
    return await this.groupCoordinator(name)?.lastRun?.(name);
  }

  /** The coordinator job `name` shares with the other workers of its group, if any. */
  groupCoordinator(name: string): JobCoordinator | undefined {
    const spec = this.#specs.get(name);
    return spec ? this.#coordinator?.(spec) : undefined;
  }

  /** This process's name in the group, when it runs in one. */
  get workerId(): string | undefined {
    return this.#workerId;
  }

  /** Stops everything gracefully and waits for in-flight work to end. */
  async stop(): Promise<void> {
    if (!this.#shutdown.signal.aborted) {
      logger.info("Stopping: finishing in-flight batches and committing offsets");
      this.#shutdown.abort();
    }
    await this.idle();
  }

  /** Same as {@linkcode Runtime.stop}, for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }

  async #scheduledRun(name: string, tick: Date): Promise<void> {
    if (!this.control(name).runnable) {
      logger.info("Skipping the scheduled run of {pipeline}: it is {state}", {
        pipeline: name,
        state: this.control(name).state,
      });
      return;
    }
    await this.#startRun(this.#specs.get(name)!, { withDownstream: true }, tick.toISOString());
  }

  async #runWithRetries(spec: PipelineSpec, options: JobRunOptions): Promise<JobReport> {
    const retries = options.noRetries ? 0 : spec.options["job.retries"];
    const delay = spec.options["job.retry.delay.ms"];
    const timeoutMs = spec.options["job.timeout.ms"];
    const control = this.control(spec.name);
    const lifetime = this.#signalOf(spec.name);
    let report: RunReport;
    let attempt = 0;
    for (;;) {
      attempt++;
      const signals = [lifetime];
      if (timeoutMs > 0) signals.push(AbortSignal.timeout(timeoutMs));
      const signal = control.beginRun(AbortSignal.any(signals));
      logger.info("Running {pipeline} (attempt {attempt} of {total})", {
        pipeline: spec.name,
        attempt,
        total: retries + 1,
      });
      report = await runPipeline(spec, this.#environment, {
        fullRefresh: options.fullRefresh,
        since: options.since,
        signal,
      }).finally(() => control.endRun());
      if (control.takeRestart()) {
        attempt--;
        continue;
      }
      if (report.status === "stopped" && !lifetime.aborted && !control.stopped) {
        // Aborted by the timeout, not by shutdown: that is a failure.
        report = {
          ...report,
          status: "failed",
          error: new Error(`Timed out after ${timeoutMs} ms`),
        };
      }
      this.#log(report, attempt);
      if (report.status !== "failed" || attempt > retries || lifetime.aborted) break;
      if (control.stopped) break;
      logger.warn("Retrying {pipeline} in {delay} ms", { pipeline: spec.name, delay });
      await sleep(delay, lifetime);
      if (lifetime.aborted) break;
    }
    return { ...report, attempts: attempt };
  }

  /** Tells the listeners, and starts or skips the downstream jobs. */
  async #finished(spec: PipelineSpec, options: JobRunOptions, final: JobReport): Promise<void> {
    for (const listener of this.#listeners) listener(final);
    if (final.status === "succeeded") {
      this.#lastSuccess.set(spec.name, Date.now());
      if (options.withDownstream) {
        await this.#triggerDownstream(spec.name, options).catch((error) =>
          logger.error("Cannot start the jobs after {pipeline}: {error}", {
            pipeline: spec.name,
            error: errorMessage(error),
          })
        );
      }
    } else if (final.status === "failed" && options.withDownstream) {
      for (const downstream of this.#dependentsOf(spec.name)) {
        logger.warn("Skipping {pipeline}: upstream {upstream} failed", {
          pipeline: downstream.name,
          upstream: spec.name,
        });
      }
    }
  }

  /**
   * Starts every job all of whose upstream jobs succeeded since its own last
   * success. With a coordinator, the successes are those of the whole group
   * (recorded in the cluster database), and the run is claimed under a tick
   * named after the upstream successes, so it runs once in the group.
   */
  async #triggerDownstream(upstream: string, options: JobRunOptions): Promise<void> {
    for (const downstream of this.#dependentsOf(upstream)) {
      const upstreams = downstream.options["job.depends.on"];
      const last = await this.#lastSuccesses([downstream.name, ...upstreams]);
      const since = last.get(downstream.name) ?? -Infinity;
      const ready = upstreams.every((name) => (last.get(name) ?? -Infinity) > since);
      if (!ready) continue;
      const tick = `after ${
        upstreams.map((name) => `${name}@${new Date(last.get(name)!).toISOString()}`).join(",")
      }`;
      void this.#startRun(downstream, { ...options, withDownstream: true }, tick);
    }
  }

  /** When each job last succeeded: in the group where a coordinator knows, else here. */
  async #lastSuccesses(names: readonly string[]): Promise<Map<string, number>> {
    const last = new Map<string, number>();
    for (const name of names) {
      const spec = this.#specs.get(name);
      const coordinator = spec ? this.#coordinator?.(spec) : undefined;
      const at = coordinator
        ? (await coordinator.lastSuccess([name])).get(name)
        : this.#lastSuccess.get(name);
      if (at !== undefined) last.set(name, at);
    }
    return last;
  }

  #dependentsOf(name: string): PipelineSpec[] {
    return [...this.#specs.values()].filter((spec) =>
      spec.options["job.depends.on"].includes(name)
    );
  }

  /** Runs a stream pipeline until shutdown, restarting it after transient faults. */
  async #superviseStream(spec: PipelineSpec): Promise<void> {
    const retryTimeout = spec.options["errors.retry.timeout"];
    const maxDelay = spec.options["errors.retry.delay.max.ms"];
    const control = this.control(spec.name);
    // Ends on shutdown, and when the pipeline is replaced or removed.
    const lifetime = this.#signalOf(spec.name);
    let failingSince: number | undefined;
    let attempt = 0;
    while (!lifetime.aborted) {
      // Stopped by the operator (even while backing off): wait for resume or restart.
      if (control.stopped && !(await this.#watching(spec, control.waitToRun(lifetime)))) break;
      const signal = control.beginRun(lifetime);
      const report = await runPipeline(spec, this.#environment, { signal })
        .finally(() => control.endRun());
      const standby = report.status === "failed" ? standbyOf(report.error) : undefined;
      if (standby) {
        // Another process owns what the stream needs: wait, neither failed nor restarting.
        if (!control.standby) {
          logger.info(
            "Stream {pipeline} is on standby: {reason}; trying to take over every {ms} ms",
            {
              pipeline: spec.name,
              reason: standby.message,
              ms: standby.retryAfterMs,
            },
          );
        }
        control.setStandby(standby.message);
        attempt = 0;
        failingSince = undefined;
        await sleep(standby.retryAfterMs, this.#shutdown.signal);
        continue;
      }
      control.setStandby(undefined);
      control.setRetrying(undefined);
      this.#log(report, attempt + 1);
      // Ended by the operator (stop or restart), not by shutdown: the loop's top
      // waits while stopped. (A resume may already have come in meanwhile.)
      const byOperator = report.status === "stopped" && !lifetime.aborted;
      if (control.takeRestart() || byOperator) continue;
      if (report.status !== "failed") {
        for (const listener of this.#listeners) listener({ ...report, attempts: attempt + 1 });
        return;
      }
      failingSince ??= report.startedAt.getTime();
      const retriable = isRetriable(report.error);
      const withinBudget = retryTimeout < 0 || Date.now() - failingSince < retryTimeout;
      if (!retriable || !withinBudget) {
        logger.error("Stream {pipeline} failed and stays stopped: {error}", {
          pipeline: spec.name,
          error: errorMessage(report.error),
        });
        this.#failedStreams.add(spec.name);
        for (const listener of this.#listeners) listener({ ...report, attempts: attempt + 1 });
        // FAILED until the operator restarts it (POST /connectors/{name}/restart),
        // unless nothing else can run: then the process ends for its supervisor.
        this.#liveStreams.delete(spec.name);
        this.#stopWhenNothingCanRun();
        if (!(await this.#watching(spec, control.waitForRestart(lifetime)))) return;
        this.#failedStreams.delete(spec.name);
        this.#liveStreams.add(spec.name);
        attempt = 0;
        failingSince = undefined;
        continue;
      }
      const delay = Math.min(maxDelay, 500 * 2 ** attempt);
      attempt++;
      logger.warn("Restarting stream {pipeline} in {delay} ms", { pipeline: spec.name, delay });
      control.setRetrying({
        error: report.error!,
        attempt,
        nextAttemptAt: new Date(Date.now() + delay),
      });
      await this.#watching(spec, sleep(delay, lifetime));
      // A run that got going before failing resets the backoff.
      if (report.stats.written > 0) {
        attempt = 0;
        failingSince = undefined;
      }
    }
  }

  /**
   * Waits for `waiting` with the source's watch going (see
   * {@linkcode SourcePlugin.watch}): what a stream holds upstream stays in
   * the metrics while no run of it is going. The watch ends, and its series
   * go, before the caller starts the next run.
   */
  async #watching<T>(spec: PipelineSpec, waiting: Promise<T>): Promise<T> {
    const plugin = spec.source.plugin;
    const metrics = plugin.watch && this.#environment.observer?.pluginMetrics?.(spec.name);
    if (!plugin.watch || !metrics) return await waiting;
    const stop = new AbortController();
    const context = {
      pipeline: spec.name,
      logger: getLogger(["sluice", "pipeline", spec.name, plugin.name]),
      signal: stop.signal,
      sourceMode: plugin.mode,
      metrics,
    };
    let watch: { stop(): Promise<void> } | undefined;
    try {
      watch = plugin.watch(spec.source.config, context);
    } catch (error) {
      logger.warn("Cannot watch the source of {pipeline}: {error}", {
        pipeline: spec.name,
        error: errorMessage(error),
      });
    }
    try {
      return await waiting;
    } finally {
      stop.abort();
      await watch?.stop().catch((error) =>
        logger.warn("Ending the watch of {pipeline} failed: {error}", {
          pipeline: spec.name,
          error: errorMessage(error),
        })
      );
      metrics.release();
    }
  }

  #streamEnded(name: string): void {
    this.#liveStreams.delete(name);
    if (!this.#retiring.has(name)) this.#stopWhenNothingCanRun();
  }

  /**
   * Stops the runtime once no stream is supervised, no job is scheduled and
   * none is running: a process that can do nothing more must end, so that a
   * supervisor sees it (and restarts it, or alerts).
   */
  #stopWhenNothingCanRun(): void {
    if (this.#shutdown.signal.aborted || this.#liveStreams.size > 0) return;
    if (this.#keepFailed && this.#failedStreams.size > 0) return;
    if (!this.#streamsStarted || this.#schedules > 0 || this.#running.size > 0) return;
    if (this.#failedStreams.size > 0) {
      logger.error(
        "No pipeline can run any more: {failed} failed for good and no job is running or scheduled; stopping",
        { failed: [...this.#failedStreams].join(", ") },
      );
    } else {
      logger.info("Every stream has ended and no job is running or scheduled; stopping");
    }
    this.#shutdown.abort();
  }

  #log(report: RunReport, attempt: number): void {
    const fields = {
      pipeline: report.pipeline,
      status: report.status,
      attempt,
      read: report.stats.read,
      written: report.stats.written,
      filtered: report.stats.filtered,
      skipped: report.stats.skipped,
      deadLettered: report.stats.deadLettered,
      durationMs: report.durationMs,
      error: report.error ? errorMessage(report.error) : undefined,
    };
    if (report.status === "failed") {
      logger.error("{pipeline} failed after {durationMs} ms: {error}", fields);
    } else if (report.stats.deadLettered > 0) {
      // errors.tolerance=all lets a run succeed whatever it set aside: say so
      // louder than a clean run, or a run that wrote nothing reads as fine.
      logger.warn(
        "{pipeline} {status}, but dead-lettered {deadLettered} records: read {read}, written {written}, skipped {skipped} (they changed nothing at the target), filtered {filtered} in {durationMs} ms",
        fields,
      );
    } else {
      logger.info(
        "{pipeline} {status}: read {read}, written {written}, skipped {skipped} (they changed nothing at the target), filtered {filtered}, dead-lettered {deadLettered} in {durationMs} ms",
        fields,
      );
    }
  }

  #track(task: Promise<unknown>, pipeline?: string): void {
    const own = pipeline === undefined
      ? undefined
      : this.#pipelineTasks.get(pipeline) ?? new Set<Promise<unknown>>();
    if (pipeline !== undefined) this.#pipelineTasks.set(pipeline, own!);
    const tracked = task.catch((error) => logger.error("{error}", { error: errorMessage(error) }))
      .finally(() => {
        this.#tasks.delete(tracked);
        own?.delete(tracked);
      });
    this.#tasks.add(tracked);
    own?.add(tracked);
  }
}

/** Whether an error (or one of its causes) is transient. */
export function isRetriable(error: unknown): boolean {
  for (let current = error; current instanceof Error; current = current.cause) {
    if (current instanceof RetriableError) return true;
  }
  return false;
}

/** A counting semaphore: at most `limit` batch jobs of this process at once. */
class JobSlots {
  readonly #limit: number;
  #used = 0;
  readonly #waiting: (() => void)[] = [];

  constructor(limit: number) {
    this.#limit = limit;
  }

  /** Resolves with the slot's release once one is free (or at once when `signal` aborted). */
  async acquire(signal: AbortSignal): Promise<() => void> {
    while (this.#used >= this.#limit && !signal.aborted) {
      await new Promise<void>((resolve) => {
        const done = () => {
          signal.removeEventListener("abort", done);
          resolve();
        };
        this.#waiting.push(done);
        signal.addEventListener("abort", done, { once: true });
      });
    }
    this.#used++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#used--;
      this.#waiting.shift()?.();
    };
  }
}

/** Deno.cron names allow 64 characters of `[A-Za-z0-9 _-]`. */
function cronName(pipeline: string): string {
  return `sluice ${pipeline}`.replace(/[^A-Za-z0-9 _-]/g, "_").slice(0, 64);
}
