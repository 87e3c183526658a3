/**
 * Runs one pipeline: source → transforms → sink, with a bounded queue between
 * reading and writing, dead-letter handling, and offsets committed only after
 * the sink has made a batch durable.
 *
 * @module
 */
import { getLogger, type Logger } from "@logtape/logtape";
import type { PipelineSpec } from "./config.ts";
import { checkDeadLetterFile, fileDeadLetters } from "./_dead_letters.ts";
import { errorMessage, RetriableError } from "../api/errors.ts";
import type { OffsetStore } from "./offsets.ts";
import type { PipelineObserver } from "./observer.ts";
import type { DeadLetterStore } from "../api/dead_letters.ts";
import type {
  CopyRows,
  DeadLetterWriter,
  PluginContext,
  Predicate,
  RecordFailure,
  RunStats,
  Sink,
  SinkResult,
  Source,
  SourceBatch,
  Transform,
  ValidationCheck,
} from "../api/plugin.ts";
import { chainOfStage } from "./_chain.ts";
import { BoundedQueue } from "./_queue.ts";
import { type JsonValue, type SluiceRecord, withFittingSchemas } from "../api/record.ts";

/**
 * How a run ended: `succeeded`, `failed` (an error, or a failed validation
 * check), or `stopped` (its signal aborted first).
 *
 * @example Deciding whether to page someone
 * ```ts
 * import type { RunStatus } from "@sluice/sluice";
 * import assert from "node:assert/strict";
 *
 * const alarming = (status: RunStatus): boolean => status === "failed";
 * assert.equal(alarming("stopped"), false);
 * ```
 */
export type RunStatus = "succeeded" | "failed" | "stopped";

/**
 * What one run of a pipeline did.
 *
 * @example A one-line summary of a run
 * ```ts
 * import type { RunReport } from "@sluice/sluice";
 * import assert from "node:assert/strict";
 *
 * const summary = (report: RunReport): string =>
 *   `${report.pipeline} ${report.status}: ${report.stats.written} written in ${report.durationMs} ms`;
 * const report: RunReport = {
 *   pipeline: "profile_sync",
 *   status: "succeeded",
 *   stats: { read: 20, written: 20, filtered: 0, deadLettered: 0, skipped: 0 },
 *   startedAt: new Date(),
 *   durationMs: 120,
 *   validation: [{ name: "source count", ok: true, detail: "20 = 20" }],
 * };
 * assert.equal(summary(report), "profile_sync succeeded: 20 written in 120 ms");
 * ```
 */
export interface RunReport {
  /** The pipeline's name. */
  readonly pipeline: string;
  /** How the run ended. */
  readonly status: RunStatus;
  /** What the run read, wrote, filtered, dead-lettered and skipped. */
  readonly stats: RunStats;
  /** When the run began. */
  readonly startedAt: Date;
  /** How long it took, in milliseconds. */
  readonly durationMs: number;
  /** The post-run checks of a batch run (empty for streams and stopped runs). */
  readonly validation: readonly ValidationCheck[];
  /** Why the run failed. */
  readonly error?: Error;
}

/**
 * What a pipeline needs from the process that runs it.
 *
 * @example Offsets in a file, dead letters in no topic
 * ```ts
 * import { FileOffsetStore, type PipelineEnvironment } from "@sluice/sluice";
 *
 * const environment: PipelineEnvironment = { offsets: new FileOffsetStore(".sluice/offsets.json") };
 * ```
 */
export interface PipelineEnvironment {
  /** The store used when the sink does not keep offsets itself. */
  readonly offsets: OffsetStore;
  /** Builds the writer for `errors.deadletterqueue.topic.name`, when Kafka is available. */
  readonly deadLetterTopic?: (topic: string, spec: PipelineSpec) => Promise<DeadLetterWriter>;
  /** Opens `errors.deadletterqueue.topic.name` for reading and working off (`sluice dlq`). */
  readonly deadLetterTopicStore?: (topic: string, spec: PipelineSpec) => DeadLetterStore;
  /** Told what every pipeline does (metrics, alerts). */
  readonly observer?: PipelineObserver;
  /** Resolves when the pipeline may read its next batch (a paused pipeline waits here). */
  readonly gate?: (pipeline: string, signal: AbortSignal) => Promise<void>;
  /** Told when a run took a resource only one process of a group may hold (a slot). */
  readonly claimed?: (pipeline: string, resource: string) => void;
}

