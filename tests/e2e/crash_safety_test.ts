/**
 * Crash safety (issue 3): the `sluice run` process killed with SIGKILL at
 * random moments while rows are written at load, then restarted, again and
 * again; and the Kafka broker and the target PostgreSQL restarted
 * mid-stream. In the end the citizen table equals the warehouse table (same
 * rows, same checksum) and every deleted warehouse row is soft-deleted in the
 * citizen table: nothing lost, nothing rolled back.
 *
 * Flow: warehouse `postgres_cdc` (snapshot.mode initial) → Kafka topic →
 * `postgres` sink connector (`topics`) → citizen table, both pipelines in one
 * config file run by `cli/main.ts run` as a child process.
 */
import postgres from "postgres";
import { assertEquals } from "../_assert.ts";
import { createTestDatabase, type TestDatabase, testKafkaBrokers } from "../_services.ts";
import { type PostgresServer, restartPostgres, startPostgres } from "../../dev/postgres.ts";
import { startKafka } from "../../dev/kafka.ts";
import { waitUntil } from "../_wait.ts";
import { stderrTail } from "../_process.ts";

const CLI = new URL("../../cli/main.ts", import.meta.url).pathname;
const ROOT = new URL("../..", import.meta.url).pathname;

const WAREHOUSE_DDL = `create table public.items (
  id bigint primary key, payload text, n int, updated_at timestamptz not null default now())`;
const CITIZEN_DDL = `create table public.items (
  id bigint primary key, payload text, n int, updated_at timestamptz not null,
  deleted_at timestamptz, _source_lsn pg_lsn)`;

/** A pause that shapes the load or the fault schedule; never a wait for a result. */
const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));
const randomInt = (min: number, max: number) => min + Math.floor(Math.random() * (max - min + 1));
const unique = (prefix: string) =>
  `${prefix}_${Date.now().toString(36)}_${crypto.randomUUID().slice(0, 6)}`;

/** A `sluice run` child process, its stderr collected for diagnostics. */
interface Sluice {
  child: Deno.ChildProcess;
  /** Resolves with the exit status once the process ended and stderr was read. */
  done: Promise<{ status: Deno.CommandStatus; stderr: string }>;
}

function startSluice(config: string, offsets: string, brokers: string): Sluice {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--unstable-cron",
      CLI,
      "run",
      config,
      "--listen",
      "127.0.0.1:0",
      "--offsets",
      offsets,
      "--bootstrap",
      brokers,
      "--log-level",
      "warning",
      "--log-format",
      "text",
    ],
    cwd: ROOT,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const stderr = stderrTail(child, 20_000);
  const done = Promise.all([child.status, stderr]).then(([status, stderr]) => ({
    status,
    stderr,
  }));
  return { child, done };
}

async function killHard(s: Sluice): Promise<string> {
  try {
    s.child.kill("SIGKILL");
  } catch { /* already gone */ }
  return (await s.done).stderr;
}

/** Writes into the warehouse table until stopped: single- and multi-row transactions. */
class Writer {
  readonly live = new Set<number>();
  readonly deleted = new Set<number>();
  transactions = 0;
  #nextId = 1;
  #stopped = false;
  #loop?: Promise<void>;
  constructor(readonly sql: postgres.Sql) {}

  async preload(count: number): Promise<void> {
    const ids = Array.from({ length: count }, () => this.#nextId++);
    await this.sql`insert into items (id, payload, n)
                   select id, 'pre-' || id, 0 from unnest(${ids}::bigint[]) as id`;
    for (const id of ids) this.live.add(id);
  }

  start(): void {
    this.#loop = this.#run();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#loop;
  }

  #pick(): number | undefined {
    if (this.live.size === 0) return undefined;
    const index = Math.floor(Math.random() * this.live.size);
    let i = 0;
    for (const id of this.live) if (i++ === index) return id;
  }

  async #one(tx: postgres.TransactionSql, pending: { add: number[]; del: number[] }) {
    const roll = Math.random();
    const target = this.#pick();
    if (roll < 0.5 || target === undefined || pending.del.includes(target)) {
      const id = this.#nextId++;
      await tx`insert into items (id, payload, n) values (${id}, ${"p-" + id}, 0)`;
      pending.add.push(id);
    } else if (roll < 0.88) {
      await tx`update items set n = n + 1, payload = ${"u-" + crypto.randomUUID().slice(0, 8)},
               updated_at = clock_timestamp() where id = ${target}`;
    } else {
      await tx`delete from items where id = ${target}`;
      pending.del.push(target);
    }
  }

  async #run(): Promise<void> {
    while (!this.#stopped) {
      const size = Math.random() < 0.6 ? 1 : randomInt(2, 25);
      const pending = { add: [] as number[], del: [] as number[] };
      await this.sql.begin(async (tx) => {
        for (let i = 0; i < size; i++) await this.#one(tx, pending);
      });
      for (const id of pending.add) this.live.add(id);
      for (const id of pending.del) {
        this.live.delete(id);
        this.deleted.add(id);
      }
      this.transactions++;
      if (Math.random() < 0.05) await pause(5); // irregular load, not a wait
    }
  }
}

