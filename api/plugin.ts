/**
 * The plugin contract: sources, transforms, predicates and sinks.
 *
 * A plugin is one value with a name, a zod config schema and a factory. The
 * runtime validates the config against the schema before anything connects,
 * then calls `create(config, context)` with the parsed, typed config.
 *
 * @module
 */
/**
 * Third-party packages: `deno doc --lint` (Deno 2.9) calls their types private,
 * which they are not (denoland/deno#27364); the tag silences that false alarm.
 *
 * @internal
 */
import type { z } from "zod";
/** @internal See the note above: LogTape's `Logger` is public in LogTape. */
import type { Logger } from "@logtape/logtape";
import type { JsonValue, SluiceRecord } from "./record.ts";
import type { PluginMetrics } from "./metrics.ts";
import type { DeadLetterStore } from "./dead_letters.ts";

/**
 * What every plugin factory receives besides its config.
 *
 * @example A sink that logs through its context
 * ```ts
 * import { defineSink, type PluginContext } from "@sluice/sluice";
 * import { z } from "zod";
 *
 * export const counting = defineSink({
 *   name: "counting",
 *   summary: "Counts records and logs the total when closed.",
 *   config: z.strictObject({}),
 *   create(_config, context: PluginContext) {
 *     let total = 0;
 *     return {
 *       write(batch) {
 *         total += batch.records.length;
 *         return Promise.resolve({ written: batch.records.length });
 *       },
 *       close() {
 *         context.logger.info("{pipeline} wrote {total} records", { pipeline: context.pipeline, total });
 *         return Promise.resolve();
 *       },
 *     };
 *   },
 * });
 * ```
 */
export interface PluginContext {
  /** The pipeline's name, unique in the process. */
  readonly pipeline: string;
  /** A logger whose category names the pipeline and the plugin. */
  readonly logger: Logger;
  /** Aborted when the pipeline stops; long waits should honour it. */
  readonly signal: AbortSignal;
  /**
   * Whether the pipeline's source ends by itself (`batch`) or runs until
   * stopped (`stream`), when the runtime knows it. A sink can then refuse at
   * start what a stream would need (for example applying deletes).
   */
  readonly sourceMode?: SourceMode;
  /**
   * Where the plugin reports metrics of its own (lag it can see, for
   * example); present when the process exposes metrics. Series get the
   * pipeline's label and are removed when the run ends.
   */
  readonly metrics?: PluginMetrics;
  /**
   * Tells the runtime that the run now holds a resource only one process of
   * a group may hold (`slot warehouse_slot`): a pipeline on standby is
   * running again, and status shows what this process owns.
   */
  readonly claimed?: (resource: string) => void;
}

/**
 * What a source factory receives: the plugin context plus where to resume.
 *
 * @example Resuming from the committed position
 * ```ts
 * import { getLogger } from "@logtape/logtape";
 * import type { JsonValue, SourceContext } from "@sluice/sluice";
 * import assert from "node:assert/strict";
 *
 * function startAfter(context: SourceContext): number {
 *   if (context.fullRefresh || typeof context.offset !== "number") return 0;
 *   return context.offset;
 * }
 * const base = { pipeline: "p", logger: getLogger(["example"]), signal: new AbortController().signal };
 * const resume: JsonValue = 42;
 * assert.equal(startAfter({ ...base, offset: resume, fullRefresh: false }), 42);
 * assert.equal(startAfter({ ...base, offset: resume, fullRefresh: true }), 0);
 * ```
 */
export interface SourceContext extends PluginContext {
  /** The last committed position, or undefined on a first run or a full refresh. */
  readonly offset: JsonValue | undefined;
  /**
   * Reads the committed position again (undefined on a full refresh). A
   * source that waits for a lock before it reads (a standby taking over from
   * a process that is stopping) calls it once the lock is held: the process
   * it takes over from may have committed more since `offset` was read.
   */
  readonly readOffset?: () => Promise<JsonValue | undefined>;
  /** True when the run was asked to ignore the stored position and read everything. */
  readonly fullRefresh: boolean;
  /**
   * Set for a window re-synced by hand (`sluice job run --since`): read the
   * rows changed at or after this time and yield no offsets, so the stored
   * position is not moved. A source that cannot read such a window fails.
   */
  readonly since?: Date;
  /**
   * The pipeline this source works on, when its plugin names one
   * ({@linkcode SourcePlugin.subject}): a reconciliation job gets the checked
   * pipeline's source, transforms and sink here.
   */
  readonly subject?: PipelineParts;
  /**
   * True when the runtime takes batches of {@linkcode CopyRows} (no
   * transform touches the rows and the sink writes COPY text): a source
   * that reads COPY text may then hand it on undecoded.
   */
  readonly copyText?: boolean;
}

/**
 * Rows still in PostgreSQL's COPY text format, as a source read them: the
 * fast path from one database to another when nothing needs their values.
 * A sink that cannot write them as they are (a column it lacks, another
 * type, a rejected row) decodes them and writes the records instead.
 *
 * @example Two rows of (id integer, name text)
 * ```ts
 * import type { CopyRows } from "@sluice/sluice";
 * import assert from "node:assert/strict";
 *
 * const rows: CopyRows = {
 *   topic: "public.people",
 *   columns: [{ name: "id", typeOid: 23, type: "integer" }, { name: "name", typeOid: 25, type: "text" }],
 *   text: new TextEncoder().encode("1\tAda\n2\t\\N\n"),
 *   count: 2,
 *   decode: () => [
 *     { topic: "public.people", key: { id: 1 }, value: { id: 1, name: "Ada" } },
 *     { topic: "public.people", key: { id: 2 }, value: { id: 2, name: null } },
 *   ],
 * };
 * assert.equal(rows.decode().length, rows.count);
 * ```
 */
