/**
 * The PostgreSQL side of running several Sluice processes on one plan:
 * session-level advisory locks (released by PostgreSQL when the holding
 * connection ends, so a crashed process never keeps one) and a small ticks
 * table, `sluice_job_ticks`, that records every batch run of the group.
 *
 * A claim opens a dedicated connection, takes `pg_try_advisory_lock` on a
 * key derived from the job's name (SHA-256, first 8 bytes), and, holding
 * it, inserts the run's tick: a tick already present ran (or runs) on
 * another process, so it is skipped. The lock guards the run; the row makes
 * each tick run once even when the first process finished before the
 * second one tried.
 *
 * @module
 */
import type { JsonValue } from "../api/record.ts";
import { connect, databaseLabel, type Sql } from "./postgres.ts";
import { OffsetsTable } from "./pg_offsets.ts";

/** A 64-bit advisory lock key from a name, stable across processes, hosts and versions. */
export async function advisoryLockKey(name: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(name));
  return new DataView(digest).getBigInt64(0).toString();
}

/** Who holds the advisory lock `key` (the holder's application_name), if anyone. */
export async function advisoryLockHolder(sql: Sql, key: string): Promise<string | undefined> {
  const rows = await sql<{ holder: string }[]>`
    select a.application_name as holder
    from pg_locks l join pg_stat_activity a on a.pid = l.pid
    where l.locktype = 'advisory' and l.granted and l.objsubid = 1
      and ((l.classid::bigint << 32) | l.objid::bigint) = ${key}::bigint`;
  return rows[0]?.holder;
}

/** How a claim ended (mirrors core/cluster.ts, which drivers may not import). */
type Claim =
  | { readonly lease: { finish(status: string): Promise<void> } }
  | { readonly skipped: "running_elsewhere" | "already_run"; readonly holder?: string };

/** Prefix of the application_name of lock sessions: `sluice-worker <worker id>`. */
export const WORKER_APPLICATION = "sluice-worker";

/** The application_name of `worker`'s sessions (PostgreSQL keeps 63 bytes of it). */
function workerApplication(worker: string): string {
  return `${WORKER_APPLICATION} ${worker}`.slice(0, 63);
}

/**
 * Job locks and tick records in one PostgreSQL database (`cluster.url`, or
 * a job's sink database).
 *
 * @example Claiming a tick (needs a database, so not run here)
 * ```ts ignore
 * import { PgJobCoordinator } from "./pg_cluster.ts";
 *
 * await using coordinator = new PgJobCoordinator("postgres://localhost/citizen", "host-a:1234");
 * const claim = await coordinator.claim("profile_sync", "2026-11-30T02:00:00.000Z");
 * if ("lease" in claim) await claim.lease.finish("succeeded");
 * ```
 */
export class PgJobCoordinator implements AsyncDisposable {
  /** This process's name in the group. */
  readonly workerId: string;
  readonly #url: string;
  readonly #table: string;
  readonly #database: string;
  #sql?: Sql;
  #ready?: Promise<void>;

  /**
   * A coordinator on `url`; nothing connects before the first claim.
   * `database` says what `url` is in errors, `%s` standing for its host and
   * name (default: "the cluster database %s"): a user who never named a
   * cluster database should read which of theirs failed.
   */
  constructor(
    url: string,
    workerId: string,
    options: { table?: string; database?: string } = {},
  ) {
    this.#url = url;
    this.workerId = workerId;
    this.#table = options.table ?? "public.sluice_job_ticks";
    this.#database = options.database ?? "the cluster database %s";
  }

  /** Takes the job's lock and records `tick` (a manual run gets a tick of its own). */
  async claim(job: string, tick?: string): Promise<Claim> {
    try {
      return await this.#claim(job, tick);
    } catch (error) {
      throw new Error(
        `cannot use ${this.#database.replace("%s", databaseLabel(this.#url))}: ${
          (error as Error).message
        }`,
        { cause: error },
      );
    }
  }

