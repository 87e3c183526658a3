/**
 * The `sluice` command.
 *
 * ```
 * sluice run <config>…                 run pipelines: streams, schedules, one-shot jobs
 * sluice validate <config>…            check configs without connecting
 * sluice plugins [name]                list plugins and their options
 * sluice job run <name> <config>…      run one batch job now (--since: re-sync a window)
 * sluice offsets show <config>… [name] stored positions
 * sluice offsets reset <config>… <name> --to-earliest | --to-latest | --to-timestamp | --to-offset
 * sluice plan <config>…                captured tables → topics → consumers; batch jobs
 * sluice permissions <config>…         the narrowest Deno permission flags they need
 * sluice status [--url <url>]          a running process's pipelines, lag, runs and alerts
 * sluice dlq list|show|replay|purge <config>… <pipeline>   work off dead letters
 * ```
 *
 * @module
 */
import { parseArgs } from "node:util";
import { getLogger } from "@logtape/logtape";
import { lazyBuiltinRegistry } from "../_builtin_catalog.ts";
import type { Plugin } from "../api/plugin.ts";
import type { Registry } from "../core/registry.ts";
import type { JobReport } from "../core/runtime.ts";
import { ConfigError, OffsetChangeError } from "../api/errors.ts";
import { redactedMessage, redactSecrets } from "../api/redact.ts";
import { setUpLogging, tearDownLogging } from "../core/_log.ts";
import type { WorkerSettings } from "./worker.ts";
import type { OptionDoc } from "../api/options.ts";
import type { OpsFlags } from "./ops.ts";
import type { ResetFlags } from "./offsets.ts";

// Each command imports what it needs when it runs (`await import`), so
// `sluice status` or `--help` does not load the engine, and `sluice run`
// loads the plugins its configs name (the registry is lazy), not all of
// them: start-up time and idle memory follow what a config uses.

const USAGE = `Usage: sluice <command> [options]

Commands:
  run <config>…               Run pipelines: streams start, batch jobs follow job.schedule,
                              unscheduled jobs run once. Stops on SIGINT/SIGTERM, or by
                              itself (exit 1) once every stream failed for good and no
                              job is scheduled.
  validate <config>…          Check configs (files or folders) without connecting.
  plugins [name]              List plugins, or one plugin's options with defaults.
  job run <name> <config>…    Run one batch job now and print its report (name and configs in
                              either order; on a terminal, rows, rows/s and an ETA on stderr).
  offsets show <config>… [name]
                              Stored positions of the pipelines (or of one), as Kafka Connect
                              lists them.
  offsets reset <config>… <name> --to-earliest | --to-latest | --to-timestamp <ISO time>
                              | --to-offset <p:o[,p:o] | topic:p:o | LSN>
                              Move a stopped pipeline's position. When a \`sluice run\` process
                              answers (--url / $SLUICE_URL / --listen) and runs it, through its
                              REST API (stop it first); otherwise where the offsets live.
  plan <config>…              Captured tables → topics after routing → consumers; batch jobs: schedule, reads, writes.
  status                      Pipelines of a running \`sluice run\` (its --listen address, or
                              --url / $SLUICE_URL): state, lag, written, dead letters, last
                              and next run, firing alerts.
  dlq <list|show|replay|purge> <config>… <pipeline>
                              A pipeline's dead letters: list, show one, replay them through
                              its transforms and sink, or purge them (sluice dlq --help).
  permissions <config>…       Print the narrowest Deno permission flags the configs need:
                              deno run $(sluice permissions cfg/) cli/main.ts run cfg/

Options:
  --full-refresh              (job run) ignore the stored watermark and read everything
  --with-downstream           (job run) then run the jobs that depend on it
  --since <ISO time>          (job run) re-sync the rows whose timestamp column is at or after
                              it; the stored watermark is left as it is
  --to-earliest, --to-latest, --to-timestamp <ISO time>, --to-offset <…>
                              (offsets reset) where to move: see above
  --offsets <file>            offsets file (default .sluice/offsets.json, or $SLUICE_OFFSETS_FILE)
  --bootstrap <servers>       Kafka bootstrap servers (or $SLUICE_BOOTSTRAP_SERVERS)
  --log-level <level>         trace, debug, info, warning, error (default info)
  --log-format <format>       auto, text or json (default auto: text on a terminal)
  --listen <host:port|off>    (run) API, health and metrics endpoint (default 127.0.0.1:8083,
                              or $SLUICE_LISTEN); beyond loopback it needs a token
  --token <token>             (run) bearer token the endpoint requires (or $SLUICE_API_TOKEN)
  --alerts <file>             (run) alert rules and webhooks, { "alerts": … } (or $SLUICE_ALERTS_FILE)
  --cluster-url <url>         PostgreSQL database where several \`sluice run\` processes coordinate
                              batch jobs (or $SLUICE_CLUSTER_URL; default: each job's sink database)
  --worker-id <id>            this process's name in the group (or $SLUICE_WORKER_ID; default host-pid)
  --max-parallel-jobs <n>     (run) most batch jobs running at once here (or $SLUICE_MAX_PARALLEL_JOBS;
                              default 4)
  --keep-failed               (run) keep running when every stream failed, for POST …/restart
                              (default: exit 1 once no pipeline can run, for a supervisor)
  -h, --help                  show this help
`;

