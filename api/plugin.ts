/**
 * The plugin contract: sources, transforms, predicates and sinks.
 *
 * A plugin is one value with a name, a zod config schema and a factory. The
 * runtime validates the config against the schema before anything connects,
 * then calls `create(config, context)` with the parsed, typed config.
 *
 * @module
 */
import type { z } from "zod";
import type { Logger } from "@logtape/logtape";
import type { JsonValue, SluiceRecord } from "./record.ts";

/** What every plugin factory receives besides its config. */
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
}

/** What a source factory receives. */
export interface SourceContext extends PluginContext {
  /** The last committed position, or undefined on a first run or a full refresh. */
  readonly offset: JsonValue | undefined;
  /** True when the run was asked to ignore the stored position and read everything. */
  readonly fullRefresh: boolean;
}

/** A group of records read together, with the position reached after them. */
export interface SourceBatch {
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
}

/** The outcome of one post-run validation check. */
export interface ValidationCheck {
  readonly name: string;
  readonly ok: boolean;
  readonly detail: string;
}

/** Counters of one run, handed to validation hooks. */
export interface RunStats {
  read: number;
  written: number;
  filtered: number;
  deadLettered: number;
  skipped: number;
}

/** A running source. */
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
  close(): Promise<void>;
}

/** A record a transform or sink could not handle, with the reason. */
export interface RecordFailure {
  readonly record: SluiceRecord;
  readonly error: Error;
  /** The stage that failed: a transform's alias, or `sink`. */
  readonly stage: string;
}

/** One write request to a sink. */
export interface SinkBatch {
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
}

/** What a sink reports for one batch. */
export interface SinkResult {
  /** Records the target confirmed as written. */
  readonly written: number;
  /** Records deliberately not applied (for example stale change events). */
  readonly skipped?: number;
}

/** A running sink. */
export interface Sink {
  /** Resolves once the batch is durable. Throws to fail the whole batch. */
  write(batch: SinkBatch): Promise<SinkResult>;
  /** Present when the sink can store offsets in the same transaction as the rows. */
  readonly offsets?: {
    read(key: string): Promise<JsonValue | undefined>;
  };
  /** Present when the sink can keep dead letters itself (for example in a table). */
  deadLetters?(destination: string): DeadLetterWriter;
  /** Post-run checks of what was written. */
  validate?(stats: RunStats): Promise<ValidationCheck[]>;
  close(): Promise<void>;
}

/** Writes failed records somewhere durable, with their error context. */
export interface DeadLetterWriter {
  /** A short description for logs, such as `table public.sluice_dead_letters`. */
  readonly description: string;
  write(failures: readonly RecordFailure[], pipeline: string): Promise<void>;
  close(): Promise<void>;
}

/** A running transform. Must not mutate its input. */
export interface Transform {
  /** A new record, the same record, or null to drop it. Throw to fail the record. */
  apply(record: SluiceRecord): SluiceRecord | null | Promise<SluiceRecord | null>;
  /** Called after the records it saw were durably written (for stateful transforms). */
  commit?(): Promise<void>;
  close?(): Promise<void>;
}

/** A running predicate, used to apply a transform conditionally. */
export type Predicate = (record: SluiceRecord) => boolean;

/** Does a source end by itself (`batch`) or run until stopped (`stream`)? */
export type SourceMode = "batch" | "stream";

interface PluginBase<Schema extends z.ZodType> {
  /** Short snake_case name; the file name. */
  readonly name: string;
  /** Other accepted names: Debezium / Kafka Connect class names, deprecated names. */
  readonly aliases?: readonly string[];
  /** One sentence for `sluice plugins`. */
  readonly summary: string;
  /** The config spec: parsing, defaults and documentation in one. */
  readonly config: Schema;
}

/** What a source says about itself for `sluice plan`, without connecting. */
export interface SourcePlan {
  /** Tables it captures, with the topic each one's records start with. */
  readonly captures?: readonly { readonly table: string; readonly topic: string }[];
  /** Topics it reads: exact names, or a regular expression. */
  readonly subscribes?: { readonly topics?: readonly string[]; readonly pattern?: string };
}

/** What a sink says about itself for `sluice plan`. */
export interface SinkPlan {
  /** True when it writes records to the topic they carry (a Kafka producer). */
  readonly writesTopics?: boolean;
  /** Where it writes, for people, e.g. `postgres public.profile_summary`. */
  readonly destination?: string;
}

/** A source plugin definition. */
export interface SourcePlugin<Schema extends z.ZodType = z.ZodType> extends PluginBase<Schema> {
  readonly kind: "source";
  readonly mode: SourceMode;
  /** Describes captures and subscriptions for `sluice plan`. */
  plan?(config: z.output<Schema>): SourcePlan;
  create(config: z.output<Schema>, context: SourceContext): Source | Promise<Source>;
}

/** A sink plugin definition. */
export interface SinkPlugin<Schema extends z.ZodType = z.ZodType> extends PluginBase<Schema> {
  readonly kind: "sink";
  /** Describes the destination for `sluice plan`. */
  plan?(config: z.output<Schema>): SinkPlan;
  create(config: z.output<Schema>, context: PluginContext): Sink | Promise<Sink>;
}

/** A transform plugin definition. */
export interface TransformPlugin<Schema extends z.ZodType = z.ZodType> extends PluginBase<Schema> {
  readonly kind: "transform";
  create(config: z.output<Schema>, context: PluginContext): Transform | Promise<Transform>;
}

/** A predicate plugin definition. */
export interface PredicatePlugin<Schema extends z.ZodType = z.ZodType> extends PluginBase<Schema> {
  readonly kind: "predicate";
  create(config: z.output<Schema>, context: PluginContext): Predicate;
}

/** Any plugin. */
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
 * import { defineSource } from "./plugin.ts";
 * import { z } from "zod";
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
 * ```
 */
export function defineSource<Schema extends z.ZodType>(
  plugin: Omit<SourcePlugin<Schema>, "kind">,
): SourcePlugin<Schema> {
  return { ...plugin, kind: "source" };
}

/** Defines a sink plugin. */
export function defineSink<Schema extends z.ZodType>(
  plugin: Omit<SinkPlugin<Schema>, "kind">,
): SinkPlugin<Schema> {
  return { ...plugin, kind: "sink" };
}

/** Defines a transform plugin. */
export function defineTransform<Schema extends z.ZodType>(
  plugin: Omit<TransformPlugin<Schema>, "kind">,
): TransformPlugin<Schema> {
  return { ...plugin, kind: "transform" };
}

/** Defines a predicate plugin. */
export function definePredicate<Schema extends z.ZodType>(
  plugin: Omit<PredicatePlugin<Schema>, "kind">,
): PredicatePlugin<Schema> {
  return { ...plugin, kind: "predicate" };
}
