/**
 * `deno task demo`: the users' plan, end to end, on a fresh machine.
 *
 * 1. Starts a private PostgreSQL (or uses `SLUICE_PG_URL`, an existing
 *    server where this user may create databases).
 * 2. Creates `smart_warehouse` and `smart_citizen` from the example SQL and
 *    generates `--rows` citizens of deterministic data.
 * 3. Runs every batch pipeline of `pipelines/` once, in dependency order
 *    (`scheme_sync >> profile_sync`), then a second incremental run after
 *    1% of profiles changed, and prints a summary; then the daily
 *    reconciliation of `profile_summary` (`pipelines/reconcile/`).
 * 4. Starts a private Kafka broker (or uses `SLUICE_KAFKA_BROKERS`, an
 *    existing one) and the event pipelines, changes an
 *    application in the warehouse and reports when (and how fast) it arrives
 *    in the citizen database. Then the hybrid profile summary: CDC delivers
 *    a change to a few profiles, and the hourly job that reads them again
 *    skips them (the sink's version guard). Needs Java and Maven; skipped
 *    without them.
 *
 * ```
 * deno task demo [--rows 20000] [--keep] [--no-events]
 * ```
 *
 * @module
 */
import { parseArgs } from "node:util";
import postgres from "postgres";
import { startPostgres } from "../../dev/postgres.ts";
import { type KafkaServer, startKafka } from "../../dev/kafka.ts";
import { freePorts } from "../../dev/_common.ts";
import { setUpLogging, tearDownLogging } from "../../core/_log.ts";
import { permissionFlags, requiredPermissions } from "../../cli/permissions.ts";
import { loadWithBuiltins, SLUICE_DENO_FLAGS, type WorkerSettings } from "../../cli/worker.ts";
import { applySchema, generateWarehouse, touchProfiles } from "./generate.ts";

const here = new URL(".", import.meta.url).pathname;

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      rows: { type: "string", default: "20000" },
      keep: { type: "boolean", default: false },
      "no-events": { type: "boolean", default: false },
    },
  });
  const rows = Number(values.rows);
  if (!Number.isSafeInteger(rows) || rows < 1) {
    console.error(`--rows must be a positive integer: current value is "${values.rows}"`);
    return 2;
  }
  await setUpLogging({ level: "warning", format: "text" });

  const server = await openServer();
  if (!server) return 1;
  const scratch = await Deno.makeTempDir({ prefix: "sluice_demo_" });
  try {
    const warehouse = await recreateDatabase(server.url, server.urlFor, "smart_warehouse");
    const citizen = await recreateDatabase(server.url, server.urlFor, "smart_citizen");
    step(`PostgreSQL ready; creating the schemas of smart_warehouse and smart_citizen`);
    await applySchema(warehouse, "warehouse.sql");
    await applySchema(citizen, "citizen.sql");
    step(`Generating ${rows.toLocaleString("en")} citizens of warehouse data`);
    const started = performance.now();
    const counts = await generateWarehouse(warehouse, { rows });
    const total = Object.values(counts).reduce((a, b) => a + b, 0);
    step(`Generated ${total.toLocaleString("en")} rows in ${seconds(started)}`);

    Deno.env.set("WAREHOUSE_URL", warehouse);
    Deno.env.set("CITIZEN_URL", citizen);
    setDemoKeys();
    // Dead letters keep the clear values of records that failed before
    // masking, so they stay on the Sluice host, not in smart_citizen.
    Deno.env.set("SLUICE_DEAD_LETTER_DIR", scratch);
    const settings = { offsetsFile: `${scratch}/offsets.json` };
    const batchDir = `${here}pipelines/batch`;
    const batch = await loadWithBuiltins([batchDir], settings);
    const flags = await narrowFlags([batchDir], settings);
    const results: boolean[] = [];
    step(`Running ${batch.length} batch jobs once (upstream jobs first), under ${netOf(flags)}`);
    for (const spec of batch) {
      if (spec.options["job.depends.on"].length === 0) {
        results.push(
          await sluice(flags, ["job", "run", spec.name, batchDir, "--with-downstream"], settings),
        );
      }
    }

    step(
      "profile_sync_incremental, the hourly job, read every profile on its first run and " +
        "skipped them all: profile_sync had just written the same versions into " +
        "profile_summary, and the sink's version guard leaves a row alone unless the record is newer",
    );
    const changed = await touchProfiles(warehouse, 0.01);
    step(`Changed ${changed.toLocaleString("en")} profiles (1%); running the hourly job again`);
    results.push(
      await sluice(flags, ["job", "run", "profile_sync_incremental", batchDir], settings),
    );
    // The plan's daily 03:00 UTC check, now: profile_summary against profile_360.
    const reconcileDir = `${here}pipelines/reconcile`;
    step("Reconciling profile_summary with profile_360 (fast mode: hashed key ranges)");
    results.push(
      await sluice(
        await narrowFlags([batchDir, reconcileDir], settings),
        ["job", "run", "profile_summary_reconcile", batchDir, reconcileDir],
        settings,
      ),
    );

    const hourly = () =>
      sluice(flags, ["job", "run", "profile_sync_incremental", batchDir], settings);
    const events = values["no-events"]
      ? "skipped"
      : await runEventFlows(warehouse, citizen, scratch, hourly);
    const failed = results.filter((ok) => !ok);
    if (events === "failed") {
      console.log("The event flows did not deliver the change.");
      return 1;
    }
    if (failed.length > 0) {
      console.log(`${failed.length} batch run(s) did not succeed.`);
      return 1;
    }
    console.log("Every job succeeded and passed its validation.");
    if (values.keep) {
      console.log(`\nDatabases kept: ${warehouse}\n                ${citizen}`);
      console.log("Press Ctrl+C to stop PostgreSQL.");
      await new Promise<void>((resolve) => Deno.addSignalListener("SIGINT", resolve));
    }
    return 0;
  } finally {
    await Deno.remove(scratch, { recursive: true }).catch(() => {});
    await server.stop();
    await tearDownLogging();
  }
}

