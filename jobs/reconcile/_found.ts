/**
 * What a comparison found: counts, a few sample keys per kind, and the
 * differences themselves, page by page, for repair.
 *
 * @module
 */

/** The kinds of difference. */
export type DifferenceKind = "missing" | "extra" | "different";

/**
 * One difference. `key` holds the key as PostgreSQL text: of the source
 * key fields for `missing` and `different` (to re-read the source row), of
 * the target key columns for `extra` (to delete the target row).
 */
export interface Difference {
  readonly kind: DifferenceKind;
  readonly key: readonly string[];
}

/** The outcome of one comparison. */
export interface Found {
  readonly mode: "fast" | "deep";
  readonly sourceRows: number;
  readonly targetRows: number;
  readonly counts: Readonly<Record<DifferenceKind, number>>;
  /** Up to the configured number of keys per kind, as `name=value` text. */
  readonly samples: Readonly<Record<DifferenceKind, readonly string[]>>;
  /** SQL statements run on both sides. */
  readonly queries: number;
  /** Fast mode: rounds of range hashing (1 when the table is in sync). */
  readonly rounds: number;
  /** The differences, in pages of at most `size`. */
  pages(size: number): AsyncIterable<Difference[]>;
  /** Drops what the comparison keeps (temporary tables). */
  close(): Promise<void>;
}

/** Total differences of a comparison. */
export function totalOf(found: Pick<Found, "counts">): number {
  return found.counts.missing + found.counts.extra + found.counts.different;
}

/** Collects counts and samples while differences are found. */
export class Tally {
  readonly counts: Record<DifferenceKind, number> = { missing: 0, extra: 0, different: 0 };
  readonly samples: Record<DifferenceKind, string[]> = { missing: [], extra: [], different: [] };

  constructor(readonly sampleSize: number, readonly names: (kind: DifferenceKind) => string[]) {}

  add(kind: DifferenceKind, key: readonly string[]): void {
    this.counts[kind]++;
    if (this.samples[kind].length >= this.sampleSize) return;
    const names = this.names(kind);
    this.samples[kind].push(key.map((value, i) => `${names[i]}=${value}`).join(","));
  }
}
