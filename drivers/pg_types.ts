/**
 * What `pg_type` says about type OIDs (array element, domain base, enum…),
 * looked up once per connection and cached; and the framing of rows read as
 * text (raw query results and COPY). The codec (`pg_codec.ts`) builds each
 * column's decoder and encoder from these descriptions.
 *
 * @module
 */
import type { Sql } from "./postgres.ts";
import { type Decoder, unescapeCopy } from "./pg_text.ts";

/** One row of `pg_type`, as the codec needs it. */
export interface PgType {
  readonly oid: number;
  /** `typname`, e.g. `int4`, `_int4`, `mood`. */
  readonly name: string;
  /** Element type of an array type; 0 otherwise. */
  readonly element: number;
  /** `typcategory`: `A` array, `N` numeric, `S` string, `E` enum, `U` user… */
  readonly category: string;
  /** Element delimiter of array literals (`,` except for `box`). */
  readonly delimiter: string;
  /** Base type of a domain; 0 otherwise. */
  readonly base: number;
  /** The domain's type modifier (e.g. the precision of a numeric domain); -1 when none. */
  readonly baseModifier: number;
}

/**
 * A cache of `pg_type` rows for one database. Element and base types are
 * loaded with the types that name them, so a lookup after {@linkcode load}
 * never misses.
 */
export class PgTypes {
  readonly #sql: Pick<Sql, "unsafe">;
  readonly #types = new Map<number, PgType | null>();

  constructor(sql: Pick<Sql, "unsafe">) {
    this.#sql = sql;
  }

  /** Loads the given OIDs and, transitively, their element and base types. */
  async load(oids: Iterable<number>): Promise<void> {
    let missing = [...new Set(oids)].filter((oid) => !this.#types.has(oid));
    // Domains over arrays of domains nest a few levels at most.
    for (let depth = 0; missing.length > 0 && depth < 8; depth++) {
      const rows = await this.#sql.unsafe<PgType[]>(
        `select t.oid::int as oid, t.typname as name, t.typelem::int as element,
                t.typcategory as category, t.typdelim as delimiter,
                t.typbasetype::int as base, t.typtypmod::int as "baseModifier"
         from pg_type t where t.oid = any('{${missing.join(",")}}'::oid[])`,
      );
      for (const oid of missing) this.#types.set(oid, null);
      for (const row of rows) this.#types.set(row.oid, row);
      missing = [...new Set(rows.flatMap((row) => [row.element, row.base]))]
        .filter((oid) => oid !== 0 && !this.#types.has(oid));
    }
  }

  /** The type's row, or undefined when unknown (not loaded, or not in `pg_type`). */
  get(oid: number): PgType | undefined {
    return this.#types.get(oid) ?? undefined;
  }
}

const utf8 = new TextDecoder();

/** Decodes a row returned by postgres.js `.raw()` (text-format buffers) into an object. */
export function decodeRawRow(
  raw: readonly (Uint8Array | null)[],
  names: readonly string[],
  decoders: readonly Decoder[],
): Record<string, unknown> {
  const row: Record<string, unknown> = {};
  for (let i = 0; i < names.length; i++) {
    const bytes = raw[i];
    row[names[i]] = bytes === null ? null : decoders[i](utf8.decode(bytes));
  }
  return row;
}

/** Decodes one line of COPY text format (without its newline) into an object. */
export function parseCopyLine(
  line: string,
  names: readonly string[],
  decoders: readonly Decoder[],
): Record<string, unknown> {
  const width = names.length;
  const row: Record<string, unknown> = {};
  let start = 0;
  for (let i = 0; i < width; i++) {
    let end = line.indexOf("\t", start);
    if (end < 0) {
      if (i !== width - 1) throw new Error(`COPY row has ${i + 1} fields, expected ${width}`);
      end = line.length;
    }
    const field = line.slice(start, end);
    row[names[i]] = field === "\\N" ? null : decoders[i](unescapeCopy(field));
    start = end + 1;
  }
  return row;
}

/**
 * Splits a COPY text-format byte stream into decoded rows. Yields arrays of
 * at most `chunkSize` rows, and ends an array early once its rows' text
 * reached `maxChunkChars` (wide rows: a count alone would let a chunk of
 * 1 MB documents hold gigabytes).
 */
export async function* parseCopyText(
  stream: AsyncIterable<Uint8Array>,
  names: readonly string[],
  decoders: readonly Decoder[],
  chunkSize: number,
  maxChunkChars = Infinity,
): AsyncGenerator<Record<string, unknown>[]> {
  const decoder = new TextDecoder();
  let pending = "";
  let rows: Record<string, unknown>[] = [];
  let chars = 0;
  const full: Record<string, unknown>[][] = [];
  const parseLine = (line: string) => parseCopyLine(line, names, decoders);
  // PostgreSQL sends one row per CopyData message; decoding them a few
  // hundred at a time saves a call into the runtime per row.
  let parts: Uint8Array[] = [];
  let size = 0;
  const decodeParts = () => {
    if (parts.length === 0) return;
    const joined = parts.length === 1 ? parts[0] : new Uint8Array(size);
    if (parts.length > 1) {
      let at = 0;
      for (const part of parts) {
        joined.set(part, at);
        at += part.length;
      }
    }
    parts = [];
    size = 0;
    pending += decoder.decode(joined, { stream: true });
    let start = 0;
    for (let end = pending.indexOf("\n"); end >= 0; end = pending.indexOf("\n", start)) {
      rows.push(parseLine(pending.slice(start, end)));
      chars += end - start;
      start = end + 1;
      if (rows.length >= chunkSize || chars >= maxChunkChars) {
        full.push(rows);
        rows = [];
        chars = 0;
      }
    }
    pending = pending.slice(start);
  };
  for await (const bytes of stream) {
    parts.push(bytes);
    size += bytes.length;
    if (parts.length < 256 && size < 65536) continue;
    decodeParts();
    while (full.length > 0) yield full.shift()!;
  }
  decodeParts();
  while (full.length > 0) yield full.shift()!;
  pending += decoder.decode();
  if (pending.length > 0) throw new Error("COPY stream ended in the middle of a row");
  if (rows.length > 0) yield rows;
}
