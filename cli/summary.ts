/**
 * Renders job reports as a short table for terminals.
 *
 * @module
 */
import { redactedMessage, redactSecrets } from "../api/redact.ts";
import type { JobReport } from "../core/runtime.ts";
import { formatTable } from "./_table.ts";

/** A plain-text table of job outcomes, one line per job, plus failed checks. */
export function formatSummary(reports: readonly JobReport[]): string {
  // read = written + skipped (stale, older than the target's row) + filtered + dead.
  const header = [
    "pipeline",
    "status",
    "read",
    "written",
    "skipped",
    "filtered",
    "dead",
    "time",
    "validation",
  ];
  const rows = reports.map((report) => [
    report.pipeline,
    report.status + (report.attempts > 1 ? ` (${report.attempts} tries)` : ""),
    String(report.stats.read),
    String(report.stats.written),
    String(report.stats.skipped ?? 0),
    String(report.stats.filtered),
    String(report.stats.deadLettered),
    formatDuration(report.durationMs),
    report.validation.length === 0
      ? "-"
      : report.validation.every((check) => check.ok)
      ? `ok (${report.validation.length} checks)`
      : "FAILED",
  ]);
  const out = [formatTable(header, rows, new Set([2, 3, 4, 5, 6]))];
  for (const report of reports) {
    // A reconciliation reads and writes no records: its figures are its result.
    for (const check of report.validation.filter((c) => c.ok && c.reconciliation)) {
      out.push(`  ${report.pipeline}: ${redactSecrets(check.detail)}`);
    }
    for (const check of report.validation.filter((c) => !c.ok)) {
      out.push(`  ${report.pipeline}: ${check.name} failed: ${redactSecrets(check.detail)}`);
    }
    if (report.error) out.push(`  ${report.pipeline}: ${redactedMessage(report.error)}`);
  }
  return out.join("\n");
}

function formatDuration(ms: number): string {
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`;
}
