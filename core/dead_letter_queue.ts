/**
 * Working off a pipeline's dead letters (`sluice dlq`): opening the
 * destination the pipeline writes them to, and replaying them through the
 * pipeline's own transforms and sink once the cause is fixed.
 *
 * A dead letter holds the record as the failing stage received it, so a
 * replay resumes there: a record that failed in the sink goes straight to
 * the sink (it was already transformed, and masked: it is never transformed
 * twice); one that failed in transform `t` goes through `t` and the steps
 * after it; one that failed before the transforms (a converter stage) goes
 * through the whole chain.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import type { DeadLetterStore, StoredDeadLetter } from "../api/dead_letters.ts";
import { encodeJson } from "../api/json.ts";
import type { PluginContext, RecordFailure, Sink } from "../api/plugin.ts";
import type { SluiceRecord } from "../api/record.ts";
import type { PipelineSpec } from "./config.ts";
import type { SluiceMetrics } from "./metrics.ts";
import { fileDeadLetterStore } from "./_dead_letters.ts";
import { chainBefore, chainDifference, chainOfStage, resumeStep } from "./_chain.ts";
import {
  applyTransformSteps,
  openTransformSteps,
  type PipelineEnvironment,
  type TransformStep,
} from "./pipeline.ts";

/** Refused dead letters logged one by one per replay; the rest are counted. */
const LOGGED_REFUSALS = 20;

/**
 * The dead-letter destination of `spec` as a store, or undefined when the
 * pipeline has none (it logs and skips failed records, or stops on them).
 */
export function openDeadLetterStore(
  spec: PipelineSpec,
  environment: Pick<PipelineEnvironment, "deadLetterTopicStore">,
): DeadLetterStore | undefined {
  const options = spec.options;
  const table = options["errors.deadletterqueue.table.name"];
  const topic = options["errors.deadletterqueue.topic.name"];
  const file = options["errors.deadletterqueue.file.path"];
  if (table) {
    const plugin = spec.sink.plugin;
    if (!plugin.deadLetterStore) {
      throw new Error(
        `Pipeline "${spec.name}": errors.deadletterqueue.table.name needs a sink that keeps dead letters; sink "${plugin.name}" does not`,
      );
    }
    return plugin.deadLetterStore(spec.sink.config, table);
  }
  if (topic) {
    if (!environment.deadLetterTopicStore) {
      throw new Error(
        `Pipeline "${spec.name}": errors.deadletterqueue.topic.name needs Kafka; set bootstrap.servers for the worker`,
      );
    }
    return environment.deadLetterTopicStore(topic, spec);
  }
  if (file) return fileDeadLetterStore(file);
  return undefined;
}

/**
 * Has the `sluice_dead_letters` gauge read the real size of every pipeline's
 * dead-letter destination (on scrape); dispose to release the stores.
 */
export function watchDeadLetterSizes(
  metrics: Pick<SluiceMetrics, "watchDeadLetters">,
  specs: readonly PipelineSpec[],
  environment: Pick<PipelineEnvironment, "deadLetterTopicStore">,
): AsyncDisposable {
  const stores: DeadLetterStore[] = [];
  for (const spec of specs) {
    let store: DeadLetterStore | undefined;
    try {
      store = openDeadLetterStore(spec, environment);
    } catch {
      continue; // The pipeline itself fails to start and says why.
    }
    if (!store) continue;
    stores.push(store);
    const opened = store;
    metrics.watchDeadLetters(spec.name, store.description, () => opened.count(spec.name));
  }
  return {
    async [Symbol.asyncDispose]() {
      await Promise.allSettled(stores.map((store) => store.close()));
    },
  };
}

/** What a replay did, by dead-letter id. */
export interface ReplayOutcome {
  /** Written durably by the sink (or skipped by it as stale) and removed from the destination. */
  readonly replayed: string[];
  /** Dropped by a transform on the way (as the pipeline would now) and removed. */
  readonly filtered: string[];
  /** Failed again: kept, with the attempt count raised and the new error. */
  readonly failed: { readonly letter: StoredDeadLetter; readonly failure: RecordFailure }[];
  /** Not tried and left as they are: their stage is no longer in the pipeline's chain. */
  readonly unplaced: string[];
  /**
   * Not written and left as they are, with the reason: they did not go
   * through the pipeline's current transform steps, or nothing shows that
   * they are newer than what the target holds (they could overwrite newer
   * data, or bring back a row the source deleted).
   */
  readonly refused: { readonly letter: StoredDeadLetter; readonly reason: string }[];
}