export interface CopyRows {
  /** The topic the records would have (it names the target table). */
  readonly topic: string;
  /** The fields of each row, in order, with their PostgreSQL types. */
  readonly columns: readonly CopyColumnType[];
  /** `count` lines of COPY text format, each ending in a newline. */
  readonly text: Uint8Array;
  /** How many rows `text` holds. */
  readonly count: number;
  /** The same rows as records, as the source would have yielded them. */
  decode(): SluiceRecord[];
  /**
   * Frees `text` at once. The runtime calls it when the batch is durable:
   * a chunk outlives a few minor collections on its way, and its bytes
   * would otherwise wait for a full one (tens of MB on a long load).
   * `text` and `decode` are unusable afterwards.
   */
  release?(): void;
}

/**
 * A field of {@linkcode CopyRows}: its name and type.
 *
 * @example An integer column
 * ```ts
 * import type { CopyColumnType } from "@sluice/sluice";
 *
 * const id: CopyColumnType = { name: "id", typeOid: 23, type: "integer" };
 * ```
 */
export interface CopyColumnType {
  /** The field's name, as the source reports it. */
  readonly name: string;
  /** The type's OID in the source database, as a query's result reports it (a domain's base type). */
  readonly typeOid: number;
  /** The type's `format_type` name, e.g. `integer`, `text[]`, `mood`. */
  readonly type: string;
  /**
   * The column's type modifier (`atttypmod`, -1 for none: `numeric(12,2)`
   * keeps 2 decimal places) when the source knows it; absent when it does
   * not (a computed column).
   */
  readonly typeModifier?: number;
}

/**
 * A plugin chosen in another pipeline, with its parsed config.
 *
 * @example The sink part of a checked pipeline
 * ```ts
 * import type { PluginPart, SinkPlugin } from "@sluice/sluice";
 * import { builtinRegistry } from "@sluice/sluice/builtins";
 * import assert from "node:assert/strict";
 *
 * const plugin = builtinRegistry().find("sink", "postgres")!;
 * const part: PluginPart<SinkPlugin> = { reference: "postgres", plugin, config: {} };
 * assert.equal(part.plugin.kind, "sink");
 * ```
 */
export interface PluginPart<P extends Plugin> {
  /** The name or path written in the config. */
  readonly reference: string;
  /** The plugin it resolved to. */
  readonly plugin: P;
  /** The config after the plugin's schema parsed it. */
  readonly config: unknown;
}

/**
 * A transform step of another pipeline, with its predicate.
 *
 * @example A step without a predicate
 * ```ts
 * import type { TransformPart } from "@sluice/sluice";
 * import { builtinRegistry } from "@sluice/sluice/builtins";
 *
 * const plugin = builtinRegistry().find("transform", "cast")!;
 * const step: TransformPart = { alias: "cast", reference: "cast", plugin, config: {}, negate: false };
 * ```
 */
export interface TransformPart extends PluginPart<TransformPlugin> {
  /** The name given in `transforms`. */
  readonly alias: string;
  /** The predicate that decides whether the step applies, when one is set. */
  readonly predicate?: PluginPart<PredicatePlugin> & { readonly alias: string };
  /** Apply the step when the predicate does not match instead. */
  readonly negate: boolean;
}

/**
 * The parts of a validated pipeline, as a job that works on another
 * pipeline (a reconciliation) receives them in {@linkcode SourceContext.subject}.
 *
 * @example Naming what a checked pipeline writes to
 * ```ts
 * import type { PipelineParts } from "@sluice/sluice";
 *
 * const describe = (parts: PipelineParts): string =>
 *   `${parts.name}: ${parts.source.plugin.name} -> ${parts.transforms.length} transforms -> ${parts.sink.plugin.name}`;
 * ```
 */
export interface PipelineParts {
  /** The pipeline's name. */
  readonly name: string;
  /** Its source. */
  readonly source: PluginPart<SourcePlugin>;
  /** Its transform chain, in order. */
  readonly transforms: readonly TransformPart[];
  /** Its sink. */
  readonly sink: PluginPart<SinkPlugin>;
}

/**
 * A group of records read together, with the position reached after them.
 *
 * @example A batch of two rows and one undecodable message
 * ```ts
 * import type { SourceBatch } from "@sluice/sluice";
 *
 * const batch: SourceBatch = {
 *   records: [
 *     { topic: "orders", key: { id: 1 }, value: { id: 1, total: "9.90" } },
 *     { topic: "orders", key: { id: 2 }, value: { id: 2, total: "4.50" } },
 *   ],
 *   offset: { partition: 0, offset: 3 },
 *   failures: [{
 *     record: { topic: "orders", key: null, value: "{not json" },
 *     error: new SyntaxError("Unexpected token n in JSON"),
 *     stage: "VALUE_CONVERTER",
 *   }],
 * };
 * ```
 */
export interface SourceBatch {
  /** The records, in source order. */
  readonly records: readonly SluiceRecord[];
  /**
   * The source position after this batch. The runtime stores it, then calls
   * `commit`, only once the sink has durably written every record up to it.
   */
  readonly offset?: JsonValue;
  /**
   * Records read but not decodable (Kafka Connect's converter stages, e.g.
   * `VALUE_CONVERTER`). They follow `errors.tolerance` like records a
   * transform failed: dead-lettered with the batch, or they stop the pipeline.
   */
  readonly failures?: readonly RecordFailure[];
  /**
   * The records are corrections read from the source of truth (a
   * reconciliation's repair): a sink that keeps rows from being overwritten
   * by older versions writes them even where the target claims the same or a
   * newer version, since that target row is what is wrong.
   */
  readonly overwrite?: boolean;
  /**
   * Rows as COPY text, only when the source was told
   * {@linkcode SourceContext.copyText}; `records` is then empty.
   */
  readonly copy?: CopyRows;
}

