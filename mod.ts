/**
 * Sluice: a Kafka Connect–style data sync framework for Deno.
 *
 * This module is the public API for people who write their own connectors,
 * transforms and sinks, or who embed the runtime.
 *
 * @example A source plugin in its own file, named by path in a config
 * ```ts
 * import { defineSource, integer } from "./mod.ts";
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
  type DeadLetterWriter,
  definePredicate,
  defineSink,
  defineSource,
  defineTransform,
  type Plugin,
  type PluginContext,
  type Predicate,
  type PredicatePlugin,
  type RecordFailure,
  type RunStats,
  type Sink,
  type SinkBatch,
  type SinkPlugin,
  type SinkResult,
  type Source,
  type SourceBatch,
  type SourceContext,
  type SourceMode,
  type SourcePlugin,
  type Transform,
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
  recordRow,
  type Row,
  type SluiceRecord,
} from "./api/record.ts";
export {
  ConfigError,
  type ConfigIssue,
  errorMessage,
  RecordError,
  RetriableError,
} from "./api/errors.ts";
export { boolean, describeOptions, integer, list, positiveInteger } from "./api/options.ts";
export { deadLetterEntry, deadLetterHeaders } from "./api/dead_letters.ts";
export { encodeJson } from "./api/json.ts";
export { writeAtomically } from "./api/files.ts";
export { Registry } from "./core/registry.ts";
export {
  buildPipelines,
  loadPipelines,
  parseConnectors,
  pipelineOptions,
  type PipelineSpec,
} from "./core/config.ts";
export { FileOffsetStore, MemoryOffsetStore, type OffsetStore } from "./core/offsets.ts";
export { runPipeline, type RunReport } from "./core/pipeline.ts";
export { type JobReport, Runtime } from "./core/runtime.ts";