/** What an operator allows a replay beyond what it can verify. */
export interface ReplayOptions {
  /**
   * Replay records whose recorded transform steps differ from the current
   * ones (or were not recorded: dead letters of older versions) as if they
   * had gone through the current steps.
   */
  readonly assumeTransformed?: boolean;
  /**
   * Write records that nothing shows to be newer than the target row (no
   * source position or version on both sides, or no target row and a
   * source that cannot look rows up). Never writes a record whose row the
   * source is known to have deleted.
   */
  readonly writeUnverified?: boolean;
  /** Stops between chunks. */
  readonly signal?: AbortSignal;
}

export { resumeStep } from "./_chain.ts";

/** Records per sink write; no two records of one chunk share a topic and key (see `chunks`). */
const CHUNK_SIZE = 500;

const identityOf = (record: SluiceRecord) => `${record.topic}\u0000${encodeJson(record.key)}`;

type Item = { letter: StoredDeadLetter; record: SluiceRecord };
/** An item cleared for writing; `onlyNew` when it met no target row (see `SinkBatch.onlyNew`). */
type Cleared = Item & { onlyNew: boolean };

/**
 * Why `letter` must not resume at step `from` of the current chain, or
 * undefined when the steps before it are the ones it went through.
 */
function chainProblem(
  spec: PipelineSpec,
  letter: StoredDeadLetter,
  from: number,
): string | undefined {
  const current = chainBefore(spec, from);
  if (current === "") return undefined; // it goes through the whole chain now
  if (letter.chain === undefined) {
    const steps = spec.transforms.slice(0, from).map((step) => `"${step.alias}"`).join(", ");
    return `it was dead-lettered before Sluice recorded which transform steps a record went ` +
      `through, so nothing shows it went through ${steps}`;
  }
  const difference = chainDifference(letter.chain, current);
  return difference === undefined ? undefined : `the transform chain changed: ${difference}`;
}

/**
 * Replays `letters` (of `spec`, from `store`) through the pipeline's
 * transforms and sink, chunk by chunk. A chunk's records leave the store
 * only after the sink made them durable; those that fail again stay, with
 * their attempts raised. A record is not written, and stays as it is, when
 * it did not go through the pipeline's current steps before its stage, or
 * when nothing shows that it is newer than the target's row (see
 * {@linkcode ReplayOptions} for the operator's overrides). A whole-batch
 * sink error (the target is down) stops the replay and is thrown, leaving
 * the chunk's dead letters as they were.
 */
export async function replayDeadLetters(
  spec: PipelineSpec,
  store: DeadLetterStore,
  letters: readonly StoredDeadLetter[],
  options: ReplayOptions = {},
): Promise<ReplayOutcome> {
  const signal = options.signal ?? new AbortController().signal;
  const logger = getLogger(["sluice", "dlq", spec.name]);
  const context = (plugin: string) => ({
    pipeline: spec.name,
    logger: logger.getChild(plugin),
    signal,
    sourceMode: spec.source.plugin.mode,
  });
  const closers: (() => Promise<void>)[] = [];
  const outcome: ReplayOutcome = {
    replayed: [],
    filtered: [],
    failed: [],
    unplaced: [],
    refused: [],
  };
  try {
    const sink = await spec.sink.plugin.create(spec.sink.config, context(spec.sink.plugin.name));
    closers.push(() => sink.close());
    const steps = await openTransformSteps(spec, context, closers);
    const pending: Item[] = [];
    const newest = newestOfEachKey(letters);
    for (const letter of letters) {
      const newer = newest.get(letter);
      if (newer !== undefined) {
        outcome.refused.push({
          letter,
          reason: `dead letter ${newer.id} holds a newer record of the same key (replayed in ` +
            `its place: both would land the older one first and then be refused, or the ` +
            `older last); purge this one once that one landed`,
        });
        continue;
      }
      const from = resumeStep(spec, letter.stage);
      if (from === undefined) {
        outcome.unplaced.push(letter.id);
        continue;
      }
      const problem = chainProblem(spec, letter, from);
      if (problem !== undefined && !options.assumeTransformed) {
        outcome.refused.push({ letter, reason: problem });
        continue;
      }
      const result = await applyTransformSteps(steps, letter.record, from);
      if ("failure" in result) {
        outcome.failed.push({ letter, failure: withChain(spec, result.failure) });
      } else if (result.record === null) outcome.filtered.push(letter.id);
      else pending.push({ letter, record: result.record });
    }
    await store.remove(outcome.filtered);
    await store.failedAgain(outcome.failed);
    const check = { spec, sink, options, context: context(spec.source.plugin.name) };
    for (const chunk of chunks(pending)) {
      if (signal.aborted) break;
      const cleared = await currentOnes(check, chunk, outcome);
      // Records that met no target row only insert (a row written since is
      // newer); runs of consecutive records keep their order.
      for (const run of runsOf(cleared)) {
        await replayChunk(spec, sink, steps, store, run, outcome, run[0].onlyNew);
      }
    }
  } finally {
    for (const close of closers.reverse()) {
      await close().catch((error) => logger.warn("Closing failed: {error}", { error }));
    }
  }
  // A few lines, not one per letter: a replay may refuse tens of thousands.
  for (const { letter, reason } of outcome.refused.slice(0, LOGGED_REFUSALS)) {
    logger.warn("Dead letter {id} not replayed: {reason}", { id: letter.id, reason });
  }
  const more = outcome.refused.length - LOGGED_REFUSALS;
  if (more > 0) {
    logger.warn(
      "{count} more dead letters not replayed, kept as they are (the outcome lists them)",
      {
        count: more,
      },
    );
  }
  return outcome;
}

