/**
 * The contract every sink keeps, run against each plugin with a harness
 * from `sinks_test.ts` that sets up its real target (a table, a topic):
 *
 * - it applies every change op (c, r, u, a key-only delete, a tombstone, a
 *   truncate as the sink documents it);
 * - writing the same batch again leaves the same state (effectively once,
 *   by key);
 * - `write` resolves only once the batch is durable: a fresh connection
 *   opened right after sees it;
 * - it closes without leaking (Deno's sanitizers are on), written to or not.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import type { RecordFailure, Sink, SinkPlugin } from "../../api/plugin.ts";
import type { ChangeOp, Row, SluiceRecord } from "../../api/record.ts";
import { assertEquals } from "../_assert.ts";

/** A key's state at the target: its row, or "deleted". Absent keys are not listed. */
export type TargetState = Record<number, Row | "deleted">;

/** A sink's target set up for one case. */
export interface SinkEnv extends AsyncDisposable {
  /** The sink's options, as a user writes them (without the `sink.` prefix). */
  readonly config: Record<string, string>;
  /** The topic of the records written (the table or topic they go to). */
  readonly topic: string;
  /**
   * The target's state by key, read through a fresh connection. `written` is
   * how many records were written so far (for targets read as a log).
   */
  state(written: number): Promise<TargetState>;
}

/** The cases of the sink contract, for `ignore`. */
export type SinkCase = "every op" | "idempotent" | "durable" | "close";

/** One line of the table: how to run a sink against its real target. */
export interface SinkHarness {
  // deno-lint-ignore no-explicit-any
  readonly plugin: SinkPlugin<any>;
  setup(): Promise<SinkEnv>;
  /** What a truncate event does at this target. */
  readonly truncate: "deletes every row" | "changes nothing";
  /** Cases failing today because of a known bug (name the issue item beside it). */
  readonly ignore?: Partial<Record<SinkCase, true>>;
}

let lsn = 1000;

/** A Debezium change event of the items table, as postgres_cdc emits it. */
export function change(
  topic: string,
  op: ChangeOp,
  id: number | null,
  images: { before?: Row | null; after?: Row | null },
): SluiceRecord {
  lsn += 8;
  const source = {
    version: "0.1.0",
    connector: "postgresql",
    name: "contract",
    ts_ms: 1_700_000_000_000,
    snapshot: op === "r" ? "true" : "false",
    db: "contract",
    schema: "public",
    table: "items",
    txId: 571,
    lsn,
  };
  const value = {
    before: images.before ?? null,
    after: images.after ?? null,
    source,
    op,
    ts_ms: 1_700_000_000_100,
  };
  return { topic, key: id === null ? null : { id }, value, origin: { lsn } };
}

/** The change ops of the contract on keys 1 to 3, and the state they leave. */
function everyOp(topic: string): { records: SluiceRecord[]; state: TargetState } {
  return {
    records: [
      change(topic, "c", 1, { after: { id: 1, name: "a" } }),
      change(topic, "c", 2, { after: { id: 2, name: "b" } }),
      change(topic, "r", 3, { after: { id: 3, name: "c" } }),
      change(topic, "u", 1, { after: { id: 1, name: "a2" } }),
      // Default replica identity: a delete's old image holds only the key.
      change(topic, "d", 2, { before: { id: 2 } }),
      { topic, key: { id: 2 }, value: null },
    ],
    state: { 1: { id: 1, name: "a2" }, 2: "deleted", 3: { id: 3, name: "c" } },
  };
}

async function create(harness: SinkHarness, env: SinkEnv): Promise<Sink> {
  return await harness.plugin.create(harness.plugin.config.parse(env.config), {
    pipeline: `contract-${harness.plugin.name}`,
    logger: getLogger(["sluice", "contract"]),
    signal: new AbortController().signal,
  });
}

/** Writes `records` as one batch; fails if any record is rejected. */
async function write(sink: Sink, records: SluiceRecord[]): Promise<void> {
  const rejected: RecordFailure[] = [];
  const result = await sink.write({
    records,
    reject: (failures) => {
      rejected.push(...failures);
      return Promise.resolve();
    },
  });
  assertEquals(rejected.map((f) => f.error.message), [], "records rejected");
  assertEquals(result.written + (result.skipped ?? 0), records.length, "records written");
}

/** Registers the contract's tests for one sink. */
export function sinkContract(harness: SinkHarness): void {
  const name = harness.plugin.name;
  const test = (what: SinkCase, title: string, fn: () => Promise<void>) =>
    Deno.test({ name: `sink ${name} ${title}`, ignore: harness.ignore?.[what] === true, fn });

  test(
    "every op",
    "applies creates, reads, updates, deletes, tombstones and truncates",
    async () => {
      await using env = await harness.setup();
      const sink = await create(harness, env);
      try {
        const { records, state } = everyOp(env.topic);
        await write(sink, records);
        assertEquals(await env.state(records.length), state);
        await write(sink, [change(env.topic, "t", null, {})]);
        const truncated = harness.truncate === "deletes every row"
          ? { 1: "deleted", 2: "deleted", 3: "deleted" } as TargetState
          : state;
        assertEquals(await env.state(records.length + 1), truncated);
      } finally {
        await sink.close();
      }
    },
  );

  test("idempotent", "leaves the same state when a batch is written again", async () => {
    await using env = await harness.setup();
    const sink = await create(harness, env);
    try {
      const { records, state } = everyOp(env.topic);
      await write(sink, records);
      await write(sink, records);
      assertEquals(await env.state(2 * records.length), state);
    } finally {
      await sink.close();
    }
  });

  test("durable", "has made a batch durable when write resolves", async () => {
    await using env = await harness.setup();
    const sink = await create(harness, env);
    try {
      const records = [10, 11, 12].map((id) =>
        change(env.topic, "c", id, { after: { id, name: `n${id}` } })
      );
      await write(sink, records);
      // Right away, through a fresh connection: no waiting for it to land.
      assertEquals(await env.state(records.length), {
        10: { id: 10, name: "n10" },
        11: { id: 11, name: "n11" },
        12: { id: 12, name: "n12" },
      });
    } finally {
      await sink.close();
    }
  });

  test("close", "closes without leaking, written to or not", async () => {
    await using env = await harness.setup();
    await (await create(harness, env)).close();
    const sink = await create(harness, env);
    try {
      await write(sink, [change(env.topic, "c", 1, { after: { id: 1, name: "a" } })]);
    } finally {
      await sink.close();
    }
  });
}

/** Folds records (a log of a topic, or a memory sink) into the state by key. */
export function foldLog(records: readonly { key: unknown; value: unknown }[]): TargetState {
  const state: TargetState = {};
  for (const { key, value } of records) {
    const id = (key as { id?: number } | null)?.id;
    if (id === undefined) continue; // a truncate event has no key
    const event = value as { op?: string; after?: Row } | null;
    if (value === null || event?.op === "d") state[id] = "deleted";
    else if (event?.after) state[id] = pick(event.after);
  }
  return state;
}

/** The columns the contract compares. */
export function pick(row: Row): Row {
  return { id: Number(row.id), name: row.name };
}
