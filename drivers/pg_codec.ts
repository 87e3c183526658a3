/**
 * The one value codec between PostgreSQL and Sluice records, used by every
 * PostgreSQL source (`postgres_query`, `postgres_cdc` snapshot and stream)
 * and by the postgres sink. A value is decoded once where it enters (text
 * from COPY, raw results or pgoutput) and encoded once where it leaves (COPY
 * text for the target column's type).
 *
 * | PostgreSQL                      | Sluice value (default modes)                      |
 * | ------------------------------- | ------------------------------------------------- |
 * | boolean                         | boolean                                           |
 * | smallint, integer, oid          | number                                            |
 * | bigint                          | number when exact in a double, else string        |
 * | real, double precision          | number (NaN, ±Infinity and -0 as strings)         |
 * | bytea                           | Uint8Array (base64 only in JSON, as Debezium)     |
 * | arrays                          | arrays of the element values (null elements)      |
 * | arrays with explicit bounds     | PostgreSQL's text (`[0:1]={7,8}`), so they stay   |
 * | domains                         | as their base type                                |
 * | everything else                 | PostgreSQL's text: numeric, dates, json, uuid…    |
 *
 * Debezium's value modes are options ({@linkcode ValueModes}). The encoder
 * side decodes what the JSON edge encoded, by the target column's type:
 * base64 text into a bytea column (and bytea array elements) becomes bytes,
 * a number into a date column is days since 1970 (`time.precision.mode`
 * adaptive), a bigint into a pg_lsn column is an LSN.
 *
 * @module
 */
import type { Sql } from "./postgres.ts";
import { type PgType, PgTypes } from "./pg_types.ts";
import {
  decodeBase64,
  decodeBytea,
  type Decoder,
  encodeArray,
  encodeBytea,
  type Encoder,
  encodeText,
  parseArray,
} from "./pg_text.ts";

/** How numeric values are represented (Debezium's `decimal.handling.mode`). */
export type DecimalMode = "precise" | "string" | "double";

/** How temporal values are represented (Debezium's `time.precision.mode`). */
export type TimeMode = "isostring" | "adaptive" | "adaptive_time_microseconds" | "connect";

/** How bytea values are represented (Debezium's `binary.handling.mode`). */
export type BinaryMode = "bytes" | "base64" | "base64-url-safe";

/** Debezium's value modes, as options of the codec. */
export interface ValueModes {
  /** precise and string keep PostgreSQL's exact decimal text; double makes numbers. */
  readonly decimal: DecimalMode;
  /** isostring keeps PostgreSQL's text; the others are Debezium's numeric encodings. */
  readonly time: TimeMode;
  /** bytes keeps Uint8Array (base64 in JSON); base64 modes make strings at once. */
  readonly binary: BinaryMode;
}

/** The lossless defaults. */
export const DEFAULT_MODES: ValueModes = { decimal: "precise", time: "isostring", binary: "bytes" };

/** A column's type, as pgoutput's Relation message or `pg_attribute` gives it. */
export interface ColumnType {
  readonly typeOid: number;
  /** `atttypmod`; -1 when none. */
  readonly typeModifier?: number;
}

const BOOL = 16, BYTEA = 17, INT8 = 20, INT2 = 21, INT4 = 23, OID = 26, FLOAT4 = 700;
const FLOAT8 = 701, NUMERIC = 1700, DATE = 1082, TIME = 1083, TIMESTAMP = 1114;
const TIMESTAMPTZ = 1184, TIMETZ = 1266, PG_LSN = 3220;

/**
 * Decoders and encoders for the columns of one database, from one cached
 * view of its `pg_type`.
 */
export class PgCodec {
  readonly #types: PgTypes;
  readonly #modes: ValueModes;

  constructor(sql: Pick<Sql, "unsafe">, modes: Partial<ValueModes> = {}) {
    this.#types = new PgTypes(sql);
    this.#modes = { ...DEFAULT_MODES, ...modes };
  }

