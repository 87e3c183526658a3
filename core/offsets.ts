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

/**
 * Reads and writes source positions by key (the pipeline name).
 *
 * @example Any store, used the same way
 * ```ts
 * import { MemoryOffsetStore, type OffsetStore } from "@sluice/sluice";
 * import assert from "node:assert/strict";
 *
 * async function resetPipeline(store: OffsetStore, pipeline: string): Promise<void> {
 *   await store.delete(pipeline);
 * }
 * const store = new MemoryOffsetStore();
 * await store.write("orders_sync", { watermark: "2024-05-01 10:00:00+00" });
 * await resetPipeline(store, "orders_sync");
 * assert.equal(await store.read("orders_sync"), undefined);
 * ```
 */
export interface OffsetStore {
  /** The position stored under `key`, or undefined when there is none. */
  read(key: string): Promise<JsonValue | undefined>;
  /** Stores `value` under `key`; resolves once it is durable. */
  write(key: string, value: JsonValue): Promise<void>;
  /** Forgets a position, so the next run starts from the beginning. */
  delete(key: string): Promise<void>;
  /** Waits for pending writes and releases the store. */
  close?(): Promise<void>;
}

/** A change to the offsets file and the promise its write settles. */
interface QueuedChange {
  readonly change: (offsets: Record<string, JsonValue>) => void;
  readonly written: PromiseWithResolvers<void>;
}

/**
 * Keeps offsets in one JSON file. Every write replaces the file atomically
 * (write to a temporary file, fsync, rename), so a crash leaves either the old
 * or the new content, never a torn one. Writes are serialized, and the ones
 * that arrive while the file is being written go out together in the next
 * write (group commit): pipelines sharing a store pay one fsync per round,
 * not one each.
 *
 * @example Positions survive a restart
 * ```ts
 * import { FileOffsetStore } from "@sluice/sluice";
 * import assert from "node:assert/strict";
 *
 * const folder = await Deno.makeTempDir();
 * {
 *   await using store = new FileOffsetStore(`${folder}/offsets.json`);
 *   await store.write("profile_sync", { watermark: "2024-05-01 10:00:00+00", key: [42] });
 * }
 * await using reopened = new FileOffsetStore(`${folder}/offsets.json`);
 * assert.deepEqual(await reopened.read("profile_sync"), {
 *   watermark: "2024-05-01 10:00:00+00",
 *   key: [42],
 * });
 * await Deno.remove(folder, { recursive: true });
 * ```
 */
export class FileOffsetStore implements OffsetStore, AsyncDisposable {
  /** The JSON file holding every pipeline's position. */
  readonly path: string;
  #offsets: Record<string, JsonValue> | undefined;
  /** Changes waiting for the next file write. */
  #queued: QueuedChange[] = [];
  /** The loop writing queued changes, while there are any. */
  #writing: Promise<void> | undefined;

  /** A store backed by `path`; the file is read on first use and created on first write. */
  constructor(path: string) {
    this.path = path;
  }

  /** The position stored under `key`, or undefined. */
  async read(key: string): Promise<JsonValue | undefined> {
    const offsets = await this.#load();
    return offsets[key];
  }

  /** Stores `value` under `key`; resolves once the file is synced and renamed. */
  write(key: string, value: JsonValue): Promise<void> {
    return this.#update((offsets) => {
      offsets[key] = value;
    });
  }

  /** Forgets the position under `key`. */
  delete(key: string): Promise<void> {
    return this.#update((offsets) => {
      delete offsets[key];
    });
  }

  /** Waits until every write started so far is on disk. */
  async close(): Promise<void> {
    await this.#writing;
  }

  /** Same as {@linkcode FileOffsetStore.close}, for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  #update(change: (offsets: Record<string, JsonValue>) => void): Promise<void> {
    const written = Promise.withResolvers<void>();
    this.#queued.push({ change, written });
    this.#writing ??= this.#writeQueued();
    return written.promise;
  }

  /** Writes the queued changes, a group per file write, until none is left. */
  async #writeQueued(): Promise<void> {
    try {
      while (this.#queued.length > 0) {
        const group = this.#queued.splice(0);
        try {
          const offsets = await this.#load();
          for (const { change } of group) change(offsets);
          await writeAtomically(this.path, JSON.stringify(offsets, null, 2) + "\n");
          for (const { written } of group) written.resolve();
        } catch (error) {
          for (const { written } of group) written.reject(error);
        }
      }
    } finally {
      this.#writing = undefined;
    }
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

/**
 * An in-memory store, for tests and one-off runs. Values are copied on write,
 * so later changes to the written object do not leak into the store.
 *
 * @example Writing and reading a position
 * ```ts
 * import { MemoryOffsetStore } from "@sluice/sluice";
 * import assert from "node:assert/strict";
 *
 * await using store = new MemoryOffsetStore();
 * const position = { lsn: "0/16B3748" };
 * await store.write("cdc", position);
 * position.lsn = "changed afterwards";
 * assert.deepEqual(await store.read("cdc"), { lsn: "0/16B3748" });
 * ```
 */
export class MemoryOffsetStore implements OffsetStore, AsyncDisposable {
  /** The stored positions, by key. */
  readonly offsets: Map<string, JsonValue> = new Map();
  /** The position stored under `key`, or undefined. */
  read(key: string): Promise<JsonValue | undefined> {
    return Promise.resolve(this.offsets.get(key));
  }
  /** Stores a copy of `value` under `key`. */
  write(key: string, value: JsonValue): Promise<void> {
    this.offsets.set(key, structuredClone(value));
    return Promise.resolve();
  }
  /** Forgets the position under `key`. */
  delete(key: string): Promise<void> {
    this.offsets.delete(key);
    return Promise.resolve();
  }
  /** Nothing to release; present so every store closes alike. */
  close(): Promise<void> {
    return Promise.resolve();
  }
  /** Same as {@linkcode MemoryOffsetStore.close}, for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
