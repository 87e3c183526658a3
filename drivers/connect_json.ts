/**
 * Kafka Connect's JsonConverter with `schemas.enable=true`, writing side:
 * `{"schema":…,"payload":…}` where the payload is the value in its schema's
 * representation, as Kafka Connect writes it: decimals as base64 of their
 * unscaled two's-complement bytes, Debezium's temporal types as epoch
 * numbers, `bytes` as base64, doubles as Java prints them (`1.0`, `1.0E7`),
 * every struct field present and in schema order.
 *
 * Sluice values are what the codec made of PostgreSQL's text (`"12.50"`
 * for a numeric, `"2024-01-31"` for a date in `isostring` mode, or already
 * Debezium's numbers in the `adaptive` modes); both forms are accepted.
 *
 * The schema's own JSON is rendered once per schema object (records of one
 * table share it) and cached.
 *
 * @module
 */
import type { ConnectSchema } from "../api/schema.ts";
import { bytesToBase64, encodeJson } from "../api/json.ts";
import { parseDate, parseTime, timestampMicros, timetzInUtc } from "./pg_codec.ts";

/** Debezium's stand-in for an unchanged TOAST value the change did not carry. */
export const UNAVAILABLE_VALUE = "__debezium_unavailable_value";

const schemaTexts = new WeakMap<ConnectSchema, string>();

/** The schema's JSON text, rendered once per schema object. */
export function schemaJson(schema: ConnectSchema): string {
  let text = schemaTexts.get(schema);
  if (text === undefined) {
    text = JSON.stringify(schema);
    schemaTexts.set(schema, text);
  }
  return text;
}

/**
 * The JsonConverter envelope of a value: `{"schema":…,"payload":…}`. Without
 * a schema the schema is `null` and the payload the plain JSON, as
 * JsonConverter writes schemaless data. Throws when the value has fields its
 * schema lacks (a transform reshaped it but kept the schema), or a null
 * where its schema requires a value.
 */
export function connectEnvelope(schema: ConnectSchema | undefined, value: unknown): string {
  if (!schema) return `{"schema":null,"payload":${encodeJson(value) ?? "null"}}`;
  return `{"schema":${schemaJson(schema)},"payload":${payloadJson(schema, value)}}`;
}

/** The value in its schema's JSON representation. */
export function payloadJson(schema: ConnectSchema, value: unknown): string {
  if (value === null || value === undefined) return "null";
  const logical = schema.name === undefined ? undefined : LOGICAL[schema.name];
  if (logical) return logical(value, schema);
  switch (schema.type) {
    case "struct":
      return structJson(schema, value);
    case "array":
      // Arrays with explicit bounds stay PostgreSQL's text; multidimensional
      // ones (whose Connect schema names only the element) nest.
      if (!Array.isArray(value)) return JSON.stringify(String(value));
      return `[${
        value.map((item) =>
          Array.isArray(item) ? payloadJson(schema, item) : payloadJson(schema.items ?? {}, item)
        ).join(",")
      }]`;
    case "int8":
    case "int16":
    case "int32":
    case "int64":
      return integerJson(value);
    case "float":
    case "double":
      return doubleJson(value);
    case "boolean":
      return booleanJson(value);
    case "bytes":
      return value instanceof Uint8Array ? `"${bytesToBase64(value)}"` : JSON.stringify(value);
    case "string":
      return JSON.stringify(typeof value === "string" ? value : encodeJson(value));
    default:
      return encodeJson(value) ?? "null";
  }
}

