/**
 * Loads pipeline configs written in the Kafka Connect / Debezium style and
 * turns them into validated {@linkcode PipelineSpec}s.
 *
 * A config file holds one `{ "name", "config" }` object or an array of them;
 * a folder holds such files, in subfolders too. Keys are dotted strings, as in
 * Kafka Connect:
 *
 * - `connector.class` names the source, `sink.class` the sink; `sink.*` keys
 *   configure the sink and every other plugin key configures the source.
 * - `transforms=a,b` with `transforms.a.type` and its options, optionally
 *   `transforms.a.predicate` + `transforms.a.negate` naming one of
 *   `predicates=p` with `predicates.p.type`.
 * - `errors.*`, `job.*`, `offset.storage` and `queue.max.batches` belong to
 *   the runtime (see {@linkcode pipelineOptions}).
 *
 * Every problem in every file is collected and reported at once in a
 * {@linkcode ConfigError}, before anything connects.
 *
 * @module
 */
/**
 * A third-party package: `deno doc --lint` (Deno 2.9) calls its types private,
 * which they are not (denoland/deno#27364); the tag silences that false alarm.
 *
 * @internal
 */
import { scheduleProblem } from "./_schedule.ts";
import { z } from "zod";
import { dirname, join, resolve } from "./_path.ts";
import { ConfigError, type ConfigIssue } from "../api/errors.ts";
import { isSecretOption, redactSecrets } from "../api/redact.ts";
import { boolean, integer, list, objectShape, positiveInteger } from "../api/options.ts";
import type {
  PipelineParts,
  Plugin,
  PredicatePlugin,
  SinkPlugin,
  SourcePlugin,
  TransformPlugin,
} from "../api/plugin.ts";
import { type ProviderSources, resolvePlaceholders } from "./providers.ts";
import type { PluginKind, Registry } from "./registry.ts";
import { closest } from "../api/spelling.ts";

/**
 * The options the runtime itself reads from every pipeline config.
 *
 * Internal to the package (the CLI and the README generator read it): its
 * inferred zod type is too large to spell out, so the public API offers the
 * parsed {@linkcode PipelineOptions} instead.
 *
 * @internal
 */
export const pipelineOptions = z.strictObject({
  "errors.tolerance": z.enum(["none", "all"]).default("none").describe(
    "none: a record that fails stops the pipeline. all: it goes to the dead-letter destination (or is logged and skipped) and the pipeline goes on.",
  ),
  "errors.log.enable": boolean().default(true).describe("Log every failed record."),
  "errors.log.include.messages": boolean().default(false).describe(
    "Include the failed record's key and value in the log line.",
  ),
  "errors.deadletterqueue.topic.name": z.string().optional().describe(
    "Kafka topic that receives failed records, with __connect.errors.* headers.",
  ),
  "errors.deadletterqueue.topic.replication.factor": integer().default(1).describe(
    "Replication factor of the dead-letter topic when Sluice creates it.",
  ),
  "errors.deadletterqueue.context.headers.enable": boolean().default(true).describe(
    "Add the error context headers to dead letters.",
  ),
  "errors.deadletterqueue.table.name": z.string().optional().describe(
    "Table in the sink's database that receives failed records (sinks that support it).",
  ),
  "errors.deadletterqueue.file.path": z.string().optional().describe(
    "JSON-lines file that receives failed records. Its folder must exist: a pipeline that cannot write there fails at start.",
  ),
  "errors.retry.timeout": integer().default(300000).describe(
    "How long (ms) to keep retrying a transient fault before the pipeline fails; -1 retries forever, 0 never retries.",
  ),
  "errors.retry.delay.max.ms": positiveInteger().default(60000).describe(
    "Upper bound of the exponential backoff between retries (ms).",
  ),
  "job.schedule": z.string().optional().describe(
    'Cron schedule (UTC) of a batch pipeline: 5 fields, e.g. "0 0 * * *", or 6 with seconds first, e.g. "*/10 * * * * *". Without it the job runs on demand (and once when `sluice run` starts). With several `sluice run` processes, each tick runs once in the group.',
  ),
  "job.retries": integer().pipe(z.number().min(0)).default(3).describe(
    "How many times a failed run is retried.",
  ),
  "job.retry.delay.ms": integer().pipe(z.number().min(0)).default(300000).describe(
    "Delay between a failed run and its retry (ms).",
  ),
  "job.timeout.ms": integer().pipe(z.number().min(0)).default(0).describe(
    "A run taking longer is aborted and counts as failed; 0 means no limit.",
  ),
  "job.depends.on": list().default([]).describe(
    "Jobs that must have succeeded in the same cycle before this one runs (scheme_sync >> profile_sync).",
  ),
  "job.validate": boolean().default(true).describe(
    "Run post-sync validation (counts and checksums); a failed check fails the run.",
  ),
  "job.catchup": z.union([z.literal(false), z.literal("false")]).default(false).describe(
    "Missed runs are never caught up; only false is accepted.",
  ),
  "offset.storage": z.enum(["auto", "file", "sink"]).default("auto").describe(
    "Where source positions are kept: sink (same transaction as the rows, exactly-once), file, or auto (sink when it can).",
  ),
  "queue.max.batches": positiveInteger().default(2).describe(
    "Batches buffered between the source and the sink; bounds memory and applies backpressure.",
  ),
  "tasks.max": z.union([z.literal(1), z.literal("1")]).default(1).describe(
    "Accepted for Kafka Connect compatibility; a pipeline runs as one task.",
  ),
});

/**
 * The runtime options of a pipeline, parsed: `errors.*` (tolerance,
 * dead-letter destinations, retry budget), `job.*` (schedule, retries,
 * timeout, `depends.on`, validation), `offset.storage` and
 * `queue.max.batches`, with their defaults filled in. `sluice plugins` and
 * the README list them all.
 *
 * @example Defaults of a pipeline that sets none
 * ```ts
 * import { buildPipelines, type PipelineOptions } from "@sluice/sluice";
 * import { builtinRegistry } from "@sluice/sluice/builtins";
 * import assert from "node:assert/strict";
 *
 * const [spec] = await buildPipelines([{
 *   name: "copy",
 *   config: {
 *     "connector.class": "postgres_query",
 *     "connection.url": "postgres://localhost/warehouse",
 *     table: "public.orders",
 *     "sink.class": "postgres",
 *     "sink.connection.url": "postgres://localhost/citizen",
 *   },
 *   baseDir: ".",
 * }], { registry: builtinRegistry() });
 * const options: PipelineOptions = spec.options;
 * assert.equal(options["errors.tolerance"], "none");
 * assert.equal(options["job.retries"], 3);
 * ```
 */
