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
  ["Records written / s", "ops", ["sum by (pipeline) (rate(sluice_records_written_total[5m]))"]],
  ["Failed records (share of read)", "percentunit", [
    "sum by (pipeline) (rate(sluice_records_failed_total[5m])) / sum by (pipeline) (rate(sluice_records_read_total[5m]))",
  ]],
  ["Dead letters by destination", "short", [
    "sum by (pipeline, destination) (sluice_dead_letters_total)",
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
  ["Event-loop lag p99", "s", ["sluice_nodejs_eventloop_lag_p99_seconds"]],
];

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
      legendFormat: expr.includes("destination") ? "{{pipeline}} {{destination}}" : "{{pipeline}}",
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
