/**
 * The lag the sources see and report through their context's metrics, over
 * real HTTP: a postgres_cdc slot's unconfirmed and retained WAL grow while
 * the stream is paused and writes go on, and the unconfirmed part falls back
 * after resume; a Kafka consumer's lag per partition grows while paused with
 * messages produced, and returns to 0. Real PostgreSQL, real broker.
 */
import type postgres from "postgres";
import { assert, assertEquals } from "../../_assert.ts";
import { specsFrom, syncFixture } from "../../_batch.ts";
import { uniqueSlot, waitForActiveSlot } from "../../_cdc.ts";
import { collector, createTopic, kafkaSpecs, produce, uniqueName } from "../../_kafka.ts";
import { type OpsHarness, seriesValue, startOps } from "../../_ops.ts";
import { waitUntil } from "../../_wait.ts";

const SOURCE = `create table public.items (id int primary key, name text);`;
const TARGET = `create table public.items (id int primary key, name text,
  deleted_at timestamptz, _source_lsn pg_lsn);`;

async function put(ops: OpsHarness, path: string) {
  const response = await ops.api(path, { method: "PUT" });
  assertEquals(response.status, 202, `PUT ${path}`);
  await response.body?.cancel();
}

/** The value of a series that must be present (undefined while it is not). */
async function present(ops: OpsHarness, name: string, labels: Record<string, string>) {
  const text = await (await ops.api("/metrics")).text();
  const line = text.split("\n").find((l) =>
    l.startsWith(`${name}{`) &&
    Object.entries(labels).every(([k, v]) => l.includes(`${k}="${v}"`))
  );
  return line === undefined ? undefined : seriesValue(line, name, labels);
}

async function count(sql: postgres.Sql): Promise<number> {
  const [{ n }] = await sql<{ n: number }[]>`select count(*)::int as n from items`;
  return n;
}

Deno.test("a paused postgres_cdc stream's slot lag and retained WAL grow with source writes, and the lag falls after resume", async () => {
  await using db = await syncFixture("ops_slot_lag", SOURCE, TARGET);
  const slot = uniqueSlot("ops_slot_lag");
  const specs = await specsFrom({
    name: "slot_stream",
    config: {
      "connector.class": "postgres_cdc",
      "connection.url": db.source.url,
      "topic.prefix": "src",
      "slot.name": slot,
      "publication.name": "ops_lag_publication",
      "snapshot.mode": "never",
      "poll.interval.ms": "20",
      "status.update.interval.ms": "200",
      "lag.poll.interval.ms": "100",
      "sink.class": "postgres",
      "sink.connection.url": db.target.url,
      "sink.table": "public.items",
    },
  });
  await using ops = await startOps(specs);
  const labels = { pipeline: "slot_stream", slot };
  ops.runtime.start();
  await waitForActiveSlot(db.sourceSql, slot);
  await waitUntil(
    "the slot lag series",
    async () => await present(ops, "sluice_replication_slot_lag_bytes", labels) !== undefined,
  );

  await db.sourceSql`insert into items values (0, 'first')`;
  await waitUntil("row 0 in the target", async () => await count(db.targetSql) === 1);
  await put(ops, "/connectors/slot_stream/pause");
  // About 2 MB of WAL in 20 transactions the paused stream does not confirm.
  for (let i = 0; i < 20; i++) {
    const [from, to] = [1 + i * 200, 200 + i * 200];
    await db.sourceSql`insert into items
      select g, repeat('x', 500) from generate_series(${from}::int, ${to}::int) g`;
  }
  const peak = await waitUntil("a slot lag of 1 MB", async () => {
    const lag = await ops.metric("sluice_replication_slot_lag_bytes", labels);
    return lag > 1_000_000 ? lag : 0;
  });
  const retained = await ops.metric("sluice_replication_slot_retained_wal_bytes", labels);
  assert(retained >= 1_000_000, `retained WAL ${retained} bytes while paused`);
  assertEquals(await count(db.targetSql), 1, "the paused stream wrote nothing");

  await put(ops, "/connectors/slot_stream/resume");
  await waitUntil("every row in the target", async () => await count(db.targetSql) === 4001);
  // The target lives in the same cluster: its writes add WAL after the
  // source's last commit until an idle keepalive lets the stream confirm it.
  const after = await waitUntil("the slot lag to fall back", async () => {
    const lag = await ops.metric("sluice_replication_slot_lag_bytes", labels);
    return lag < 100_000 ? String(lag) : "";
  });
  assert(Number(after) < peak / 10, `lag ${after} after resume, ${peak} at the peak`);
  assertEquals(await ops.metric("sluice_metric_poll_failures_total"), 0);

  await ops.runtime.stop();
  assertEquals(
    await present(ops, "sluice_replication_slot_lag_bytes", labels),
    undefined,
    "a stopped stream shows no stale slot lag",
  );
});

