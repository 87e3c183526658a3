/**
 * Batch sync benchmark (issue: runtime and batch sync).
 *
 * 1. Reference: `psql -c "COPY … TO STDOUT" | psql -c "COPY … FROM STDIN"`
 *    moves N rows of public.profile_360 into an empty profile_summary.
 * 2. Sluice: `sluice job run` of a full-mode job over the same data into the
 *    emptied target, as a separate process whose peak RSS is sampled.
 * 3. Merge reference: the same psql COPY out piped into a second psql that
 *    COPYs into a temporary table and runs one `INSERT … SELECT … ON
 *    CONFLICT DO UPDATE` into the now filled target (what the sink's merge
 *    does, including clearing the soft-delete column).
 * 4. Sluice merge: the full job again, into the filled target (an upsert of
 *    every row).
 * 5. Sluice incremental: a first run (everything), then a run after 1% of the
 *    rows changed; then the same with the late-row scan that follows a run
 *    during which another session had a transaction open.
 *
 * Targets (issue 12): Sluice full ≥ 0.7 × the COPY pipe's rows/s, Sluice
 * merge ≥ 0.7 × the merge reference's; peak RSS of the full sync < 150 MB;
 * the incremental run < 10% of the full run's time.
 *
 * ```
 * deno run -A bench/batch_sync_bench.ts [--rows 1000000]
 * ```
 * Uses SLUICE_TEST_PG_URL when set (`deno task bench` sets it), else starts a
 * private PostgreSQL.
 *
 * @module
 */
import { SLUICE_DENO_FLAGS, SLUICE_V8_FLAGS } from "../cli/worker.ts";
import { parseArgs } from "node:util";
import postgres from "postgres";
import { startPostgres } from "../dev/postgres.ts";
import { applySchema, touchProfiles } from "../examples/warehouse_to_citizen/generate.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    rows: { type: "string", default: "1000000" },
    // e.g. --sluice-v8-flags=--max-old-space-size=128: trade speed for memory.
    "sluice-v8-flags": { type: "string" },
  },
});
const rows = Number(values.rows);
console.log(`Load average at start: ${await loadAverage()}`);
const root = new URL("..", import.meta.url).pathname;

const external = Deno.env.get("SLUICE_TEST_PG_URL");
const server = external ? undefined : await startPostgres();
const adminUrl = external ?? server!.url;
const urlFor = (db: string) => {
  const url = new URL(adminUrl);
  url.pathname = `/${db}`;
  return url.href;
};

const SOURCE_COLUMNS = [
  "citizen_id",
  "full_name",
  "national_id",
  "phone",
  "email",
  "date_of_birth",
  "gender",
  "district",
  "state",
  "annual_income",
  "household_size",
  "confidence_score",
  "tags",
  "updated_at",
];
const TARGET_COLUMNS = SOURCE_COLUMNS.map((c) =>
  c === "full_name" ? "display_name" : c === "updated_at" ? "source_updated_at" : c
);

