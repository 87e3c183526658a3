/**
 * The Prometheus rules shipped with the example: generated from the same
 * definitions the process evaluates, valid for `promtool`, and reading only
 * metrics Sluice exports.
 */
import { assert, assertEquals, assertMatch } from "./_assert.ts";
import { exampleOps, exampleRules } from "../dev/ops_files.ts";
import { alertRules, parseAlertsConfig, prometheusRules } from "../core/alert_rules.ts";
import { SluiceMetrics } from "../core/metrics.ts";

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
    assertMatch(rules.output, /SUCCESS: 6 rules found/);
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

Deno.test("every metric the rules read is one Sluice exports", async () => {
  const exported = new Set(
    [...(await new SluiceMetrics([], { defaultMetrics: false }).render()).matchAll(
      /^# TYPE (\w+) (\w+)$/gm,
    )].map((m) => m[1]),
  );
  const read = [...(await exampleRules()).matchAll(/\bsluice_\w+/g)].map((m) => m[0]);
  assert(read.length >= 6);
  for (const name of read) assert(exported.has(name), `${name} is not exported`);
});
