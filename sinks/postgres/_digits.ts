/**
 * Values a target column would round. PostgreSQL fits a value to a
 * `numeric(p,s)` column's scale, and a `timestamp(p)`, `timestamptz(p)`,
 * `time(p)`, `timetz(p)` or `interval(p)` column's fractional seconds, by
 * rounding it, on COPY and on casts alike, without a word: 1.2345 becomes
 * 1.23 in a `numeric(6,2)`, 10:00:00.7 becomes 10:00:01 in a
 * `timestamptz(0)`. The sink refuses such a value instead, as it refuses a
 * string longer than its `varchar(n)`, so that the record goes to the dead
 * letters (or stops the pipeline) rather than land changed.
 *
 * A `date` column drops a timestamp's time of day the same way
 * (`2026-01-01 10:00:00+00` becomes 2026-01-01): such a value is refused
 * too, and a date at midnight passes. A `real` or `double precision`
 * column keeps the nearest binary value: a decimal that would not read
 * back as written (`0.123456789` into a real) is refused. A `varchar(n)`
 * cuts a value longer by trailing spaces alone to its length (the SQL
 * standard) and refuses any other that is too long: the first is refused
 * here, the second is left to PostgreSQL's own error.
 *
 * Only columns whose modifier can drop digits are checked. Trailing zeros
 * are not digits lost (1.2300 fits `numeric(6,2)`). Values are checked as
 * the text they are written as: plain decimal numbers (with an exponent or
 * not), and times whose seconds are written `…:ss.ffffff` (PostgreSQL's and
 * ISO 8601's forms) or, in intervals, `n.nnnS`; other spellings pass as
 * they are. Rows of COPY text (PostgreSQL's own output) are checked the
 * same way, field by field ({@linkcode copyTextKeepsDigits}). The range
 * restriction of an interval (`interval day`) is not checked here: records
 * for such columns are checked as they are, and COPY text by PostgreSQL
 * itself ({@linkcode lossSql}).
 *
 * @module
 */
import { encodeText } from "../../drivers/pg_text.ts";

/** What a column keeps of a value's fractional digits. */
export interface DigitLimit {
  /**
   * `numeric`: decimal places (negative: tens, hundreds…); `seconds`:
   * fractional-second digits; `date`: a date column, which keeps no time of
   * day at all; `real`, `double`: binary floating point, which keeps what
   * its bits can (`digits` 0 for these three); `varchar`: characters of a
   * `varchar(n)`, which PostgreSQL cuts trailing spaces to.
   */
  readonly kind: "numeric" | "seconds" | "date" | "real" | "double" | "varchar";
  readonly digits: number;
  /** The column holds arrays of such values. */
  readonly array: boolean;
  /** The column's type without the modifier, e.g. `numeric` or `timestamp with time zone[]`. */
  readonly loose: string;
  /** The type with its modifier, e.g. `numeric(6,2)`. */
  readonly type: string;
}

/**
 * The limit of a column of `type` (its base type as `format_type` prints
 * it), or undefined when the type keeps every digit it can be given.
 */
