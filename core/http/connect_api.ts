/**
 * The REST API in Kafka Connect's shape, for what a Sluice process has:
 * connectors (pipelines) with their config, status, offsets and lifecycle
 * (create, update, delete, pause, resume, stop, restart), the plugins, and
 * Sluice's own batch jobs.
 * Errors are Kafka Connect's `{ "error_code", "message" }`.
 *
 * A config is shown as written in its file: `${env:…}` and `${file:…}`
 * references stay references, so no resolved secret ever leaves the process.
 *
 * @module
 */
import { type Context, Hono } from "hono";
import { nextRunTime } from "../_schedule.ts";
import type { PipelineSpec, RawConnector } from "../config.ts";
import type { ConfigStore } from "../config_store.ts";
import { connectorWriteRoutes } from "./connector_writes.ts";
import { offsetRoutes } from "./offsets_api.ts";
import type { OffsetStore } from "../offsets.ts";
import type { Registry } from "../registry.ts";
import type { Runtime } from "../runtime.ts";
import type { SluiceMetrics } from "../metrics.ts";
import type { AlertManager } from "../alerts.ts";
import type { RunReport } from "../pipeline.ts";
import { findConnectorPlugin, validateConfig } from "./validate.ts";

/** What the API reads and drives. */
export interface ApiContext {
  readonly runtime: Runtime;
  readonly metrics: SluiceMetrics;
  readonly alerts?: AlertManager;
  /** Each pipeline's config as written (provider references unresolved). */
  readonly configs: ReadonlyMap<string, Readonly<Record<string, unknown>>>;
  /** Where configs created or changed over REST are saved; without it they are refused. */
  readonly store?: ConfigStore;
  /** Validates connector entries as `sluice validate` does (throws ConfigError). */
  readonly build?: (entries: RawConnector[]) => Promise<PipelineSpec[]>;
  readonly registry: Registry;
  /** The worker's offset store (used when a sink does not keep offsets). */
  readonly offsets: OffsetStore;
  /** Sluice's version, reported for every plugin. */
  readonly version: string;
  /** `host:port` shown as `worker_id`; set when the server binds. */
  workerId?: string;
}

type Json = Parameters<Context["json"]>[0];

function error(c: Context, status: 400 | 404 | 409, message: string) {
  return c.json({ error_code: status, message }, status);
}

/** Kafka Connect's connector type: "sink" reads Kafka topics, anything else is a "source". */
function connectorType(spec: PipelineSpec): "source" | "sink" {
  return spec.source.plugin.plan?.(spec.source.config)?.subscribes ? "sink" : "source";
}

function configOf(context: ApiContext, spec: PipelineSpec): Record<string, string> {
  const written = context.configs.get(spec.name) ?? {};
  const config: Record<string, string> = {};
  for (const [key, value] of Object.entries(written)) {
    config[key] = typeof value === "string" ? value : JSON.stringify(value);
  }
  config.name = spec.name;
  return config;
}

function info(context: ApiContext, spec: PipelineSpec) {
  return {
    name: spec.name,
    config: configOf(context, spec),
    tasks: [{ connector: spec.name, task: 0 }],
    type: connectorType(spec),
  };
}

function status(context: ApiContext, spec: PipelineSpec) {
  const control = context.runtime.control(spec.name);
  const workerId = context.workerId ?? "sluice";
  const failure = control.state === "FAILED" ? control.failure : undefined;
  // A stream between two attempts, waiting out its backoff after an error.
  const retry = control.state === "RUNNING" ? control.retry : undefined;
  const trace = failure
    ? traceOf(failure)
    : retry
    ? `Retrying after: ${traceOf(retry.error)}`
    : undefined;
  const state = {
    state: control.state,
    worker_id: workerId,
    ...(trace ? { trace } : {}),
    // Sluice's addition: Kafka Connect's state stays RUNNING between attempts.
    ...(retry
      ? {
        retrying: {
          attempt: retry.attempt,
          next_attempt_at: retry.nextAttemptAt.toISOString(),
          error: retry.error.message,
        },
      }
      : {}),
    // Sluice's additions for a group of processes: why it waits, what it holds, who it is.
    ...(control.standby ? { trace: `Standby: ${control.standby}` } : {}),
    ...(control.owns.length > 0 ? { owns: control.owns } : {}),
    ...(context.runtime.workerId ? { member: context.runtime.workerId } : {}),
  };
  return {
    name: spec.name,
    connector: state,
    tasks: [{ id: 0, ...state }],
    type: connectorType(spec),
  };
}

/** The error's stack followed by its causes, like a Java trace's "Caused by". */
function traceOf(error: Error): string {
  const parts: string[] = [];
  for (let current: unknown = error; current instanceof Error; current = current.cause) {
    parts.push(current.stack ?? `${current.name}: ${current.message}`);
  }
  return parts.join("\nCaused by: ");
}