/**
 * Options of one run.
 *
 * @example A run that stops after five seconds and ignores the stored position
 * ```ts
 * import type { RunOptions } from "@sluice/sluice";
 *
 * const options: RunOptions = { fullRefresh: true, signal: AbortSignal.timeout(5000) };
 * ```
 */
export interface RunOptions {
  /** Ignore the stored position and read everything (batch full refresh). */
  readonly fullRefresh?: boolean;
  /** Re-sync the rows changed at or after this time, leaving the stored position alone. */
  readonly since?: Date;
  /** Stops the run gracefully: the batch being written finishes, then offsets are committed. */
  readonly signal?: AbortSignal;
}

/** Raised when a record fails and `errors.tolerance` is `none`. */
export class ToleranceExceededError extends Error {
  constructor(failure: RecordFailure, options?: ErrorOptions) {
    super(
      `Tolerance exceeded in error handler: a record of topic "${failure.record.topic}" failed in stage "${failure.stage}": ${failure.error.message}`,
      options ?? { cause: failure.error },
    );
    this.name = "ToleranceExceededError";
  }
}

/** Failed records logged one by one per batch; the rest are counted in one line. */
const LOGGED_FAILURES_PER_BATCH = 3;

/** One opened transform of a pipeline's chain, with its predicate. */
export interface TransformStep {
  readonly alias: string;
  readonly transform: Transform;
  readonly predicate?: Predicate;
  readonly negate: boolean;
}

/**
 * Opens the transforms of `spec` in order (their closers go to `closers`):
 * the chain a run applies, and the one a dead-letter replay applies again.
 */
export async function openTransformSteps(
  spec: PipelineSpec,
  context: (plugin: string) => PluginContext,
  closers: (() => Promise<void>)[],
): Promise<TransformStep[]> {
  const steps: TransformStep[] = [];
  for (const step of spec.transforms) {
    const transform = await step.plugin.create(step.config, context(step.alias));
    if (transform.close) closers.push(() => transform.close!());
    const predicate = step.predicate
      ? step.predicate.plugin.create(step.predicate.config, context(step.predicate.alias))
      : undefined;
    steps.push({ alias: step.alias, transform, predicate, negate: step.negate });
  }
  return steps;
}

/**
 * Applies `steps` to `record`, from step `from` on: the record, null when a
 * step dropped it, or the failure of the step that threw. Synchronous as
 * long as every step answers synchronously, so only a chain with an
 * asynchronous step pays for a promise.
 */
export function applyTransformSteps(
  steps: readonly TransformStep[],
  record: SluiceRecord,
  from = 0,
): TransformOutcome | Promise<TransformOutcome> {
  let current: SluiceRecord = record;
  for (let index = from; index < steps.length; index++) {
    const step = steps[index];
    if (step.predicate && step.predicate(current) === step.negate) continue;
    let applied: SluiceRecord | null | Promise<SluiceRecord | null>;
    try {
      applied = step.transform.apply(current);
    } catch (error) {
      return failedIn(step.alias, current, error);
    }
    if (applied instanceof Promise) {
      const input = current;
      return applied.then(
        (result) =>
          result === null
            ? { record: null }
            : applyTransformSteps(steps, withFittingSchemas(input, result), index + 1),
        (error) => failedIn(step.alias, input, error),
      );
    }
    if (applied === null) return { record: null };
    // A step that replaced the value or key drops the schema it carried.
    current = withFittingSchemas(current, applied);
  }
  return { record: current };
}

