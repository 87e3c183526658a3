/**
 * The Prometheus rules shipped with the example: generated from the same
 * definitions the process evaluates, valid for `promtool`, and reading only
 * metrics Sluice exports.
 */
import { assert, assertEquals, assertMatch } from "../../_assert.ts";
import { exampleDashboard, exampleOps, exampleRules } from "../../../dev/ops_files.ts";
import { alertRules, parseAlertsConfig, prometheusRules } from "../../../core/alert_rules.ts";
import { SluiceMetrics } from "../../../core/metrics.ts";
import { POLL_FAILURES } from "../../../api/metrics.ts";
import { SLOT_LAG, SLOT_RETAINED_WAL } from "../../../connectors/postgres_cdc/_slot_metrics.ts";
import { LAG_MESSAGES, LAG_SECONDS } from "../../../connectors/_kafka_lag.ts";

/** Runs promtool, or says why it cannot. */
async function promtool(...args: string[]): Promise<{ code: number; output: string } | string> {
  try {
    const result = await new Deno.Command("promtool", { args, stdout: "piped", stderr: "piped" })
      .output();
    const output = new TextDecoder().decode(result.stdout) +
      new TextDecoder().decode(result.stderr);
    return { code: result.code, output };
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      return "promtool is not installed (Debian: apt-get install prometheus; .ci/run installs it)";
    }
    throw error;
  }
}

const hasPromtool = typeof await promtool("--version") !== "string";
if (!hasPromtool) console.warn(`SKIPPED promtool checks: ${await promtool("--version")}`);

Deno.test("the example's rules file is what its alert config generates (deno task ops-files)", async () => {
  assertEquals(await Deno.readTextFile(exampleOps.rules), await exampleRules());
});

Deno.test({
  name: "promtool accepts the rules file and the example's scrape config",
  ignore: !hasPromtool,
  async fn() {
    const rules = await promtool("check", "rules", exampleOps.rules);
    assert(typeof rules !== "string");
    assertEquals(rules.code, 0, rules.output);
    assertMatch(rules.output, /SUCCESS: 8 rules found/);
    const config = await promtool("check", "config", exampleOps.prometheus);
    assert(typeof config !== "string");
    assertEquals(config.code, 0, config.output);
  },
});

Deno.test({
  name: "promtool fires the lag rule on the series Sluice exports, with the configured for",
  ignore: !hasPromtool,
  async fn() {
    const folder = await Deno.makeTempDir({ prefix: "sluice_rules_" });
    const config = parseAlertsConfig({
      rules: { stream_lag_warning: { threshold: 60, for: "2m" } },
    });
    await Deno.writeTextFile(`${folder}/rules.yml`, prometheusRules(alertRules(config)));
    // Lag grows 30 s per minute: above 60 s from minute 3, firing once held for 2 minutes.
    await Deno.writeTextFile(
      `${folder}/test.yml`,
      `rule_files: [rules.yml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'sluice_stream_lag_seconds{pipeline="events"}'
        values: '0+30x10'
    alert_rule_test:
      - eval_time: 4m
        alertname: SluiceStreamLagHigh
        exp_alerts: []
      - eval_time: 5m
        alertname: SluiceStreamLagHigh
        exp_alerts:
          - exp_labels: { severity: warning, rule: stream_lag_warning, pipeline: events }
            exp_annotations:
              summary: "Stream lag (now minus the commit time of the oldest event not yet written)"
              description: "events: 150 > 60"
`,
    );
    const result = await promtool("test", "rules", `${folder}/test.yml`);
    await Deno.remove(folder, { recursive: true });
    assert(typeof result !== "string");
    assertEquals(result.code, 0, result.output);
  },
});

/** The PromQL expressions of the example's Grafana dashboard. */
function dashboardQueries(): string[] {
  const dashboard = JSON.parse(exampleDashboard());
  return dashboard.panels.flatMap((panel: { targets: { expr: string }[] }) =>
    panel.targets.map((target) => target.expr)
  );
}

Deno.test("the example's Grafana dashboard is what deno task ops-files generates", async () => {
  assertEquals(await Deno.readTextFile(exampleOps.dashboard), exampleDashboard());
  assert(dashboardQueries().length >= 10);
});

Deno.test({
  name: "promtool parses every query of the Grafana dashboard",
  ignore: !hasPromtool,
  async fn() {
    const folder = await Deno.makeTempDir({ prefix: "sluice_dashboard_" });
    // promtool has no offline query check; recording rules make it parse each expression.
    const rules = dashboardQueries().map((expr, i) =>
      `      - record: sluice_dashboard_query_${i}\n        expr: ${JSON.stringify(expr)}`
    );
    await Deno.writeTextFile(
      `${folder}/queries.yml`,
      `groups:\n  - name: dashboard\n    rules:\n${rules.join("\n")}\n`,
    );
    const result = await promtool("check", "rules", `${folder}/queries.yml`);
    await Deno.remove(folder, { recursive: true });
    assert(typeof result !== "string");
    assertEquals(result.code, 0, result.output);
  },
});

Deno.test("every metric the rules and the dashboard read is one Sluice exports", async () => {
  const exported = new Set<string>();
  const metrics = new SluiceMetrics([]);
  // The built-in plugins' own metrics, declared as they declare them at start.
  const plugins = metrics.pluginMetrics("p");
  for (const gauge of [SLOT_LAG, SLOT_RETAINED_WAL, LAG_MESSAGES, LAG_SECONDS]) {
    plugins.gauge(gauge);
  }
  plugins.counter(POLL_FAILURES);
  for (const m of (await metrics.render()).matchAll(/^# TYPE (\w+) (\w+)$/gm)) {
    exported.add(m[1]);
    // A histogram is read through its _bucket, _sum and _count series.
    if (m[2] === "histogram") {
      for (const s of ["_bucket", "_sum", "_count"]) exported.add(m[1] + s);
    }
  }
  const text = (await exampleRules()) + dashboardQueries().join("\n");
  const read = [...text.matchAll(/\bsluice_\w+/g)].map((m) => m[0]);
  assert(read.length >= 16);
  for (const name of read) assert(exported.has(name), `${name} is not exported`);
});
