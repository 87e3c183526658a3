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

/** One problem in a configuration, with the dotted path of the offending key. */
export interface ConfigIssue {
  /** Where the problem is, e.g. `profile_sync: config.mode`. */
  path: string;
  /** A plain sentence that quotes the bad value. */
  message: string;
}

/** A configuration that cannot run. `issues` lists every problem found. */
export class ConfigError extends Error {
  readonly issues: readonly ConfigIssue[];

  constructor(issues: readonly ConfigIssue[], options?: ErrorOptions) {
    super(ConfigError.format(issues), options);
    this.name = "ConfigError";
    this.issues = issues;
  }

  /** Renders issues one per line, as the CLI prints them. */
  static format(issues: readonly ConfigIssue[]): string {
    // Messages quote bad values, which may hold a password: hide it.
    const lines = issues.map((issue) => `  - ${issue.path}: ${redactSecrets(issue.message)}`);
    const noun = issues.length === 1 ? "problem" : "problems";
    return `Invalid configuration (${issues.length} ${noun}):\n${lines.join("\n")}`;
  }
}

/** A single record could not be transformed or written. */
export class RecordError extends Error {
  /** The stage that failed: a transform's alias, or `sink`. */
  readonly stage: string;

  constructor(message: string, stage: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "RecordError";
    this.stage = stage;
  }
}

/** A transient fault; the operation may succeed if tried again later. */
export class RetriableError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "RetriableError";
  }
}

/** The message of any thrown value, for logs and dead-letter headers, with credentials hidden. */
export function errorMessage(error: unknown): string {
  return redactedMessage(error);
}
