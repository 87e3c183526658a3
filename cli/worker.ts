/**
 * Worker settings (the part of a Kafka Connect worker config Sluice needs),
 * read from flags and environment variables, and the loading of pipelines
 * with the built-in plugins.
 *
 * | setting                 | flag            | environment                 | default                |
 * | ----------------------- | --------------- | --------------------------- | ---------------------- |
 * | offsets file            | `--offsets`     | `SLUICE_OFFSETS_FILE`       | `.sluice/offsets.json` |
 * | Kafka bootstrap servers | `--bootstrap`   | `SLUICE_BOOTSTRAP_SERVERS`  | none                   |
 * | cluster database        | `--cluster-url` | `SLUICE_CLUSTER_URL`        | each job's sink database |
 * | worker id in the group  | `--worker-id`   | `SLUICE_WORKER_ID`          | `<hostname>-<pid>`     |
 * | jobs at once            | `--max-parallel-jobs` | `SLUICE_MAX_PARALLEL_JOBS` | 4              |
 *
 * Several processes with the same configs form a group: each scheduled
 * tick runs once (an advisory lock and a row in `sluice_job_ticks` in the
 * cluster database), a replication slot has one owner and standbys, and
 * Kafka consumers share partitions through their consumer group.
 *
 * @module
 */
import { lazyBuiltinRegistry } from "../_builtin_catalog.ts";
import { ConfigError } from "../api/errors.ts";
import { hostPortListProblem } from "../api/options.ts";
import { idleMaskProblems, routeProblems, sharedResourceProblems } from "../core/_plan.ts";
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
import type { JobCoordinator } from "../core/cluster.ts";
import { PgJobCoordinator, PgOffsetStore } from "../drivers/pg_cluster.ts";
import type { DeadLetterStore } from "../api/dead_letters.ts";

/**
 * The V8 settings `sluice run` starts with (`deno task run`, `deno task
 * compile`, the demo), always beside `--no-code-cache` (see
 * {@linkcode SLUICE_DENO_FLAGS}):
 *
 * - new space at most 4 MB per semi-space instead of V8's default of up to
 *   16 (or more, by heap size). Records live for one batch, so a large young
 *   generation mostly holds garbage between scavenges: a 200k-row sync
 *   peaked at 184 MB instead of 238 at the same CPU time (within noise). Not
 *   a heap cap: old space still grows as it needs.
 * - V8's memory reducer (the GC that gives back what start-up left behind
 *   once the process is idle: the young generation grown by start-up, old
 *   space) first looks 1 s after start instead of 30 s; it collects only when
 *   the allocation rate is low, so an idle `sluice run` settles ~8 MB lower
 *   ~9.5 s after start (its first look still sees start-up's allocations and
 *   waits its 8 s; a first look at 6 s collected at once here, but one at 5 s
 *   still saw them and collected at 13 s: a later first look is a bet on the
 *   load), and a busy one is left alone.
 * - old space grows by half of what the last full GC kept alive before the
 *   next full GC starts, where V8 lets it grow up to 4× for a fast mutator.
 *   Records in flight to a sink outlive two scavenges and are promoted, so
 *   draining a CDC backlog grew old space from ~35 MB live to 120–145 MB
 *   between full GCs. At 1.5× a 1M-event backlog into Kafka peaked at
 *   ~178 MB instead of ~270 (two runs each, same machine) for 0–10% more
 *   CPU time (within that machine's noise); a 1M-row batch sync kept its ~123 MB and its speed (within
 *   the noise of three runs).
 * - no memory pool: pages a GC frees go back to the system at once instead
 *   of waiting in V8's pool (10–45 MB of it during that drain).
 *
 * tests/cli/v8_flags_test.ts checks that deno.json's tasks carry the same
 * values.
 */
export const SLUICE_V8_FLAGS =
  "--max-semi-space-size=4,--gc-memory-reducer-start-delay-ms=1000,--heap-growing-percent=50,--no-memory-pool";

/**
 * The Deno flags `sluice run` starts with: {@linkcode SLUICE_V8_FLAGS} and
 * `--no-code-cache`. Deno's code cache saves ~25 ms of CPU at start-up but
 * keeps ~4.5 MB more resident for the life of the process (its database
 * mapped, the cached code), and a first start that writes it peaked ~35 MB
 * higher (once measured, a new bundle). With the cache on, the memory
 * reducer's setting also cost start-up ~50 ms of CPU more in our runs: the
 * two go together.
 */
export const SLUICE_DENO_FLAGS: readonly string[] = [
  "--no-code-cache",
  `--v8-flags=${SLUICE_V8_FLAGS}`,
];

/** Worker-level settings. */
export interface WorkerSettings {
  offsetsFile: string;
  bootstrapServers?: string;
  /** The database where the group coordinates; default: each job's sink database. */
  clusterUrl?: string;
  /** This process's name in the group (default `<hostname>-<pid>`). */
  workerId?: string;
  /** Most batch jobs running at once in this process (default 4). */
  maxParallelJobs?: number;
}

