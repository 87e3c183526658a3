/**
 * Worker settings (the part of a Kafka Connect worker config Sluice needs),
 * read from flags and environment variables, and the loading of pipelines
 * with the built-in plugins.
 *
 * | setting                 | flag            | environment                 | default                |
 * | ----------------------- | --------------- | --------------------------- | ---------------------- |
 * | offsets file            | `--offsets`     | `SLUICE_OFFSETS_FILE`       | `.sluice/offsets.json` |
 * | Kafka bootstrap servers | `--bootstrap`   | `SLUICE_BOOTSTRAP_SERVERS`  | none                   |
 *
 * @module
 */
import { builtinRegistry } from "../builtins.ts";
import { ConfigError } from "../api/errors.ts";
import { hostPortListProblem } from "../api/options.ts";
import { routeProblems } from "../core/_plan.ts";
import {
  buildPipelines,
  type LoadOptions,
  type PipelineSpec,
  type RawConnector,
  readConnectorFiles,
} from "../core/config.ts";
import { FileOffsetStore } from "../core/offsets.ts";
import type { PipelineEnvironment } from "../core/pipeline.ts";
import type { Registry } from "../core/registry.ts";
import { kafkaDeadLetterTopics } from "../sinks/kafka.ts";
import { kafkaDeadLetterStores } from "../connectors/kafka_dead_letters.ts";

/** Worker-level settings. */
export interface WorkerSettings {
  offsetsFile: string;
  bootstrapServers?: string;
}

/** Settings from flags, then the environment, then defaults. */
export function workerSettings(flags: { offsets?: string; bootstrap?: string }): WorkerSettings {
  return {
    offsetsFile: flags.offsets ?? Deno.env.get("SLUICE_OFFSETS_FILE") ?? ".sluice/offsets.json",
    bootstrapServers: flags.bootstrap ?? Deno.env.get("SLUICE_BOOTSTRAP_SERVERS"),
  };
}

/** Loads and validates pipelines with the built-in plugins (throws ConfigError). */
export async function loadWithBuiltins(
  paths: readonly string[],
  settings: WorkerSettings,
  registry: Registry = builtinRegistry(),
  extra: Pick<LoadOptions, "standIn"> = {},
): Promise<PipelineSpec[]> {
  return await buildWithBuiltins(await readConnectorFiles(paths), settings, registry, extra);
}

/**
 * Validates connector entries as `sluice validate` does (the same checks for
 * the REST API's creates and updates); throws ConfigError.
 */
export function buildWithBuiltins(
  entries: readonly RawConnector[],
  settings: WorkerSettings,
  registry: Registry = builtinRegistry(),
  extra: Pick<LoadOptions, "standIn"> = {},
): Promise<PipelineSpec[]> {
  const pluginDefaults: Record<string, string> = {};
  if (settings.bootstrapServers) {
    const problem = hostPortListProblem(settings.bootstrapServers);
    if (problem) {
      const path = "--bootstrap (or SLUICE_BOOTSTRAP_SERVERS)";
      return Promise.reject(new ConfigError([{ path, message: problem }]));
    }
    pluginDefaults["bootstrap.servers"] = settings.bootstrapServers;
  }
  return buildPipelines(entries, {
    ...extra,
    registry,
    pluginDefaults,
    sinkConnectorSource: registry.find("source", "kafka") ? "kafka" : undefined,
    defaultSink: registry.find("sink", "kafka") ? "kafka" : undefined,
  }).then(async (specs) => {
    const problems = await routeProblems(specs);
    if (problems.length > 0) throw new ConfigError(problems);
    return specs;
  }, (error) => {
    throw withWorkerHints(error);
  });
}

/** Says how to give what the worker supplies (the broker) where a config lacks it. */
function withWorkerHints(error: unknown): unknown {
  if (!(error instanceof ConfigError)) return error;
  const issues = error.issues.map((issue) =>
    issue.path.endsWith("bootstrap.servers") && issue.message === "is required"
      ? {
        ...issue,
        message: "is required: give the Kafka broker with --bootstrap host:port or " +
          "SLUICE_BOOTSTRAP_SERVERS, or set bootstrap.servers in the config",
      }
      : issue
  );
  return new ConfigError(issues, { cause: error });
}

/** The environment pipelines run in: offsets file and optional Kafka. */
export function workerEnvironment(settings: WorkerSettings): PipelineEnvironment {
  return {
    offsets: new FileOffsetStore(settings.offsetsFile),
    // The worker's Kafka, or else the pipeline's own kafka source or sink.
    deadLetterTopic: kafkaDeadLetterTopics(settings.bootstrapServers),
    deadLetterTopicStore: kafkaDeadLetterStores(settings.bootstrapServers),
  };
}
