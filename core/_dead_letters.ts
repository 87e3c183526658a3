/**
 * The file dead-letter destination, kept by the runtime for every pipeline
 * that sets `errors.deadletterqueue.file.path`: JSON lines, one dead letter
 * each, with an `id` and an `attempts` count.
 *
 * Writers append and `sluice dlq` rewrites (replayed and purged lines go,
 * lines that failed again are updated) while holding an exclusive lock on
 * the companion file `<path>.lock`, never on the data file itself: a rewrite
 * replaces the data file by renaming a new one over it, and a writer opens
 * the path only once it holds the lock, so it always appends to the current
 * file and no dead letter lands in a replaced one.
 *
 * @module
 */
import {
  ATTEMPTS_HEADER,
  CHAIN_HEADER,
  type DeadLetterEntry,
  deadLetterEntry,
  type DeadLetterSelection,
  type DeadLetterStore,
  selectsDeadLetter,
  type StoredDeadLetter,
} from "../api/dead_letters.ts";
import { encodeJson } from "../api/json.ts";
import type { DeadLetterWriter } from "../api/plugin.ts";
import type { JsonValue, Row } from "../api/record.ts";

/** A dead letter as one line of the file. */
interface FileEntry extends DeadLetterEntry {
  readonly id?: string;
  readonly attempts?: number;
}

/** A new entry id: 16 hex digits, random (unique enough per file). */
function newId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(8));
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

/** Runs `work` holding the exclusive lock of `<path>.lock`. */
async function withFileLock<T>(path: string, work: () => Promise<T>): Promise<T> {
  const lock = await Deno.open(`${path}.lock`, { create: true, write: true });
  try {
    await lock.lock(true);
    return await work();
  } finally {
    lock.close();
  }
}

/**
 * Throws a sentence naming the path when dead letters could not be written
 * to it (its folder missing, no permission): a pipeline finds out at start,
 * not at its first bad record, hours later. Creates the lock file beside
 * it (as the first write would), not the file itself: no dead letter, no file.
 */
export async function checkDeadLetterFile(path: string): Promise<void> {
  try {
    const lock = await Deno.open(`${path}.lock`, { create: true, write: true });
    lock.close();
  } catch (error) {
    throw new Error(
      `errors.deadletterqueue.file.path "${path}" cannot be written: ${(error as Error).message}${
        error instanceof Deno.errors.NotFound ? " (create its folder first)" : ""
      }`,
      { cause: error },
    );
  }
}

/** Appends dead letters as JSON lines to a file and syncs it before resolving. */
export function fileDeadLetters(path: string): DeadLetterWriter {
  let tail = Promise.resolve();
  return {
    description: `file ${path}`,
    write(failures, pipeline) {
      const text = failures.map((failure) =>
        encodeJson({ id: newId(), attempts: 1, ...deadLetterEntry(failure, pipeline) }) + "\n"
      ).join("");
      const next = tail.then(() =>
        withFileLock(path, async () => {
          // Owner only: dead letters may hold personal data in clear (failed before a mask).
          const file = await Deno.open(path, { append: true, create: true, mode: 0o600 });
          try {
            await file.write(new TextEncoder().encode(text));
            await file.sync();
          } finally {
            file.close();
          }
        })
      );
      tail = next.catch(() => {});
      return next;
    },
    close: () => tail,
  };
}

/** The id of a line: its own, or (lines written before ids existed) a digest of the line. */
async function idOf(entry: FileEntry, line: string): Promise<string> {
  if (typeof entry.id === "string") return entry.id;
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(line));
  return Array.from(new Uint8Array(digest).slice(0, 8), (b) => b.toString(16).padStart(2, "0"))
    .join("");
}

interface Line {
  readonly text: string;
  readonly entry?: FileEntry;
  readonly id?: string;
}

/** The file's lines; a line that is not a JSON object is kept as it is and never selected. */
async function readLines(path: string): Promise<Line[]> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return [];
    throw error;
  }
  const lines: Line[] = [];
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue;
    try {
      const entry = JSON.parse(line) as FileEntry;
      if (typeof entry !== "object" || entry === null) throw new Error("not an object");
      lines.push({ text: line, entry, id: await idOf(entry, line) });
    } catch {
      lines.push({ text: line });
    }
  }
  return lines;
}

