/**
 * `dedup`: drops records whose event ID was already seen.
 *
 * The ID (`id.mode`):
 * - `cdc`: the change event's `source.lsn`, schema, table and key. The LSN
 *   must identify the change itself (as Debezium's does), not only its
 *   transaction.
 * - `kafka`: topic, partition and offset from the record's origin.
 * - `fields`: the values of `id.fields` in the row (for example an event ID
 *   column).
 *
 * With a state file, IDs are kept as 128-bit SHA-256 prefixes, so key
 * values are not written to it in clear. The set holds IDs seen in the last `window.ms`,
 * at most `max.entries` of them (the oldest go first). With `state.path` it
 * survives restarts: IDs are saved (at most every `state.save.interval.ms`)
 * only once the runtime reports the records carrying them durably written,
 * so records re-read after a failure are not taken for duplicates. After a
 * crash, duplicates of the last interval may pass; sinks stay idempotent.
 * Tombstones pass unchanged, and so do change events that lack an `id.fields`
 * field because their kind leaves it out (a delete's key-only `before`, an
 * update without an unchanged TOAST value, a truncate): they cannot be
 * identified, and passing them is safe where dropping them would lose them. Dropped records are counted (`dropped`) and
 * logged at debug level.
 *
 * ```json
 * {
 *   "transforms": "dedup",
 *   "transforms.dedup.type": "dedup",
 *   "transforms.dedup.id.mode": "cdc",
 *   "transforms.dedup.window.ms": "86400000",
 *   "transforms.dedup.max.entries": "100000",
 *   "transforms.dedup.state.path": ".sluice/dedup-profiles.json"
 * }
 * ```
 *
 * @module
 */
import { z } from "zod";
import { defineTransform, type Transform } from "../../api/plugin.ts";
import { isChangeEvent, recordRow, type SluiceRecord } from "../../api/record.ts";
import { integer, list, positiveInteger } from "../../api/options.ts";
import { sha256HexOfText } from "../_sha256.ts";
import { addIssue, eventField, stableStringify, tableOf } from "../_shared.ts";
import { FileSeenStore, SeenSet, type SeenStore } from "./_seen.ts";

export { FileSeenStore, SeenSet, type SeenStore } from "./_seen.ts";
export type { SeenChanges, SeenEntry } from "./_seen.ts";

const config = z.strictObject({
  "id.mode": z.enum(["cdc", "kafka", "fields"]).default("cdc").describe(
    "Where the event ID comes from: cdc (source LSN + table + key), kafka (topic/partition/offset) or fields.",
  ),
  "id.fields": list().default([]).describe("With id.mode fields: the row fields that form the ID."),
  "window.ms": positiveInteger().default(86_400_000).describe(
    "How long an ID is remembered (ms).",
  ),
  "max.entries": positiveInteger().default(100_000).describe(
    "The most IDs remembered; the oldest are forgotten first.",
  ),
  "state.path": z.string().min(1).optional().describe(
    "JSON file that keeps the seen IDs across restarts (relative to the working directory).",
  ),
  "state.save.interval.ms": integer().pipe(z.number().min(0)).default(1000).describe(
    "Save the state file at most this often (ms); 0 saves after every batch.",
  ),
}).superRefine((value, ctx) => {
  if (value["id.mode"] === "fields" && value["id.fields"].length === 0) {
    addIssue(ctx, "id.fields", "must name at least one field when id.mode is fields");
  }
  if (value["id.mode"] !== "fields" && value["id.fields"].length > 0) {
    addIssue(ctx, "id.fields", `applies only to id.mode fields, not ${value["id.mode"]}`);
  }
});

/** The parsed config of `dedup`. */
export type DedupConfig = z.output<typeof config>;

/** A running dedup transform, with its counters. */
export interface DedupTransform extends Transform {
  /** Records dropped as duplicates since it was created. */
  readonly dropped: number;
  /** IDs currently remembered. */
  readonly size: number;
}

