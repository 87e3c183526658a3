/**
 * Writes the example's Prometheus rules file from the same rule definitions
 * and overrides the process evaluates itself (core/alert_rules.ts and
 * examples/warehouse_to_citizen/ops/alerts.json), so the two cannot drift.
 *
 * ```
 * deno task ops-files
 * ```
 * `tests/ops_rules_test.ts` fails when the file is stale.
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
};

/** The rules file the example's alert config gives. */
export async function exampleRules(): Promise<string> {
  const json = JSON.parse(await Deno.readTextFile(exampleOps.alerts));
  return prometheusRules(alertRules(parseAlertsConfig(json, exampleOps.alerts)));
}

if (import.meta.main) {
  await Deno.writeTextFile(exampleOps.rules, await exampleRules());
  console.log(`Wrote ${exampleOps.rules}`);
}
