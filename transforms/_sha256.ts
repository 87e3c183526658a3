/**
 * SHA-256 and HMAC-SHA256 (FIPS 180-4, RFC 2104) in plain JavaScript.
 *
 * Why not node:crypto: in Deno each `createHmac(…).update(…).digest()` crosses
 * into Rust several times, which measured about 8 µs per short value; masking
 * runs once per personal field of every record. This version precomputes the
 * HMAC key pads once and needs two compressions per short value. Tests check
 * it against node:crypto.
 *
 * @module
 */

const K = new Int32Array([
  0x428a2f98,
  0x71374491,
  0xb5c0fbcf,
  0xe9b5dba5,
  0x3956c25b,
  0x59f111f1,
  0x923f82a4,
  0xab1c5ed5,
  0xd807aa98,
  0x12835b01,
  0x243185be,
  0x550c7dc3,
  0x72be5d74,
  0x80deb1fe,
  0x9bdc06a7,
  0xc19bf174,
  0xe49b69c1,
  0xefbe4786,
  0x0fc19dc6,
  0x240ca1cc,
  0x2de92c6f,
  0x4a7484aa,
  0x5cb0a9dc,
  0x76f988da,
  0x983e5152,
  0xa831c66d,
  0xb00327c8,
  0xbf597fc7,
  0xc6e00bf3,
  0xd5a79147,
  0x06ca6351,
  0x14292967,
  0x27b70a85,
  0x2e1b2138,
  0x4d2c6dfc,
  0x53380d13,
  0x650a7354,
  0x766a0abb,
  0x81c2c92e,
  0x92722c85,
  0xa2bfe8a1,
  0xa81a664b,
  0xc24b8b70,
  0xc76c51a3,
  0xd192e819,
  0xd6990624,
  0xf40e3585,
  0x106aa070,
  0x19a4c116,
  0x1e376c08,
  0x2748774c,
  0x34b0bcb5,
  0x391c0cb3,
  0x4ed8aa4a,
  0x5b9cca4f,
  0x682e6ff3,
  0x748f82ee,
  0x78a5636f,
  0x84c87814,
  0x8cc70208,
  0x90befffa,
  0xa4506ceb,
  0xbef9a3f7,
  0xc67178f2,
]);
const INITIAL = new Int32Array([
  0x6a09e667,
  0xbb67ae85,
  0x3c6ef372,
  0xa54ff53a,
  0x510e527f,
  0x9b05688c,
  0x1f83d9ab,
  0x5be0cd19,
]);

const W = new Int32Array(64);
const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));

/** Runs the compression function over `blocks` 64-byte blocks of `data` at `offset`. */
function compress(state: Int32Array, data: Uint8Array, offset: number, blocks: number): void {
  for (let block = 0; block < blocks; block++) {
    const base = offset + block * 64;
    for (let i = 0; i < 16; i++) {
      const j = base + i * 4;
      W[i] = (data[j] << 24) | (data[j + 1] << 16) | (data[j + 2] << 8) | data[j + 3];
    }
    for (let i = 16; i < 64; i++) {
      const w15 = W[i - 15], w2 = W[i - 2];
      const s0 = ((w15 >>> 7) | (w15 << 25)) ^ ((w15 >>> 18) | (w15 << 14)) ^ (w15 >>> 3);
      const s1 = ((w2 >>> 17) | (w2 << 15)) ^ ((w2 >>> 19) | (w2 << 13)) ^ (w2 >>> 10);
      W[i] = (W[i - 16] + s0 + W[i - 7] + s1) | 0;
    }
    let a = state[0] | 0, b = state[1] | 0, c = state[2] | 0, d = state[3] | 0;
    let e = state[4] | 0, f = state[5] | 0, g = state[6] | 0, h = state[7] | 0;
    for (let i = 0; i < 64; i++) {
      const s1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
      const t1 = (h + s1 + ((e & f) ^ (~e & g)) + K[i] + W[i]) | 0;
      const s0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
      const t2 = (s0 + ((a & b) ^ (a & c) ^ (b & c))) | 0;
      h = g;
      g = f;
      f = e;
      e = (d + t1) | 0;
      d = c;
      c = b;
      b = a;
      a = (t1 + t2) | 0;
    }
    state[0] += a;
    state[1] += b;
    state[2] += c;
    state[3] += d;
    state[4] += e;
    state[5] += f;
    state[6] += g;
    state[7] += h;
  }
}

const TAIL = new Uint8Array(128);

function copyState(from: Int32Array, to: Int32Array): Int32Array {
  for (let i = 0; i < 8; i++) to[i] = from[i];
  return to;
}

