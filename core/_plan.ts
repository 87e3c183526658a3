/**
 * `sluice plan`: for every captured table, the topic its records end in after
 * the pipeline's transforms, and the pipelines that consume that topic. Also
 * lists subscriptions that nothing produces, so a routing mistake (a regex
 * that matches only some schemas) shows before anything runs.
 *
 * Plugins describe themselves through their optional `plan` hooks; the
 * transform chain is applied to a key-less, value-less probe record, so
 * routing transforms rename its topic and the others let it pass.
 *
 * @module
 */
import type { PipelineSpec } from "./config.ts";
import type { PluginContext, SourcePlan } from "../api/plugin.ts";
import type { SluiceRecord } from "../api/record.ts";
import { getLogger } from "@logtape/logtape";

/** One captured table and where its records go. */
export interface PlanRoute {
  readonly pipeline: string;
  readonly table: string;
  /** The topic after the pipeline's transforms (null when a transform drops it). */
  readonly topic: string | null;
  /** For a direct pipeline, its sink; else the consumers of the topic. */
  readonly consumers: readonly string[];
}

/** One batch job: when it runs, what it reads and where it writes. */
export interface PlanJob {
  readonly pipeline: string;
  /** The cron schedule (UTC), or null when it runs once at start. */
  readonly schedule: string | null;
  readonly reads: string;
  readonly writes: string;
  /** Jobs it waits for (`job.depends.on`). */
  readonly after: readonly string[];
}

/** The whole picture. */
export interface Plan {
  readonly routes: readonly PlanRoute[];
  readonly jobs: readonly PlanJob[];
  /** Subscriptions no pipeline produces: `pipeline: topics`. */
  readonly orphans: readonly string[];
}

/** Builds the plan of a set of validated pipelines. */
export async function buildPlan(specs: readonly PipelineSpec[]): Promise<Plan> {
  const subscriptions = specs.map((spec) => ({
    spec,
    plan: spec.source.plugin.plan?.(spec.source.config as never) ?? {},
  })).filter((entry) => entry.plan.subscribes);
  // A sink named by `${topic}` (table.name.format) writes where the record's
  // topic, after the consuming pipeline's own transforms, points.
  const destination = async (spec: PipelineSpec, topic: string | null, routed: boolean) => {
    let described = spec.sink.plugin.plan?.(spec.sink.config as never)?.destination;
    if (described?.includes("${topic}") && topic !== null) {
      const final = routed ? topic : await routeTopic(spec, topic);
      if (final !== null) described = described.replaceAll("${topic}", final);
    }
    return `${spec.name} -> ${described ?? spec.sink.plugin.name}`;
  };
  const routes: PlanRoute[] = [];
  const produced = new Set<string>();
  for (const spec of specs) {
    const plan: SourcePlan = spec.source.plugin.plan?.(spec.source.config as never) ?? {};
    for (const capture of plan.captures ?? []) {
      const topic = await routeTopic(spec, capture.topic);
      const writesTopics = spec.sink.plugin.plan?.(spec.sink.config as never)?.writesTopics ??
        false;
      let consumers: string[];
      if (topic === null) consumers = [];
      else if (!writesTopics) consumers = [await destination(spec, topic, true)];
      else {
        produced.add(topic);
        consumers = await Promise.all(
          subscriptions.filter(({ plan }) => matches(plan, topic))
            .map(({ spec }) => destination(spec, topic, false)),
        );
      }
      routes.push({ pipeline: spec.name, table: capture.table, topic, consumers });
    }
  }
  const orphans: string[] = [];
  for (const { spec, plan } of subscriptions) {
    const wanted = plan.subscribes!.topics ?? [];
    const missing = wanted.filter((topic) => !produced.has(topic));
    if (missing.length > 0) orphans.push(`${spec.name}: ${missing.join(", ")}`);
    if (plan.subscribes!.pattern && ![...produced].some((t) => matches(plan, t))) {
      orphans.push(`${spec.name}: /${plan.subscribes!.pattern}/`);
    }
  }
  const jobs = specs.filter((spec) => spec.source.plugin.mode === "batch").map((spec) => ({
    pipeline: spec.name,
    schedule: spec.options["job.schedule"] ?? null,
    reads: spec.source.plugin.plan?.(spec.source.config as never)?.reads ??
      spec.source.plugin.name,
    writes: spec.sink.plugin.plan?.(spec.sink.config as never)?.destination ??
      spec.sink.plugin.name,
    after: spec.options["job.depends.on"],
  }));
  return { routes, jobs, orphans };
}

function matches(plan: SourcePlan, topic: string): boolean {
  const subscribes = plan.subscribes;
  if (!subscribes) return false;
  if (subscribes.topics?.includes(topic)) return true;
  return subscribes.pattern !== undefined && new RegExp(`^(?:${subscribes.pattern})$`).test(topic);
}