function letterOf(entry: FileEntry, id: string): StoredDeadLetter {
  const headers = entry.headers ?? {};
  const trace = headers["__connect.errors.exception.stacktrace"];
  return {
    id,
    pipeline: entry.pipeline,
    stage: entry.stage,
    error: entry.error,
    errorClass: entry.errorClass,
    ...(entry.errorCode ? { errorCode: entry.errorCode } : {}),
    ...(trace ? { trace } : {}),
    failedAt: entry.failedAt,
    attempts: entry.attempts ?? 1,
    record: {
      topic: entry.topic,
      key: (entry.key ?? null) as Row | null,
      value: (entry.value ?? null) as JsonValue,
      headers: Object.fromEntries(
        Object.entries(headers).filter(([name]) =>
          !name.startsWith("__connect.errors.") && !name.startsWith("__sluice.errors.")
        ),
      ),
    },
    ...(headers[CHAIN_HEADER] !== undefined ? { chain: headers[CHAIN_HEADER] } : {}),
  };
}

/**
 * Replaces the file with `lines`, crash-safely: a new file is written and
 * synced beside it, then renamed over it. Call it holding the lock.
 */
async function rewrite(path: string, lines: readonly string[]): Promise<void> {
  const temporary = `${path}.${newId()}.tmp`;
  try {
    await Deno.writeTextFile(temporary, lines.map((line) => line + "\n").join(""), {
      mode: 0o600,
    });
    const file = await Deno.open(temporary, { read: true, write: true });
    try {
      await file.sync();
    } finally {
      file.close();
    }
    await Deno.rename(temporary, path);
  } catch (error) {
    await Deno.remove(temporary).catch(() => {});
    throw error;
  }
}

/** The JSON-lines dead-letter file read and worked off by `sluice dlq`. */
export function fileDeadLetterStore(path: string): DeadLetterStore {
  /** Rewrites the file under the lock, line by line: `change` returns the new line or null. */
  const edit = (change: (line: Line) => string | null | undefined) =>
    withFileLock(path, async () => {
      const lines = await readLines(path);
      const kept: string[] = [];
      let removed = 0;
      let changed = false;
      for (const line of lines) {
        const next = change(line);
        if (next === undefined) kept.push(line.text);
        else if (next === null) removed++;
        else kept.push(next);
        if (next !== undefined) changed = true;
      }
      if (changed) await rewrite(path, kept);
      return removed;
    });
  const all = async (pipeline: string) =>
    (await withFileLock(path, () => readLines(path)))
      .filter((line) => line.entry?.pipeline === pipeline)
      .map((line) => letterOf(line.entry!, line.id!));
  return {
    description: `file ${path}`,
    async list(pipeline: string, selection: DeadLetterSelection) {
      return (await all(pipeline)).filter((letter) => selectsDeadLetter(selection, letter));
    },
    async count(pipeline: string) {
      return (await all(pipeline)).length;
    },
    remove(ids) {
      if (ids.length === 0) return Promise.resolve(0);
      const going = new Set(ids);
      return edit((line) => line.id !== undefined && going.has(line.id) ? null : undefined);
    },
    async failedAgain(again) {
      if (again.length === 0) return;
      const updates = new Map(again.map(({ letter, failure }) => {
        const attempts = letter.attempts + 1;
        const entry = deadLetterEntry(failure, letter.pipeline);
        const line = encodeJson({
          id: letter.id,
          attempts,
          ...entry,
          // The time it was first dead-lettered, so --since/--until keep selecting it.
          failedAt: letter.failedAt,
          headers: { ...entry.headers, [ATTEMPTS_HEADER]: String(attempts) },
        });
        return [letter.id, line];
      }));
      await edit((line) => line.id !== undefined ? updates.get(line.id) : undefined);
    },
    close: () => Promise.resolve(),
  };
}
