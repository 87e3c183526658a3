/**
 * How many rows an incremental run's late-row scan reads again (TRIAL2
 * item 2), by the rule of the previous version and by the current one.
 *
 * The previous rule re-read the rows at or behind the watermark whose `xmin`
 * was at or after the previous snapshot's xmax, or in its running list; it
 * missed rows written in subtransactions. The current rule re-reads every row
 * whose `xmin` is at or after the previous snapshot's xmin. The extra rows are
 * those written, behind the watermark, by transactions that had already
 * committed at the previous snapshot but began after its oldest running one.
 *
 * Writers update random rows of an N-row table, stamping now(), in short
 * transactions; a "run" takes a snapshot and a watermark (the newest row);
 * the writers go on for the time between two runs; then both rules are
 * counted in one snapshot, with the rows ahead of the watermark (which the
 * next run reads anyway). Scenarios: short transactions only; and the same
 * with one transaction that wrote a row and stays open (a long ETL step).
 * The CPU time of the scan's condition over the table is compared too.
 *
 * ```
 * deno run -A bench/late_scan_bench.ts [--rows 200000] [--writers 4] [--seconds 5]
 * ```
 * Uses SLUICE_TEST_PG_URL when set, else starts a private PostgreSQL.
 *
 * @module
 */
import { parseArgs } from "node:util";
import postgres from "postgres";
import { startPostgres } from "../dev/postgres.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    rows: { type: "string", default: "200000" },
    writers: { type: "string", default: "4" },
    seconds: { type: "string", default: "5" },
  },
});
const rows = Number(values.rows);
const writers = Number(values.writers);
const seconds = Number(values.seconds);

const external = Deno.env.get("SLUICE_TEST_PG_URL");
const server = external ? undefined : await startPostgres();
const adminUrl = external ?? server!.url;
const url = new URL(adminUrl);
url.pathname = "/bench_late_scan";
const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
await admin.unsafe("drop database if exists bench_late_scan with (force)");
await admin.unsafe("create database bench_late_scan");
const sql = postgres(url.href, { max: writers + 3, onnotice: () => {} });

interface Mark {
  xmin: string;
  xmax: string;
  xmax32: string;
  xmin32: string;
  xip: string[];
  ts: string;
  id: number;
}

try {
  console.log(`Load average at start: ${await loadAverage()}`);
  await sql.unsafe(`
    create table items (id int primary key, v int not null,
      updated_at timestamptz not null default now());
    insert into items (id, v, updated_at)
      select g, 0, now() - interval '1 day' + g * interval '1 ms' from generate_series(1, ${rows}) g;
    create index on items (updated_at, id);`);
  await sql.unsafe("vacuum analyze items");
  const lines = [
    "| between two runs | rows ahead (read anyway) | late scan, previous rule | late scan, current rule | extra |",
    "| --- | ---: | ---: | ---: | ---: |",
  ];
  // Several intervals each, as whether a transaction is in flight at a
  // run's snapshot is a matter of chance.
  const kinds: [string, Kind][] = [
    ["autocommit updates", "autocommit"],
    ["transactions of two updates 5-100 ms apart", "held"],
    ["the same, and one transaction open across the run", "long"],
  ];
  for (const [label, kind] of kinds) {
    for (let i = 0; i < 3; i++) {
      const result = await scenario(kind);
      lines.push(
        `| ${label} | ${result.ahead} | ${result.before} | ${result.after} | ${
          result.after - result.before
        } |`,
      );
    }
  }
  console.log(lines.join("\n"));
  await conditionCost();
  console.log(`Load average at end: ${await loadAverage()}`);
} finally {
  await sql.end();
  await admin.unsafe("drop database if exists bench_late_scan with (force)").catch(() => {});
  await admin.end();
  await server?.stop();
}

type Kind = "autocommit" | "held" | "long";

