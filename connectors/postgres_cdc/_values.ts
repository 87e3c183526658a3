/**
 * Turns the text of a column value (from pgoutput or from the snapshot's
 * COPY) into the value a change event carries, following
 * `decimal.handling.mode` and `time.precision.mode`.
 *
 * The defaults keep every value lossless from PostgreSQL to PostgreSQL:
 * booleans, integers, floats, bytea and arrays decode as in
 * `drivers/pg_text.ts`; numeric, dates, times, intervals, json, uuid, enums
 * and everything else stay PostgreSQL's own text (the replication and
 * snapshot sessions run with TimeZone UTC, DateStyle ISO and IntervalStyle
 * postgres, so the text is stable).
 *
 * @module
 */
import type { Sql } from "../../drivers/postgres.ts";
import { arrayDecoder, type Decoder, scalarDecoder } from "../../drivers/pg_text.ts";

/** How numeric values are represented (Debezium's `decimal.handling.mode`). */
export type DecimalMode = "precise" | "string" | "double";

/** How temporal values are represented (Debezium's `time.precision.mode`). */
export type TimeMode = "isostring" | "adaptive" | "adaptive_time_microseconds" | "connect";

/** A column's type, as pgoutput's Relation message or `pg_attribute` gives it. */
export interface ColumnType {
  readonly typeOid: number;
  readonly typeModifier: number;
}

const NUMERIC = 1700, DATE = 1082, TIME = 1083, TIMESTAMP = 1114, TIMESTAMPTZ = 1184, TIMETZ = 1266;

interface TypeRow {
  oid: number;
  elem: number;
  category: string;
  delimiter: string;
  base: number;
  baseModifier: number;
}

/** Builds decoders for column types, looking arrays and domains up in `pg_type` once. */
export class ValueDecoders {
  readonly #sql: Sql;
  readonly #decimal: DecimalMode;
  readonly #time: TimeMode;
  readonly #types = new Map<number, TypeRow | null>();

  constructor(sql: Sql, decimal: DecimalMode, time: TimeMode) {
    this.#sql = sql;
    this.#decimal = decimal;
    this.#time = time;
  }