/** Runs the CLI and returns its exit code: 0 ok, 1 a job or stream failed, 2 bad usage or config. */
export async function main(args: string[]): Promise<number> {
  // dlq has options of its own (--stage, --since, --yes…): it parses its arguments itself.
  if (args[0] === "dlq") return await (await import("./dlq.ts")).dlq(args.slice(1));
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      "full-refresh": { type: "boolean" },
      "with-downstream": { type: "boolean" },
      offsets: { type: "string" },
      bootstrap: { type: "string" },
      "log-level": { type: "string" },
      "log-format": { type: "string" },
      listen: { type: "string" },
      "keep-failed": { type: "boolean" },
      token: { type: "string" },
      url: { type: "string" },
      alerts: { type: "string" },
      since: { type: "string" },
      "to-earliest": { type: "boolean" },
      "to-latest": { type: "boolean" },
      "to-timestamp": { type: "string" },
      "to-offset": { type: "string" },
      "cluster-url": { type: "string" },
      "worker-id": { type: "string" },
      "max-parallel-jobs": { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  const [command, ...rest] = positionals;
  if (values.help || !command) {
    console.log(USAGE);
    return values.help ? 0 : 2;
  }
  await setUpLogging({
    level: (values["log-level"] ?? "info") as "info",
    format: (values["log-format"] ?? "auto") as "auto",
  });
  try {
    const { workerSettings } = await import("./worker.ts");
    const settings = workerSettings(values);
    switch (command) {
      case "run":
        return await run(rest, settings, values);
      case "validate":
        return await validate(rest, settings);
      case "plugins":
        return await plugins(rest[0]);
      case "plan":
        return await plan(rest, settings);
      case "status": {
        const { formatStatus, statusUrl } = await import("./status.ts");
        console.log(
          await formatStatus({
            url: statusUrl(values.url, values.listen),
            token: values.token ?? (Deno.env.get("SLUICE_API_TOKEN") || undefined),
          }),
        );
        return 0;
      }
      case "permissions": {
        requireConfigs(rest);
        const { permissionFlags, requiredPermissions } = await import("./permissions.ts");
        console.log(
          permissionFlags(await requiredPermissions(rest, settings, values.listen)).join(" "),
        );
        return 0;
      }
      case "job": {
        if (rest[0] !== "run" || !rest[1]) break;
        const { splitPipelineArgument } = await import("./offsets.ts");
        const { paths, pipeline } = await splitPipelineArgument(rest.slice(1), true);
        return await runJob(pipeline!, paths, settings, {
          fullRefresh: values["full-refresh"] ?? false,
          withDownstream: values["with-downstream"] ?? false,
          since: parseSince(values.since),
        });
      }
      case "offsets":
        if (rest[0] !== "show" && rest[0] !== "reset") break;
        return await offsets(rest[0], rest.slice(1), settings, values);
    }
    console.error(`Unknown command: ${positionals.join(" ")}\n\n${USAGE}`);
    return 2;
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(error.message);
      return 2;
    }
    const refused = refusedPermission(error);
    if (refused) {
      console.error(refused);
      return 1;
    }
    // Anything else still ends the command, without a password in the trace.
    console.error(redactSecrets((error as Error)?.stack ?? String(error)));
    return 1;
  } finally {
    await tearDownLogging();
  }
}

