/**
 * Progress of `sluice job run` on a terminal: rows read, rows per second
 * and, when the source knows how many rows the run will read (postgres_query
 * counts them in the run's snapshot for its validation), the share done and
 * an ETA. One line on stderr, redrawn in place at most four times a second,
 * and cleared when the run ends so the summary prints clean. When stderr is
 * not a terminal (a pipe, a log file, CI) nothing is drawn at all.
 *
 * @module
 */
import type { BatchReadEvent, PipelineObserver } from "../core/observer.ts";
import type { RunReport } from "../core/pipeline.ts";

/** What one line of progress shows. */
export interface ProgressFigures {
  /** Rows read so far. */
  readonly rows: number;
  /** Rows per second; undefined until it can be measured. */
  readonly rate?: number;
  /** Rows the run will read in all, when the source can tell. */
  readonly expected?: number;
}

const numbers = new Intl.NumberFormat("en-US");

/** `1.2 s`, `42 s`, `3 min 05 s`, `2 h 04 min`. */
export function formatEta(seconds: number): string {
  if (seconds < 10) return `${seconds.toFixed(1)} s`;
  const whole = Math.round(seconds);
  if (whole < 60) return `${whole} s`;
  if (whole < 3600) return `${Math.floor(whole / 60)} min ${String(whole % 60).padStart(2, "0")} s`;
  const minutes = Math.floor(whole / 60);
  return `${Math.floor(minutes / 60)} h ${String(minutes % 60).padStart(2, "0")} min`;
}

/**
 * One line: `profile_sync: 12,000/48,000 rows (25%), 8,000 rows/s, ETA 4.5 s`,
 * or `profile_sync: 12,000 rows, 8,000 rows/s` when the total is unknown.
 */
export function formatProgress(pipeline: string, figures: ProgressFigures): string {
  const { rows, rate, expected } = figures;
  const known = expected !== undefined && expected > 0;
  const share = known ? Math.min(100, Math.floor((rows / expected) * 100)) : 0;
  const parts = [
    known
      ? `${pipeline}: ${numbers.format(rows)}/${numbers.format(expected)} rows (${share}%)`
      : `${pipeline}: ${numbers.format(rows)} rows`,
  ];
  if (rate !== undefined) parts.push(`${numbers.format(Math.round(rate))} rows/s`);
  if (known && rate !== undefined && rate > 0 && expected > rows) {
    parts.push(`ETA ${formatEta((expected - rows) / rate)}`);
  }
  return parts.join(", ");
}

/** Where progress goes: stderr, or a stand-in in tests. */
export interface ProgressOutput {
  writeSync(bytes: Uint8Array): number;
  isTerminal(): boolean;
}

interface Running {
  /** When the first batch arrived, and its rows: the rate is measured from there. */
  readonly firstAt: number;
  readonly firstRows: number;
  rows: number;
  expected?: number;
}

/** Draws progress of the runs it observes; dispose to clear the line. */
export class TerminalProgress implements PipelineObserver, Disposable {
  readonly #output: ProgressOutput;
  readonly #intervalMs: number;
  readonly #now: () => number;
  readonly #runs = new Map<string, Running>();
  readonly #encoder = new TextEncoder();
  #drawnAt = -Infinity;
  #drawn = false;

  constructor(
    output: ProgressOutput,
    options: { intervalMs?: number; now?: () => number } = {},
  ) {
    this.#output = output;
    this.#intervalMs = options.intervalMs ?? 250;
    this.#now = options.now ?? (() => performance.now());
  }

  onBatchRead(pipeline: string, event: BatchReadEvent): void {
    const rows = event.records.length + event.failures + (event.copyRows ?? 0);
    let run = this.#runs.get(pipeline);
    if (!run) {
      this.#runs.set(pipeline, run = { firstAt: this.#now(), firstRows: rows, rows: 0 });
    }
    run.rows += rows;
    run.expected = event.expectedRecords ?? run.expected;
    const now = this.#now();
    if (now - this.#drawnAt < this.#intervalMs) return;
    this.#drawnAt = now;
    this.#draw(now);
  }

  onRunFinished(report: RunReport): void {
    this.#runs.delete(report.pipeline);
    this.#clear();
  }

  [Symbol.dispose](): void {
    this.#clear();
  }

  #draw(now: number): void {
    const line = [...this.#runs].map(([pipeline, run]) => {
      const seconds = (now - run.firstAt) / 1000;
      const since = run.rows - run.firstRows;
      const rate = since > 0 && seconds > 0 ? since / seconds : undefined;
      return formatProgress(pipeline, { rows: run.rows, rate, expected: run.expected });
    }).join(" | ");
    // Wider than the terminal, the line would wrap and \r would not take it back.
    this.#write(`\r\x1b[2K${line.slice(0, columns() - 1)}`);
    this.#drawn = true;
  }

  #clear(): void {
    if (!this.#drawn) return;
    this.#write("\r\x1b[2K");
    this.#drawn = false;
  }

  #write(text: string): void {
    const bytes = this.#encoder.encode(text);
    let offset = 0;
    while (offset < bytes.length) offset += this.#output.writeSync(bytes.subarray(offset));
  }
}

function columns(): number {
  try {
    return Deno.consoleSize().columns;
  } catch {
    return 80;
  }
}

/** A progress line on stderr when it is a terminal; undefined otherwise (pipes, logs, CI). */
export function terminalProgress(
  output: ProgressOutput = Deno.stderr,
): TerminalProgress | undefined {
  return output.isTerminal() ? new TerminalProgress(output) : undefined;
}