function structJson(schema: ConnectSchema, value: unknown): string {
  if (typeof value !== "object" || Array.isArray(value)) {
    throw new Error(`expected an object for struct ${schema.name ?? ""}, got ${typeof value}`);
  }
  const row = value as Record<string, unknown>;
  const fields = schema.fields ?? [];
  let text = "{";
  let present = 0;
  for (let i = 0; i < fields.length; i++) {
    const field = fields[i];
    const name = field.field as string;
    const item = row[name];
    if (item !== undefined || name in row) present++;
    if (item === null && field.optional === false && field.default === undefined) {
      // Kafka Connect's converter refuses it too; written, it would stop
      // every consumer that reads the topic with schemas.
      throw new Error(
        `field "${name}" of ${
          schema.name ?? "the struct"
        } is null, but its schema requires a value`,
      );
    }
    if (i > 0) text += ",";
    text += `${JSON.stringify(name)}:${
      item === undefined ? missingJson(field, row) : payloadJson(field, item)
    }`;
  }
  let total = 0;
  for (const _ in row) total++;
  if (total > present) {
    const known = new Set(fields.map((f) => f.field));
    const extra = Object.keys(row).filter((k) => !known.has(k));
    throw new Error(
      `the value has fields its schema ${schema.name ?? ""} lacks: ${
        extra.join(", ")
      } (a transform changed the row but kept the schema)`,
    );
  }
  return text + "}";
}

/**
 * A field the value does not carry: `ts_ns` of Debezium's envelope and
 * source block (from `ts_us`; a double cannot hold it), or an unchanged
 * TOAST column, which Debezium marks with a stand-in.
 */
function missingJson(field: ConnectSchema, row: Record<string, unknown>): string {
  if (field.field === "ts_ns") {
    return typeof row.ts_us === "number" ? `${row.ts_us}000` : "null";
  }
  if (field.type === "string" && !field.name?.startsWith("io.debezium.time")) {
    return `"${UNAVAILABLE_VALUE}"`;
  }
  if (field.type === "bytes" && !field.name) {
    return `"${bytesToBase64(new TextEncoder().encode(UNAVAILABLE_VALUE))}"`;
  }
  return "null";
}

function integerJson(value: unknown): string {
  if (typeof value === "number" && Number.isInteger(value)) return String(value);
  if (typeof value === "bigint") return value.toString();
  if (typeof value === "string" && /^-?\d+$/.test(value)) return value;
  if (typeof value === "boolean") return value ? "1" : "0";
  throw new Error(`expected an integer, got ${JSON.stringify(encodeJson(value))}`);
}

/** A double as Java's `Double.toString` prints it (Jackson writes doubles so). */
export function javaDouble(value: number): string {
  if (Number.isNaN(value)) return '"NaN"';
  if (value === Infinity) return '"Infinity"';
  if (value === -Infinity) return '"-Infinity"';
  if (value === 0) return Object.is(value, -0) ? "-0.0" : "0.0";
  const magnitude = Math.abs(value);
  if (magnitude >= 1e-3 && magnitude < 1e7) {
    const text = String(value);
    return text.includes(".") ? text : `${text}.0`;
  }
  // Java prints at least two significant digits in this form, the two
  // nearest the true value when one would do (5e-324 is 4.9E-324).
  let [mantissa, exponent] = value.toExponential().split("e");
  if (!mantissa.includes(".")) [mantissa, exponent] = value.toExponential(1).split("e");
  return `${mantissa}E${exponent.replace("+", "")}`;
}

function doubleJson(value: unknown): string {
  if (typeof value === "number") return javaDouble(value);
  if (typeof value === "string") {
    if (value === "-0") return "-0.0";
    return javaDouble(Number(value));
  }
  throw new Error(`expected a number, got ${encodeJson(value)}`);
}

function booleanJson(value: unknown): string {
  if (typeof value === "boolean") return String(value);
  if (value === "1" || value === "t" || value === "true") return "true";
  if (value === "0" || value === "f" || value === "false") return "false";
  throw new Error(`expected a boolean, got ${encodeJson(value)}`);
}

// ---------------------------------------------------------------------------
// Semantic types

type Logical = (value: unknown, schema: ConnectSchema) => string;

const LONG_MAX = "9223372036854775807";
const LONG_MIN = "-9223372036854775808";

