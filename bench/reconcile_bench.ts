/**
 * Reconciliation benchmark (issue 10, item 3).
 *
 * On N rows of public.profile_360 synced into profile_summary (renames as in
 * the example), each step a separate `sluice job run` process whose time and
 * peak RSS (VmHWM) are measured:
 *
 * 1. Reference: the full sync job, first into the empty target (COPY), then
 *    again over the synced target (a full resync: merges).
 * 2. `reconcile` fast mode on the table in sync. Target: < 10% of the resync.
 * 3. 0.1% of the target drifted (versions changed, rows deleted, stray rows
 *    added): fast mode must find every one. Target: < 20% of the resync.
 * 4. Deep mode over the drifted table: rows/s, and the same findings.
 *
 * ```
 * deno run -A bench/reconcile_bench.ts [--rows 1000000]
 * ```
 * Uses SLUICE_TEST_PG_URL when set (`deno task bench` sets it), else starts a
 * private PostgreSQL. The machine may be shared: the load average is printed.
 *
 * @module
 */
import { parseArgs } from "node:util";
import postgres from "postgres";
import { startPostgres } from "../dev/postgres.ts";
import { applySchema } from "../examples/warehouse_to_citizen/generate.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: { rows: { type: "string", default: "1000000" } },
});
const rows = Number(values.rows);
const root = new URL("..", import.meta.url).pathname;
const external = Deno.env.get("SLUICE_TEST_PG_URL");
const server = external ? undefined : await startPostgres();
const adminUrl = external ?? server!.url;
const urlFor = (db: string) => {
  const url = new URL(adminUrl);
  url.pathname = `/${db}`;
  return url.href;
};

const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
const warehouse = urlFor("bench_rc_warehouse");
const citizen = urlFor("bench_rc_citizen");
const scratch = await Deno.makeTempDir({ prefix: "sluice_rc_bench_" });
const loads: string[] = [];
try {
  for (const db of ["bench_rc_warehouse", "bench_rc_citizen"]) {
    await admin.unsafe(`drop database if exists ${db} with (force)`);
    await admin.unsafe(`create database ${db}`);
  }
  await applySchema(warehouse, "warehouse.sql");
  await applySchema(citizen, "citizen.sql");
  const w = postgres(warehouse, { max: 1, onnotice: () => {} });
  const c = postgres(citizen, { max: 1, onnotice: () => {} });
  console.log(`Filling public.profile_360 with ${rows.toLocaleString("en")} rows…`);
  await w.unsafe(`
    insert into public.profile_360
    select g, 'Citizen ' || g,
           lpad((g % 10000)::text, 4, '0') || ' ' || lpad((g % 9973)::text, 4, '0') || ' ' ||
             lpad((g % 8887)::text, 4, '0'),
           '+91 9' || lpad((g % 10000)::text, 4, '0') || ' ' || lpad((g % 100000)::text, 5, '0'),
           'citizen' || g || '@example.in',
           date '1950-01-01' + (g % 20000), (array['female','male','other'])[1 + g % 3],
           'District ' || (g % 700), 'State ' || (g % 36), (g % 5000000) * 1.37, 1 + g % 9,
           ((g % 10000) / 10000.0)::numeric(5,4), array['tag' || (g % 5), 'tag' || (g % 7)],
           timestamptz '2026-11-01 00:00:00+00' + (g / 1000) * interval '1 minute'
    from generate_series(1, ${rows}) g`);
  await w.unsafe("vacuum analyze public.profile_360");

  const sync = {
    "connector.class": "postgres_query",
    "connection.url": warehouse,
    table: "public.profile_360",
    mode: "full",
    "sink.class": "postgres",
    "sink.connection.url": citizen,
    "sink.table": "public.profile_summary",
    "sink.fields.mapping": "full_name:display_name,updated_at:source_updated_at",
  };
  const reconcile = (mode: string) => ({ "connector.class": "reconcile", pipeline: "full", mode });
  const configFile = `${scratch}/bench.json`;
  await Deno.writeTextFile(
    configFile,
    JSON.stringify([
      { name: "full", config: sync },
      { name: "fast", config: reconcile("fast") },
      { name: "deep", config: reconcile("deep") },
    ]),
  );
  const job = (name: string) => [
    "run",
    "-A",
    `${root}cli/main.ts`,
    "job",
    "run",
    name,
    configFile,
    "--offsets",
    `${scratch}/offsets.json`,
    "--log-level",
    "warning",
  ];
  const sluice = (name: string, expectCode = 0) =>
    timeCommand(Deno.execPath(), job(name), expectCode);

  const load = await sluice("full");
  const resync = await sluice("full");
  await c.unsafe("vacuum analyze public.profile_summary");
  const inSync = await sluice("fast");
  const clean = await lastRun(c);

  // 0.1% drift: 40% versions changed, 30% deleted, 30% stray rows.
  const drift = Math.max(10, Math.round(rows / 1000));
  const changed = Math.round(drift * 0.4), deleted = Math.round(drift * 0.3);
  const stray = drift - changed - deleted;
  const step = Math.floor(rows / drift);
  await c.unsafe(`update public.profile_summary set source_updated_at = now()
    where citizen_id in (select g * ${step} from generate_series(1, ${changed}) g)`);
  await c.unsafe(`delete from public.profile_summary
    where citizen_id in (select g * ${step} + 1 from generate_series(1, ${deleted}) g)`);
  await c.unsafe(`insert into public.profile_summary (citizen_id, display_name)
    select ${rows} + g, 'stray' from generate_series(1, ${stray}) g`);
  const drifted = await sluice("fast", 1);
  const fastFound = await lastRun(c);
  const deep = await sluice("deep", 1);
  const deepFound = await lastRun(c);
  await w.end();
  await c.end();

  const expected = `${deleted} missing, ${stray} extra, ${changed} different`;
  const foundText = (r: RunRow) =>
    `${r.missing} missing, ${r.extra} extra, ${r.different} different`;
  const inJob = (r: RunRow) => `; ${r.seconds} s inside the job`;
  console.log(
    `\n${rows.toLocaleString("en")} rows; load average during the runs: ${loads.join(" → ")}`,
  );
  console.log(
    "(2 cores shared with other work: repeat runs vary by ±20% or more. Times are whole " +
      "processes, Deno start-up and connecting included; the reconcile rows also give the " +
      "time inside the job, from its sluice_reconciliation_runs row)\n",
  );
  console.log("| run | time | rows/s | peak RSS | found |");
  console.log("| --- | ---: | ---: | ---: | --- |");
  const rate = (ms: number) => Math.round(rows / (ms / 1000)).toLocaleString("en");
  const line = (name: string, t: Timed, found = "") =>
    console.log(`| ${name} | ${fmt(t.ms)} | ${rate(t.ms)} | ${mb(t.peakKb)} | ${found} |`);
  line("full sync into the empty target (COPY)", load);
  line("full resync over the synced target", resync);
  line(
    `reconcile fast, in sync (${clean.queries} queries)`,
    inSync,
    foundText(clean) + inJob(clean),
  );
  line(
    `reconcile fast, 0.1% drifted (${fastFound.queries} queries)`,
    drifted,
    foundText(fastFound) + inJob(fastFound),
  );
  line(`reconcile deep, 0.1% drifted`, deep, foundText(deepFound) + inJob(deepFound));
  const verdict = (ok: boolean) => ok ? "PASS" : "FAIL";
  const inSyncRatio = inSync.ms / resync.ms;
  const driftRatio = drifted.ms / resync.ms;
  console.log(
    `\nfast in sync / full resync: ${pct(inSyncRatio)} (target < 10%) ${
      verdict(inSyncRatio < 0.1)
    }` +
      `; / first full load: ${pct(inSync.ms / load.ms)}`,
  );
  console.log(
    `fast 0.1% drifted / full resync: ${pct(driftRatio)} (target < 20%) ${
      verdict(driftRatio < 0.2)
    }; / first full load: ${pct(drifted.ms / load.ms)}`,
  );
  console.log(
    `fast found every drifted row (${expected}): ${
      verdict(foundText(fastFound) === expected)
    }; deep found the same: ${verdict(foundText(deepFound) === expected)}`,
  );
} finally {
  for (const db of ["bench_rc_warehouse", "bench_rc_citizen"]) {
    await admin.unsafe(`drop database if exists ${db} with (force)`).catch(() => {});
  }
  await admin.end();
  await Deno.remove(scratch, { recursive: true });
  await server?.stop();
}

