/**
 * `sluice job run` of a reconciliation, as cron or an operator sees it: exit
 * status 1 and a log summary naming the differences while they remain, 0
 * once repaired; the metrics carry the figures.
 */
import { assertEquals, assertMatch, assertStringIncludes } from "../_assert.ts";
import { syncFixture } from "../_batch.ts";
import { SluiceMetrics } from "../../core/metrics.ts";
import type { PipelineSpec } from "../../core/config.ts";
import type { RunReport } from "../../core/pipeline.ts";

const CLI = new URL("../../cli/main.ts", import.meta.url).pathname;
const ROOT = new URL("../..", import.meta.url).pathname;

async function sluice(
  ...args: string[]
): Promise<{ code: number; stdout: string; stderr: string }> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", CLI, ...args, "--log-format", "json"],
    cwd: ROOT,
    stdin: "null",
  }).output();
  const text = new TextDecoder();
  return {
    code: output.code,
    stdout: text.decode(output.stdout),
    stderr: text.decode(output.stderr),
  };
}

Deno.test("sluice job run exits 1 while a reconciliation finds differences and 0 once they are repaired", async () => {
  await using db = await syncFixture(
    "reconcile_cli",
    `create table items (id int primary key, name text, updated_at timestamptz default now());
     insert into items select g, 'item ' || g, now() from generate_series(1, 500) g;`,
    `create table items (id int primary key, name text, updated_at timestamptz,
                         deleted_at timestamptz);`,
  );
  const dir = await Deno.makeTempDir();
  const config = `${dir}/pipelines.json`;
  const sync = {
    "connector.class": "postgres_query",
    "connection.url": db.source.url,
    table: "public.items",
    "sink.class": "postgres",
    "sink.connection.url": db.target.url,
    "sink.table": "public.items",
  };
  await Deno.writeTextFile(
    config,
    JSON.stringify([
      { name: "items_sync", config: sync },
      { name: "items_check", config: { "connector.class": "reconcile", pipeline: "items_sync" } },
      {
        name: "items_repair",
        config: { "connector.class": "reconcile", pipeline: "items_sync", repair: "true" },
      },
    ]),
  );
  try {
    const offsets = ["--offsets", `${dir}/offsets.json`];
    assertEquals((await sluice("job", "run", "items_sync", config, ...offsets)).code, 0);
    assertEquals((await sluice("job", "run", "items_check", config, ...offsets)).code, 0);
    await db.targetSql`delete from items where id = 7`;
    const failed = await sluice("job", "run", "items_check", config, ...offsets);
    assertEquals(failed.code, 1, failed.stderr);
    assertMatch(failed.stderr, /1 missing, 0 extra, 0 different/);
    assertStringIncludes(failed.stderr, "id=7");
    const repaired = await sluice("job", "run", "items_repair", config, ...offsets);
    assertEquals(repaired.code, 0, repaired.stderr);
    assertEquals((await sluice("job", "run", "items_check", config, ...offsets)).code, 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("reconciliation figures become sluice_reconciliation_* metrics", async () => {
  const spec = { name: "check", source: { plugin: { mode: "batch" } } } as unknown as PipelineSpec;
  const metrics = new SluiceMetrics([spec], { defaultMetrics: false });
  const report: RunReport = {
    pipeline: "check",
    status: "failed",
    stats: { read: 0, written: 0, filtered: 0, deadLettered: 0, skipped: 0 },
    startedAt: new Date(),
    durationMs: 1,
    validation: [{
      name: "reconciliation",
      ok: false,
      detail: "",
      reconciliation: {
        mode: "fast",
        sourceRows: 10,
        targetRows: 9,
        missing: 2,
        extra: 1,
        different: 3,
        repaired: 0,
        remaining: 6,
        queries: 4,
      },
    }],
  };
  metrics.onRunFinished(report);
  const text = await metrics.render();
  assertStringIncludes(text, 'sluice_reconciliation_rows{pipeline="check",kind="missing"} 2');
  assertStringIncludes(text, 'sluice_reconciliation_rows{pipeline="check",kind="remaining"} 6');
  assertStringIncludes(
    text,
    'sluice_reconciliation_runs_total{pipeline="check",result="differences"} 1',
  );
});
