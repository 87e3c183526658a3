/**
 * Metrics and alerts of batch jobs, over real HTTP on a free loopback port,
 * with real PostgreSQL source and target databases.
 */
import { assert, assertEquals, assertMatch } from "../../_assert.ts";
import { specsFrom, syncFixture } from "../../_batch.ts";
import { waitUntil } from "../../_wait.ts";
import { startOps, startWebhookReceiver } from "../../_ops.ts";

const SOURCE = `create table public.items (id int primary key, name text, qty int,
  updated_at timestamptz not null default now());`;
const TARGET = `create table public.items (id int primary key, name text, qty int,
  updated_at timestamptz, deleted_at timestamptz);`;

function job(sourceUrl: string, targetUrl: string, extra: Record<string, string> = {}) {
  return {
    name: "items_job",
    config: {
      "connector.class": "postgres_query",
      "connection.url": sourceUrl,
      table: "public.items",
      "sink.class": "postgres",
      "sink.connection.url": targetUrl,
      "sink.table": "public.items",
      "job.retries": "0",
      ...extra,
    },
  };
}

async function lastRun(api: (path: string) => Promise<Response>) {
  const jobs = await (await api("/jobs")).json();
  return jobs[0].last_runs[0];
}

Deno.test("a batch run moves the records, runs, duration and last-success metrics", async () => {
  await using db = await syncFixture("ops_batch", SOURCE, TARGET);
  await db.sourceSql`insert into items select g, 'n' || g, g from generate_series(1, 250) g`;
  const specs = await specsFrom(job(db.source.url, db.target.url));
  await using ops = await startOps(specs);
  const labels = { pipeline: "items_job" };
  assertEquals(await ops.metric("sluice_records_written_total", labels), 0);

  const started = await ops.api("/jobs/items_job/run", { method: "POST" });
  assertEquals(started.status, 202);
  await started.body?.cancel();
  const run = await waitUntil("the job's run", () => lastRun(ops.api));
  assertEquals(run.status, "succeeded", run.error);

  assertEquals(await ops.metric("sluice_records_read_total", labels), 250);
  assertEquals(await ops.metric("sluice_records_written_total", labels), 250);
  assertEquals(
    await ops.metric("sluice_batch_runs_total", { ...labels, outcome: "succeeded" }),
    1,
  );
  assertEquals(await ops.metric("sluice_batch_run_duration_seconds_count", labels), 1);
  assertEquals(await ops.metric("sluice_sink_batch_size_sum", labels), 250);
  assert(await ops.metric("sluice_sink_write_duration_seconds_count", labels) >= 1);
  const lastSuccess = await ops.metric("sluice_batch_last_success_timestamp_seconds", labels);
  assert(Math.abs(lastSuccess - Date.now() / 1000) < 60, `last success ${lastSuccess}`);
  assertEquals(await ops.metric("sluice_batch_last_run_failed", labels), 0);
  assert(await ops.metric("sluice_process_resident_memory_bytes") > 0);
  const text = await (await ops.api("/metrics")).text();
  assert(text.includes("sluice_nodejs_heap_size_used_bytes"), "prom-client's default metrics");
  assert(text.includes("sluice_event_loop_lag_seconds"));
  // prom-client's event-loop histogram read NaN and 9,223,372,036 s between samples under Deno.
  assert(!text.includes("eventloop"), "prom-client's event-loop metrics are left out");
  const values = text.split("\n").filter((line) => line !== "" && !line.startsWith("#"))
    .map((line) => line.slice(line.lastIndexOf(" ") + 1));
  assertEquals(values.filter((value) => !Number.isFinite(Number(value))), []);
});

Deno.test("a record the target rejects moves the dead-letter and failure metrics", async () => {
  await using db = await syncFixture("ops_dead_letter", SOURCE, TARGET);
  await db.targetSql`alter table items add constraint no_7 check (id <> 7)`;
  await db.sourceSql`insert into items select g, 'n' || g, g from generate_series(1, 20) g`;
  const folder = await Deno.makeTempDir({ prefix: "sluice_ops_dlq_" });
  const file = `${folder}/dead.jsonl`;
  const specs = await specsFrom(job(db.source.url, db.target.url, {
    "errors.tolerance": "all",
    "errors.deadletterqueue.file.path": file,
  }));
  await using ops = await startOps(specs);
  const labels = { pipeline: "items_job" };
  const report = await ops.runtime.runJob("items_job");
  assertEquals(report.status, "succeeded", report.error?.message);

  assertEquals(await ops.metric("sluice_records_dead_lettered_total", labels), 1);
  assertEquals(await ops.metric("sluice_records_failed_total", labels), 1);
  assertEquals(
    await ops.metric("sluice_dead_letters_total", { ...labels, destination: `file ${file}` }),
    1,
  );
  assertEquals(await ops.metric("sluice_records_written_total", labels), 19);
  assertEquals((await Deno.readTextFile(file)).trim().split("\n").length, 1);
  await Deno.remove(folder, { recursive: true });
});

Deno.test("a failed batch job alerts at once, to the log's webhooks in Slack and JSON shapes", async () => {
  await using db = await syncFixture("ops_fail", SOURCE, "select 1");
  await db.sourceSql`insert into items values (1, 'a', 1)`;
  await using slack = await startWebhookReceiver();
  await using generic = await startWebhookReceiver(2); // down for its first two requests
  const specs = await specsFrom(job(db.source.url, db.target.url));
  await using ops = await startOps(specs, {
    alerts: {
      alerts: {
        // Rules are otherwise evaluated hourly here: only the report can trigger this one.
        "evaluation.interval": "1h",
        webhooks: [
          { url: slack.url, format: "slack" },
          { url: generic.url, format: "json", "retry.delay.ms": 20 },
        ],
      },
    },
  });
  const report = await ops.runtime.runJob("items_job");
  assertEquals(report.status, "failed");

  await waitUntil("the Slack notification", () => slack.bodies.length > 0);
  const [text] = slack.bodies;
  assertMatch(
    (text as { text: string }).text,
    /^\[FIRING\] SluiceBatchJobFailed \(critical\) pipeline=items_job/,
  );
  await waitUntil("the JSON notification after retries", () => generic.bodies.length > 0);
  const [body] = generic.bodies as Record<string, unknown>[];
  assertEquals(body.alertname, "SluiceBatchJobFailed");
  assertEquals(body.state, "firing");
  assertEquals(body.labels, { pipeline: "items_job" });
  assertEquals(body.value, 1);
  assertEquals(body.threshold, 0);
  assertEquals(ops.alerts.evaluations, 1, "evaluated once, by the report");

  assertEquals(
    await ops.metric("sluice_batch_runs_total", { pipeline: "items_job", outcome: "failed" }),
    1,
  );
  const status = await (await ops.api("/connectors/items_job/status")).json();
  assertEquals(status.connector.state, "FAILED");
  assertMatch(status.connector.trace, /items/);
  const ready = await ops.api("/readyz");
  assertEquals(ready.status, 503);
  assertMatch((await ready.json()).reasons[0], /^items_job failed: /);
});
