/**
 * Bad-rows benchmark (issue "Nothing silently lost", item 12).
 *
 * The same 50,000-row full job runs twice in one run, each as a separate
 * `sluice job run` process with `errors.tolerance=all` and a dead-letter
 * table:
 *
 * 1. clean: every row fits the target;
 * 2. bad: the target has a CHECK constraint that 10% of the rows violate.
 *
 * Target: the bad run within 3× the clean run's time, every bad row in the
 * dead letters, and a bounded number of WARN lines.
 *
 * ```
 * deno run -A bench/bad_rows_bench.ts [--rows 50000]
 * ```
 * Uses SLUICE_TEST_PG_URL when set (`deno task bench` sets it), else starts a
 * private PostgreSQL.
 *
 * @module
 */
import { parseArgs } from "node:util";
import postgres from "postgres";
import { startPostgres } from "../dev/postgres.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: { rows: { type: "string", default: "50000" } },
  strict: false,
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

const DATABASES = ["bench_bad_source", "bench_bad_target"];
const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
const scratch = await Deno.makeTempDir({ prefix: "sluice_bad_rows_" });
try {
  for (const db of DATABASES) {
    await admin.unsafe(`drop database if exists ${db} with (force)`);
    await admin.unsafe(`create database ${db}`);
  }
  const source = postgres(urlFor("bench_bad_source"), { max: 1, onnotice: () => {} });
  const target = postgres(urlFor("bench_bad_target"), { max: 1, onnotice: () => {} });
  console.log(`Filling public.items with ${rows.toLocaleString("en")} rows (10% bad)…`);
  await source.unsafe(`
    create table public.items (id bigint primary key, name text, qty int, doc jsonb,
                               updated_at timestamptz not null default now());
    insert into public.items
    select g, 'item ' || g, case when g % 10 = 0 then -g else g end,
           jsonb_build_object('n', g, 'tags', jsonb_build_array('a', 'b')), now()
    from generate_series(1, ${rows}) g`);
  await source.unsafe("vacuum analyze public.items");
  const columns = `id bigint primary key, name text, qty int, doc jsonb, updated_at timestamptz,
                   deleted_at timestamptz`;
  await target.unsafe(`
    create table public.clean (${columns});
    create table public.bad (${columns}, check (qty >= 0));`);

  const job = (name: string) => ({
    name,
    config: {
      "connector.class": "postgres_query",
      "connection.url": urlFor("bench_bad_source"),
      "table": "public.items",
      "mode": "full",
      "sink.class": "postgres",
      "sink.connection.url": urlFor("bench_bad_target"),
      "sink.table": `public.${name}`,
      "errors.tolerance": "all",
      "errors.deadletterqueue.table.name": "public.dead_letters",
    },
  });
  const configFile = `${scratch}/bench.json`;
  await Deno.writeTextFile(configFile, JSON.stringify([job("clean"), job("bad")]));
  const clean = await runJob("clean", configFile, scratch);
  const bad = await runJob("bad", configFile, scratch);

  const [{ landed }] = await target`select count(*)::int as landed from public.bad`;
  const [{ letters, objects }] = await target`
    select count(*)::int as letters,
           count(*) filter (where jsonb_typeof(record_value->'doc') = 'object')::int as objects
    from public.dead_letters`;
  await source.end();
  await target.end();

  console.log("\n| job | time | WARN lines |");
  console.log("| --- | ---: | ---: |");
  console.log(`| ${rows.toLocaleString("en")} clean rows | ${fmt(clean.ms)} | ${clean.warnings} |`);
  console.log(`| same, 10% violate a CHECK | ${fmt(bad.ms)} | ${bad.warnings} |`);
  const ratio = bad.ms / clean.ms;
  console.log(
    `\nbad / clean time: ${ratio.toFixed(2)} (target ≤ 3) ${ratio <= 3 ? "PASS" : "FAIL"}`,
  );
  const expected = Math.floor(rows / 10);
  console.log(
    `rows landed ${landed}, dead letters ${letters} (expected ${rows - expected} and ${expected}) ${
      landed === rows - expected && letters === expected ? "PASS" : "FAIL"
    }`,
  );
  console.log(
    `dead letters with doc as a JSON object: ${objects} of ${letters} ${
      objects === letters ? "PASS" : "FAIL"
    }`,
  );
} finally {
  for (const db of DATABASES) {
    await admin.unsafe(`drop database if exists ${db} with (force)`).catch(() => {});
  }
  await admin.end();
  await Deno.remove(scratch, { recursive: true });
  await server?.stop();
}

/** Runs one job as its own process; its time and the WARN lines it logged. */
async function runJob(
  name: string,
  configFile: string,
  dir: string,
): Promise<{ ms: number; warnings: number }> {
  const started = performance.now();
  const output = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      `${root}cli/main.ts`,
      "job",
      "run",
      name,
      configFile,
      "--offsets",
      `${dir}/offsets-${name}.json`,
      "--log-level",
      "warning",
      "--log-format",
      "text",
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const ms = performance.now() - started;
  const text = new TextDecoder().decode(output.stdout) + new TextDecoder().decode(output.stderr);
  if (!output.success) throw new Error(`job ${name} failed:\n${text}`);
  const warnings = text.split("\n").filter((line) => /WRN|WARN/.test(line)).length;
  return { ms, warnings };
}

function fmt(ms: number): string {
  return `${(ms / 1000).toFixed(2)} s`;
}