export function digitLimit(type: string): DigitLimit | undefined {
  const brackets = /(\[\])+$/.exec(type)?.[0] ?? "";
  const scalar = type.slice(0, type.length - brackets.length);
  const array = brackets.length > 0;
  // A timestamp written to a date column loses its time of day without a word.
  if (scalar === "date") return { kind: "date", digits: 0, array, loose: type, type };
  // Longer by spaces only, a value is cut to fit by the SQL standard, without an error.
  const varchar = /^character varying\((\d+)\)$/.exec(scalar);
  if (varchar) return { kind: "varchar", digits: Number(varchar[1]), array, loose: type, type };
  // A decimal written to a binary float column reads back as the nearest value its bits hold.
  if (scalar === "real" || scalar === "double precision") {
    return { kind: scalar === "real" ? "real" : "double", digits: 0, array, loose: type, type };
  }
  const numeric = /^numeric\(\d+,(-?\d+)\)$/.exec(scalar);
  if (numeric) {
    return {
      kind: "numeric",
      digits: Number(numeric[1]),
      array,
      loose: `numeric${brackets}`,
      type,
    };
  }
  const time = /^(timestamp|time)\((\d)\) (with(?:out)? time zone)$/.exec(scalar);
  if (time && Number(time[2]) < 6) {
    const loose = `${time[1]} ${time[3]}${brackets}`;
    return { kind: "seconds", digits: Number(time[2]), array, loose, type };
  }
  // `interval(3)`, `interval day to second(3)`, `interval day` (which drops the hours).
  const interval = /^interval( [a-z ]+)?(?:\((\d)\))?$/.exec(scalar);
  if (interval && (interval[1] !== undefined || Number(interval[2] ?? 6) < 6)) {
    const digits = Number(interval[2] ?? 6);
    return { kind: "seconds", digits, array, loose: `interval${brackets}`, type };
  }
  return undefined;
}

/**
 * Whether `limit` keeps `value` (a record's value for the column) without
 * rounding; null fits.
 */
