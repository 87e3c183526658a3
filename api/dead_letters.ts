/**
 * The dead-letter record format shared by every destination: what a sink that
 * keeps its own dead letters (a table, a topic) writes for one failure.
 *
 * The context uses Kafka Connect's header names (`__connect.errors.*`) so
 * that tools built for Kafka Connect dead-letter queues can read them.
 *
 * @module
 */
import type { RecordFailure } from "./plugin.ts";
import type { SluiceRecord } from "./record.ts";

/** The header holding the failed record's topic at the failing stage (after routing). */
export const RECORD_TOPIC_HEADER = "__sluice.errors.record.topic";
/** The header holding the error's code, such as a PostgreSQL SQLSTATE. */
export const ERROR_CODE_HEADER = "__sluice.errors.code";
/** The header holding how many times the record failed (absent: once). */
export const ATTEMPTS_HEADER = "__sluice.errors.attempts";
/**
 * The header holding the fingerprint of the transform steps the record went
 * through before the failing stage (see {@linkcode RecordFailure.chain}).
 */
export const CHAIN_HEADER = "__sluice.errors.chain";

/** The error's `code` (a PostgreSQL SQLSTATE, a Node error code), when it has a string one. */
export function errorCodeOf(error: Error): string | undefined {
  const code = (error as { code?: unknown }).code;
  return typeof code === "string" && code !== "" ? code : undefined;
}

/**
 * Kafka Connect's dead-letter context headers for one failure.
 *
 * @example The headers of a record a transform rejected
 * ```ts
 * import { deadLetterHeaders, RecordError } from "@sluice/sluice";
 * import assert from "node:assert/strict";
 *
 * const headers = deadLetterHeaders({
 *   record: { topic: "orders", key: { id: 1 }, value: { id: 1 }, origin: { partition: 2, offset: 41 } },
 *   error: new RecordError("amount is not a number", "cast"),
 *   stage: "cast",
 * }, "orders_to_warehouse");
 * assert.equal(headers["__connect.errors.connector.name"], "orders_to_warehouse");
 * assert.equal(headers["__connect.errors.exception.message"], "amount is not a number");
 * assert.equal(headers["__connect.errors.partition"], "2");
 * assert.equal(headers["__connect.errors.offset"], "41");
 * ```
 */
export function deadLetterHeaders(
  failure: RecordFailure,
  pipeline: string,
): Record<string, string> {
  const origin = failure.record.origin ?? {};
  const headers: Record<string, string> = {
    "__connect.errors.topic": String(origin.topic ?? failure.record.topic),
    "__connect.errors.connector.name": pipeline,
    "__connect.errors.task.id": "0",
    "__connect.errors.stage": failure.stage,
    "__connect.errors.class.name": failure.stage,
    "__connect.errors.exception.class.name": failure.error.name,
    "__connect.errors.exception.message": failure.error.message,
    "__connect.errors.exception.stacktrace": failure.error.stack ?? failure.error.message,
  };
  if (origin.partition !== undefined) {
    headers["__connect.errors.partition"] = String(origin.partition);
  }
  if (origin.offset !== undefined) headers["__connect.errors.offset"] = String(origin.offset);
  headers[RECORD_TOPIC_HEADER] = failure.record.topic;
  headers["__sluice.errors.failed.at"] = new Date().toISOString();
  const code = errorCodeOf(failure.error);
  if (code) headers[ERROR_CODE_HEADER] = code;
  if (failure.chain !== undefined) headers[CHAIN_HEADER] = failure.chain;
  return headers;
}

/** One dead letter as a JSON-friendly object, as {@linkcode deadLetterEntry} builds it. */
export interface DeadLetterEntry {
  /** The pipeline the record failed in. */
  readonly pipeline: string;
  /** The stage that failed: a transform's alias, or `sink`. */
  readonly stage: string;
  /** The error message. */
  readonly error: string;
  /** The error's class name, such as `RecordError`. */
  readonly errorClass: string;
  /** The error's code when it has one, such as the SQLSTATE `23514` of a CHECK violation. */
  readonly errorCode?: string;
  /** When the dead letter was made, as an ISO 8601 string. */
  readonly failedAt: string;
  /** The record's topic. */
  readonly topic: string;
  /** The record's key. */
  readonly key: unknown;
  /** The record's value. */
  readonly value: unknown;
  /** The record's own headers plus the `__connect.errors.*` context headers. */
  readonly headers: Record<string, string>;
}

/**
 * One dead letter as a JSON-friendly object.
 *
 * @example A dead letter written as a JSON line
 * ```ts
 * import { deadLetterEntry, encodeJson } from "@sluice/sluice";
 * import assert from "node:assert/strict";
 *
 * const entry = deadLetterEntry({
 *   record: { topic: "orders", key: { id: 1 }, value: { id: 1, amount: "12,5" } },
 *   error: new Error("amount is not a number"),
 *   stage: "sink",
 * }, "orders_sync");
 * assert.equal(entry.pipeline, "orders_sync");
 * assert.equal(entry.headers["__connect.errors.stage"], "sink");
 * assert.ok(encodeJson(entry).startsWith('{"pipeline":"orders_sync"'));
 * ```
 */
export function deadLetterEntry(failure: RecordFailure, pipeline: string): DeadLetterEntry {
  return {
    pipeline,
    stage: failure.stage,
    error: failure.error.message,
    errorClass: failure.error.name,
    ...(errorCodeOf(failure.error) ? { errorCode: errorCodeOf(failure.error) } : {}),
    failedAt: new Date().toISOString(),
    topic: failure.record.topic,
    key: failure.record.key,
    value: failure.record.value,
    headers: { ...failure.record.headers, ...deadLetterHeaders(failure, pipeline) },
  };
}

