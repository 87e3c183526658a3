// The status page's script: polls the process's JSON API and renders what
// `sluice status` prints, plus a lag chart per stream (uPlot). Every value
// from the API is written with textContent, never as HTML, so a pipeline
// name or an error message cannot run script on this page.
/* global uPlot */
"use strict";

const REFRESH_MS = 3000;
const TOKEN_KEY = "sluice.api.token";
const charts = new Map();
const previousWritten = { at: 0, values: new Map() };
let timer;
let announcedAlerts = "";

/** Fetches a path of this process, with the bearer token when one is kept. */
async function api(path) {
  const headers = {};
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.authorization = `Bearer ${token}`;
  const response = await fetch(path, { headers, cache: "no-store" });
  if (response.status === 401) {
    await response.body?.cancel();
    throw new TokenRequired();
  }
  if (!response.ok) throw new Error(`${path} answered ${response.status}`);
  return path === "/metrics" ? await response.text() : await response.json();
}

class TokenRequired extends Error {}

/** The value of `metric{pipeline="…"}` summed per pipeline, from the exposition text. */
function metricByPipeline(text, metric) {
  const values = new Map();
  const line = new RegExp(`^${metric}\\{([^}]*)\\} (\\S+)$`, "gm");
  for (const match of text.matchAll(line)) {
    const pipeline = /pipeline="([^"]*)"/.exec(match[1])?.[1];
    if (pipeline !== undefined) {
      values.set(pipeline, (values.get(pipeline) ?? 0) + Number(match[2]));
    }
  }
  return values;
}

function element(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className) node.className = className;
  return node;
}

function lastRun(run) {
  if (!run) return "-";
  const checks = run.validation.length === 0
    ? ""
    : run.validation.every((check) => check.ok)
    ? ", validation ok"
    : ", validation FAILED";
  return `${run.status}${checks} at ${run.started_at}`;
}

/** Rows written per second since the previous refresh. */
function rates(written) {
  const now = performance.now();
  const seconds = (now - previousWritten.at) / 1000;
  const out = new Map();
  for (const [name, value] of written) {
    const before = previousWritten.values.get(name);
    if (before !== undefined && seconds > 0) out.set(name, Math.max(0, value - before) / seconds);
  }
  previousWritten.at = now;
  previousWritten.values = written;
  return out;
}

function renderPipelines(connectors, jobs, metrics, lag) {
  const written = metricByPipeline(metrics, "sluice_records_written_total");
  // What each destination holds now (replays and purges lower it); the count
  // dead-lettered (logged) for a pipeline without a destination.
  const dead = metricByPipeline(metrics, "sluice_dead_letters");
  for (const [name, count] of metricByPipeline(metrics, "sluice_records_dead_lettered_total")) {
    if (!dead.has(name)) dead.set(name, count);
  }
  const rate = rates(written);
  const jobByName = new Map(jobs.map((job) => [job.name, job]));
  const body = document.querySelector("#pipelines tbody");
  const rows = Object.keys(connectors).sort().map((name) => {
    const job = jobByName.get(name);
    const status = connectors[name].status.connector;
    const run = job?.last_runs[0];
    const lagNow = lag[name]?.at(-1)?.[1] ?? 0;
    const row = element("tr");
    row.dataset.pipeline = name;
    const cells = [
      [name, "name"],
      [job ? "batch" : "stream", "kind"],
      [status.state, `state state-${status.state}`],
      [job ? "-" : `${lagNow.toFixed(1)} s`, "lag number"],
      [String(written.get(name) ?? 0), "written number"],
      [rate.has(name) ? rate.get(name).toFixed(1) : "-", "rate number"],
      [String(dead.get(name) ?? 0), "dead number"],
      [lastRun(run), run?.status === "failed" ? "last-run run-failed" : "last-run"],
      [job?.next_run ?? "-", "next-run"],
    ];
    for (const [text, className] of cells) row.append(element("td", text, className));
    if (status.trace) row.cells[2].title = status.trace.split("\n")[0];
    return row;
  });
  body.replaceChildren(...rows);
}