/** Epoch numbers of PostgreSQL's temporal text; infinities as Java's Long bounds. */
function temporal(
  parse: (text: string) => number | bigint | undefined,
  divisor: number,
): Logical {
  return (value) => {
    // A number, or the exact decimal string the codec gives past 2^53 µs:
    // already the schema's epoch unit (time.precision.mode chose both).
    if (typeof value !== "string" || /^-?\d+$/.test(value)) return integerJson(value);
    if (value === "infinity") return LONG_MAX;
    if (value === "-infinity") return LONG_MIN;
    const parsed = parse(value);
    if (parsed === undefined) throw new Error(`cannot read ${JSON.stringify(value)} as a time`);
    if (typeof parsed === "bigint") {
      const step = BigInt(divisor);
      const quotient = parsed / step;
      return String(parsed % step < 0n ? quotient - 1n : quotient);
    }
    return String(Math.floor(parsed / divisor));
  };
}

const LOGICAL: Record<string, Logical> = {
  "org.apache.kafka.connect.data.Decimal": (value, schema) =>
    decimalJson(value, Number(schema.parameters?.scale ?? 0)),
  "io.debezium.data.VariableScaleDecimal": variableScaleJson,
  "io.debezium.time.Date": temporal(parseDate, 1),
  "org.apache.kafka.connect.data.Date": temporal(parseDate, 1),
  "io.debezium.time.Time": temporal(parseTime, 1000),
  "org.apache.kafka.connect.data.Time": temporal(parseTime, 1000),
  "io.debezium.time.MicroTime": temporal(parseTime, 1),
  "io.debezium.time.Timestamp": temporal(timestampMicros, 1000),
  "org.apache.kafka.connect.data.Timestamp": temporal(timestampMicros, 1000),
  "io.debezium.time.MicroTimestamp": temporal(timestampMicros, 1),
  "io.debezium.time.ZonedTimestamp": (value) => JSON.stringify(zonedTimestamp(String(value))),
  "io.debezium.time.ZonedTime": (value) =>
    JSON.stringify(String(value).endsWith("Z") ? value : timetzInUtc(String(value))),
  "io.debezium.time.IsoTimestamp": (value) => JSON.stringify(String(value).replace(" ", "T")),
  "io.debezium.time.MicroDuration": (value) =>
    typeof value === "string" ? intervalMicros(value) : integerJson(value),
  "io.debezium.time.Interval": (value) =>
    JSON.stringify(typeof value === "string" ? isoInterval(value) : value),
  "io.debezium.data.Bits": (value, schema) => {
    if (typeof value !== "string" || !/^[01]*$/.test(value)) {
      return payloadJson({ type: "bytes" }, value);
    }
    // The bytes hold a number: only a declared length (bit(n)) restores leading zeros.
    const length = Number(schema.parameters?.length ?? 0);
    const unbounded = !(length > 0 && length < 2147483647);
    if (unbounded && (value === "" || (value.length > 1 && value.startsWith("0")))) {
      throw new Error(
        `the bit varying value B'${value}' has no exact Connect Bits form: its ${
          value === "" ? "emptiness" : "leading zeros"
        } would be lost (the schema carries no length for bit varying). Use bit(n) at the ` +
          `source, or schemaless JSON (value.converter.schemas.enable false)`,
      );
    }
    return `"${bytesToBase64(bitsBytes(value))}"`;
  },
  "io.debezium.data.geometry.Point": pointJson,
};

/** Decimal: base64 of the unscaled value at the schema's scale. */
function decimalJson(value: unknown, scale: number): string {
  const text = String(value);
  // money's text carries a currency symbol and group separators ("-$1,234.50").
  const unscaled = unscaledAt(text, scale) ??
    (/\d/.test(text) && !/[eE]/.test(text)
      ? unscaledAt(text.replace(/[^\d.-]/g, ""), scale)
      : undefined);
  if (unscaled === undefined) throw notDecimal(text);
  return `"${bytesToBase64(twosComplement(unscaled))}"`;
}