/**
 * Runs `spec` once. A batch pipeline runs until its source is exhausted; a
 * stream pipeline until `options.signal` aborts or an error stops it. Never
 * throws: the outcome is in the report.
 *
 * @example A batch run over a tiny source, resumed from its offset
 * ```ts
 * import {
 *   buildPipelines,
 *   defineSink,
 *   defineSource,
 *   integer,
 *   MemoryOffsetStore,
 *   Registry,
 *   runPipeline,
 *   type SluiceRecord,
 * } from "@sluice/sluice";
 * import { z } from "zod";
 * import assert from "node:assert/strict";
 *
 * const numbers = defineSource({
 *   name: "numbers",
 *   mode: "batch",
 *   summary: "Emits the numbers after the stored offset, up to `to`.",
 *   config: z.strictObject({ to: integer().describe("Last number.") }),
 *   create(config, context) {
 *     const from = typeof context.offset === "number" ? context.offset + 1 : 1;
 *     return {
 *       async *read() {
 *         const records: SluiceRecord[] = [];
 *         for (let n = from; n <= config.to; n++) records.push({ topic: "n", key: { n }, value: { n } });
 *         yield { records, offset: config.to };
 *       },
 *       close: () => Promise.resolve(),
 *     };
 *   },
 * });
 * const written: SluiceRecord[] = [];
 * const memory = defineSink({
 *   name: "memory",
 *   summary: "Keeps records in an array.",
 *   config: z.strictObject({}),
 *   create: () => ({
 *     write(batch) {
 *       written.push(...batch.records);
 *       return Promise.resolve({ written: batch.records.length });
 *     },
 *     close: () => Promise.resolve(),
 *   }),
 * });
 *
 * const registry = new Registry([numbers, memory]);
 * const config = { "connector.class": "numbers", to: "3", "sink.class": "memory" };
 * const [first] = await buildPipelines([{ name: "count", config, baseDir: "." }], { registry });
 * const offsets = new MemoryOffsetStore();
 *
 * const report = await runPipeline(first, { offsets });
 * assert.equal(report.status, "succeeded");
 * assert.equal(report.stats.written, 3);
 * assert.equal(await offsets.read("count"), 3);
 *
 * const [more] = await buildPipelines([{ name: "count", config: { ...config, to: "5" }, baseDir: "." }], { registry });
 * await runPipeline(more, { offsets });
 * assert.deepEqual(written.map((record) => record.key), [1, 2, 3, 4, 5].map((n) => ({ n })));
 * ```
 */
export async function runPipeline(
  spec: PipelineSpec,
  environment: PipelineEnvironment,
  options: RunOptions = {},
): Promise<RunReport> {
  const startedAt = new Date();
  const logger = getLogger(["sluice", "pipeline", spec.name]);
  const stop = new AbortController();
  const onAbort = () => stop.abort(options.signal?.reason);
  options.signal?.addEventListener("abort", onAbort);
  if (options.signal?.aborted) stop.abort(options.signal.reason);

  const stats: RunStats = { read: 0, written: 0, filtered: 0, deadLettered: 0, skipped: 0 };
  const closers: (() => Promise<void>)[] = [];
  let validation: ValidationCheck[] = [];
  let failure: Error | undefined;
  try {
    const run = new PipelineRun(spec, environment, logger, stop, stats, closers);
    validation = await run.execute(options.fullRefresh ?? false, options.since);
    if (validation.some((check) => !check.ok)) {
      const failed = validation.filter((check) => !check.ok).map((check) => check.name);
      failure = new Error(`Validation failed: ${failed.join(", ")}`);
    }
  } catch (error) {
    failure = error instanceof Error ? error : new Error(String(error));
  } finally {
    options.signal?.removeEventListener("abort", onAbort);
    for (const close of closers.reverse()) {
      try {
        await close();
      } catch (error) {
        logger.warn("Closing failed: {error}", { error: errorMessage(error) });
      }
    }
  }
  const status: RunStatus = failure ? "failed" : stop.signal.aborted ? "stopped" : "succeeded";
  const report: RunReport = {
    pipeline: spec.name,
    status,
    stats,
    startedAt,
    durationMs: Date.now() - startedAt.getTime(),
    validation,
    error: failure,
  };
  environment.observer?.onRunFinished?.(report);
  return report;
}

/** The state of one run; split out so each step reads as a method. */
class PipelineRun {
  #deadLetters?: DeadLetterWriter;
  /** Chain fingerprints by failing stage (undefined: a stage outside the chain). */
  readonly #chains = new Map<string, string | undefined>();
  #steps: TransformStep[] = [];
  #sink!: Sink;
  #source!: Source;
  #sinkKeepsOffsets = false;
  /** A full refresh: every write to the sink is marked `refresh`. */
  #refresh = false;