/**
 * Passes a probe record through the pipeline's transforms; returns its
 * final topic. `applied` collects the aliases of the steps it went through
 * (whose predicate let it in).
 */
async function routeTopic(
  spec: PipelineSpec,
  topic: string,
  applied?: Set<string>,
): Promise<string | null> {
  let record: SluiceRecord | null = { topic, key: null, value: null };
  const context: PluginContext = {
    pipeline: spec.name,
    logger: getLogger(["sluice", "plan"]),
    signal: new AbortController().signal,
  };
  for (const step of spec.transforms) {
    if (!record) return null;
    if (step.predicate) {
      const predicate = step.predicate.plugin.create(step.predicate.config, context);
      if (predicate(record) === step.negate) continue;
    }
    applied?.add(step.alias);
    const transform = await step.plugin.create(step.config, context);
    try {
      record = await transform.apply(record);
    } catch {
      // A transform that needs a value (a mask, a cast) leaves the topic alone.
    } finally {
      await transform.close?.();
    }
  }
  return record?.topic ?? null;
}

/**
 * Problems the sinks report for the topics the sources' plans name, after
 * each pipeline's transforms (a direct CDC pipeline whose target table
 * cannot be derived from its topics, say), as config issues.
 */
export async function routeProblems(
  specs: readonly PipelineSpec[],
): Promise<{ path: string; message: string }[]> {
  const problems: { path: string; message: string }[] = [];
  for (const spec of specs) {
    const sinkPlan = spec.sink.plugin.plan?.(spec.sink.config as never);
    if (!sinkPlan?.topicProblem && !sinkPlan?.topicsProblem) continue;
    const plan: SourcePlan = spec.source.plugin.plan?.(spec.source.config as never) ?? {};
    const topics = new Set<string>();
    for (const capture of plan.captures ?? []) {
      const topic = await routeTopic(spec, capture.topic);
      if (topic === null || topics.has(topic)) continue;
      topics.add(topic);
      const message = sinkPlan.topicProblem?.(topic);
      if (message) problems.push({ path: `${spec.name}: config.sink`, message });
    }
    for (const subscribed of plan.subscribes?.topics ?? []) {
      const topic = await routeTopic(spec, subscribed);
      if (topic !== null) topics.add(topic);
    }
    const message = sinkPlan.topicsProblem?.([...topics]);
    if (message) problems.push({ path: `${spec.name}: config.sink`, message });
  }
  return problems;
}

/** Pipelines whose sources claim one exclusive resource (see `SourcePlan.exclusive`), as config issues. */
export function sharedResourceProblems(
  specs: readonly PipelineSpec[],
): { path: string; message: string }[] {
  const owners = new Map<string, string>();
  const problems: { path: string; message: string }[] = [];
  for (const spec of specs) {
    const plan: SourcePlan = spec.source.plugin.plan?.(spec.source.config as never) ?? {};
    for (const resource of new Set(plan.exclusive ?? [])) {
      const owner = owners.get(resource);
      if (owner === undefined) {
        owners.set(resource, spec.name);
        continue;
      }
      problems.push({
        path: `${spec.name}: config.source`,
        message: `uses ${resource}, which pipeline "${owner}" uses too: only one pipeline ` +
          `may, so give each its own`,
      });
    }
  }
  return problems;
}

/** The sources' warnings about valid but probably unmeant settings, by pipeline. */
export function configWarnings(specs: readonly PipelineSpec[]): Promise<string[]> {
  const warnings: string[] = [];
  for (const spec of specs) {
    for (
      const warning of [
        ...(spec.source.plugin.plan?.(spec.source.config as never)?.warnings ?? []),
        ...clearDeadLetterWarnings(spec),
        ...clearWatermarkWarnings(spec),
      ]
    ) warnings.push(`${spec.name}: ${warning}`);
  }
  return Promise.resolve(warnings);
}

/**
 * Steps that hide data (a mask) behind a predicate that holds for none of
 * the topics the source's records carry (followed through the steps before
 * it, a route among them), as config issues: such a step hides nothing, and
 * what it was meant to hide would pass in clear. Often a typo in the topic
 * pattern. Checked only where the config tells every topic.
 */
