/**
 * The masking strategies of the `mask` transform: each compiles a rule into
 * a function from a clear value to its masked form. Null stays null.
 *
 * @module
 */
import { HmacSha256, sha256HexOfText, toHex, utf8 } from "../_sha256.ts";
import { stableStringify, typeName } from "../_shared.ts";
import { type AlphabetName, ALPHABETS, FF1, hexBytes, preserving } from "./_ff1.ts";

/** Every strategy, in the order the docs list them. */
export const STRATEGIES = [
  "hmac",
  "hash",
  "redact",
  "null",
  "truncate",
  "partial",
  "email",
  "date",
  "number",
  "fpe",
] as const;

/** A masking strategy name. */
export type Strategy = typeof STRATEGIES[number];

/** How one field is masked, with every option resolved. */
export interface MaskRule {
  readonly field: string;
  readonly strategy: Strategy;
  readonly replacement?: string;
  readonly key?: string;
  readonly salt?: string;
  readonly maskChar: string;
  readonly keepFirst: number;
  readonly keepLast: number;
  /** partial/email: a fixed number of mask characters, hiding the original length. */
  readonly maskLength?: number;
  readonly length?: number;
  readonly granularity: "month" | "year";
  readonly bucketSize?: number;
  readonly alphabet: AlphabetName;
  readonly tweak?: string;
}

/** A compiled rule: masks one value, throwing an Error that never quotes it. */
export type Masker = (value: unknown) => unknown;

/** Compiles a rule (validated by the config schema) into a masker. */
export function compileRule(rule: MaskRule): Masker {
  const fail = (value: unknown, why: string): never => {
    throw new Error(
      `mask: cannot apply ${rule.strategy} to field "${rule.field}" (${typeName(value)}): ${why}`,
    );
  };
  const nullable = (mask: Masker): Masker => (value) =>
    value === null || value === undefined ? null : mask(value);
  // truncate, partial and email work on characters: an array is masked
  // element by element (nulls kept); a JSON object's or bytes' text form
  // would come out as debris of its syntax, so those are refused.
  const textual = (mask: (clear: string) => string): Masker => {
    const apply: Masker = (value) => {
      if (value === null || value === undefined) return null;
      if (Array.isArray(value)) return value.map(apply);
      if (ArrayBuffer.isView(value) || (typeof value === "object" && !(value instanceof Date))) {
        fail(
          value,
          "it works on text (or an array of text); mask JSON or binary values with hmac, hash, redact or null",
        );
      }
      return mask(text(value));
    };
    return apply;
  };
  switch (rule.strategy) {
    case "hmac": {
      const mac = new HmacSha256(utf8(rule.key!));
      return nullable((value) =>
        ArrayBuffer.isView(value) ? toHex(mac.digest(bytesOf(value))) : mac.hexOfText(text(value))
      );
    }
    case "hash": {
      const salt = rule.salt!;
      return nullable((value) => sha256HexOfText(salt + text(value)));
    }
    case "redact":
      return nullable((value) => redact(value, rule.replacement, fail));
    case "null":
      return () => null;
    case "truncate":
      return textual((clear) => Array.from(clear).slice(0, rule.length!).join(""));
    case "partial":
      return textual((clear) =>
        partial(clear, rule.keepFirst, rule.keepLast, rule.maskChar, rule.maskLength)
      );
    case "email":
      return textual((clear) => email(clear, rule));
    case "date":
      return nullable((value) => generalizeDate(value, rule.granularity, fail));
    case "number":
      return nullable((value) => bucket(value, rule.bucketSize!, fail));
    case "fpe": {
      const cipher = new FF1(
        hexBytes(rule.key!),
        ALPHABETS[rule.alphabet],
        hexBytes(rule.tweak ?? ""),
      );
      return nullable((value) => {
        // Booleans, rows, bytes and Dates have no digits of their own to
        // encrypt in place: refused rather than encrypted as some text form.
        const readable = typeof value === "string" || typeof value === "bigint" ||
          (typeof value === "number" && Number.isFinite(value));
        if (!readable) fail(value, "expected a string or a finite number");
        const clear = text(value);
        let count = 0;
        for (const char of clear) if (cipher.alphabet.includes(char)) count++;
        if (count < cipher.minLength) {
          fail(
            value,
            `it has ${count} characters of the ${rule.alphabet} alphabet; FF1 needs at least ${cipher.minLength}`,
          );
        }
        return preserving(clear, cipher, true);
      });
    }
  }
}

/** The text a value is masked as: strings as they are, Dates in ISO 8601, rows as sorted JSON. */
function text(value: unknown): string {
  if (typeof value === "string") return value;
  if (value instanceof Date) return value.toISOString();
  if (typeof value === "object") return stableStringify(value);
  return String(value);
}

