/**
 * The contract every source keeps, run against each plugin with a harness
 * from `sources_test.ts` that sets up its real service (a database, a
 * topic):
 *
 * - it resumes from the offset the runtime committed, after a restart:
 *   nothing after it is lost, and nothing committed comes again (unless the
 *   harness says why its source re-delivers by design);
 * - in a pipeline, it sees a commit (and the offset store a write) only
 *   after the sink's write of that batch, and of every batch before, resolved;
 * - it emits every kind of change it claims (c/u/d/r/t, tombstones, rows);
 * - it closes without leaking (Deno's sanitizers are on), whether it read
 *   or not.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { z } from "zod";
import type { Source, SourceBatch, SourcePlugin } from "../../api/plugin.ts";
import { defineSink, defineSource } from "../../api/plugin.ts";
import type { JsonValue, SluiceRecord } from "../../api/record.ts";
import { builtinRegistry } from "../../builtins.ts";
import { buildPipelines, parseConnectors } from "../../core/config.ts";
import { MemoryOffsetStore } from "../../core/offsets.ts";
import { runPipeline } from "../../core/pipeline.ts";
import { assert, assertEquals } from "../_assert.ts";
import { waitUntil } from "../_wait.ts";

/** What a record is: a change op, a tombstone (null value) or a plain row. */
export type RecordKind = "c" | "u" | "d" | "r" | "t" | "tombstone" | "row";

/** A source's service set up for one case. */
export interface SourceEnv extends AsyncDisposable {
  /** The source's options, as a user writes them. */
  readonly config: Record<string, string>;
  /** Makes new rows or messages with these ids (one change each, in order). */
  insert(ids: readonly number[]): Promise<void>;
  /** Once the source is open and ready: one change of every kind it can emit. */
  everyKind(): Promise<void>;
}

/** The cases of the source contract, for `ignore`. */
export type SourceCase = "resume" | "commit after write" | "every kind" | "close";

/** One line of the table: how to run a source against its real service. */
export interface SourceHarness {
  // deno-lint-ignore no-explicit-any
  readonly plugin: SourcePlugin<any>;
  /** The kinds of record this source emits, all of which `everyKind` makes. */
  readonly kinds: readonly RecordKind[];
  /** Sets up a fresh service; `ids` exist before the source opens (for a snapshot). */
  setup(ids: readonly number[]): Promise<SourceEnv>;
  /**
   * Why this source may deliver again records at or before a committed
   * offset (at-least-once by design); unset, the resume case fails on any.
   */
  readonly redelivers?: string;
  /** True when the source snapshots the rows that exist when it opens (as op r). */
  readonly snapshots?: boolean;
  /** Resolves once an open source captures new changes (e.g. its slot streams). */
  ready?(env: SourceEnv): Promise<void>;
  /** Cases failing today because of a known bug (name the issue item beside it). */
  readonly ignore?: Partial<Record<SourceCase, true>>;
}

/** The id a record is about: `key.id` (or `key.n`, or the row's id). */
export function idOf(record: SluiceRecord): number | undefined {
  const key = record.key as Record<string, unknown> | null;
  const id = key?.id ?? key?.n;
  return typeof id === "number" ? id : typeof id === "string" ? Number(id) : undefined;
}

/** The kind of a record. */
export function kindOf(record: SluiceRecord): RecordKind {
  if (record.value === null) return "tombstone";
  const op = (record.value as { op?: unknown }).op;
  return typeof op === "string" && "cudrt".includes(op) ? op as RecordKind : "row";
}

/** A source opened directly, as the runtime opens it, read batch by batch. */
interface OpenedSource {
  readonly batches: SourceBatch[];
  /** Reads until `done(records so far)` holds; fails naming `what` after the deadline. */
  readUntil(what: string, done: (records: SluiceRecord[]) => boolean): Promise<void>;
  commit(offset: JsonValue): Promise<void>;
  close(): Promise<void>;
}

