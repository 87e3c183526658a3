/**
 * Several identical `sluice run` processes on one plan, without a
 * coordinator of our own: the runtime asks a {@linkcode JobCoordinator}
 * (PostgreSQL advisory locks and a ticks table, see
 * `drivers/pg_cluster.ts`) before each batch run, so that a scheduled tick
 * runs once across the group and `depends.on` sees upstream runs made by
 * other processes. Replication slots and Kafka partitions need nothing here:
 * a source that finds its slot owned elsewhere raises a
 * {@linkcode StandbyError} and the runtime keeps it on standby.
 *
 * @module
 */
import { StandbyError } from "../api/errors.ts";

/**
 * Why a claimed run did not start.
 *
 * @example Telling the two apart in a log line
 * ```ts
 * import type { SkipReason } from "@sluice/sluice";
 * import assert from "node:assert/strict";
 *
 * const say = (reason: SkipReason) =>
 *   reason === "running_elsewhere" ? "still running on another worker" : "ran elsewhere";
 * assert.equal(say("already_run"), "ran elsewhere");
 * ```
 */
export type SkipReason = "running_elsewhere" | "already_run";

/**
 * The group-wide right to run a job once; release it with {@linkcode JobLease.finish}.
 *
 * @example A lease that only logs
 * ```ts
 * import type { JobLease } from "@sluice/sluice";
 *
 * const lease: JobLease = {
 *   finish: (status) => Promise.resolve(console.log(`run ended: ${status}`)),
 * };
 * await lease.finish("succeeded");
 * ```
 */
export interface JobLease {
  /** Records how the run ended (for `depends.on` in the whole group) and releases the lock. */
  finish(status: "succeeded" | "failed" | "stopped"): Promise<void>;
}

/**
 * The outcome of {@linkcode JobCoordinator.claim}.
 *
 * @example Running only with a lease
 * ```ts
 * import type { Claim } from "@sluice/sluice";
 * import assert from "node:assert/strict";
 *
 * const claim: Claim = { skipped: "running_elsewhere", holder: "host-b-4242" };
 * assert.equal("lease" in claim, false);
 * ```
 */
export type Claim =
  | { readonly lease: JobLease }
  | { readonly skipped: SkipReason; readonly holder?: string };

/**
 * Coordinates batch runs across a group of processes.
 *
 * @example A coordinator for a single process (every claim succeeds)
 * ```ts
 * import type { JobCoordinator } from "@sluice/sluice";
 *
 * const alone: JobCoordinator = {
 *   workerId: "local",
 *   claim: () => Promise.resolve({ lease: { finish: () => Promise.resolve() } }),
 *   lastSuccess: () => Promise.resolve(new Map()),
 * };
 * ```
 */
export interface JobCoordinator {
  /** This process's name in the group (shown in logs and status). */
  readonly workerId: string;
  /**
   * Takes the group-wide lock of `job`. With `tick` (a scheduled time, or
   * the upstream completion that triggers a dependent job), also records
   * the tick under the lock, so a tick that fired on several processes runs
   * once even when one finished before the next one tried.
   */
  claim(job: string, tick?: string): Promise<Claim>;
  /** When each of `jobs` last succeeded anywhere in the group (ms since the epoch). */
  lastSuccess(jobs: readonly string[]): Promise<Map<string, number>>;
  /** The latest run of `job` in the group: which worker ran which tick, and how it ended. */
  lastRun?(job: string): Promise<GroupRun | undefined>;
  /** The worker running `job` now anywhere in the group (it holds the job's lock), if any. */
  runningOn?(job: string): Promise<string | undefined>;
}

/**
 * One run of a job somewhere in the group, as the cluster database recorded it.
 *
 * @example Who ran the last tick
 * ```ts
 * import type { GroupRun } from "@sluice/sluice";
 * import assert from "node:assert/strict";
 *
 * const run: GroupRun = {
 *   tick: "2026-11-30T02:00:00.000Z",
 *   worker: "host-a-1234",
 *   status: "succeeded",
 *   startedAt: "2026-11-30T02:00:00.012Z",
 * };
 * assert.equal(`${run.worker} ${run.status}`, "host-a-1234 succeeded");
 * ```
 */
export interface GroupRun {
  /** The tick: a scheduled time, `after <upstream>@<time>`, or `manual …`. */
  readonly tick: string;
  /** The worker that ran it. */
  readonly worker: string;
  /**
   * running, succeeded, failed or stopped; interrupted when its worker died
   * mid-run (it no longer holds the job's lock).
   */
  readonly status: string;
  /** When it started (ISO 8601). */
  readonly startedAt: string;
}

/** The StandbyError in `error` or its causes, if any. */
export function standbyOf(error: unknown): StandbyError | undefined {
  for (let current = error; current instanceof Error; current = current.cause) {
    if (current instanceof StandbyError || current.name === "StandbyError") {
      return current as StandbyError;
    }
  }
  return undefined;
}
