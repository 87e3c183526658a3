/**
 * Format-preserving encryption with FF1 (NIST SP 800-38G, Rev. 1), AES as
 * the block cipher. Used by the `fpe` strategy of the `mask` transform, and
 * exported so that whoever holds the key can decrypt masked values.
 *
 * @example Decrypting a masked national ID
 * ```ts
 * import { fpeDecrypt, fpeEncrypt } from "./_ff1.ts";
 *
 * const key = "2b7e151628aed2a6abf7158809cf4f3c";
 * const masked = fpeEncrypt("19850614-1234", { key, alphabet: "digits" });
 * if (masked.length !== 13 || masked[8] !== "-") throw new Error("format lost");
 * if (fpeDecrypt(masked, { key, alphabet: "digits" }) !== "19850614-1234") {
 *   throw new Error("round trip failed");
 * }
 * ```
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { type Cipheriv, createCipheriv } from "node:crypto";

/** The alphabets FF1 can encrypt; characters outside the alphabet stay in place, in clear. */
export const ALPHABETS = {
  /** Radix 10. */
  digits: "0123456789",
  /** Radix 36, lower-case letters (the alphabet of NIST's radix-36 samples). */
  lowercase: "0123456789abcdefghijklmnopqrstuvwxyz",
  /** Radix 36, upper-case letters. */
  uppercase: "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ",
  /** Radix 62: digits, lower-case, then upper-case letters. */
  alphanumeric: "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
} as const;

/** The name of an alphabet in {@linkcode ALPHABETS}. */
export type AlphabetName = keyof typeof ALPHABETS;

/** The FF1 cipher over one alphabet with one key and tweak. */
export class FF1 {
  readonly alphabet: string;
  readonly radix: number;
  /** The fewest numerals FF1 accepts: radix^minLength ≥ 1,000,000 (SP 800-38G Rev. 1). */
  readonly minLength: number;
  readonly #cipher: Cipheriv;
  readonly #tweak: Uint8Array;
  readonly #digits = new Map<string, number>();
  readonly #p = new Map<number, Uint8Array>();