  /** One decoder per column, in order: PostgreSQL text → Sluice value. */
  async decoders(columns: readonly ColumnType[]): Promise<Decoder[]> {
    await this.#types.load(columns.map((c) => c.typeOid));
    return columns.map((c) => this.#decoder(c.typeOid, c.typeModifier ?? -1, 0));
  }

  /** One encoder per column, in order: Sluice value → PostgreSQL input text. */
  async encoders(columns: readonly ColumnType[]): Promise<Encoder[]> {
    await this.#types.load(columns.map((c) => c.typeOid));
    return columns.map((c) => this.#encoder(c.typeOid, 0));
  }

  #decoder(oid: number, modifier: number, depth: number): Decoder {
    const type = this.#types.get(oid);
    if (type && depth < 8) {
      if (type.base !== 0) return this.#decoder(type.base, type.baseModifier, depth + 1);
      if (isArray(type)) {
        return arrayDecoder(this.#decoder(type.element, modifier, depth + 1), type.delimiter);
      }
    }
    return this.#scalarDecoder(oid, modifier);
  }

  #scalarDecoder(oid: number, modifier: number): Decoder {
    if (oid === NUMERIC && this.#modes.decimal === "double") return decodeFloat;
    if (oid === BYTEA && this.#modes.binary !== "bytes") {
      const alphabet = this.#modes.binary === "base64" ? "base64" : "base64url";
      return (text) => decodeBytea(text).toBase64({ alphabet });
    }
    if (this.#modes.time !== "isostring") {
      const decoder = temporalDecoder(oid, modifier, this.#modes.time);
      if (decoder) return decoder;
    }
    return scalarDecoder(oid);
  }

  #encoder(oid: number, depth: number): Encoder {
    const type = this.#types.get(oid);
    if (type && depth < 8) {
      if (type.base !== 0) return this.#encoder(type.base, depth + 1);
      if (isArray(type)) return arrayEncoder(this.#encoder(type.element, depth + 1));
      if (type.name === "hstore") return encodeHstoreValue;
    }
    switch (oid) {
      case BYTEA:
        return encodeByteaValue;
      case DATE:
        return encodeDateValue;
      case NUMERIC:
        return encodeNumericValue;
      case PG_LSN:
        return (value) => typeof value === "bigint" ? formatLsn(value) : encodeText(value);
      default:
        return encodeText;
    }
  }
}

function isArray(type: PgType): boolean {
  return type.category === "A" && type.element !== 0;
}

/** The decoder of a scalar type OID with the default (lossless) modes. */
export function scalarDecoder(typeOid: number): Decoder {
  switch (typeOid) {
    case BOOL:
      return (text) => text === "t" || text === "true";
    case INT2:
    case INT4:
    case OID:
      return Number;
    case INT8:
      return (text) => {
        const value = Number(text);
        return Number.isSafeInteger(value) ? value : text;
      };
    case FLOAT4:
    case FLOAT8:
      return decodeFloat;
    case BYTEA:
      return decodeBytea;
    default:
      return (text) => text;
  }
}

/** A number when finite and not -0 (JSON has no -0, NaN or Infinity); else the text. */
function decodeFloat(text: string): unknown {
  const value = Number(text);
  return Number.isFinite(value) && (value !== 0 || text[0] !== "-") ? value : text;
}

/**
 * A decoder for an array type whose elements decode with `element`. An
 * array with explicit bounds (`[0:1]={7,8}`) stays text: a JavaScript array
 * cannot carry its bounds.
 */
export function arrayDecoder(element: Decoder, delimiter = ","): Decoder {
  return (text) => text[0] === "[" ? text : parseArray(text, element, delimiter);
}

function arrayEncoder(element: Encoder): Encoder {
  return (value) => {
    if (Array.isArray(value)) return encodeArray(value, element);
    return encodeText(value);
  };
}

/** bytea: bytes, bytea's own hex text (`\x…`), or the base64 JSON carried them as. */
function encodeByteaValue(value: unknown): string | null {
  if (value instanceof Uint8Array) return encodeBytea(value);
  if (typeof value === "string") {
    return value.startsWith("\\x") ? value : encodeBytea(decodeBase64(value));
  }
  return encodeText(value);
}

/** numeric: Debezium's `decimal.handling.mode=string` names infinities as Java does. */
function encodeNumericValue(value: unknown): string | null {
  if (value === "POSITIVE_INFINITY") return "Infinity";
  if (value === "NEGATIVE_INFINITY") return "-Infinity";
  return encodeText(value);
}

/**
 * hstore: a map (Debezium's `hstore.handling.mode=map`) or its JSON text
 * (Debezium's default `json` mode) becomes hstore text; hstore's own text
 * (which never starts with `{`) passes.
 */
function encodeHstoreValue(value: unknown): string | null {
  let map = value;
  if (typeof value === "string" && value.startsWith("{")) {
    try {
      map = JSON.parse(value);
    } catch {
      return value;
    }
  }
  if (map === null || typeof map !== "object" || Array.isArray(map)) return encodeText(value);
  const quote = (text: string) => `"${text.replaceAll("\\", "\\\\").replaceAll('"', '\\"')}"`;
  return Object.entries(map as Record<string, unknown>)
    .map(([key, item]) => `${quote(key)}=>${item === null ? "NULL" : quote(String(item))}`)
    .join(", ");
}

/** date: a number is days since 1970-01-01 (Debezium's io.debezium.time.Date). */
function encodeDateValue(value: unknown): string | null {
  if (typeof value !== "number" || !Number.isInteger(value)) return encodeText(value);
  const date = new Date(value * DAY_MS);
  const year = date.getUTCFullYear();
  const pad = (n: number, width = 2) => String(n).padStart(width, "0");
  const monthDay = `${pad(date.getUTCMonth() + 1)}-${pad(date.getUTCDate())}`;
  return year > 0 ? `${pad(year, 4)}-${monthDay}` : `${pad(1 - year, 4)}-${monthDay} BC`;
}

/** Formats a bigint LSN as PostgreSQL prints it (`0/16B3748`). */
export function formatLsn(lsn: bigint): string {
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${
    (lsn & 0xffffffffn).toString(16).toUpperCase()
  }`;
}

/**
 * The source position of a Debezium change event's `source` block as an
 * integer: the commit LSN of its transaction (first element of
 * `source.sequence`, a JSON array of decimal strings), else `source.lsn`.
 * Undefined when it has neither. Used where events enter from JSON; inside
 * the process, records carry the position as a bigint.
 */
export function changePosition(source: unknown): bigint | undefined {
  if (source === null || typeof source !== "object") return undefined;
  const { sequence, lsn } = source as { sequence?: unknown; lsn?: unknown };
  if (typeof sequence === "string") {
    const match = /^\s*\[\s*"?(\d+)"?\s*[,\]]/.exec(sequence);
    if (match) return BigInt(match[1]);
  }
  if (typeof lsn === "number" && Number.isSafeInteger(lsn) && lsn >= 0) return BigInt(lsn);
  if (typeof lsn === "string" && /^\d+$/.test(lsn)) return BigInt(lsn);
  return undefined;
}

const DAY_MS = 86_400_000;

/**
 * Debezium's encodings of temporal types (for consumers written for
 * Debezium): dates as days since the epoch, times and timestamps as
 * milliseconds or microseconds, timestamptz and timetz as ISO-8601 strings
 * in UTC. Infinite values stay PostgreSQL's text.
 */
function temporalDecoder(oid: number, modifier: number, mode: TimeMode): Decoder | undefined {
  // The fractional-second precision of time and timestamp columns; -1 means 6.
  const precision = modifier < 0 ? 6 : modifier;
  const micros = mode === "adaptive_time_microseconds" || (mode === "adaptive" && precision > 3);
  switch (oid) {
    case DATE:
      return (text) => parseDate(text) ?? text;
    case TIME:
      return (text) => {
        const value = parseTime(text);
        if (value === undefined) return text;
        return micros ? value : Math.floor(value / 1000);
      };
    case TIMESTAMP:
      return (text) => {
        const value = parseTimestamp(text);
        if (value === undefined) return text;
        const inMicros = mode !== "connect" && precision > 3;
        if (Number.isSafeInteger(value)) return inMicros ? value : Math.floor(value / 1000);
        // Past ±2^53 µs (before 1685 or after 2255, such as the 9999-12-31
        // sentinels of slowly changing dimensions) a double is off by up to
        // 64 µs: the exact integer goes as a decimal string, as bigint does.
        const micros = timestampMicros(text)!;
        const exact = inMicros ? micros : floorDivide(micros, 1000n);
        const number = Number(exact);
        return Number.isSafeInteger(number) ? number : String(exact);
      };
    case TIMESTAMPTZ:
      return (text) => {
        // The sessions run in UTC, so the offset is +00.
        const match = /^(\d{4,}-\d\d-\d\d) (\d\d:\d\d:\d\d(?:\.\d+)?)\+00$/.exec(text);
        return match ? `${match[1]}T${match[2]}Z` : text;
      };
    case TIMETZ:
      return timetzInUtc;
  }
  return undefined;
}

/** `10:11:12.5+05:30` → `04:41:12.5Z`. */
export function timetzInUtc(text: string): string {
  const match = /^(\d\d):(\d\d):(\d\d)(\.\d+)?([+-])(\d\d)(?::(\d\d))?(?::(\d\d))?$/.exec(text);
  if (!match) return text;
  const offset = (Number(match[6]) * 3600 + Number(match[7] ?? 0) * 60 +
    Number(match[8] ?? 0)) * (match[5] === "+" ? 1 : -1);
  let seconds = Number(match[1]) * 3600 + Number(match[2]) * 60 + Number(match[3]) - offset;
  seconds = ((seconds % 86400) + 86400) % 86400;
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${pad(Math.floor(seconds / 3600))}:${pad(Math.floor(seconds / 60) % 60)}:${
    pad(seconds % 60)
  }${match[4] ?? ""}Z`;
}

/** Days since 1970-01-01 of an ISO date (`2024-01-31`, `0044-03-15 BC`). */
export function parseDate(text: string): number | undefined {
  const match = /^(\d{4,})-(\d\d)-(\d\d)( BC)?$/.exec(text);
  if (!match) return undefined;
  // Calendar arithmetic: PostgreSQL's dates reach past a JavaScript Date's range.
  const month = Number(match[2]);
  const year = (match[4] ? 1 - Number(match[1]) : Number(match[1])) - (month <= 2 ? 1 : 0);
  const era = Math.floor(year / 400);
  const yearOfEra = year - era * 400;
  const dayOfYear = Math.floor((153 * (month + (month > 2 ? -3 : 9)) + 2) / 5) +
    Number(match[3]) - 1;
  const dayOfEra = yearOfEra * 365 + Math.floor(yearOfEra / 4) - Math.floor(yearOfEra / 100) +
    dayOfYear;
  return era * 146097 + dayOfEra - 719468;
}

/** Microseconds since midnight of `HH:MM:SS[.ffffff]`. */
export function parseTime(text: string): number | undefined {
  const match = /^(\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?$/.exec(text);
  if (!match) return undefined;
  const seconds = Number(match[1]) * 3600 + Number(match[2]) * 60 + Number(match[3]);
  return seconds * 1_000_000 + Number((match[4] ?? "").padEnd(6, "0"));
}

/** {@linkcode parseTimestamp} exactly, for values past 2^53 µs. */
export function timestampMicros(text: string): bigint | undefined {
  const match = /^(\d{4,}-\d\d-\d\d) (\d\d:\d\d:\d\d(?:\.\d{1,6})?)( BC)?$/.exec(text);
  if (!match) return undefined;
  const days = parseDate(match[1] + (match[3] ?? ""));
  const time = parseTime(match[2]);
  if (days === undefined || time === undefined) return undefined;
  return BigInt(days) * 86_400_000_000n + BigInt(time);
}

function floorDivide(value: bigint, divisor: bigint): bigint {
  const quotient = value / divisor;
  return value % divisor < 0n ? quotient - 1n : quotient;
}

/** Microseconds since the epoch of `YYYY-MM-DD HH:MM:SS[.ffffff][ BC]`. */
export function parseTimestamp(text: string): number | undefined {
  const match = /^(\d{4,}-\d\d-\d\d) (\d\d:\d\d:\d\d(?:\.\d{1,6})?)( BC)?$/.exec(text);
  if (!match) return undefined;
  const days = parseDate(match[1] + (match[3] ?? ""));
  const time = parseTime(match[2]);
  if (days === undefined || time === undefined) return undefined;
  return days * DAY_MS * 1000 + time;
}