/**
 * Hashes `length` bytes of `message` starting from `state`, after
 * `prefixLength` bytes were already hashed; leaves the digest in `state`.
 */
function finish(
  state: Int32Array,
  message: Uint8Array,
  length: number,
  prefixLength: number,
): void {
  const full = length & ~63;
  compress(state, message, 0, full >>> 6);
  const rest = length - full;
  const tail = rest < 56 ? 64 : 128;
  const scratch = TAIL;
  for (let i = 0; i < rest; i++) scratch[i] = message[full + i];
  scratch[rest] = 0x80;
  for (let i = rest + 1; i < tail - 8; i++) scratch[i] = 0;
  const bits = (prefixLength + length) * 8;
  const high = Math.floor(bits / 0x100000000), low = bits >>> 0;
  scratch[tail - 8] = high >>> 24, scratch[tail - 7] = high >>> 16;
  scratch[tail - 6] = high >>> 8, scratch[tail - 5] = high;
  scratch[tail - 4] = low >>> 24, scratch[tail - 3] = low >>> 16;
  scratch[tail - 2] = low >>> 8, scratch[tail - 1] = low;
  compress(state, scratch, 0, tail >>> 6);
}

function stateBytes(state: Int32Array, out: Uint8Array): Uint8Array {
  for (let i = 0; i < 8; i++) {
    const word = state[i];
    out[i * 4] = word >>> 24, out[i * 4 + 1] = word >>> 16;
    out[i * 4 + 2] = word >>> 8, out[i * 4 + 3] = word;
  }
  return out;
}

/** SHA-256 of `message`. */
export function sha256(message: Uint8Array): Uint8Array {
  const state = copyState(INITIAL, new Int32Array(8));
  finish(state, message, message.length, 0);
  return stateBytes(state, new Uint8Array(32));
}

const encoder = new TextEncoder();
let textBuffer = new Uint8Array(1024);

/** UTF-8 encodes `text` into a reused buffer; returns the byte length. */
function encodeText(text: string): number {
  if (textBuffer.length < text.length * 3) textBuffer = new Uint8Array(text.length * 3);
  return encoder.encodeInto(text, textBuffer).written;
}

/** HMAC-SHA256 with a fixed key; the key pads are hashed once, at construction. */
export class HmacSha256 {
  readonly #inner = copyState(INITIAL, new Int32Array(8));
  readonly #outer = copyState(INITIAL, new Int32Array(8));
  readonly #state = new Int32Array(8);
  readonly #innerDigest = new Uint8Array(32);

  constructor(key: Uint8Array) {
    const block = new Uint8Array(64);
    block.set(key.length > 64 ? sha256(key) : key);
    const pad = new Uint8Array(64);
    for (let i = 0; i < 64; i++) pad[i] = block[i] ^ 0x36;
    compress(this.#inner, pad, 0, 1);
    for (let i = 0; i < 64; i++) pad[i] = block[i] ^ 0x5c;
    compress(this.#outer, pad, 0, 1);
  }

  /** The 32-byte MAC of `message`. */
  digest(message: Uint8Array): Uint8Array {
    return stateBytes(this.#run(message, message.length), new Uint8Array(32));
  }

  /** The MAC of the UTF-8 bytes of `text`, as lower-case hex. */
  hexOfText(text: string): string {
    const length = encodeText(text);
    return stateHex(this.#run(textBuffer, length));
  }

  #run(message: Uint8Array, length: number): Int32Array {
    const state = this.#state;
    copyState(this.#inner, state);
    finish(state, message, length, 64);
    stateBytes(state, this.#innerDigest);
    copyState(this.#outer, state);
    finish(state, this.#innerDigest, 32, 64);
    return state;
  }
}

const SHARED_STATE = new Int32Array(8);

/** SHA-256 of the UTF-8 bytes of `text`, as lower-case hex. */
export function sha256HexOfText(text: string): string {
  const state = copyState(INITIAL, SHARED_STATE);
  finish(state, textBuffer, encodeText(text), 0);
  return stateHex(state);
}

function stateHex(state: Int32Array): string {
  let out = "";
  for (let i = 0; i < 8; i++) {
    const word = state[i];
    out += HEX[(word >>> 24) & 255] + HEX[(word >>> 16) & 255] + HEX[(word >>> 8) & 255] +
      HEX[word & 255];
  }
  return out;
}

/** Lower-case hex of `bytes`. */
export function toHex(bytes: Uint8Array): string {
  let out = "";
  for (let i = 0; i < bytes.length; i++) out += HEX[bytes[i]];
  return out;
}

/** UTF-8 bytes of `text`. */
export function utf8(text: string): Uint8Array {
  return encoder.encode(text);
}
