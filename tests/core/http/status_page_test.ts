/// <reference lib="dom" />
/**
 * The status page in a real headless Chromium (Debian's `chromium`, driven by
 * npm `puppeteer-core`) against a real runtime: a CDC stream and a batch job
 * on the real PostgreSQL, the endpoint with a token. The page asks for the
 * token, renders both pipelines with their states and the lag chart, and
 * shows the lag alert once a paused stream falls behind.
 */
import puppeteer, { type Browser, type Page } from "puppeteer-core";
import { assert, assertEquals, assertMatch } from "../../_assert.ts";
import { specsFrom, syncFixture } from "../../_batch.ts";
import { uniqueSlot, waitForActiveSlot } from "../../_cdc.ts";
import { startOps } from "../../_ops.ts";
import { waitUntil } from "../../_wait.ts";
import { LagHistory, STATUS_PAGE_PUBLIC_PATHS } from "../../../core/http/status_page.ts";
import type { PipelineSpec } from "../../../core/config.ts";
import { SluiceMetrics } from "../../../core/metrics.ts";

const CHROMIUM = Deno.env.get("SLUICE_TEST_CHROMIUM") ?? "/usr/bin/chromium";
// The flags that work on our machines (root, no GPU, a small /dev/shm).
const CHROMIUM_FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-dev-shm-usage",
  "--disable-background-networking",
];

async function chromiumMissing(): Promise<string | undefined> {
  try {
    await Deno.stat(CHROMIUM);
    return undefined;
  } catch {
    return `${CHROMIUM} is not installed (Debian: apt-get install chromium; .ci/run installs it)`;
  }
}

const missing = await chromiumMissing();
if (missing) console.warn(`SKIPPED status page browser test: ${missing}`);

const SOURCE = `create table public.items (id int primary key, name text,
  updated_at timestamptz not null default now());`;
const TARGET = `create table public.items (id int primary key, name text,
  updated_at timestamptz, deleted_at timestamptz, _source_lsn pg_lsn);`;
const TOKEN = "page-t0ken";

function pipelines(sourceUrl: string, targetUrl: string, slot: string) {
  return [{
    name: "items_stream",
    config: {
      "connector.class": "postgres_cdc",
      "connection.url": sourceUrl,
      "topic.prefix": "src",
      "slot.name": slot,
      "publication.name": "page_publication",
      "snapshot.mode": "never",
      "poll.interval.ms": "20",
      "sink.class": "postgres",
      "sink.connection.url": targetUrl,
      "sink.table": "public.items",
    },
  }, {
    name: "items_job",
    config: {
      "connector.class": "postgres_query",
      "connection.url": sourceUrl,
      table: "public.items",
      "sink.class": "postgres",
      "sink.connection.url": targetUrl,
      "sink.table": "public.items",
      "job.retries": "0",
      "job.schedule": "0 3 * * *",
    },
  }];
}

/** The text of the cell `column` of a pipeline's row, or null while it is not shown. */
function cell(page: Page, pipeline: string, column: string): Promise<string | null> {
  return page.evaluate(
    (p, c) => document.querySelector(`tr[data-pipeline="${p}"] td.${c}`)?.textContent ?? null,
    pipeline,
    column,
  );
}