/**
 * The outcome of one post-run validation check.
 *
 * @example A row count check
 * ```ts
 * import type { RunStats, ValidationCheck } from "@sluice/sluice";
 * import assert from "node:assert/strict";
 *
 * function countsMatch(stats: RunStats): ValidationCheck {
 *   const handled = stats.written + stats.filtered + stats.deadLettered + stats.skipped;
 *   return { name: "read = handled", ok: stats.read === handled, detail: `${stats.read} read, ${handled} handled` };
 * }
 * const stats = { read: 10, written: 8, filtered: 1, deadLettered: 1, skipped: 0 };
 * assert.equal(countsMatch(stats).ok, true);
 * ```
 */
export interface ValidationCheck {
  /** A short name, such as `source count`. */
  readonly name: string;
  /** Whether the check passed; one failed check fails the run. */
  readonly ok: boolean;
  /** What was compared, with the figures, for logs and reports. */
  readonly detail: string;
  /** Set by a reconciliation: what it found, for the `sluice_reconciliation_*` metrics. */
  readonly reconciliation?: ReconciliationFigures;
}

/**
 * What one reconciliation run found between a source and its target.
 *
 * @example A run that found and repaired two rows
 * ```ts
 * import type { ReconciliationFigures } from "@sluice/sluice";
 *
 * const figures: ReconciliationFigures = {
 *   mode: "fast", sourceRows: 100, targetRows: 99, missing: 1, extra: 0, different: 1,
 *   repaired: 2, remaining: 0, queries: 6,
 * };
 * ```
 */
export interface ReconciliationFigures {
  /** `fast` (hashes of key ranges) or `deep` (every transformed value). */
  readonly mode: "fast" | "deep";
  /** Rows in the source (after its `where`). */
  readonly sourceRows: number;
  /** Live rows in the target (soft-deleted rows do not count). */
  readonly targetRows: number;
  /** Source rows the target lacks. */
  readonly missing: number;
  /** Target rows with no source row. */
  readonly extra: number;
  /** Rows on both sides whose compared values differ. */
  readonly different: number;
  /** Differences written through the sink (repair). */
  readonly repaired: number;
  /** Differences left after the run (and after the re-check, with repair). */
  readonly remaining: number;
  /** SQL statements the comparison ran on both databases. */
  readonly queries: number;
}

/**
 * Counters of one run, handed to validation hooks.
 *
 * @example Every record read is accounted for
 * ```ts
 * import type { RunStats } from "@sluice/sluice";
 * import assert from "node:assert/strict";
 *
 * const stats: RunStats = { read: 5, written: 3, filtered: 1, deadLettered: 1, skipped: 0 };
 * assert.equal(stats.written + stats.filtered + stats.deadLettered + stats.skipped, stats.read);
 * ```
 */
export interface RunStats {
  /** Records the source produced. */
  read: number;
  /** Records the sink confirmed as written. */
  written: number;
  /** Records a transform dropped on purpose. */
  filtered: number;
  /** Records sent to the dead-letter destination. */
  deadLettered: number;
  /** Records the sink deliberately did not apply (for example stale change events). */
  skipped: number;
}

/**
 * A running source, as a source plugin's `create` returns it.
 *
 * @example A source that reads three records in one batch
 * ```ts
 * import type { Source, SourceBatch } from "@sluice/sluice";
 * import assert from "node:assert/strict";
 *
 * const source: Source = {
 *   async *read(): AsyncIterable<SourceBatch> {
 *     yield { records: [1, 2, 3].map((n) => ({ topic: "n", key: { n }, value: { n } })), offset: 3 };
 *   },
 *   close: () => Promise.resolve(),
 * };
 * let read = 0;
 * for await (const batch of source.read()) read += batch.records.length;
 * await source.close();
 * assert.equal(read, 3);
 * ```
 */
export interface Source {
  /**
   * Yields batches. A batch source ends when it has read everything it was
   * asked to; a stream source runs until the context's signal aborts.
   */
  read(): AsyncIterable<SourceBatch>;
  /** Called in order with each offset once everything before it is durable. */
  commit?(offset: JsonValue): Promise<void> | void;
  /** Post-run checks of a batch source (for example row counts in the read snapshot). */
  validate?(stats: RunStats): Promise<ValidationCheck[]>;
  /**
   * How many records this run of a batch source will read in all, once the
   * source knows (for example a count in the run's snapshot); undefined
   * before then or when it cannot tell. Read after every batch, for
   * progress and an ETA: it must be cheap, so return what is already known.
   */
  expectedRecords?(): number | undefined;
  /** Releases connections and timers; called once, whether the run succeeded or not. */
  close(): Promise<void>;
}

/**
 * A record a transform or sink could not handle, with the reason.
 *
 * @example A record the sink rejected
 * ```ts
 * import { type RecordFailure, RecordError } from "@sluice/sluice";
 *
 * const failure: RecordFailure = {
 *   record: { topic: "orders", key: { id: 1 }, value: { id: 1, total: "x" } },
 *   error: new RecordError('invalid input syntax for type numeric: "x"', "sink"),
 *   stage: "sink",
 * };
 * ```
 */
export interface RecordFailure {
  /** The record as it was when the stage failed. */
  readonly record: SluiceRecord;
  /** Why it failed. */
  readonly error: Error;
  /** The stage that failed: a transform's alias, or `sink`. */
  readonly stage: string;
  /**
   * The transform steps the record went through before `stage`, as the
   * runtime fingerprints them (set by the runtime, not by plugins); kept in
   * the dead letter so that a replay can tell whether they are still the
   * pipeline's steps.
   */
  readonly chain?: string;
}

