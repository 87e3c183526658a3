/**
 * Operating a running stream over the REST API: pause really stops
 * consumption (and the lag metric and alert show it), resume delivers what
 * waited, stop ends the replication session, restart starts a new one.
 * Real PostgreSQL (postgres_cdc → postgres, direct mode), real HTTP.
 */
import type postgres from "postgres";
import { assert, assertEquals, assertMatch } from "../../_assert.ts";
import { formatStatus } from "../../../cli/status.ts";
import { specsFrom, syncFixture } from "../../_batch.ts";
import { uniqueSlot, waitForActiveSlot } from "../../_cdc.ts";
import { waitUntil } from "../../_wait.ts";
import { type OpsHarness, startOps, startWebhookReceiver } from "../../_ops.ts";

const SOURCE = `create table public.items (id int primary key, name text);`;
const TARGET = `create table public.items (id int primary key, name text,
  deleted_at timestamptz, _source_lsn pg_lsn);`;

function stream(sourceUrl: string, targetUrl: string, slot: string) {
  return {
    name: "items_stream",
    config: {
      "connector.class": "postgres_cdc",
      "connection.url": sourceUrl,
      "topic.prefix": "src",
      "slot.name": slot,
      "publication.name": "ops_publication",
      "snapshot.mode": "never",
      "poll.interval.ms": "20",
      "sink.class": "postgres",
      "sink.connection.url": targetUrl,
      "sink.table": "public.items",
    },
  };
}

async function has(sql: postgres.Sql, id: number): Promise<boolean> {
  const rows = await sql`select 1 from items where id = ${id}`;
  return rows.length === 1;
}

async function put(ops: OpsHarness, path: string, expected: number, method = "PUT") {
  const response = await ops.api(path, { method });
  assertEquals(response.status, expected, `${method} ${path}`);
  assertEquals(await response.text(), "");
}

async function state(ops: OpsHarness): Promise<string> {
  return (await (await ops.api("/connectors/items_stream/status")).json()).connector.state;
}

/** Waits until the alert manager has evaluated `n` more times. */
async function evaluationsPass(ops: OpsHarness, n: number) {
  const target = ops.alerts.evaluations + n;
  await waitUntil(`${n} more evaluations`, () => ops.alerts.evaluations >= target);
}

Deno.test("a paused stream holds its events, its lag alert fires once, and resolves once after resume", async () => {
  await using db = await syncFixture("ops_pause", SOURCE, TARGET);
  await using hook = await startWebhookReceiver();
  const slot = uniqueSlot("ops_pause");
  const specs = await specsFrom(stream(db.source.url, db.target.url, slot));
  await using ops = await startOps(specs, {
    alerts: {
      alerts: {
        "evaluation.interval": "50ms",
        rules: { stream_lag_warning: { threshold: 1 }, stream_lag_critical: { enabled: false } },
        webhooks: [{ url: hook.url, format: "json" }],
      },
    },
  });
  const labels = { pipeline: "items_stream" };
  ops.runtime.start();
  await waitForActiveSlot(db.sourceSql, slot);
  await db.sourceSql`insert into items values (1, 'one')`;
  await waitUntil("row 1 in the target", () => has(db.targetSql, 1));
  assertEquals(await ops.metric("sluice_stream_lag_seconds", labels), 0);

  await put(ops, "/connectors/items_stream/pause", 202);
  assertEquals(await state(ops), "PAUSED");
  await db.sourceSql`insert into items values (2, 'two')`;
  await waitUntil(
    "lag past the threshold",
    async () => await ops.metric("sluice_stream_lag_seconds", labels) > 1.2,
  );
  assertEquals(await has(db.targetSql, 2), false, "a paused stream wrote nothing");
  await waitUntil("the firing notification", () => hook.bodies.length === 1);
  await evaluationsPass(ops, 10);
  assertEquals(hook.bodies.length, 1, "fired once");
  const [fired] = hook.bodies as Record<string, unknown>[];
  assertEquals([fired.alertname, fired.state, fired.labels], [
    "SluiceStreamLagHigh",
    "firing",
    labels,
  ]);
  assertEquals(await has(db.targetSql, 2), false);

  await put(ops, "/connectors/items_stream/resume", 202);
  assertEquals(await state(ops), "RUNNING");
  await waitUntil("row 2 in the target", () => has(db.targetSql, 2));
  await waitUntil("the resolved notification", () => hook.bodies.length === 2);
  await evaluationsPass(ops, 10);
  const states = (hook.bodies as Record<string, unknown>[]).map((b) => b.state);
  assertEquals(states, ["firing", "resolved"], "fired once and resolved once");
  assertEquals(await ops.metric("sluice_stream_lag_seconds", labels), 0);
  assertEquals(await ops.metric("sluice_records_written_total", labels), 2);
  assertEquals(await ops.metric("sluice_queue_depth", labels), 0);
});