export type PipelineOptions = z.output<typeof pipelineOptions>;

/**
 * Kafka Connect's converter keys (`key.converter`, `value.converter.schemas.enable`…).
 * Unprefixed, they go to the end whose plugin declares them (the kafka sink
 * does); when neither does they are accepted and ignored, as Sluice's other
 * ends speak JSON records, not bytes.
 */
function isConverterKey(key: string): boolean {
  return /^(key|value|header)\.converter($|\.)/.test(key);
}

/**
 * A plugin chosen for a pipeline, with its parsed config.
 *
 * @example The sink of a validated pipeline
 * ```ts
 * import { buildPipelines, type PluginSpec, type SinkPlugin } from "@sluice/sluice";
 * import { builtinRegistry } from "@sluice/sluice/builtins";
 * import assert from "node:assert/strict";
 *
 * const [spec] = await buildPipelines([{
 *   name: "to_kafka",
 *   config: { "connector.class": "kafka", topics: "orders", "sink.class": "kafka" },
 *   baseDir: ".",
 * }], { registry: builtinRegistry(), pluginDefaults: { "bootstrap.servers": "localhost:9092" } });
 * const sink: PluginSpec<SinkPlugin> = spec.sink;
 * assert.equal(sink.reference, "kafka");
 * assert.equal(sink.plugin.kind, "sink");
 * ```
 */
export interface PluginSpec<P extends Plugin> {
  /** The name or path written in the config. */
  readonly reference: string;
  /** The plugin it resolved to. */
  readonly plugin: P;
  /** The config after the plugin's schema parsed it (defaults filled in). */
  readonly config: unknown;
}

/**
 * A transform step: alias, plugin, config and optional predicate.
 *
 * @example A conditional route
 * ```ts
 * import { buildPipelines, type TransformSpec } from "@sluice/sluice";
 * import { builtinRegistry } from "@sluice/sluice/builtins";
 * import assert from "node:assert/strict";
 *
 * const [spec] = await buildPipelines([{
 *   name: "routed",
 *   config: {
 *     "connector.class": "kafka",
 *     topics: "orders",
 *     "sink.class": "kafka",
 *     transforms: "route",
 *     "transforms.route.type": "route",
 *     "transforms.route.regex": "orders",
 *     "transforms.route.replacement": "sales",
 *     "transforms.route.predicate": "isOrders",
 *     predicates: "isOrders",
 *     "predicates.isOrders.type": "topic_name_matches",
 *     "predicates.isOrders.pattern": "orders",
 *   },
 *   baseDir: ".",
 * }], { registry: builtinRegistry(), pluginDefaults: { "bootstrap.servers": "localhost:9092" } });
 * const step: TransformSpec = spec.transforms[0];
 * assert.equal(step.alias, "route");
 * assert.equal(step.predicate?.alias, "isOrders");
 * assert.equal(step.negate, false);
 * ```
 */
export interface TransformSpec extends PluginSpec<TransformPlugin> {
  /** The name given in `transforms`, e.g. `route` for `transforms.route.*`. */
  readonly alias: string;
  /** The predicate that decides whether the step applies, when one is set. */
  readonly predicate?: PluginSpec<PredicatePlugin> & { readonly alias: string };
  /** Apply the step when the predicate does not match instead. */
  readonly negate: boolean;
}

/**
 * A validated pipeline, ready for the runtime.
 *
 * @example What a config turns into
 * ```ts
 * import { buildPipelines, type PipelineSpec } from "@sluice/sluice";
 * import { builtinRegistry } from "@sluice/sluice/builtins";
 * import assert from "node:assert/strict";
 *
 * const specs: PipelineSpec[] = await buildPipelines([{
 *   name: "nightly",
 *   config: {
 *     "connector.class": "postgres_query",
 *     "connection.url": "postgres://localhost/warehouse",
 *     table: "public.orders",
 *     "sink.class": "postgres",
 *     "sink.connection.url": "postgres://localhost/citizen",
 *     "job.schedule": "0 2 * * *",
 *   },
 *   baseDir: ".",
 * }], { registry: builtinRegistry() });
 * assert.equal(specs[0].source.plugin.name, "postgres_query");
 * assert.equal(specs[0].sink.plugin.name, "postgres");
 * assert.equal(specs[0].options["job.schedule"], "0 2 * * *");
 * ```
 */
export interface PipelineSpec {
  /** The pipeline's name, unique in the configuration. */
  readonly name: string;
  /** The file it came from, if any. */
  readonly file?: string;
  /** The source, from `connector.class` and the unprefixed keys. */
  readonly source: PluginSpec<SourcePlugin>;
  /** The transform chain, in `transforms` order. */
  readonly transforms: readonly TransformSpec[];
  /** The sink, from `sink.class` and the `sink.*` keys. */
  readonly sink: PluginSpec<SinkPlugin>;
  /** The runtime's own options, parsed. */
  readonly options: PipelineOptions;
  /**
   * The pipeline this one works on, when its source names one (a
   * reconciliation job): its transforms and sink are that pipeline's.
   */
  readonly subject?: PipelineParts;
}

/**
 * A connector entry as written: `{ name, config }`, plus where it came from.
 *
 * @example An entry built in code rather than read from a file
 * ```ts
 * import type { RawConnector } from "@sluice/sluice";
 *
 * const entry: RawConnector = {
 *   name: "orders_to_kafka",
 *   config: { "connector.class": "kafka", topics: "orders", "sink.class": "kafka" },
 *   baseDir: Deno.cwd(),
 * };
 * ```
 */