export async function idleMaskProblems(
  specs: readonly PipelineSpec[],
): Promise<{ path: string; message: string }[]> {
  const problems: { path: string; message: string }[] = [];
  for (const spec of specs) {
    const guarded = spec.transforms.filter((step) => step.plugin.hidesData && step.predicate);
    if (guarded.length === 0) continue;
    const topics = spec.source.plugin.plan?.(spec.source.config as never)?.emits;
    if (!topics?.length) continue;
    const applied = new Set<string>();
    for (const topic of topics) await routeTopic(spec, topic, applied);
    const shown = topics.slice(0, 5).join(", ") + (topics.length > 5 ? ", …" : "");
    for (const step of guarded.filter((step) => !applied.has(step.alias))) {
      problems.push({
        path: `${spec.name}: config.transforms.${step.alias}.predicate`,
        message: `names predicate "${step.predicate!.alias}", which ` +
          `${step.negate ? "holds for all" : "holds for none"} of the pipeline's topics ` +
          `(${shown}, through the steps before it): this ${step.plugin.name} would hide ` +
          `nothing and its fields would pass in clear; fix the predicate's pattern, or remove ` +
          `the predicate to apply it to every record`,
      });
    }
  }
  return problems;
}

/**
 * A record that fails in a masking step is dead-lettered in clear (that is
 * what can be repaired and replayed); a dead-letter table lives in the
 * sink's database, and a dead-letter topic is on the broker every consumer
 * reads: both past the masking.
 */
function clearDeadLetterWarnings(spec: PipelineSpec): string[] {
  const masking = spec.transforms.filter((step) => step.plugin.hidesData);
  if (masking.length === 0 || spec.options["errors.tolerance"] !== "all") return [];
  const aliases = masking.map((step) => `"${step.alias}"`).join(", ");
  const table = spec.options["errors.deadletterqueue.table.name"];
  const topic = spec.options["errors.deadletterqueue.topic.name"];
  const places = [
    ...(table ? [`errors.deadletterqueue.table.name "${table}", in the sink's database`] : []),
    ...(topic ? [`errors.deadletterqueue.topic.name "${topic}", on the Kafka broker`] : []),
  ];
  return places.map((place) =>
    `a record that fails in ${aliases} (a value it cannot mask) is dead-lettered with its ` +
    `clear values into ${place}; ` +
    `send dead letters to a file on the source's side (errors.deadletterqueue.file.path) ` +
    `if the target must never hold them`
  );
}

/**
 * An incremental job's stored position holds the last row's key columns
 * as the source has them; kept in the sink's database, a key column that a
 * masking step hides would be there in clear. Checked where the config
 * names the key columns and the step lists its fields (`mask`).
 */
function clearWatermarkWarnings(spec: PipelineSpec): string[] {
  const source = spec.source.config as { incremental?: unknown; keyColumns?: readonly string[] };
  if (source.incremental !== true || !source.keyColumns) return [];
  if (spec.options["offset.storage"] === "file") return [];
  const keys = new Set(source.keyColumns);
  return spec.transforms.flatMap((step) => {
    if (!step.plugin.hidesData) return [];
    const fields = (step.config as { fields?: unknown }).fields;
    const hidden = Array.isArray(fields) ? fields.filter((field) => keys.has(field)) : [];
    return hidden.length === 0 ? [] : [
      `"${step.alias}" masks key column${hidden.length > 1 ? "s" : ""} ${
        hidden.map((f) => `"${f}"`).join(", ")
      }, and the job's watermark stores the last row's key as the source has it, in the ` +
      `sink's database when offset.storage is ${spec.options["offset.storage"]}; set ` +
      `offset.storage to file to keep it on the Sluice host`,
    ];
  });
}

/** The plan as text tables (streams' routes, then batch jobs), with warnings. */
export function formatPlan(plan: Plan): string {
  const out: string[] = [];
  if (plan.routes.length > 0 || plan.jobs.length === 0) {
    out.push(...textTable(
      ["captured table", "topic after transforms", "consumed by"],
      plan.routes.map((route) => [
        route.table,
        route.topic ?? "(dropped)",
        route.consumers.length > 0 ? route.consumers.join("; ") : "NOBODY CONSUMES THIS TOPIC",
      ]),
    ));
  }
  if (plan.jobs.length > 0) {
    if (out.length > 0) out.push("");
    out.push(...textTable(
      ["batch job", "schedule (UTC)", "reads", "writes", "after"],
      plan.jobs.map((job) => [
        job.pipeline,
        job.schedule ?? "once at start",
        job.reads,
        job.writes,
        job.after.join(", "),
      ]),
    ));
  }
  if (plan.orphans.length > 0) {
    out.push("", "Subscriptions that no pipeline produces:");
    for (const orphan of plan.orphans) out.push(`  ${orphan}`);
  }
  return out.join("\n");
}

function textTable(header: string[], rows: string[][]): string[] {
  const widths = header.map((title, i) =>
    Math.max(title.length, ...rows.map((row) => row[i].length))
  );
  const line = (cells: string[]) =>
    cells.map((cell, i) => cell.padEnd(widths[i])).join("  ").trimEnd();
  return [line(header), line(widths.map((w) => "-".repeat(w))), ...rows.map(line)];
}