const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
/** The server's postmaster process (see serverCpu); null until looked up. */
let postmaster: number | undefined | null = null;
const warehouse = urlFor("bench_warehouse");
const citizen = urlFor("bench_citizen");
const scratch = await Deno.makeTempDir({ prefix: "sluice_bench_" });
try {
  for (const db of ["bench_warehouse", "bench_citizen"]) {
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
    select g, 'Citizen ' || g, lpad((g % 10000)::text, 4, '0') || ' ' || lpad((g % 9973)::text, 4, '0') || ' ' || lpad((g % 8887)::text, 4, '0'),
           '+91 9' || lpad((g % 10000)::text, 4, '0') || ' ' || lpad((g % 100000)::text, 5, '0'),
           'citizen' || g || '@example.in', date '1950-01-01' + (g % 20000),
           (array['female','male','other'])[1 + g % 3], 'District ' || (g % 700), 'State ' || (g % 36),
           (g % 5000000) * 1.37, 1 + g % 9, ((g % 10000) / 10000.0)::numeric(5,4),
           array['tag' || (g % 5), 'tag' || (g % 7)],
           timestamptz '2026-11-01 00:00:00+00' + (g / 1000) * interval '1 minute'
    from generate_series(1, ${rows}) g`);
  await w.unsafe("vacuum analyze public.profile_360");

  // 1. Reference: psql COPY out | psql COPY in.
  const reference = await timeCommand("bash", [
    "-c",
    `psql "${warehouse}" -qc "copy (select ${
      SOURCE_COLUMNS.join(", ")
    } from public.profile_360) to stdout" | psql "${citizen}" -qc "copy public.profile_summary (${
      TARGET_COLUMNS.join(", ")
    }) from stdin"`,
  ]);
  await expectCount(c, rows);
  await c.unsafe("truncate public.profile_summary");
  await c.unsafe("vacuum public.profile_summary");

  // 2. Sluice, full mode.
  const job = (name: string, mode: string) => ({
    name,
    config: {
      "connector.class": "postgres_query",
      "connection.url": warehouse,
      "table": "public.profile_360",
      "mode": mode,
      "sink.class": "postgres",
      "sink.connection.url": citizen,
      "sink.table": "public.profile_summary",
      "sink.fields.mapping": "full_name:display_name,updated_at:source_updated_at",
    },
  });
  const configFile = `${scratch}/bench.json`;
  await Deno.writeTextFile(
    configFile,
    JSON.stringify([job("full", "full"), job("incremental", "incremental")]),
  );
  // The settings `deno task run` starts with: its V8 flags unless given
  // ("none": V8's own), and its other Deno flags (--no-code-cache).
  const chosenFlags = values["sluice-v8-flags"] ?? SLUICE_V8_FLAGS;
  const v8Flags = chosenFlags === "none" ? undefined : chosenFlags;
  const sluiceArgs = (name: string) => [
    "run",
    "-A",
    ...SLUICE_DENO_FLAGS.filter((flag) => !flag.startsWith("--v8-flags=")),
    ...(v8Flags ? [`--v8-flags=${v8Flags}`] : []),
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
  const full = await timeCommand(Deno.execPath(), sluiceArgs("full"));
  await expectCount(c, rows);

  // 3. Merge reference into the filled target, then 4. the same by Sluice.
  await c.unsafe("vacuum public.profile_summary");
  const updates = TARGET_COLUMNS.filter((column) => column !== "citizen_id")
    .map((column) => `${column} = excluded.${column}`).join(", ");
  const mergeReference = await timeCommand("bash", [
    "-c",
    `psql "${warehouse}" -qc "copy (select ${
      SOURCE_COLUMNS.join(", ")
    } from public.profile_360) to stdout" | ${mergeInto(citizen, updates)}`,
  ]);
  await expectCount(c, rows);
  await c.unsafe("vacuum public.profile_summary");
  const merge = await timeCommand(Deno.execPath(), sluiceArgs("full"));
  await expectCount(c, rows);
  await c.unsafe("truncate public.profile_summary");
  await c.unsafe("vacuum public.profile_summary");

  // 5. Incremental: first run, then 1% changed.
  const firstIncremental = await timeCommand(Deno.execPath(), sluiceArgs("incremental"));
  await expectCount(c, rows);
  const changed = await touchProfiles(warehouse, 0.01);
  const skipped = await lateScanSkipped();
  const incremental = await timeCommand(Deno.execPath(), sluiceArgs("incremental"));
  // The same change when another session had a transaction open at the
  // previous run: that run recorded its snapshot, and this one scans for
  // rows committed behind the watermark since (issue 7, item 2).
  const open = await w.reserve();
  await open.unsafe("begin");
  await open.unsafe("select 1");
  await timeCommand(Deno.execPath(), sluiceArgs("incremental"));
  await open.unsafe("commit");
  open.release();
  await touchProfiles(warehouse, 0.01);
  const scanned = !await lateScanSkipped();
  const withLateScan = await timeCommand(Deno.execPath(), sluiceArgs("incremental"));

  // 6. The incremental run's reference: psql copies the rows changed since a
  // mark into a temporary table and merges them, after another 1% changed
  // (other rows, as many): how much of an incremental run the server's
  // merge of rows spread over the table takes anyway.
  const [{ mark }] = await w<{ mark: string }[]>`
    select max(updated_at)::text as mark from public.profile_360`;
  await touchProfiles(warehouse, 0.01, 7);
  const incrementalReference = await timeCommand("bash", [
    "-c",
    `psql "${warehouse}" -qc "copy (select ${
      SOURCE_COLUMNS.join(", ")
    } from public.profile_360 where updated_at > '${mark}') to stdout" | ${
      mergeInto(citizen, updates)
    }`,
  ]);
  await w.end();
  await c.end();

  const rate = (ms: number) => Math.round(rows / (ms / 1000));
  type Run = Awaited<ReturnType<typeof timeCommand>>;
  const row = (label: string, run: Run, options: { rate?: boolean; rss?: boolean }) => {
    const { client, server } = run.cpu;
    const cpu = `${client.toFixed(2)} / ${server === undefined ? "n/a" : server.toFixed(2)}`;
    console.log(
      `| ${label} | ${fmt(run.ms)} | ${
        options.rate ? rate(run.ms).toLocaleString("en") : "-"
      } | ${cpu} | ${options.rss ? mb(run.peakKb) : "n/a"} |`,
    );
  };
  // CPU: the command's processes / the whole PostgreSQL server's (both
  // backends, autovacuum too), less noisy than the time on a shared machine.
  console.log("\n| run | time | rows/s | CPU s (client / server) | peak RSS |");
  console.log("| --- | ---: | ---: | ---: | ---: |");
  row("reference psql COPY pipe", reference, { rate: true });
  row("Sluice full", full, { rate: true, rss: true });
  row(
    "reference psql COPY into a temp table + INSERT … ON CONFLICT, filled target",
    mergeReference,
    { rate: true },
  );
  row("Sluice full into the filled target (merge)", merge, { rate: true, rss: true });
  row("Sluice incremental, first run", firstIncremental, { rate: true, rss: true });
  row(`Sluice incremental, ${changed.toLocaleString("en")} rows changed`, incremental, {
    rss: true,
  });
  row(
    `reference psql merge of the ${changed.toLocaleString("en")} rows changed since a mark`,
    incrementalReference,
    {},
  );
  row(
    `Sluice incremental, ${changed.toLocaleString("en")} rows changed, late-row scan ${
      scanned ? "run" : "skipped (unexpected)"
    }`,
    withLateScan,
    { rss: true },
  );
  console.log(
    `\nThe first incremental run after the change ${
      skipped ? "skipped" : "ran"
    } the late-row scan (skipped when nothing else was running at the previous snapshot).`,
  );
  const ratio = rate(full.ms) / rate(reference.ms);
  const incRatio = incremental.ms / full.ms;
  const mergeRatio = rate(merge.ms) / rate(mergeReference.ms);
  console.log(
    `\nSluice full / reference rows/s: ${ratio.toFixed(2)} (target ≥ 0.70) ${
      ratio >= 0.7 ? "PASS" : "FAIL"
    }`,
  );
  console.log(
    `Sluice merge / merge reference rows/s: ${mergeRatio.toFixed(2)} (target ≥ 0.70) ${
      mergeRatio >= 0.7 ? "PASS" : "FAIL"
    }`,
  );
  const cpuRatio = (sluice: Run, reference: Run) => {
    const { server: a } = sluice.cpu, { server: b } = reference.cpu;
    if (a === undefined || b === undefined) return "n/a (the server is not on this machine)";
    return (((a + sluice.cpu.client) / (b + reference.cpu.client)).toFixed(2));
  };
  console.log(
    `CPU seconds (client + server), Sluice / reference: full ${cpuRatio(full, reference)}, ` +
      `merge ${cpuRatio(merge, mergeReference)}`,
  );
  const fullPeak = Math.max(full.peakKb, merge.peakKb) / 1024;
  console.log(
    `Peak RSS of the full sync: ${fullPeak.toFixed(0)} MB (target < 150 MB) ${
      fullPeak === 0 ? "FAIL (not sampled)" : fullPeak < 150 ? "PASS" : "FAIL"
    }`,
  );
  const peak = Math.max(full.peakKb, merge.peakKb, firstIncremental.peakKb, incremental.peakKb) /
    1024;
  console.log(`Peak RSS of every run: ${peak.toFixed(0)} MB`);
  console.log(
    `Incremental (1%) / full time: ${(incRatio * 100).toFixed(1)}% (target < 10%) ${
      incRatio < 0.1 ? "PASS" : "FAIL"
    }; the psql references' (merge of the changed rows / COPY pipe): ${
      (incrementalReference.ms / reference.ms * 100).toFixed(1)
    }%`,
  );
  console.log(`Load average at end: ${await loadAverage()}`);
} finally {
  for (const db of ["bench_warehouse", "bench_citizen"]) {
    await admin.unsafe(`drop database if exists ${db} with (force)`).catch(() => {});
  }
  await admin.end();
  await Deno.remove(scratch, { recursive: true });
  await server?.stop();
}