/** One interval between two runs; counts what the next run's scan reads. */
async function scenario(kind: Kind) {
  let stop = false;
  let commits = 0;
  const pick = () => 1 + Math.floor(Math.random() * rows);
  const update = (tx: postgres.Sql | postgres.TransactionSql, id: number) =>
    tx`update items set v = v + 1, updated_at = now() where id = ${id}`;
  const write = async () => {
    while (!stop) {
      if (kind === "autocommit") {
        await update(sql, pick());
      } else {
        await sql.begin(async (tx) => {
          await update(tx, pick());
          // 5-100 ms: transactions overlap and end out of order.
          await new Promise((r) => setTimeout(r, 5 + Math.random() * 95));
          await update(tx, pick());
        });
      }
      commits++;
    }
  };
  const long = kind === "long";
  const open = long ? await sql.reserve() : undefined;
  if (open) {
    await open.unsafe("begin");
    await open.unsafe("update items set v = v + 1, updated_at = now() where id = 1");
  }
  const tasks = Array.from({ length: writers }, write);
  await new Promise((r) => setTimeout(r, 1000));
  const mark = await takeMark();
  await new Promise((r) => setTimeout(r, seconds * 1000));
  stop = true;
  await Promise.all(tasks);
  if (open) {
    await open.unsafe("commit");
    open.release();
  }
  const [counts] = await sql.begin(
    "isolation level repeatable read",
    (tx) =>
      tx<{ ahead: number; before: number; after: number }[]>`
    select count(*) filter (where (updated_at, id) > (${mark.ts}::timestamptz, ${mark.id}))::int as ahead,
           count(*) filter (where (updated_at, id) <= (${mark.ts}::timestamptz, ${mark.id})
             and (age(xmin) <= age(${mark.xmax32}::text::xid) or xmin = any(${mark.xip}::text[]::xid[])))::int as before,
           count(*) filter (where (updated_at, id) <= (${mark.ts}::timestamptz, ${mark.id})
             and age(xmin) between 0 and age(${mark.xmin32}::text::xid))::int as after
    from items`,
  );
  console.log(
    `${kind}: ${commits} commits in ${
      seconds + 1
    } s, snapshot xmin ${mark.xmin} xmax ${mark.xmax} (${mark.xip.length} running)`,
  );
  return counts;
}

/** A run's snapshot and watermark. */
async function takeMark(): Promise<Mark> {
  const [mark] = await sql.begin("isolation level repeatable read", (tx) =>
    tx<Mark[]>`
    select pg_snapshot_xmin(s)::text as xmin, pg_snapshot_xmax(s)::text as xmax,
           (pg_snapshot_xmax(s)::text::bigint % 4294967296)::text as xmax32,
           (pg_snapshot_xmin(s)::text::bigint % 4294967296)::text as xmin32,
           array(select (x::text::bigint % 4294967296)::text from pg_snapshot_xip(s) x) as xip,
           w.updated_at::text as ts, w.id
    from pg_current_snapshot() s,
         lateral (select updated_at, id from items order by updated_at desc, id desc limit 1) w`);
  return mark;
}

/** Server time of each rule's condition over the whole table (no row matches). */
async function conditionCost() {
  const [s] = await sql`select pg_snapshot_xmax(pg_current_snapshot())::text as xmax`;
  const xmax = BigInt(s.xmax);
  const before = `count(*) filter (where age(xmin) <= age('${xmax % 4294967296n}'::xid)
    or xmin = any('{1,2,3}'::text[]::xid[]))`;
  const after = `count(*) filter (where age(xmin) between 0 and age('${xmax % 4294967296n}'::xid))`;
  const times: Record<string, number[]> = { before: [], after: [] };
  // Alternated, so both see the same load.
  for (let i = 0; i < 5; i++) {
    for (const [name, expr] of [["before", before], ["after", after]]) {
      const plan = await sql.unsafe(`explain (analyze, format json) select ${expr} from items`);
      times[name].push(
        (plan[0]["QUERY PLAN"] as { "Execution Time": number }[])[0]["Execution Time"],
      );
    }
  }
  const median = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  console.log(
    `Condition over ${rows} rows, median of 5 (ms): previous rule ${
      median(times.before).toFixed(1)
    }, current rule ${median(times.after).toFixed(1)}`,
  );
}

async function loadAverage(): Promise<string> {
  try {
    return (await Deno.readTextFile("/proc/loadavg")).split(" ").slice(0, 3).join(" ");
  } catch {
    return "unknown";
  }
}