/**
 * One write request to a sink.
 *
 * @example A sink that rejects records without a key and writes the rest
 * ```ts
 * import { RecordError, type SinkBatch, type SinkResult } from "@sluice/sluice";
 * import assert from "node:assert/strict";
 *
 * const stored: unknown[] = [];
 * async function write(batch: SinkBatch): Promise<SinkResult> {
 *   const keyless = batch.records.filter((record) => record.key === null);
 *   await batch.reject(keyless.map((record) => ({
 *     record,
 *     error: new RecordError("a record without a key cannot be upserted", "sink"),
 *     stage: "sink",
 *   })));
 *   const keyed = batch.records.filter((record) => record.key !== null);
 *   stored.push(...keyed.map((record) => record.value));
 *   return { written: keyed.length };
 * }
 *
 * const rejected: unknown[] = [];
 * const result = await write({
 *   records: [{ topic: "t", key: { id: 1 }, value: { id: 1 } }, { topic: "t", key: null, value: {} }],
 *   reject: (failures) => {
 *     rejected.push(...failures);
 *     return Promise.resolve();
 *   },
 * });
 * assert.equal(result.written, 1);
 * assert.equal(rejected.length, 1);
 * ```
 */
export interface SinkBatch {
  /** The records to write, in source order. */
  readonly records: readonly SluiceRecord[];
  /**
   * Present when the sink keeps the pipeline's offsets itself
   * (`offsets` capability): store `value` under `key` in the same transaction
   * as the records.
   */
  readonly offset?: { readonly key: string; readonly value: JsonValue };
  /**
   * Hand over records that failed, before the batch is made durable. Resolves
   * once they are safe in the dead-letter destination; rejects when the
   * pipeline does not tolerate errors, and the sink must then roll back.
   */
  reject(failures: readonly RecordFailure[]): Promise<void>;
  /** Set from {@linkcode SourceBatch.overwrite}: write past version guards. */
  readonly overwrite?: boolean;
  /**
   * Set in a full refresh (`--full-refresh`): the records are the source read
   * again in full to repair the target. A sink that skips records whose
   * version equals the stored row's writes them then (a row changed without
   * its version changing is repaired), but still never an older version
   * over a newer one.
   */
  readonly refresh?: boolean;
  /**
   * Upserts only insert: a record whose key the target already holds is
   * skipped. Set by a dead-letter replay for records that met no target row
   * when checked, so that a row written since (newer) is not overwritten.
   */
  readonly onlyNew?: boolean;
  /**
   * Rows as COPY text instead of `records` (which is then empty); only for a
   * sink that declares {@linkcode Sink.copyText}.
   */
  readonly copy?: CopyRows;
}

/**
 * What a sink reports for one batch.
 *
 * @example Three records applied, one stale change ignored
 * ```ts
 * import type { SinkResult } from "@sluice/sluice";
 *
 * const result: SinkResult = { written: 3, skipped: 1 };
 * ```
 */
export interface SinkResult {
  /** Records the target confirmed as written. */
  readonly written: number;
  /** Records deliberately not applied (for example stale change events). */
  readonly skipped?: number;
}

/**
 * A running sink, as a sink plugin's `create` returns it.
 *
 * @example A sink that keeps records in an array
 * ```ts
 * import type { Sink, SluiceRecord } from "@sluice/sluice";
 * import assert from "node:assert/strict";
 *
 * const kept: SluiceRecord[] = [];
 * const sink: Sink = {
 *   write(batch) {
 *     kept.push(...batch.records);
 *     return Promise.resolve({ written: batch.records.length });
 *   },
 *   close: () => Promise.resolve(),
 * };
 * const result = await sink.write({
 *   records: [{ topic: "t", key: null, value: 1 }],
 *   reject: () => Promise.resolve(),
 * });
 * assert.equal(result.written, 1);
 * assert.equal(kept.length, 1);
 * ```
 */
export interface Sink {
  /** Resolves once the batch is durable. Throws to fail the whole batch. */
  write(batch: SinkBatch): Promise<SinkResult>;
  /** True when `write` takes {@linkcode SinkBatch.copy} (rows as COPY text). */
  readonly copyText?: boolean;
  /**
   * How many writes may be in flight at once (default 1: each write waits
   * for the previous one). A sink that sets more promises that overlapping
   * writes become durable in the order `write` was called, or fail: the
   * runtime then waits for all of them and writes them again, in order.
   */
  readonly writesInFlight?: number;
  /** Present when the sink can store offsets in the same transaction as the rows. */
  readonly offsets?: {
    /** The offset stored under `key` (the pipeline name), if any. */
    read(key: string): Promise<JsonValue | undefined>;
    /** Replaces the offset under `key` (an operator's offsets reset, with the pipeline stopped). */
    write?(key: string, value: JsonValue): Promise<void>;
    /** Forgets the offset under `key`, so the next run starts from the beginning. */
    delete?(key: string): Promise<void>;
  };
  /** Present when the sink can keep dead letters itself (for example in a table). */
  deadLetters?(destination: string): DeadLetterWriter;
  /**
   * For a replay of dead letters: whether writing each record can be shown
   * not to replace newer data in the target (see {@linkcode ReplayCheck}),
   * in the order of `records`. A sink without it cannot tell: its replays
   * are refused unless the operator asks to write unverified records.
   */
  replayCheck?(records: readonly SluiceRecord[]): Promise<ReplayCheck[]>;
  /** Post-run checks of what was written. */
  validate?(stats: RunStats): Promise<ValidationCheck[]>;
  /** Releases connections; called once, after the last write. */
  close(): Promise<void>;
}

/**
 * Writes failed records somewhere durable, with their error context.
 *
 * @example Dead letters kept in memory
 * ```ts
 * import { type DeadLetterEntry, deadLetterEntry, type DeadLetterWriter } from "@sluice/sluice";
 * import assert from "node:assert/strict";
 *
 * const letters: DeadLetterEntry[] = [];
 * const writer: DeadLetterWriter = {
 *   description: "memory",
 *   write(failures, pipeline) {
 *     letters.push(...failures.map((failure) => deadLetterEntry(failure, pipeline)));
 *     return Promise.resolve();
 *   },
 *   close: () => Promise.resolve(),
 * };
 * await writer.write([{ record: { topic: "t", key: null, value: 1 }, error: new Error("bad"), stage: "sink" }], "p");
 * assert.equal(letters[0].error, "bad");
 * ```
 */