  constructor(
    readonly spec: PipelineSpec,
    readonly environment: PipelineEnvironment,
    readonly logger: Logger,
    readonly stop: AbortController,
    readonly stats: RunStats,
    readonly closers: (() => Promise<void>)[],
  ) {}

  async execute(fullRefresh: boolean, since?: Date): Promise<ValidationCheck[]> {
    const { spec, stop } = this;
    const metrics = this.environment.observer?.pluginMetrics?.(spec.name);
    if (metrics) this.closers.push(() => Promise.resolve(metrics.release()));
    const context = (plugin: string) => ({
      pipeline: spec.name,
      logger: this.logger.getChild(plugin),
      signal: stop.signal,
      sourceMode: spec.source.plugin.mode,
      metrics,
      claimed: (resource: string) => this.environment.claimed?.(spec.name, resource),
    });

    // Checked before anything connects: a missing folder would otherwise
    // surface only at the first bad record.
    const deadLetterFile = spec.options["errors.deadletterqueue.file.path"];
    if (deadLetterFile) {
      await checkDeadLetterFile(deadLetterFile).catch((error) => {
        throw new Error(`Cannot start pipeline "${spec.name}": ${error.message}`, { cause: error });
      });
    }
    this.#sink = await spec.sink.plugin.create(spec.sink.config, context(spec.sink.plugin.name));
    this.closers.push(() => this.#sink.close());
    this.#steps = await openTransformSteps(spec, context, this.closers);
    this.#deadLetters = await this.#openDeadLetters();
    if (this.#deadLetters) this.closers.push(() => this.#deadLetters!.close());

    const storage = spec.options["offset.storage"];
    if (storage === "sink" && !this.#sink.offsets) {
      throw new Error(
        `Cannot start pipeline "${spec.name}": offset.storage is "sink" but sink "${spec.sink.plugin.name}" cannot store offsets`,
      );
    }
    this.#sinkKeepsOffsets = storage !== "file" && this.#sink.offsets !== undefined;
    this.#refresh = fullRefresh;
    const readOffset = () =>
      fullRefresh
        ? Promise.resolve(undefined)
        : this.#sinkKeepsOffsets
        ? this.#sink.offsets!.read(spec.name)
        : this.environment.offsets.read(spec.name);
    const offset = await readOffset();
    this.logger.debug("Starting from offset {offset}", { offset });

    // Rows no transform touches may go from source to sink as COPY text.
    const copyText = this.#steps.length === 0 && this.#sink.copyText === true;
    this.#source = await spec.source.plugin.create(spec.source.config, {
      ...context(spec.source.plugin.name),
      offset,
      readOffset,
      fullRefresh,
      ...(since ? { since } : {}),
      subject: spec.subject,
      ...(copyText ? { copyText } : {}),
    });
    this.closers.push(() => this.#source.close());

    await this.#pump();
    if (stop.signal.aborted) return [];
    if (spec.source.plugin.mode !== "batch" || !spec.options["job.validate"]) return [];
    return await this.#validate();
  }

  async #openDeadLetters(): Promise<DeadLetterWriter | undefined> {
    const { spec } = this;
    const options = spec.options;
    const table = options["errors.deadletterqueue.table.name"];
    const topic = options["errors.deadletterqueue.topic.name"];
    const file = options["errors.deadletterqueue.file.path"];
    if (table) {
      if (!this.#sink.deadLetters) {
        throw new Error(
          `Cannot start pipeline "${spec.name}": errors.deadletterqueue.table.name needs a sink that keeps dead letters; sink "${spec.sink.plugin.name}" does not`,
        );
      }
      return this.#sink.deadLetters(table);
    }
    if (topic) {
      if (!this.environment.deadLetterTopic) {
        throw new Error(
          `Cannot start pipeline "${spec.name}": errors.deadletterqueue.topic.name needs Kafka; set bootstrap.servers for the worker`,
        );
      }
      return await this.environment.deadLetterTopic(topic, spec);
    }
    if (file) return fileDeadLetters(file);
    return undefined;
  }

