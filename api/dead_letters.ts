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
    failedAt: new Date().toISOString(),
    topic: failure.record.topic,
    key: failure.record.key,
    value: failure.record.value,
    headers: { ...failure.record.headers, ...deadLetterHeaders(failure, pipeline) },
  };
}