/**
 * A kafka source on a new two-partition topic into a collector, polling its
 * lag every 100 ms, and a maker of JSON messages numbered `from` to `to`.
 */
async function kafkaLagSetup(name: string, extra: Record<string, string> = {}) {
  const topic = uniqueName(`ops-${name}`);
  await createTopic(topic, 2);
  const { name: collectorName, collector: got } = collector();
  const pipeline = uniqueName(name);
  const specs = await kafkaSpecs({
    name: pipeline,
    config: {
      "connector.class": "kafka",
      topics: topic,
      "lag.poll.interval.ms": "100",
      "sink.class": "collect",
      "sink.collector": collectorName,
      ...extra,
    },
  });
  const encode = (value: unknown) => new TextEncoder().encode(JSON.stringify(value));
  const messages = (from: number, to: number) =>
    Array.from({ length: to - from }, (_, i) => ({
      topic,
      key: encode({ id: from + i }),
      value: encode({ id: from + i }),
    }));
  return { topic, pipeline, specs, got, messages };
}

Deno.test("a paused kafka source's consumer lag per partition grows with produced messages and returns to 0", async () => {
  const { topic, pipeline, specs, got, messages } = await kafkaLagSetup("lag-consumer", {
    "max.poll.records": "50",
  });
  await using ops = await startOps(specs);
  const partitions = ["0", "1"];
  const lagOf = (partition: string, unit: "messages" | "seconds") =>
    ops.metric(`sluice_kafka_consumer_lag_${unit}`, { pipeline, topic, partition });

  ops.runtime.start();
  await produce(messages(0, 20));
  await got.waitFor(20);
  await waitUntil("lag 0 on both partitions", async () => {
    for (const partition of partitions) {
      const seen = await present(ops, "sluice_kafka_consumer_lag_messages", {
        pipeline,
        topic,
        partition,
      });
      if (seen !== 0) throw new Error(`partition ${partition}: ${seen}`);
    }
    return true;
  });

  await put(ops, `/connectors/${pipeline}/pause`);
  const produced = messages(20, 220);
  await produce(produced);
  let total = 0;
  await waitUntil("the lag of both partitions to count the paused messages", async () => {
    const lags = await Promise.all(partitions.map((p) => lagOf(p, "messages")));
    total = lags[0] + lags[1];
    if (lags.some((lag) => lag === 0) || total < 200) throw new Error(`lags ${lags}`);
    return true;
  });
  // At most one batch was read before the pause held the pipeline; none was written.
  assertEquals(total, 200);
  assert(got.records.length <= 20 + 50, `${got.records.length} records written while paused`);
  await waitUntil("the seconds lag to grow past 1 s", async () => {
    const seconds = await Promise.all(partitions.map((p) => lagOf(p, "seconds")));
    if (seconds.some((s) => s < 1 || s > 120)) throw new Error(`seconds ${seconds}`);
    return true;
  });

  await put(ops, `/connectors/${pipeline}/resume`);
  await got.waitFor(220);
  await waitUntil("lag 0 again, in messages and seconds", async () => {
    for (const partition of partitions) {
      const lag = [await lagOf(partition, "messages"), await lagOf(partition, "seconds")];
      if (lag[0] !== 0 || lag[1] !== 0) throw new Error(`partition ${partition}: ${lag}`);
    }
    return true;
  });
  assertEquals(await ops.metric("sluice_metric_poll_failures_total"), 0);
  const text = await (await ops.api("/metrics")).text();
  for (
    const line of [
      "# TYPE sluice_kafka_consumer_lag_messages gauge",
      "# TYPE sluice_kafka_consumer_lag_seconds gauge",
      `sluice_kafka_consumer_lag_messages{pipeline="${pipeline}",topic="${topic}",partition="1"} 0`,
    ]
  ) {
    assert(text.includes(line), `/metrics lacks ${line}`);
  }
});