const DIGEST = `select count(*)::int as n,
  coalesce(md5(string_agg((id, payload, n, updated_at)::text, ',' order by id)), '') as digest
  from items`;

/** Polls until the citizen table equals the warehouse table; returns the last comparison. */
async function waitForConvergence(
  warehouse: postgres.Sql,
  citizen: () => postgres.Sql,
  deleted: Set<number>,
  timeoutMs: number,
): Promise<{ ok: boolean; detail: string }> {
  let detail = "";
  const deletedIds = [...deleted];
  const converged = async () => {
    try {
      const [w] = await warehouse.unsafe(DIGEST);
      const [c] = await citizen().unsafe(`${DIGEST} where deleted_at is null`);
      // A deleted warehouse row must not be live in the citizen table: it is
      // soft-deleted there, or absent when the citizen never saw it (deleted
      // before a snapshot that was redone after a kill, see the report).
      const [d] = await citizen()`select count(*) filter (where deleted_at is not null)::int as n,
        count(*) filter (where deleted_at is null)::int as live from items
        where id = any(${deletedIds}::bigint[])`;
      detail = `warehouse ${w.n} rows ${w.digest}; citizen ${c.n} live rows ${c.digest}; ` +
        `of ${deletedIds.length} deleted rows: ${d.n} soft-deleted, ${d.live} still live, ` +
        `${deletedIds.length - d.n - d.live} absent`;
      return w.digest === c.digest && w.n === c.n && d.live === 0;
    } catch (e) {
      detail = `query failed: ${(e as Error).message}`;
      return false;
    }
  };
  const ok = await waitUntil("convergence", converged, { timeoutMs, intervalMs: 500 })
    .catch(() => false);
  return { ok, detail };
}

/**
 * Waits until the citizen table holds a change the warehouse committed after
 * this call began (the stream moves end to end).
 */
async function changesFlow(
  warehouse: postgres.Sql,
  citizen: () => postgres.Sql,
  what: string,
): Promise<void> {
  const [{ now }] = await warehouse`select clock_timestamp() as now`;
  await waitUntil(what, async () => {
    const [{ newest }] = await citizen()`select max(updated_at) as newest from items`;
    if (!(newest > now)) {
      throw new Error(`newest change ${newest?.toISOString()} <= ${now.toISOString()}`);
    }
    return true;
  }, { timeoutMs: 60_000, intervalMs: 250 });
}

/** Finer diagnostics when convergence failed: which ids differ. */
async function differences(
  warehouse: postgres.Sql,
  citizen: postgres.Sql,
  deleted: Set<number>,
): Promise<string> {
  const ids = [...deleted];
  const present = await citizen`select id::int from items where id = any(${ids}::bigint[])`;
  const seen = new Set(present.map((r) => r.id as number));
  const absent = ids.filter((id) => !seen.has(id)).sort((a, b) => a - b);
  const absentNote = `deleted upstream and absent from the citizen table ${absent.length} ` +
    `(${absent.filter((id) => id <= 500).length} of them preloaded, ids <= 500) ` +
    `[${absent.slice(0, 40)}]; `;
  const w = await warehouse`select id::text, (id, payload, n, updated_at)::text as r from items`;
  const c = await citizen`select id::text, (id, payload, n, updated_at)::text as r,
                          deleted_at is not null as del from items`;
  const cm = new Map(c.map((r) => [r.id, r]));
  const wm = new Map(w.map((r) => [r.id, r]));
  const missing: string[] = [], stale: string[] = [], wronglyDeleted: string[] = [];
  const notDeleted: string[] = [];
  for (const row of w) {
    const other = cm.get(row.id);
    if (!other) missing.push(row.id);
    else if (other.del) wronglyDeleted.push(row.id);
    else if (other.r !== row.r) stale.push(`${row.r} vs ${other.r}`);
  }
  for (const row of c) if (!wm.has(row.id) && !row.del) notDeleted.push(row.id);
  return absentNote +
    `missing ${missing.length} [${missing.slice(0, 10)}], stale ${stale.length} [${
      stale.slice(0, 3).join("; ")
    }], wrongly deleted ${wronglyDeleted.length} [${wronglyDeleted.slice(0, 10)}], ` +
    `deleted upstream but live ${notDeleted.length} [${notDeleted.slice(0, 10)}]`;
}