function renderAlerts(alerts) {
  const section = document.getElementById("alerts");
  const list = document.getElementById("alert-list");
  section.classList.toggle("firing", alerts.length > 0);
  document.getElementById("no-alerts").hidden = alerts.length > 0;
  document.getElementById("alerts-title").textContent = alerts.length > 0
    ? `Firing alerts (${alerts.length})`
    : "Alerts";
  announce(alerts);
  list.replaceChildren(...alerts.map((alert) => {
    const item = element("li");
    item.dataset.alertname = alert.alertname;
    if (alert.labels.pipeline) item.dataset.pipeline = alert.labels.pipeline;
    const where = alert.labels.pipeline ? ` ${alert.labels.pipeline}` : "";
    item.append(
      element("span", alert.severity, `severity ${alert.severity}`),
      ` ${alert.alertname}${where}: ${alert.value} since ${alert.since}`,
    );
    return item;
  }));
}

/** Tells screen readers when the set of firing alerts changes (not on every refresh). */
function announce(alerts) {
  const names = alerts.map((alert) => `${alert.alertname} ${alert.labels.pipeline ?? ""}`.trim());
  const key = names.sort().join(", ");
  if (key === announcedAlerts) return;
  announcedAlerts = key;
  document.getElementById("alert-news").textContent = key
    ? `Firing: ${key}`
    : "No alert is firing.";
}

function chartWidth(container) {
  return Math.max(280, container.clientWidth - 16);
}

function renderCharts(lag) {
  const container = document.getElementById("charts");
  const names = Object.keys(lag).sort();
  document.getElementById("no-streams").hidden = names.length > 0;
  for (const [name, chart] of charts) {
    if (!(name in lag)) {
      chart.figure.remove();
      chart.plot.destroy();
      charts.delete(name);
    }
  }
  for (const name of names) {
    const samples = lag[name];
    const data = [samples.map((s) => s[0]), samples.map((s) => s[1])];
    let chart = charts.get(name);
    if (!chart) {
      const figure = element("figure");
      figure.dataset.pipeline = name;
      const caption = element("figcaption");
      figure.append(caption);
      container.append(figure);
      const plot = new uPlot(
        {
          width: chartWidth(figure),
          height: 180,
          scales: { y: { range: (_u, _min, max) => [0, Math.max(1, max * 1.1)] } },
          series: [{}, { label: "lag (s)", stroke: "#d1242f", width: 2, fill: "#d1242f22" }],
          axes: [{}, { label: "seconds" }],
          legend: { show: false },
        },
        data,
        figure,
      );
      plot.root.setAttribute("aria-hidden", "true");
      chart = { figure, caption, plot };
      charts.set(name, chart);
    } else {
      chart.plot.setData(data);
    }
    const now = samples.at(-1)?.[1] ?? 0;
    chart.caption.textContent = `${name}: lag ${now.toFixed(1)} s now`;
  }
}

async function refresh() {
  clearTimeout(timer);
  const problem = document.getElementById("problem");
  try {
    const [connectors, jobs, alerts, metrics, lag] = await Promise.all([
      api("/connectors?expand=status&expand=info"),
      api("/jobs"),
      api("/alerts"),
      api("/metrics"),
      api("/status/lag"),
    ]);
    problem.hidden = true;
    renderAlerts(alerts);
    renderPipelines(connectors, jobs, metrics, lag.streams);
    renderCharts(lag.streams);
    document.getElementById("updated").textContent = `Updated ${new Date().toLocaleTimeString()}`;
  } catch (error) {
    if (error instanceof TokenRequired) {
      sessionStorage.removeItem(TOKEN_KEY);
      document.getElementById("token-form").hidden = false;
      document.getElementById("updated").textContent = "A token is required.";
      return; // Polling resumes once a token is given.
    }
    problem.textContent = `Cannot read the process's status: ${error.message}`;
    problem.hidden = false;
  }
  timer = setTimeout(refresh, REFRESH_MS);
}

document.getElementById("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = document.getElementById("token");
  sessionStorage.setItem(TOKEN_KEY, input.value);
  input.value = "";
  event.target.hidden = true;
  refresh();
});

globalThis.addEventListener("resize", () => {
  for (const chart of charts.values()) {
    chart.plot.setSize({ width: chartWidth(chart.figure), height: 180 });
  }
});

refresh();
