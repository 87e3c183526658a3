/**
 * `sluice job run` progress: the line's format, redrawing at most every
 * interval and clearing at the end, the total postgres_query expects from
 * its snapshot (real PostgreSQL), and no progress at all when stderr is not
 * a terminal (a real `sluice job run` child with piped stderr).
 */
import { assert, assertEquals, assertMatch } from "../_assert.ts";
import { specsFrom, syncFixture } from "../_batch.ts";
import {
  formatEta,
  formatProgress,
  TerminalProgress,
  terminalProgress,
} from "../../cli/progress.ts";
import { MemoryOffsetStore } from "../../core/offsets.ts";
import { runPipeline } from "../../core/pipeline.ts";

const CLI = new URL("../../cli/main.ts", import.meta.url).pathname;
const ROOT = new URL("../..", import.meta.url).pathname;

/** A stand-in terminal that keeps what is written. */
function fakeTerminal(terminal = true) {
  const decoder = new TextDecoder();
  const output = {
    text: "",
    writeSync(bytes: Uint8Array) {
      output.text += decoder.decode(bytes);
      return bytes.length;
    },
    isTerminal: () => terminal,
  };
  return output;
}

const SOURCE = `create table public.items (id int primary key, name text,
  updated_at timestamptz not null default now());`;
const TARGET = `create table public.items (id int primary key, name text,
  updated_at timestamptz, deleted_at timestamptz);`;

function job(sourceUrl: string, targetUrl: string) {
  return {
    name: "items_job",
    config: {
      "connector.class": "postgres_query",
      "connection.url": sourceUrl,
      table: "public.items",
      mode: "incremental",
      "timestamp.column.name": "updated_at",
      "chunk.size": "100",
      "sink.class": "postgres",
      "sink.connection.url": targetUrl,
      "sink.table": "public.items",
    },
  };
}

Deno.test("a progress line shows rows, the share done, rows/s and an ETA", () => {
  assertEquals(
    formatProgress("profile_sync", { rows: 12_000, rate: 8000, expected: 48_000 }),
    "profile_sync: 12,000/48,000 rows (25%), 8,000 rows/s, ETA 4.5 s",
  );
  assertEquals(
    formatProgress("p", { rows: 300, rate: 150 }),
    "p: 300 rows, 150 rows/s",
    "no share and no ETA without a total",
  );
  assertEquals(
    formatProgress("p", { rows: 10, rate: 10, expected: 10 }),
    "p: 10/10 rows (100%), 10 rows/s",
  );
  assertEquals(
    formatProgress("p", { rows: 5, expected: 50 }),
    "p: 5/50 rows (10%)",
    "no rate and no ETA before time has passed",
  );
  assertEquals(
    [formatEta(0.25), formatEta(42.4), formatEta(185), formatEta(7440)],
    ["0.3 s", "42 s", "3 min 05 s", "2 h 04 min"],
  );
});

Deno.test("progress redraws in place at most once per interval and clears when the run ends", () => {
  let now = 0;
  const output = fakeTerminal();
  const progress = new TerminalProgress(output, { intervalMs: 250, now: () => now });
  const batch = (n: number, expectedRecords?: number) =>
    progress.onBatchRead("job", {
      records: Array.from({ length: n }, () => ({ topic: "t", key: null, value: null })),
      failures: 0,
      queueDepth: 0,
      expectedRecords,
    });
  now = 1000;
  batch(100, 400);
  now = 1100;
  batch(100, 400); // within 250 ms of the last drawing: not drawn
  now = 2000;
  batch(100, 400);
  const frames = output.text.split("\r\x1b[2K").filter(Boolean);
  assertEquals(frames, [
    "job: 100/400 rows (25%)", // the first batch: no rate yet
    "job: 300/400 rows (75%), 200 rows/s, ETA 0.5 s", // 200 rows in the second since the first
  ]);
  progress.onRunFinished({
    pipeline: "job",
    status: "succeeded",
    stats: { read: 300, written: 300, filtered: 0, deadLettered: 0, skipped: 0 },
    startedAt: new Date(),
    durationMs: 1000,
    validation: [],
  });
  assert(output.text.endsWith("\r\x1b[2K"), "the line is cleared for the summary");
  assertEquals(terminalProgress(fakeTerminal(false)), undefined, "nothing without a terminal");
});

Deno.test("postgres_query tells the run's total from its snapshot, so progress has an ETA", async () => {
  await using db = await syncFixture("progress_total", SOURCE, TARGET);
  await db
    .sourceSql`insert into items (id, name) select g, 'n' || g from generate_series(1, 250) g`;
  const [spec] = await specsFrom(job(db.source.url, db.target.url));
  const output = fakeTerminal();
  using progress = new TerminalProgress(output, { intervalMs: 0 });
  const report = await runPipeline(spec, { offsets: new MemoryOffsetStore(), observer: progress });
  assertEquals(report.status, "succeeded");
  const frames = output.text.split("\r\x1b[2K").filter(Boolean);
  // A frame per chunk of 100, and one for the last (empty) batch that carries the watermark.
  assert(frames.length >= 3, frames.join("\n"));
  assertMatch(frames[0], /^items_job: 100\/250 rows \(40%\)$/);
  assertMatch(frames[1], /^items_job: 200\/250 rows \(80%\), [\d,]+ rows\/s, ETA .+ s$/);
  assertMatch(frames.at(-1)!, /^items_job: 250\/250 rows \(100%\), [\d,]+ rows\/s$/);
});

Deno.test("sluice job run draws no progress when stderr is not a terminal", async () => {
  await using db = await syncFixture("progress_pipe", SOURCE, TARGET);
  await db
    .sourceSql`insert into items (id, name) select g, 'n' || g from generate_series(1, 250) g`;
  const folder = await Deno.makeTempDir({ prefix: "sluice_progress_" });
  const config = `${folder}/job.json`;
  await Deno.writeTextFile(config, JSON.stringify(job(db.source.url, db.target.url)));
  const result = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", CLI, "job", "run", "items_job", config, "--offsets", `${folder}/o.json`],
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = new TextDecoder().decode(result.stdout);
  const stderr = new TextDecoder().decode(result.stderr);
  assertEquals(result.code, 0, stderr);
  assertMatch(stdout, /items_job\s+succeeded\s+250\s+250/);
  assert(!stderr.includes("rows/s"), `no progress line in: ${stderr}`);
  assert(!stderr.includes("\r") && !stderr.includes("\x1b[2K"), "no redrawing");
  await Deno.remove(folder, { recursive: true });
});
