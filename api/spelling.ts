/**
 * "Did you mean …?" for names a user typed: config keys, table names.
 *
 * @module
 */

/**
 * The candidate closest to `word` by edit distance (case-insensitive), when
 * it is close enough to be a typo: at most 2 edits, or a quarter of the
 * word's length for longer words.
 *
 * @example
 * ```ts
 * import { closest } from "./spelling.ts";
 * import assert from "node:assert/strict";
 *
 * const tables = ["public.golden_records", "public.profile_360"];
 * assert.equal(closest("public.golden_record", tables), "public.golden_records");
 * assert.equal(closest("public.orders", tables), undefined);
 * ```
 */
export function closest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of candidates) {
    const distance = editDistance(word.toLowerCase(), candidate.toLowerCase());
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return bestDistance <= Math.max(2, Math.floor(word.length / 4)) ? best : undefined;
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let diagonal = row[0];
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const above = row[j];
      row[j] = Math.min(row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] === b[j - 1] ? 0 : 1));
      diagonal = above;
    }
  }
  return row[b.length];
}
