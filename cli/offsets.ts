/**
 * `sluice offsets show` and `sluice offsets reset`: a pipeline's stored
 * position, and moving it. A reset acts on a stopped pipeline: when a
 * `sluice run` process answers at the endpoint (`--url`, `SLUICE_URL`,
 * `--listen`) and runs the pipeline, the reset goes through its REST API
 * (`PATCH /connectors/{name}/offsets`), which requires the pipeline to be
 * STOPPED; otherwise the offsets are changed where they live (the sink's
 * table or the offsets file, and a Kafka source's consumer group).
 *
 * @module
 */
import { ConfigError, OffsetChangeError } from "../api/errors.ts";
import type { OffsetChange, OffsetEntry } from "../api/plugin.ts";
import type { PipelineSpec } from "../core/config.ts";
import type { JobCoordinator } from "../core/cluster.ts";
import { changeOffsets, listOffsets } from "../core/offset_admin.ts";
import type { OffsetStore } from "../core/offsets.ts";
import { formatTable } from "./_table.ts";

/** Where a running process may answer, and its token. */
export interface Endpoint {
  readonly url: string;
  readonly token?: string;
}

/** The reset flags, as given. */
export interface ResetFlags {
  readonly "to-earliest"?: boolean;
  readonly "to-latest"?: boolean;
  readonly "to-timestamp"?: string;
  readonly "to-offset"?: string;
}

/**
 * Splits `<configs…> <pipeline>` (either order): the argument that is not a
 * path is the pipeline. When every argument is a path (a folder named like
 * the pipeline sits in the current directory) and a name is required, the one
 * argument written as a bare name (no `/`) is the pipeline, and the others
 * are the configs; a config folder is then written `./name` or `name/`.
 */
export async function splitPipelineArgument(
  args: readonly string[],
  required: boolean,
): Promise<{ paths: string[]; pipeline?: string }> {
  const exists = await Promise.all(
    args.map((arg) => Deno.stat(arg).then(() => true, () => false)),
  );
  let names = args.filter((_, i) => !exists[i]);
  let paths = args.filter((_, i) => exists[i]);
  if (required && names.length === 0 && args.length > 1) {
    const bare = args.filter((arg) => !/[\\/]/.test(arg));
    if (bare.length === 1) {
      names = bare;
      paths = args.filter((arg) => arg !== bare[0]);
    } else if (bare.length > 1) {
      throw new ConfigError([{
        path: "arguments",
        message: `cannot tell the pipeline name from the config paths: ${
          bare.map((arg) => `"${arg}"`).join(", ")
        } all exist as files or folders here; write config folders as "./${bare[0]}" or "${
          bare[0]
        }/" and the pipeline name bare`,
      }]);
    }
  }
  if (names.length > 1 || (required && names.length === 0) || paths.length === 0) {
    throw new ConfigError([{
      path: "arguments",
      message: `expected config files or folders and ${
        required ? "one pipeline name" : "at most one pipeline name"
      }: ${names.length > 1 ? `${names.join(", ")} are not files` : `got ${args.join(" ")}`}`,
    }]);
  }
  return { paths, pipeline: names[0] };
}

/** The change the flags ask for, in the terms of the pipeline's source. */
export function changeFromFlags(spec: PipelineSpec, flags: ResetFlags): OffsetChange {
  const given = (["to-earliest", "to-latest", "to-timestamp", "to-offset"] as const)
    .filter((flag) => flags[flag] !== undefined && flags[flag] !== false);
  if (given.length !== 1) {
    throw new ConfigError([{
      path: "offsets reset",
      message:
        `give exactly one of --to-earliest, --to-latest, --to-timestamp <ISO time>, --to-offset <…>${
          given.length > 1 ? `: got ${given.map((f) => `--${f}`).join(", ")}` : ""
        }`,
    }]);
  }
  if (flags["to-earliest"]) return { to: "earliest" };
  if (flags["to-latest"]) return { to: "latest" };
  const time = flags["to-timestamp"];
  if (time !== undefined) {
    if (Number.isNaN(Date.parse(time))) {
      throw new ConfigError([{
        path: "--to-timestamp",
        message:
          `expected an ISO 8601 time such as 2024-05-01T00:00:00Z: current value is "${time}"`,
      }]);
    }
    return { to: "timestamp", at: new Date(time) };
  }
  return { to: "entries", entries: entriesFromOffsetFlag(spec, flags["to-offset"]!) };
}

/**
 * `--to-offset`: `partition:offset[,…]` (or `topic:partition:offset`) for a
 * Kafka source, an LSN for `postgres_cdc`.
 */
