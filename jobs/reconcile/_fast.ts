/**
 * Fast mode: each database hashes its own rows, so a table in sync costs one
 * aggregate query per side.
 *
 * Rows are spread over 2^b ranges by a 64-bit hash of their key
 * (`hashtextextended`, PostgreSQL 11+; the key as text, the target's key
 * cast to the source's types first). Per range each side returns its row
 * count and the sum of a hash of key and version. Ranges that differ are
 * split again (the next bits of the same key hash, so a child range lies
 * inside its parent) until they hold about `rangeRows` rows; then both
 * sides' keys and versions of those ranges are read and compared.
 *
 * The source hashes what the target holds only for columns the pipeline's
 * transforms leave alone: the caller checks that the key and version pass
 * through unchanged, and falls back to deep mode when they do not.
 *
 * @module
 */
import { quoteIdent, type Sql } from "../../drivers/postgres.ts";
import type { Subject } from "./_subject.ts";
import { type Difference, type Found, Tally } from "./_found.ts";

/** Options of a fast comparison. */
export interface FastOptions {
  /** Source field compared besides the key (a version or updated_at), if any. */
  readonly versionField?: string;
  /** Rows per range at which a differing range is read instead of split. */
  readonly rangeRows: number;
  readonly sampleSize: number;
}

/** Most ranges asked for in one round (2^16 aggregate rows per side). */
const MAX_ROUND_BITS = 16;
/** Keys and versions read per side per page of differing ranges (each page is a scan). */
const LEAF_PAGE_ROWS = 150_000;

/** Compares keys and versions of `subject` by hashed ranges. */
export async function compareFast(
  subject: Subject,
  source: Sql,
  target: Sql,
  options: FastOptions,
): Promise<Found> {
  const sides = fastSides(subject, options.versionField);
  let queries = 0;
  const run = async <T>(sql: Sql, text: string, params: unknown[] = []): Promise<T[]> => {
    queries++;
    return [...await sql.unsafe(text, params as never[])] as T[];
  };
  const [{ n: estimate }] = await run<{ n: string }>(
    target,
    "select greatest(reltuples, 0)::int8::text as n from pg_class where oid = $1::regclass",
    [subject.targetTable],
  );
  let bits = bitsFor(Number(estimate), options.rangeRows, MAX_ROUND_BITS);
  let parents: { bits: number; ids: string[] } | undefined;
  const targetKeyNames = subject.keyFields.map((field) => subject.targetColumnOf(field)!);
  const tally = new Tally(
    options.sampleSize,
    (kind) => kind === "extra" ? targetKeyNames : [...subject.keyFields],
  );
  const differences: Difference[] = [];
  let rounds = 0;
  let sourceRows = 0;
  let targetRows = 0;
  while (true) {
    rounds++;
    const query = sides.aggregate(bits, parents);
    const [left, right] = await Promise.all([
      run<Aggregate>(source, query.source, query.params),
      run<Aggregate>(target, query.target, query.params),
    ]);
    if (rounds === 1) {
      sourceRows = left.reduce((sum, row) => sum + Number(row.n), 0);
      targetRows = right.reduce((sum, row) => sum + Number(row.n), 0);
    }
    const { leaves, split, largest } = differingRanges(left, right, options.rangeRows, bits);
    for (let i = 0; i < leaves.length;) {
      const perRange = Math.max(1, options.rangeRows);
      const page = leaves.slice(i, i + Math.max(1, Math.floor(LEAF_PAGE_ROWS / perRange)));
      i += page.length;
      const leaf = sides.leaf(bits, page);
      const [sourceKeys, targetKeys] = await Promise.all([
        run<Versioned>(source, leaf.source, leaf.params),
        run<Versioned>(target, leaf.target, leaf.params),
      ]);
      diffLeaves(sourceKeys, targetKeys, (difference) => {
        tally.add(difference.kind, difference.key);
        differences.push(difference);
      });
    }
    if (split.length === 0) break;
    parents = { bits, ids: split };
    bits = Math.min(63, bits + bitsFor(largest, options.rangeRows, MAX_ROUND_BITS));
  }
  return {
    mode: "fast",
    sourceRows,
    targetRows,
    counts: tally.counts,
    samples: tally.samples,
    queries,
    rounds,
    async *pages(size: number) {
      for (let i = 0; i < differences.length; i += size) yield differences.slice(i, i + size);
    },
    close: () => Promise.resolve(),
  };
}

interface Aggregate {
  bucket: string;
  n: string;
  hash: string;
}

interface Versioned {
  key: string[];
  version: string;
}

