/**
 * The operator's side of `sluice run`: metrics, in-process alerts and the
 * HTTP endpoint, set up from flags and the environment.
 *
 * | setting        | flag       | environment          | default          |
 * | -------------- | ---------- | -------------------- | ---------------- |
 * | listen address | `--listen` | `SLUICE_LISTEN`      | `127.0.0.1:8083` |
 * | bearer token   | `--token`  | `SLUICE_API_TOKEN`   | none             |
 * | alerts file    | `--alerts` | `SLUICE_ALERTS_FILE` | the plan's rules, log only |
 *
 * @module
 */
import denoJson from "../deno.json" with { type: "json" };
import { ConfigError } from "../api/errors.ts";
import { parseAlertsConfig } from "../core/alert_rules.ts";
import { AlertManager } from "../core/alerts.ts";
import type { PipelineSpec, RawConnector } from "../core/config.ts";
import { ConfigStore } from "../core/config_store.ts";
import { SluiceMetrics } from "../core/metrics.ts";
import { watchDeadLetterSizes } from "../core/dead_letter_queue.ts";
import { lazyKafkaDeadLetterStores } from "./worker.ts";
import type { OffsetStore } from "../core/offsets.ts";
import type { Registry } from "../core/registry.ts";
import type { Runtime } from "../core/runtime.ts";
import {
  checkServerOptions,
  DEFAULT_LISTEN,
  type ListenAddress,
  parseListen,
  startApiServer,
} from "../core/http/server.ts";

/** Flags of `sluice run` for operations. */
export interface OpsFlags {
  readonly listen?: string;
  readonly token?: string;
  readonly alerts?: string;
  /** Kafka of the worker, for the dead-letter topics' gauge. */
  readonly bootstrap?: string;
}

/** Metrics and alerts built before the runtime; `start` adds the endpoint. */
export interface Operations {
  /** Feeds metrics; undefined when metrics are off (`--listen off` and no alerts file). */
  readonly metrics?: SluiceMetrics;
  /** Starts alerts and the endpoint for a runtime; dispose to stop them. */
  start(runtime: Runtime, registry: Registry, offsets: OffsetStore): Promise<AsyncDisposable>;
}

/** Reads and checks the settings (before anything connects) and builds the metrics. */
export async function prepareOperations(
  specs: readonly PipelineSpec[],
  paths: readonly string[],
  flags: OpsFlags,
  build?: (entries: RawConnector[]) => Promise<PipelineSpec[]>,
): Promise<Operations> {
  const listen: ListenAddress = parseListen(
    flags.listen ?? Deno.env.get("SLUICE_LISTEN") ?? DEFAULT_LISTEN,
  );
  const token = flags.token ?? (Deno.env.get("SLUICE_API_TOKEN") || undefined);
  checkServerOptions({ listen, token });
  const alertsFile = flags.alerts ?? Deno.env.get("SLUICE_ALERTS_FILE");
  const alertsConfig = alertsFile
    ? parseAlertsConfig(await readJson(alertsFile), alertsFile)
    : undefined;
  // The configs as written, saved back when the API creates, changes or deletes one.
  const store = await ConfigStore.open(paths);
  const metrics = listen !== "off" || alertsConfig ? new SluiceMetrics(specs) : undefined;
  return {
    metrics,
    async start(runtime, registry, offsets) {
      if (!metrics) return { [Symbol.asyncDispose]: async () => {} };
      // A pipeline the API deleted has no control any more: no state.
      metrics.watchStates((pipeline) =>
        runtime.pipelines.has(pipeline) ? runtime.control(pipeline).state : undefined
      );
      const alerts = new AlertManager(metrics, alertsConfig);
      runtime.onReport((report) => {
        metrics.onJobFinished(report);
        alerts.evaluate();
      });
      alerts.start();
      const deadLetters = watchDeadLetterSizes(metrics, specs, {
        deadLetterTopicStore: lazyKafkaDeadLetterStores(
          flags.bootstrap ?? Deno.env.get("SLUICE_BOOTSTRAP_SERVERS"),
        ),
      });
      const server = listen === "off" ? undefined : await startApiServer(
        {
          runtime,
          metrics,
          alerts,
          configs: store.configs,
          store,
          build,
          registry,
          offsets,
          version: denoJson.version,
        },
        { listen, token },
      );
      return {
        async [Symbol.asyncDispose]() {
          await server?.[Symbol.asyncDispose]();
          await alerts[Symbol.asyncDispose]();
          await deadLetters[Symbol.asyncDispose]();
        },
      };
    },
  };
}

async function readJson(path: string): Promise<unknown> {
  try {
    return JSON.parse(await Deno.readTextFile(path));
  } catch (error) {
    throw new ConfigError([{ path, message: `cannot read: ${(error as Error).message}` }]);
  }
}
