/**
 * `GET`, `DELETE` and `PATCH /connectors/{name}/offsets`, in Kafka Connect's
 * shapes (`{ "offsets": [{ "partition": {…}, "offset": {…} }] }`). Offsets
 * change only while the connector is STOPPED and its run has ended, as in
 * Kafka Connect; they are changed where the pipeline keeps them (see
 * `core/offset_admin.ts`). Besides Kafka Connect's entries, a PATCH may
 * carry `{ "reset_to": "earliest" | "latest" | "<ISO time>" }` (what
 * `sluice offsets reset` sends to a running process).
 *
 * @module
 */
import { type Context, Hono } from "hono";
import { OffsetChangeError } from "../../api/errors.ts";
import type { OffsetChange, OffsetEntry } from "../../api/plugin.ts";
import { changeOffsets, listOffsets } from "../offset_admin.ts";
import type { OffsetStore } from "../offsets.ts";
import type { Runtime } from "../runtime.ts";

/** How long a change waits for a stopping run to end. */
const STOPPING_WAIT_MS = 30_000;

/** The offsets routes. */
export function offsetRoutes(context: { runtime: Runtime; offsets: OffsetStore }): Hono {
  const app = new Hono();
  const { runtime } = context;
  const fail = (c: Context, status: 400 | 404 | 409, message: string) =>
    c.json({ error_code: status, message }, status);

  app.get("/connectors/:name/offsets", async (c) => {
    const spec = runtime.pipelines.get(c.req.param("name"));
    if (!spec) return fail(c, 404, `Connector ${c.req.param("name")} not found`);
    return c.json({ offsets: await listOffsets(spec, context.offsets) } as never);
  });

  const change =
    (parse: (c: Context) => Promise<OffsetChange>, done: string) => async (c: Context) => {
      const name = c.req.param("name") ?? "";
      const spec = runtime.pipelines.get(name);
      if (!spec) return fail(c, 404, `Connector ${name} not found`);
      const control = runtime.control(name);
      if (control.state !== "STOPPED") {
        return fail(
          c,
          400,
          `Connector ${name} is ${control.state}: offsets can be changed only while it is STOPPED (PUT /connectors/${name}/stop first, then PUT …/resume afterwards)`,
        );
      }
      const until = Date.now() + STOPPING_WAIT_MS;
      while (control.runStartedAt && Date.now() < until) {
        await new Promise((resolve) => setTimeout(resolve, 50)); // the run is committing its last batch
      }
      if (control.runStartedAt) {
        return fail(c, 409, `Connector ${name} is still finishing its last batch; try again`);
      }
      try {
        const request = await parse(c);
        const offsets = await changeOffsets(
          spec,
          context.offsets,
          request,
          runtime.groupCoordinator(name),
        );
        return c.json(
          { message: `The offsets of connector ${name} were ${done}`, offsets } as never,
        );
      } catch (error) {
        if (error instanceof OffsetChangeError) return fail(c, 400, error.message);
        throw error;
      }
    };
  app.delete("/connectors/:name/offsets", change(() => Promise.resolve({ to: "reset" }), "reset"));
  app.patch("/connectors/:name/offsets", change(parsePatch, "altered"));
  return app;
}

/** `{ "offsets": [{ "partition": {…}, "offset": {…} | null }] }`, checked. */
async function parsePatch(c: Context): Promise<OffsetChange> {
  const shape = 'the body must be { "offsets": [{ "partition": { … }, "offset": { … } or null }] }';
  let body: unknown;
  try {
    body = await c.req.json();
  } catch {
    throw new OffsetChangeError(`The body is not JSON: ${shape}`);
  }
  // Sluice's own (what `sluice offsets reset` sends): { "reset_to": "earliest" | "latest" | <ISO time> }.
  const resetTo = (body as { reset_to?: unknown } | null)?.reset_to;
  if (resetTo !== undefined) {
    if (resetTo === "earliest" || resetTo === "latest") return { to: resetTo };
    if (typeof resetTo === "string" && !Number.isNaN(Date.parse(resetTo))) {
      return { to: "timestamp", at: new Date(resetTo) };
    }
    throw new OffsetChangeError(
      `reset_to must be "earliest", "latest" or an ISO 8601 time: current value is ${
        JSON.stringify(resetTo)
      }`,
    );
  }
  const list = (body as { offsets?: unknown } | null)?.offsets;
  if (!Array.isArray(list) || list.length === 0) {
    throw new OffsetChangeError(`No offsets given: ${shape}`);
  }
  const isObject = (value: unknown) =>
    typeof value === "object" && value !== null && !Array.isArray(value);
  list.forEach((entry, index) => {
    if (
      !isObject(entry) || !isObject(entry.partition) ||
      !(entry.offset === null || isObject(entry.offset))
    ) {
      throw new OffsetChangeError(`offsets[${index}] is malformed: ${shape}`);
    }
  });
  return { to: "entries", entries: list as OffsetEntry[] };
}