function bytesOf(value: ArrayBufferView): Uint8Array {
  return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
}

/**
 * Keeps `first` and `last` characters; masks all of a value too short to
 * keep them. With `fixed`, the masked part is that many characters whatever
 * its length, so the output does not tell how long the value was.
 */
export function partial(
  value: string,
  first: number,
  last: number,
  maskChar: string,
  fixed?: number,
): string {
  // Counted in characters, so a character outside the BMP is kept or masked
  // whole; text without surrogates (nearly all) needs no array of characters.
  if (SURROGATE.test(value)) {
    const chars = Array.from(value);
    if (chars.length <= first + last) return maskChar.repeat(fixed ?? chars.length);
    const masked = maskChar.repeat(fixed ?? chars.length - first - last);
    return chars.slice(0, first).join("") + masked + chars.slice(chars.length - last).join("");
  }
  const length = value.length;
  if (length <= first + last) return maskChar.repeat(fixed ?? length);
  const masked = maskChar.repeat(fixed ?? length - first - last);
  return value.slice(0, first) + masked + value.slice(length - last);
}

const SURROGATE = /[\uD800-\uDFFF]/;

/** A host name: labels of letters, digits and inner hyphens, separated by dots. */
const DOMAIN =
  /^[\p{L}\p{N}](?:[\p{L}\p{N}-]*[\p{L}\p{N}])?(?:\.[\p{L}\p{N}](?:[\p{L}\p{N}-]*[\p{L}\p{N}])?)*$/u;

function email(value: string, rule: MaskRule): string {
  const at = value.lastIndexOf("@");
  // Only a domain stays in clear: free text after it ("a@b.com (cell 555-0100)") is masked whole.
  if (at <= 0 || !DOMAIN.test(value.slice(at + 1))) {
    return rule.maskChar.repeat(rule.maskLength ?? Array.from(value).length);
  }
  return partial(value.slice(0, at), rule.keepFirst, 0, rule.maskChar, rule.maskLength) +
    value.slice(at);
}

function redact(
  value: unknown,
  replacement: string | undefined,
  fail: (value: unknown, why: string) => never,
): unknown {
  if (replacement === undefined) {
    // Kafka MaskField: the empty value of the type.
    if (typeof value === "string") return "";
    if (typeof value === "number") return 0;
    if (typeof value === "bigint") return 0n;
    if (typeof value === "boolean") return false;
    if (value instanceof Date) return new Date(0);
    if (Array.isArray(value)) return [];
    if (ArrayBuffer.isView(value)) return new Uint8Array();
    return {};
  }
  if (typeof value === "string") return replacement;
  if (typeof value === "number") {
    const number = Number(replacement);
    return Number.isFinite(number) ? number : fail(value, "the replacement is not a number");
  }
  if (typeof value === "bigint") {
    try {
      return BigInt(replacement);
    } catch {
      return fail(value, "the replacement is not an integer");
    }
  }
  return fail(value, "only strings and numbers can take a replacement; omit it to empty the value");
}

const ISO_DATE = /^(\d{4,})-(\d{2})(?:-(\d{2}))?/;

function generalizeDate(
  value: unknown,
  granularity: "month" | "year",
  fail: (value: unknown, why: string) => never,
): unknown {
  const start = (year: number, month: number) =>
    new Date(Date.UTC(year, granularity === "year" ? 0 : month, 1));
  if (value instanceof Date) {
    if (Number.isNaN(value.getTime())) fail(value, "invalid Date");
    return start(value.getUTCFullYear(), value.getUTCMonth());
  }
  if (typeof value === "number") {
    if (!Number.isFinite(value)) fail(value, "not a finite number of epoch milliseconds");
    const date = new Date(value);
    return start(date.getUTCFullYear(), date.getUTCMonth()).getTime();
  }
  if (typeof value === "string") {
    const match = ISO_DATE.exec(value);
    if (!match) return fail(value, "not an ISO 8601 date");
    return `${match[1]}-${granularity === "year" ? "01" : match[2]}-01`;
  }
  return fail(value, "expected a Date, an ISO 8601 string or epoch milliseconds");
}

function bucket(
  value: unknown,
  size: number,
  fail: (value: unknown, why: string) => never,
): unknown {
  if (typeof value === "number") {
    // NaN and ±Infinity would come out as they went in.
    return Number.isFinite(value)
      ? Math.floor(value / size) * size
      : fail(value, "not a finite number");
  }
  if (typeof value === "bigint" && Number.isInteger(size)) {
    const step = BigInt(size);
    const quotient = value / step;
    return (value < 0n && value % step !== 0n ? quotient - 1n : quotient) * step;
  }
  if (typeof value === "string" && value.trim() !== "" && Number.isFinite(Number(value))) {
    return String(Math.floor(Number(value) / size) * size);
  }
  return fail(value, "not a number");
}