function pipelineConfig(opts: {
  name: string;
  warehouseUrl: string;
  citizenUrl: string;
  slot: string;
  publication: string;
  topicPrefix: string;
}) {
  const retry = { "errors.retry.timeout": "120000", "errors.retry.delay.max.ms": "1000" };
  return [
    {
      name: `${opts.name}-capture`,
      config: {
        "connector.class": "postgres_cdc",
        "connection.url": opts.warehouseUrl,
        "topic.prefix": opts.topicPrefix,
        "table.include.list": "public.items",
        "slot.name": opts.slot,
        "publication.name": opts.publication,
        "publication.autocreate.mode": "filtered",
        "plugin.name": "pgoutput",
        "snapshot.mode": "initial",
        "poll.interval.ms": "20",
        "status.update.interval.ms": "1000",
        "sink.topic.creation.default.partitions": "3",
        "sink.request.timeout.ms": "5000",
        ...retry,
      },
    },
    {
      name: `${opts.name}-consume`,
      config: {
        "connector.class": "postgres",
        "topics": `${opts.topicPrefix}.public.items`,
        "connection.url": opts.citizenUrl,
        "table": "public.items",
        "session.timeout.ms": "6000",
        "heartbeat.interval.ms": "1000",
        "request.timeout.ms": "5000",
        "max.poll.records": "500",
        ...retry,
      },
    },
  ];
}

/** Stops the child with SIGTERM; returns its exit code (SIGKILL after `ms`). */
async function stopGracefully(s: Sluice, ms = 30_000) {
  s.child.kill("SIGTERM");
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<"timeout">((r) => timer = setTimeout(() => r("timeout"), ms));
  const result = await Promise.race([s.done, timeout]);
  clearTimeout(timer);
  if (result === "timeout") {
    const stderr = await killHard(s);
    return { code: undefined as number | undefined, stderr, seconds: ms / 1000 };
  }
  return { code: result.status.code, stderr: result.stderr };
}

