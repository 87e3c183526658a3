/**
 * A private, throw-away PostgreSQL server for tests and the demo.
 *
 * Each call to {@linkcode startPostgres} runs `initdb` into a fresh temporary
 * folder and starts a server on a free loopback port with logical decoding
 * enabled, so tests never depend on (or disturb) another PostgreSQL on the
 * machine.
 *
 * CLI: `deno run -A dev/postgres.ts start` prints the URL and keeps the server
 * running until SIGINT/SIGTERM.
 *
 * @module
 */
import postgres from "postgres";
import { freePorts, run, runOk, tailFile, waitForStopSignal } from "./_common.ts";

/** A running private PostgreSQL server. */
export interface PostgresServer {
  /** Always `127.0.0.1`. */
  host: string;
  port: number;
  /** `postgres://postgres@127.0.0.1:PORT/postgres` (trust auth, no password). */
  url: string;
  /** The URL of another database on this server. */
  urlFor(db: string): string;
  /** The cluster's data directory (inside the temporary folder). */
  dataDir: string;
  /** Server log file. */
  logFile: string;
  /** Stops the server (`pg_ctl stop -m fast`) and removes its temporary folder. */
  stop(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/** Options for {@linkcode startPostgres}. */
export interface StartPostgresOptions {
  /** Port on 127.0.0.1; a free one is picked when omitted. */
  port?: number;
  /**
   * Server log file; defaults to `postgres.log` in the data directory. When
   * running as root the server runs as `postgres`, so this must be writable by
   * that user.
   */
  logFile?: string;
}

// Appended to postgresql.conf so a restart (pg_ctl start without -o) keeps them.
const SETTINGS: Record<string, string> = {
  listen_addresses: "'127.0.0.1'",
  wal_level: "logical",
  max_replication_slots: "20",
  max_wal_senders: "20",
  max_connections: "200",
  // Data is thrown away after the run, so durability only costs time. Keep
  // synchronous_commit on: commit ordering/visibility stays realistic.
  fsync: "off",
  synchronous_commit: "on",
  full_page_writes: "off",
  shared_buffers: "128MB",
};

/** Finds the directory holding initdb/pg_ctl, or throws an install hint. */
async function findBinDir(): Promise<string> {
  const candidates: string[] = [];
  const fromEnv = Deno.env.get("SLUICE_PG_BINDIR");
  if (fromEnv) candidates.push(fromEnv);
  try {
    const versions: number[] = [];
    for await (const e of Deno.readDir("/usr/lib/postgresql")) {
      if (/^\d+$/.test(e.name)) versions.push(Number(e.name));
    }
    versions.sort((a, b) => b - a);
    candidates.push(...versions.map((v) => `/usr/lib/postgresql/${v}/bin`));
  } catch { /* no Debian-style layout */ }
  try {
    const res = await run(["pg_config", "--bindir"]);
    if (res.code === 0) candidates.push(res.stdout.trim());
  } catch { /* pg_config not installed */ }
  for (const dir of candidates) {
    if (await exists(`${dir}/initdb`) && await exists(`${dir}/pg_ctl`)) return dir;
  }
  throw new Error(
    "PostgreSQL server binaries (initdb, pg_ctl) were not found in $SLUICE_PG_BINDIR, " +
      "/usr/lib/postgresql/*/bin or `pg_config --bindir`: install them with " +
      "`apt-get install postgresql`, or set SLUICE_PG_URL to use an existing server instead.",
  );
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * Runs a server binary. PostgreSQL refuses to run as root, and our sessions and
 * CI are root, so then it runs as the `postgres` user through runuser.
 */
function asServerUser(cmd: string[]): string[] {
  return Deno.uid() === 0 ? ["runuser", "-u", "postgres", "--", ...cmd] : cmd;
}

/** Internal state behind a {@linkcode PostgresServer}. */
interface Internals {
  binDir: string;
  tempDir: string;
  stopped: boolean;
}
const internals = new WeakMap<PostgresServer, Internals>();

/**
 * Creates and starts a private PostgreSQL cluster; resolves once a real
 * connection succeeds. Throws with the server log's tail when it cannot start.
 */
export async function startPostgres(options: StartPostgresOptions = {}): Promise<PostgresServer> {
  const binDir = await findBinDir();
  // The server user must own the folder; creating it as that user is simpler
  // than chown with a looked-up uid.
  const tempDir = Deno.uid() === 0
    ? (await runOk(asServerUser(["mktemp", "-d", "/tmp/sluice-pg-XXXXXX"]))).stdout.trim()
    : await Deno.makeTempDir({ prefix: "sluice-pg-" });
  try {
    const dataDir = `${tempDir}/data`;
    const socketDir = `${tempDir}/sock`;
    const logFile = options.logFile ?? `${dataDir}/postgres.log`;
    const port = options.port ?? freePorts(1)[0];
    await runOk(asServerUser(["mkdir", socketDir]), { cwd: tempDir });
    await runOk(
      asServerUser([
        `${binDir}/initdb`,
        ...["-D", dataDir, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C"],
        "--no-sync", // fsync of the fresh cluster costs seconds and buys nothing here
      ]),
      { cwd: tempDir }, // the server user may not be allowed into our cwd
    );
    const conf = Object.entries({
      ...SETTINGS,
      port: String(port),
      unix_socket_directories: `'${socketDir}'`,
    }).map(([k, v]) => `${k} = ${v}`).join("\n");
    await Deno.writeTextFile(`${dataDir}/postgresql.conf`, `\n# sluice dev\n${conf}\n`, {
      append: true,
    });

    const host = "127.0.0.1";
    const url = `postgres://postgres@${host}:${port}/postgres`;
    const server: PostgresServer = {
      host,
      port,
      url,
      urlFor: (db) => `postgres://postgres@${host}:${port}/${encodeURIComponent(db)}`,
      dataDir,
      logFile,
      stop: () => stopPostgres(server),
      [Symbol.asyncDispose]: () => stopPostgres(server),
    };
    internals.set(server, { binDir, tempDir, stopped: false });
    await startCluster(server);
    return server;
  } catch (e) {
    await Deno.remove(tempDir, { recursive: true }).catch(() => {});
    throw e;
  }
}

async function startCluster(server: PostgresServer): Promise<void> {
  const { binDir, tempDir } = internals.get(server)!;
  const res = await run(
    asServerUser([
      `${binDir}/pg_ctl`,
      ...["-D", server.dataDir, "-l", server.logFile, "-w", "-t", "60", "start"],
    ]),
    { cwd: tempDir },
  );
  if (res.code !== 0) {
    throw new Error(
      `PostgreSQL did not start on port ${server.port}:\n${res.stderr.trim()}\n` +
        `--- ${server.logFile} ---\n${await tailFile(server.logFile)}`,
    );
  }
  await waitForConnection(server);
}

/** pg_ctl -w only checks the socket; make sure a real TCP query works too. */
async function waitForConnection(server: PostgresServer): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const sql = postgres(server.url, { max: 1, connect_timeout: 5, onnotice: () => {} });
    try {
      await sql`SELECT 1`;
      return;
    } catch (e) {
      if (Date.now() > deadline) {
        throw new Error(`PostgreSQL on port ${server.port} accepts no connections`, { cause: e });
      }
      await new Promise((r) => setTimeout(r, 100));
    } finally {
      await sql.end({ timeout: 1 });
    }
  }
}

async function pgCtlStop(server: PostgresServer, mode: "immediate" | "fast"): Promise<void> {
  const { binDir, tempDir } = internals.get(server)!;
  await runOk(
    asServerUser([`${binDir}/pg_ctl`, "-D", server.dataDir, "-m", mode, "-w", "stop"]),
    { cwd: tempDir },
  );
}

/**
 * Stops the server with the given shutdown mode and starts it again on the
 * same port and data directory. `immediate` skips the shutdown checkpoint, so
 * the restart goes through crash recovery (what crash tests want).
 */
export async function restartPostgres(
  server: PostgresServer,
  mode: "immediate" | "fast",
): Promise<void> {
  const state = internals.get(server);
  if (!state || state.stopped) throw new Error("this PostgreSQL server was already stopped");
  await pgCtlStop(server, mode);
  await startCluster(server);
}

/** Stops the server (fast mode) and removes its temporary folder. Idempotent. */
export async function stopPostgres(server: PostgresServer): Promise<void> {
  const state = internals.get(server);
  if (!state || state.stopped) return;
  state.stopped = true;
  try {
    await pgCtlStop(server, "fast");
  } finally {
    await Deno.remove(state.tempDir, { recursive: true }).catch(() => {});
  }
}

if (import.meta.main) {
  if (Deno.args[0] !== "start") {
    console.error("usage: deno run -A dev/postgres.ts start");
    Deno.exit(2);
  }
  const server = await startPostgres();
  console.log(server.url);
  await waitForStopSignal();
  await server.stop();
}