/**
 * Starts a private Kafka broker and the event pipelines (CDC → Kafka →
 * consumers → smart_citizen), changes an application's status in the
 * warehouse, and waits for it to reach the citizen database.
 */
async function runEventFlows(
  warehouse: string,
  citizen: string,
  scratch: string,
  hourly: () => Promise<boolean>,
): Promise<"ok" | "failed" | "skipped"> {
  let kafka: Pick<KafkaServer, "brokers" | "stop">;
  try {
    const started = performance.now();
    const existing = Deno.env.get("SLUICE_KAFKA_BROKERS");
    kafka = existing ? { brokers: existing, stop: async () => {} } : await startKafka();
    step(
      existing
        ? `Using the Kafka broker at ${existing} (SLUICE_KAFKA_BROKERS)`
        : `Started a private Kafka broker at ${kafka.brokers} in ${seconds(started)}`,
    );
  } catch (error) {
    step(`Event flows skipped: cannot start Kafka (${(error as Error).message.split("\n")[0]})`);
    step("They need Java 17 and Maven (apt-get install openjdk-17-jdk-headless maven)");
    return "skipped";
  }
  const url = new URL(warehouse);
  Deno.env.set("WAREHOUSE_HOST", url.hostname);
  Deno.env.set("WAREHOUSE_PORT", url.port || "5432");
  Deno.env.set("WAREHOUSE_USER", decodeURIComponent(url.username) || "postgres");
  Deno.env.set("WAREHOUSE_PASSWORD", decodeURIComponent(url.password));
  Deno.env.set("SLUICE_STATE_DIR", scratch);
  const settings = {
    offsetsFile: `${scratch}/stream-offsets.json`,
    bootstrapServers: kafka.brokers,
  };
  const eventsDir = `${here}pipelines/events`;
  const specs = await loadWithBuiltins([eventsDir], settings);
  // A free port, so a Sluice already on Kafka Connect's 8083 does not clash.
  const listen = `127.0.0.1:${freePorts(1)[0]}`;
  const flags = await narrowFlags([eventsDir], settings, listen);
  const streams = sluiceProcess(
    flags,
    ["run", eventsDir, "--bootstrap", kafka.brokers, "--listen", listen],
    settings,
  );
  const source = postgres(warehouse, { max: 1, onnotice: () => {} });
  const target = postgres(citizen, { max: 1, onnotice: () => {} });
  try {
    step(
      `Started ${specs.length} stream pipelines (2 CDC connectors, ${
        specs.length - 2
      } consumers) under ${netOf(flags)}`,
    );
    step(`Status page: http://${listen}/ (pipelines, lag chart per stream, firing alerts)`);
    step(
      `Operations endpoint: http://${listen}/connectors?expand=status (Kafka Connect's REST ` +
        `API), http://${listen}/metrics (Prometheus), http://${listen}/readyz`,
    );
    // snapshot.mode is "never": changes count from the moment the slots exist.
    await waitFor(async () => {
      const [{ n }] = await source`
        select count(*)::int as n from pg_replication_slots where active and slot_name like 'warehouse_%'`;
      return n === 2;
    }, 60_000);
    const [application] = await source`
      select application_id from decision.applications where status <> 'approved' order by application_id limit 1`;
    const id = application.application_id;
    const changedAt = performance.now();
    await source`update decision.applications set status = 'approved', decided_at = now()
      where application_id = ${id}`;
    step(`Approved application ${id} in smart_warehouse; waiting for smart_citizen`);
    const arrived = await waitFor(async () => {
      const rows =
        await target`select status from public.application_status where application_id = ${id}`;
      return rows[0]?.status === "approved";
    }, 60_000);
    if (!arrived) {
      step("The change did not arrive within 60 s");
      return "failed";
    }
    const latency = performance.now() - changedAt;
    step(
      `It arrived in smart_citizen.public.application_status ${
        latency.toFixed(0)
      } ms after the commit (WAL → Kafka → consumer → PostgreSQL)`,
    );
    return await showHybridProfiles(source, target, hourly) ? "ok" : "failed";
  } finally {
    // The kernel's high-water mark of the process's memory over the whole flow.
    const peak = await Deno.readTextFile(`/proc/${streams.pid}/status`)
      .then((status) => Number(/VmHWM:\s+(\d+)/.exec(status)?.[1]) / 1024, () => NaN);
    if (peak > 0) {
      step(`Peak RSS of the sluice run process of the event flows: ${peak.toFixed(0)} MB`);
    }
    streams.kill("SIGTERM");
    await streams.status;
    await source.end();
    await target.end();
    await kafka.stop();
  }
}

