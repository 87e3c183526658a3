/**
 * Decoders for the columns of a result, looked up in `pg_type` so that
 * arrays, enums and domains decode right.
 *
 * @module
 */
import type { Sql } from "./postgres.ts";
import { arrayDecoder, type Decoder, scalarDecoder, unescapeCopy } from "./pg_text.ts";

/** Builds decoders for type OIDs, caching what `pg_type` says about them. */
export class TypeDecoders {
  readonly #sql: Sql;
  readonly #cache = new Map<number, Decoder>();

  constructor(sql: Sql) {
    this.#sql = sql;
  }

  /** One decoder per OID, in order. */
  async for(oids: readonly number[]): Promise<Decoder[]> {
    const missing = [...new Set(oids.filter((oid) => !this.#cache.has(oid)))];
    if (missing.length > 0) {
      const rows = await this.#sql<
        { oid: number; elem: number; category: string; delimiter: string; base: number }[]
      >`
        select t.oid::int as oid, t.typelem::int as elem, t.typcategory as category,
               t.typdelim as delimiter, t.typbasetype::int as base
        from pg_type t where t.oid = any(${missing}::oid[])`;
      const info = new Map(rows.map((row) => [row.oid, row]));
      const decoderOf = (oid: number): Decoder => {
        const cached = this.#cache.get(oid);
        if (cached) return cached;
        const row = info.get(oid);
        let decoder: Decoder;
        if (row && row.category === "A" && row.elem !== 0) {
          decoder = arrayDecoder(scalarDecoder(row.elem), row.delimiter);
        } else if (row && row.base !== 0) {
          decoder = scalarDecoder(row.base); // a domain decodes as its base type
        } else {
          decoder = scalarDecoder(oid);
        }
        this.#cache.set(oid, decoder);
        return decoder;
      };
      for (const oid of missing) decoderOf(oid);
    }
    return oids.map((oid) => this.#cache.get(oid)!);
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

/**
 * Splits a COPY text-format byte stream into decoded rows. Yields arrays of
 * rows of at most `chunkSize`.
 */
export async function* parseCopyText(
  stream: AsyncIterable<Uint8Array>,
  names: readonly string[],
  decoders: readonly Decoder[],
  chunkSize: number,
): AsyncGenerator<Record<string, unknown>[]> {
  const decoder = new TextDecoder();
  const width = names.length;
  let pending = "";
  const rows: Record<string, unknown>[] = [];
  const parseLine = (line: string): Record<string, unknown> => {
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
  };
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
      start = end + 1;
    }
    pending = pending.slice(start);
  };
  for await (const bytes of stream) {
    parts.push(bytes);
    size += bytes.length;
    if (parts.length < 256 && size < 65536) continue;
    decodeParts();
    while (rows.length >= chunkSize) yield rows.splice(0, chunkSize);
  }
  decodeParts();
  while (rows.length >= chunkSize) yield rows.splice(0, chunkSize);
  pending += decoder.decode();
  if (pending.length > 0) throw new Error("COPY stream ended in the middle of a row");
  if (rows.length > 0) yield rows;
}