export function keepsDigits(limit: DigitLimit, value: unknown): boolean {
  if (value === null || value === undefined) return true;
  if (Array.isArray(value)) return value.every((item) => keepsDigits(limit, item));
  // A number is a double already: a double column keeps it, a real one when its bits fit.
  if (
    typeof value === "number" &&
    (limit.kind === "double" || (limit.kind === "real" && Math.fround(value) === value))
  ) return true;
  const text = encodeText(value);
  if (text === null) return true;
  if (limit.kind === "seconds") return secondsFit(text, limit.digits);
  if (limit.kind === "date") return !hasTimeOfDay(text);
  if (limit.kind === "varchar") {
    // An array's elements are judged one by one; its literal text is not.
    if (typeof value !== "string" || (limit.array && /^\s*\{/.test(value))) return true;
    return !cutSpaces(value, limit.digits);
  }
  const fits = limit.kind === "numeric"
    ? (item: string) => numberFits(item, limit.digits)
    : (item: string) => floatKeeps(item, limit.kind === "real");
  if (limit.array && /^\s*[[{]/.test(text)) {
    // An array literal: every element (NaN, Infinity and NULL pass).
    return (text.match(/[^{}[\],"\s:=]+/g) ?? []).every(fits);
  }
  return fits(text);
}

/** Whether `text` is longer than `length` characters by spaces alone (what PostgreSQL cuts). */
function cutSpaces(text: string, length: number): boolean {
  if (text.length <= length) return false;
  const characters = [...text];
  return characters.length > length && characters.slice(length).every((c) => c === " ");
}

/** A date followed by a time of day: hours, minutes, seconds and their fraction. */
const DATE_TIME = /\d-\d\d-\d\d(?:T| +)(\d\d):(\d\d)(?::(\d\d)(?:\.(\d+))?)?/g;

/** Whether `text` holds a date with a time other than midnight (in any zone). */
function hasTimeOfDay(text: string): boolean {
  for (const [, hours, minutes, seconds, fraction] of text.matchAll(DATE_TIME)) {
    if (/[1-9]/.test(hours + minutes + (seconds ?? "") + (fraction ?? ""))) return true;
  }
  return false;
}

const NUMBER = /^\s*[+-]?(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?\s*$/;

/** Whether the decimal `text` has no non-zero digit past `scale` places; non-numbers pass. */
function numberFits(text: string, scale: number): boolean {
  const match = NUMBER.exec(text.includes("_") ? text.replaceAll("_", "") : text);
  if (!match || (match[1] === "" && !match[2])) return true;
  const digits = match[1] + (match[2] ?? "");
  // The value is digits × 10^-places; each trailing zero dropped is one place less.
  let places = (match[2]?.length ?? 0) - Number(match[3] ?? 0);
  let end = digits.length;
  while (end > 0 && digits.charCodeAt(end - 1) === 48) {
    end--;
    places--;
  }
  return end === 0 || places <= scale;
}

/**
 * Whether the decimal `text` reads back the same from a `real` (`single`)
 * or `double precision` column: PostgreSQL prints a float as the shortest
 * decimal that reads back as its bits, so `0.1` into a real is `0.1`
 * again, while `0.123456789` becomes `0.12345679` and `16777217` becomes
 * `16777216`. Non-numbers, and values out of the type's range (which
 * PostgreSQL refuses itself), pass.
 */
function floatKeeps(text: string, single: boolean): boolean {
  const given = decimalOf(text);
  if (given === undefined) return true;
  const value = Number(text.includes("_") ? text.replaceAll("_", "") : text);
  if (!Number.isFinite(value)) return true;
  const bits = single ? Math.fround(value) : value;
  if (!Number.isFinite(bits) || (bits === 0 && value !== 0)) return true;
  // A real holds the value exactly (a float's bits spelt as a double), or
  // a double's shortest spelling: nothing is lost.
  if (bits === value && (single || decimalOf(String(bits)) === given)) return true;
  // The float's value to 1…9 (17) significant digits: PostgreSQL prints the
  // shortest that reads back, other writers (Java's Float.toString, as
  // Debezium sends a real) may print more; any of them names the same value.
  for (let precision = 1; precision <= (single ? 9 : 17); precision++) {
    if (decimalOf(bits.toPrecision(precision)) === given) return true;
  }
  return false;
}

/** A decimal number's digits and exponent, `-123e-2`, one spelling per value; undefined if none. */
function decimalOf(text: string): string | undefined {
  const match = NUMBER.exec(text.includes("_") ? text.replaceAll("_", "") : text);
  if (!match || (match[1] === "" && !match[2])) return undefined;
  let digits = (match[1] + (match[2] ?? "")).replace(/^0+/, "");
  let exponent = Number(match[3] ?? 0) - (match[2]?.length ?? 0);
  while (digits.endsWith("0")) {
    digits = digits.slice(0, -1);
    exponent++;
  }
  if (digits === "") return "0";
  return `${/^\s*-/.test(text) ? "-" : ""}${digits}e${exponent}`;
}

/** `…:ss.ffffff` (times, timestamps, intervals) or `n.nnnS` (ISO 8601 intervals). */
const SECONDS = /(?::\d+\.(\d+))|(?:\d\.(\d+)S)/g;

/** Whether every fraction of a second in `text` has at most `digits` non-zero-trailed digits. */
function secondsFit(text: string, digits: number): boolean {
  if (!text.includes(".")) return true;
  for (const match of text.matchAll(SECONDS)) {
    const fraction = match[1] ?? match[2];
    let end = fraction.length;
    while (end > digits && fraction.charCodeAt(end - 1) === 48) end--;
    if (end > digits) return false;
  }
  return true;
}

/**
 * Whether every value of COPY text `text` (lines of `fieldCount` fields) in
 * the fields `limits` names (field index → limit) fits its limit. Fields
 * hold no raw tab or newline (COPY escapes them), so each is found with
 * the native `indexOf`; only the checked fields become strings.
 */
export function copyTextKeepsDigits(
  text: Uint8Array,
  fieldCount: number,
  limits: ReadonlyMap<number, DigitLimit>,
): boolean {
  const last = Math.max(...limits.keys());
  const byField: (DigitLimit | undefined)[] = [];
  for (const [index, limit] of limits) byField[index] = limit;
  let start = 0;
  while (start < text.length) {
    let field = 0;
    for (; field <= last; field++) {
      const end = text.indexOf(field === fieldCount - 1 ? 10 : 9, start);
      if (end < 0) return true;
      const limit = byField[field];
      // `\N` is null.
      if (limit && !(end - start === 2 && text[start] === 92 && text[start + 1] === 78)) {
        const fits = plainFieldFits(limit, text, start, end) ??
          keepsDigits(limit, String.fromCharCode(...text.subarray(start, end)));
        if (!fits) return false;
      }
      start = end + 1;
    }
    if (field < fieldCount) {
      const newline = text.indexOf(10, start);
      if (newline < 0) return true;
      start = newline + 1;
    }
  }
  return true;
}

/**
 * The common cases of a COPY field without making a string: a plain
 * decimal number (digits, a sign, one point) for a numeric limit, a value
 * without a point for a seconds limit. Undefined: look at the text.
 */
function plainFieldFits(
  limit: DigitLimit,
  text: Uint8Array,
  start: number,
  end: number,
): boolean | undefined {
  if (limit.kind === "varchar") {
    // No more bytes than characters allowed: it fits. Else the decoded text
    // decides (escapes may count a character twice: at worst the chunk
    // goes as records, which judge exactly).
    if (end - start <= limit.digits) return true;
    return !cutSpaces(utf8Decoder.decode(text.subarray(start, end)), limit.digits);
  }
  let dot = -1;
  for (let i = start; i < end; i++) {
    if (text[i] === 46) {
      dot = i;
      break;
    }
  }
  if (dot < 0) return limit.kind === "seconds" || limit.digits >= 0 ? true : undefined;
  if (limit.kind !== "numeric" || limit.array) return undefined;
  for (let i = start; i < end; i++) {
    const byte = text[i];
    if ((byte < 48 || byte > 57) && i !== dot && !(i === start && (byte === 45 || byte === 43))) {
      return undefined;
    }
  }
  let last = end - 1;
  while (last > dot && text[last] === 48) last--;
  return last - dot <= limit.digits;
}

const utf8Decoder = new TextDecoder();

/** The message of a value `limit` would round (what PostgreSQL's own message would be). */
export function lostDigitsMessage(limit: DigitLimit, value: unknown): string {
  const text = Array.isArray(value) ? JSON.stringify(value) : encodeText(value);
  if (limit.kind === "varchar") {
    return `value "${text}" is longer than type ${limit.type} by trailing spaces, which ` +
      `PostgreSQL would cut without a word; widen the column or trim the value at the source`;
  }
  if (limit.kind === "real" || limit.kind === "double") {
    return `value "${text}" has more digits than type ${limit.type} keeps: PostgreSQL would ` +
      `store the nearest ${limit.kind === "real" ? "single" : "double"}-precision number; ` +
      `make the column ${limit.kind === "real" ? "double precision or " : ""}numeric, or ` +
      `round the value at the source`;
  }
  if (limit.kind === "date") {
    return `value "${text}" has a time of day, which type ${limit.type} drops: PostgreSQL ` +
      `would store the date alone; make the column timestamp or timestamptz, or cast the ` +
      `value to a date before the sink`;
  }
  if (limit.loose.startsWith("interval")) {
    return `value "${text}" does not fit type ${limit.type} whole: PostgreSQL would round it ` +
      `or drop the fields the type leaves out; widen the column or change the value at the source`;
  }
  const what = limit.kind === "numeric"
    ? `${limit.digits} decimal place${limit.digits === 1 ? "" : "s"}`
    : `${limit.digits} fractional-second digit${limit.digits === 1 ? "" : "s"}`;
  return `value "${text}" has more digits than type ${limit.type} keeps (${what}): ` +
    `PostgreSQL would round it; widen the column or round the value at the source`;
}

/**
 * SQL true when the text column `column` of alias `alias` holds a value
 * that `limit` would round (or, for intervals, cut to the type's fields):
 * the value read as the loose type and as the column's differ.
 */
export function lossSql(limit: DigitLimit, alias: string, column: string): string {
  const value = `${alias}.${column}`;
  return `${value}::${limit.loose} is distinct from ${value}::${limit.type}`;
}