/**
 * The plan's hybrid profile summary: CDC delivers a change to a few profiles
 * in real time, then the hourly job reads the same rows again and leaves
 * them alone, because both write through the sink's version guard
 * (`version.column` source_updated_at): a row is only overwritten by a newer
 * version of it.
 */
async function showHybridProfiles(
  source: postgres.Sql,
  target: postgres.Sql,
  hourly: () => Promise<boolean>,
): Promise<boolean> {
  const changed = await source<{ citizen_id: string; updated_at: string }[]>`
    update public.profile_360 set household_size = coalesce(household_size, 0) + 1
    where citizen_id in (select citizen_id from public.profile_360 order by citizen_id limit 5)
    returning citizen_id, updated_at::text`;
  const ids = changed.map((row) => row.citizen_id);
  const version = changed[0].updated_at;
  step(`Changed ${ids.length} profiles in smart_warehouse (updated_at ${version})`);
  const versions = () =>
    target<{ id: string; version: string; synced: string }[]>`
      select citizen_id::text as id, source_updated_at::text as version, synced_at::text as synced
      from public.profile_summary where citizen_id in ${target(ids)} order by citizen_id`;
  const arrived = await waitFor(async () => {
    const rows = await versions();
    return rows.length === ids.length && rows.every((row) => row.version === version);
  }, 60_000);
  if (!arrived) {
    step("The profile changes did not arrive within 60 s");
    return false;
  }
  const before = await versions();
  step("CDC wrote them to profile_summary; the hourly job now reads the same rows again:");
  if (!await hourly()) return false;
  const after = await versions();
  if (JSON.stringify(after) !== JSON.stringify(before)) {
    step("The hourly job rewrote rows CDC had already written");
    return false;
  }
  step(
    "It skipped them (same version, rows untouched): CDC and the hourly job share the " +
      "version guard on source_updated_at, so a batch never rolls back a newer CDC write",
  );
  return true;
}

