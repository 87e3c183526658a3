/**
 * Offset stores keep each pipeline's source position between runs.
 *
 * The file store is the embedded default. Sinks that can write offsets in
 * the same transaction as the rows (the `offsets` capability) are used
 * instead when `offset.storage` is `sink` or `auto`.
 *
 * @module
 */
import { removeStaleTemporaries, writeAtomically } from "../api/files.ts";
import type { JsonValue } from "../api/record.ts";

/** Reads and writes source positions by key (the pipeline name). */
export interface OffsetStore {
  read(key: string): Promise<JsonValue | undefined>;
  write(key: string, value: JsonValue): Promise<void>;
  /** Forgets a position, so the next run starts from the beginning. */
  delete(key: string): Promise<void>;
}

/**
 * Keeps offsets in one JSON file. Every write replaces the file atomically
 * (write to a temporary file, fsync, rename), so a crash leaves either the old
 * or the new content, never a torn one. Writes are serialized.
 */
export class FileOffsetStore implements OffsetStore {
  readonly path: string;
  #offsets: Record<string, JsonValue> | undefined;
  #tail: Promise<void> = Promise.resolve();

  constructor(path: string) {
    this.path = path;
  }

  async read(key: string): Promise<JsonValue | undefined> {
    const offsets = await this.#load();
    return offsets[key];
  }

  write(key: string, value: JsonValue): Promise<void> {
    return this.#update((offsets) => {
      offsets[key] = value;
    });
  }

  delete(key: string): Promise<void> {
    return this.#update((offsets) => {
      delete offsets[key];
    });
  }

  #update(change: (offsets: Record<string, JsonValue>) => void): Promise<void> {
    const next = this.#tail.then(async () => {
      const offsets = await this.#load();
      change(offsets);
      await writeAtomically(this.path, JSON.stringify(offsets, null, 2) + "\n");
    });
    this.#tail = next.catch(() => {});
    return next;
  }

  async #load(): Promise<Record<string, JsonValue>> {
    if (this.#offsets) return this.#offsets;
    // A crash between writing a temporary file and renaming it leaves it behind.
    await removeStaleTemporaries(this.path);
    try {
      this.#offsets = JSON.parse(await Deno.readTextFile(this.path));
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) {
        throw new Error(`Cannot read offsets file "${this.path}": ${(error as Error).message}`, {
          cause: error,
        });
      }
      this.#offsets = {};
    }
    return this.#offsets!;
  }
}

/** An in-memory store, for tests and one-off runs. */
export class MemoryOffsetStore implements OffsetStore {
  readonly offsets = new Map<string, JsonValue>();
  read(key: string): Promise<JsonValue | undefined> {
    return Promise.resolve(this.offsets.get(key));
  }
  write(key: string, value: JsonValue): Promise<void> {
    this.offsets.set(key, structuredClone(value));
    return Promise.resolve();
  }
  delete(key: string): Promise<void> {
    this.offsets.delete(key);
    return Promise.resolve();
  }
}
