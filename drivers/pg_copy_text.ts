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
 * A readable stream that can be paused, such as the one postgres.js gives
 * for `COPY … TO STDOUT`: read in flowing mode, one `data` event per piece.
 */
export interface PausableStream {
  on(event: "data", listener: (bytes: Uint8Array) => void): unknown;
  on(event: "end" | "close", listener: () => void): unknown;
  on(event: "error", listener: (error: Error) => void): unknown;
  pause(): unknown;
  resume(): unknown;
  destroy(): unknown;
}

/** Chunks cut ahead of the consumer before a pausable stream is paused. */
const CHUNKS_AHEAD = 1;

/**
 * Cuts a COPY text stream into chunks of whole rows: a chunk ends at the
 * first row boundary after it reached `maxBytes` bytes (or `maxRows` rows).
 * Each piece of the stream is copied into the chunk as it arrives, so the
 * driver's per-row buffers die young instead of living (and being promoted
 * by the garbage collector) until the chunk is full.
 *
 * A {@linkcode PausableStream} is read through its `data` events rather
 * than as an async iterable: postgres.js pushes one piece per row, and an
 * async iterator would hand them over one at a time (a promise per row).
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
  stream: AsyncIterable<Uint8Array> | PausableStream,
  maxRows: number,
  maxBytes: number,
): AsyncGenerator<CopyTextChunk> {
  const chunker = new Chunker(maxRows, maxBytes);
  if (!isPausable(stream)) {
    for await (const bytes of stream) {
      const chunk = chunker.add(bytes);
      if (chunk) yield chunk;
    }
  } else {
    yield* flowing(stream, chunker);
  }
  const last = chunker.rest();
  if (last) yield last;
}

function isPausable(stream: unknown): stream is PausableStream {
  const candidate = stream as Partial<PausableStream>;
  return typeof candidate.on === "function" && typeof candidate.pause === "function" &&
    typeof candidate.resume === "function";
}

/** The chunks of a pausable stream, paused while {@linkcode CHUNKS_AHEAD} wait. */
async function* flowing(stream: PausableStream, chunker: Chunker): AsyncGenerator<CopyTextChunk> {
  const ready: CopyTextChunk[] = [];
  let ended = false;
  let failure: Error | undefined;
  let wake: (() => void) | undefined;
  const signal = () => {
    wake?.();
    wake = undefined;
  };
  let paused = false;
  stream.on("data", (bytes) => {
    const chunk = chunker.add(bytes);
    if (!chunk) return;
    ready.push(chunk);
    if (ready.length >= CHUNKS_AHEAD) {
      paused = true;
      stream.pause();
    }
    signal();
  });
  stream.on("end", () => {
    ended = true;
    signal();
  });
  stream.on("error", (error) => {
    failure = error;
    signal();
  });
  // Destroyed without an error (or before "end" came): rows may be missing.
  stream.on("close", () => {
    if (!ended) failure ??= new Error("COPY stream closed before its end");
    signal();
  });
  try {
    for (;;) {
      if (failure) throw failure;
      const chunk = ready.shift();
      if (chunk) {
        if (paused && ready.length < CHUNKS_AHEAD) {
          paused = false;
          stream.resume();
        }
        yield chunk;
      } else if (ended) return;
      else await new Promise<void>((resolve) => wake = resolve);
    }
  } finally {
    // A consumer that stops early: the rest of the stream is not wanted.
    if (!ended) stream.destroy();
    for (const chunk of ready) (chunk.text.buffer as ArrayBuffer).transfer(0);
  }
}

const indexOf = Uint8Array.prototype.indexOf;

/** Whole rows collected from the pieces of a stream (see {@linkcode copyTextChunks}). */
class Chunker {
  readonly #maxRows: number;
  readonly #maxBytes: number;
  #buffer: Uint8Array;
  #size = 0;
  #rows = 0;
  /** Where the last complete row ends. */
  #boundary = 0;

  constructor(maxRows: number, maxBytes: number) {
    this.#maxRows = maxRows;
    this.#maxBytes = maxBytes;
    this.#buffer = new Uint8Array(this.#capacity());
  }

  #capacity(): number {
    // Room for the row that crosses the bound; a longer one grows the buffer.
    return Math.min(this.#maxBytes, 1 << 26) + (1 << 16);
  }

