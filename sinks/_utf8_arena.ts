/**
 * UTF-8 encoding of Kafka keys and values into large shared buffers that are
 * used again once the broker has acknowledged every message written into
 * them.
 *
 * Why: the messages of a batch stay alive until the broker acknowledges
 * them, which outlasts two young-generation collections, so V8 promotes
 * their views to the old generation, and the buffers behind them (external
 * memory) are freed only by the next full collection. Draining a CDC
 * backlog, a fresh 1 MiB buffer per ~2,000 events kept 40–60 MB of dead
 * buffers waiting for it, and freed 1 MiB blocks stay with the allocator.
 * Reusing the buffers of acknowledged batches keeps that to a few MiB.
 *
 * Safety: a buffer is reused only when every batch that wrote into it was
 * {@linkcode ArenaLease.release}d, which the sink does once the producer
 * resolved its write (the client retries from the messages until then). A
 * batch that failed is {@linkcode ArenaLease.abandon}ed: its buffers are
 * never reused (a discarded client might still read them) and are left to
 * the garbage collector.
 *
 * @module
 */

import { type HeaderValue, RangeMessage } from "../drivers/kafka.ts";

const encoder = new TextEncoder();

interface Chunk {
  readonly bytes: Uint8Array;
  /** Leases that wrote into this chunk and were not released yet. */
  users: number;
  /** Written into by a batch that failed: never handed out again. */
  abandoned: boolean;
}

/** The buffers one batch wrote into; release or abandon it once its write settled. */
export interface ArenaLease {
  /** Encodes `text` as UTF-8 into the arena; the view stays valid until release. */
  encode(text: string): Uint8Array;
  /**
   * A message whose key and value (null: none) are encoded next to each
   * other into the arena, as ranges of one buffer rather than two views.
   */
  message(
    topic: string,
    key: string | null,
    value: string | null,
    headers?: readonly (readonly [string, HeaderValue])[],
    timestamp?: number,
  ): RangeMessage;
  /** The broker acknowledged the batch: its buffers may be written again. */
  release(): void;
  /** The batch failed: its buffers are left to the garbage collector. */
  abandon(): void;
}

/** Shared UTF-8 buffers, handed out per batch through {@linkcode Utf8Arena.lease}. */
export class Utf8Arena {
  /** Bytes per buffer; a longer text gets a buffer of its own size. */
  static readonly CHUNK = 1 << 20;
  /** Free buffers kept for reuse; more are left to the garbage collector. */
  static readonly SPARE = 8;

  #current: Chunk = Utf8Arena.#chunk(Utf8Arena.CHUNK);
  #used = 0;
  readonly #spare: Chunk[] = [];

  static #chunk(size: number): Chunk {
    // Plain Uint8Array views: a Buffer view costs a constructor call in JavaScript.
    return { bytes: new Uint8Array(size), users: 0, abandoned: false };
  }

  /** Buffers currently kept for reuse (for tests). */
  get spare(): number {
    return this.#spare.length;
  }

  /** Starts the encoding of one batch. */
  lease(): ArenaLease {
    const touched: Chunk[] = [];
    let done = false;
    const touch = (chunk: Chunk) => {
      if (touched.at(-1) === chunk) return;
      chunk.users++;
      touched.push(chunk);
    };
    const settle = (abandoned: boolean) => {
      if (done) return;
      done = true;
      for (const chunk of touched) {
        chunk.users--;
        if (abandoned) chunk.abandoned = true;
        this.#recycle(chunk);
      }
    };
    /**
     * The chunk to write `room` bytes into, at `this.#used`: UTF-8 takes at
     * most three bytes per UTF-16 code unit.
     */
    const reserve = (room: number): Uint8Array => {
      if (this.#used + room > this.#current.bytes.length) this.#next(room);
      touch(this.#current);
      return this.#current.bytes;
    };
    return {
      encode: (text) => {
        const bytes = reserve(text.length * 3);
        const start = this.#used;
        this.#used += encoder.encodeInto(text, bytes.subarray(start)).written;
        return bytes.subarray(start, this.#used);
      },
      message: (topic, key, value, headers, timestamp) => {
        const bytes = reserve(((key?.length ?? 0) + (value?.length ?? 0)) * 3);
        let at = this.#used;
        const keyStart = key === null ? -1 : at;
        if (key !== null) at += encoder.encodeInto(key, bytes.subarray(at)).written;
        const keyEnd = at;
        const valueStart = value === null ? -1 : at;
        if (value !== null) at += encoder.encodeInto(value, bytes.subarray(at)).written;
        this.#used = at;
        return new RangeMessage(topic, bytes, keyStart, keyEnd, valueStart, at, headers, timestamp);
      },
      release: () => settle(false),
      abandon: () => settle(true),
    };
  }

  /** Moves on to a spare or new buffer with at least `room` bytes. */
  #next(room: number): void {
    const previous = this.#current;
    const spare = room <= Utf8Arena.CHUNK ? this.#spare.pop() : undefined;
    this.#current = spare ?? Utf8Arena.#chunk(Math.max(Utf8Arena.CHUNK, room));
    this.#used = 0;
    this.#recycle(previous);
  }

  /** Keeps `chunk` for reuse once nobody may still read it. */
  #recycle(chunk: Chunk): void {
    if (chunk === this.#current || chunk.users > 0 || chunk.abandoned) return;
    if (chunk.bytes.length !== Utf8Arena.CHUNK) return;
    if (this.#spare.length < Utf8Arena.SPARE && !this.#spare.includes(chunk)) {
      this.#spare.push(chunk);
    }
  }
}
