/**
 * `sluice status`: a table of a running process's pipelines, read from its
 * REST API and metrics (`/connectors?expand=status&expand=info`, `/jobs`,
 * `/alerts`, `/metrics`): state, stream lag, records written, the last run
 * of a job and its validation, dead letters, and the alerts that fire.
 *
 * @module
 */
import { DEFAULT_LISTEN } from "../core/http/server.ts";
import { formatTable } from "./_table.ts";

/** Where the process listens and how to authenticate. */
export interface StatusTarget {
  /** Base URL, e.g. `http://127.0.0.1:8083`. */
  readonly url: string;
  /** Bearer token, when the process requires one. */
  readonly token?: string;
}

/** The base URL from `--url`, `SLUICE_URL`, or the `--listen`/`SLUICE_LISTEN` address. */
export function statusUrl(url?: string, listen?: string): string {
  if (url) return url.replace(/\/$/, "");
  const address = listen ?? Deno.env.get("SLUICE_LISTEN") ?? DEFAULT_LISTEN;
  return Deno.env.get("SLUICE_URL")?.replace(/\/$/, "") ?? `http://${address}`;
}

interface ConnectorEntry {
  status: {
    connector: {
      state: string;
      trace?: string;
      retrying?: { attempt: number; next_attempt_at: string; error: string };
      owns?: string[];
      member?: string;
    };
    type?: string;
  };
  info: { type?: string };
}

interface JobEntry {
  name: string;
  running: boolean;
  next_run: string | null;
  last_runs: { status: string; started_at: string; validation: { ok: boolean }[] }[];
  last_group_run?: { worker: string; status: string } | null;
}

interface AlertEntry {
  alertname: string;
  severity: string;
  labels: Record<string, string>;
  value: number;
  since: string;
}

/** Fetches what the table needs; throws a sentence when the process cannot be reached. */
async function fetchJson<T>(target: StatusTarget, path: string): Promise<T> {
  const headers: Record<string, string> = {};
  if (target.token) headers.authorization = `Bearer ${target.token}`;
  let response: Response;
  try {
    response = await fetch(`${target.url}${path}`, { headers });
  } catch (error) {
    throw new Error(
      `Cannot reach a Sluice process at ${target.url} (${(error as Error).message}): is ` +
        "`sluice run` running, and on which --listen address?",
    );
  }
  if (response.status === 401) {
    await response.body?.cancel();
    throw new Error(`${target.url} requires a token: give --token or SLUICE_API_TOKEN`);
  }
  if (!response.ok) {
    throw new Error(`${target.url}${path} answered ${response.status}: ${await response.text()}`);
  }
  return path === "/metrics" ? await response.text() as T : await response.json() as T;
}

/** The value of `metric{pipeline="name"}` (summed over other labels) per pipeline. */
export function metricByPipeline(text: string, metric: string): Map<string, number> {
  const values = new Map<string, number>();
  const line = new RegExp(`^${metric}\\{([^}]*)\\} (\\S+)$`, "gm");
  for (const match of text.matchAll(line)) {
    const pipeline = /pipeline="([^"]*)"/.exec(match[1])?.[1];
    if (pipeline === undefined) continue;
    values.set(pipeline, (values.get(pipeline) ?? 0) + Number(match[2]));
  }
  return values;
}

/**
 * Dead letters per pipeline: those its destination holds now (the
 * `sluice_dead_letters` gauge, which replays and purges lower), or, for a
 * pipeline without a destination, how many records it dead-lettered (logged).
 */
export function deadLettersByPipeline(text: string): Map<string, number> {
  const held = metricByPipeline(text, "sluice_dead_letters");
  const counted = metricByPipeline(text, "sluice_records_dead_lettered_total");
  for (const [pipeline, count] of counted) if (!held.has(pipeline)) held.set(pipeline, count);
  return held;
}