/**
 * One line for a permission Deno refused (a narrow `--allow-*` run): which
 * one, and how to get the flags this run needs; a stack trace says nothing
 * more to the user. Undefined for other errors.
 */
function refusedPermission(error: unknown): string | undefined {
  for (let cause = error, depth = 0; cause instanceof Error && depth < 8; depth++) {
    if (cause instanceof Deno.errors.NotCapable || cause instanceof Deno.errors.PermissionDenied) {
      const what = cause.message.replace(/, run again with the (--allow-\w+) flag$/, " ($1)");
      return `Missing permission: ${what}. Print the flags this run needs with ` +
        `"sluice permissions <configs>", given the same environment and options ` +
        `(--offsets, --bootstrap, --listen, --cluster-url) as this run.`;
    }
    cause = cause.cause;
  }
  return undefined;
}

function requireConfigs(paths: string[]): void {
  if (paths.length === 0) {
    throw new ConfigError([{
      path: "arguments",
      message: "name at least one config file or folder",
    }]);
  }
}

async function validate(paths: string[], settings: WorkerSettings) {
  requireConfigs(paths);
  const { loadWithBuiltins } = await import("./worker.ts");
  const { configWarnings } = await import("../core/_plan.ts");
  const specs = await loadWithBuiltins(paths, settings);
  for (const spec of specs) {
    const chain = [
      spec.source.plugin.name,
      ...spec.transforms.map((t) => `${t.alias}(${t.plugin.name})`),
      spec.sink.plugin.name,
    ].join(" -> ");
    const when = spec.source.plugin.mode === "stream"
      ? "stream"
      : spec.options["job.schedule"]
      ? `batch, ${spec.options["job.schedule"]} UTC`
      : spec.options["job.depends.on"].length > 0
      ? `batch, after ${spec.options["job.depends.on"].join(", ")}`
      : "batch, on demand";
    console.log(`${spec.name}: ${chain} [${when}]`);
  }
  for (const warning of await configWarnings(specs)) console.log(`warning: ${warning}`);
  console.log(`${specs.length} pipeline(s) valid.`);
  return 0;
}

async function run(
  paths: string[],
  settings: WorkerSettings,
  flags: OpsFlags & { readonly "keep-failed"?: boolean },
) {
  requireConfigs(paths);
  const registry = lazyBuiltinRegistry();
  // One batch of imports, loaded together while the configs are read.
  const [
    { buildWithBuiltins, ClusterCoordinators, loadWithBuiltins, workerEnvironment },
    { configWarnings },
    { prepareOperations },
    { Runtime },
    { formatSummary },
  ] = await Promise.all([
    import("./worker.ts"),
    import("../core/_plan.ts"),
    import("./ops.ts"),
    import("../core/runtime.ts"),
    import("./summary.ts"),
  ]);
  const specs = await loadWithBuiltins(paths, settings, registry);
  for (const warning of await configWarnings(specs)) {
    getLogger(["sluice", "config"]).warn(warning);
  }
  const ops = await prepareOperations(
    specs,
    paths,
    flags,
    (entries) => buildWithBuiltins(entries, settings, registry),
  );
  const environment = { ...workerEnvironment(settings), observer: ops.metrics };
  await using _offsets = {
    [Symbol.asyncDispose]: async () => await environment.offsets.close?.(),
  };
  await using cluster = new ClusterCoordinators(settings);
  const alone = cluster.uncoordinated(specs);
  if (alone.length > 0) {
    getLogger(["sluice", "cluster"]).info(
      "Batch jobs without a cluster database (their sink is not PostgreSQL and --cluster-url is not set): {jobs}; every process running these configs runs them",
      { jobs: alone.join(", ") },
    );
  }
  getLogger(["sluice", "cluster"]).info("Worker {worker} starting", { worker: settings.workerId });
  if (!settings.clusterUrl && specs.some((spec) => spec.source.plugin.mode === "stream")) {
    getLogger(["sluice", "cluster"]).debug(
      "Offsets of pipelines whose sink keeps none are in {file}: with several processes, give --cluster-url so they share them",
      { file: settings.offsetsFile },
    );
  }
  const runtime = new Runtime(specs, environment, {
    keepFailed: flags["keep-failed"],
    coordinator: cluster.of,
    maxParallelJobs: settings.maxParallelJobs,
    workerId: settings.workerId,
  });
  await using _operations = await ops.start(runtime, registry, environment.offsets);
  const reports: JobReport[] = [];
  runtime.onReport((report) => reports.push(report));
  const stop = () => {
    getLogger(["sluice"]).info("Signal received; shutting down gracefully");
    runtime.stop();
  };
  Deno.addSignalListener("SIGINT", stop);
  Deno.addSignalListener("SIGTERM", stop);
  try {
    const longRunning = runtime.start();
    if (longRunning) await waitForAbort(runtime.signal);
    await runtime.idle();
  } finally {
    Deno.removeSignalListener("SIGINT", stop);
    Deno.removeSignalListener("SIGTERM", stop);
  }
  if (reports.length > 0) console.log(formatSummary(reports));
  return reports.some((report) => report.status === "failed") ? 1 : 0;
}