export interface RawConnector {
  /** The pipeline's name. */
  readonly name: string;
  /** The dotted Kafka Connect style keys, unresolved and unparsed. */
  readonly config: Record<string, unknown>;
  /** The folder relative paths resolve against. */
  readonly baseDir: string;
  /** The file it was read from, for messages. */
  readonly file?: string;
}

/**
 * Worker-level settings that complete pipeline configs.
 *
 * @example Secrets from somewhere other than the environment
 * ```ts
 * import { buildPipelines, type LoadOptions } from "@sluice/sluice";
 * import { builtinRegistry } from "@sluice/sluice/builtins";
 * import assert from "node:assert/strict";
 *
 * const secrets: Record<string, string> = { WAREHOUSE_URL: "postgres://localhost:5432/warehouse" };
 * const options: LoadOptions = {
 *   registry: builtinRegistry(),
 *   defaultSink: "kafka",
 *   pluginDefaults: { "bootstrap.servers": "localhost:9092" },
 *   providers: { env: (name) => secrets[name], readText: () => "" },
 * };
 * const [spec] = await buildPipelines([{
 *   name: "peek",
 *   config: {
 *     "connector.class": "postgres_query",
 *     "connection.url": "${env:WAREHOUSE_URL}",
 *     table: "public.orders",
 *   },
 *   baseDir: ".",
 * }], options);
 * assert.equal(spec.sink.plugin.name, "kafka");
 * // The source's schema turned its options into its settings object.
 * assert.equal((spec.source.config as { url: string }).url, secrets.WAREHOUSE_URL);
 * ```
 */
export interface LoadOptions {
  /** Where plugin names are looked up. */
  readonly registry: Registry;
  /**
   * Default values for plugin options, applied to any source or sink whose
   * schema has the key (for example `bootstrap.servers` for Kafka plugins).
   */
  readonly pluginDefaults?: Readonly<Record<string, string>>;
  /** The source used when `connector.class` names a sink (Kafka Connect sink connectors). */
  readonly sinkConnectorSource?: string;
  /** The sink used when a source config names no `sink.class`. */
  readonly defaultSink?: string;
  /** Replaces the environment and file system for `${…}` providers (tests). */
  readonly providers?: ProviderSources;
  /**
   * For commands that need names, not secrets (`sluice plan`): a `${…}`
   * reference that cannot be resolved gets a stand-in chosen by its option's
   * name (a URL, a host, a port, a key…) instead of being an error, and is
   * passed to this callback.
   */
  readonly standIn?: (path: string) => void;
}

/**
 * Reads connector entries from files and folders (every `*.json` under a
 * folder, at any depth, in path order; folders starting with "." are
 * skipped). A path that holds no pipeline is a problem: a typo in a path
 * must not start nothing and report success.
 */
export async function readConnectorFiles(paths: readonly string[]): Promise<RawConnector[]> {
  const issues: ConfigIssue[] = [];
  const entries: RawConnector[] = [];
  for (const path of paths) {
    let files: string[];
    let folder = false;
    try {
      folder = (await Deno.stat(path)).isDirectory;
      files = folder ? await jsonFilesUnder(path) : [path];
    } catch (error) {
      issues.push({ path, message: `cannot read: ${(error as Error).message}` });
      continue;
    }
    const before = entries.length;
    let broken = false;
    for (const file of files) {
      try {
        entries.push(...parseConnectors(JSON.parse(await Deno.readTextFile(file)), file));
      } catch (error) {
        broken = true;
        if (error instanceof ConfigError) issues.push(...error.issues);
        else issues.push({ path: file, message: `is not valid JSON: ${(error as Error).message}` });
      }
    }
    if (entries.length === before && !broken) {
      issues.push({
        path,
        message: folder
          ? 'holds no pipeline: no *.json file with { "name", "config" } in it or its subfolders'
          : "holds no pipeline",
      });
    }
  }
  if (issues.length > 0) throw new ConfigError(issues);
  return entries;
}

async function jsonFilesUnder(folder: string): Promise<string[]> {
  const files: string[] = [];
  for await (const entry of Deno.readDir(folder)) {
    if (entry.name.startsWith(".")) continue;
    const path = join(folder, entry.name);
    // Symbolic links are followed for files only, so a link cannot loop.
    if (entry.isDirectory) files.push(...await jsonFilesUnder(path));
    else if (entry.name.endsWith(".json") && (entry.isFile || (await Deno.stat(path)).isFile)) {
      files.push(path);
    }
  }
  return files.sort();
}

/**
 * Accepts one `{ name, config }` object or an array of them, as parsed JSON.
 * Throws a {@linkcode ConfigError} listing every malformed entry.
 *
 * @example One entry, and a malformed one
 * ```ts
 * import { ConfigError, parseConnectors } from "@sluice/sluice";
 * import assert from "node:assert/strict";
 *
 * const [entry] = parseConnectors({ name: "a", config: { "connector.class": "kafka" } });
 * assert.equal(entry.name, "a");
 * assert.throws(
 *   () => parseConnectors([{ name: "", config: {} }, { name: "b" }], "pipelines.json"),
 *   (error) => error instanceof ConfigError && error.issues.length === 2,
 * );
 * ```
 */
export function parseConnectors(json: unknown, file?: string): RawConnector[] {
  const where = file ?? "config";
  const items = Array.isArray(json) ? json : [json];
  const issues: ConfigIssue[] = [];
  const entries: RawConnector[] = [];
  items.forEach((item, index) => {
    const path = Array.isArray(json) ? `${where}[${index}]` : where;
    if (typeof item !== "object" || item === null || Array.isArray(item)) {
      issues.push({ path, message: 'must be an object { "name": …, "config": { … } }' });
      return;
    }
    const { name, config, ...rest } = item as Record<string, unknown>;
    if (typeof name !== "string" || name.trim() === "") {
      issues.push({ path: `${path}.name`, message: "is required and must be a non-empty string" });
    }
    if (typeof config !== "object" || config === null || Array.isArray(config)) {
      issues.push({ path: `${path}.config`, message: "is required and must be an object" });
    }
    for (const key of Object.keys(rest)) {
      issues.push({
        path: `${path}.${key}`,
        message: 'unknown field; expected only "name" and "config"',
      });
    }
    if (
      typeof name === "string" && typeof config === "object" && config && !Array.isArray(config)
    ) {
      entries.push({
        name,
        config: config as Record<string, unknown>,
        baseDir: file ? dirname(resolve(file)) : Deno.cwd(),
        file,
      });
    }
  });
  if (issues.length > 0) throw new ConfigError(issues);
  return entries;
}