/**
 * A dead letter as its destination keeps it: the failure plus an id (a table
 * row id, a file entry id, a topic `partition:offset`) and how many times the
 * record failed.
 *
 * @example A record a CHECK constraint refused, once
 * ```ts
 * import type { StoredDeadLetter } from "@sluice/sluice";
 *
 * const letter: StoredDeadLetter = {
 *   id: "17",
 *   pipeline: "orders_sync",
 *   stage: "sink",
 *   error: 'new row for relation "orders" violates check constraint "orders_amount_check"',
 *   errorClass: "RecordError",
 *   errorCode: "23514",
 *   failedAt: "2026-11-30T10:00:00.000Z",
 *   attempts: 1,
 *   record: { topic: "orders", key: { id: 1 }, value: { id: 1, amount: -5 } },
 * };
 * ```
 */
export interface StoredDeadLetter {
  /** The id within its destination. */
  readonly id: string;
  /** The pipeline the record failed in. */
  readonly pipeline: string;
  /** The stage that failed last: a transform's alias, `sink`, or a converter stage. */
  readonly stage: string;
  /** The last error's message. */
  readonly error: string;
  /** The last error's class name. */
  readonly errorClass: string;
  /** The last error's code, such as a SQLSTATE. */
  readonly errorCode?: string;
  /** The last error's stack trace, when kept. */
  readonly trace?: string;
  /** When the record was first dead-lettered (ISO 8601). */
  readonly failedAt: string;
  /** How many times the record failed: 1, plus one per failed replay. */
  readonly attempts: number;
  /** The record as the failing stage received it, without the error context headers. */
  readonly record: SluiceRecord;
  /**
   * The fingerprint of the transform steps the record went through before
   * its stage; absent in dead letters written before Sluice recorded it.
   */
  readonly chain?: string;
}

/**
 * Which dead letters of a pipeline a command works on; every given field must match.
 *
 * @example The sink failures of one morning
 * ```ts
 * import { type DeadLetterSelection, selectsDeadLetter } from "@sluice/sluice";
 * import assert from "node:assert/strict";
 *
 * const selection: DeadLetterSelection = {
 *   stages: ["sink"],
 *   since: new Date("2026-11-30T08:00:00Z"),
 *   until: new Date("2026-11-30T12:00:00Z"),
 * };
 * assert.equal(selectsDeadLetter(selection, { id: "1", stage: "sink", failedAt: "2026-11-30T09:30:00Z" }), true);
 * assert.equal(selectsDeadLetter(selection, { id: "2", stage: "mask", failedAt: "2026-11-30T09:30:00Z" }), false);
 * ```
 */
export interface DeadLetterSelection {
  /** Only these ids. */
  readonly ids?: readonly string[];
  /** Only these stages. */
  readonly stages?: readonly string[];
  /** Only dead letters made at or after this time. */
  readonly since?: Date;
  /** Only dead letters made before this time. */
  readonly until?: Date;
}

/** Whether `letter` is one of `selection` (see {@linkcode DeadLetterSelection}). */
export function selectsDeadLetter(
  selection: DeadLetterSelection,
  letter: Pick<StoredDeadLetter, "id" | "stage" | "failedAt">,
): boolean {
  if (selection.ids && !selection.ids.includes(letter.id)) return false;
  if (selection.stages && !selection.stages.includes(letter.stage)) return false;
  const at = Date.parse(letter.failedAt);
  if (selection.since && !(at >= selection.since.getTime())) return false;
  if (selection.until && !(at < selection.until.getTime())) return false;
  return true;
}

/**
 * A dead-letter destination read and worked off by `sluice dlq`: list what
 * it holds, remove what was replayed or purged, and record a failed replay.
 *
 * @example Dead letters kept in memory
 * ```ts
 * import { type DeadLetterStore, selectsDeadLetter, type StoredDeadLetter } from "@sluice/sluice";
 * import assert from "node:assert/strict";
 *
 * const letters: StoredDeadLetter[] = [];
 * const store: DeadLetterStore = {
 *   description: "memory",
 *   list: (pipeline, selection) =>
 *     Promise.resolve(letters.filter((l) => l.pipeline === pipeline && selectsDeadLetter(selection, l))),
 *   count: (pipeline) => Promise.resolve(letters.filter((l) => l.pipeline === pipeline).length),
 *   remove(ids) {
 *     const before = letters.length;
 *     letters.splice(0, letters.length, ...letters.filter((l) => !ids.includes(l.id)));
 *     return Promise.resolve(before - letters.length);
 *   },
 *   failedAgain: () => Promise.resolve(),
 *   close: () => Promise.resolve(),
 * };
 * assert.equal(await store.count("orders_sync"), 0);
 * ```
 */
export interface DeadLetterStore {
  /** The destination, described as its writer describes it (the metrics' `destination` label). */
  readonly description: string;
  /** The dead letters of `pipeline` that `selection` picks, oldest first. */
  list(pipeline: string, selection: DeadLetterSelection): Promise<StoredDeadLetter[]>;
  /** How many dead letters of `pipeline` the destination holds. */
  count(pipeline: string): Promise<number>;
  /** Removes these dead letters (replayed or purged); returns how many went. */
  remove(ids: readonly string[]): Promise<number>;
  /**
   * Records that a replay failed again: the attempt count goes up by one and
   * the new error, stage and record replace the old ones.
   */
  failedAgain(
    again: readonly { readonly letter: StoredDeadLetter; readonly failure: RecordFailure }[],
  ): Promise<void>;
  /** Releases connections. */
  close(): Promise<void>;
}