  /** One decoder per column, in order. */
  async for(columns: readonly ColumnType[]): Promise<Decoder[]> {
    const missing = [...new Set(columns.map((c) => c.typeOid))].filter((oid) =>
      !this.#types.has(oid)
    );
    if (missing.length > 0) await this.#load(missing);
    // Element and base types of what was just loaded.
    const more = new Set<number>();
    for (const oid of missing) {
      const row = this.#types.get(oid);
      if (row?.elem && !this.#types.has(row.elem)) more.add(row.elem);
      if (row?.base && !this.#types.has(row.base)) more.add(row.base);
    }
    if (more.size > 0) await this.#load([...more]);
    return columns.map((column) => this.#decoder(column.typeOid, column.typeModifier, 0));
  }

  async #load(oids: number[]): Promise<void> {
    const rows = await this.#sql<TypeRow[]>`
      select t.oid::int as oid, t.typelem::int as elem, t.typcategory as category,
             t.typdelim as delimiter, t.typbasetype::int as base,
             t.typtypmod::int as "baseModifier"
      from pg_type t where t.oid = any(${oids}::oid[])`;
    for (const oid of oids) this.#types.set(oid, null);
    for (const row of rows) this.#types.set(row.oid, row);
  }

  #decoder(oid: number, modifier: number, depth: number): Decoder {
    const row = this.#types.get(oid);
    if (row && depth < 4) {
      if (row.base !== 0) return this.#decoder(row.base, row.baseModifier, depth + 1);
      if (row.category === "A" && row.elem !== 0) {
        return arrayDecoder(this.#decoder(row.elem, modifier, depth + 1), row.delimiter);
      }
    }
    return this.#scalar(oid, modifier);
  }

  #scalar(oid: number, modifier: number): Decoder {
    if (oid === NUMERIC && this.#decimal === "double") {
      return (text) => {
        const value = Number(text);
        return Number.isFinite(value) ? value : text;
      };
    }
    if (this.#time !== "isostring") {
      const decoder = temporalDecoder(oid, modifier, this.#time);
      if (decoder) return decoder;
    }
    return scalarDecoder(oid);
  }
}

/**
 * Debezium's encodings of temporal types (for consumers written for
 * Debezium): dates as days since the epoch, times and timestamps as
 * milliseconds or microseconds, timestamptz and timetz as ISO-8601 strings
 * in UTC. Infinite values stay PostgreSQL's text.
 */
function temporalDecoder(oid: number, modifier: number, mode: TimeMode): Decoder | undefined {
  // The fractional-second precision of time and timestamp columns; -1 means 6.
  const precision = modifier < 0 ? 6 : modifier;
  const micros = mode === "adaptive_time_microseconds" ||
    (mode === "adaptive" && precision > 3);
  switch (oid) {
    case DATE:
      return (text) => {
        const days = parseDate(text);
        return days === undefined ? text : days;
      };
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
        return inMicros ? value : Math.floor(value / 1000);
      };
    case TIMESTAMPTZ:
      return (text) => {
        // The session runs in UTC, so the offset is +00.
        const match = /^(\d{4,}-\d\d-\d\d) (\d\d:\d\d:\d\d(?:\.\d+)?)\+00$/.exec(text);
        return match ? `${match[1]}T${match[2]}Z` : text;
      };
    case TIMETZ:
      return (text) => {
        const match = /^(\d\d):(\d\d):(\d\d)(\.\d+)?([+-])(\d\d)(?::(\d\d))?(?::(\d\d))?$/.exec(
          text,
        );
        if (!match) return text;
        const offset = (Number(match[6]) * 3600 + Number(match[7] ?? 0) * 60 +
          Number(match[8] ?? 0)) * (match[5] === "+" ? 1 : -1);
        let seconds = Number(match[1]) * 3600 + Number(match[2]) * 60 + Number(match[3]) - offset;
        seconds = ((seconds % 86400) + 86400) % 86400;
        const pad = (n: number) => String(n).padStart(2, "0");
        return `${pad(Math.floor(seconds / 3600))}:${pad(Math.floor(seconds / 60) % 60)}:${
          pad(seconds % 60)
        }${match[4] ?? ""}Z`;
      };
  }
  return undefined;
}

const DAY_MS = 86_400_000;

/** Days since 1970-01-01 of an ISO date (`2024-01-31`, `0044-03-15 BC`). */
function parseDate(text: string): number | undefined {
  const match = /^(\d{4,})-(\d\d)-(\d\d)( BC)?$/.exec(text);
  if (!match) return undefined;
  const year = match[4] ? 1 - Number(match[1]) : Number(match[1]);
  const date = new Date(0);
  date.setUTCFullYear(year, Number(match[2]) - 1, Number(match[3]));
  return Math.round(date.getTime() / DAY_MS);
}

/** Microseconds since midnight of `HH:MM:SS[.ffffff]`. */
function parseTime(text: string): number | undefined {
  const match = /^(\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?$/.exec(text);
  if (!match) return undefined;
  const seconds = Number(match[1]) * 3600 + Number(match[2]) * 60 + Number(match[3]);
  return seconds * 1_000_000 + Number((match[4] ?? "").padEnd(6, "0"));
}

/** Microseconds since the epoch of `YYYY-MM-DD HH:MM:SS[.ffffff][ BC]`. */
function parseTimestamp(text: string): number | undefined {
  const match = /^(\d{4,}-\d\d-\d\d) (\d\d:\d\d:\d\d(?:\.\d{1,6})?)( BC)?$/.exec(text);
  if (!match) return undefined;
  const days = parseDate(match[1] + (match[3] ?? ""));
  const time = parseTime(match[2]);
  if (days === undefined || time === undefined) return undefined;
  return days * DAY_MS * 1000 + time;
}