/** Reads the process's state and renders it as a table plus the firing alerts. */
export async function formatStatus(target: StatusTarget): Promise<string> {
  const [connectors, jobs, alerts, metrics] = await Promise.all([
    fetchJson<Record<string, ConnectorEntry>>(target, "/connectors?expand=status&expand=info"),
    fetchJson<JobEntry[]>(target, "/jobs"),
    fetchJson<AlertEntry[]>(target, "/alerts"),
    fetchJson<string>(target, "/metrics"),
  ]);
  const lag = metricByPipeline(metrics, "sluice_stream_lag_seconds");
  const written = metricByPipeline(metrics, "sluice_records_written_total");
  const dead = deadLettersByPipeline(metrics);
  const jobByName = new Map(jobs.map((job) => [job.name, job]));
  const header = [
    "pipeline",
    "kind",
    "state",
    "lag",
    "written",
    "dead",
    "last run",
    "next run",
    "owner",
  ];
  const rows = Object.entries(connectors).sort(([a], [b]) => a.localeCompare(b)).map(
    ([name, entry]) => {
      const job = jobByName.get(name);
      const last = job?.last_runs[0];
      const failed = entry.status.connector.state === "FAILED" || retrying(entry);
      return [
        name,
        job ? "batch" : "stream",
        stateOf(entry, job),
        // A failed stream reads nothing: a lag of 0 would look caught up.
        job || failed ? "-" : `${(lag.get(name) ?? 0).toFixed(1)} s`,
        String(written.get(name) ?? 0),
        String(dead.get(name) ?? 0),
        last ? lastRun(last) : "-",
        job?.next_run ?? "-",
        owner(entry, job),
      ];
    },
  );
  const lines = [formatTable(header, rows, new Set([3, 4, 5]))];
  const failures = Object.entries(connectors).filter(([name, entry]) =>
    entry.status.connector.state === "FAILED" && !jobByName.has(name)
  );
  if (failures.length > 0) lines.push("", "Failed streams (down until restarted):");
  for (const [name, entry] of failures) lines.push(`  ${name}: ${firstLine(entry)}`);
  const retries = Object.entries(connectors).filter(([, entry]) => retrying(entry));
  if (retries.length > 0) lines.push("", "Streams retrying after an error:");
  for (const [name, entry] of retries) lines.push(`  ${name}: ${retryLine(entry)}`);
  lines.push("", alerts.length === 0 ? "No alert is firing." : "Firing alerts:");
  for (const alert of alerts) {
    const where = alert.labels.pipeline ? ` ${alert.labels.pipeline}` : "";
    lines.push(
      `  ${alert.severity} ${alert.alertname}${where}: ${alert.value} since ${alert.since}`,
    );
  }
  return lines.join("\n");
}

/**
 * Kafka Connect's state, except that a job with no run in progress here is
 * IDLE: its connector is RUNNING between runs too, which read as a run that
 * never ends.
 */
function stateOf(entry: ConnectorEntry, job: JobEntry | undefined): string {
  const state = entry.status.connector.state;
  if (retrying(entry)) return "RETRYING";
  return job && state === "RUNNING" && !job.running ? "IDLE" : state;
}

/** A stream between two attempts after an error (its REST state stays RUNNING). */
function retrying(entry: ConnectorEntry): boolean {
  return entry.status.connector.retrying !== undefined;
}

/** The trace's first line: the error, without its stack. */
function firstLine(entry: ConnectorEntry): string {
  return entry.status.connector.trace?.split("\n")[0] ?? "unknown error";
}

/** The error a retrying stream waits out, its attempt and when it tries again. */
function retryLine(entry: ConnectorEntry, now = Date.now()): string {
  const { attempt, next_attempt_at, error } = entry.status.connector.retrying!;
  const seconds = Math.max(0, Math.ceil((Date.parse(next_attempt_at) - now) / 1000));
  return `${error} (attempt ${attempt} failed; next in ${seconds} s)`;
}

/**
 * Who holds the pipeline in a group of processes: for a stream, this
 * process and what it owns (`me (slot s)`), or standby; for a job, the
 * worker of its latest run in the group.
 */
function owner(entry: ConnectorEntry, job: JobEntry | undefined): string {
  if (job) {
    const run = job.last_group_run;
    return run ? `${run.worker} (${run.status})` : "-";
  }
  const connector = entry.status.connector;
  const me = connector.member ?? "this process";
  if (connector.state === "STANDBY") return "another worker (standby here)";
  return connector.owns?.length ? `${me} (${connector.owns.join(", ")})` : "-";
}

function lastRun(run: JobEntry["last_runs"][number]): string {
  const checks = run.validation.length === 0
    ? ""
    : run.validation.every((check) => check.ok)
    ? `, validation ok`
    : `, validation FAILED`;
  return `${run.status}${checks} at ${run.started_at}`;
}