Deno.test({
  name:
    "the status page asks for the token, shows both pipelines, the lag chart, and a firing alert",
  ignore: missing !== undefined,
  async fn() {
    await using db = await syncFixture("status_page", SOURCE, TARGET);
    await db
      .sourceSql`insert into items (id, name) select g, 'n' || g from generate_series(1, 25) g`;
    const slot = uniqueSlot("status_page");
    const specs = await specsFrom(pipelines(db.source.url, db.target.url, slot));
    await using ops = await startOps(specs, {
      token: TOKEN,
      alerts: {
        alerts: {
          "evaluation.interval": "50ms",
          // Scaled down from the plan's 60 s so a paused stream fires within seconds.
          rules: { stream_lag_warning: { threshold: 1 }, stream_lag_critical: { enabled: false } },
        },
      },
    });
    ops.runtime.start();
    await waitForActiveSlot(db.sourceSql, slot);
    const job = await ops.runtime.runJob("items_job");
    assertEquals(job.status, "succeeded");

    for (const path of STATUS_PAGE_PUBLIC_PATHS) {
      const response = await fetch(`${ops.url}${path}`);
      assertEquals(response.status, 200, `${path} is served without the token`);
      assertMatch(response.headers.get("content-security-policy")!, /script-src 'self';/);
      assert((await response.text()).length > 100, `${path} has a body`);
    }
    const lagResponse = await fetch(`${ops.url}/status/lag`);
    assertEquals(lagResponse.status, 401, "the lag history needs the token");
    await lagResponse.body?.cancel();

    const folder = await Deno.makeTempDir({ prefix: "sluice_status_page_" });
    const browser: Browser = await puppeteer.launch({
      executablePath: CHROMIUM,
      args: CHROMIUM_FLAGS,
      userDataDir: `${folder}/profile`,
    });
    try {
      const page = await browser.newPage();
      const pageErrors: string[] = [];
      page.on("pageerror", (error) => pageErrors.push(String(error)));
      page.on("console", (message) => {
        if (message.type() === "error") pageErrors.push(message.text());
      });
      await page.setViewport({ width: 1200, height: 900 });
      await page.goto(`${ops.url}/`);

      await page.waitForSelector("#token-form:not([hidden])");
      await page.type("#token", TOKEN);
      await page.click("#token-form button");
      // Before the token, the page's requests were refused (401) as they must be.
      pageErrors.length = 0;
      await page.waitForSelector('tr[data-pipeline="items_stream"]');
      assertEquals(await cell(page, "items_stream", "state"), "RUNNING");
      assertEquals(await cell(page, "items_stream", "kind"), "stream");
      assertEquals(await cell(page, "items_job", "kind"), "batch");
      assertEquals(await cell(page, "items_job", "written"), "25");
      assertMatch(
        (await cell(page, "items_job", "last-run"))!,
        /^succeeded, validation ok at \d{4}-/,
      );
      assertEquals(await cell(page, "items_job", "next-run"), await nextRun(ops.api));
      assertEquals(
        await page.evaluate(() => sessionStorage.getItem("sluice.api.token")),
        TOKEN,
        "the token is kept in this tab's session storage",
      );
      assert(!page.url().includes(TOKEN), "the token is never in the URL");
      await page.waitForSelector('figure[data-pipeline="items_stream"] canvas');
      assertEquals(await page.$$eval("#charts figure", (figures) => figures.length), 1);
      assertEquals(await page.$eval("#no-alerts", (node) => (node as HTMLElement).hidden), false);

      const paused = await ops.api("/connectors/items_stream/pause", { method: "PUT" });
      assertEquals(paused.status, 202);
      await paused.body?.cancel();
      await db.sourceSql`insert into items (id, name) values (100, 'late')`;
      await waitUntil("the lag alert to fire", async () => {
        const alerts = await (await ops.api("/alerts")).json();
        return alerts.some((alert: { alertname: string }) =>
          alert.alertname === "SluiceStreamLagHigh"
        );
      });
      const alert = await page.waitForSelector(
        '#alert-list li[data-alertname="SluiceStreamLagHigh"][data-pipeline="items_stream"]',
        { timeout: 20_000 },
      );
      assertMatch(
        await alert!.evaluate((node) => node.textContent ?? ""),
        /^warning SluiceStreamLagHigh items_stream: [\d.]+ since \d{4}-/,
      );
      assert(await page.$eval("#alerts", (node) => node.classList.contains("firing")));
      assertEquals(
        await page.$eval("#alert-news", (node) => node.textContent),
        "Firing: SluiceStreamLagHigh items_stream",
        "screen readers are told",
      );
      await page.waitForFunction(() =>
        document.querySelector('tr[data-pipeline="items_stream"] td.state')?.textContent ===
          "PAUSED"
      );
      const lag = Number((await cell(page, "items_stream", "lag"))!.replace(" s", ""));
      assert(lag >= 1, `the row shows the lag: ${lag}`);

      const screenshot = `${folder}/status_page.png`;
      await page.screenshot({ path: screenshot, fullPage: true });
      assert((await Deno.stat(screenshot)).size > 10_000, "a screenshot of the page");
      console.log(`screenshot: ${screenshot}`);
      assertEquals(pageErrors, [], "no script error on the page");
    } finally {
      await browser.close();
    }
    const resumed = await ops.api("/connectors/items_stream/resume", { method: "PUT" });
    await resumed.body?.cancel();
  },
});

async function nextRun(api: (path: string) => Promise<Response>): Promise<string> {
  const jobs = await (await api("/jobs")).json();
  return jobs.find((job: { name: string }) => job.name === "items_job").next_run;
}

Deno.test("the lag history keeps a bounded window per stream and ends with the lag right now", () => {
  let now = 1_000_000;
  const specs = [
    { name: "s", source: { plugin: { mode: "stream" } } },
    { name: "b", source: { plugin: { mode: "batch" } } },
  ] as unknown as PipelineSpec[];
  const metrics = new SluiceMetrics(specs, { defaultMetrics: false, now: () => now });
  const history = new LagHistory(metrics, { intervalMs: 1000, windowMs: 3000, now: () => now });
  for (let i = 0; i < 10; i++) {
    history.sample();
    now += 1000;
  }
  metrics.onBatchRead("s", {
    records: [{ topic: "t", key: null, value: null, timestamp: now - 4000 }],
    failures: 0,
    queueDepth: 0,
  });
  const snapshot = history.snapshot();
  assertEquals(Object.keys(snapshot), ["s"], "only streams have lag");
  assertEquals(snapshot.s.map(([at]) => at * 1000 - now), [-4000, -3000, -2000, -1000, 0]);
  assertEquals(snapshot.s.at(-1)![1], 4, "the last point is the lag now");
  assertEquals(snapshot.s[0][1], 0);
});