/** `/connectors/…` and `/connector-plugins`. */
export function connectorRoutes(context: ApiContext): Hono {
  const app = new Hono();
  const { runtime } = context;
  const find = (c: Context) => runtime.pipelines.get(c.req.param("name") ?? "");
  const missing = (c: Context) => error(c, 404, `Connector ${c.req.param("name")} not found`);

  app.get("/connectors", (c) => {
    const expand = c.req.queries("expand") ?? [];
    const names = [...runtime.pipelines.keys()];
    if (expand.length === 0) return c.json(names);
    const out: Record<string, Record<string, unknown>> = {};
    for (const [name, spec] of runtime.pipelines) {
      out[name] = {};
      if (expand.includes("status")) out[name].status = status(context, spec);
      if (expand.includes("info")) out[name].info = info(context, spec);
    }
    return c.json(out as Json);
  });
  app.get("/connectors/:name", (c) => {
    const spec = find(c);
    return spec ? c.json(info(context, spec)) : missing(c);
  });
  app.get("/connectors/:name/config", (c) => {
    const spec = find(c);
    return spec ? c.json(configOf(context, spec)) : missing(c);
  });
  app.get("/connectors/:name/status", (c) => {
    const spec = find(c);
    return spec ? c.json(status(context, spec)) : missing(c);
  });
  app.get("/connectors/:name/tasks", (c) => {
    const spec = find(c);
    return spec
      ? c.json([{ id: { connector: spec.name, task: 0 }, config: configOf(context, spec) }])
      : missing(c);
  });
  const lifecycle = (
    action: (name: string) => void,
    ok: 202 | 204,
  ) =>
  (c: Context) => {
    const spec = find(c);
    if (!spec) return missing(c);
    action(spec.name);
    return c.body(null, ok);
  };
  app.put("/connectors/:name/pause", lifecycle((name) => runtime.control(name).pause(), 202));
  app.put("/connectors/:name/resume", lifecycle((name) => runtime.control(name).resume(), 202));
  app.put("/connectors/:name/stop", lifecycle((name) => runtime.control(name).stop(), 204));
  app.post("/connectors/:name/restart", lifecycle((name) => runtime.control(name).restart(), 204));
  app.post(
    "/connectors/:name/tasks/:task/restart",
    lifecycle((name) => runtime.control(name).restart(), 204),
  );

  app.route("/", offsetRoutes(context));
  app.route("/", connectorWriteRoutes(context, (spec) => info(context, spec)));

  app.get("/connector-plugins", async (c) => {
    // `sluice run`'s registry imports a plugin when a config names it: a listing needs them all.
    await context.registry.loadAll();
    const connectorsOnly = c.req.query("connectorsOnly") !== "false";
    const kinds = {
      source: "source",
      sink: "sink",
      transform: "transformation",
      predicate: "predicate",
    };
    const plugins = context.registry.list()
      .filter((plugin) => !connectorsOnly || plugin.kind === "source" || plugin.kind === "sink")
      .map((plugin) => ({
        class: plugin.name,
        type: kinds[plugin.kind],
        version: context.version,
      }));
    return c.json(plugins);
  });
  app.put("/connector-plugins/:class/config/validate", async (c) => {
    await context.registry.loadNamed([c.req.param("class")]);
    const plugin = findConnectorPlugin(context.registry, c.req.param("class"));
    if (!plugin) return error(c, 404, `Connector plugin ${c.req.param("class")} not found`);
    let body: unknown;
    try {
      body = await c.req.json();
    } catch {
      return error(c, 400, "The body must be a JSON object of config keys");
    }
    if (typeof body !== "object" || body === null || Array.isArray(body)) {
      return error(c, 400, "The body must be a JSON object of config keys");
    }
    return c.json(
      await validateConfig(context.registry, plugin, body as Record<string, unknown>) as Json,
    );
  });
  return app;
}

function reportJson(report: RunReport & { attempts?: number }) {
  return {
    status: report.status,
    started_at: report.startedAt.toISOString(),
    duration_ms: report.durationMs,
    attempts: report.attempts ?? 1,
    stats: { ...report.stats },
    validation: report.validation,
    ...(report.error ? { error: report.error.message } : {}),
  };
}

/** Sluice's own: `GET /jobs`, `POST /jobs/{name}/run`. */
export function jobRoutes(context: ApiContext): Hono {
  const app = new Hono();
  const { runtime } = context;
  const jobs = () =>
    [...runtime.pipelines.values()].filter((s) => s.source.plugin.mode === "batch");

  app.get("/jobs", async (c) =>
    c.json(
      await Promise.all(
        jobs().map(async (spec) => {
          const control = runtime.control(spec.name);
          const schedule = spec.options["job.schedule"];
          const group = await runtime.lastGroupRun(spec.name).catch(() => undefined);
          return {
            name: spec.name,
            state: control.state,
            schedule: schedule ?? null,
            depends_on: spec.options["job.depends.on"],
            running: control.runStartedAt !== undefined,
            running_since: control.runStartedAt?.toISOString() ?? null,
            next_run: control.runnable ? nextRunTime(schedule) : null,
            last_runs: control.history.map(reportJson),
            // The latest run anywhere in the group of processes (cluster database).
            last_group_run: group
              ? {
                worker: group.worker,
                tick: group.tick,
                status: group.status,
                started_at: group.startedAt,
              }
              : null,
          };
        }),
      ) as Json,
    ));

  app.post("/jobs/:name/run", (c) => {
    const name = c.req.param("name");
    const spec = runtime.pipelines.get(name);
    if (!spec) return error(c, 404, `Job ${name} not found`);
    if (spec.source.plugin.mode !== "batch") {
      return error(c, 409, `${name} is a stream pipeline, not a batch job`);
    }
    const control = runtime.control(name);
    if (!control.runnable) {
      return error(c, 409, `Job ${name} is ${control.state}; resume it first`);
    }
    const fullRefresh = c.req.query("full_refresh") === "true";
    void runtime.runJob(name, { fullRefresh, withDownstream: true }).catch(() => {});
    return c.json({ name, full_refresh: fullRefresh, state: "started" }, 202);
  });
  return app;
}