/**
 * Validates connector entries into pipeline specs. Throws a
 * {@linkcode ConfigError} listing every problem of every pipeline, before
 * anything connects.
 *
 * @example Every problem at once
 * ```ts
 * import { buildPipelines, ConfigError } from "@sluice/sluice";
 * import { builtinRegistry } from "@sluice/sluice/builtins";
 * import assert from "node:assert/strict";
 *
 * const error = await buildPipelines([{
 *   name: "profile_sync",
 *   config: {
 *     "connector.class": "postgres_query",
 *     "connection.url": "postgres://localhost/warehouse",
 *     table: "public.profile_360",
 *     "chunk.size": "many",
 *     "sink.class": "postgress",
 *   },
 *   baseDir: ".",
 * }], { registry: builtinRegistry() }).catch((error) => error);
 * assert.ok(error instanceof ConfigError);
 * assert.ok(error.issues.some((issue) => issue.path === "profile_sync: config.chunk.size"));
 * assert.ok(error.issues.some((issue) => issue.message.startsWith('unknown sink "postgress"')));
 * ```
 */
export async function buildPipelines(
  connectors: readonly RawConnector[],
  options: LoadOptions,
): Promise<PipelineSpec[]> {
  const issues: ConfigIssue[] = [];
  const specs: PipelineSpec[] = [];
  const seen = new Set<string>();
  for (const connector of connectors) {
    if (seen.has(connector.name)) {
      issues.push({
        path: connector.name,
        message: `the pipeline name "${connector.name}" is used twice; names must be unique`,
      });
      continue;
    }
    seen.add(connector.name);
    const spec = await buildPipeline(
      connector,
      options,
      (path, message) =>
        issues.push({ path: `${connector.name}: ${path}`, message: redactSecrets(message) }),
    );
    if (spec) specs.push(spec);
  }
  const resolved = resolveSubjects(specs, new Set(connectors.map((c) => c.name)), issues);
  checkDependencies(resolved, new Set(connectors.map((c) => c.name)), issues);
  if (issues.length > 0) throw new ConfigError(issues);
  return resolved;
}

/** Stands in for the sink of a job that takes its subject's sink, until subjects are resolved. */
const SUBJECT_SINK = { reference: "(subject)", plugin: undefined as never, config: undefined };

/**
 * Gives each job whose source names a subject pipeline (a reconciliation)
 * that pipeline's transforms and sink, and its parts as `subject`.
 */
function resolveSubjects(
  specs: readonly PipelineSpec[],
  allNames: ReadonlySet<string>,
  issues: ConfigIssue[],
): PipelineSpec[] {
  const byName = new Map(specs.map((spec) => [spec.name, spec]));
  return specs.map((spec) => {
    const name = spec.source.plugin.subject?.(spec.source.config);
    if (name === undefined) return spec;
    const other = byName.get(name);
    if (!other && allNames.has(name)) return spec; // invalid itself, reported already
    const problem = !other
      ? `names "${name}", which is not a pipeline in this configuration`
      : other.source.plugin.mode !== "batch"
      ? `names "${name}", a stream pipeline; only batch pipelines can be checked`
      : other.subject !== undefined || other.source.plugin.subject
      ? `names "${name}", which works on another pipeline itself`
      : undefined;
    if (problem || !other) {
      issues.push({ path: `${spec.name}: config.pipeline`, message: problem ?? "" });
      return spec;
    }
    const subject: PipelineParts = {
      name: other.name,
      source: other.source,
      transforms: other.transforms,
      sink: other.sink,
    };
    const unfit = spec.source.plugin.subjectProblem?.(subject);
    if (unfit) {
      issues.push({ path: `${spec.name}: config.pipeline`, message: `names "${name}": ${unfit}` });
      return spec;
    }
    return { ...spec, transforms: other.transforms, sink: other.sink, subject };
  });
}

type Report = (path: string, message: string) => void;

async function buildPipeline(
  connector: RawConnector,
  options: LoadOptions,
  report: Report,
): Promise<PipelineSpec | undefined> {
  const before = { count: 0 };
  // A key whose placeholder did not resolve is reported once, by the provider.
  const unresolved = new Set<string>();
  const counted: Report = (path, message) => {
    if (unresolved.has(path)) return;
    before.count++;
    report(path, message);
  };
  const config = resolveValues(connector, options.providers, (path, message) => {
    counted(path, message);
    unresolved.add(path);
  }, options.standIn);
  if (config.name !== undefined && config.name !== connector.name) {
    counted("config.name", `must equal the connector name "${connector.name}" when given`);
  }
  delete config.name;

  const groups = groupKeys(config);
  // A registry may hold plugins it imports on first use: load those this
  // config names, and the implicit ends (see assignEnds) only when it gets
  // them: a pipeline with its own sink should not load the Kafka client.
  await Promise.all([
    options.registry.loadNamed(Object.values(config)),
    ...implicitEnds(groups, options).map(([kind, name]) => options.registry.load(kind, name)),
  ]);
  const runtime = parseWith(pipelineOptions, groups.runtime, "config.", counted);

  const { source, sink } = await resolveEnds(connector, groups, options, counted);
  const transforms = await resolveTransforms(connector, groups, options.registry, counted);
  if (source?.plugin.subject && transforms && transforms.length > 0) {
    counted(
      "config.transforms",
      `"${source.plugin.name}" runs the transforms of the pipeline it names; remove transforms`,
    );
  }

  // Checked even when the source's or the other runtime options failed, so
  // one run names every problem.
  const schedule = runtime?.["job.schedule"] ??
    (typeof groups.runtime["job.schedule"] === "string" ? groups.runtime["job.schedule"] : "");
  if (source && schedule && source.plugin.mode === "stream") {
    counted(
      "config.job.schedule",
      `applies only to batch sources; "${source.reference}" is a stream source`,
    );
  }
  if (schedule) checkCron(schedule, counted);
  if (before.count > 0 || !source || !sink || !runtime || !transforms) return undefined;
  return {
    name: connector.name,
    file: connector.file,
    source,
    sink,
    transforms,
    options: runtime,
  };
}