async function runJob(
  name: string,
  paths: string[],
  settings: WorkerSettings,
  options: { fullRefresh: boolean; withDownstream: boolean; since?: Date },
) {
  requireConfigs(paths);
  if (options.since && options.fullRefresh) {
    throw new ConfigError([{
      path: "--since",
      message: "a window (--since) and --full-refresh exclude each other: give one",
    }]);
  }
  const { ClusterCoordinators, loadWithBuiltins, workerEnvironment } = await import("./worker.ts");
  const { terminalProgress } = await import("./progress.ts");
  const { Runtime } = await import("../core/runtime.ts");
  const { formatSummary } = await import("./summary.ts");
  const specs = await loadWithBuiltins(paths, settings);
  const environment = workerEnvironment(settings);
  await using _offsets = {
    [Symbol.asyncDispose]: async () => await environment.offsets.close?.(),
  };
  await using cluster = new ClusterCoordinators(settings);
  // Rows, rows/s and an ETA on stderr while the job runs, only on a terminal.
  using progress = terminalProgress();
  const runtime = new Runtime(specs, { ...environment, observer: progress }, {
    coordinator: cluster.of,
  });
  const reports: JobReport[] = [];
  runtime.onReport((report) => reports.push(report));
  const stop = () => runtime.stop();
  Deno.addSignalListener("SIGINT", stop);
  Deno.addSignalListener("SIGTERM", stop);
  try {
    await runtime.runJob(name, { ...options, noRetries: true });
    await runtime.idle();
  } catch (error) {
    console.error(redactedMessage(error));
    return 2;
  } finally {
    Deno.removeSignalListener("SIGINT", stop);
    Deno.removeSignalListener("SIGTERM", stop);
  }
  console.log(formatSummary(reports));
  return reports.some((report) => report.status === "failed") ? 1 : 0;
}

function parseSince(since: string | undefined): Date | undefined {
  if (since === undefined) return undefined;
  if (Number.isNaN(Date.parse(since))) {
    throw new ConfigError([{
      path: "--since",
      message:
        `expected an ISO 8601 time such as 2024-05-01T00:00:00Z: current value is "${since}"`,
    }]);
  }
  return new Date(since);
}

async function offsets(
  action: "show" | "reset",
  args: string[],
  settings: WorkerSettings,
  flags: ResetFlags & { url?: string; listen?: string; token?: string },
) {
  const { changeFromFlags, formatOffsets, resetOffsets, showOffsets, splitPipelineArgument } =
    await import("./offsets.ts");
  const { ClusterCoordinators, loadWithBuiltins, workerEnvironment } = await import("./worker.ts");
  const { statusUrl } = await import("./status.ts");
  const { paths, pipeline } = await splitPipelineArgument(args, action === "reset");
  const specs = await loadWithBuiltins(paths, settings);
  const chosen = pipeline ? specs.filter((spec) => spec.name === pipeline) : specs;
  if (chosen.length === 0) {
    console.error(
      `No pipeline named "${pipeline}"; pipelines are: ${specs.map((s) => s.name).join(", ")}`,
    );
    return 2;
  }
  const store = workerEnvironment(settings).offsets;
  try {
    if (action === "show") {
      console.log(await showOffsets(chosen, store));
      return 0;
    }
    const change = changeFromFlags(chosen[0], flags);
    const endpoint = {
      url: statusUrl(flags.url, flags.listen),
      token: flags.token ?? (Deno.env.get("SLUICE_API_TOKEN") || undefined),
    };
    await using cluster = new ClusterCoordinators(settings);
    const { entries, via } = await resetOffsets(
      chosen[0],
      store,
      change,
      endpoint,
      cluster.of(chosen[0]),
    );
    console.log(`Offsets of ${chosen[0].name} changed ${via}.`);
    console.log(formatOffsets(chosen[0].name, entries));
    return 0;
  } catch (error) {
    if (!(error instanceof OffsetChangeError)) throw error;
    console.error(error.message);
    return 2;
  } finally {
    await store.close?.();
  }
}

