/**
 * COPY text format handled as bytes: cut a `COPY … TO STDOUT` stream into
 * chunks of whole rows without decoding them, decode a chunk when its
 * values are needed after all, and frame its lines for a `COPY … FROM
 * STDIN` (a row number in front, a constant field behind).
 *
 * In COPY text format a newline inside a value is escaped (`\n`), so every
 * newline byte ends a row.
 *
 * @module
 */
import type { Decoder } from "./pg_text.ts";
import { escapeCopy } from "./pg_text.ts";
import { parseCopyLine } from "./pg_types.ts";

const NEWLINE = 0x0a;

/** Whole rows of COPY text: `count` lines, each ending in a newline. */
export interface CopyTextChunk {
  readonly text: Uint8Array;
  readonly count: number;
}

/**
 * Cuts a COPY text stream into chunks of whole rows: a chunk ends once it
 * holds `maxRows` rows or `maxBytes` bytes (whichever comes first, at the
 * next row boundary). The bytes are copied out of the stream's buffers, so
 * a chunk does not keep a socket buffer alive.
 *
 * @example Two rows per chunk
 * ```ts
 * import { copyTextChunks } from "./pg_copy_text.ts";
 * import assert from "node:assert/strict";
 *
 * async function* stream() {
 *   yield new TextEncoder().encode("1\ta\n2\tb\n3\t");
 *   yield new TextEncoder().encode("c\n");
 * }
 * const counts = [];
 * for await (const chunk of copyTextChunks(stream(), 2, 1 << 20)) counts.push(chunk.count);
 * assert.deepEqual(counts, [2, 1]);
 * ```
 */
export async function* copyTextChunks(
  stream: AsyncIterable<Uint8Array>,
  maxRows: number,
  maxBytes: number,
): AsyncGenerator<CopyTextChunk> {
  let parts: Uint8Array[] = [];
  let size = 0;
  let rows = 0;
  const cut = (): CopyTextChunk => {
    const joined = new Uint8Array(size);
    let at = 0;
    for (const part of parts) {
      joined.set(part, at);
      at += part.length;
    }
    const end = joined.lastIndexOf(NEWLINE) + 1;
    // What follows the last newline is the start of the next row.
    const rest = joined.slice(end);
    parts = rest.length > 0 ? [rest] : [];
    size = rest.length;
    const count = rows;
    rows = 0;
    return { text: joined.subarray(0, end), count };
  };
  for await (const bytes of stream) {
    for (let i = bytes.indexOf(NEWLINE); i >= 0; i = bytes.indexOf(NEWLINE, i + 1)) rows++;
    parts.push(bytes);
    size += bytes.length;
    if (rows > 0 && (rows >= maxRows || size >= maxBytes)) yield cut();
  }
  if (rows > 0) yield cut();
  if (size > 0) throw new Error("COPY stream ended in the middle of a row");
}

/** Decodes every line of a chunk into an object per row. */
export function decodeCopyText(
  text: Uint8Array,
  names: readonly string[],
  decoders: readonly Decoder[],
): Record<string, unknown>[] {
  const lines = new TextDecoder().decode(text).split("\n");
  // The text ends with a newline: the last piece is empty.
  lines.pop();
  return lines.map((line) => parseCopyLine(line, names, decoders));
}

const encoder = new TextEncoder();
const TAB = 0x09;

/**
 * The lines of `text` with their 1-based number and a tab in front
 * (`numbered`), and/or a tab and the constant `suffix` (escaped for COPY)
 * behind. The text itself when neither is asked for.
 */
export function frameCopyLines(
  text: Uint8Array,
  count: number,
  options: { numbered?: boolean; suffix?: string },
): Uint8Array {
  const suffix = options.suffix === undefined
    ? undefined
    : encoder.encode(`\t${escapeCopy(options.suffix)}`);
  if (!options.numbered && suffix === undefined) return text;
  // Row numbers take at most digits(count) + 1 bytes.
  const numberBytes = options.numbered ? String(count).length + 1 : 0;
  const out = new Uint8Array(text.length + count * (numberBytes + (suffix?.length ?? 0)));
  let at = 0;
  let start = 0;
  for (let row = 1; start < text.length; row++) {
    const end = text.indexOf(NEWLINE, start);
    if (options.numbered) {
      const { written } = encoder.encodeInto(String(row), out.subarray(at));
      at += written;
      out[at++] = TAB;
    }
    out.set(text.subarray(start, end), at);
    at += end - start;
    if (suffix) {
      out.set(suffix, at);
      at += suffix.length;
    }
    out[at++] = NEWLINE;
    start = end + 1;
  }
  return out.subarray(0, at);
}