function resolveValues(
  connector: RawConnector,
  providers: ProviderSources | undefined,
  report: Report,
  standIn?: (path: string) => void,
): Record<string, unknown> {
  const resolved: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(connector.config)) {
    if (typeof value !== "string") {
      resolved[key] = value;
      continue;
    }
    let missing = false;
    resolved[key] = resolvePlaceholders(
      value,
      connector.baseDir,
      (message) => standIn ? missing = true : report(`config.${key}`, message),
      providers,
    );
    if (missing) {
      standIn!(`${connector.name}: config.${key}`);
      resolved[key] = standInValue(key);
    }
  }
  return resolved;
}

/** A value that passes the option's checks, for a reference `plan` cannot resolve. */
function standInValue(key: string): string {
  if (/(^|\.)url$/.test(key)) return "postgres://unresolved@unresolved.invalid:5432/unresolved";
  if (/hostname$/.test(key)) return "unresolved.invalid";
  if (/port$/.test(key)) return "5432";
  if (/bootstrap\.servers$/.test(key)) return "unresolved.invalid:9092";
  // hmac keys (32+ bytes) and fpe keys (hex AES) both accept 64 hex digits.
  if (/(^|\.)(key|salt|password|token|secret)$/.test(key)) return "0".repeat(64);
  return "unresolved";
}

interface KeyGroups {
  connectorClass?: unknown;
  sinkClass?: unknown;
  runtime: Record<string, unknown>;
  source: Record<string, unknown>;
  sink: Record<string, unknown>;
  transforms: Record<string, unknown>;
  predicates: Record<string, unknown>;
  converters: Record<string, unknown>;
}

const RUNTIME_PREFIXES = ["errors.", "job."];
const RUNTIME_KEYS = new Set(["offset.storage", "queue.max.batches", "tasks.max"]);

function groupKeys(config: Record<string, unknown>): KeyGroups {
  const groups: KeyGroups = {
    runtime: {},
    source: {},
    sink: {},
    transforms: {},
    predicates: {},
    converters: {},
  };
  for (const [key, value] of Object.entries(config)) {
    if (key === "connector.class") groups.connectorClass = value;
    else if (key === "sink.class" || key === "sink.connector.class") groups.sinkClass = value;
    else if (isConverterKey(key)) groups.converters[key] = value;
    else if (RUNTIME_KEYS.has(key) || RUNTIME_PREFIXES.some((p) => key.startsWith(p))) {
      groups.runtime[key] = value;
    } else if (key.startsWith("sink.")) groups.sink[key.slice(5)] = value;
    else if (key === "transforms" || key.startsWith("transforms.")) groups.transforms[key] = value;
    else if (key === "predicates" || key.startsWith("predicates.")) groups.predicates[key] = value;
    else groups.source[key] = value;
  }
  return groups;
}

/** Which plugin each end names, with its keys and the path its keys are reported under. */
interface Ends {
  sourceName: string;
  sourceKeys: Record<string, unknown>;
  sourcePath: string;
  sinkName?: string;
  sinkKeys: Record<string, unknown>;
  sinkPath: string;
}

/** The plugins a config gets without naming them: the Kafka source of a sink connector, the default sink. */
function implicitEnds(groups: KeyGroups, options: LoadOptions): ["source" | "sink", string][] {
  if (typeof groups.sinkClass === "string" || typeof groups.connectorClass !== "string") return [];
  const { registry, sinkConnectorSource, defaultSink } = options;
  const namesSink = !registry.has("source", groups.connectorClass) &&
    registry.has("sink", groups.connectorClass);
  if (namesSink && sinkConnectorSource) return [["source", sinkConnectorSource]];
  return defaultSink ? [["sink", defaultSink]] : [];
}

/** Splits the keys between the ends, as Kafka Connect reads sink and source connectors. */
function assignEnds(connectorClass: string, groups: KeyGroups, options: LoadOptions): Ends {
  const { registry } = options;
  const shapeOf = (kind: "source" | "sink", name: string) => {
    const plugin = registry.find(kind, name);
    return plugin ? objectShape(plugin.config) ?? {} : {};
  };
  const ends: Ends = {
    sourceName: connectorClass,
    sourceKeys: groups.source,
    sourcePath: "config.",
    sinkName: typeof groups.sinkClass === "string" ? groups.sinkClass : undefined,
    sinkKeys: groups.sink,
    sinkPath: "config.sink.",
  };
  // A Kafka Connect *sink* connector: it reads topics, and its options are unprefixed.
  const namesSink = registry.find("source", connectorClass) === undefined &&
    registry.find("sink", connectorClass) !== undefined;
  if (namesSink && options.sinkConnectorSource && ends.sinkName === undefined) {
    ends.sinkName = connectorClass;
    ends.sourceName = options.sinkConnectorSource;
    const sourceShape = shapeOf("source", ends.sourceName);
    ends.sourceKeys = {};
    ends.sinkKeys = { ...groups.sink };
    for (const [key, value] of Object.entries(groups.source)) {
      if (key in sourceShape) ends.sourceKeys[key] = value;
      else ends.sinkKeys[key] = value;
    }
    ends.sinkPath = "config.";
  }
  if (ends.sinkName === undefined && options.defaultSink) {
    // A source connector writing to the worker's Kafka, as in Kafka Connect:
    // unprefixed keys only the default sink knows (topic.creation.*) are its.
    ends.sinkName = options.defaultSink;
    const sinkShape = shapeOf("sink", ends.sinkName);
    const sourceShape = shapeOf("source", ends.sourceName);
    ends.sourceKeys = { ...ends.sourceKeys };
    ends.sinkKeys = { ...ends.sinkKeys };
    for (const key of Object.keys(ends.sourceKeys)) {
      if (key in sinkShape && !(key in sourceShape)) {
        ends.sinkKeys[key] = ends.sourceKeys[key];
        delete ends.sourceKeys[key];
      }
    }
  }
  assignConverterKeys(ends, groups.converters, shapeOf);
  return ends;
}

