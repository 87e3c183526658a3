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
/** Kafka Connect's dead-letter context headers for one failure. */
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

/** One dead letter as a JSON-friendly object. */
export function deadLetterEntry(failure: RecordFailure, pipeline: string) {
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