async function open(
  harness: SourceHarness,
  env: SourceEnv,
  offset: JsonValue | undefined,
): Promise<OpenedSource> {
  const controller = new AbortController();
  const source: Source = await harness.plugin.create(harness.plugin.config.parse(env.config), {
    pipeline: `contract-${harness.plugin.name}`,
    logger: getLogger(["sluice", "contract"]),
    signal: controller.signal,
    offset,
    fullRefresh: false,
  });
  const iterator = source.read()[Symbol.asyncIterator]();
  const batches: SourceBatch[] = [];
  // Start reading at once, as a pipeline does: a slot is set up on the first pull.
  let pending: Promise<IteratorResult<SourceBatch>> | undefined = iterator.next();
  let ended = false;
  const records = () => batches.flatMap((batch) => batch.records);
  const readOne = async () => {
    pending ??= iterator.next();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const later = new Promise<"later">((resolve) => timer = setTimeout(resolve, 200, "later"));
    const step = await Promise.race([pending, later]);
    clearTimeout(timer);
    if (step === "later") return;
    pending = undefined;
    if (step.done) ended = true;
    else batches.push(step.value);
  };
  return {
    batches,
    async readUntil(what, done) {
      await waitUntil(what, async () => {
        if (done(records())) return true;
        if (ended) throw new Error(`the source ended after ${records().length} records`);
        await readOne();
        if (done(records())) return true;
        throw new Error(`ids so far: ${JSON.stringify(records().map(idOf))}`);
      }, { timeoutMs: 30_000, intervalMs: 0 });
    },
    async commit(offset) {
      await source.commit?.(offset);
    },
    async close() {
      controller.abort();
      if (pending) await pending.catch(() => {});
      await iterator.return?.(undefined);
      await source.close();
    },
  };
}

const hasIds = (ids: readonly number[]) => (records: SluiceRecord[]) => {
  const seen = new Set(records.map(idOf));
  return ids.every((id) => seen.has(id));
};

/** Registers the contract's tests for one source. */
export function sourceContract(harness: SourceHarness): void {
  const name = harness.plugin.name;
  const test = (what: SourceCase, title: string, fn: () => Promise<void>) =>
    Deno.test({ name: `source ${name} ${title}`, ignore: harness.ignore?.[what] === true, fn });

  test("resume", "resumes after a restart from the committed offset, losing nothing", async () => {
    // Written before the first run: a batch source re-reads rows written by
    // transactions still running at its snapshot (late-commit protection),
    // which would blur what this case checks.
    await using env = await harness.setup([1, 2, 3, 4, 5, 6]);
    const first = await open(harness, env, undefined);
    let committed: SourceBatch;
    try {
      // The first offset after some records (a first full load may carry
      // its offset only at its end).
      const offsetAfterRecords = () =>
        first.batches.find((batch, i) =>
          batch.offset !== undefined &&
          first.batches.slice(0, i + 1).some((b) => b.records.length > 0)
        );
      await first.readUntil("a batch with an offset", () => offsetAfterRecords() !== undefined);
      committed = offsetAfterRecords()!;
      await first.commit(committed.offset!);
    } finally {
      await first.close();
    }
    const before = new Set(
      first.batches.slice(0, first.batches.indexOf(committed) + 1)
        .flatMap((batch) => batch.records.map(idOf)),
    );
    await env.insert([7, 8, 9]);
    const second = await open(harness, env, committed.offset);
    try {
      await harness.ready?.(env);
      const rest = [1, 2, 3, 4, 5, 6, 7, 8, 9].filter((id) => !before.has(id));
      await second.readUntil(`ids ${rest}`, hasIds(rest));
      if (harness.redelivers === undefined) {
        const again = second.batches.flatMap((b) => b.records.map(idOf)).filter((id) =>
          before.has(id)
        );
        const at = JSON.stringify(committed.offset);
        assertEquals(again, [], `records at or before the committed offset ${at} come again`);
      }
    } finally {
      await second.close();
    }
  });

  test("commit after write", "sees a commit only after the sink's write resolved", async () => {
    // Written before the run starts: a batch run reads what exists, then ends.
    await using env = await harness.setup([1, 2, 3, 4, 5, 6]);
    const log = new CommitLog();
    const specs = await buildPipelines(
      parseConnectors({
        name: `contract-${name}-commits`,
        config: {
          ...env.config,
          "connector.class": log.source(harness.plugin).name,
          "sink.class": "contract_slow_sink",
          "sink.log": log.id,
        },
      }),
      { registry: builtinRegistry().register(log.source(harness.plugin)).register(slowSink) },
    );
    const offsets = new LoggingOffsetStore(log);
    const stop = new AbortController();
    const run = runPipeline(specs[0], { offsets }, { signal: stop.signal });
    try {
      await waitUntil("ids 1 to 6 written and committed", () => log.settled([1, 2, 3, 4, 5, 6]));
    } finally {
      stop.abort();
    }
    const report = await run;
    assertEquals(report.error, undefined);
    log.check();
  });

  test("every kind", `emits every kind it can: ${harness.kinds.join(", ")}`, async () => {
    await using env = await harness.setup([900]);
    const source = await open(harness, env, undefined);
    try {
      await harness.ready?.(env);
      if (harness.snapshots) {
        // The snapshot first: a TRUNCATE is not MVCC-safe, so a snapshot still
        // running would see the table empty.
        await source.readUntil("the snapshot", (records) => records.some((r) => kindOf(r) === "r"));
      }
      await env.everyKind();
      const wanted = new Set(harness.kinds);
      await source.readUntil(
        `records of every kind (${harness.kinds})`,
        (records) => [...wanted].every((kind) => records.some((r) => kindOf(r) === kind)),
      );
    } finally {
      await source.close();
    }
  });

  test("close", "closes without leaking, read or not", async () => {
    await using env = await harness.setup([]);
    const unread = await open(harness, env, undefined);
    await unread.close();
    const source = await open(harness, env, undefined);
    try {
      await harness.ready?.(env);
      await env.insert([1]);
      await source.readUntil("id 1", hasIds([1]));
    } finally {
      await source.close();
    }
  });
}

