/**
 * Helpers for the operations tests: a runtime with metrics, alerts and the
 * HTTP endpoint on a free loopback port, a webhook receiver, and a reader of
 * the Prometheus exposition text.
 *
 * @module
 */
import { lazyBuiltinRegistry } from "../_builtin_catalog.ts";
import { type AlertsConfig, parseAlertsConfig } from "../core/alert_rules.ts";
import { AlertManager } from "../core/alerts.ts";
import type { PipelineSpec } from "../core/config.ts";
import { type ApiServer, startApiServer } from "../core/http/server.ts";
import { SluiceMetrics } from "../core/metrics.ts";
import { MemoryOffsetStore } from "../core/offsets.ts";
import { Runtime } from "../core/runtime.ts";

/** A runtime with its operations side running. */
export interface OpsHarness extends AsyncDisposable {
  readonly runtime: Runtime;
  readonly metrics: SluiceMetrics;
  readonly alerts: AlertManager;
  readonly server: ApiServer;
  readonly url: string;
  /** fetch against the endpoint, with the token when one is set. */
  api(path: string, init?: RequestInit): Promise<Response>;
  /** The value of one series in `/metrics` (0 when absent). */
  metric(name: string, labels?: Record<string, string>): Promise<number>;
}

/** Starts the runtime's endpoint, metrics and alerts (the runtime itself is not started). */
export async function startOps(
  specs: PipelineSpec[],
  options: {
    configs?: Record<string, Record<string, unknown>>;
    alerts?: unknown;
    token?: string;
  } = {},
): Promise<OpsHarness> {
  const metrics = new SluiceMetrics(specs);
  const offsets = new MemoryOffsetStore();
  // Failed streams wait for POST /restart here, as with `sluice run --keep-failed`.
  const runtime = new Runtime(specs, { offsets, observer: metrics }, { keepFailed: true });
  const config: AlertsConfig = parseAlertsConfig(options.alerts ?? {});
  metrics.watchStates((pipeline) =>
    runtime.pipelines.has(pipeline) ? runtime.control(pipeline).state : undefined
  );
  const alerts = new AlertManager(metrics, config);
  runtime.onReport((report) => {
    metrics.onJobFinished(report);
    alerts.evaluate();
  });
  alerts.start();
  const server = await startApiServer({
    runtime,
    metrics,
    alerts,
    configs: new Map(Object.entries(options.configs ?? {})),
    // The registry `sluice run` gives: plugins imported on first use.
    registry: lazyBuiltinRegistry(),
    offsets,
    version: "test",
  }, { listen: { hostname: "127.0.0.1", port: 0 }, token: options.token });
  const api = (path: string, init: RequestInit = {}) => {
    const headers = new Headers(init.headers);
    if (options.token && !headers.has("authorization")) {
      headers.set("authorization", `Bearer ${options.token}`);
    }
    return fetch(`${server.url}${path}`, { ...init, headers });
  };
  return {
    runtime,
    metrics,
    alerts,
    server,
    url: server.url,
    api,
    async metric(name, labels = {}) {
      const text = await (await api("/metrics")).text();
      return seriesValue(text, name, labels);
    },
    async [Symbol.asyncDispose]() {
      await runtime.stop();
      await alerts[Symbol.asyncDispose]();
      await server[Symbol.asyncDispose]();
    },
  };
}

/** Sums the samples of `name` whose labels include `labels`. */
export function seriesValue(text: string, name: string, labels: Record<string, string>): number {
  let total = 0;
  for (const line of text.split("\n")) {
    const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match || match[1] !== name) continue;
    const found = Object.fromEntries(
      [...(match[2] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((m) => [m[1], m[2]]),
    );
    if (Object.entries(labels).every(([k, v]) => found[k] === v)) total += Number(match[3]);
  }
  return total;
}

/** A webhook receiver on a free loopback port that keeps every body it gets. */
export interface WebhookReceiver extends AsyncDisposable {
  readonly url: string;
  readonly bodies: unknown[];
}

/** Starts a receiver; `failFirst` answers 503 to that many requests first. */
export function startWebhookReceiver(failFirst = 0): Promise<WebhookReceiver> {
  const bodies: unknown[] = [];
  let failures = failFirst;
  return new Promise((resolve) => {
    const server = Deno.serve({
      hostname: "127.0.0.1",
      port: 0,
      onListen: ({ port }) =>
        resolve({
          url: `http://127.0.0.1:${port}/hook`,
          bodies,
          [Symbol.asyncDispose]: () => server.shutdown(),
        }),
    }, async (request) => {
      const body = await request.json();
      if (failures > 0) {
        failures--;
        return new Response("down", { status: 503 });
      }
      bodies.push(body);
      return new Response("ok");
    });
  });
}