async function slotPid(sql: postgres.Sql, slot: string): Promise<number | null> {
  const rows = await sql<{ pid: number | null }[]>`
    select active_pid as pid from pg_replication_slots where slot_name = ${slot}`;
  return rows[0]?.pid ?? null;
}

Deno.test("stop ends a stream's replication session, resume starts it again, restart starts a new one", async () => {
  await using db = await syncFixture("ops_stop", SOURCE, TARGET);
  const slot = uniqueSlot("ops_stop");
  const specs = await specsFrom(stream(db.source.url, db.target.url, slot));
  await using ops = await startOps(specs);
  ops.runtime.start();
  await waitForActiveSlot(db.sourceSql, slot);

  await put(ops, "/connectors/items_stream/stop", 204);
  await waitUntil(
    "the slot to be released",
    async () => await slotPid(db.sourceSql, slot) === null,
  );
  assertEquals(await state(ops), "STOPPED");
  assertEquals((await ops.api("/readyz")).status, 200, "a deliberate stop is not unreadiness");
  await db.sourceSql`insert into items values (1, 'one')`;

  await put(ops, "/connectors/items_stream/resume", 202);
  await waitUntil("row 1 after resume", () => has(db.targetSql, 1));
  assertEquals(await state(ops), "RUNNING");

  const before = await waitUntil("the slot's walsender", () => slotPid(db.sourceSql, slot));
  await put(ops, "/connectors/items_stream/restart", 204, "POST");
  const after = await waitUntil("a new walsender", async () => {
    const pid = await slotPid(db.sourceSql, slot);
    return pid !== null && pid !== before ? pid : null;
  });
  assert(after !== before);
  await db.sourceSql`insert into items values (2, 'two')`;
  await waitUntil("row 2 after restart", () => has(db.targetSql, 2));
  assertEquals(await state(ops), "RUNNING");
});

Deno.test("a stream that failed shows FAILED with its trace, and restart runs it again", async () => {
  await using db = await syncFixture("ops_failed", SOURCE, TARGET);
  await db.targetSql`alter table items add constraint no_2 check (id <> 2)`;
  const slot = uniqueSlot("ops_failed");
  const specs = await specsFrom(stream(db.source.url, db.target.url, slot));
  await using ops = await startOps(specs);
  ops.runtime.start();
  await waitForActiveSlot(db.sourceSql, slot);
  await db.sourceSql`insert into items values (2, 'two')`;

  const status = await waitUntil("the FAILED state", async () => {
    const body = await (await ops.api("/connectors/items_stream/status")).json();
    return body.connector.state === "FAILED" ? body : null;
  });
  assertEquals(status.tasks[0].state, "FAILED");
  assert(status.connector.trace.includes("Tolerance exceeded"), status.connector.trace);
  assert(
    status.connector.trace.includes('violates check constraint "no_2"'),
    status.connector.trace,
  );
  const ready = await ops.api("/readyz");
  assertEquals(ready.status, 503);
  assert((await ready.json()).reasons[0].startsWith("items_stream failed: "));
  // Its lag stays 0 (nothing is read): the failure has an alert and a metric of its own.
  const labels = { pipeline: "items_stream" };
  assertEquals(await ops.metric("sluice_stream_failed", labels), 1);
  ops.alerts.evaluate();
  const firing = async () =>
    (await (await ops.api("/alerts")).json() as { alertname: string; labels: object }[])
      .filter((alert) => alert.alertname === "SluiceStreamFailed");
  assertEquals((await firing()).map((alert) => alert.labels), [labels]);
  // sluice status shows no lag for it, says why it failed, and lists the alert.
  const text = await formatStatus({ url: ops.url });
  assertMatch(text, /\nitems_stream\s+stream\s+FAILED\s+-\s+/);
  assertMatch(
    text,
    /\nFailed streams \(down until restarted\):\n {2}items_stream: .*violates check constraint "no_2"/,
  );
  assertMatch(text, /critical SluiceStreamFailed items_stream/);

  await db.targetSql`alter table items drop constraint no_2`;
  await put(ops, "/connectors/items_stream/restart", 204, "POST");
  await waitUntil("row 2 after the restart", () => has(db.targetSql, 2));
  assertEquals(await state(ops), "RUNNING");
  assertEquals((await ops.api("/readyz")).status, 200);
  assertEquals(await ops.metric("sluice_stream_failed", labels), 0);
  ops.alerts.evaluate();
  assertEquals(await firing(), []);
});