interface RunRow {
  missing: string;
  extra: string;
  different: string;
  queries: number;
  seconds: string;
}

async function lastRun(sql: postgres.Sql): Promise<RunRow> {
  const [row] = await sql<RunRow[]>`select missing, extra, different, queries,
      to_char(extract(epoch from finished_at - started_at), 'FM990.00') as seconds
    from public.sluice_reconciliation_runs order by id desc limit 1`;
  return row;
}

interface Timed {
  ms: number;
  peakKb: number;
}

/** Runs a command, timing it and sampling its peak RSS (VmHWM) from /proc. */
async function timeCommand(command: string, args: string[], expectCode: number): Promise<Timed> {
  loads.push((await Deno.readTextFile("/proc/loadavg")).split(" ")[0]);
  const started = performance.now();
  const child = new Deno.Command(command, { args, stdout: "null", stderr: "inherit" }).spawn();
  let peakKb = 0;
  const sampler = setInterval(async () => {
    try {
      const status = await Deno.readTextFile(`/proc/${child.pid}/status`);
      const match = /VmHWM:\s+(\d+)/.exec(status);
      if (match) peakKb = Math.max(peakKb, Number(match[1]));
    } catch { /* exited */ }
  }, 50);
  const status = await child.status;
  clearInterval(sampler);
  if (status.code !== expectCode) {
    throw new Error(`${command} ${args.join(" ")} exited with ${status.code}, not ${expectCode}`);
  }
  return { ms: performance.now() - started, peakKb };
}

function fmt(ms: number): string {
  return `${(ms / 1000).toFixed(2)} s`;
}

function mb(kb: number): string {
  return `${(kb / 1024).toFixed(0)} MB`;
}

function pct(ratio: number): string {
  return `${(ratio * 100).toFixed(1)}%`;
}