/** Converter keys go to the sink when it declares them, else to the source, else nowhere. */
function assignConverterKeys(
  ends: Ends,
  converters: Record<string, unknown>,
  shapeOf: (kind: "source" | "sink", name: string) => Record<string, unknown>,
): void {
  if (Object.keys(converters).length === 0) return;
  const sinkShape = ends.sinkName === undefined ? {} : shapeOf("sink", ends.sinkName);
  const sourceShape = shapeOf("source", ends.sourceName);
  ends.sourceKeys = { ...ends.sourceKeys };
  ends.sinkKeys = { ...ends.sinkKeys };
  for (const [key, value] of Object.entries(converters)) {
    if (key in sinkShape) {
      if (!(key in ends.sinkKeys)) ends.sinkKeys[key] = value;
    } else if (key in sourceShape && !(key in ends.sourceKeys)) ends.sourceKeys[key] = value;
  }
}

async function resolveEnds(
  connector: RawConnector,
  groups: KeyGroups,
  options: LoadOptions,
  report: Report,
): Promise<{ source?: PluginSpec<SourcePlugin>; sink?: PluginSpec<SinkPlugin> }> {
  const { registry } = options;
  if (typeof groups.connectorClass !== "string" || groups.connectorClass === "") {
    report("config.connector.class", "is required: name a source plugin (see `sluice plugins`)");
    return {};
  }
  const { sourceName, sourceKeys, sourcePath, sinkName, sinkKeys, sinkPath } = assignEnds(
    groups.connectorClass,
    groups,
    options,
  );
  const sourcePlugin = await registry.resolve("source", sourceName, connector.baseDir);
  let source: PluginSpec<SourcePlugin> | undefined;
  if (typeof sourcePlugin === "string") {
    report("config.connector.class", withSuggestion(sourcePlugin, sourceName, registry, "source"));
  } else {
    // A sink option written without its "sink." prefix lands on the source:
    // its hint names the sink's key ("delete.mode" → "sink.delete.mode").
    const sinkHints = sourcePath === "config." && sinkPath !== sourcePath && sinkName
      ? await optionKeys(registry, sinkName, connector.baseDir, sinkPath)
      : [];
    const config = parseWith(
      sourcePlugin.config,
      withDefaults(sourceKeys, sourcePlugin, options.pluginDefaults),
      sourcePath,
      report,
      `source "${sourcePlugin.name}"`,
      sourcePath === "config."
        ? [...Object.keys(objectShape(pipelineOptions) ?? {}), ...sinkHints]
        : [],
    );
    if (config !== undefined) source = { reference: sourceName, plugin: sourcePlugin, config };
  }

  if (typeof sourcePlugin !== "string" && sourcePlugin.subject) {
    // A job on another pipeline (a reconciliation) writes with that pipeline's sink.
    const own = typeof groups.sinkClass === "string" ? ["sink.class"] : [];
    own.push(...Object.keys(groups.sink).map((key) => `sink.${key}`));
    if (own.length > 0) {
      report(
        `config.${own[0]}`,
        `"${sourcePlugin.name}" uses the sink of the pipeline it names; remove ${own.join(", ")}`,
      );
    }
    return { source, sink: source ? SUBJECT_SINK : undefined };
  }

  // An unknown source with a defaulted sink: its keys cannot be told apart
  // from the sink's, so the sink's errors would only mislead.
  if (typeof sourcePlugin === "string" && groups.sinkClass === undefined) return { source };
  if (sinkName === undefined) {
    report("config.sink.class", "is required: name a sink plugin (see `sluice plugins`)");
    return { source };
  }
  const sinkPlugin = await registry.resolve("sink", sinkName, connector.baseDir);
  let sink: PluginSpec<SinkPlugin> | undefined;
  if (typeof sinkPlugin === "string") {
    const key = sinkPath === "config." ? "config.connector.class" : "config.sink.class";
    report(key, withSuggestion(sinkPlugin, sinkName, registry, "sink"));
  } else {
    const config = parseWith(
      sinkPlugin.config,
      withDefaults(sinkKeys, sinkPlugin, options.pluginDefaults),
      sinkPath,
      report,
      `sink "${sinkPlugin.name}"`,
    );
    if (config !== undefined) sink = { reference: sinkName, plugin: sinkPlugin, config };
  }
  return { source, sink };
}

/** The option keys of sink `name` as written in a config (`sink.delete.mode`); none if unknown. */
async function optionKeys(
  registry: Registry,
  name: string,
  baseDir: string,
  path: string,
): Promise<string[]> {
  const plugin = await registry.resolve("sink", name, baseDir);
  if (typeof plugin === "string") return [];
  const written = path.replace(/^config\./, "");
  return Object.keys(objectShape(plugin.config) ?? {}).map((key) => written + key);
}

function withDefaults(
  keys: Record<string, unknown>,
  plugin: Plugin,
  defaults: Readonly<Record<string, string>> | undefined,
): Record<string, unknown> {
  if (!defaults) return keys;
  const shape = objectShape(plugin.config) ?? {};
  const merged = { ...keys };
  for (const [key, value] of Object.entries(defaults)) {
    if (key in shape && merged[key] === undefined) merged[key] = value;
  }
  return merged;
}

