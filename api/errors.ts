/**
 * The three kinds of failure Sluice distinguishes. Every error carries a
 * `cause` when it wraps another one.
 *
 * - {@linkcode ConfigError}: the configuration is wrong. Raised before anything
 *   connects, listing every problem at once.
 * - {@linkcode RecordError}: one record cannot be processed. Follows the
 *   pipeline's `errors.tolerance`: dead-letter it, or stop.
 * - {@linkcode RetriableError}: a transient fault (database or broker down).
 *   The runtime backs off and tries again within `errors.retry.timeout`.
 *
 * @module
 */
import { redactedMessage, redactSecrets } from "./redact.ts";

/**
 * One problem in a configuration, with the dotted path of the offending key.
 *
 * @example A problem as the config loader reports it
 * ```ts
 * import type { ConfigIssue } from "@sluice/sluice";
 *
 * const issue: ConfigIssue = {
 *   path: "profile_sync: config.chunk.size",
 *   message: 'expected an integer: current value is "many"',
 * };
 * ```
 */
export interface ConfigIssue {
  /** Where the problem is, e.g. `profile_sync: config.mode`. */
  path: string;
  /** A plain sentence that quotes the bad value. */
  message: string;
}

/**
 * A configuration that cannot run. `issues` lists every problem found.
 *
 * @example Reporting two problems at once
 * ```ts
 * import { ConfigError } from "@sluice/sluice";
 * import assert from "node:assert/strict";
 *
 * const error = new ConfigError([
 *   { path: "profile_sync: config.chunk.size", message: "must be a positive integer: current value is -1" },
 *   { path: "profile_sync: config.mode", message: 'must be "full" or "incremental"' },
 * ]);
 * assert.equal(error.issues.length, 2);
 * assert.equal(
 *   error.message,
 *   "Invalid configuration (2 problems):\n" +
 *     "  - profile_sync: config.chunk.size: must be a positive integer: current value is -1\n" +
 *     '  - profile_sync: config.mode: must be "full" or "incremental"',
 * );
 * ```
 */
export class ConfigError extends Error {
  /** Every problem found, in the order they were found. */
  readonly issues: readonly ConfigIssue[];

  /** Builds the error; its message lists `issues` one per line. */
  constructor(issues: readonly ConfigIssue[], options?: ErrorOptions) {
    super(ConfigError.format(issues), options);
    this.name = "ConfigError";
    this.issues = issues;
  }

  /**
   * Renders issues one per line, as the CLI prints them.
   *
   * @example One problem
   * ```ts
   * import { ConfigError } from "@sluice/sluice";
   * import assert from "node:assert/strict";
   *
   * assert.equal(
   *   ConfigError.format([{ path: "x: config.table", message: "is required" }]),
   *   "Invalid configuration (1 problem):\n  - x: config.table: is required",
   * );
   * ```
   */
  static format(issues: readonly ConfigIssue[]): string {
    // Messages quote bad values, which may hold a password: hide it.
    const lines = issues.map((issue) => `  - ${issue.path}: ${redactSecrets(issue.message)}`);
    const noun = issues.length === 1 ? "problem" : "problems";
    return `Invalid configuration (${issues.length} ${noun}):\n${lines.join("\n")}`;
  }
}

/**
 * A single record could not be transformed or written. The pipeline
 * dead-letters the record or stops, as `errors.tolerance` says.
 *
 * @example A transform rejecting one record
 * ```ts
 * import { RecordError } from "@sluice/sluice";
 * import assert from "node:assert/strict";
 *
 * const error = new RecordError('field "amount" is not a number: "12,5"', "cast");
 * assert.equal(error.stage, "cast");
 * assert.equal(error.name, "RecordError");
 * ```
 */
export class RecordError extends Error {
  /** The stage that failed: a transform's alias, or `sink`. */
  readonly stage: string;

  /** Builds the error for the stage that failed; pass the original error as `cause`. */
  constructor(message: string, stage: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "RecordError";
    this.stage = stage;
  }
}

/**
 * A transient fault; the operation may succeed if tried again later. The
 * runtime backs off and restarts the pipeline within `errors.retry.timeout`.
 *
 * @example Wrapping a connection failure
 * ```ts
 * import { RetriableError } from "@sluice/sluice";
 * import assert from "node:assert/strict";
 *
 * const cause = new Error("connect ECONNREFUSED 127.0.0.1:5432");
 * const error = new RetriableError("Cannot reach the warehouse database", { cause });
 * assert.equal(error.cause, cause);
 * ```
 */
export class RetriableError extends Error {
  /** Builds the error; pass the underlying fault as `cause`. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "RetriableError";
  }
}

/**
 * An offsets change a source cannot make (a replication slot cannot go back
 * before its confirmed position; a batch query has no "latest"). The REST
 * API answers it with 400, the CLI with exit code 2.
 *
 * @example Refusing a rewind
 * ```ts
 * import { OffsetChangeError } from "@sluice/sluice";
 * import assert from "node:assert/strict";
 *
 * const error = new OffsetChangeError("the slot has confirmed 0/1A00000; it cannot go back to 0/1000000");
 * assert.equal(error.name, "OffsetChangeError");
 * ```
 */
export class OffsetChangeError extends Error {
  /** Builds the error with a sentence that says what cannot be done and why. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "OffsetChangeError";
  }
}

/**
 * The message of any thrown value, for logs and dead-letter headers, with credentials hidden.
 *
 * @example Errors and other thrown values
 * ```ts
 * import { errorMessage } from "@sluice/sluice";
 * import assert from "node:assert/strict";
 *
 * assert.equal(errorMessage(new Error("disk full")), "disk full");
 * assert.equal(errorMessage("plain string"), "plain string");
 * ```
 */
export function errorMessage(error: unknown): string {
  return redactedMessage(error);
}