  /** Takes a piece of the stream; answers a chunk when one is complete. */
  add(bytes: Uint8Array): CopyTextChunk | undefined {
    const size = this.#size;
    if (size + bytes.length > this.#buffer.length) {
      const grown = new Uint8Array(Math.max(this.#buffer.length * 2, size + bytes.length));
      grown.set(this.#buffer.subarray(0, size));
      (this.#buffer.buffer as ArrayBuffer).transfer(0);
      this.#buffer = grown;
    }
    this.#buffer.set(bytes, size);
    // The typed array's own indexOf: a Buffer's is far slower per call.
    for (let i = indexOf.call(bytes, NEWLINE); i >= 0; i = indexOf.call(bytes, NEWLINE, i + 1)) {
      this.#rows++;
      this.#boundary = size + i + 1;
    }
    this.#size = size + bytes.length;
    const full = this.#rows >= this.#maxRows || this.#boundary >= this.#maxBytes;
    return this.#rows > 0 && full ? this.#cut() : undefined;
  }

  /** The rows left at the end of the stream; throws when it ended inside a row. */
  rest(): CopyTextChunk | undefined {
    const chunk = this.#rows > 0 ? this.#cut() : undefined;
    if (this.#size > 0) throw new Error("COPY stream ended in the middle of a row");
    return chunk;
  }

  /**
   * The complete rows as a chunk. The chunk keeps the buffer (a view of
   * it, not a copy); what follows the last newline, the start of the next
   * row, moves to a fresh one.
   */
  #cut(): CopyTextChunk {
    const full = this.#buffer;
    const boundary = this.#boundary;
    const next = new Uint8Array(Math.max(this.#capacity(), this.#size - boundary));
    next.set(full.subarray(boundary, this.#size));
    this.#buffer = next;
    this.#size -= boundary;
    const chunk = { text: full.subarray(0, boundary), count: this.#rows };
    this.#boundary = 0;
    this.#rows = 0;
    return chunk;
  }
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

/**
 * The last line of a chunk of COPY text (which ends with a newline), newline
 * included: a newline inside a value is written `\n`, so a raw newline
 * always ends a row.
 *
 * @example
 * ```ts
 * import { lastLine } from "./pg_copy_text.ts";
 * import assert from "node:assert/strict";
 *
 * const text = new TextEncoder().encode("1\ta\n2\tb\\nc\n");
 * assert.equal(new TextDecoder().decode(lastLine(text)), "2\tb\\nc\n");
 * ```
 */
export function lastLine(text: Uint8Array): Uint8Array {
  return text.subarray(text.lastIndexOf(0x0a, text.length - 2) + 1);
}

const encoder = new TextEncoder();
const TAB = 0x09;

/**
 * The lines of `text` with their number (from `firstRow`, default 1) and a
 * tab in front (`numbered`), and/or a tab and the constant `suffix`
 * (escaped for COPY) behind. The text itself when neither is asked for.
 */
export function frameCopyLines(
  text: Uint8Array,
  count: number,
  options: { numbered?: boolean; suffix?: string; firstRow?: number },
): Uint8Array {
  const suffix = options.suffix === undefined
    ? undefined
    : encoder.encode(`\t${escapeCopy(options.suffix)}`);
  if (!options.numbered && suffix === undefined) return text;
  const firstRow = options.firstRow ?? 1;
  // Row numbers take at most digits(last row) + 1 bytes.
  const numberBytes = options.numbered ? String(firstRow + count - 1).length + 1 : 0;
  const out = new Uint8Array(text.length + count * (numberBytes + (suffix?.length ?? 0)));
  let at = 0;
  let start = 0;
  for (let row = firstRow; start < text.length; row++) {
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

/**
 * The rows of `text` framed as {@linkcode frameCopyLines} frames them, in
 * pieces of whole rows of about `pieceBytes`: a large chunk is never copied
 * whole. Without framing, the pieces are views of `text`.
 *
 * @example Numbered pieces
 * ```ts
 * import { framedPieces } from "./pg_copy_text.ts";
 * import assert from "node:assert/strict";
 *
 * const text = new TextEncoder().encode("a\nb\nc\n");
 * const pieces = [...framedPieces(text, { numbered: true }, 2)];
 * assert.deepEqual(pieces.map((p) => new TextDecoder().decode(p)), ["1\ta\n", "2\tb\n", "3\tc\n"]);
 * ```
 */
export function* framedPieces(
  text: Uint8Array,
  options: { numbered?: boolean; suffix?: string },
  pieceBytes: number,
): Generator<Uint8Array> {
  let row = 1;
  for (let start = 0; start < text.length;) {
    const newline = start + pieceBytes >= text.length
      ? text.length - 1
      : indexOf.call(text, NEWLINE, start + pieceBytes - 1);
    const end = newline < 0 ? text.length : newline + 1;
    const piece = text.subarray(start, end);
    start = end;
    if (!options.numbered && options.suffix === undefined) {
      yield piece;
      continue;
    }
    let count = 0;
    for (let i = indexOf.call(piece, NEWLINE); i >= 0; i = indexOf.call(piece, NEWLINE, i + 1)) {
      count++;
    }
    yield frameCopyLines(piece, count, { ...options, firstRow: row });
    row += count;
  }
}
