/**
 * `sluice permissions <config>…`: the narrowest Deno permission flags that
 * the given pipelines need, computed from their configs, so that Sluice (and
 * any plugin it loads) runs without `-A`:
 *
 * - `--allow-net`: exactly the `host:port` of every database and broker the
 *   configs name (`connection.url`, `database.hostname`/`database.port`,
 *   `bootstrap.servers`, and the worker's `--bootstrap`);
 * - `--allow-read`: the config files, plugin modules named by path, files
 *   read by `${file:…}` / `${directory:…}`, and the folders Sluice writes;
 * - `--allow-write`: the folders of the offsets file, dead-letter files and
 *   dedup state files;
 * - `--allow-env`: the variables the configs reference, those Sluice itself
 *   reads, and those its drivers read;
 * - `--allow-sys`: only what the drivers need (see {@linkcode DRIVER_SYS}).
 *
 * Options are found by their key names (`*.url`, `*.hostname`, `*.path`,
 * …), never by plugin names, so a plugin that follows the Kafka Connect
 * naming is covered too. Computing the flags needs only `--allow-read` and
 * `--allow-env` (it imports the plugins to validate the configs, but opens
 * no connection):
 *
 * ```sh
 * FLAGS=$(deno run --allow-read --allow-env cli/main.ts permissions pipelines/)
 * deno run $FLAGS cli/main.ts run pipelines/
 * ```
 *
 * @module
 */
import { DEFAULT_LISTEN, parseListen } from "../core/http/server.ts";
import { type PipelineSpec, type RawConnector, readConnectorFiles } from "../core/config.ts";
import { dirname, isAbsolute, resolve } from "../core/_path.ts";
import { parseBootstrapServers } from "../drivers/kafka.ts";
import { loadWithBuiltins, type WorkerSettings } from "./worker.ts";

/** Environment variables Sluice itself reads (cli/worker.ts). */
export const SLUICE_ENV = [
  "SLUICE_OFFSETS_FILE",
  "SLUICE_BOOTSTRAP_SERVERS",
  "SLUICE_LISTEN",
  "SLUICE_API_TOKEN",
  "SLUICE_ALERTS_FILE",
  "SLUICE_CLUSTER_URL",
  "SLUICE_WORKER_ID",
  "SLUICE_MAX_PARALLEL_JOBS",
] as const;

/**
 * Environment variables the npm drivers read when they connect, found by
 * running a batch job and a CDC job under the computed flags (Deno refuses a
 * `process.env` read of a variable not granted) and confirmed in the source
 * of postgres.js 3.4.9 (`parseOptions`): libpq-style `PG*` fallbacks for
 * every connection option, and the OS user name when a URL names no user.
 */
export const DRIVER_ENV = [
  ...[
    "HOST",
    "PORT",
    "USER",
    "USERNAME",
    "DATABASE",
    "PASSWORD",
    "APPNAME",
    "MAX",
    "SSL",
    "SSLNEGOTIATION",
    "IDLE_TIMEOUT",
    "CONNECT_TIMEOUT",
    "MAX_LIFETIME",
    "MAX_PIPELINE",
    "BACKOFF",
    "KEEP_ALIVE",
    "PREPARE",
    "DEBUG",
    "FETCH_TYPES",
    "PUBLICATIONS",
    "TARGET_SESSION_ATTRS",
    "TARGETSESSIONATTRS",
  ].map((name) => `PG${name}`),
  "USERNAME",
  "USER",
  "LOGNAME",
] as const;

/** `--allow-sys` kinds the drivers need (empty: none). */
export const DRIVER_SYS = [] as const;

/** The permissions a set of pipelines needs. */
export interface Permissions {
  readonly net: readonly string[];
  readonly read: readonly string[];
  readonly write: readonly string[];
  readonly env: readonly string[];
  readonly sys: readonly string[];
}

const PROVIDER = /\$\{(env|file|directory):([^}]*)\}/g;
const POSTGRES_URL = /^(?:jdbc:)?postgres(?:ql)?:\/\//;

/** Reads the configs at `paths` and computes what they need. */
export async function requiredPermissions(
  paths: readonly string[],
  settings: WorkerSettings,
  listen: string = Deno.env.get("SLUICE_LISTEN") ?? DEFAULT_LISTEN,
): Promise<Permissions> {
  const connectors = await readConnectorFiles(paths);
  const specs = await loadWithBuiltins(paths, settings);
  const found = {
    net: new Set<string>(),
    read: new Set<string>(paths.map((path) => resolve(path))),
    write: new Set<string>(),
    env: new Set<string>([...SLUICE_ENV, ...DRIVER_ENV]),
    sys: new Set<string>(DRIVER_SYS),
    usesKafka: false,
  };
  for (const connector of connectors) referencedByProviders(connector, found);
  for (const spec of specs) usedBySpec(spec, connectorOf(connectors, spec), found);
  const offsets = resolve(settings.offsetsFile);
  found.write.add(dirname(offsets));
  if (settings.bootstrapServers) {
    addBrokers(settings.bootstrapServers, found.net);
    found.usesKafka = true;
  }
  if (settings.clusterUrl) addPostgresUrl(settings.clusterUrl, found.net);
  if (found.usesKafka) { for (const path of kafkaClientFiles()) found.read.add(path); }
  // The operations endpoint of `sluice run` (a port of 0 lets the system choose).
  const address = parseListen(listen);
  if (address !== "off") {
    found.net.add(address.port === 0 ? address.hostname : `${address.hostname}:${address.port}`);
  }
  // Whatever Sluice writes it may read back (offsets, dedup state).
  for (const folder of found.write) found.read.add(folder);
  const sorted = (set: Set<string>) => [...set].sort();
  return {
    net: sorted(found.net),
    read: sorted(found.read),
    write: sorted(found.write),
    env: sorted(found.env),
    sys: sorted(found.sys),
  };
}