  /** Reads batches into a bounded queue while another loop transforms and writes them. */
  async #pump(): Promise<void> {
    const queue = new BoundedQueue<SourceBatch>(this.spec.options["queue.max.batches"]);
    let readError: unknown;
    const reader = (async () => {
      try {
        for await (const batch of this.#source.read()) {
          const copyRows = batch.copy?.count ?? 0;
          this.stats.read += batch.records.length + (batch.failures?.length ?? 0) + copyRows;
          this.environment.observer?.onBatchRead?.(this.spec.name, {
            records: batch.records,
            failures: batch.failures?.length ?? 0,
            ...(copyRows > 0 ? { copyRows } : {}),
            queueDepth: queue.size,
            expectedRecords: this.#source.expectedRecords?.(),
          });
          await this.environment.gate?.(this.spec.name, this.stop.signal);
          if (!(await queue.push(batch)) || this.stop.signal.aborted) break;
        }
      } catch (error) {
        readError = error;
      } finally {
        queue.close();
      }
    })();
    try {
      if (this.#writesInFlight() > 1) await this.#writeOverlapping(queue);
      else {
        for await (const batch of queue) {
          await this.#deliver(batch, queue.size);
          if (this.stop.signal.aborted) break;
        }
      }
    } catch (error) {
      this.stop.abort(error);
      throw error;
    } finally {
      // Batches still queued were never written; they are read again next time.
      queue.close();
      queue.clear();
      await reader;
    }
    if (readError !== undefined) throw readError;
  }

  /**
   * Writes that may overlap: the sink's own promise (it keeps their order),
   * and only when no transform keeps state to commit after a write (a later
   * batch's state must not be committed with an earlier one).
   */
  #writesInFlight(): number {
    if (this.#steps.some((step) => step.transform.commit)) return 1;
    return Math.max(1, Math.floor(this.#sink.writesInFlight ?? 1));
  }

  /** Transforms and writes one batch, then commits its offset. */
  async #deliver(batch: SourceBatch, queueDepth: number): Promise<void> {
    const prepared = await this.#prepare(batch, queueDepth);
    const writeStarted = performance.now();
    let result: SinkResult = { written: 0 };
    if (prepared.records.length > 0 || prepared.offsetToStore || prepared.copy) {
      result = await this.#writeWithRetry(
        prepared.records,
        prepared.offsetToStore,
        prepared.overwrite,
        prepared.copy,
      );
    }
    await this.#finish(prepared, result, performance.now() - writeStarted);
  }