async function resolveTransforms(
  connector: RawConnector,
  groups: KeyGroups,
  registry: Registry,
  report: Report,
): Promise<TransformSpec[] | undefined> {
  let failed = false;
  const fail: Report = (path, message) => {
    failed = true;
    report(path, message);
  };
  const predicates = new Map<string, PluginSpec<PredicatePlugin> & { alias: string }>();
  const predicateAliases = aliasesOf(groups.predicates, "predicates", fail);
  for (const alias of predicateAliases) {
    const spec = await resolveStep(
      connector,
      groups.predicates,
      "predicates",
      alias,
      "predicate",
      registry,
      fail,
    );
    if (spec) predicates.set(alias, { ...spec, alias });
  }

  const steps: TransformSpec[] = [];
  const aliases = aliasesOf(groups.transforms, "transforms", fail);
  for (const alias of aliases) {
    const prefix = `transforms.${alias}.`;
    const own = { ...groups.transforms };
    const predicateName = own[`${prefix}predicate`];
    const negateValue = own[`${prefix}negate`];
    delete own[`${prefix}predicate`];
    delete own[`${prefix}negate`];
    const spec = await resolveStep(
      connector,
      own,
      "transforms",
      alias,
      "transform",
      registry,
      fail,
    );
    let predicate: (PluginSpec<PredicatePlugin> & { alias: string }) | undefined;
    if (predicateName !== undefined) {
      predicate = predicates.get(String(predicateName));
      if (!predicate && !predicateAliases.includes(String(predicateName))) {
        fail(
          `config.${prefix}predicate`,
          `names predicate "${predicateName}", which is not listed in "predicates"`,
        );
      }
    }
    const negate = boolean().safeParse(negateValue ?? false);
    if (!negate.success) {
      fail(
        `config.${prefix}negate`,
        `expected "true" or "false": current value is ${show(negateValue)}`,
      );
    }
    if (spec && negate.success) steps.push({ ...spec, alias, predicate, negate: negate.data });
  }
  return failed ? undefined : steps;
}

function aliasesOf(keys: Record<string, unknown>, group: string, report: Report): string[] {
  const declared = keys[group];
  const aliases = declared === undefined ? [] : list().safeParse(declared);
  const names = Array.isArray(aliases) ? aliases : aliases.success ? aliases.data : [];
  if (!Array.isArray(aliases) && !aliases.success) {
    report(
      `config.${group}`,
      `must be a comma-separated list of aliases: current value is ${show(declared)}`,
    );
  }
  const seen = new Set<string>();
  for (const name of names) {
    if (seen.has(name)) {
      report(
        `config.${group}`,
        `lists the alias "${name}" more than once; aliases must be unique: current value is ${
          show(declared)
        }`,
      );
    }
    seen.add(name);
  }
  for (const key of Object.keys(keys)) {
    if (key === group) continue;
    const alias = key.slice(group.length + 1).split(".")[0];
    if (!names.includes(alias)) {
      report(`config.${key}`, `configures "${alias}", which is not listed in "${group}"`);
    }
  }
  return [...seen];
}

async function resolveStep<K extends "transform" | "predicate">(
  connector: RawConnector,
  keys: Record<string, unknown>,
  group: string,
  alias: string,
  kind: K,
  registry: Registry,
  report: Report,
): Promise<PluginSpec<Extract<Plugin, { kind: K }>> | undefined> {
  const prefix = `${group}.${alias}.`;
  const type = keys[`${prefix}type`];
  if (typeof type !== "string" || type === "") {
    report(`config.${prefix}type`, `is required: name a ${kind} plugin (see \`sluice plugins\`)`);
    return undefined;
  }
  const plugin = await registry.resolve(kind, type, connector.baseDir);
  if (typeof plugin === "string") {
    report(`config.${prefix}type`, withSuggestion(plugin, type, registry, kind));
    return undefined;
  }
  const own: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(keys)) {
    if (key.startsWith(prefix) && key !== `${prefix}type`) own[key.slice(prefix.length)] = value;
  }
  const found: Plugin = plugin;
  const config = parseWith(
    found.config,
    own,
    `config.${prefix}`,
    report,
    `${kind} "${found.name}"`,
  );
  return config === undefined ? undefined : { reference: type, plugin, config };
}

/**
 * Options of Kafka Connect's and Debezium's JDBC sinks that Sluice spells
 * otherwise, with what to write instead (`%s`: the key prefix as written,
 * such as `sink.`): people bring their connector JSON along.
 */
const FOREIGN_OPTIONS: Record<string, string> = {
  "pk.mode": 'upserts are keyed by the target\'s primary key, or by "%sprimary.key.fields"',
  "primary.key.mode":
    'upserts are keyed by the target\'s primary key, or by "%sprimary.key.fields"',
  "pk.fields": 'write "%sprimary.key.fields"',
  "delete.enabled": 'deletes follow "%sdelete.mode": "soft" (the default), "hard" or "none"',
  "quote.identifiers": "identifiers are always quoted",
  "quote.sql.identifiers": "identifiers are always quoted",
};

/** Parses `input` with `schema`, reporting each issue under `pathPrefix`. */
function parseWith<T extends z.ZodType>(
  schema: T,
  input: Record<string, unknown>,
  pathPrefix: string,
  report: Report,
  owner = "the pipeline",
  alsoKnown: readonly string[] = [],
): z.output<T> | undefined {
  const result = schema.safeParse(input, { reportInput: true });
  if (result.success) return result.data;
  const shape = objectShape(schema) ?? {};
  // Hints name the key as the user writes it ("sink.table", not "table").
  const written = pathPrefix.replace(/^config\./, "");
  const candidates = [...Object.keys(shape).map((key) => written + key), ...alsoKnown];
  const unknown = new Set<string>();
  for (const issue of result.error.issues) {
    if (issue.code === "unrecognized_keys") {
      for (const key of issue.keys) {
        unknown.add(key);
        const hint = closestKey(written + key, candidates);
        const foreign = FOREIGN_OPTIONS[key]?.replaceAll("%s", written);
        report(
          `${pathPrefix}${key}`,
          `is not an option of ${owner}` +
            (hint ? ` (did you mean "${hint}"?)` : foreign ? ` (${foreign})` : ""),
        );
      }
      continue;
    }
    const key = issue.path.map(String).join(".");
    const hidden = isSecretOption(key) ? { ...issue, input: "(hidden)" } : issue;
    report(`${pathPrefix}${key}`.replace(/\.$/, ""), describeIssue(hidden as z.core.$ZodIssue));
  }
  // A schema that takes extra keys (mask's fields.<name>.<option>) stops at a
  // missing required option before it can judge them: a key that is a typo
  // of a missing one is named too, so "feilds" is not left unexplained.
  const missing = result.error.issues.filter((issue) =>
    issue.path.length === 1 && (issue as { input?: unknown }).input === undefined
  ).map((issue) => String(issue.path[0]));
  for (const key of Object.keys(input)) {
    if (key in shape || unknown.has(key)) continue;
    const hint = closest(key, missing);
    if (hint) {
      report(
        `${pathPrefix}${key}`,
        `is not an option of ${owner} (did you mean "${written}${hint}"?)`,
      );
    }
  }
  return undefined;
}

