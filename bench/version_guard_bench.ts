/**
 * What the postgres sink's version guard (`version.column`) costs.
 *
 * Reference: the same sink without the guard, merging N newer rows into a
 * table that holds them (the hourly job's path: staged, then one
 * `INSERT … ON CONFLICT DO UPDATE` per batch). Then with the guard: the same
 * merge of newer rows, and a replay of the same rows, which the guard skips.
 *
 * Target: the guarded merge within 1.2 × the reference's time.
 *
 * ```
 * deno run -A bench/version_guard_bench.ts [--rows 200000] [--batch 5000]
 * ```
 * Uses SLUICE_TEST_PG_URL when set (`deno task bench` sets it), else starts a
 * private PostgreSQL.
 *
 * @module
 */
import { parseArgs } from "node:util";
import postgres from "postgres";
import { getLogger } from "@logtape/logtape";
import { startPostgres } from "../dev/postgres.ts";
import postgresSink from "../sinks/postgres/mod.ts";
import type { SluiceRecord } from "../api/record.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    rows: { type: "string", default: "200000" },
    batch: { type: "string", default: "5000" },
  },
});
const rows = Number(values.rows);
const batchSize = Number(values.batch);

const external = Deno.env.get("SLUICE_TEST_PG_URL");
const server = external ? undefined : await startPostgres();
const adminUrl = external ?? server!.url;
const database = `version_guard_bench_${Date.now().toString(36)}`;
const url = new URL(adminUrl);
url.pathname = `/${database}`;

/** N rows at version `hour` (a timestamptz a whole hour apart per round). */
function records(hour: number): SluiceRecord[] {
  const version = `2026-01-01 ${String(hour).padStart(2, "0")}:00:00.000001+00`;
  return Array.from({ length: rows }, (_, i) => ({
    topic: "bench",
    key: { id: i },
    value: { id: i, name: `row ${i} at ${hour}`, qty: i * hour, version },
  }));
}

/** Writes `list` in batches through a fresh sink; returns ms and the counts. */
async function run(list: SluiceRecord[], guarded: boolean) {
  const sink = await postgresSink.create(
    postgresSink.config.parse({
      "connection.url": url.href,
      table: "public.items",
      "version.column": guarded ? "version" : "",
    }),
    { pipeline: "bench", logger: getLogger(["bench"]), signal: new AbortController().signal },
  );
  const total = { written: 0, skipped: 0 };
  const started = performance.now();
  try {
    for (let i = 0; i < list.length; i += batchSize) {
      const result = await sink.write({
        records: list.slice(i, i + batchSize),
        reject: (failures) => Promise.reject(failures[0].error),
      });
      total.written += result.written;
      total.skipped += result.skipped ?? 0;
    }
  } finally {
    await sink.close();
  }
  return { ms: performance.now() - started, ...total };
}

const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
await admin.unsafe(`create database ${database}`);
const sql = postgres(url.href, { max: 1, onnotice: () => {} });
try {
  await sql.unsafe(`create table public.items (
    id int primary key, name text, qty bigint, version timestamptz, deleted_at timestamptz)`);
  await run(records(1), false); // the first load (COPY), not measured
  await sql.unsafe("vacuum analyze public.items");
  const reference = await run(records(2), false);
  await sql.unsafe("vacuum analyze public.items");
  const guarded = await run(records(3), true);
  await sql.unsafe("vacuum analyze public.items");
  const replay = await run(records(3), true);
  const load = Deno.loadavg().map((n) => n.toFixed(2)).join(" ");
  const line = (name: string, r: typeof reference) =>
    `| ${name} | ${r.ms.toFixed(0)} ms | ${
      Math.round(rows / (r.ms / 1000))
    } | ${r.written} | ${r.skipped} |`;
  console.log(`\n${rows} rows in batches of ${batchSize}; load average ${load}`);
  console.log("| run | time | rows/s | written | skipped |\n| --- | --- | --- | --- | --- |");
  console.log(line("merge, no guard (reference)", reference));
  console.log(line("merge, version guard, newer rows", guarded));
  console.log(line("replay, version guard, all skipped", replay));
  const ratio = guarded.ms / reference.ms;
  console.log(
    `\nguarded / reference time: ${ratio.toFixed(2)} (target ≤ 1.20) ${
      ratio <= 1.2 ? "ok" : "MISSED"
    }`,
  );
  if (guarded.written !== rows || replay.skipped !== rows) {
    throw new Error("the guard wrote or skipped the wrong rows");
  }
} finally {
  await sql.end();
  await admin.unsafe(`drop database if exists ${database} with (force)`);
  await admin.end();
  await server?.stop();
}