  /**
   * Keeps up to `writesInFlight` writes going while the next batches are
   * transformed; commits their offsets in order as each one completes. When
   * one fails, the later ones may have landed or not: once all settled, the
   * failed write and every later one are written again in order (with the
   * usual retries), so the sink's order holds.
   */
  async #writeOverlapping(queue: BoundedQueue<SourceBatch>): Promise<void> {
    const window: Overlapping[] = [];
    const limit = this.#writesInFlight();
    const settleOldest = async () => {
      const oldest = window[0];
      const outcome = await oldest.outcome;
      if ("result" in outcome) {
        window.shift();
        await this.#finish(oldest.prepared, outcome.result, outcome.ms);
        return;
      }
      await Promise.all(window.map((w) => w.outcome));
      if (!(outcome.error instanceof RetriableError)) throw outcome.error;
      for (const { prepared } of window.splice(0)) {
        const started = performance.now();
        const result = await this.#writeWithRetry(
          prepared.records,
          prepared.offsetToStore,
          prepared.overwrite,
          prepared.copy,
        );
        await this.#finish(prepared, result, performance.now() - started);
      }
    };
    const batches = queue[Symbol.asyncIterator]();
    let next = batches.next();
    try {
      for (;;) {
        // A write that completes while no batch is waiting commits at once,
        // so a quiet stream's last offsets do not wait for the next batch.
        if (window.length > 0) {
          const first = await Promise.race([
            next.then(() => "batch"),
            window[0].outcome.then(() => "write"),
          ]);
          if (first === "write") {
            await settleOldest();
            continue;
          }
        }
        const item = await next;
        if (item.done) break;
        const prepared = await this.#prepare(item.value, queue.size);
        window.push({ prepared, outcome: this.#startWrite(prepared) });
        while (window.length >= limit) await settleOldest();
        if (this.stop.signal.aborted) break;
        next = batches.next();
      }
      while (window.length > 0) await settleOldest();
    } finally {
      // Never leave a write running behind the run's end (its batch is read again).
      await Promise.all(window.map((w) => w.outcome));
    }
  }

  /** Starts one write; its outcome never rejects. */
  #startWrite(prepared: Prepared): Promise<WriteOutcome> {
    const started = performance.now();
    if (prepared.records.length === 0 && !prepared.offsetToStore && !prepared.copy) {
      return Promise.resolve({ result: { written: 0 }, ms: 0 });
    }
    return this.#sink.write({
      records: prepared.records,
      offset: prepared.offsetToStore,
      reject: this.#reject,
      ...(prepared.overwrite ? { overwrite: true } : {}),
      ...(this.#refresh ? { refresh: true } : {}),
      ...(prepared.copy ? { copy: prepared.copy } : {}),
    }).then(
      (result) => ({ result, ms: performance.now() - started }),
      (error) => ({ error }),
    );
  }

  /** Runs the transforms of one batch and routes its failed records. */
  async #prepare(batch: SourceBatch, queueDepth: number): Promise<Prepared> {
    const failures: RecordFailure[] = [...(batch.failures ?? [])];
    // An empty chain passes the records as they are (no outcome per record).
    const out: SluiceRecord[] = this.#steps.length === 0 ? [...batch.records] : [];
    let filtered = 0;
    for (const record of this.#steps.length === 0 ? [] : batch.records) {
      // Synchronous chains are not awaited per record: a microtask per
      // record cost a quarter of an empty chain's rate.
      const pending = this.#transform(record);
      const result = pending instanceof Promise ? await pending : pending;
      if ("failure" in result) failures.push(result.failure);
      else if (result.record) out.push(result.record);
      else filtered++;
    }
    this.stats.filtered += filtered;
    if (failures.length > 0) await this.#reject(failures);
    const offsetToStore = this.#sinkKeepsOffsets && batch.offset !== undefined
      ? { key: this.spec.name, value: batch.offset }
      : undefined;
    return {
      records: out,
      offset: batch.offset,
      offsetToStore,
      overwrite: batch.overwrite ?? false,
      // COPY text comes only when the chain is empty (see execute): nothing to transform.
      copy: batch.copy,
      filtered,
      queueDepth,
    };
  }

  /** Counts a written batch, then commits its offset (source, store, transforms). */
  async #finish(prepared: Prepared, result: SinkResult, writeMs: number): Promise<void> {
    this.stats.written += result.written;
    this.stats.skipped += result.skipped ?? 0;
    this.environment.observer?.onBatchWritten?.(this.spec.name, {
      records: prepared.records.length + (prepared.copy?.count ?? 0),
      written: result.written,
      skipped: result.skipped ?? 0,
      filtered: prepared.filtered,
      writeMs,
      queueDepth: prepared.queueDepth,
    });
    if (prepared.offset !== undefined) {
      if (!this.#sinkKeepsOffsets) {
        await this.environment.offsets.write(this.spec.name, prepared.offset);
      }
      await this.#source.commit?.(prepared.offset);
    }
    for (const step of this.#steps) await step.transform.commit?.();
    prepared.copy?.release?.();
  }

  #transform(record: SluiceRecord): TransformOutcome | Promise<TransformOutcome> {
    return applyTransformSteps(this.#steps, record);
  }

  /** Routes failed records per `errors.tolerance`; throws when they are not tolerated. */
  #reject = async (failures: readonly RecordFailure[]): Promise<void> => {
    const options = this.spec.options;
    if (options["errors.log.enable"]) {
      // A few lines per batch, not one per record: a batch with thousands of
      // bad rows must not flood the log (the dead letters hold every one).
      for (const failure of failures.slice(0, LOGGED_FAILURES_PER_BATCH)) {
        const fields: Record<string, unknown> = {
          stage: failure.stage,
          topic: failure.record.topic,
          error: failure.error.message,
        };
        if (options["errors.log.include.messages"]) {
          fields.key = failure.record.key;
          fields.value = failure.record.value;
        }
        this.logger.warn("Record failed in {stage}: {error}", fields);
      }
      if (failures.length > LOGGED_FAILURES_PER_BATCH) {
        this.logger.warn("{count} more records of the batch failed (not logged one by one)", {
          count: failures.length - LOGGED_FAILURES_PER_BATCH,
        });
      }
    }
    if (options["errors.tolerance"] === "none") throw new ToleranceExceededError(failures[0]);
    if (this.#deadLetters) {
      await this.#deadLetters.write(this.#withChains(failures), this.spec.name);
    }
    this.stats.deadLettered += failures.length;
    this.environment.observer?.onRecordsFailed?.(this.spec.name, {
      count: failures.length,
      destination: this.#deadLetters?.description,
    });
  };

  /** Each failure with the fingerprint of the steps its record went through (see `_chain.ts`). */
  #withChains(failures: readonly RecordFailure[]): RecordFailure[] {
    return failures.map((failure) => {
      if (failure.chain !== undefined) return failure;
      let chain = this.#chains.get(failure.stage);
      if (chain === undefined && !this.#chains.has(failure.stage)) {
        chain = chainOfStage(this.spec, failure.stage);
        this.#chains.set(failure.stage, chain);
      }
      return chain === undefined ? failure : { ...failure, chain };
    });
  }

  /** Writes to the sink, backing off on transient faults until `errors.retry.timeout`. */
  async #writeWithRetry(
    records: readonly SluiceRecord[],
    offset: { key: string; value: JsonValue } | undefined,
    overwrite = false,
    copy?: CopyRows,
  ): Promise<SinkResult> {
    const timeout = this.spec.options["errors.retry.timeout"];
    const maxDelay = this.spec.options["errors.retry.delay.max.ms"];
    const started = Date.now();
    for (let attempt = 0;; attempt++) {
      try {
        return await this.#sink.write({
          records,
          offset,
          reject: this.#reject,
          ...(overwrite ? { overwrite } : {}),
          ...(this.#refresh ? { refresh: true } : {}),
          ...(copy ? { copy } : {}),
        });
      } catch (error) {
        const retriable = error instanceof RetriableError;
        const elapsed = Date.now() - started;
        if (!retriable || timeout === 0 || (timeout > 0 && elapsed >= timeout)) throw error;
        const delay = Math.min(maxDelay, 100 * 2 ** attempt);
        this.logger.warn("Sink write failed, retrying in {delay} ms: {error}", {
          delay,
          error: errorMessage(error),
        });
        await sleep(delay, this.stop.signal);
        if (this.stop.signal.aborted) throw error;
      }
    }
  }

  async #validate(): Promise<ValidationCheck[]> {
    const { stats } = this;
    const accounted = stats.written + stats.filtered + stats.deadLettered + stats.skipped;
    const checks: ValidationCheck[] = [{
      name: "record counts",
      ok: accounted === stats.read,
      detail:
        `read ${stats.read}; written ${stats.written}, filtered ${stats.filtered}, dead-lettered ${stats.deadLettered}, skipped ${stats.skipped}`,
    }];
    if (this.#source.validate) checks.push(...await this.#source.validate({ ...stats }));
    if (this.#sink.validate) checks.push(...await this.#sink.validate({ ...stats }));
    return checks;
  }
}

/** Resolves after `ms`, or at once when `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}

/** A batch after the transforms, ready to write. */
interface Prepared {
  readonly records: SluiceRecord[];
  readonly offset: JsonValue | undefined;
  readonly offsetToStore: { key: string; value: JsonValue } | undefined;
  readonly overwrite: boolean;
  readonly copy: CopyRows | undefined;
  readonly filtered: number;
  readonly queueDepth: number;
}

/** How one write ended. */
type WriteOutcome = { result: SinkResult; ms: number } | { error: unknown };

/** A write in flight and its batch. */
interface Overlapping {
  readonly prepared: Prepared;
  readonly outcome: Promise<WriteOutcome>;
}

/** A record after the transform chain: kept, dropped (`null`) or failed. */
export type TransformOutcome = { record: SluiceRecord | null } | { failure: RecordFailure };

/**
 * The failure of `step` on `record`, as the failing step received it: after
 * a mask step it is masked, so a dead letter never holds what the pipeline
 * masked.
 */
function failedIn(stage: string, record: SluiceRecord, error: unknown): TransformOutcome {
  const cause = error instanceof Error ? error : new Error(String(error));
  return { failure: { record, error: cause, stage } };
}
