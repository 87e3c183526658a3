/**
 * A real Prometheus (Debian's `prometheus` package) scrapes a running
 * Sluice endpoint and fires, by its own rule evaluation, the same alert the
 * process fires itself. Skipped, saying why, when `prometheus` is absent.
 */
import { assertEquals } from "../../_assert.ts";
import { specsFrom, syncFixture } from "../../_batch.ts";
import { waitUntil } from "../../_wait.ts";
import { startOps } from "../../_ops.ts";
import { alertRules, parseAlertsConfig, prometheusRules } from "../../../core/alert_rules.ts";

async function installed(command: string): Promise<boolean> {
  try {
    await new Deno.Command(command, { args: ["--version"], stdout: "null", stderr: "null" })
      .output();
    return true;
  } catch {
    return false;
  }
}

const hasPrometheus = await installed("prometheus");
if (!hasPrometheus) {
  console.warn(
    "SKIPPED the real Prometheus test: prometheus is not installed (Debian: apt-get install prometheus; .ci/run installs it)",
  );
}

/** A port free on loopback now (Prometheus needs a concrete one). */
function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

Deno.test({
  name: "a real Prometheus scrapes Sluice and its own rules fire the failed-job alert",
  ignore: !hasPrometheus,
  async fn() {
    await using db = await syncFixture("ops_prometheus", "select 1", "select 1");
    const specs = await specsFrom({
      name: "missing_table_job",
      config: {
        "connector.class": "postgres_query",
        "connection.url": db.source.url,
        table: "public.nothing_here",
        "sink.class": "postgres",
        "sink.connection.url": db.target.url,
        "sink.table": "public.nothing_here",
        "job.retries": "0",
      },
    });
    await using ops = await startOps(specs);
    const folder = await Deno.makeTempDir({ prefix: "sluice_prometheus_" });
    const rules = prometheusRules(alertRules(parseAlertsConfig({})));
    await Deno.writeTextFile(`${folder}/rules.yml`, rules);
    await Deno.writeTextFile(
      `${folder}/prometheus.yml`,
      `global: { scrape_interval: 1s, evaluation_interval: 1s }
rule_files: [rules.yml]
scrape_configs:
  - job_name: sluice
    static_configs: [{ targets: ["${new URL(ops.url).host}"] }]
`,
    );
    const port = freePort();
    const prometheus = new Deno.Command("prometheus", {
      args: [
        `--config.file=${folder}/prometheus.yml`,
        `--storage.tsdb.path=${folder}/data`,
        `--web.listen-address=127.0.0.1:${port}`,
      ],
      stdout: "null",
      stderr: "null",
    }).spawn();
    const api = `http://127.0.0.1:${port}/api/v1`;
    const query = async (path: string) => {
      const response = await fetch(`${api}${path}`);
      return (await response.json()).data;
    };
    try {
      await waitUntil("Prometheus to scrape Sluice", async () => {
        const targets = await query("/targets");
        return targets?.activeTargets?.[0]?.health === "up";
      }, { timeoutMs: 30_000 });
      const report = await ops.runtime.runJob("missing_table_job");
      assertEquals(report.status, "failed");
      const alert = await waitUntil("Prometheus to fire SluiceBatchJobFailed", async () => {
        const { alerts } = await query("/alerts");
        return alerts.find((a: { labels: Record<string, string>; state: string }) =>
          a.labels.alertname === "SluiceBatchJobFailed" && a.state === "firing"
        );
      }, { timeoutMs: 30_000 });
      assertEquals(alert.labels.pipeline, "missing_table_job");
      assertEquals(alert.labels.severity, "critical");
      // The process fired the same alert itself (and, one run of one failing, the success rate).
      assertEquals(ops.alerts.firing.map((a) => a.rule.alertname).sort(), [
        "SluiceBatchJobFailed",
        "SluiceSyncSuccessRateLow",
      ]);
    } finally {
      prometheus.kill("SIGTERM");
      await prometheus.status;
      await Deno.remove(folder, { recursive: true });
    }
  },
});