  /**
   * @param key AES key of 16, 24 or 32 bytes.
   * @param alphabet The numerals, in order; its length is the radix (2–65536).
   * @param tweak Optional public tweak bytes.
   */
  constructor(key: Uint8Array, alphabet: string, tweak: Uint8Array = new Uint8Array()) {
    if (![16, 24, 32].includes(key.length)) {
      throw new Error(`FF1 needs an AES key of 16, 24 or 32 bytes, not ${key.length}`);
    }
    const numerals = [...alphabet];
    if (numerals.length < 2 || new Set(numerals).size !== numerals.length) {
      throw new Error("FF1 needs an alphabet of at least two distinct characters");
    }
    this.alphabet = alphabet;
    this.radix = numerals.length;
    numerals.forEach((char, index) => this.#digits.set(char, index));
    this.minLength = Math.max(2, Math.ceil(6 / Math.log10(this.radix)));
    this.#tweak = tweak;
    this.#cipher = createCipheriv(`aes-${key.length * 8}-ecb`, key, null);
    this.#cipher.setAutoPadding(false);
  }

  /** Encrypts a string of numerals of this alphabet. */
  encrypt(numerals: string): string {
    return this.#run(numerals, true);
  }

  /** Decrypts a string produced by {@linkcode FF1.encrypt}. */
  decrypt(numerals: string): string {
    return this.#run(numerals, false);
  }

  #run(text: string, encrypt: boolean): string {
    const x = [...text].map((char) => {
      const digit = this.#digits.get(char);
      if (digit === undefined) throw new Error(`"${char}" is not in the FF1 alphabet`);
      return digit;
    });
    const n = x.length;
    if (n < this.minLength) {
      throw new Error(`FF1 needs at least ${this.minLength} numerals in radix ${this.radix}`);
    }
    const radix = BigInt(this.radix);
    const u = Math.floor(n / 2), v = n - u;
    let a = x.slice(0, u), b = x.slice(u);
    const byteCount = Math.ceil(Math.ceil(v * Math.log2(this.radix)) / 8);
    const d = 4 * Math.ceil(byteCount / 4) + 4;
    const t = this.#tweak.length;
    const q = new Uint8Array(t + mod(-t - byteCount - 1, 16) + 1 + byteCount);
    q.set(this.#tweak);
    const macOfP = this.#macOfP(u, n);
    const modU = radix ** BigInt(u), modV = radix ** BigInt(v);
    for (let step = 0; step < 10; step++) {
      const i = encrypt ? step : 9 - step;
      q[q.length - byteCount - 1] = i;
      writeBigInt(q, q.length - byteCount, byteCount, this.#num(encrypt ? b : a));
      const y = this.#prf(macOfP, q, d);
      const m = i % 2 === 0 ? u : v;
      const modulus = i % 2 === 0 ? modU : modV;
      if (encrypt) {
        const c = mod(this.#num(a) + y, modulus);
        a = b;
        b = this.#str(c, m);
      } else {
        const c = mod(this.#num(b) - y, modulus);
        b = a;
        a = this.#str(c, m);
      }
    }
    const numerals = [...this.alphabet];
    return [...a, ...b].map((digit) => numerals[digit]).join("");
  }

  /** CBC-MAC state after the fixed block P, cached per length. */
  #macOfP(u: number, n: number): Uint8Array {
    const key = u * 0x100000000 + n;
    let cached = this.#p.get(key);
    if (!cached) {
      const p = new Uint8Array(16);
      p.set([1, 2, 1, (this.radix >>> 16) & 0xff, (this.radix >>> 8) & 0xff, this.radix & 0xff]);
      p[6] = 10;
      p[7] = u % 256;
      new DataView(p.buffer).setUint32(8, n);
      new DataView(p.buffer).setUint32(12, this.#tweak.length);
      cached = this.#block(p);
      this.#p.set(key, cached);
    }
    return cached;
  }

  /** Steps ii–iv: R = PRF(P‖Q), S = R ‖ CIPH(R ⊕ [1]) ‖ …, y = NUM(S[0..d]). */
  #prf(macOfP: Uint8Array, q: Uint8Array, d: number): bigint {
    let state = macOfP;
    for (let offset = 0; offset < q.length; offset += 16) {
      const block = new Uint8Array(16);
      for (let j = 0; j < 16; j++) block[j] = state[j] ^ q[offset + j];
      state = this.#block(block);
    }
    const s = new Uint8Array(Math.ceil(d / 16) * 16);
    s.set(state);
    for (let j = 1; j * 16 < d; j++) {
      const block = state.slice();
      for (let k = 0; k < 4; k++) block[15 - k] ^= (j >>> (8 * k)) & 0xff;
      s.set(this.#block(block), j * 16);
    }
    return readBigInt(s, d);
  }

  #block(block: Uint8Array): Uint8Array {
    return new Uint8Array(this.#cipher.update(Buffer.from(block.buffer, block.byteOffset, 16)));
  }

  #num(digits: number[]): bigint {
    const radix = BigInt(this.radix);
    let value = 0n;
    for (const digit of digits) value = value * radix + BigInt(digit);
    return value;
  }

  #str(value: bigint, length: number): number[] {
    const radix = BigInt(this.radix);
    const digits = new Array<number>(length);
    for (let i = length - 1; i >= 0; i--) {
      digits[i] = Number(value % radix);
      value /= radix;
    }
    return digits;
  }
}

function mod<T extends number | bigint>(value: T, modulus: T): T {
  // deno-lint-ignore no-explicit-any
  const r = (value as any) % (modulus as any);
  // deno-lint-ignore no-explicit-any
  return (r < 0 ? r + (modulus as any) : r) as T;
}

function writeBigInt(target: Uint8Array, offset: number, length: number, value: bigint): void {
  for (let i = offset + length - 1; i >= offset; i--) {
    target[i] = Number(value & 0xffn);
    value >>= 8n;
  }
}

function readBigInt(bytes: Uint8Array, length: number): bigint {
  let value = 0n;
  for (let i = 0; i < length; i++) value = (value << 8n) | BigInt(bytes[i]);
  return value;
}

/** Options of {@linkcode fpeEncrypt} and {@linkcode fpeDecrypt}. */
export interface FpeOptions {
  /** AES key as hex: 32, 48 or 64 hex digits (AES-128, -192, -256). */
  readonly key: string;
  /** Which characters are encrypted; all others stay in place. */
  readonly alphabet: AlphabetName;
  /** Optional tweak as hex. */
  readonly tweak?: string;
}

/** Parses a hex string into bytes; throws on anything else. */
export function hexBytes(hex: string): Uint8Array {
  if (!/^(?:[0-9a-fA-F]{2})*$/.test(hex)) throw new Error("is not an even number of hex digits");
  return Uint8Array.from(hex.match(/../g) ?? [], (pair) => parseInt(pair, 16));
}

const ciphers = new Map<string, FF1>();

function cipherFor(options: FpeOptions): FF1 {
  const id = `${options.key}/${options.alphabet}/${options.tweak ?? ""}`;
  let cipher = ciphers.get(id);
  if (!cipher) {
    cipher = new FF1(
      hexBytes(options.key),
      ALPHABETS[options.alphabet],
      hexBytes(options.tweak ?? ""),
    );
    ciphers.set(id, cipher);
  }
  return cipher;
}

/**
 * Encrypts the characters of `text` that belong to the alphabet, leaving
 * every other character (dashes, spaces) where it was. Throws when fewer
 * than the FF1 minimum of alphabet characters are present.
 */
export function fpeEncrypt(text: string, options: FpeOptions): string {
  return preserving(text, cipherFor(options), true);
}

/** Reverses {@linkcode fpeEncrypt} with the same key, alphabet and tweak. */
export function fpeDecrypt(text: string, options: FpeOptions): string {
  return preserving(text, cipherFor(options), false);
}

/** Runs FF1 on the alphabet characters of `text`, keeping the others in place. */
export function preserving(text: string, cipher: FF1, encrypt: boolean): string {
  const chars = [...text];
  const positions: number[] = [];
  let numerals = "";
  chars.forEach((char, index) => {
    if (cipher.alphabet.includes(char)) {
      positions.push(index);
      numerals += char;
    }
  });
  const out = encrypt ? cipher.encrypt(numerals) : cipher.decrypt(numerals);
  const outChars = [...out];
  positions.forEach((position, i) => chars[position] = outChars[i]);
  return chars.join("");
}
