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
import type { RecordFailure, Sink } from "../api/plugin.ts";
import type { SluiceRecord } from "../api/record.ts";
import type { PipelineSpec } from "./config.ts";
import type { SluiceMetrics } from "./metrics.ts";
import { fileDeadLetterStore } from "./_dead_letters.ts";
import {
  applyTransformSteps,
  openTransformSteps,
  type PipelineEnvironment,
  type TransformStep,
} from "./pipeline.ts";

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
}

/**
 * Where in the chain a dead letter resumes: the index of its failed step;
 * 0 for a converter stage (`KEY_CONVERTER`, `VALUE_CONVERTER`: before the
 * transforms); undefined for a transform no longer in the chain, whose
 * record cannot be placed (steps before it may or may not have run).
 */
export function resumeStep(spec: PipelineSpec, stage: string): number | undefined {
  if (stage === "sink") return spec.transforms.length;
  const index = spec.transforms.findIndex((step) => step.alias === stage);
  if (index !== -1) return index;
  return /^[A-Z_]+_CONVERTER$/.test(stage) ? 0 : undefined;
}

/** Records per sink write; no two records of one chunk share a topic and key (see `chunks`). */
const CHUNK_SIZE = 500;

const identityOf = (record: SluiceRecord) => `${record.topic}\u0000${encodeJson(record.key)}`;

/**
 * Replays `letters` (of `spec`, from `store`) through the pipeline's
 * transforms and sink, chunk by chunk. A chunk's records leave the store
 * only after the sink made them durable; those that fail again stay, with
 * their attempts raised. A whole-batch sink error (the target is down)
 * stops the replay and is thrown, leaving the chunk's dead letters as they were.
 */
export async function replayDeadLetters(
  spec: PipelineSpec,
  store: DeadLetterStore,
  letters: readonly StoredDeadLetter[],
  signal: AbortSignal = new AbortController().signal,
): Promise<ReplayOutcome> {
  const logger = getLogger(["sluice", "dlq", spec.name]);
  const context = (plugin: string) => ({
    pipeline: spec.name,
    logger: logger.getChild(plugin),
    signal,
    sourceMode: spec.source.plugin.mode,
  });
  const closers: (() => Promise<void>)[] = [];
  const outcome: ReplayOutcome = { replayed: [], filtered: [], failed: [], unplaced: [] };
  try {
    const sink = await spec.sink.plugin.create(spec.sink.config, context(spec.sink.plugin.name));
    closers.push(() => sink.close());
    const steps = await openTransformSteps(spec, context, closers);
    const pending: { letter: StoredDeadLetter; record: SluiceRecord }[] = [];
    for (const letter of letters) {
      const from = resumeStep(spec, letter.stage);
      if (from === undefined) {
        outcome.unplaced.push(letter.id);
        continue;
      }
      const result = await applyTransformSteps(steps, letter.record, from);
      if ("failure" in result) outcome.failed.push({ letter, failure: result.failure });
      else if (result.record === null) outcome.filtered.push(letter.id);
      else pending.push({ letter, record: result.record });
    }
    await store.remove(outcome.filtered);
    await store.failedAgain(outcome.failed);
    for (const chunk of chunks(pending)) {
      if (signal.aborted) break;
      await replayChunk(sink, steps, store, chunk, outcome);
    }
  } finally {
    for (const close of closers.reverse()) {
      await close().catch((error) => logger.warn("Closing failed: {error}", { error }));
    }
  }
  return outcome;
}

/** Writes one chunk, then removes what it wrote and records what failed again. */
async function replayChunk(
  sink: Sink,
  steps: readonly TransformStep[],
  store: DeadLetterStore,
  chunk: readonly { letter: StoredDeadLetter; record: SluiceRecord }[],
  outcome: ReplayOutcome,
): Promise<void> {
  const byRecord = new Map(chunk.map((item) => [item.record, item.letter]));
  // A sink may hand back a presentable copy of the record: match by topic and key then.
  const byIdentity = new Map(chunk.map((item) => [identityOf(item.record), item.letter]));
  const rejected: { letter: StoredDeadLetter; failure: RecordFailure }[] = [];
  await sink.write({
    records: chunk.map((item) => item.record),
    reject(failures) {
      for (const failure of failures) {
        const letter = byRecord.get(failure.record) ?? byIdentity.get(identityOf(failure.record));
        if (!letter) throw new Error("The sink rejected a record that was not in the batch");
        rejected.push({ letter, failure });
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