/**
 * For each letter that another letter of the same topic and key supersedes
 * (failed later), that newer letter. Tombstones and keyless records stand
 * alone.
 */
function newestOfEachKey(
  letters: readonly StoredDeadLetter[],
): Map<StoredDeadLetter, StoredDeadLetter> {
  const latest = new Map<string, StoredDeadLetter>();
  const identity = (letter: StoredDeadLetter) =>
    letter.record.key === null
      ? undefined
      : `${letter.record.topic}\u0000${encodeJson(letter.record.key)}`;
  const later = (a: StoredDeadLetter, b: StoredDeadLetter) =>
    a.failedAt !== b.failedAt ? a.failedAt > b.failedAt : Number(a.id) > Number(b.id);
  for (const letter of letters) {
    const key = identity(letter);
    if (key === undefined) continue;
    const seen = latest.get(key);
    if (!seen || later(letter, seen)) latest.set(key, letter);
  }
  const superseded = new Map<StoredDeadLetter, StoredDeadLetter>();
  for (const letter of letters) {
    const key = identity(letter);
    const newest = key === undefined ? undefined : latest.get(key);
    if (newest !== undefined && newest !== letter) superseded.set(letter, newest);
  }
  return superseded;
}

/** The failure with the fingerprint of the steps its record went through, as the runtime stores it. */
function withChain(spec: PipelineSpec, failure: RecordFailure): RecordFailure {
  const chain = chainOfStage(spec, failure.stage);
  return chain === undefined ? failure : { ...failure, chain };
}

/**
 * The items of `chunk` that may be written: the sink orders them against
 * the target row, or the target has no row and the source still has it.
 * The others go to `outcome.refused` with the reason.
 */
