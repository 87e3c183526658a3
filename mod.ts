/**
 * Sluice: a Kafka Connect–style data sync framework for Deno.
 *
 * This module is the public API for people who write their own connectors,
 * transforms and sinks, or who embed the runtime.
 *
 * Plugin authors need {@linkcode defineSource}, {@linkcode defineSink},
 * {@linkcode defineTransform} or {@linkcode definePredicate}, the record
 * types and the option helpers. Embedders build pipelines with
 * {@linkcode loadPipelines} and run them with {@linkcode runPipeline} or a
 * {@linkcode Runtime}. The built-in plugins are a separate export,
 * `@sluice/sluice/builtins`, so that this module pulls in no database or
 * Kafka driver.
 *
 * @example A source plugin in its own file, named by path in a config
 * ```ts
 * import { defineSource, integer } from "@sluice/sluice";
 * import { z } from "zod";
 *
 * export default defineSource({
 *   name: "numbers",
 *   mode: "batch",
 *   summary: "Emits the numbers 1 to `count`.",
 *   config: z.strictObject({
 *     count: integer().default(3).describe("How many numbers to emit."),
 *   }),
 *   create(config, context) {
 *     const start = typeof context.offset === "number" ? context.offset : 0;
 *     return {
 *       async *read() {
 *         const records = [];
 *         for (let n = start + 1; n <= config.count; n++) {
 *           records.push({ topic: "numbers", key: { n }, value: { n } });
 *         }
 *         yield { records, offset: config.count };
 *       },
 *       async close() {},
 *     };
 *   },
 * });
 * ```
 *
 * @module
 */
export {
  type CopyColumnType,
  type CopyRows,
  type DeadLetterWriter,
  definePredicate,
  defineSink,
  defineSource,
  defineTransform,
  type OffsetChange,
  type OffsetEntry,
  type PipelineParts,
  type Plugin,
  type PluginBase,
  type PluginContext,
  type PluginPart,
  type Predicate,
  type PredicatePlugin,
  type ReconciliationFigures,
  type RecordFailure,
  type ReplayCheck,
  type RunStats,
  type Sink,
  type SinkBatch,
  type SinkPlan,
  type SinkPlugin,
  type SinkResult,
  type Source,
  type SourceBatch,
  type SourceContext,
  type SourceMode,
  type SourceOffsets,
  type SourcePlan,
  type SourcePlugin,
  type Transform,
  type TransformPart,
  type TransformPlugin,
  type ValidationCheck,
} from "./api/plugin.ts";
export {
  type ChangeEvent,
  type ChangeOp,
  type ChangeSource,
  isChangeEvent,
  type JsonValue,
  mapRecordRows,
  NEW_KEY_HEADER,
  OLD_KEY_HEADER,
  recordRow,
  type Row,
  type SluiceRecord,
  UNAVAILABLE_FIELDS_HEADER,
  unavailableFields,
} from "./api/record.ts";
export { type ConnectSchema, type ConnectType, type RecordSchemas } from "./api/schema.ts";
export {
  ConfigError,
  type ConfigIssue,
  errorMessage,
  OffsetChangeError,
  RecordError,
  RetriableError,
  StandbyError,
} from "./api/errors.ts";
export {
  boolean,
  describeOptions,
  integer,
  list,
  type OptionDoc,
  positiveInteger,
} from "./api/options.ts";
export {
  type MetricDefinition,
  type MetricLabels,
  type MetricsPolling,
  type PluginCounter,
  type PluginGauge,
  type PluginMetrics,
  pollMetrics,
} from "./api/metrics.ts";
export {
  type DeadLetterEntry,
  deadLetterEntry,
  deadLetterHeaders,
  type DeadLetterSelection,
  type DeadLetterStore,
  selectsDeadLetter,
  type StoredDeadLetter,
} from "./api/dead_letters.ts";
export { type Closable, disposable } from "./api/disposable.ts";
export { encodeJson } from "./api/json.ts";
export { writeAtomically } from "./api/files.ts";
export { type LazyPlugin, type PluginKind, Registry } from "./core/registry.ts";
export {
  buildPipelines,
  type LoadOptions,
  loadPipelines,
  parseConnectors,
  type PipelineOptions,
  type PipelineSpec,
  type PluginSpec,
  type RawConnector,
  type TransformSpec,
} from "./core/config.ts";
export type { ProviderSources } from "./core/providers.ts";
export { FileOffsetStore, MemoryOffsetStore, type OffsetStore } from "./core/offsets.ts";
export {
  type PipelineEnvironment,
  type RunOptions,
  runPipeline,
  type RunReport,
  type RunStatus,
} from "./core/pipeline.ts";
export {
  type JobReport,
  type JobRunOptions,
  type ReportListener,
  Runtime,
  type RuntimeOptions,
} from "./core/runtime.ts";
export {
  type Claim,
  type GroupRun,
  type JobCoordinator,
  type JobLease,
  type SkipReason,
} from "./core/cluster.ts";
export type {
  BatchReadEvent,
  BatchWrittenEvent,
  PipelineObserver,
  RecordsFailedEvent,
  RunMetrics,
} from "./core/observer.ts";
export type { ConnectorState, PipelineControl, Retry } from "./core/control.ts";
