/**
 * Writes the example's Prometheus rules file from the same rule definitions
 * and overrides the process evaluates itself (core/alert_rules.ts and
 * examples/warehouse_to_citizen/ops/alerts.json), so the two cannot drift.
 *
 * ```
 * deno task ops-files
 * ```
 * It also writes a Grafana dashboard of the same metrics. `tests/core/ops/rules_test.ts`
 * fails when either file is stale.
 *
 * @module
 */
import { alertRules, parseAlertsConfig, prometheusRules } from "../core/alert_rules.ts";

const OPS = new URL("../examples/warehouse_to_citizen/ops/", import.meta.url);

/** Where the example's alert config and rules file live. */
export const exampleOps = {
  alerts: new URL("alerts.json", OPS).pathname,
  rules: new URL("sluice_rules.yml", OPS).pathname,
  prometheus: new URL("prometheus.yml", OPS).pathname,
  dashboard: new URL("grafana_dashboard.json", OPS).pathname,
};

/** Panels of the example's Grafana dashboard: title, unit, PromQL queries. */
const PANELS: [string, string, string[]][] = [
  ["Stream lag", "s", ["max by (pipeline) (sluice_stream_lag_seconds)"]],
  ["Records read and written / s", "ops", [
    "sum by (pipeline) (rate(sluice_records_read_total[5m]))",
    "sum by (pipeline) (rate(sluice_records_written_total[5m]))",
  ]],
  ["Replication slot WAL not confirmed / retained", "bytes", [
    "max by (pipeline, slot) (sluice_replication_slot_lag_bytes)",
    "max by (pipeline, slot) (sluice_replication_slot_retained_wal_bytes)",
  ]],
  ["Kafka consumer lag (messages)", "short", [
    "sum by (pipeline, topic) (sluice_kafka_consumer_lag_messages)",
  ]],
  ["Kafka consumer lag (seconds, worst partition)", "s", [
    "max by (pipeline, topic) (sluice_kafka_consumer_lag_seconds)",
  ]],
  ["Failed records (share of read)", "percentunit", [
    "sum by (pipeline) (rate(sluice_records_failed_total[5m])) / sum by (pipeline) (rate(sluice_records_read_total[5m]))",
  ]],
  ["Dead letters waiting, by destination", "short", [
    "max by (pipeline, destination) (sluice_dead_letters)",
  ]],
  ["Batch runs by outcome (1 day)", "short", [
    "sum by (pipeline, outcome) (increase(sluice_batch_runs_total[1d]))",
  ]],
  ["Batch run duration p95", "s", [
    "histogram_quantile(0.95, sum by (pipeline, le) (rate(sluice_batch_run_duration_seconds_bucket[1h])))",
  ]],
  ["Sink write latency p99", "s", [
    "histogram_quantile(0.99, sum by (pipeline, le) (rate(sluice_sink_write_duration_seconds_bucket[5m])))",
  ]],
  ["Queue depth", "short", ["max by (pipeline) (sluice_queue_depth)"]],
  ["Process memory", "bytes", ["sluice_process_resident_memory_bytes"]],
  ["Event-loop lag (worst in 10 s)", "s", ["sluice_event_loop_lag_seconds"]],
];

/** A series' legend: the labels the query keeps, and what it is when a panel has several. */
function legend(expr: string, several: boolean): string {
  const kept = /by \(([^)]*)\)/.exec(expr)?.[1].split(",").map((l) => l.trim()) ?? ["pipeline"];
  const what = several &&
    /sluice_(records_read|records_written|replication_slot_lag|replication_slot_retained)/
      .exec(expr)?.[1].replace("replication_slot_lag", "not confirmed")
      .replace("replication_slot_retained", "retained").replace("records_", "");
  return [...kept.filter((l) => l !== "le").map((l) => `{{${l}}}`), ...(what ? [what] : [])]
    .join(" ");
}

/** The example's Grafana dashboard (a Prometheus data source chosen at import). */
export function exampleDashboard(): string {
  const panels = PANELS.map(([title, unit, queries], index) => ({
    id: index + 1,
    type: "timeseries",
    title,
    datasource: { type: "prometheus", uid: "${DS_PROMETHEUS}" },
    gridPos: { h: 8, w: 12, x: (index % 2) * 12, y: Math.floor(index / 2) * 8 },
    fieldConfig: { defaults: { unit }, overrides: [] },
    targets: queries.map((expr, ref) => ({
      refId: String.fromCharCode(65 + ref),
      expr,
      legendFormat: legend(expr, queries.length > 1),
    })),
  }));
  const dashboard = {
    __inputs: [{
      name: "DS_PROMETHEUS",
      label: "Prometheus",
      type: "datasource",
      pluginId: "prometheus",
    }],
    title: "Sluice",
    uid: "sluice",
    tags: ["sluice"],
    timezone: "utc",
    refresh: "30s",
    time: { from: "now-6h", to: "now" },
    schemaVersion: 39,
    panels,
  };
  return JSON.stringify(dashboard, null, 2) + "\n";
}

/** The rules file the example's alert config gives. */
export async function exampleRules(): Promise<string> {
  const json = JSON.parse(await Deno.readTextFile(exampleOps.alerts));
  return prometheusRules(alertRules(parseAlertsConfig(json, exampleOps.alerts)));
}

if (import.meta.main) {
  await Deno.writeTextFile(exampleOps.rules, await exampleRules());
  await Deno.writeTextFile(exampleOps.dashboard, exampleDashboard());
  console.log(`Wrote ${exampleOps.rules} and ${exampleOps.dashboard}`);
}