/** How many hash bits split `rows` into ranges of about `rangeRows` (at least 1 when splitting). */
function bitsFor(rows: number, rangeRows: number, most: number): number {
  if (rows <= rangeRows) return 0;
  return Math.min(most, Math.max(1, Math.ceil(Math.log2(rows / rangeRows))));
}

/** Ranges whose counts or hashes differ: small ones to read, big ones to split. */
function differingRanges(
  left: readonly Aggregate[],
  right: readonly Aggregate[],
  rangeRows: number,
  bits: number,
): { leaves: string[]; split: string[]; largest: number } {
  const other = new Map(right.map((row) => [row.bucket, row]));
  const leaves: string[] = [];
  const split: string[] = [];
  let largest = 0;
  const consider = (bucket: string, rows: number) => {
    // Four times the target size: splitting again costs a scan, reading does not.
    if (rows <= rangeRows * 4 || bits >= 63) leaves.push(bucket);
    else {
      split.push(bucket);
      largest = Math.max(largest, rows);
    }
  };
  for (const row of left) {
    const match = other.get(row.bucket);
    other.delete(row.bucket);
    if (match && match.n === row.n && match.hash === row.hash) continue;
    consider(row.bucket, Math.max(Number(row.n), Number(match?.n ?? 0)));
  }
  for (const row of other.values()) consider(row.bucket, Number(row.n));
  return { leaves, split, largest };
}

/** Compares the keys and versions of a page of ranges. */
function diffLeaves(
  sourceKeys: readonly Versioned[],
  targetKeys: readonly Versioned[],
  found: (difference: Difference) => void,
): void {
  const targets = new Map(targetKeys.map((row) => [row.key.join("\u001f"), row]));
  for (const row of sourceKeys) {
    const id = row.key.join("\u001f");
    const match = targets.get(id);
    if (!match) found({ kind: "missing", key: row.key });
    else {
      targets.delete(id);
      if (match.version !== row.version) found({ kind: "different", key: row.key });
    }
  }
  for (const row of targets.values()) found({ kind: "extra", key: row.key });
}

/** The SQL of both sides: keys as source-typed text, the version as text. */
function fastSides(subject: Subject, versionField: string | undefined) {
  const keyText = (alias: string, columns: readonly string[]) =>
    columns.map((column, i) => `${alias}.${quoteIdent(column)}::${subject.keyTypes[i]}::text`);
  const sourceKeys = keyText("s", subject.keyFields);
  const targetKeys = keyText(
    "s",
    subject.keyFields.map((field) => subject.targetColumnOf(field)!),
  );
  const versionType = versionField
    ? subject.sourceColumns.find((c) => c.name === versionField)!.type
    : undefined;
  const version = (column: string | undefined) =>
    column ? `coalesce(s.${quoteIdent(column)}::${versionType}::text, '\\N')` : "''";
  const sourceRows = `(${subject.sourceSelect}) as s`;
  const targetRows = `(select * from ${subject.targetTable} where ${subject.targetLive}) as s`;
  // The planner flattens this: the aggregate never builds the key array.
  const hashed = (rows: string, keys: string[], versionText: string) =>
    `select key, kt, version, hashtextextended(kt, 0) as h from (select array[${
      keys.join(", ")
    }] as key, concat_ws(chr(31), ${keys.join(", ")}) as kt, ${versionText} as version ` +
    `from ${rows}) as k`;
  const sourceHashed = hashed(sourceRows, sourceKeys, version(versionField));
  const targetHashed = hashed(
    targetRows,
    targetKeys,
    version(versionField ? subject.targetColumnOf(versionField) : undefined),
  );
  const bucket = (bits: number) => bits === 0 ? "0::int8" : `(h >> ${64 - bits})`;
  const within = (parents?: { bits: number; ids: string[] }) =>
    parents ? `where ${bucket(parents.bits)} = any($1::int8[])` : "";
  return {
    aggregate(bits: number, parents?: { bits: number; ids: string[] }) {
      const select = (rows: string) =>
        `select ${bucket(bits)}::text as bucket, count(*)::text as n, ` +
        `sum(hashtextextended(kt || chr(30) || version, 1))::text as hash ` +
        `from (${rows}) r ${within(parents)} group by 1`;
      return {
        source: select(sourceHashed),
        target: select(targetHashed),
        params: parents ? [parents.ids] : [],
      };
    },
    leaf(bits: number, buckets: readonly string[]) {
      const select = (rows: string) =>
        `select key, version from (${rows}) r where ${bucket(bits)} = any($1::int8[])`;
      return { source: select(sourceHashed), target: select(targetHashed), params: [buckets] };
    },
  };
}