async function plan(paths: string[], settings: WorkerSettings) {
  requireConfigs(paths);
  // The plan needs table and topic names, not secrets: unresolved references get stand-ins.
  const standIns: string[] = [];
  const { loadWithBuiltins } = await import("./worker.ts");
  const { buildPlan, formatPlan } = await import("../core/_plan.ts");
  // Nor a broker: without --bootstrap, Kafka plugins get a stand-in address.
  const bootstrapServers = settings.bootstrapServers || "unresolved.invalid:9092";
  const specs = await loadWithBuiltins(
    paths,
    { ...settings, bootstrapServers },
    lazyBuiltinRegistry(),
    {
      standIn: (path) => standIns.push(path),
    },
  );
  const built = await buildPlan(specs);
  console.log(formatPlan(built));
  if (standIns.length > 0) {
    console.log(
      `\n${standIns.length} provider reference(s) could not be resolved and got stand-ins ` +
        `(the plan needs names, not secrets): ${standIns.join(", ")}`,
    );
  }
  const broken = built.orphans.length > 0 || built.routes.some((r) => r.consumers.length === 0);
  return broken ? 1 : 0;
}

async function plugins(name?: string): Promise<number> {
  const { pipelineOptions } = await import("../core/config.ts");
  const { describeOptions } = await import("../api/options.ts");
  const registry = await lazyBuiltinRegistry().loadAll();
  const all = registry.list();
  const chosen = name ? all.filter((p) => p.name === name || p.aliases?.includes(name)) : all;
  if (name && chosen.length === 0) chosen.push(...await pluginsInFile(registry, name));
  if (name && chosen.length === 0) {
    const names = all.map((p) => `${p.name} (${p.kind})`).join(", ");
    console.error(`No plugin named "${name}". Plugins: ${names}`);
    return 2;
  }
  const sections = chosen.map((plugin) => {
    const title = `${plugin.name} (${plugin.kind}${
      plugin.kind === "source" ? `, ${plugin.mode}` : ""
    }): ${plugin.summary}`;
    const aliases = plugin.aliases?.length ? `\n  aliases: ${plugin.aliases.join(", ")}` : "";
    return `${title}${aliases}\n${formatOptions(describeOptions(plugin.config))}`;
  });
  if (!name) {
    sections.push(
      `pipeline options (every pipeline):\n${formatOptions(describeOptions(pipelineOptions))}`,
    );
  }
  console.log(sections.join("\n\n"));
  return 0;
}

/** The plugins a module path exports (`sluice plugins ./my_plugin.ts`), of any kind. */
async function pluginsInFile(registry: Registry, path: string): Promise<Plugin[]> {
  const kinds = ["source", "sink", "transform", "predicate"] as const;
  const found = await Promise.all(kinds.map((kind) => registry.resolve(kind, path, Deno.cwd())));
  const plugins = found.filter((result): result is Plugin => typeof result !== "string");
  if (plugins.length === 0 && /\.(ts|js|mjs|mts)$/.test(path)) {
    console.error(found[0]);
  }
  return plugins;
}

function formatOptions(options: readonly OptionDoc[]): string {
  return options.map((option) => {
    const fallback = option.default !== undefined
      ? ` (default ${JSON.stringify(option.default)})`
      : option.required
      ? " (required)"
      : "";
    return `  ${option.key}: ${option.type}${fallback}\n      ${option.description}`;
  }).join("\n");
}

function waitForAbort(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) resolve();
    else signal.addEventListener("abort", () => resolve(), { once: true });
  });
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