export interface DeadLetterWriter {
  /** A short description for logs, such as `table public.sluice_dead_letters`. */
  readonly description: string;
  /** Resolves once every failure is durable in the destination. */
  write(failures: readonly RecordFailure[], pipeline: string): Promise<void>;
  /** Waits for pending writes and releases the destination. */
  close(): Promise<void>;
}

/**
 * A running transform. Must not mutate its input.
 *
 * @example Upper-casing a field, dropping records without it
 * ```ts
 * import { mapRecordRows, type Transform } from "@sluice/sluice";
 * import assert from "node:assert/strict";
 *
 * const upper: Transform = {
 *   apply(record) {
 *     const value = record.value as { city?: string } | null;
 *     if (!value?.city) return null;
 *     return mapRecordRows(record, (row) => ({ ...row, city: String(row.city).toUpperCase() }));
 *   },
 * };
 * const out = await upper.apply({ topic: "t", key: null, value: { city: "Braga" } });
 * assert.deepEqual(out?.value, { city: "BRAGA" });
 * assert.equal(await upper.apply({ topic: "t", key: null, value: {} }), null);
 * ```
 */
export interface Transform {
  /** A new record, the same record, or null to drop it. Throw to fail the record. */
  apply(record: SluiceRecord): SluiceRecord | null | Promise<SluiceRecord | null>;
  /** Called after the records it saw were durably written (for stateful transforms). */
  commit?(): Promise<void>;
  /** Releases what the transform holds (files, connections), if anything. */
  close?(): Promise<void>;
}

/**
 * A running predicate, used to apply a transform conditionally.
 *
 * @example Only records of one topic
 * ```ts
 * import type { Predicate } from "@sluice/sluice";
 * import assert from "node:assert/strict";
 *
 * const ordersOnly: Predicate = (record) => record.topic === "orders";
 * assert.equal(ordersOnly({ topic: "orders", key: null, value: null }), true);
 * ```
 */
export type Predicate = (record: SluiceRecord) => boolean;

/**
 * Does a source end by itself (`batch`) or run until stopped (`stream`)?
 * Batch sources run as scheduled jobs; stream sources as supervised tasks.
 *
 * @example Telling jobs from streams
 * ```ts
 * import type { SourceMode } from "@sluice/sluice";
 * import { builtinRegistry } from "@sluice/sluice/builtins";
 * import assert from "node:assert/strict";
 *
 * const mode: SourceMode | undefined = builtinRegistry().find("source", "postgres_cdc")?.mode;
 * assert.equal(mode, "stream");
 * ```
 */
export type SourceMode = "batch" | "stream";

/**
 * What every plugin definition has, whatever its kind.
 *
 * @example The common fields
 * ```ts
 * import type { PluginBase } from "@sluice/sluice";
 * import { z } from "zod";
 *
 * const base: PluginBase<z.ZodObject<{ field: z.ZodString }>> = {
 *   name: "drop_field",
 *   aliases: ["org.example.DropField"],
 *   summary: "Removes one field from every row.",
 *   config: z.object({ field: z.string().describe("The field to remove.") }),
 * };
 * ```
 */
export interface PluginBase<Schema extends z.ZodType> {
  /** Short snake_case name; the file name. */
  readonly name: string;
  /** Other accepted names: Debezium / Kafka Connect class names, deprecated names. */
  readonly aliases?: readonly string[];
  /** One sentence for `sluice plugins`. */
  readonly summary: string;
  /** The config spec: parsing, defaults and documentation in one. */
  readonly config: Schema;
}

/**
 * What a source says about itself for `sluice plan`, without connecting.
 *
 * @example A CDC source capturing one table, and a consumer
 * ```ts
 * import type { SourcePlan } from "@sluice/sluice";
 *
 * const capture: SourcePlan = {
 *   captures: [{ table: "public.orders", topic: "warehouse.public.orders" }],
 * };
 * const consumer: SourcePlan = { subscribes: { pattern: "warehouse\\.public\\..*" } };
 * ```
 */
export interface SourcePlan {
  /** Tables it captures, with the topic each one's records start with. */
  readonly captures?: readonly { readonly table: string; readonly topic: string }[];
  /** Topics it reads: exact names, or a regular expression. */
  readonly subscribes?: { readonly topics?: readonly string[]; readonly pattern?: string };
  /** Valid but probably unmeant settings (a deprecated option), said at validation. */
  readonly warnings?: readonly string[];
  /** What a batch source reads, for people, e.g. `postgres public.profile_360 (incremental)`. */
  readonly reads?: string;
  /**
   * Every topic its records carry, when the config alone tells them all (a
   * table's job, a list of plainly named tables or topics); undefined when
   * it cannot (a pattern, a query). Validation warns of a masking step
   * whose predicate holds for none of them: it would hide nothing.
   */
  readonly emits?: readonly string[];
  /**
   * What only one pipeline may use, in words that name it whole, e.g.
   * `replication slot "s" of 127.0.0.1:5432/db`: two pipelines of a
   * configuration naming the same fail validation (a copied config whose
   * slot name was left as it was would take the other's slot).
   */
  readonly exclusive?: readonly string[];
}

/**
 * What a sink says about itself for `sluice plan`.
 *
 * @example A table sink
 * ```ts
 * import type { SinkPlan } from "@sluice/sluice";
 *
 * const plan: SinkPlan = { destination: "postgres public.profile_summary" };
 * ```
 */
