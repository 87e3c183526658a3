/**
 * An operator's view of a pipeline's offsets, and changes to them: read and
 * written where the pipeline really keeps them (the sink's table when the
 * sink keeps offsets and `offset.storage` allows it, else the worker's
 * store), shown and changed by the source (a Kafka source also moves its
 * consumer group). Used by `GET/DELETE/PATCH /connectors/{name}/offsets`
 * and `sluice offsets`. The pipeline must be stopped meanwhile: the callers
 * check their own process, and a change is refused while the source says
 * another process streams from it (`runningElsewhere`).
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { OffsetChangeError } from "../api/errors.ts";
import type { OffsetChange, OffsetEntry, PluginContext, Sink } from "../api/plugin.ts";
import type { JsonValue } from "../api/record.ts";
import type { PipelineSpec } from "./config.ts";
import type { OffsetStore } from "./offsets.ts";
import type { JobCoordinator } from "./cluster.ts";

/** Where one pipeline's stored offset lives, opened. */
interface OffsetPlace extends AsyncDisposable {
  /** "the sink" or "the worker's offset store", for messages. */
  readonly where: string;
  read(): Promise<JsonValue | undefined>;
  write(value: JsonValue): Promise<void>;
  delete(): Promise<void>;
}

function pluginContext(spec: PipelineSpec): PluginContext {
  return {
    pipeline: spec.name,
    logger: getLogger(["sluice", "offsets", spec.name]),
    signal: new AbortController().signal,
    sourceMode: spec.source.plugin.mode,
  };
}

/** Opens the place the pipeline reads its offset from when it starts. */
async function openPlace(spec: PipelineSpec, store: OffsetStore): Promise<OffsetPlace> {
  const name = spec.name;
  if (spec.options["offset.storage"] !== "file") {
    const sink: Sink = await spec.sink.plugin.create(spec.sink.config, pluginContext(spec));
    const offsets = sink.offsets;
    if (offsets) {
      const refuse = () =>
        Promise.reject(
          new OffsetChangeError(
            `Sink ${spec.sink.plugin.name} keeps the offsets of ${name} but cannot change them`,
          ),
        );
      return {
        where: `the sink (${spec.sink.plugin.name})`,
        read: () => offsets.read(name),
        write: (value) => offsets.write ? offsets.write(name, value) : refuse(),
        delete: () => offsets.delete ? offsets.delete(name) : refuse(),
        [Symbol.asyncDispose]: () => sink.close(),
      };
    }
    await sink.close();
  }
  return {
    where: "the worker's offset store",
    read: () => store.read(name),
    write: (value) => store.write(name, value),
    delete: () => store.delete(name),
    [Symbol.asyncDispose]: () => Promise.resolve(),
  };
}

/** Kafka Connect's list for a source that does not describe its offsets: one entry. */
function plainEntries(spec: PipelineSpec, stored: JsonValue | undefined): OffsetEntry[] {
  if (stored === undefined) return [];
  const offset = typeof stored === "object" && stored !== null && !Array.isArray(stored)
    ? stored
    : { position: stored };
  return [{ partition: { pipeline: spec.name }, offset }];
}

/** `GET /connectors/{name}/offsets`: the pipeline's position, as Kafka Connect lists it. */
export async function listOffsets(spec: PipelineSpec, store: OffsetStore): Promise<OffsetEntry[]> {
  await using place = await openPlace(spec, store);
  const stored = await place.read();
  const source = spec.source.plugin;
  return source.offsets
    ? await source.offsets.list(spec.source.config, stored, pluginContext(spec))
    : plainEntries(spec, stored);
}

/**
 * Applies `change` to a stopped pipeline's position and returns the new
 * list. Throws {@linkcode OffsetChangeError} for what the source cannot do.
 */
export async function changeOffsets(
  spec: PipelineSpec,
  store: OffsetStore,
  change: OffsetChange,
  coordinator?: JobCoordinator,
): Promise<OffsetEntry[]> {
  await refuseWhileRunningElsewhere(spec, coordinator);
  {
    await using place = await openPlace(spec, store);
    const stored = await place.read();
    const source = spec.source.plugin;
    const next = source.offsets
      ? await source.offsets.change(spec.source.config, stored, change, pluginContext(spec))
      : plainChange(spec, change);
    if (next === undefined) await place.delete();
    else await place.write(next);
    getLogger(["sluice", "offsets"]).info(
      "Offsets of {pipeline} changed in {where} ({change}): now {offset}",
      {
        pipeline: spec.name,
        where: place.where,
        change: change.to === "timestamp" ? `to ${change.at.toISOString()}` : change.to,
        offset: next === undefined ? "none" : JSON.stringify(next),
      },
    );
  }
  return await listOffsets(spec, store);
}

/**
 * Refuses a change while a process streams from the source's position
 * (holds its replication slot, is a member of its consumer group): that
 * process keeps its position in memory and would write it back at its next
 * commit, undoing the change without a word.
 */
async function refuseWhileRunningElsewhere(
  spec: PipelineSpec,
  coordinator: JobCoordinator | undefined,
): Promise<void> {
  const check = spec.source.plugin.offsets?.runningElsewhere;
  let holder = check ? await check(spec.source.config, pluginContext(spec)) : undefined;
  // A batch run keeps its watermark in memory and stores it at its end.
  const worker = holder === undefined ? await coordinator?.runningOn?.(spec.name) : undefined;
  if (worker !== undefined) holder = `worker ${worker} is running the job now`;
  if (holder === undefined) return;
  throw new OffsetChangeError(
    `Cannot change the offsets of ${spec.name}: it is running (${holder}), and the running ` +
      `process would write its own position back. Stop it first: stop that process, or ` +
      `reset through its REST API (PUT /connectors/${spec.name}/stop, then ` +
      `sluice offsets reset … --url <its address>, then PUT /connectors/${spec.name}/resume)`,
  );
}

/** A source without offsets support: a reset, or one entry's offset stored as given. */
function plainChange(spec: PipelineSpec, change: OffsetChange): JsonValue | undefined {
  if (change.to === "reset" || change.to === "earliest") return undefined;
  if (change.to === "entries" && change.entries.length === 1) {
    const offset = change.entries[0].offset;
    if (offset === null) return undefined;
    return "position" in offset && Object.keys(offset).length === 1
      ? offset.position
      : { ...offset };
  }
  throw new OffsetChangeError(
    `Source ${spec.source.plugin.name} cannot move to ${
      change.to === "entries" ? `${change.entries.length} entries` : change.to
    }: only a reset, or one entry with its offset, is possible`,
  );
}