/** NaN and infinities have no Decimal form: written as null they would be lost. */
function notDecimal(text: string): Error {
  return new Error(
    `the numeric value ${text} has no Connect Decimal form (decimal.handling.mode precise); ` +
      `set decimal.handling.mode to string or double to carry NaN and infinities`,
  );
}

function variableScaleJson(value: unknown): string {
  const text = String(value);
  const match = /^-?\d*(?:\.(\d*))?$/.exec(text);
  if (!match) throw notDecimal(text);
  const scale = match[1]?.length ?? 0;
  const unscaled = unscaledAt(text, scale) as bigint;
  return `{"scale":${scale},"value":"${bytesToBase64(twosComplement(unscaled))}"}`;
}

/** The integer `text × 10^scale`; undefined for NaN, infinities and junk. */
export function unscaledAt(text: string, scale: number): bigint | undefined {
  const match = /^(-?)(\d*)(?:\.(\d*))?$/.exec(text.trim());
  if (!match || (match[2] === "" && !match[3])) return undefined;
  const fraction = (match[3] ?? "").padEnd(scale, "0").slice(0, Math.max(scale, 0));
  const digits = BigInt(`${match[2] || "0"}${fraction}`);
  return match[1] ? -digits : digits;
}

/** Java's `BigInteger.toByteArray`: minimal big-endian two's complement. */
export function twosComplement(value: bigint): Uint8Array {
  let length = 1;
  while (value >= 1n << BigInt(length * 8 - 1) || value < -(1n << BigInt(length * 8 - 1))) {
    length++;
  }
  let rest = value < 0n ? (1n << BigInt(length * 8)) + value : value;
  const bytes = new Uint8Array(length);
  for (let i = length - 1; i >= 0; i--) {
    bytes[i] = Number(rest & 0xffn);
    rest >>= 8n;
  }
  return bytes;
}

/** `2024-01-31 10:11:12.5+00` (or `…+05:30`, ` BC`) → `2024-01-31T10:11:12.5Z` in UTC. */
function zonedTimestamp(text: string): string {
  if (text === "infinity" || text === "-infinity") return text;
  const iso = /^(.*T\d\d:\d\d:\d\d)(\.\d+)?Z$/.exec(text);
  if (iso) return `${iso[1]}${micros6(iso[2] ?? "")}Z`;
  const match =
    /^(\d{4,})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)(\.\d+)?([+-]\d\d(?::?\d\d)?(?::?\d\d)?)( BC)?$/
      .exec(text);
  if (!match) return text;
  const [, y, mo, d, h, mi, s, fraction = "", offset, bc] = match;
  if (/^\+00(:?00)*$/.test(offset) && !bc) {
    return `${y}-${mo}-${d}T${h}:${mi}:${s}${micros6(fraction)}Z`;
  }
  const sign = offset[0] === "-" ? -1 : 1;
  const parts = offset.slice(1).split(":").map(Number);
  const offsetSeconds = sign * ((parts[0] ?? 0) * 3600 + (parts[1] ?? 0) * 60 + (parts[2] ?? 0));
  const date = new Date(0);
  date.setUTCFullYear(bc ? 1 - Number(y) : Number(y), Number(mo) - 1, Number(d));
  date.setUTCHours(Number(h), Number(mi), Number(s) - offsetSeconds);
  const year = date.getUTCFullYear();
  const pad = (n: number, w = 2) => String(Math.abs(n)).padStart(w, "0");
  const yearText = year < 0 ? `-${pad(year, 4)}` : pad(year, 4);
  return `${yearText}-${pad(date.getUTCMonth() + 1)}-${pad(date.getUTCDate())}T${
    pad(date.getUTCHours())
  }:${pad(date.getUTCMinutes())}:${pad(date.getUTCSeconds())}${micros6(fraction)}Z`;
}

/** Debezium prints a timestamptz's fraction with the column's precision (6 by default). */
function micros6(fraction: string): string {
  return (fraction || ".").padEnd(7, "0");
}