/** The narrowest permission flags of `paths`, as `sluice permissions` prints them. */
async function narrowFlags(
  paths: string[],
  settings: WorkerSettings,
  listen = "off",
): Promise<string> {
  return permissionFlags(await requiredPermissions(paths, settings, listen)).join(" ");
}

/** The network part of the flags, for the demo's narration (the rest is long). */
function netOf(flags: string): string {
  const net = flags.split(" ").find((flag) => flag.startsWith("--allow-net="));
  return `${net ?? "no network"} (no -A; sluice permissions)`;
}

/** Starts `sluice <args>` under `flags` (no -A), sharing this terminal. */
function sluiceProcess(
  flags: string,
  args: string[],
  settings: WorkerSettings,
): Deno.ChildProcess {
  const cli = new URL("../../cli/main.ts", import.meta.url).pathname;
  return new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      ...flags.split(" ").filter(Boolean),
      "--unstable-cron",
      ...SLUICE_DENO_FLAGS,
      cli,
      ...args,
      "--offsets",
      settings.offsetsFile,
      "--log-level",
      "warning",
      "--log-format",
      "text",
    ],
    stdout: "inherit",
    stderr: "inherit",
  }).spawn();
}

/** Runs `sluice <args>` under `flags` to the end; true when it exits 0. */
async function sluice(flags: string, args: string[], settings: WorkerSettings): Promise<boolean> {
  return (await sluiceProcess(flags, args, settings).status).success;
}

async function waitFor(check: () => Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return true;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return false;
}

interface Server {
  url: string;
  urlFor(db: string): string;
  stop(): Promise<void>;
}

/** The private PostgreSQL, or the server named by SLUICE_PG_URL. */
async function openServer(): Promise<Server | undefined> {
  const existing = Deno.env.get("SLUICE_PG_URL");
  if (existing) {
    return {
      url: existing,
      urlFor(db) {
        const url = new URL(existing);
        url.pathname = `/${db}`;
        return url.href;
      },
      stop: () => Promise.resolve(),
    };
  }
  try {
    const started = performance.now();
    const server = await startPostgres();
    step(`Started a private PostgreSQL at 127.0.0.1:${server.port} in ${seconds(started)}`);
    return server;
  } catch (error) {
    console.error(`Cannot start a private PostgreSQL: ${(error as Error).message}`);
    console.error(
      "Install the server binaries (Debian/Ubuntu: apt-get install postgresql), or point the demo " +
        "at an existing server where you may create databases:\n" +
        "  SLUICE_PG_URL=postgres://user:password@host:5432/postgres deno task demo",
    );
    return undefined;
  }
}

async function recreateDatabase(
  adminUrl: string,
  urlFor: (db: string) => string,
  name: string,
): Promise<string> {
  const sql = postgres(adminUrl, { max: 1, onnotice: () => {} });
  try {
    await sql.unsafe(`drop database if exists ${name} with (force)`);
    await sql.unsafe(`create database ${name}`);
  } finally {
    await sql.end();
  }
  return urlFor(name);
}

/**
 * The pipelines read their masking keys from the environment. A real
 * deployment sets them from a secret store; the demo uses fixed, public keys
 * (and says so) when none are set.
 */
function setDemoKeys(): void {
  if (!Deno.env.get("SLUICE_MASK_KEY")) {
    Deno.env.set("SLUICE_MASK_KEY", "demo-only-hmac-key-0123456789abcdef");
    step("SLUICE_MASK_KEY not set: using a public demo key for hmac masking");
  }
  if (!Deno.env.get("SLUICE_FPE_KEY")) {
    Deno.env.set(
      "SLUICE_FPE_KEY",
      "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
    );
    step("SLUICE_FPE_KEY not set: using a public demo key for format-preserving encryption");
  }
}

function step(message: string): void {
  console.log(`• ${message}`);
}

function seconds(since: number): string {
  return `${((performance.now() - since) / 1000).toFixed(1)} s`;
}

if (import.meta.main) Deno.exit(await main());