/** Settings from flags, then the environment, then defaults. */
export function workerSettings(flags: {
  offsets?: string;
  bootstrap?: string;
  "cluster-url"?: string;
  "worker-id"?: string;
  "max-parallel-jobs"?: string;
}): WorkerSettings {
  const parallel = flags["max-parallel-jobs"] ?? Deno.env.get("SLUICE_MAX_PARALLEL_JOBS") ?? "4";
  const maxParallelJobs = Number(parallel);
  if (!Number.isInteger(maxParallelJobs) || maxParallelJobs < 1) {
    throw new ConfigError([{
      path: "--max-parallel-jobs (or SLUICE_MAX_PARALLEL_JOBS)",
      message: `must be a positive integer: current value is "${parallel}"`,
    }]);
  }
  return {
    offsetsFile: flags.offsets ?? Deno.env.get("SLUICE_OFFSETS_FILE") ?? ".sluice/offsets.json",
    bootstrapServers: flags.bootstrap ?? Deno.env.get("SLUICE_BOOTSTRAP_SERVERS"),
    clusterUrl: flags["cluster-url"] ?? (Deno.env.get("SLUICE_CLUSTER_URL") || undefined),
    workerId: flags["worker-id"] ?? (Deno.env.get("SLUICE_WORKER_ID") || defaultWorkerId()),
    maxParallelJobs,
  };
}

/** `<hostname>-<pid>`; without the permission to read the host name, `sluice-<pid>`. */
function defaultWorkerId(): string {
  const granted = Deno.permissions.querySync({ name: "sys", kind: "hostname" }).state === "granted";
  return `${granted ? Deno.hostname() : "sluice"}-${Deno.pid}`;
}

/**
 * The group-wide coordinators of batch jobs, one per cluster database:
 * `--cluster-url`, or else the job's sink database when the sink names one
 * (a PostgreSQL sink). A job with neither runs as if alone.
 */
export class ClusterCoordinators implements AsyncDisposable {
  readonly #settings: WorkerSettings;
  readonly #byUrl = new Map<string, PgJobCoordinator>();

  constructor(settings: WorkerSettings) {
    this.#settings = settings;
  }

  /** The coordinator of `spec`, or undefined when it has no cluster database. */
  readonly of = (spec: PipelineSpec): JobCoordinator | undefined => {
    if (spec.source.plugin.mode !== "batch") return undefined;
    const url = this.#settings.clusterUrl ??
      spec.sink.plugin.plan?.(spec.sink.config)?.clusterDatabase;
    if (!url) return undefined;
    let coordinator = this.#byUrl.get(url);
    if (!coordinator) {
      coordinator = new PgJobCoordinator(url, this.#settings.workerId ?? defaultWorkerId(), {
        database: this.#settings.clusterUrl
          ? "the cluster database %s"
          : "the sink database %s, where jobs coordinate unless --cluster-url names another",
      });
      this.#byUrl.set(url, coordinator);
    }
    return coordinator as JobCoordinator;
  };

  /** Batch jobs that nothing coordinates: with several processes, each would run them. */
  uncoordinated(specs: readonly PipelineSpec[]): string[] {
    return specs.filter((spec) => spec.source.plugin.mode === "batch" && !this.of(spec))
      .map((spec) => spec.name);
  }

  /** Closes the connections. */
  async [Symbol.asyncDispose](): Promise<void> {
    await Promise.all([...this.#byUrl.values()].map((coordinator) => coordinator.close()));
  }
}

/** Loads and validates pipelines with the built-in plugins (throws ConfigError). */
export async function loadWithBuiltins(
  paths: readonly string[],
  settings: WorkerSettings,
  registry: Registry = lazyBuiltinRegistry(),
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
  registry: Registry = lazyBuiltinRegistry(),
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
    sinkConnectorSource: registry.has("source", "kafka") ? "kafka" : undefined,
    defaultSink: registry.has("sink", "kafka") ? "kafka" : undefined,
  }).then(async (specs) => {
    const problems = [
      ...sharedResourceProblems(specs),
      ...await routeProblems(specs),
      ...await idleMaskProblems(specs),
    ];
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

/**
 * The environment pipelines run in: the offset store (the cluster database
 * when `--cluster-url` is given, shared by the group; else the offsets
 * file) and optional Kafka.
 */
export function workerEnvironment(
  settings: Pick<WorkerSettings, "offsetsFile" | "bootstrapServers" | "clusterUrl">,
): PipelineEnvironment {
  return {
    offsets: settings.clusterUrl
      ? new PgOffsetStore(settings.clusterUrl)
      : new FileOffsetStore(settings.offsetsFile),
    // The worker's Kafka, or else the pipeline's own kafka source or sink.
    // The Kafka sink's module loads with the first pipeline that has a dead-letter topic.
    deadLetterTopic: async (topic, spec) => {
      const { kafkaDeadLetterTopics } = await import("../sinks/kafka.ts");
      return await kafkaDeadLetterTopics(settings.bootstrapServers)(topic, spec);
    },
    deadLetterTopicStore: lazyKafkaDeadLetterStores(settings.bootstrapServers),
  };
}

/**
 * The stores of dead-letter topics (`kafkaDeadLetterStores`), whose module
 * and the Kafka source's are imported when a store is first used: most
 * processes have no dead-letter topic and should not load them. A store
 * that cannot open (no Kafka for it) fails its first call with the reason.
 */
export function lazyKafkaDeadLetterStores(
  workerBootstrapServers?: string,
): NonNullable<PipelineEnvironment["deadLetterTopicStore"]> {
  return (topic, spec) => {
    const opened: Promise<DeadLetterStore> = import("../connectors/kafka_dead_letters.ts")
      .then((module) => module.kafkaDeadLetterStores(workerBootstrapServers)(topic, spec));
    opened.catch(() => {}); // reported by the first call that needs the store
    return {
      description: `Kafka topic ${topic}`,
      list: async (pipeline, selection) => await (await opened).list(pipeline, selection),
      count: async (pipeline) => await (await opened).count(pipeline),
      remove: async (ids) => await (await opened).remove(ids),
      failedAgain: async (again) => await (await opened).failedAgain(again),
      close: async () => await (await opened.catch(() => undefined))?.close(),
    };
  };
}