/** Drops records whose event ID was already seen. */
export const dedup = defineTransform({
  name: "dedup",
  summary: "Drops records whose event ID (CDC LSN, Kafka offset or named fields) was already seen.",
  config,
  async create(options, context): Promise<DedupTransform> {
    const store = options["state.path"] ? new FileSeenStore(options["state.path"]) : undefined;
    return await createDedup(options, { store, logger: context.logger });
  },
});

/**
 * Creates a dedup transform with an explicit store and clock: the seam for a
 * PostgreSQL-backed store, and for tests.
 */
export async function createDedup(
  options: DedupConfig,
  dependencies: {
    store?: SeenStore;
    now?: () => number;
    logger?: { debug(message: string, properties?: Record<string, unknown>): void };
  } = {},
): Promise<DedupTransform> {
  const { store, logger } = dependencies;
  const seen = new SeenSet(
    options["window.ms"],
    options["max.entries"],
    dependencies.now,
    store !== undefined,
  );
  if (store) seen.load(await store.load());
  const idOf = identify(options);
  // Hashing keeps key values out of the state file; in memory alone the ID can stay as it is.
  const remembered = store ? (id: string) => sha256HexOfText(id).slice(0, 32) : (id: string) => id;
  const interval = options["state.save.interval.ms"];
  let dropped = 0;
  let lastSave = -Infinity;
  const save = async () => {
    if (!store || !seen.dirty) return;
    await store.save(seen.takeChanges());
    lastSave = Date.now();
  };
  return {
    get dropped() {
      return dropped;
    },
    get size() {
      return seen.size;
    },
    apply(record) {
      const id = idOf(record);
      if (id === undefined || !seen.seen(remembered(id))) return record;
      dropped++;
      logger?.debug("Dropped a duplicate record on {topic}; {dropped} duplicates so far", {
        topic: record.topic,
        dropped,
      });
      return null;
    },
    async commit() {
      seen.commit();
      if (Date.now() - lastSave >= interval) await save();
    },
    async close() {
      // Pending IDs stay unsaved: their records were not reported durable.
      await save();
      await store?.close?.();
    },
  };
}

/** The ID function of a mode; undefined for records that carry no ID (tombstones). */
function identify(options: DedupConfig): (record: SluiceRecord) => string | undefined {
  const fail = (record: SluiceRecord, why: string): never => {
    throw new Error(`dedup: cannot identify a record on "${record.topic}": ${why}`);
  };
  const tombstone = (record: SluiceRecord) => record.value === null || record.value === undefined;
  switch (options["id.mode"]) {
    case "cdc":
      return (record) => {
        if (tombstone(record)) return undefined;
        const event = record.value;
        if (!isChangeEvent(event)) {
          return fail(record, "id.mode cdc needs change events; use id.mode fields for batch rows");
        }
        const lsn = event.source?.lsn;
        if (lsn === null || lsn === undefined) return fail(record, "its source block has no lsn");
        const { schema, table } = tableOf(record);
        return `cdc\u0000${lsn}\u0000${schema}.${table}\u0000${stableStringify(record.key)}`;
      };
    case "kafka":
      return (record) => {
        const origin = record.origin ?? {};
        if (origin.partition === undefined || origin.offset === undefined) {
          return fail(record, "id.mode kafka needs origin.partition and origin.offset");
        }
        const topic = origin.topic ?? record.topic;
        return `kafka\u0000${topic}\u0000${origin.partition}\u0000${origin.offset}`;
      };
    case "fields": {
      const fields = options["id.fields"];
      return (record) => {
        if (tombstone(record)) return undefined;
        const row = recordRow(record);
        const change = isChangeEvent(record.value) ? record.value : undefined;
        // A delete, a truncate or a TOAST-trimmed update may lack the ID
        // fields: such a record cannot be identified, so it passes (sinks are
        // idempotent) rather than being dropped or failed.
        const partial = change !== undefined && ["d", "u", "t"].includes(change.op);
        if (row === null) return partial ? undefined : fail(record, "its value is not a row");
        const values: unknown[] = [];
        for (const field of fields) {
          const value = eventField(record, field);
          if (value !== undefined) values.push(value);
          else if (partial) return undefined;
          else return fail(record, `field "${field}" is not in the row`);
        }
        return `fields\u0000${stableStringify(values)}`;
      };
    }
  }
}