/**
 * A psql command that merges COPY text from its stdin into profile_summary
 * as the sink does: into a temporary table, then one INSERT … ON CONFLICT
 * DO UPDATE (clearing the soft-delete column).
 */
function mergeInto(url: string, updates: string): string {
  return `psql "${url}" -v ON_ERROR_STOP=1 -q ` +
    `-c "create temp table stage as select ${
      TARGET_COLUMNS.join(", ")
    } from public.profile_summary with no data" ` +
    `-c "copy stage (${TARGET_COLUMNS.join(", ")}) from stdin" ` +
    `-c "insert into public.profile_summary (${TARGET_COLUMNS.join(", ")}) select ${
      TARGET_COLUMNS.join(", ")
    } from stage on conflict (citizen_id) do update set ${updates}, deleted_at = null"`;
}

/** Whether the stored watermark lets the next incremental run skip the late-row scan. */
async function lateScanSkipped(): Promise<boolean> {
  const sql = postgres(citizen, { max: 1, onnotice: () => {} });
  try {
    const [row] = await sql<{ skipped: boolean }[]>`
      select "offset" -> 'snapshot' = 'null'::jsonb as skipped
      from public.sluice_offsets where pipeline = 'incremental'`;
    return row?.skipped === true;
  } finally {
    await sql.end();
  }
}