Deno.test({
  name: "killing Sluice with SIGKILL at random moments under load loses nothing",
  sanitizeResources: true,
  sanitizeOps: true,
  fn: async () => {
    const t0 = Date.now();
    const brokers = testKafkaBrokers();
    const warehouseDb = await createTestDatabase("crash_wh");
    const citizenDb = await createTestDatabase("crash_ct");
    const warehouse = postgres(warehouseDb.url, { max: 2, onnotice: () => {} });
    const citizen = postgres(citizenDb.url, { max: 2, onnotice: () => {} });
    const dir = await Deno.makeTempDir({ prefix: "sluice-crash-" });
    const slot = unique("crash_slot");
    let sluice: Sluice | undefined;
    const writer = new Writer(warehouse);
    const logs: string[] = [];
    try {
      await warehouse.unsafe(WAREHOUSE_DDL);
      await citizen.unsafe(CITIZEN_DDL);
      await writer.preload(500);
      const config = `${dir}/pipelines.json`;
      const offsets = `${dir}/offsets.json`;
      await Deno.writeTextFile(
        config,
        JSON.stringify(
          pipelineConfig({
            name: unique("crash"),
            warehouseUrl: warehouseDb.url,
            citizenUrl: citizenDb.url,
            slot,
            publication: "crash_publication",
            topicPrefix: unique("crash"),
          }),
          null,
          2,
        ),
      );
      sluice = startSluice(config, offsets, brokers);
      writer.start();
      const writeUntil = Date.now() + 30_000;
      let kills = 0;
      while (Date.now() < writeUntil) {
        // Kill at a random moment (starting, snapshotting, streaming): the
        // random instant is the input of this test, not a wait for a result.
        await pause(randomInt(2000, 6000));
        const stored = await Deno.readTextFile(offsets).catch(() => "(no offsets file)");
        if (kills === 0) console.log(`  offsets at the first kill: ${stored.slice(0, 300)}`);
        logs.push(await killHard(sluice));
        kills++;
        sluice = startSluice(config, offsets, brokers);
      }
      await writer.stop();
      const wroteAt = Date.now();
      console.log(
        `  ${writer.transactions} transactions, ${kills} SIGKILLs, ` +
          `${writer.live.size} live rows, ${writer.deleted.size} deleted`,
      );
      const result = await waitForConvergence(warehouse, () => citizen, writer.deleted, 60_000);
      console.log(
        `  convergence after ${((Date.now() - wroteAt) / 1000).toFixed(1)} s: ${result.detail}`,
      );
      if (!result.ok) {
        const diff = await differences(warehouse, citizen, writer.deleted);
        const stopped = await stopGracefully(sluice);
        sluice = undefined;
        throw new Error(
          `the citizen table did not converge: ${result.detail}\n${diff}\n` +
            `--- last child stderr ---\n${stopped.stderr.slice(-4000)}`,
        );
      }
      const stopped = await stopGracefully(sluice);
      sluice = undefined;
      assertEquals(stopped.code, 0, `graceful stop failed:\n${stopped.stderr.slice(-4000)}`);
      console.log(`  total ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    } finally {
      await writer.stop().catch(() => {});
      if (sluice) await killHard(sluice);
      await warehouse.end();
      await citizen.end();
      await warehouseDb.drop();
      await citizenDb.drop();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});

/** A database on a private PostgreSQL server. */
async function privateDatabase(server: PostgresServer, prefix: string): Promise<TestDatabase> {
  const name = unique(prefix);
  const admin = postgres(server.url, { max: 1, onnotice: () => {} });
  try {
    await admin.unsafe(`create database "${name}"`);
  } finally {
    await admin.end();
  }
  return {
    url: server.urlFor(name),
    name,
    drop: async () => {
      const sql = postgres(server.url, { max: 1, onnotice: () => {} });
      try {
        await sql.unsafe(`drop database if exists "${name}" with (force)`);
      } finally {
        await sql.end();
      }
    },
  };
}

Deno.test({
  name: "the Kafka broker and the target PostgreSQL restarted mid-stream lose nothing",
  sanitizeResources: true,
  sanitizeOps: true,
  fn: async () => {
    const t0 = Date.now();
    const [kafka, targetPg] = await Promise.all([startKafka(), startPostgres()]);
    const warehouseDb = await createTestDatabase("crash_wh2");
    let citizenDb: TestDatabase | undefined;
    const warehouse = postgres(warehouseDb.url, { max: 2, onnotice: () => {} });
    let citizen: postgres.Sql | undefined;
    const dir = await Deno.makeTempDir({ prefix: "sluice-crash-" });
    const slot = unique("crash_slot2");
    let sluice: Sluice | undefined;
    const writer = new Writer(warehouse);
    try {
      console.log(`  services up in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
      citizenDb = await privateDatabase(targetPg, "crash_ct2");
      // Reconnects by itself after the restart (postgres.js opens new connections).
      citizen = postgres(citizenDb.url, { max: 2, onnotice: () => {} });
      const citizenSql = citizen;
      await warehouse.unsafe(WAREHOUSE_DDL);
      await citizen.unsafe(CITIZEN_DDL);
      await writer.preload(500);
      const config = `${dir}/pipelines.json`;
      const offsets = `${dir}/offsets.json`;
      await Deno.writeTextFile(
        config,
        JSON.stringify(
          pipelineConfig({
            name: unique("restart"),
            warehouseUrl: warehouseDb.url,
            citizenUrl: citizenDb.url,
            slot,
            publication: "crash_publication",
            topicPrefix: unique("restart"),
          }),
          null,
          2,
        ),
      );
      sluice = startSluice(config, offsets, kafka.brokers);
      writer.start();
      // Each fault strikes while changes flow: after the citizen table holds
      // a change the warehouse committed after the previous step.
      await changesFlow(warehouse, () => citizenSql, "the stream to run");
      let t = Date.now();
      await kafka.restart();
      console.log(`  Kafka restarted in ${((Date.now() - t) / 1000).toFixed(1)} s`);
      await changesFlow(warehouse, () => citizenSql, "changes through the restarted broker");
      t = Date.now();
      await restartPostgres(targetPg, "immediate");
      console.log(`  target PostgreSQL restarted in ${((Date.now() - t) / 1000).toFixed(1)} s`);
      await changesFlow(warehouse, () => citizenSql, "changes into the restarted target");
      await writer.stop();
      const wroteAt = Date.now();
      console.log(
        `  ${writer.transactions} transactions, ${writer.live.size} live rows, ` +
          `${writer.deleted.size} deleted`,
      );
      const result = await waitForConvergence(
        warehouse,
        () => citizenSql,
        writer.deleted,
        60_000,
      );
      console.log(
        `  convergence after ${((Date.now() - wroteAt) / 1000).toFixed(1)} s: ${result.detail}`,
      );
      if (!result.ok) {
        const diff = await differences(warehouse, citizen, writer.deleted).catch((e) => String(e));
        const stopped = await stopGracefully(sluice);
        sluice = undefined;
        throw new Error(
          `the citizen table did not converge: ${result.detail}\n${diff}\n` +
            `--- child stderr ---\n${stopped.stderr.slice(-4000)}`,
        );
      }
      const stopped = await stopGracefully(sluice);
      sluice = undefined;
      assertEquals(stopped.code, 0, `graceful stop failed:\n${stopped.stderr.slice(-4000)}`);
      console.log(`  total ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    } finally {
      await writer.stop().catch(() => {});
      if (sluice) await killHard(sluice);
      await warehouse.end();
      await citizen?.end();
      await warehouseDb.drop();
      await citizenDb?.drop().catch(() => {});
      await targetPg.stop();
      await kafka.stop();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