export interface SinkPlan {
  /** True when it writes records to the topic they carry (a Kafka producer). */
  readonly writesTopics?: boolean;
  /** Where it writes, for people, e.g. `postgres public.profile_summary`. */
  readonly destination?: string;
  /**
   * Why records of `topic` (after the pipeline's transforms) cannot be
   * written, or undefined when they can; asked at validation for every topic
   * a source's plan names, so a destination that cannot exist fails before
   * anything connects.
   */
  readonly topicProblem?: (topic: string) => string | undefined;
  /**
   * Why records of all these topics (after the pipeline's transforms) cannot
   * be written by one pipeline, or undefined when they can: a sink that
   * writes every topic to one fixed table refuses several topics, whose rows
   * would be mixed there. Asked at validation with the topics a source's
   * plan names.
   */
  readonly topicsProblem?: (topics: readonly string[]) => string | undefined;
  /**
   * A PostgreSQL connection URL of the database it writes: where several
   * Sluice processes running this pipeline coordinate (job locks and ticks)
   * unless the worker's cluster URL names another database.
   */
  readonly clusterDatabase?: string;
}

/**
 * One entry of Kafka Connect's offsets list (`GET /connectors/{name}/offsets`):
 * a source partition and the position reached in it. In a change, a `null`
 * offset forgets that partition's position.
 *
 * @example A Kafka topic-partition, in Kafka Connect's sink connector words
 * ```ts
 * import type { OffsetEntry } from "@sluice/sluice";
 *
 * const entry: OffsetEntry = {
 *   partition: { kafka_topic: "orders", kafka_partition: 0 },
 *   offset: { kafka_offset: 42 },
 * };
 * ```
 */
export interface OffsetEntry {
  /** Which part of the source, e.g. `{ "kafka_topic": "orders", "kafka_partition": 0 }`. */
  readonly partition: Readonly<Record<string, JsonValue>>;
  /** The next position to read there, or null to forget it. */
  readonly offset: Readonly<Record<string, JsonValue>> | null;
}

/**
 * What an operator asks of a stopped pipeline's position: forget it
 * (`DELETE …/offsets`), set the given entries (`PATCH …/offsets`), or move to
 * the earliest or latest position or the first one at a time
 * (`sluice offsets reset`).
 *
 * @example Rewinding to the start of a day
 * ```ts
 * import type { OffsetChange } from "@sluice/sluice";
 *
 * const change: OffsetChange = { to: "timestamp", at: new Date("2024-05-01T00:00:00Z") };
 * ```
 */
export type OffsetChange =
  | { readonly to: "reset" }
  | { readonly to: "earliest" }
  | { readonly to: "latest" }
  | { readonly to: "timestamp"; readonly at: Date }
  | { readonly to: "entries"; readonly entries: readonly OffsetEntry[] };

/**
 * How a source shows and changes its stored position (Kafka Connect's
 * `alterOffsets`). The runtime reads and writes the stored offset where the
 * pipeline keeps it (the sink's table or the worker's file); the source
 * turns it into entries, computes the new one, and changes what it keeps
 * elsewhere (a Kafka consumer group's committed offsets). The pipeline is
 * stopped meanwhile. What cannot be done throws an
 * `OffsetChangeError` that says why.
 *
 * @example A source whose offset is one number
 * ```ts
 * import { OffsetChangeError, type SourceOffsets } from "@sluice/sluice";
 * import assert from "node:assert/strict";
 *
 * const counter: SourceOffsets<unknown> = {
 *   list: (_config, stored) =>
 *     Promise.resolve(typeof stored === "number" ? [{ partition: {}, offset: { n: stored } }] : []),
 *   change(_config, _stored, change) {
 *     if (change.to === "reset" || change.to === "earliest") return Promise.resolve(undefined);
 *     if (change.to === "entries" && typeof change.entries[0]?.offset?.n === "number") {
 *       return Promise.resolve(change.entries[0].offset.n);
 *     }
 *     throw new OffsetChangeError(`cannot move to ${change.to}`);
 *   },
 * };
 * assert.equal(await counter.change({}, 5, { to: "reset" }, {} as never), undefined);
 * ```
 */
export interface SourceOffsets<Config> {
  /** The stored offset as Kafka Connect entries (plus what the source keeps elsewhere). */
  list(
    config: Config,
    stored: JsonValue | undefined,
    context: PluginContext,
  ): Promise<OffsetEntry[]>;
  /**
   * Applies `change` to what the source keeps elsewhere and returns the new
   * stored offset (undefined: none, the next run starts afresh).
   */
  change(
    config: Config,
    stored: JsonValue | undefined,
    change: OffsetChange,
    context: PluginContext,
  ): Promise<JsonValue | undefined>;
  /**
   * Who reads from this source's position right now, as a sentence for an
   * error message (such as the process holding a replication slot), or
   * undefined when nobody does. An offset changed while another process
   * runs the pipeline would be written back by that process: the change is
   * refused then.
   */
  runningElsewhere?(config: Config, context: PluginContext): Promise<string | undefined>;
}

/**
 * A source plugin definition; make one with {@linkcode defineSource}.
 *
 * @example Looking a source up and reading its options
 * ```ts
 * import { describeOptions, type SourcePlugin } from "@sluice/sluice";
 * import { builtinRegistry } from "@sluice/sluice/builtins";
 * import assert from "node:assert/strict";
 *
 * const source: SourcePlugin | undefined = builtinRegistry().find("source", "postgres_query");
 * assert.equal(source?.mode, "batch");
 * assert.ok(describeOptions(source!.config).some((option) => option.key === "table"));
 * ```
 */