async function currentOnes(
  check: { spec: PipelineSpec; sink: Sink; options: ReplayOptions; context: PluginContext },
  chunk: readonly Item[],
  outcome: ReplayOutcome,
): Promise<Cleared[]> {
  const { spec, sink, options } = check;
  const checks = sink.replayCheck
    ? await sink.replayCheck(chunk.map((item) => item.record))
    : undefined;
  // Rows the source decides on: absent from the target, or tied with a delete.
  const absent = chunk.filter((item, i) =>
    checks?.[i].verdict === "absent" || (checks?.[i].verdict === "tied" && deletes(item.record))
  );
  const source = spec.source.plugin;
  const exists = absent.length > 0 && source.rowsExist
    ? await source.rowsExist(spec.source.config, absent.map((item) => item.record), check.context)
    : [];
  const existsOf = new Map(absent.map((item, i) => [item, exists[i]]));
  // A masking step may have changed the key the sink saw: not finding it in
  // the source then shows nothing.
  const masking = spec.transforms.filter((step) => step.plugin.hidesData).map((s) => s.alias);
  const writable: Cleared[] = [];
  chunk.forEach((item, i) => {
    const verdict = checks?.[i];
    const key = encodeJson(item.record.key);
    let reason: string | undefined;
    // Only a row the source is known to have deleted stays refused whatever the operator says.
    let deleted = false;
    if (verdict === undefined) {
      reason = `sink "${spec.sink.plugin.name}" cannot compare a record with what its target ` +
        `holds, so nothing shows the record is newer`;
    } else if (verdict.verdict === "unproven") reason = verdict.reason;
    else if (verdict.verdict === "tied") {
      const found = existsOf.get(item);
      if (masking.length > 0 || found === undefined) reason = verdict.reason;
      else if (found) {
        deleted = true; // refused whatever the flags, as a row the source deleted is
        reason = `${verdict.reason}; the source still holds the row, so replaying the delete ` +
          `would remove a live row`;
      }
      // Else the source deleted the row too: the delete is right.
    } else if (verdict.verdict === "absent") {
      const found = existsOf.get(item);
      if (found === false && masking.length > 0) {
        reason = `the target has no row for key ${key}, and the source has none under it; ` +
          `the key may be one that ${masking.join(", ")} masked, so that does not show the ` +
          `row was deleted since`;
      } else if (found === false) {
        deleted = true;
        reason = `the target has no row for key ${key} and the source no longer has it either ` +
          `(deleted or truncated since): writing it would bring a deleted row back`;
      } else if (found === undefined) {
        reason = `the target has no row for key ${key}, and source "${source.name}" cannot ` +
          `look it up to show that it was not deleted since`;
      }
    }
    if (reason === undefined || (!deleted && options.writeUnverified)) {
      writable.push({ ...item, onlyNew: verdict?.verdict === "absent" });
    } else outcome.refused.push({ letter: item.letter, reason });
  });
  return writable;
}

/** Whether a record deletes its row: a delete event or a tombstone. */
function deletes(record: SluiceRecord): boolean {
  const value = record.value as { op?: unknown } | null;
  return value === null || value?.op === "d";
}

/** Writes one chunk, then removes what it wrote and records what failed again. */
async function replayChunk(
  spec: PipelineSpec,
  sink: Sink,
  steps: readonly TransformStep[],
  store: DeadLetterStore,
  chunk: readonly Item[],
  outcome: ReplayOutcome,
  onlyNew: boolean,
): Promise<void> {
  const byRecord = new Map(chunk.map((item) => [item.record, item.letter]));
  // A sink may hand back a presentable copy of the record: match by topic and key then.
  const byIdentity = new Map(chunk.map((item) => [identityOf(item.record), item.letter]));
  const rejected: { letter: StoredDeadLetter; failure: RecordFailure }[] = [];
  await sink.write({
    records: chunk.map((item) => item.record),
    ...(onlyNew ? { onlyNew: true } : {}),
    reject(failures) {
      for (const failure of failures) {
        const letter = byRecord.get(failure.record) ?? byIdentity.get(identityOf(failure.record));
        if (!letter) throw new Error("The sink rejected a record that was not in the batch");
        rejected.push({ letter, failure: withChain(spec, failure) });
      }
      return Promise.resolve();
    },
  });
  for (const step of steps) await step.transform.commit?.();
  const failedIds = new Set(rejected.map(({ letter }) => letter.id));
  const written = chunk.map((item) => item.letter.id).filter((id) => !failedIds.has(id));
  await store.remove(written);
  await store.failedAgain(rejected);
  outcome.replayed.push(...written);
  outcome.failed.push(...rejected);
}

/** Consecutive items with the same `onlyNew`, in order. */
function runsOf(items: readonly Cleared[]): Cleared[][] {
  const runs: Cleared[][] = [];
  for (const item of items) {
    const last = runs.at(-1);
    if (last && last[0].onlyNew === item.onlyNew) last.push(item);
    else runs.push([item]);
  }
  return runs;
}

/** Splits records into chunks in which no topic and key repeats (so rejects map back exactly). */
function* chunks<T extends { record: SluiceRecord }>(items: readonly T[]): Generator<T[]> {
  let chunk: T[] = [];
  let seen = new Set<string>();
  for (const item of items) {
    const identity = identityOf(item.record);
    if (chunk.length >= CHUNK_SIZE || seen.has(identity)) {
      yield chunk;
      chunk = [];
      seen = new Set();
    }
    chunk.push(item);
    seen.add(identity);
  }
  if (chunk.length > 0) yield chunk;
}