// ---------------------------------------------------------------------------
// Logging what the runtime does around a source: batches yielded, sink writes
// begun and resolved, offset store writes and source commits, in order.

type Event =
  | { kind: "batch"; offset: string; ids: (number | undefined)[] }
  | { kind: "resolved"; ids: (number | undefined)[] }
  | { kind: "commit" | "store"; offset: string };

const logs = new Map<string, CommitLog>();

class CommitLog {
  readonly id = crypto.randomUUID();
  readonly events: Event[] = [];
  // deno-lint-ignore no-explicit-any
  #wrapped?: SourcePlugin<any>;
  constructor() {
    logs.set(this.id, this);
  }

  /** The plugin, wrapped to log its batches and the commits it is given. */
  // deno-lint-ignore no-explicit-any
  source(plugin: SourcePlugin<any>): SourcePlugin<any> {
    const events = this.events;
    this.#wrapped ??= defineSource({
      ...plugin,
      name: `contract_logged_${plugin.name}`,
      aliases: [],
      async create(config, context) {
        const inner = await plugin.create(config, context);
        return {
          async *read() {
            for await (const batch of inner.read()) {
              events.push({
                kind: "batch",
                offset: JSON.stringify(batch.offset),
                ids: batch.records.map(idOf),
              });
              yield batch;
            }
          },
          commit: async (offset: JsonValue) => {
            events.push({ kind: "commit", offset: JSON.stringify(offset) });
            await inner.commit?.(offset);
          },
          close: () => inner.close(),
        };
      },
    });
    return this.#wrapped;
  }

  /** True once every id was written and a commit or store write followed. */
  settled(ids: readonly number[]): boolean {
    const written = new Set(this.events.flatMap((e) => e.kind === "resolved" ? e.ids : []));
    const lastWrite = this.events.findLastIndex((e) => e.kind === "resolved");
    const committedAfter = this.events.slice(lastWrite + 1).some((e) =>
      e.kind === "commit" || e.kind === "store"
    );
    return ids.every((id) => written.has(id)) && committedAfter;
  }

  /** Fails unless each committed offset's batch, and all before it, were written first. */
  check(): void {
    let commits = 0;
    for (const [index, event] of this.events.entries()) {
      if (event.kind !== "commit" && event.kind !== "store") continue;
      commits++;
      const earlier = this.events.slice(0, index);
      const batch = earlier.findLastIndex((e) => e.kind === "batch" && e.offset === event.offset);
      assert(batch >= 0, `${event.kind} of an offset no batch carried: ${event.offset}`);
      const needed = earlier.slice(0, batch + 1).flatMap((e) => e.kind === "batch" ? e.ids : []);
      const written = new Set(earlier.flatMap((e) => e.kind === "resolved" ? e.ids : []));
      const missing = needed.filter((id) => !written.has(id));
      assertEquals(missing, [], `${event.kind} of ${event.offset} before these were written`);
    }
    assert(commits > 0, "the runtime committed nothing");
  }
}

class LoggingOffsetStore extends MemoryOffsetStore {
  constructor(readonly log: CommitLog) {
    super();
  }
  override async write(pipeline: string, offset: JsonValue): Promise<void> {
    this.log.events.push({ kind: "store", offset: JSON.stringify(offset) });
    await super.write(pipeline, offset);
  }
}

/** A sink whose writes take a while, logging when each resolves. */
const slowSink = defineSink({
  name: "contract_slow_sink",
  summary: "Logs when each write resolves (contract tests).",
  config: z.strictObject({ log: z.string() }),
  create(config) {
    const log = logs.get(config.log)!;
    return {
      async write(batch) {
        // Simulated write latency: a runtime that committed before the
        // write resolved would log its commit first.
        await new Promise((resolve) => setTimeout(resolve, 50));
        log.events.push({ kind: "resolved", ids: batch.records.map(idOf) });
        return { written: batch.records.length };
      },
      async close() {},
    };
  },
});