export interface SourcePlugin<Schema extends z.ZodType = z.ZodType> extends PluginBase<Schema> {
  /** Always `source`. */
  readonly kind: "source";
  /** Whether it ends by itself (`batch`) or runs until stopped (`stream`). */
  readonly mode: SourceMode;
  /** Describes captures and subscriptions for `sluice plan`. */
  plan?(config: z.output<Schema>): SourcePlan;
  /**
   * For a job that works on another pipeline (a reconciliation): the name of
   * the batch pipeline its config names. The job then runs with that
   * pipeline's transforms and sink (it must not set its own), and its source
   * gets that pipeline's parts as `context.subject`.
   */
  subject?(config: z.output<Schema>): string;
  /**
   * Why the job cannot work on the pipeline its config names (see
   * {@linkcode SourcePlugin.subject}), or undefined when it can: checked by
   * `validate`, before anything connects.
   */
  subjectProblem?(subject: PipelineParts): string | undefined;
  /** Opens the source with its parsed config; nothing connects before this. */
  create(config: z.output<Schema>, context: SourceContext): Source | Promise<Source>;
  /**
   * For a stream: keeps reporting, through `context.metrics`, what the
   * source holds at its upstream while no run of the pipeline is going
   * (failed for good, backing off between attempts, or stopped by the
   * operator). A replication slot keeps WAL then, and the disk it fills must
   * stay visible exactly when nothing consumes it. The runtime stops the
   * watch, and removes its series, before the next run starts.
   */
  watch?(config: z.output<Schema>, context: PluginContext): { stop(): Promise<void> };
  /** Shows and changes its stored position; without it, only a reset is possible. */
  readonly offsets?: SourceOffsets<z.output<Schema>>;
  /**
   * For a replay of dead letters: whether the source still holds the row
   * each record is about, looked up by its key (true, false), or undefined
   * where it cannot tell (no key, a record it cannot place). A record whose
   * row the source no longer holds is not written: that would bring a
   * deleted row back.
   */
  rowsExist?(
    config: z.output<Schema>,
    records: readonly SluiceRecord[],
    context: PluginContext,
  ): Promise<(boolean | undefined)[]>;
}

/**
 * What a sink can say about writing a replayed record over its target.
 *
 * - `safe`: the write cannot replace newer data: the target row carries a
 *   source position or version that the sink's own guard compares with the
 *   record's (an older record is skipped), or the write changes nothing
 *   (a delete of an absent row).
 * - `absent`: the target has no row for the record's key. Only the source
 *   can tell whether the row still exists or was deleted since.
 * - `unproven`: the target row exists and nothing orders the record against
 *   it; `reason` says why, for the operator.
 * - `tied`: the target row was written by the record's own source
 *   transaction (an equal source position), so the target cannot tell which
 *   came last. For a delete the source decides: if it still holds the row,
 *   the delete is refused (it would remove a live row); if not, it is
 *   written. `reason` says why, for the operator.
 *
 * @example A sink without ordering columns
 * ```ts
 * import type { ReplayCheck } from "@sluice/sluice";
 *
 * const check: ReplayCheck = {
 *   verdict: "unproven",
 *   reason: 'table "items" has neither a source position column nor a version.column',
 * };
 * ```
 */
export type ReplayCheck =
  | { readonly verdict: "safe" | "absent" }
  | { readonly verdict: "unproven" | "tied"; readonly reason: string };

/**
 * A sink plugin definition; make one with {@linkcode defineSink}.
 *
 * @example The built-in sinks
 * ```ts
 * import type { SinkPlugin } from "@sluice/sluice";
 * import { builtinRegistry } from "@sluice/sluice/builtins";
 * import assert from "node:assert/strict";
 *
 * const sinks = builtinRegistry().list("sink") as SinkPlugin[];
 * assert.ok(sinks.some((sink) => sink.name === "postgres"));
 * ```
 */
export interface SinkPlugin<Schema extends z.ZodType = z.ZodType> extends PluginBase<Schema> {
  /** Always `sink`. */
  readonly kind: "sink";
  /** Describes the destination for `sluice plan`. */
  plan?(config: z.output<Schema>): SinkPlan;
  /** Opens the sink with its parsed config. */
  create(config: z.output<Schema>, context: PluginContext): Sink | Promise<Sink>;
  /**
   * Opens the dead-letter table `destination` that {@linkcode Sink.deadLetters}
   * writes, for `sluice dlq` and the dead-letter gauge; without a running sink.
   */
  deadLetterStore?(config: z.output<Schema>, destination: string): DeadLetterStore;
}

/**
 * A transform plugin definition; make one with {@linkcode defineTransform}.
 *
 * @example Finding a transform by its Kafka Connect class name
 * ```ts
 * import type { TransformPlugin } from "@sluice/sluice";
 * import { builtinRegistry } from "@sluice/sluice/builtins";
 * import assert from "node:assert/strict";
 *
 * const route: TransformPlugin | undefined = builtinRegistry().find(
 *   "transform",
 *   "org.apache.kafka.connect.transforms.RegexRouter",
 * );
 * assert.equal(route?.name, "route");
 * ```
 */
export interface TransformPlugin<Schema extends z.ZodType = z.ZodType> extends PluginBase<Schema> {
  /** Always `transform`. */
  readonly kind: "transform";
  /**
   * True when the transform hides personal data (`mask`). A record that
   * fails in it is dead-lettered as it entered, in clear, so `validate`
   * warns when those dead letters go to the sink's database.
   */
  readonly hidesData?: boolean;
  /** Builds the transform with its parsed config. */
  create(config: z.output<Schema>, context: PluginContext): Transform | Promise<Transform>;
}

/**
 * A predicate plugin definition; make one with {@linkcode definePredicate}.
 *
 * @example The built-in predicates
 * ```ts
 * import type { PredicatePlugin } from "@sluice/sluice";
 * import { builtinRegistry } from "@sluice/sluice/builtins";
 * import assert from "node:assert/strict";
 *
 * const predicate: PredicatePlugin | undefined = builtinRegistry().find("predicate", "topic_name_matches");
 * assert.equal(predicate?.kind, "predicate");
 * ```
 */
export interface PredicatePlugin<Schema extends z.ZodType = z.ZodType> extends PluginBase<Schema> {
  /** Always `predicate`. */
  readonly kind: "predicate";
  /** Builds the predicate with its parsed config. */
  create(config: z.output<Schema>, context: PluginContext): Predicate;
}

