/**
 * The seen-set of the `dedup` transform: event IDs with the time they were
 * first seen, bounded by a time window and a size, and a small store
 * interface that keeps it across restarts.
 *
 * IDs seen since the last commit are pending: they become durable only when
 * the runtime reports that the records carrying them were written, so a
 * record re-read after a failure is never mistaken for a duplicate.
 *
 * @module
 */
import { writeAtomically } from "../../api/files.ts";

/** An event ID and when it was first seen (epoch milliseconds). */
export type SeenEntry = readonly [id: string, seenAt: number];

/** What changed in the durable seen-set since the last save. */
export interface SeenChanges {
  /** Entries committed since the last save. */
  readonly added: readonly SeenEntry[];
  /** IDs evicted (expired or over the size bound) since the last save. */
  readonly removed: readonly string[];
  /** Every committed entry, oldest first. */
  all(): Iterable<SeenEntry>;
}

/**
 * Keeps the committed seen-set between runs. A file store rewrites
 * everything; a database store can apply `added` and `removed` instead.
 */
export interface SeenStore {
  /** A short description for logs, such as `file .sluice/dedup.json`. */
  readonly description: string;
  /** The entries saved last time, oldest first (empty on a first run). */
  load(): Promise<Iterable<SeenEntry>>;
  save(changes: SeenChanges): Promise<void>;
  close?(): Promise<void>;
}

/** Keeps the seen-set in one JSON file, replaced atomically on every save. */
export class FileSeenStore implements SeenStore {
  readonly path: string;
  readonly description: string;

  constructor(path: string) {
    this.path = path;
    this.description = `file ${path}`;
  }

  async load(): Promise<SeenEntry[]> {
    let text: string;
    try {
      text = await Deno.readTextFile(this.path);
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return [];
      throw new Error(`Cannot read dedup state "${this.path}": ${(error as Error).message}`, {
        cause: error,
      });
    }
    const state = JSON.parse(text) as { version?: number; entries?: unknown };
    if (state.version !== 1 || !Array.isArray(state.entries)) {
      throw new Error(
        `Cannot read dedup state "${this.path}": expected {"version": 1, "entries": […]}`,
      );
    }
    return state.entries.filter((entry): entry is SeenEntry =>
      Array.isArray(entry) && typeof entry[0] === "string" && typeof entry[1] === "number"
    );
  }

  async save(changes: SeenChanges): Promise<void> {
    const entries = [...changes.all()].map((entry) => JSON.stringify(entry));
    await writeAtomically(this.path, `{"version":1,"entries":[\n${entries.join(",\n")}\n]}\n`);
  }
}

/**
 * A bounded set of event IDs; see the module doc for pending versus
 * committed IDs. IDs sit in a FIFO (oldest first) beside a map for lookups:
 * evicting from the front of a `Map` itself degrades as deleted slots pile up.
 */
export class SeenSet {
  readonly #seenAt = new Map<string, number>();
  #ids: string[] = [];
  #times: number[] = [];
  #head = 0;
  #pending: SeenEntry[] = [];
  #added: SeenEntry[] = [];
  #removed: string[] = [];

  /**
   * @param track Keep the changes for a store ({@linkcode SeenSet.takeChanges}); off without one.
   */
  constructor(
    readonly windowMs: number,
    readonly maxEntries: number,
    readonly now: () => number = Date.now,
    readonly track = true,
  ) {}

  /** The number of IDs held, pending ones included. */
  get size(): number {
    return this.#seenAt.size;
  }

  /** Restores committed entries, dropping those already out of the window. */
  load(entries: Iterable<SeenEntry>): void {
    const sorted = [...entries].sort((a, b) => a[1] - b[1]).slice(-this.maxEntries);
    for (const [id, seenAt] of sorted) {
      if (this.#seenAt.has(id)) continue;
      this.#seenAt.set(id, seenAt);
      this.#ids.push(id);
      this.#times.push(seenAt);
    }
    this.#expire(this.now());
    this.#removed = [];
  }

  /** True when `id` was seen within the window; otherwise remembers it as pending. */
  seen(id: string): boolean {
    const now = this.now();
    this.#expire(now);
    if (this.#seenAt.has(id)) return true;
    this.#seenAt.set(id, now);
    this.#ids.push(id);
    this.#times.push(now);
    if (this.track) this.#pending.push([id, now]);
    if (this.#seenAt.size > this.maxEntries) this.#dropOldest();
    return false;
  }

  /** Marks every pending ID as committed. */
  commit(): void {
    for (const entry of this.#pending) {
      if (this.#seenAt.get(entry[0]) === entry[1]) this.#added.push(entry);
    }
    this.#pending = [];
  }

  /** True when committed changes are waiting to be saved. */
  get dirty(): boolean {
    return this.#added.length > 0 || this.#removed.length > 0;
  }

  /** The committed changes since the last call, for a store to save. */
  takeChanges(): SeenChanges {
    const added = this.#added, removed = this.#removed;
    this.#added = [];
    this.#removed = [];
    const pending = new Set(this.#pending.map(([id]) => id));
    const ids = this.#ids.slice(this.#head), times = this.#times.slice(this.#head);
    return {
      added,
      removed,
      *all() {
        for (let i = 0; i < ids.length; i++) {
          if (!pending.has(ids[i])) yield [ids[i], times[i]] as const;
        }
      },
    };
  }

  #expire(now: number): void {
    const limit = now - this.windowMs;
    while (this.#head < this.#ids.length && this.#times[this.#head] <= limit) this.#dropOldest();
  }

  #dropOldest(): void {
    const id = this.#ids[this.#head++];
    this.#seenAt.delete(id);
    if (this.track) this.#removed.push(id);
    if (this.#head > 4096 && this.#head * 2 > this.#ids.length) {
      this.#ids = this.#ids.slice(this.#head);
      this.#times = this.#times.slice(this.#head);
      this.#head = 0;
    }
  }
}
