/**
 * The one HTTP endpoint of a `sluice run` process: health, readiness,
 * Prometheus metrics, the Kafka Connect–style REST API and the status page at
 * `/`, routed by Hono on `Deno.serve`.
 *
 * Bound to loopback it is open to the host's users, as Kafka Connect's REST
 * port is. Bound beyond loopback it refuses to start without a bearer token,
 * and with a token every route but `/healthz` and the status page's static
 * files (core/http/status_page.ts; they hold no data) requires it.
 *
 * @module
 */
import { Hono } from "hono";
import { getLogger } from "@logtape/logtape";
import { ConfigError } from "../../api/errors.ts";
import { type ApiContext, connectorRoutes, jobRoutes } from "./connect_api.ts";
import { LagHistory, statusPageAssets, statusPageData } from "./status_page.ts";

const logger = getLogger(["sluice", "http"]);

/** Kafka Connect's REST port, on loopback. */
export const DEFAULT_LISTEN = "127.0.0.1:8083";

/** Where to listen: a host and port, or nowhere. */
export type ListenAddress = { readonly hostname: string; readonly port: number } | "off";

/** Parses `--listen`: `host:port`, `[v6]:port`, or `off`. */
export function parseListen(value: string): ListenAddress {
  if (value === "off") return "off";
  const match = /^(?:\[([^\]]+)\]|([^:\[\]]+)):(\d{1,5})$/.exec(value);
  const port = match ? Number(match[3]) : NaN;
  if (!match || port > 65535) {
    throw new ConfigError([{
      path: "--listen",
      message: `expected host:port (e.g. 127.0.0.1:8083) or off: current value is "${value}"`,
    }]);
  }
  return { hostname: match[1] ?? match[2], port };
}

/** Whether `hostname` only accepts connections from this machine. */
export function isLoopback(hostname: string): boolean {
  return hostname === "localhost" || hostname === "::1" || /^127\.\d+\.\d+\.\d+$/.test(hostname);
}

/** Settings of the endpoint. */
export interface ServerOptions {
  readonly listen: ListenAddress;
  /** Bearer token; required when listening beyond loopback. */
  readonly token?: string;
}

/** A running endpoint. */
export interface ApiServer extends AsyncDisposable {
  /** Base URL, e.g. `http://127.0.0.1:8083`. */
  readonly url: string;
}

/**
 * Checks the token rule before anything connects: listening beyond loopback
 * without a token is a config error.
 */
export function checkServerOptions(options: ServerOptions): void {
  if (options.listen === "off" || isLoopback(options.listen.hostname) || options.token) return;
  throw new ConfigError([{
    path: "--listen",
    message:
      `"${options.listen.hostname}" is reachable from other machines, so the API needs a bearer token: give --token or SLUICE_API_TOKEN (or listen on 127.0.0.1)`,
  }]);
}

/** The routes, without a socket (tests and `app.request`). */
export function apiApp(context: ApiContext, token?: string, lagHistory?: LagHistory): Hono {
  const app = new Hono();
  app.get("/healthz", (c) => c.json({ status: "ok" }));
  // The status page holds no data (it fetches it with the token), so it comes before the check.
  app.route("/", statusPageAssets());
  if (token) app.use("*", bearerAuth(token));
  app.get("/readyz", (c) => {
    const reasons = notReadyReasons(context);
    return reasons.length === 0
      ? c.json({ status: "ready" })
      : c.json({ status: "not ready", reasons }, 503);
  });
  app.get("/metrics", async (c) => {
    c.header("content-type", context.metrics.registry.contentType);
    return c.body(await context.metrics.render());
  });
  app.get("/alerts", (c) =>
    c.json((context.alerts?.firing ?? []).map((alert) => ({
      alertname: alert.rule.alertname,
      rule: alert.rule.id,
      severity: alert.rule.severity,
      labels: alert.labels,
      value: alert.value,
      since: alert.since.toISOString(),
    }))));
  app.route("/", connectorRoutes(context));
  app.route("/", jobRoutes(context));
  app.route("/", statusPageData(lagHistory));
  app.notFound((c) =>
    c.json({ error_code: 404, message: `No route ${c.req.method} ${c.req.path}` }, 404)
  );
  app.onError((error, c) => {
    logger.error("{method} {path} failed: {error}", {
      method: c.req.method,
      path: c.req.path,
      error: error.message,
    });
    return c.json({ error_code: 500, message: error.message }, 500);
  });
  return app;
}

/** Starts listening; resolves once the socket is bound. */
export function startApiServer(context: ApiContext, options: ServerOptions): Promise<ApiServer> {
  checkServerOptions(options);
  if (options.listen === "off") throw new Error("startApiServer: listen is off");
  const lagHistory = new LagHistory(context.metrics);
  const app = apiApp(context, options.token, lagHistory);
  const { hostname, port } = options.listen;
  return new Promise((resolve, reject) => {
    try {
      const server = Deno.serve({
        hostname,
        port,
        onListen: (address) => {
          const host = address.hostname.includes(":") ? `[${address.hostname}]` : address.hostname;
          const url = `http://${host}:${address.port}`;
          context.workerId ??= `${address.hostname}:${address.port}`;
          logger.info("API, health, metrics and status page at {url}", { url });
          lagHistory.start();
          resolve({
            url,
            [Symbol.asyncDispose]: () => {
              lagHistory[Symbol.dispose]();
              return server.shutdown();
            },
          });
        },
      }, app.fetch);
    } catch (error) {
      if (!(error instanceof Deno.errors.AddrInUse)) return reject(error);
      // Each process on one machine needs an endpoint of its own.
      reject(
        new ConfigError([{
          path: "--listen",
          message:
            `${hostname}:${port} is in use (another Sluice process, or Kafka Connect?): give each process its own --listen host:port (or SLUICE_LISTEN), or --listen off`,
        }], { cause: error }),
      );
    }
  });
}

/** Rejects requests without `Authorization: Bearer <token>`, comparing in constant time. */
function bearerAuth(token: string) {
  const expected = new TextEncoder().encode(`Bearer ${token}`);
  return async (c: Parameters<Parameters<Hono["use"]>[1]>[0], next: () => Promise<void>) => {
    if (c.req.path === "/healthz") return await next();
    const given = new TextEncoder().encode(c.req.header("authorization") ?? "");
    let diff = given.length ^ expected.length;
    for (let i = 0; i < expected.length; i++) diff |= expected[i] ^ (given[i] ?? 0);
    if (diff !== 0) {
      c.header("www-authenticate", 'Bearer realm="sluice"');
      return c.json({ error_code: 401, message: "A valid bearer token is required" }, 401);
    }
    await next();
  };
}

/** Why the process is not ready: failed pipelines, streams that are not running. */
function notReadyReasons(context: ApiContext): string[] {
  const reasons: string[] = [];
  for (const [name, spec] of context.runtime.pipelines) {
    const control = context.runtime.control(name);
    if (control.state === "FAILED") {
      reasons.push(`${name} failed: ${control.failure?.message ?? "unknown error"}`);
    } else if (
      spec.source.plugin.mode === "stream" && control.state === "RUNNING" && !control.runStartedAt
    ) {
      const last = (control.retry?.error ?? control.history[0]?.error)?.message;
      reasons.push(`stream ${name} is not running${last ? ` (last error: ${last})` : ""}`);
    }
  }
  return reasons;
}