  async #claim(job: string, tick?: string): Promise<Claim> {
    await this.#prepare();
    const key = await advisoryLockKey(`sluice job ${job}`);
    const session = connect(this.#url, {
      max: 1,
      applicationName: workerApplication(this.workerId),
    });
    try {
      const [{ locked }] = await session<{ locked: boolean }[]>`
        select pg_try_advisory_lock(${key}::bigint) as locked`;
      if (!locked) {
        const holder = await advisoryLockHolder(this.#sql!, key).catch(() => undefined);
        await session.end({ timeout: 1 });
        return { skipped: "running_elsewhere", holder: holder?.replace(/^sluice-worker /, "") };
      }
      const name = tick ?? `manual ${new Date().toISOString()} ${this.workerId}`;
      // Holding the lock, no other run is alive: a row still running was a worker that died.
      await session.unsafe(
        `update ${this.#table} set status = 'interrupted', finished_at = now()
         where job = $1 and status = 'running'`,
        [job],
      );
      const inserted = await session.unsafe(
        `insert into ${this.#table} (job, tick, worker) values ($1, $2, $3)
         on conflict (job, tick) do nothing returning worker`,
        [job, name, this.workerId],
      );
      if (inserted.length === 0) {
        await session.end({ timeout: 1 });
        return { skipped: "already_run" };
      }
      return { lease: { finish: (status) => this.#finish(session, job, name, key, status) } };
    } catch (error) {
      await session.end({ timeout: 1 });
      throw error;
    }
  }

  /** When each of `jobs` last succeeded in the group (ms since the epoch). */
  async lastSuccess(jobs: readonly string[]): Promise<Map<string, number>> {
    await this.#prepare();
    const rows = await this.#sql!.unsafe<{ job: string; at: string }[]>(
      `select job, (extract(epoch from max(finished_at)) * 1000)::bigint::text as at
       from ${this.#table} where status = 'succeeded' and job = any($1::text[]) group by job`,
      [jobs as string[]],
    );
    return new Map(rows.map((row) => [row.job, Number(row.at)]));
  }

  /** The worker holding `job`'s lock now (a run in progress), if any. */
  async runningOn(job: string): Promise<string | undefined> {
    await this.#prepare();
    const holder = await advisoryLockHolder(this.#sql!, await advisoryLockKey(`sluice job ${job}`));
    return holder?.replace(/^sluice-worker /, "");
  }

  /** The latest run of `job` in the group (for `sluice status` and the REST API). */
  async lastRun(
    job: string,
  ): Promise<{ tick: string; worker: string; status: string; startedAt: string } | undefined> {
    await this.#prepare();
    const rows = await this.#sql!.unsafe<
      { tick: string; worker: string; status: string; startedAt: string }[]
    >(
      `select tick, worker, status,
              to_char(started_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') as "startedAt"
       from ${this.#table} where job = $1 order by started_at desc limit 1`,
      [job],
    );
    const run = rows[0];
    const holder = run?.status === "running"
      ? await advisoryLockHolder(this.#sql!, await advisoryLockKey(`sluice job ${job}`))
      : undefined;
    if (run?.status === "running" && holder !== workerApplication(run.worker)) {
      return { ...run, status: "interrupted" }; // its worker died without a word
    }
    return run ? { ...run } : undefined;
  }

  /** Closes the shared connection. */
  async close(): Promise<void> {
    await this.#sql?.end({ timeout: 1 });
    this.#sql = undefined;
    this.#ready = undefined;
  }

  /** Same as {@linkcode PgJobCoordinator.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  async #finish(session: Sql, job: string, tick: string, key: string, status: string) {
    try {
      await session.unsafe(
        `update ${this.#table} set status = $3, finished_at = now() where job = $1 and tick = $2`,
        [job, tick, status],
      );
      await session`select pg_advisory_unlock(${key}::bigint)`;
    } finally {
      // Ending the session releases the lock in any case.
      await session.end({ timeout: 1 });
    }
  }

  #prepare(): Promise<void> {
    this.#sql ??= connect(this.#url, {
      max: 2,
      applicationName: workerApplication(this.workerId),
    });
    const sql = this.#sql;
    this.#ready ??= (async () => {
      const key = await advisoryLockKey("sluice ddl");
      // Several processes start at once: one creates the table, the others wait.
      await sql.begin(async (tx) => {
        await tx`select pg_advisory_xact_lock(${key}::bigint)`;
        await tx.unsafe(`create table if not exists ${this.#table} (
          job text not null,
          tick text not null,
          worker text not null,
          status text not null default 'running',
          started_at timestamptz not null default now(),
          finished_at timestamptz,
          primary key (job, tick))`);
        // A month of history is plenty for depends.on and status.
        await tx.unsafe(
          `delete from ${this.#table} where started_at < now() - interval '30 days'`,
        );
      });
    })().catch((error) => {
      this.#ready = undefined;
      throw error;
    });
    return this.#ready;
  }
}

/**
 * Offsets of a group kept in the cluster database, in the same table shape
 * as the postgres sink's (`public.sluice_offsets`: pipeline, offset jsonb),
 * for pipelines whose sink does not keep offsets itself (CDC → Kafka): a
 * standby that takes over a slot reads where the owner got to, as Kafka
 * Connect's distributed workers share their offsets topic.
 *
 * @example Shared positions (needs a database, so not run here)
 * ```ts ignore
 * import { PgOffsetStore } from "./pg_cluster.ts";
 *
 * await using store = new PgOffsetStore("postgres://localhost/sluice");
 * await store.write("warehouse-cdc", { lsn: "0/16B3748", txId: 745 });
 * ```
 */
export class PgOffsetStore implements AsyncDisposable {
  readonly #url: string;
  readonly #table: OffsetsTable;
  #sql?: Sql;
  #ready?: Promise<void>;

  /** A store in the database at `url`; nothing connects before first use. */
  constructor(url: string, table = "public.sluice_offsets") {
    this.#url = url;
    this.#table = new OffsetsTable(table);
  }

  /** The position stored under `key`, or undefined. */
  async read(key: string): Promise<JsonValue | undefined> {
    return await this.#table.read(await this.#prepare(), key);
  }

  /** Stores `value` under `key`; resolves once committed. */
  async write(key: string, value: JsonValue): Promise<void> {
    await this.#table.write(await this.#prepare(), key, value);
  }

  /** Forgets the position of `key`. */
  async delete(key: string): Promise<void> {
    await this.#table.delete(await this.#prepare(), key);
  }

  /** Closes the connection. */
  async close(): Promise<void> {
    await this.#sql?.end({ timeout: 1 });
    this.#sql = undefined;
    this.#ready = undefined;
  }

  /** Same as {@linkcode PgOffsetStore.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  async #prepare(): Promise<Sql> {
    this.#sql ??= connect(this.#url, { max: 2, applicationName: "sluice-offsets" });
    const sql = this.#sql;
    this.#ready ??= this.#table.create(sql).catch((error) => {
      this.#ready = undefined;
      throw error;
    });
    await this.#ready;
    return sql;
  }
}
