/**
 * SHA-256 and HMAC-SHA256 for masking and dedup, on `@noble/hashes` (audited,
 * no dependencies): security code is not ours to write.
 *
 * Why not node:crypto or WebCrypto: in Deno each `createHmac(…).digest()`
 * crosses into Rust several times (about 8 µs per short value) and WebCrypto
 * is asynchronous, while masking runs once per personal field of every
 * record. Noble runs in JavaScript; the HMAC below keys one instance at
 * construction (the key pads hashed once) and copies its state into a reused
 * instance per value, which measured 4× faster than a fresh `hmac()` per
 * value. Measured per short value on Deno 2.9 (CPU time, loaded machine, so
 * ratios only): this HMAC 1, hash-wasm's `createHMAC` 2.4 (it hashes both
 * key pads again for every value), `node:crypto` `createHmac` 5, WebCrypto
 * `sign` 80 (a promise per value).
 *
 * Garbage matters as much as arithmetic here: the transform chain runs on
 * batches of live records, so every scavenge copies the batch, and the more
 * a masked value allocates the more often that happens. Hex therefore comes
 * from noble's `bytesToHex` (the engine's `Uint8Array.prototype.toHex`, one
 * string, where appending 32 pairs made 31 intermediate strings and halved
 * the mask rate), and text is encoded into a reused buffer.
 *
 * @module
 */
import { hmac } from "@noble/hashes/hmac.js";
import { sha256 as nobleSha256 } from "@noble/hashes/sha2.js";
import { bytesToHex } from "@noble/hashes/utils.js";

const encoder = new TextEncoder();
let textBuffer = new Uint8Array(1024);
/** `textBuffer.subarray(0, n)` by `n`, made once: a view per value is garbage per value. */
let textViews: Uint8Array[] = [];

/** The UTF-8 bytes of `text` in a reused buffer: valid until the next call. */
function encodeText(text: string): Uint8Array {
  if (textBuffer.length < text.length * 3) {
    textBuffer = new Uint8Array(text.length * 3);
    textViews = [];
  }
  const length = encoder.encodeInto(text, textBuffer).written;
  return textViews[length] ??= textBuffer.subarray(0, length);
}

/** HMAC-SHA256 with a fixed key; the key pads are hashed once, at construction. */
export class HmacSha256 {
  readonly #keyed;
  readonly #work;
  readonly #digest = new Uint8Array(32);

  constructor(key: Uint8Array) {
    this.#keyed = hmac.create(nobleSha256, key);
    this.#work = hmac.create(nobleSha256, key);
  }

  /** The 32-byte MAC of `message`. */
  digest(message: Uint8Array): Uint8Array {
    return this.#run(message).slice();
  }

  /** The MAC of the UTF-8 bytes of `text`, as lower-case hex. */
  hexOfText(text: string): string {
    return toHex(this.#run(encodeText(text)));
  }

  #run(message: Uint8Array): Uint8Array {
    // `_cloneInto` is part of noble's Hash interface: it copies the keyed
    // state into the reused instance instead of allocating a new one.
    this.#keyed._cloneInto(this.#work);
    this.#work.update(message);
    this.#work.digestInto(this.#digest);
    return this.#digest;
  }
}

/** SHA-256 of `message`. */
export function sha256(message: Uint8Array): Uint8Array {
  return nobleSha256(message);
}

/** SHA-256 of the UTF-8 bytes of `text`, as lower-case hex. */
export function sha256HexOfText(text: string): string {
  return toHex(nobleSha256(encodeText(text)));
}

/** Lower-case hex of `bytes`. */
export function toHex(bytes: Uint8Array): string {
  return bytesToHex(bytes);
}

/** UTF-8 bytes of `text`. */
export function utf8(text: string): Uint8Array {
  return encoder.encode(text);
}
