/**
 * Creating, updating and deleting connectors over REST, as Kafka Connect
 * does: `POST /connectors`, `PUT /connectors/{name}/config`,
 * `DELETE /connectors/{name}`. Each change is validated first with the same
 * checks as `sluice validate` (against every pipeline of the process, so
 * names and `job.depends.on` are checked too), then saved to the config
 * folder (see {@linkcode ConfigStore}), then applied to the running
 * process without restarting it. Changes are applied one at a time.
 *
 * @module
 */
import { type Context, Hono } from "hono";
import { ConfigError } from "../../api/errors.ts";
import type { PipelineSpec, RawConnector } from "../config.ts";
import { type ConfigStore, ConfigStoreConflict } from "../config_store.ts";
import type { Runtime } from "../runtime.ts";

/** What the write routes need besides the runtime. */
export interface WriteContext {
  readonly runtime: Runtime;
  /** Where configs are saved; without it, changes are refused. */
  readonly store?: ConfigStore;
  /** Validates entries as `sluice validate` does (throws ConfigError). */
  readonly build?: (entries: RawConnector[]) => Promise<PipelineSpec[]>;
  /** Counts the records of pipelines added or changed here too. */
  readonly metrics?: { track(spec: PipelineSpec): void };
}

type Status = 400 | 404 | 409 | 500;

class HttpError extends Error {
  constructor(readonly status: Status, message: string) {
    super(message);
  }
}

/** A 400 for an invalid config, in Kafka Connect's shape: every problem, one per line. */
function invalid(error: ConfigError, name: string): HttpError {
  const prefix = `${name}: config.`;
  const lines = error.issues.map((issue) =>
    `${
      issue.path.startsWith(prefix) ? issue.path.slice(prefix.length) : issue.path
    }: ${issue.message}`
  );
  return new HttpError(
    400,
    `Invalid connector config, ${lines.length} problem(s):\n${
      lines.join("\n")
    }\nPUT /connector-plugins/{class}/config/validate lists every key with its errors.`,
  );
}

async function jsonBody(c: Context): Promise<Record<string, unknown>> {
  let body: unknown;
  try {
    body = await c.req.json();
  } catch {
    throw new HttpError(400, "The body must be a JSON object");
  }
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw new HttpError(400, "The body must be a JSON object");
  }
  return body as Record<string, unknown>;
}

/** A config map: an object of keys (the name key, if any, must match). */
function configOf(value: unknown, name: string): Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new HttpError(
      400,
      'The connector config must be a JSON object of keys ("config": { … })',
    );
  }
  const { name: given, ...config } = value as Record<string, unknown>;
  if (given !== undefined && given !== name) {
    throw new HttpError(
      400,
      `The config's name (${
        JSON.stringify(given)
      }) does not match the connector's name ("${name}")`,
    );
  }
  return config;
}

/** The write routes; `info` renders a connector as `GET /connectors/{name}` does. */
export function connectorWriteRoutes(
  context: WriteContext,
  info: (spec: PipelineSpec) => unknown,
): Hono {
  const app = new Hono();
  const { runtime } = context;
  let tail: Promise<unknown> = Promise.resolve();
  /** Runs one change at a time, answering errors in Kafka Connect's shape. */
  const exclusive = (work: (c: Context) => Promise<Response>) => (c: Context) => {
    const next = tail.then(() => work(c)).catch((error) => {
      if (error instanceof HttpError) {
        return c.json({ error_code: error.status, message: error.message }, error.status);
      }
      if (error instanceof ConfigStoreConflict) {
        return c.json({ error_code: 409, message: error.message }, 409);
      }
      if (
        error instanceof Deno.errors.NotCapable || error instanceof Deno.errors.PermissionDenied
      ) {
        // The narrow flags of `sluice permissions` do not let the process write its configs.
        const message =
          `This process may not write its config folder (${error.message}): grant --allow-write for it to create, change or delete connectors over REST`;
        return c.json({ error_code: 409, message }, 409);
      }
      throw error;
    });
    tail = next.catch(() => {});
    return next;
  };
  const ready = () => {
    if (!context.store || !context.build) {
      throw new HttpError(409, "This process cannot change its connectors (no config store)");
    }
    return { store: context.store, build: context.build };
  };
  /** Validates `entry` with every other pipeline; returns its spec. */
  const validated = async (entry: RawConnector): Promise<PipelineSpec> => {
    const { store, build } = ready();
    const entries = [...store.entries().filter((e) => e.name !== entry.name), entry];
    try {
      const specs = await build(entries);
      return specs.find((spec) => spec.name === entry.name)!;
    } catch (error) {
      if (error instanceof ConfigError) throw invalid(error, entry.name);
      throw error;
    }
  };
  /** Saves and applies a new or changed config; returns whether it was new. */
  const put = async (name: string, config: Record<string, unknown>) => {
    const { store } = ready();
    const existed = runtime.pipelines.has(name);
    const entry = store.draft(name, config);
    const spec = await validated(entry);
    await store.save(entry);
    context.metrics?.track(spec);
    if (existed) await runtime.replace(spec);
    else runtime.add(spec);
    return { spec, created: !existed };
  };

  app.post(
    "/connectors",
    exclusive(async (c) => {
      const body = await jsonBody(c);
      const name = body.name;
      if (typeof name !== "string" || name.trim() === "") {
        throw new HttpError(400, 'The body needs a "name": { "name": "…", "config": { … } }');
      }
      if (runtime.pipelines.has(name)) {
        throw new HttpError(409, `Connector ${name} already exists`);
      }
      const { spec } = await put(name, configOf(body.config, name));
      return c.json(info(spec) as never, 201);
    }),
  );
  app.put(
    "/connectors/:name/config",
    exclusive(async (c) => {
      const name = c.req.param("name")!;
      const { spec, created } = await put(name, configOf(await jsonBody(c), name));
      return c.json(info(spec) as never, created ? 201 : 200);
    }),
  );
  app.delete(
    "/connectors/:name",
    exclusive(async (c) => {
      const name = c.req.param("name")!;
      if (!runtime.pipelines.has(name)) throw new HttpError(404, `Connector ${name} not found`);
      const { store, build } = ready();
      store.checkRemovable(name);
      try {
        await build(store.entries().filter((e) => e.name !== name));
      } catch (error) {
        if (!(error instanceof ConfigError)) throw error;
        throw new HttpError(
          409,
          `${name} cannot be deleted while the rest depends on it:\n${
            error.issues.map((i) => `${i.path}: ${i.message}`).join("\n")
          }`,
        );
      }
      await store.remove(name);
      await runtime.remove(name);
      return c.body(null, 204);
    }),
  );
  return app;
}
