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
 * Cuts a COPY text stream into chunks of whole rows: a chunk ends at the
 * first row boundary after it reached `maxBytes` bytes (or `maxRows` rows).
 * Each piece of the stream is copied into the chunk as it arrives, so the
 * driver's per-row buffers die young instead of living (and being promoted
 * by the garbage collector) until the chunk is full.
 *
 * @example Chunks of two rows
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
  let buffer = new Uint8Array(Math.min(maxBytes, 1 << 16) + (1 << 12));
  let size = 0;
  let rows = 0;
  /** Where the last complete row ends. */
  let boundary = 0;
  const cut = (): CopyTextChunk => {
    const text = buffer.slice(0, boundary);
    const count = rows;
    // What follows the last newline is the start of the next row.
    buffer.copyWithin(0, boundary, size);
    size -= boundary;
    boundary = 0;
    rows = 0;
    return { text, count };
  };
  for await (const bytes of stream) {
    if (size + bytes.length > buffer.length) {
      const grown = new Uint8Array(Math.max(buffer.length * 2, size + bytes.length));
      grown.set(buffer.subarray(0, size));
      buffer = grown;
    }
    buffer.set(bytes, size);
    for (let i = bytes.indexOf(NEWLINE); i >= 0; i = bytes.indexOf(NEWLINE, i + 1)) {
      rows++;
      boundary = size + i + 1;
    }
    size += bytes.length;
    if (rows > 0 && (rows >= maxRows || boundary >= maxBytes)) yield cut();
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