/** The permissions as `deno run` flags; an empty list grants nothing of that kind. */
export function permissionFlags(permissions: Permissions): string[] {
  const flags: string[] = [];
  const add = (flag: string, values: readonly string[]) => {
    if (values.length > 0) flags.push(`--allow-${flag}=${values.join(",")}`);
  };
  add("net", permissions.net);
  add("read", permissions.read);
  add("write", permissions.write);
  add("env", permissions.env);
  add("sys", permissions.sys);
  return flags;
}

function connectorOf(connectors: readonly RawConnector[], spec: PipelineSpec): RawConnector {
  return connectors.find((connector) => connector.name === spec.name)!;
}

type Found = {
  net: Set<string>;
  read: Set<string>;
  write: Set<string>;
  env: Set<string>;
  usesKafka: boolean;
};

function referencedByProviders(connector: RawConnector, found: Found): void {
  for (const value of Object.values(connector.config)) {
    if (typeof value !== "string") continue;
    for (const [, provider, argument] of value.matchAll(PROVIDER)) {
      if (provider === "env") {
        found.env.add(argument);
        continue;
      }
      const path = argument.slice(0, argument.lastIndexOf(":"));
      const full = isAbsolute(path) ? path : resolve(connector.baseDir, path);
      found.read.add(
        provider === "directory" ? resolve(full, argument.slice(path.length + 1)) : full,
      );
    }
  }
}

function usedBySpec(spec: PipelineSpec, connector: RawConnector, found: Found): void {
  const plugins = [
    spec.source,
    spec.sink,
    ...spec.transforms,
    ...spec.transforms.flatMap((t) => t.predicate ? [t.predicate] : []),
  ];
  for (const plugin of plugins) {
    if (isModulePath(plugin.reference)) {
      found.read.add(
        plugin.reference.startsWith("file:")
          ? new URL(plugin.reference).pathname
          : resolve(connector.baseDir, plugin.reference),
      );
    }
    if (plugin.config && typeof plugin.config === "object") {
      fromOptions(plugin.config as Record<string, unknown>, found);
    }
  }
  fromOptions(spec.options as unknown as Record<string, unknown>, found);
}

/**
 * Hosts and files in one plugin's parsed options, recognised by their keys,
 * also inside the settings objects plugins build from them (a sink's
 * `connection` group, a source's camelCase `bootstrapServers`).
 */
function fromOptions(options: Record<string, unknown>, found: Found, depth = 0): void {
  const text = (key: string) => typeof options[key] === "string" ? options[key] as string : "";
  for (const [key, value] of Object.entries(options)) {
    if (value && typeof value === "object" && !Array.isArray(value) && depth < 3) {
      fromOptions(value as Record<string, unknown>, found, depth + 1);
    }
    if (typeof value !== "string" || value === "") continue;
    if (POSTGRES_URL.test(value)) addPostgresUrl(value, found.net);
    else if (key === "bootstrap.servers" || key === "bootstrapServers") {
      addBrokers(value, found.net);
      found.usesKafka = true;
    } else if (/(^|\.)path$|Path$/.test(key)) found.write.add(dirname(resolve(value)));
  }
  const host = text("database.hostname");
  if (host) {
    const port = options["database.port"] ?? 5432;
    found.net.add(`${host.includes(":") && !host.startsWith("[") ? `[${host}]` : host}:${port}`);
  }
}

function addPostgresUrl(url: string, net: Set<string>): void {
  // Not new URL(): postgres.js accepts several hosts, postgres://a:5432,b:5433/db.
  const authority = /^(?:jdbc:)?postgres(?:ql)?:\/\/(?:[^@/]*@)?([^/?]*)/.exec(url)?.[1] ?? "";
  for (const entry of (authority || "localhost").split(",")) {
    const match = /^(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(decodeURIComponent(entry));
    if (match) net.add(`${match[1]}:${match[2] ?? 5432}`);
  }
}

/**
 * Files the Kafka client reads at run time, beside its code: the WebAssembly
 * CRC and compression codecs of `@platformatic/wasm-utils`, in Deno's npm
 * cache (or a `node_modules` folder).
 */
function kafkaClientFiles(): string[] {
  const home = Deno.env.get("HOME") ?? Deno.env.get("USERPROFILE") ?? "";
  const cache = Deno.env.get("DENO_DIR") ??
    (Deno.build.os === "darwin"
      ? `${home}/Library/Caches/deno`
      : Deno.build.os === "windows"
      ? `${Deno.env.get("LOCALAPPDATA")}/deno`
      : `${Deno.env.get("XDG_CACHE_HOME") ?? `${home}/.cache`}/deno`);
  const root = resolve(dirname(new URL(import.meta.url).pathname), "..");
  return [
    resolve(cache, "npm/registry.npmjs.org/@platformatic/wasm-utils"),
    resolve(root, "node_modules/@platformatic/wasm-utils"),
    resolve("node_modules/@platformatic/wasm-utils"),
  ].filter((path) => {
    try {
      return Deno.statSync(path).isDirectory;
    } catch {
      return false;
    }
  });
}

function addBrokers(servers: string, net: Set<string>): void {
  for (const server of parseBootstrapServers(servers)) net.add(server);
}

function isModulePath(name: string): boolean {
  return name.startsWith("./") || name.startsWith("../") || name.startsWith("/") ||
    name.startsWith("file:") || /\.(ts|js|mjs|mts)$/.test(name);
}