function entriesFromOffsetFlag(spec: PipelineSpec, value: string): OffsetEntry[] {
  const source = spec.source.plugin;
  const bad = (message: string) => new ConfigError([{ path: "--to-offset", message }]);
  if (source.name === "postgres_cdc") {
    if (!/^[0-9A-Fa-f]{1,8}\/[0-9A-Fa-f]{1,8}$/.test(value)) {
      throw bad(`expected an LSN such as 0/16B3748: current value is "${value}"`);
    }
    return [{ partition: {}, offset: { lsn: value.toUpperCase() } }];
  }
  const subscribes = source.plan?.(spec.source.config as never)?.subscribes;
  if (!subscribes) {
    throw bad(
      `${source.name} has no partition:offset positions: use --to-earliest${
        source.name === "postgres_query" ? " (a full read) or --to-timestamp <time>" : ""
      }`,
    );
  }
  const topics = subscribes.topics ?? [];
  return value.split(",").map((part) => {
    const pieces = part.trim().split(":");
    const [topic, partition, offset] = pieces.length === 3
      ? pieces
      : pieces.length === 2 && topics.length === 1
      ? [topics[0], ...pieces]
      : [];
    if (topic === undefined || !/^\d+$/.test(partition) || !/^\d+$/.test(offset)) {
      throw bad(
        `expected partition:offset[,partition:offset] (topic:partition:offset when the pipeline reads ${
          topics.length === 1 ? "a pattern" : "several topics"
        }): current value is "${value}"`,
      );
    }
    return {
      partition: { kafka_topic: topic, kafka_partition: Number(partition) },
      offset: { kafka_offset: Number(offset) },
    };
  });
}

/** Kafka Connect's entries as a table. */
export function formatOffsets(pipeline: string, entries: readonly OffsetEntry[]): string {
  if (entries.length === 0) return `${pipeline}: no stored offset (the next run starts afresh)`;
  return `${pipeline}:\n` + formatTable(
    ["partition", "offset"],
    entries.map((entry) => [JSON.stringify(entry.partition), JSON.stringify(entry.offset)]),
  );
}

/** The body of the PATCH that `change` becomes for a running process. */
function patchBody(change: OffsetChange): unknown {
  switch (change.to) {
    case "entries":
      return { offsets: change.entries };
    case "timestamp":
      return { reset_to: change.at.toISOString() };
    case "reset":
      return undefined;
    default:
      return { reset_to: change.to };
  }
}

/**
 * What a process at `endpoint` says about `pipeline`: its state, or
 * undefined when no process answers or it does not run that pipeline.
 */
async function runningState(endpoint: Endpoint, pipeline: string): Promise<string | undefined> {
  const headers: Record<string, string> = {};
  if (endpoint.token) headers.authorization = `Bearer ${endpoint.token}`;
  let response: Response;
  try {
    response = await fetch(`${endpoint.url}/connectors/${encodeURIComponent(pipeline)}/status`, {
      headers,
      signal: AbortSignal.timeout(5_000),
    });
  } catch {
    return undefined; // nothing listens: no process runs it here
  }
  if (response.status === 404) {
    await response.body?.cancel();
    return undefined;
  }
  if (!response.ok) {
    throw new Error(
      `The Sluice process at ${endpoint.url} answered ${response.status}: ${await response.text()}`,
    );
  }
  const status = await response.json() as { connector: { state: string } };
  return status.connector.state;
}

/** Resets a pipeline's offsets (through a running process when one runs it); returns the new list. */
export async function resetOffsets(
  spec: PipelineSpec,
  store: OffsetStore,
  change: OffsetChange,
  endpoint: Endpoint,
  coordinator?: JobCoordinator,
): Promise<{ entries: OffsetEntry[]; via: string }> {
  const state = await runningState(endpoint, spec.name);
  if (state === undefined) {
    return { entries: await changeOffsets(spec, store, change, coordinator), via: "directly" };
  }
  if (state !== "STOPPED") {
    throw new OffsetChangeError(
      `${spec.name} is ${state} in the Sluice process at ${endpoint.url}: stop it first ` +
        `(curl -X PUT ${endpoint.url}/connectors/${spec.name}/stop), reset, then resume it`,
    );
  }
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (endpoint.token) headers.authorization = `Bearer ${endpoint.token}`;
  const body = patchBody(change);
  const response = await fetch(
    `${endpoint.url}/connectors/${encodeURIComponent(spec.name)}/offsets`,
    {
      method: body === undefined ? "DELETE" : "PATCH",
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    },
  );
  const answer = await response.json() as { message: string; offsets?: OffsetEntry[] };
  if (!response.ok) throw new OffsetChangeError(answer.message);
  return { entries: answer.offsets ?? [], via: `through the process at ${endpoint.url}` };
}

/** The stored offsets of `specs`, as tables. */
export async function showOffsets(
  specs: readonly PipelineSpec[],
  store: OffsetStore,
): Promise<string> {
  const parts: string[] = [];
  for (const spec of specs) parts.push(formatOffsets(spec.name, await listOffsets(spec, store)));
  return parts.join("\n\n");
}
