/**
 * `sluice status` reads a running process over its REST API and metrics and
 * prints one line per pipeline, plus the alerts that fire.
 */
import { assert, assertEquals, assertMatch, assertRejects } from "../_assert.ts";
import { specsFrom, syncFixture } from "../_batch.ts";
import { startOps } from "../_ops.ts";
import { waitUntil } from "../_wait.ts";
import {
  deadLettersByPipeline,
  formatStatus,
  metricByPipeline,
  statusUrl,
} from "../../cli/status.ts";

const SOURCE = `create table public.items (id int primary key, name text,
  updated_at timestamptz not null default now());`;
const TARGET = `create table public.items (id int primary key, name text,
  updated_at timestamptz, deleted_at timestamptz);`;

Deno.test("sluice status shows a job's state, written rows, last run with its validation, and alerts", async () => {
  await using db = await syncFixture("cli_status", SOURCE, TARGET);
  await db.sourceSql`insert into items select g, 'n' || g from generate_series(1, 40) g`;
  const specs = await specsFrom({
    name: "items_job",
    config: {
      "connector.class": "postgres_query",
      "connection.url": db.source.url,
      table: "public.items",
      "sink.class": "postgres",
      "sink.connection.url": db.target.url,
      "sink.table": "public.items",
      "job.retries": "0",
      "job.schedule": "0 3 * * *",
    },
  });
  await using ops = await startOps(specs, { token: "t0ken" });
  await ops.runtime.runJob("items_job");
  const text = await formatStatus({ url: ops.url, token: "t0ken" });
  const [header, , row] = text.split("\n");
  assertMatch(
    header,
    /^pipeline\s+kind\s+state\s+lag\s+written\s+dead\s+last run\s+next run\s+owner$/,
  );
  assertMatch(
    row,
    /^items_job\s+batch\s+IDLE\s+-\s+40\s+0\s+succeeded, validation ok at \S+\s+\d{4}-\d\d-\d\dT03:00:00\.000Z\s+-$/,
  );
  assertMatch(text, /\nNo alert is firing\.$/);
  const denied = await assertRejects(() => formatStatus({ url: ops.url }));
  assertMatch(denied.message, /requires a token: give --token or SLUICE_API_TOKEN/);
});

Deno.test("sluice status says what to check when no process listens", async () => {
  const error = await assertRejects(() => formatStatus({ url: "http://127.0.0.1:1" }));
  assertMatch(error.message, /Cannot reach a Sluice process at http:\/\/127\.0\.0\.1:1 .*--listen/);
});

Deno.test("status reads per-pipeline series out of the exposition format", () => {
  const text = [
    "# HELP sluice_records_written_total Records the sink made durable.",
    'sluice_records_written_total{pipeline="a",table="t1"} 3',
    'sluice_records_written_total{pipeline="a",table="t2"} 4',
    'sluice_records_written_total{pipeline="b"} 1',
  ].join("\n");
  assertEquals(
    [...metricByPipeline(text, "sluice_records_written_total")],
    [["a", 7], ["b", 1]],
  );
  assertEquals(statusUrl("http://h:1/"), "http://h:1");
  assertEquals(statusUrl(undefined, "127.0.0.1:9000"), "http://127.0.0.1:9000");
});

Deno.test("sluice status counts the dead letters a destination holds now, not those ever written", () => {
  const text = [
    'sluice_records_dead_lettered_total{pipeline="a"} 1',
    'sluice_dead_letters{pipeline="a",destination="table public.dead"} 0',
    'sluice_records_dead_lettered_total{pipeline="b"} 2',
  ].join("\n");
  // a's one dead letter was replayed; b keeps none (it only logs them).
  assertEquals([...deadLettersByPipeline(text)].sort(), [["a", 0], ["b", 2]]);
});

Deno.test("sluice status shows a stream waiting to retry after an error as RETRYING, with the error", async () => {
  await using db = await syncFixture("cli_status_retry", SOURCE, TARGET);
  const specs = await specsFrom({
    name: "items_stream",
    config: {
      "connector.class": "postgres_cdc",
      // Nothing listens there: a connection error, retried with backoff.
      "connection.url": "postgres://postgres@127.0.0.1:1/nowhere",
      "topic.prefix": "src",
      "sink.class": "postgres",
      "sink.connection.url": db.target.url,
      "sink.table": "public.items",
    },
  });
  await using ops = await startOps(specs);
  ops.runtime.start();
  const text = await waitUntil("the stream to wait for its retry", async () => {
    const text = await formatStatus({ url: ops.url });
    return text.includes("RETRYING") ? text : undefined;
  });
  assertMatch(text, /\nitems_stream\s+stream\s+RETRYING\s+-\s+/);
  assertMatch(
    text,
    /\nStreams retrying after an error:\n {2}items_stream: .*127\.0\.0\.1:1.* \(attempt \d+ failed; next in \d+ s\)/,
  );
  const body = await (await ops.api("/connectors/items_stream/status")).json();
  assertEquals(body.connector.state, "RUNNING", "the REST state stays Kafka Connect's");
  assert(body.connector.retrying.attempt >= 1);
  assertMatch(body.connector.retrying.error, /127\.0\.0\.1:1/);
  assert(!Number.isNaN(Date.parse(body.connector.retrying.next_attempt_at)));
});
