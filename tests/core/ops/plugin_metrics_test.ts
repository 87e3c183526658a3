/**
 * The metrics hook plugins get in their context (api/metrics.ts), as
 * SluiceMetrics implements it: series labelled by pipeline, one metric per
 * name, clear errors for clashes, series removed when the run ends, gauge
 * values the alert rules can read; and the event-loop lag gauge.
 */
import { getLogger } from "@logtape/logtape";
import { assert, assertEquals, assertThrows } from "../../_assert.ts";
import { seriesValue } from "../../_ops.ts";
import { pollMetrics } from "../../../api/metrics.ts";
import { parseAlertsConfig } from "../../../core/alert_rules.ts";
import { AlertManager } from "../../../core/alerts.ts";
import type { PipelineSpec } from "../../../core/config.ts";
import { SluiceMetrics } from "../../../core/metrics.ts";
import { waitUntil } from "../../_wait.ts";

/** Just enough of a spec for SluiceMetrics: a name and a stream source. */
function streamSpec(name: string): PipelineSpec {
  return { name, source: { plugin: { mode: "stream" } } } as unknown as PipelineSpec;
}

const LAG = { name: "sluice_test_lag_bytes", help: "Lag.", labels: ["slot"] };

Deno.test("plugin gauges and counters carry the pipeline label and share one metric per name", async () => {
  const metrics = new SluiceMetrics([streamSpec("a"), streamSpec("b")], { defaultMetrics: false });
  const a = metrics.pluginMetrics("a");
  const b = metrics.pluginMetrics("b");
  a.gauge(LAG).set({ slot: "s1" }, 10);
  b.gauge(LAG).set({ slot: "s2" }, 20);
  a.counter({ name: "sluice_test_polls_total", help: "Polls." }).inc({});
  a.counter({ name: "sluice_test_polls_total", help: "Polls." }).inc({}, 2);
  const text = await metrics.render();
  assertEquals(seriesValue(text, "sluice_test_lag_bytes", { pipeline: "a", slot: "s1" }), 10);
  assertEquals(seriesValue(text, "sluice_test_lag_bytes", { pipeline: "b", slot: "s2" }), 20);
  assertEquals(seriesValue(text, "sluice_test_polls_total", { pipeline: "a" }), 3);
  assertEquals(text.match(/^# TYPE sluice_test_lag_bytes gauge$/gm)?.length, 1);

  assertThrows(() => a.gauge({ ...LAG, labels: ["table"] }), Error, "already declared as a gauge");
  assertThrows(() => a.counter(LAG), Error, "cannot declare it as a counter");
  assertThrows(() => a.gauge({ name: "sluice-bad", help: "x" }), Error, "not a valid metric name");
  assertThrows(
    () => a.gauge({ name: "sluice_test_other", help: "x", labels: ["pipeline"] }),
    Error,
    "the pipeline label is added",
  );
  assertThrows(
    () => a.gauge({ name: "sluice_records_read_total", help: "x" }),
    Error,
    "one of Sluice's own",
  );
  assertThrows(() => a.gauge(LAG).set({}, 1), Error, 'needs a value for label "slot"');
});

Deno.test("a run's gauge series go when it ends; the alert rule reads the retained WAL gauge", async () => {
  const metrics = new SluiceMetrics([streamSpec("cdc")], { defaultMetrics: false });
  const run = metrics.pluginMetrics("cdc");
  const retained = run.gauge({
    name: "sluice_replication_slot_retained_wal_bytes",
    help: "Retained WAL.",
    labels: ["slot"],
  });
  retained.set({ slot: "s" }, 2 * 1024 ** 3);
  // The default threshold is 1 GiB, and the rule fires at once.
  await using alerts = new AlertManager(metrics, parseAlertsConfig({}));
  alerts.evaluate();
  const firing = alerts.firing.map((a) => [a.rule.alertname, a.labels]);
  assertEquals(firing, [["SluiceReplicationSlotWalRetained", { pipeline: "cdc", slot: "s" }]]);
  retained.set({ slot: "s" }, 1024);
  alerts.evaluate();
  assertEquals(alerts.firing, [], "resolved under the threshold");

  run.release();
  const text = await metrics.render();
  assertEquals(/^sluice_replication_slot_retained_wal_bytes\{/m.test(text), false, text);
  assertEquals(
    metrics.figures.get("cdc")!.pluginGauges.get(
      "sluice_replication_slot_retained_wal_bytes",
    )?.size,
    0,
  );
});

Deno.test("pollMetrics logs a failing poll once per streak, counts every failure, and stops", async () => {
  const metrics = new SluiceMetrics([streamSpec("p")], { defaultMetrics: false });
  let calls = 0;
  const polling = pollMetrics({
    metrics: metrics.pluginMetrics("p"),
    logger: getLogger(["sluice", "test"]),
    name: "flaky",
    intervalMs: 1,
    poll: () => {
      calls++;
      return Promise.reject(new Error("unreachable"));
    },
  });
  await waitUntil("three failed polls", () => calls >= 3);
  await polling.stop();
  const stoppedAt = calls;
  const text = await metrics.render();
  assertEquals(
    seriesValue(text, "sluice_metric_poll_failures_total", { pipeline: "p", poll: "flaky" }),
    stoppedAt,
  );
  assertEquals(calls, stoppedAt, "no poll after stop");
});

Deno.test("sluice_event_loop_lag_seconds shows a stall of the event loop", async () => {
  const metrics = new SluiceMetrics([]);
  // A deliberate 300 ms stall of the event loop: what the gauge must see.
  const until = performance.now() + 300;
  while (performance.now() < until) { /* busy */ }
  const lag = seriesValue(await metrics.render(), "sluice_event_loop_lag_seconds", {});
  assert(lag >= 0.15 && lag < 5, `event-loop lag ${lag} s after a 300 ms stall`);
});

Deno.test("a poll that hangs does not hold stop() past 2 s, and what it sets afterwards is ignored", async () => {
  const metrics = new SluiceMetrics([streamSpec("p")], { defaultMetrics: false });
  const { promise: answer, resolve: reply } = Promise.withResolvers<void>();
  let started = false;
  let lateSet = false;
  const polling = pollMetrics({
    metrics: metrics.pluginMetrics("p"),
    logger: getLogger(["sluice", "test"]),
    name: "hanging",
    intervalMs: 1000,
    async poll(metrics) {
      started = true;
      await answer; // an unreachable server's answer, released by the test
      metrics.gauge(LAG).set({ slot: "late" }, 1);
      lateSet = true;
    },
  });
  await waitUntil("the poll to start", () => started);
  const before = performance.now();
  await polling.stop();
  const waited = performance.now() - before;
  assert(waited >= 1900 && waited < 10_000, `stop waited ${waited} ms`);
  reply();
  await waitUntil("the late poll to set its gauge", () => lateSet);
  const text = await metrics.render();
  assertEquals(/sluice_test_lag_bytes\{/.test(text), false, text);
});

Deno.test("the dead-letter alert follows the backlog: it resolves once dead letters are replayed or purged", async () => {
  const metrics = new SluiceMetrics([streamSpec("events")], {
    defaultMetrics: false,
    deadLetterRefreshMs: 0,
  });
  let waiting = 0;
  metrics.watchDeadLetters("events", "table dead_letters", () => Promise.resolve(waiting));
  await using alerts = new AlertManager(
    metrics,
    parseAlertsConfig({ rules: { dead_letters_high: { threshold: 2 } } }),
  );
  waiting = 5; // written by another process, or before this one started
  await metrics.refreshDeadLetterSizes();
  alerts.evaluate();
  assertEquals(alerts.firing.map((a) => [a.rule.alertname, a.value]), [
    ["SluiceDeadLettersHigh", 5],
  ]);
  waiting = 0; // `sluice dlq replay` landed them
  // The evaluation above started a read of its own (of 5); the second call reads 0.
  await metrics.refreshDeadLetterSizes();
  await metrics.refreshDeadLetterSizes();
  alerts.evaluate();
  assertEquals(alerts.firing, [], "resolved once the destination is empty");
  assertEquals(
    seriesValue(await metrics.render(), "sluice_dead_letters", {
      pipeline: "events",
      destination: "table dead_letters",
    }),
    0,
  );
});