/**
 * Any plugin.
 *
 * @example Counting the built-in plugins by kind
 * ```ts
 * import type { Plugin } from "@sluice/sluice";
 * import { builtinPlugins } from "@sluice/sluice/builtins";
 * import assert from "node:assert/strict";
 *
 * const kinds = new Set(builtinPlugins.map((plugin: Plugin) => plugin.kind));
 * assert.deepEqual([...kinds].sort(), ["predicate", "sink", "source", "transform"]);
 * ```
 */
export type Plugin =
  | SourcePlugin
  | SinkPlugin
  | TransformPlugin
  | PredicatePlugin;

/**
 * Defines a source plugin.
 *
 * @example A source that counts to three
 * ```ts
 * import { getLogger } from "@logtape/logtape";
 * import { defineSource } from "@sluice/sluice";
 * import { z } from "zod";
 * import assert from "node:assert/strict";
 *
 * const counter = defineSource({
 *   name: "counter",
 *   mode: "batch",
 *   summary: "Emits the numbers 1 to `to`.",
 *   config: z.object({ to: z.coerce.number().int().default(3).describe("Last number.") }),
 *   create(config) {
 *     return {
 *       async *read() {
 *         const records = [];
 *         for (let n = 1; n <= config.to; n++) {
 *           records.push({ topic: "numbers", key: { n }, value: { n } });
 *         }
 *         yield { records, offset: config.to };
 *       },
 *       async close() {},
 *     };
 *   },
 * });
 *
 * const source = await counter.create(counter.config.parse({ to: "2" }), {
 *   pipeline: "count",
 *   logger: getLogger(["example"]),
 *   signal: new AbortController().signal,
 *   offset: undefined,
 *   fullRefresh: false,
 * });
 * for await (const batch of source.read()) assert.equal(batch.records.length, 2);
 * await source.close();
 * ```
 */
export function defineSource<Schema extends z.ZodType>(
  plugin: Omit<SourcePlugin<Schema>, "kind">,
): SourcePlugin<Schema> {
  return { ...plugin, kind: "source" };
}

/**
 * Defines a sink plugin.
 *
 * @example A sink that prints each record's key, run by a pipeline
 * ```ts
 * import {
 *   defineSink,
 *   defineSource,
 *   MemoryOffsetStore,
 *   Registry,
 *   buildPipelines,
 *   runPipeline,
 * } from "@sluice/sluice";
 * import { z } from "zod";
 * import assert from "node:assert/strict";
 *
 * const keys: unknown[] = [];
 * const keysSink = defineSink({
 *   name: "keys",
 *   summary: "Remembers the key of every record.",
 *   config: z.strictObject({}),
 *   create: () => ({
 *     write(batch) {
 *       keys.push(...batch.records.map((record) => record.key));
 *       return Promise.resolve({ written: batch.records.length });
 *     },
 *     close: () => Promise.resolve(),
 *   }),
 * });
 * const two = defineSource({
 *   name: "two",
 *   mode: "batch",
 *   summary: "Two records.",
 *   config: z.strictObject({}),
 *   create: () => ({
 *     async *read() {
 *       yield { records: [{ topic: "t", key: { id: 1 }, value: {} }, { topic: "t", key: { id: 2 }, value: {} }] };
 *     },
 *     close: () => Promise.resolve(),
 *   }),
 * });
 *
 * const registry = new Registry([keysSink, two]);
 * const [spec] = await buildPipelines(
 *   [{ name: "demo", config: { "connector.class": "two", "sink.class": "keys" }, baseDir: "." }],
 *   { registry },
 * );
 * const report = await runPipeline(spec, { offsets: new MemoryOffsetStore() });
 * assert.equal(report.status, "succeeded");
 * assert.deepEqual(keys, [{ id: 1 }, { id: 2 }]);
 * ```
 */
export function defineSink<Schema extends z.ZodType>(
  plugin: Omit<SinkPlugin<Schema>, "kind">,
): SinkPlugin<Schema> {
  return { ...plugin, kind: "sink" };
}

/**
 * Defines a transform plugin.
 *
 * @example A transform that renames the topic
 * ```ts
 * import { getLogger } from "@logtape/logtape";
 * import { defineTransform } from "@sluice/sluice";
 * import { z } from "zod";
 * import assert from "node:assert/strict";
 *
 * const prefix = defineTransform({
 *   name: "prefix",
 *   summary: "Puts a prefix before every topic.",
 *   config: z.strictObject({ prefix: z.string().describe("The prefix.") }),
 *   create: (config) => ({
 *     apply: (record) => ({ ...record, topic: config.prefix + record.topic }),
 *   }),
 * });
 * const transform = await prefix.create({ prefix: "citizen." }, {
 *   pipeline: "p",
 *   logger: getLogger(["example"]),
 *   signal: new AbortController().signal,
 * });
 * const out = await transform.apply({ topic: "orders", key: null, value: {} });
 * assert.equal(out?.topic, "citizen.orders");
 * ```
 */
export function defineTransform<Schema extends z.ZodType>(
  plugin: Omit<TransformPlugin<Schema>, "kind">,
): TransformPlugin<Schema> {
  return { ...plugin, kind: "transform" };
}

/**
 * Defines a predicate plugin.
 *
 * @example A predicate matching records that have a key
 * ```ts
 * import { getLogger } from "@logtape/logtape";
 * import { definePredicate } from "@sluice/sluice";
 * import { z } from "zod";
 * import assert from "node:assert/strict";
 *
 * const hasKey = definePredicate({
 *   name: "has_key",
 *   summary: "Matches records that carry a key.",
 *   config: z.strictObject({}),
 *   create: () => (record) => record.key !== null,
 * });
 * const test = hasKey.create({}, { pipeline: "p", logger: getLogger(["example"]), signal: new AbortController().signal });
 * assert.equal(test({ topic: "t", key: null, value: 1 }), false);
 * ```
 */
export function definePredicate<Schema extends z.ZodType>(
  plugin: Omit<PredicatePlugin<Schema>, "kind">,
): PredicatePlugin<Schema> {
  return { ...plugin, kind: "predicate" };
}