/** Runs a command, timing it and sampling its peak RSS (VmHWM) from /proc. */
async function timeCommand(
  command: string,
  args: string[],
): Promise<{ ms: number; peakKb: number; cpu: CpuSeconds }> {
  const started = performance.now();
  const serverBefore = await serverCpu();
  // bash's `times` gives the CPU of the command and everything it waited for.
  const timesFile = `${scratch}/times`;
  const child = new Deno.Command("bash", {
    args: ["-c", '"$@"; s=$?; times > "$TIMES_FILE"; exit $s', "bash", command, ...args],
    env: { TIMES_FILE: timesFile },
    stdout: "inherit",
    stderr: "inherit",
  }).spawn();
  let peakKb = 0;
  const sampler = setInterval(async () => {
    try {
      // The command is bash's only child.
      const [pid] = (await Deno.readTextFile(`/proc/${child.pid}/task/${child.pid}/children`))
        .trim().split(" ");
      const status = await Deno.readTextFile(`/proc/${pid}/status`);
      const match = /VmHWM:\s+(\d+)/.exec(status);
      if (match) peakKb = Math.max(peakKb, Number(match[1]));
    } catch { /* not started, or exited */ }
  }, 50);
  const status = await child.status;
  clearInterval(sampler);
  if (!status.success) throw new Error(`${command} ${args.join(" ")} exited with ${status.code}`);
  const ms = performance.now() - started;
  // A backend's CPU reaches the postmaster's total when it has exited.
  await new Promise((resolve) => setTimeout(resolve, 200));
  const serverAfter = await serverCpu();
  const client = childrenCpu(await Deno.readTextFile(timesFile));
  const server = serverBefore !== undefined && serverAfter !== undefined
    ? serverAfter - serverBefore
    : undefined;
  return { ms, peakKb, cpu: { client, server } };
}

/** CPU seconds of a run: the command's processes, and the whole PostgreSQL server's. */
interface CpuSeconds {
  client: number;
  /** Undefined when the server's processes cannot be read (not on this machine). */
  server?: number;
}

/** The children's user + system seconds from bash's `times` (its second line). */
function childrenCpu(times: string): number {
  const line = times.trim().split("\n")[1] ?? "";
  let total = 0;
  for (const [, minutes, seconds] of line.matchAll(/(\d+)m([\d.]+)s/g)) {
    total += Number(minutes) * 60 + Number(seconds);
  }
  return total;
}

/**
 * CPU seconds the PostgreSQL server has used so far: its postmaster, the
 * backends it reaped and the processes still running. Undefined when the
 * server is not a process of this machine.
 */
async function serverCpu(): Promise<number | undefined> {
  if (postmaster === null) {
    const [row] = await admin<{ pid: number }[]>`
      select pid from pg_stat_activity where backend_type = 'checkpointer'`;
    postmaster = row
      ? await statFields(row.pid).then((f) => Number(f[1]), () => undefined)
      : undefined;
  }
  if (postmaster === undefined) return undefined;
  const own = await statFields(postmaster);
  // utime, stime, cutime, cstime (fields 14-17 of /proc/<pid>/stat).
  let ticks = Number(own[11]) + Number(own[12]) + Number(own[13]) + Number(own[14]);
  for await (const entry of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const fields = await statFields(Number(entry.name));
      if (Number(fields[1]) === postmaster) ticks += Number(fields[11]) + Number(fields[12]);
    } catch { /* exited */ }
  }
  return ticks / 100;
}

/** The fields of /proc/<pid>/stat after the command name (state first). */
async function statFields(pid: number): Promise<string[]> {
  const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
  return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
}

async function expectCount(sql: postgres.Sql, expected: number): Promise<void> {
  const [{ n }] = await sql`select count(*)::int as n from public.profile_summary`;
  if (n !== expected) throw new Error(`profile_summary has ${n} rows, expected ${expected}`);
}

/** The 1, 5 and 15 minute load averages: the machine is shared, figures are noisy. */
async function loadAverage(): Promise<string> {
  try {
    return (await Deno.readTextFile("/proc/loadavg")).split(" ").slice(0, 3).join(" ");
  } catch {
    return "unknown";
  }
}

function fmt(ms: number): string {
  return `${(ms / 1000).toFixed(2)} s`;
}

function mb(kb: number): string {
  return `${(kb / 1024).toFixed(0)} MB`;
}