/** One zod issue as a plain sentence that quotes the bad value. */
export function describeIssue(issue: z.core.$ZodIssue): string {
  const input = (issue as { input?: unknown }).input;
  switch (issue.code) {
    case "invalid_type":
      if (input === undefined) return "is required";
      return `expected ${issue.expected}: current value is ${show(input)}`;
    case "invalid_value":
      return `must be one of ${
        issue.values.map((v) => JSON.stringify(v)).join(", ")
      }: current value is ${show(input)}`;
    case "invalid_union": {
      if (input === undefined) return "is required";
      const branches = issue.errors.flat();
      const telling = branches.find((b) => b.code !== "invalid_type") ?? branches[0];
      if (!telling) return `${issue.message}: current value is ${show(input)}`;
      const inner = describeIssue({ ...telling, input } as z.core.$ZodIssue);
      return inner;
    }
    default:
      return input === undefined
        ? issue.message
        : `${issue.message}: current value is ${show(input)}`;
  }
}

function show(value: unknown): string {
  if (value === "(hidden)") return "(hidden)";
  return typeof value === "string" ? JSON.stringify(value) : String(JSON.stringify(value) ?? value);
}

function withSuggestion(message: string, name: string, registry: Registry, kind: PluginKind) {
  if (!message.startsWith("unknown")) return message;
  const names = registry.namesAndAliases(kind);
  const hint = closest(name, names);
  const elsewhere = registry.kindsOf(name).filter((k) => k !== kind);
  let text = message;
  if (hint) text += ` (did you mean "${hint}"?)`;
  if (elsewhere.length > 0) text += `; "${name}" is a ${elsewhere.join(" and ")}`;
  return text;
}

/**
 * The known key a misspelt one most likely meant: the closest by edit
 * distance, else one it is the last part of ("schedule" → "job.schedule").
 */
function closestKey(key: string, candidates: readonly string[]): string | undefined {
  return closest(key, candidates) ?? candidates.find((candidate) => candidate.endsWith(`.${key}`));
}

const CRON_FIELD = /^(\*|\d+(-\d+)?)(\/\d+)?(,(\*|\d+(-\d+)?)(\/\d+)?)*$/;

function checkCron(schedule: string, report: Report): void {
  const fields = schedule.trim().split(/\s+/);
  const count = fields.length;
  if ((count !== 5 && count !== 6) || !fields.every((field) => CRON_FIELD.test(field))) {
    report(
      "config.job.schedule",
      `must be a 5-field cron expression in UTC such as "0 0 * * *" (or 6 fields, seconds first): current value is ${
        show(schedule)
      }`,
    );
    return;
  }
  const problem = scheduleProblem(schedule);
  if (problem) {
    report(
      "config.job.schedule",
      `is not a valid cron expression (${
        problem.replace(/^CronPattern:\s*/, "").replace(/^\w/, (c) => c.toLowerCase())
      }): current value is ${show(schedule)}`,
    );
  }
}

function checkDependencies(
  specs: readonly PipelineSpec[],
  allNames: ReadonlySet<string>,
  issues: ConfigIssue[],
): void {
  const byName = new Map(specs.map((spec) => [spec.name, spec]));
  for (const spec of specs) {
    for (const upstream of spec.options["job.depends.on"]) {
      const other = byName.get(upstream);
      if (!other && allNames.has(upstream)) continue; // invalid itself, reported already
      if (!other) {
        issues.push({
          path: `${spec.name}: config.job.depends.on`,
          message: `names "${upstream}", which is not a pipeline in this configuration`,
        });
      } else if (other.source.plugin.mode !== "batch" || spec.source.plugin.mode !== "batch") {
        issues.push({
          path: `${spec.name}: config.job.depends.on`,
          message: `"${upstream}" and "${spec.name}" must both be batch jobs`,
        });
      }
    }
  }
  // Cycles: depth-first search over depends.on edges.
  const state = new Map<string, "visiting" | "done">();
  const visit = (name: string, trail: string[]): void => {
    if (state.get(name) === "done") return;
    if (state.get(name) === "visiting") {
      const cycle = [...trail.slice(trail.indexOf(name)), name].join(" -> ");
      issues.push({ path: `${name}: config.job.depends.on`, message: `forms a cycle: ${cycle}` });
      return;
    }
    state.set(name, "visiting");
    for (const upstream of byName.get(name)?.options["job.depends.on"] ?? []) {
      if (byName.has(upstream)) visit(upstream, [...trail, name]);
    }
    state.set(name, "done");
  };
  for (const spec of specs) visit(spec.name, []);
}

/**
 * Reads, resolves and validates config files and folders in one step. A
 * folder contributes every `*.json` file in it, in name order.
 *
 * @example Loading a folder of configs
 * ```ts
 * import { loadPipelines } from "@sluice/sluice";
 * import { builtinRegistry } from "@sluice/sluice/builtins";
 * import assert from "node:assert/strict";
 *
 * const folder = await Deno.makeTempDir();
 * await Deno.writeTextFile(`${folder}/orders.json`, JSON.stringify({
 *   name: "orders",
 *   config: { "connector.class": "kafka", topics: "orders", "sink.class": "kafka" },
 * }));
 * const specs = await loadPipelines([folder], {
 *   registry: builtinRegistry(),
 *   pluginDefaults: { "bootstrap.servers": "localhost:9092" },
 * });
 * assert.deepEqual(specs.map((spec) => spec.file), [`${folder}/orders.json`]);
 * await Deno.remove(folder, { recursive: true });
 * ```
 */
export async function loadPipelines(
  paths: readonly string[],
  options: LoadOptions,
): Promise<PipelineSpec[]> {
  return buildPipelines(await readConnectorFiles(paths), options);
}