Deno.test("a postgres_cdc stream that failed for good, or that the operator stopped, still shows its slot's lag and retained WAL growing", async () => {
  // The target refuses names longer than 3 characters: the stream fails on one.
  await using db = await syncFixture(
    "ops_slot_failed",
    SOURCE,
    TARGET.replace("name text", "name varchar(3)"),
  );
  const slot = uniqueSlot("ops_slot_failed");
  const specs = await specsFrom({
    name: "failing_stream",
    config: {
      "connector.class": "postgres_cdc",
      "connection.url": db.source.url,
      "topic.prefix": "src",
      "slot.name": slot,
      "publication.name": "ops_failed_publication",
      "snapshot.mode": "never",
      "poll.interval.ms": "20",
      "status.update.interval.ms": "200",
      "lag.poll.interval.ms": "100",
      "sink.class": "postgres",
      "sink.connection.url": db.target.url,
      "sink.table": "public.items",
    },
  });
  await using ops = await startOps(specs);
  const labels = { pipeline: "failing_stream", slot };
  const state = async () =>
    (await (await ops.api("/connectors/failing_stream/status")).json()).connector.state;
  /** About 2 MB of WAL that nothing confirms, then the series must show it. */
  const unconsumed = async (from: number) => {
    for (let i = 0; i < 20; i++) {
      const [first, last] = [from + i * 200, from + i * 200 + 199];
      await db.sourceSql`insert into items
        select g, 'ok' from generate_series(${first}::int, ${last}::int) g`;
      await db.sourceSql`update items set name = 'ok' where id >= ${from}`;
    }
    return await waitUntil("a slot lag and retained WAL of 1 MB", async () => {
      const lag = await present(ops, "sluice_replication_slot_lag_bytes", labels) ?? 0;
      const retained = await present(ops, "sluice_replication_slot_retained_wal_bytes", labels) ??
        0;
      return lag > 1_000_000 && retained > 1_000_000 ? lag : 0;
    });
  };

  ops.runtime.start();
  await waitForActiveSlot(db.sourceSql, slot);
  await db.sourceSql`insert into items values (0, 'too long for the target')`;
  await waitUntil("the stream to fail for good", async () => await state() === "FAILED");
  const failed = await unconsumed(1);
  assertEquals(await count(db.targetSql), 0, "the failed stream wrote nothing");

  // Stopped by the operator, after a restart that fails again on the same row.
  await db.targetSql`alter table items alter column name type text`;
  await (await ops.api("/connectors/failing_stream/restart", { method: "POST" })).body?.cancel();
  await waitUntil("the restarted stream to catch up", async () => await count(db.targetSql) > 0);
  const stopping = await ops.api("/connectors/failing_stream/stop", { method: "PUT" });
  assertEquals(stopping.status, 204);
  await waitUntil("the stream to stop", async () => await state() === "STOPPED");
  const stopped = await unconsumed(10_000);
  assert(stopped > 0 && failed > 0);
  assertEquals(await ops.metric("sluice_metric_poll_failures_total"), 0);

  await put(ops, "/connectors/failing_stream/resume");
  await waitUntil("every row in the target", async () => await count(db.targetSql) === 8001);
  await ops.runtime.stop();
  assertEquals(
    await present(ops, "sluice_replication_slot_retained_wal_bytes", labels),
    undefined,
    "a process that ends shows no stale slot series",
  );
});

Deno.test("a kafka source stopped by the operator still shows its group's lag per partition growing", async () => {
  const { topic, pipeline, specs, got, messages } = await kafkaLagSetup("lag-stopped");
  await using ops = await startOps(specs);
  const lags = () =>
    Promise.all(
      ["0", "1"].map((partition) =>
        present(ops, "sluice_kafka_consumer_lag_messages", { pipeline, topic, partition })
      ),
    );

  ops.runtime.start();
  await produce(messages(0, 20));
  await got.waitFor(20);
  await waitUntil("lag 0 on both partitions", async () => {
    const seen = await lags();
    return seen.every((lag) => lag === 0);
  });
  const stopping = await ops.api(`/connectors/${pipeline}/stop`, { method: "PUT" });
  assertEquals(stopping.status, 204);
  await waitUntil(
    "the stream to stop",
    async () =>
      (await (await ops.api(`/connectors/${pipeline}/status`)).json()).connector.state ===
        "STOPPED",
  );
  await produce(messages(20, 220));
  const total = await waitUntil("the stopped stream's lag to count the new messages", async () => {
    const seen = await lags();
    const sum = (seen[0] ?? 0) + (seen[1] ?? 0);
    return seen.every((lag) => (lag ?? 0) > 0) && sum === 200 ? sum : undefined;
  });
  assertEquals(total, 200);
  assertEquals(got.records.length, 20, "the stopped stream wrote nothing");
  assertEquals(await ops.metric("sluice_metric_poll_failures_total"), 0);

  await put(ops, `/connectors/${pipeline}/resume`);
  await got.waitFor(220);
  await waitUntil("lag 0 again", async () => (await lags()).every((lag) => lag === 0));
});
