/**
 * The plan's alert rules, defined once: the in-process evaluator
 * (core/alerts.ts) measures them from {@linkcode SluiceMetrics}, and
 * {@linkcode prometheusRules} renders the same rules, with the same
 * thresholds and `for` durations, as a Prometheus rules file.
 *
 * @module
 */
import { z } from "zod";
import { ConfigError } from "../api/errors.ts";
import { describeIssue } from "./config.ts";
import type { PipelineFigures } from "./metrics.ts";

/** How serious an alert is. */
export type Severity = "warning" | "critical";

/** One measured value of a rule, for one pipeline (and destination). */
export interface Measurement {
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

/** What a rule's measure function reads. */
export interface MeasureContext {
  readonly pipeline: string;
  readonly figures: PipelineFigures;
  readonly lagSeconds: number;
  /** A stream that is FAILED: down until restarted. */
  readonly streamFailed: boolean;
  readonly now: number;
  readonly windowMs: number;
  /** Records read and failed `windowMs` ago (or at the oldest sample kept). */
  readonly past: { readonly read: number; readonly failed: number };
}

/** A rule of the plan. */
export interface AlertRule {
  readonly id: RuleId;
  /** The Prometheus `alertname`. */
  readonly alertname: string;
  readonly summary: string;
  readonly severity: Severity;
  /** Fires when the value is above (`>`) or below (`<`) the threshold. */
  readonly comparison: ">" | "<";
  readonly threshold: number;
  /** How long the condition must hold before the alert fires (ms). */
  readonly forMs: number;
  /** The window of rates (ms), for rules that have one. */
  readonly windowMs: number;
  /** Reads the value(s) for one pipeline; none when the rule does not apply. */
  measure(context: MeasureContext): Measurement[];
  /** The PromQL expression without the comparison. */
  promql(windowMs: number): string;
  /** How a value reads in a message. */
  format(value: number): string;
}

/** The rules' ids, as used in the `alerts.rules` config. */
export const ruleIds = [
  "batch_job_failed",
  "stream_failed",
  "stream_lag_warning",
  "stream_lag_critical",
  "error_rate_high",
  "dead_letters_high",
  "success_rate_low",
  "replication_slot_wal_retained",
] as const;

/** A rule's id. */
export type RuleId = typeof ruleIds[number];

const seconds = (value: number) => `${value.toFixed(1)} s`;
const percent = (value: number) => `${(value * 100).toFixed(2)}%`;
const count = (value: number) => String(Math.round(value));
const mebibytes = (value: number) => `${(value / 1_048_576).toFixed(1)} MiB`;
const promWindow = (ms: number) => `${Math.max(1, Math.round(ms / 1000))}s`;

type RuleDefaults = Omit<AlertRule, "id">;

function lagRule(severity: Severity, threshold: number): RuleDefaults {
  return {
    alertname: severity === "warning" ? "SluiceStreamLagHigh" : "SluiceStreamLagCritical",
    summary: "Stream lag (now minus the commit time of the oldest event not yet written)",
    severity,
    comparison: ">",
    threshold,
    forMs: 0,
    windowMs: 0,
    measure: ({ pipeline, figures, lagSeconds }) =>
      figures.mode === "stream" ? [{ labels: { pipeline }, value: lagSeconds }] : [],
    promql: () => "max by (pipeline) (sluice_stream_lag_seconds)",
    format: seconds,
  };
}

/** The plan's thresholds. */
const DEFAULTS: Record<RuleId, RuleDefaults> = {
  batch_job_failed: {
    alertname: "SluiceBatchJobFailed",
    summary: "The last run of a batch job failed after its retries",
    severity: "critical",
    comparison: ">",
    threshold: 0,
    forMs: 0,
    windowMs: 0,
    measure: ({ pipeline, figures }) =>
      figures.mode === "batch"
        ? [{ labels: { pipeline }, value: figures.lastRunFailed ? 1 : 0 }]
        : [],
    promql: () => "max by (pipeline) (sluice_batch_last_run_failed)",
    format: (value) => value > 0 ? "failed" : "ok",
  },
  stream_failed: {
    alertname: "SluiceStreamFailed",
    summary:
      "A stream stopped on an error it does not retry, or ran out of retries, and stays down until restarted (its lag no longer grows: nothing is read)",
    severity: "critical",
    comparison: ">",
    threshold: 0,
    forMs: 0,
    windowMs: 0,
    measure: ({ pipeline, figures, streamFailed }) =>
      figures.mode === "stream" ? [{ labels: { pipeline }, value: streamFailed ? 1 : 0 }] : [],
    promql: () => "max by (pipeline) (sluice_stream_failed)",
    format: (value) => value > 0 ? "failed" : "running",
  },
  stream_lag_warning: lagRule("warning", 60),
  stream_lag_critical: lagRule("critical", 300),
  error_rate_high: {
    alertname: "SluiceErrorRateHigh",
    summary:
      "Share of records that failed over the window (dead-lettered, or dropped by errors.tolerance all without a dead-letter destination)",
    severity: "warning",
    comparison: ">",
    threshold: 0.01,
    forMs: 0,
    windowMs: 300_000,
    measure: ({ pipeline, figures, past }) => {
      const read = figures.recordsRead - past.read;
      const failed = figures.recordsFailed - past.failed;
      return [{ labels: { pipeline }, value: read > 0 ? failed / read : 0 }];
    },
    promql: (windowMs) =>
      `sum by (pipeline) (increase(sluice_records_failed_total[${promWindow(windowMs)}])) / ` +
      `sum by (pipeline) (increase(sluice_records_read_total[${promWindow(windowMs)}]))`,
    format: percent,
  },
  dead_letters_high: {
    alertname: "SluiceDeadLettersHigh",
    summary: "Dead letters waiting in one destination (replayed and purged ones leave it)",
    severity: "critical",
    comparison: ">",
    threshold: 1000,
    forMs: 0,
    windowMs: 0,
    measure: ({ pipeline, figures }) =>
      [...figures.deadLetters].map(([destination, value]) => ({
        labels: { pipeline, destination },
        value,
      })),
    promql: () => "max by (pipeline, destination) (sluice_dead_letters)",
    format: count,
  },
  success_rate_low: {
    alertname: "SluiceSyncSuccessRateLow",
    summary: "Share of batch job runs that succeeded over the window",
    severity: "warning",
    comparison: "<",
    threshold: 0.99,
    forMs: 0,
    windowMs: 86_400_000,
    measure: ({ pipeline, figures, now, windowMs }) => {
      const recent = figures.runs.filter((run) => run.at >= now - windowMs);
      if (recent.length === 0) return [];
      const ok = recent.filter((run) => run.ok).length;
      return [{ labels: { pipeline }, value: ok / recent.length }];
    },
    promql: (windowMs) =>
      `sum by (pipeline) (increase(sluice_batch_runs_total{outcome="succeeded"}[${
        promWindow(windowMs)
      }])) / sum by (pipeline) (increase(sluice_batch_runs_total[${promWindow(windowMs)}]))`,
    format: percent,
  },
  replication_slot_wal_retained: {
    alertname: "SluiceReplicationSlotWalRetained",
    summary:
      "WAL bytes the source database keeps for a postgres_cdc replication slot (they fill its disk while the stream does not consume)",
    severity: "warning",
    comparison: ">",
    threshold: 1_073_741_824,
    forMs: 0,
    windowMs: 0,
    // Set by postgres_cdc through its context's metrics (connectors/postgres_cdc/_slot_metrics.ts).
    measure: ({ figures }) => [
      ...figures.pluginGauges.get("sluice_replication_slot_retained_wal_bytes")?.values() ?? [],
    ],
    promql: () => "max by (pipeline, slot) (sluice_replication_slot_retained_wal_bytes)",
    format: mebibytes,
  },
};

const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/;
const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/** A duration: milliseconds, or a string such as "500ms", "30s", "5m", "1h", "1d". */
const duration = z.union([
  z.number().int().min(0),
  z.string().regex(DURATION, 'expected a duration such as "30s", "5m" or "1h"'),
]).transform((value) => {
  if (typeof value === "number") return value;
  const [, amount, unit] = DURATION.exec(value)!;
  return Math.round(Number(amount) * UNIT_MS[unit as keyof typeof UNIT_MS]);
});

const ruleOverride = z.strictObject({
  threshold: z.number().optional().describe("Fire above (below, for success_rate_low) this."),
  for: duration.optional().describe("How long the condition must hold before the alert fires."),
  window: duration.optional().describe("Window of rates (error_rate_high, success_rate_low)."),
  severity: z.enum(["warning", "critical"]).optional().describe("Overrides the severity."),
  enabled: z.boolean().default(true).describe("false turns the rule off."),
});

const webhook = z.strictObject({
  url: z.url().describe("Where notifications are POSTed."),
  format: z.enum(["slack", "json"]).default("json").describe(
    'slack: {"text": …} (Slack incoming webhooks and compatibles). json: the alert with labels, value, threshold and state.',
  ),
  "timeout.ms": z.number().int().positive().default(5000).describe("Timeout of one POST."),
  retries: z.number().int().min(0).default(5).describe(
    "Retries of a failed POST, with exponential backoff.",
  ),
  "retry.delay.ms": z.number().int().positive().default(1000).describe("First retry delay."),
});

/** The `alerts` section of an alerts file (`--alerts`). */
export const alertsConfig = z.strictObject({
  "evaluation.interval": duration.default(15_000).describe(
    "How often rules are evaluated (a failed job is evaluated at once).",
  ),
  rules: z.partialRecord(z.enum(ruleIds), ruleOverride).default({}).describe(
    "Overrides of the plan's rules, by rule id.",
  ),
  webhooks: z.array(webhook).default([]).describe("Where notifications go besides the log."),
});

/** A parsed alerts section. */
export type AlertsConfig = z.output<typeof alertsConfig>;

/** A webhook's settings. */
export type WebhookConfig = AlertsConfig["webhooks"][number];

/** Parses `{ "alerts": { … } }` (or the section alone); throws ConfigError listing every problem. */
export function parseAlertsConfig(json: unknown, where = "alerts"): AlertsConfig {
  const section = typeof json === "object" && json !== null && "alerts" in json
    ? (json as { alerts: unknown }).alerts
    : json;
  const parsed = alertsConfig.safeParse(section ?? {});
  if (parsed.success) return parsed.data;
  throw new ConfigError(parsed.error.issues.map((issue) => ({
    path: [where, ...issue.path.map(String)].join("."),
    message: describeIssue(issue),
  })));
}

/** The plan's rules with a config's overrides applied (disabled rules left out). */
export function alertRules(config: AlertsConfig = alertsConfig.parse({})): AlertRule[] {
  return ruleIds.flatMap((id) => {
    const override = config.rules[id];
    if (override && !override.enabled) return [];
    const base = DEFAULTS[id];
    return [{
      ...base,
      id,
      threshold: override?.threshold ?? base.threshold,
      forMs: override?.for ?? base.forMs,
      windowMs: override?.window ?? base.windowMs,
      severity: override?.severity ?? base.severity,
    }];
  });
}

/** The rules as a Prometheus alerting rules file (YAML). */
export function prometheusRules(rules: readonly AlertRule[]): string {
  const q = (text: string) => JSON.stringify(text); // a JSON string is a YAML double-quoted scalar
  const lines = [
    "# Generated from core/alert_rules.ts by `deno task ops-files`; do not edit.",
    "groups:",
  ];
  lines.push("  - name: sluice", "    rules:");
  for (const rule of rules) {
    lines.push(
      `      - alert: ${rule.alertname}`,
      `        expr: ${q(`${rule.promql(rule.windowMs)} ${rule.comparison} ${rule.threshold}`)}`,
      `        for: ${Math.round(rule.forMs / 1000)}s`,
      "        labels:",
      `          severity: ${rule.severity}`,
      `          rule: ${rule.id}`,
      "        annotations:",
      `          summary: ${q(rule.summary)}`,
      `          description: ${
        q(`{{ $labels.pipeline }}: {{ $value }} ${rule.comparison} ${rule.threshold}`)
      }`,
    );
  }
  return lines.join("\n") + "\n";
}