/**
 * An interval's PostgreSQL text (`1 year 2 mons -3 days -04:05:06.789`) as
 * ISO 8601 with designators (`P1Y2M-3DT-4H-5M-6.789S`), each field with its
 * own sign, as PostgreSQL writes it with IntervalStyle iso_8601 and reads
 * it back exactly. Text in another form passes as it is.
 */
export function isoInterval(text: string): string {
  const time = /([+-])?(\d+):(\d\d):(\d\d)(?:\.(\d+))?$/.exec(text);
  const rest = time ? text.slice(0, time.index) : text;
  const fields = [...rest.matchAll(/(-?\d+) (year|mon|day)s?/g)];
  if (rest.replace(/(-?\d+) (year|mon|day)s?/g, "").trim() !== "") return text;
  let iso = "P";
  for (const [, n, unit] of fields) {
    if (Number(n) !== 0) iso += `${n}${unit === "year" ? "Y" : unit === "mon" ? "M" : "D"}`;
  }
  if (time) {
    const sign = time[1] === "-" ? "-" : "";
    const fraction = (time[5] ?? "").replace(/0+$/, "");
    const seconds = `${Number(time[4])}${fraction ? `.${fraction}` : ""}`;
    const parts = [[time[2], "H"], [time[3], "M"], [seconds, "S"]]
      .filter(([n]) => Number(n) !== 0)
      .map(([n, unit]) => `${sign}${unit === "S" ? n : Number(n)}${unit}`);
    if (parts.length > 0) iso += `T${parts.join("")}`;
  }
  return iso === "P" ? "PT0S" : iso;
}

/** Debezium's MicroDuration: months count 365.25 / 12 days. */
function intervalMicros(text: string): string {
  let months = 0, days = 0, micros = 0;
  const units = /(-?\d+) (year|mon|day)s?/g;
  for (const match of text.matchAll(units)) {
    const n = Number(match[1]);
    if (match[2] === "year") months += 12 * n;
    else if (match[2] === "mon") months += n;
    else days += n;
  }
  const time = /([+-])?(\d+):(\d\d):(\d\d)(?:\.(\d+))?/.exec(text);
  if (time) {
    const seconds = Number(time[2]) * 3600 + Number(time[3]) * 60 + Number(time[4]);
    const total = seconds * 1e6 + Number((time[5] ?? "").padEnd(6, "0").slice(0, 6));
    micros = time[1] === "-" ? -total : total;
  }
  const daysTotal = months * (365.25 / 12) + days;
  const total = Math.trunc(daysTotal * 86_400_000_000 + micros);
  // Java's (long) cast of a double saturates.
  if (total >= 9223372036854775807) return LONG_MAX;
  if (total <= -9223372036854775808) return LONG_MIN;
  return BigInt(total).toString();
}

/** A bit string (`1010`, most significant first) as Debezium's little-endian bytes. */
function bitsBytes(text: string): Uint8Array {
  const length = Math.max(1, Math.ceil(text.length / 8));
  let value = text === "" ? 0n : BigInt(`0b${text}`);
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) {
    bytes[i] = Number(value & 0xffn);
    value >>= 8n;
  }
  return bytes;
}

/** `(1.5,2)` → `{"x":1.5,"y":2.0,"wkb":…,"srid":null}` with the point's WKB. */
function pointJson(value: unknown): string {
  const match = /^\(([^,]+),([^)]+)\)$/.exec(String(value));
  if (!match) return "null";
  const x = Number(match[1]), y = Number(match[2]);
  const wkb = new Uint8Array(21);
  const view = new DataView(wkb.buffer);
  wkb[0] = 1;
  view.setUint32(1, 1, true);
  view.setFloat64(5, x, true);
  view.setFloat64(13, y, true);
  return `{"x":${javaDouble(x)},"y":${javaDouble(y)},"wkb":"${bytesToBase64(wkb)}","srid":null}`;
}
