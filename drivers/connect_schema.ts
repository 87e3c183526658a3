/**
 * Values of Kafka Connect's JsonConverter with `schemas.enable=true`
 * (`{schema, payload}`), decoded by their schema into the values Sluice
 * records carry: `bytes` from base64 to Uint8Array, decimals from their
 * unscaled two's-complement bytes to exact decimal text, and Debezium's and
 * Kafka Connect's temporal logical types from epoch numbers to ISO text that
 * PostgreSQL reads back unchanged. Topics written by Debezium thus land in a
 * postgres sink value for value.
 *
 * @module
 */

/** A Kafka Connect schema as JsonConverter writes it. */
export interface ConnectSchema {
  type?: string;
  name?: string;
  optional?: boolean;
  field?: string;
  fields?: ConnectSchema[];
  items?: ConnectSchema;
  keys?: ConnectSchema;
  values?: ConnectSchema;
  parameters?: Record<string, string>;
}

/**
 * The payload with every value decoded by its schema. Values whose schema
 * asks for nothing special are returned as they are (the same objects when
 * nothing below them changed).
 */
export function decodeBySchema(schema: ConnectSchema | null | undefined, value: unknown): unknown {
  if (value === null || value === undefined || !schema || typeof schema !== "object") return value;
  const logical = schema.name ? LOGICAL[schema.name] : undefined;
  if (logical) return logical(value, schema);
  switch (schema.type) {
    case "bytes":
      return typeof value === "string" ? Uint8Array.fromBase64(value) : value;
    case "struct":
      return decodeStruct(schema, value);
    case "array": {
      if (!Array.isArray(value) || !schema.items) return value;
      // A multidimensional PostgreSQL array nests under a schema that names
      // only its element, as Sluice's producer writes it: each level alike.
      const nests = schema.items.type !== "array";
      return value.map((item) =>
        nests && Array.isArray(item)
          ? decodeBySchema(schema, item)
          : decodeBySchema(schema.items, item)
      );
    }
    default:
      return value;
  }
}

/** Debezium's stand-in for an unchanged TOAST value, as text and as base64 bytes. */
const UNAVAILABLE = new Set([
  "__debezium_unavailable_value",
  "X19kZWJleml1bV91bmF2YWlsYWJsZV92YWx1ZQ==",
]);

/**
 * The fields of a change event's `after` (plain or `{schema, payload}`)
 * that hold Debezium's unavailable-value stand-in, before decoding drops
 * them.
 */
export function unavailableAfterFields(message: unknown): string[] {
  if (message === null || typeof message !== "object") return [];
  const envelope = message as Record<string, unknown>;
  const event = "payload" in envelope && "schema" in envelope ? envelope.payload : envelope;
  const after = (event as Record<string, unknown> | null)?.after;
  if (after === null || typeof after !== "object") return [];
  return Object.entries(after).filter(([, item]) =>
    typeof item === "string" && UNAVAILABLE.has(item)
  )
    .map(([name]) => name);
}

/**
 * A schemaless change event without the fields that hold Debezium's
 * unavailable-value stand-in (unchanged TOAST columns) in `before` and
 * `after`, so a sink keeps the stored values. Other values pass unchanged.
 */
export function withoutUnavailableValues(value: unknown): unknown {
  if (value === null || typeof value !== "object" || !("op" in value)) return value;
  const event = value as Record<string, unknown>;
  let output: Record<string, unknown> | undefined;
  for (const image of ["before", "after"]) {
    const row = event[image];
    if (row === null || typeof row !== "object") continue;
    let kept: Record<string, unknown> | undefined;
    for (const [name, item] of Object.entries(row)) {
      if (typeof item === "string" && UNAVAILABLE.has(item)) {
        kept ??= { ...row as Record<string, unknown> };
        delete kept[name];
      }
    }
    if (kept) (output ??= { ...event })[image] = kept;
  }
  return output ?? value;
}

/**
 * A struct's fields decoded by their schemas. A field holding Debezium's
 * unavailable-value stand-in (an unchanged TOAST column) is left out, so a
 * sink keeps the stored value.
 */
function decodeStruct(schema: ConnectSchema, value: unknown): unknown {
  if (typeof value !== "object" || Array.isArray(value) || !schema.fields) return value;
  const input = value as Record<string, unknown>;
  let output: Record<string, unknown> | undefined;
  for (const field of schema.fields) {
    if (!field.field || !(field.field in input)) continue;
    const before = input[field.field];
    if (
      typeof before === "string" && UNAVAILABLE.has(before) &&
      (field.type === "string" || field.type === "bytes")
    ) {
      output ??= { ...input };
      delete output[field.field];
      continue;
    }
    const after = decodeBySchema(field, before);
    if (after !== before) (output ??= { ...input })[field.field] = after;
  }
  return output ?? value;
}

type Logical = (value: unknown, schema: ConnectSchema) => unknown;

/** Decoders of logical types by schema name; a value of an unexpected shape passes unchanged. */
const LOGICAL: Record<string, Logical> = {
  "org.apache.kafka.connect.data.Decimal": (value, schema) =>
    typeof value === "string"
      ? decimalText(Uint8Array.fromBase64(value), Number(schema.parameters?.scale ?? 0))
      : value,
  "io.debezium.data.VariableScaleDecimal": (value) => {
    const { scale, value: bytes } = value as { scale?: unknown; value?: unknown };
    return typeof bytes === "string" && typeof scale === "number"
      ? decimalText(Uint8Array.fromBase64(bytes), scale)
      : value;
  },
  "io.debezium.time.Date": (value) => epochDate(value),
  // Kafka Connect's Date counts days since the epoch, as Debezium's does.
  "org.apache.kafka.connect.data.Date": (value) => epochDate(value),
  "io.debezium.time.Time": (value) => timeOfDay(value, 1000n),
  "org.apache.kafka.connect.data.Time": (value) => timeOfDay(value, 1000n),
  "io.debezium.time.MicroTime": (value) => timeOfDay(value, 1n),
  "io.debezium.time.NanoTime": (value) => timeOfDay(value, 1n, 1000n),
  "io.debezium.time.Timestamp": (value) => timestamp(value, 1000n),
  "org.apache.kafka.connect.data.Timestamp": (value) => timestamp(value, 1000n),
  "io.debezium.time.MicroTimestamp": (value) => timestamp(value, 1n),
  "io.debezium.time.MicroDuration": (value) => duration(value),
  "io.debezium.time.ZonedTimestamp": (value) =>
    typeof value === "string" ? zonedTimestamp(value) : value,
  "io.debezium.data.geometry.Point": (value) => {
    const { x, y } = value as { x?: unknown; y?: unknown };
    return typeof x === "number" && typeof y === "number" ? `(${x},${y})` : value;
  },
  "io.debezium.data.Bits": (value, schema) =>
    typeof value === "string" ? bitString(Uint8Array.fromBase64(value), schema) : value,
  "io.debezium.time.NanoTimestamp": (value) => timestamp(value, 1n, 1000n),
};

/** Exact decimal text of a big-endian two's-complement unscaled value and a scale. */
export function decimalText(bytes: Uint8Array, scale: number): string {
  let unscaled = 0n;
  for (const byte of bytes) unscaled = (unscaled << 8n) | BigInt(byte);
  if (bytes.length > 0 && bytes[0] >= 0x80) unscaled -= 1n << BigInt(bytes.length * 8);
  const negative = unscaled < 0n;
  let digits = (negative ? -unscaled : unscaled).toString();
  if (scale > 0) {
    digits = digits.padStart(scale + 1, "0");
    digits = `${digits.slice(0, -scale)}.${digits.slice(-scale)}`;
  } else if (scale < 0) {
    digits += "0".repeat(-scale);
  }
  return negative ? `-${digits}` : digits;
}

/** `YYYY-MM-DD` (with ` BC` before year 1) of days since the epoch. */
function epochDate(value: unknown): unknown {
  const endless = infinity(value);
  if (endless) return endless;
  if (typeof value !== "number") return value;
  return isoDate(value);
}

/**
 * `infinity` or `-infinity` for Debezium's stand-ins in a numeric temporal
 * field (Java's Long.MAX_VALUE and MIN_VALUE, which a JSON number rounds),
 * else undefined.
 */
function infinity(value: unknown): string | undefined {
  const n = typeof value === "number"
    ? value
    : typeof value === "string" && /^-?\d+$/.test(value)
    ? Number(value)
    : Number.NaN;
  if (n >= 9223372036854775807) return "infinity";
  if (n <= -9223372036854775808) return "-infinity";
  return undefined;
}

/**
 * A ZonedTimestamp as PostgreSQL reads it: Java writes years before 1 AD
 * astronomically (`-0043` is 44 BC, `0000` is 1 BC), which PostgreSQL
 * does not take; other values pass as they are.
 */
function zonedTimestamp(text: string): string {
  const match = /^(-?\d{4,})-(\d\d-\d\d)T([\d:.]+)Z$/.exec(text);
  if (!match || Number(match[1]) > 0) return text;
  const year = String(1 - Number(match[1])).padStart(4, "0");
  return `${year}-${match[2]} ${match[3]}+00 BC`;
}

/**
 * `YYYY-MM-DD` (` BC` before year 1) of days since 1970-01-01, by calendar
 * arithmetic: PostgreSQL's dates reach past what a JavaScript Date holds.
 */
function isoDate(days: number): string {
  const shifted = days + 719468;
  const era = Math.floor(shifted / 146097);
  const dayOfEra = shifted - era * 146097;
  const yearOfEra = Math.floor(
    (dayOfEra - Math.floor(dayOfEra / 1460) + Math.floor(dayOfEra / 36524) -
      Math.floor(dayOfEra / 146096)) / 365,
  );
  const dayOfYear = dayOfEra -
    (365 * yearOfEra + Math.floor(yearOfEra / 4) - Math.floor(yearOfEra / 100));
  const monthIndex = Math.floor((5 * dayOfYear + 2) / 153);
  const day = dayOfYear - Math.floor((153 * monthIndex + 2) / 5) + 1;
  const month = monthIndex < 10 ? monthIndex + 3 : monthIndex - 9;
  const year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0);
  const pad = (n: number, width = 2) => String(n).padStart(width, "0");
  const monthDay = `${pad(month)}-${pad(day)}`;
  return year > 0 ? `${pad(year, 4)}-${monthDay}` : `${pad(1 - year, 4)}-${monthDay} BC`;
}

/** Microseconds of an integer (number or decimal string) times `scale`, divided by `divisor`. */
function micros(value: unknown, scale: bigint, divisor = 1n): bigint | undefined {
  if (typeof value === "number" && Number.isInteger(value)) return BigInt(value) * scale / divisor;
  if (typeof value === "string" && /^-?\d+$/.test(value)) return BigInt(value) * scale / divisor;
  return undefined;
}

/** `HH:MM:SS.ffffff` of a time of day in ms (scale 1000), µs or ns (divisor 1000). */
function timeOfDay(value: unknown, scale: bigint, divisor = 1n): unknown {
  const total = micros(value, scale, divisor);
  if (total === undefined) return value;
  const seconds = Number(total / 1_000_000n);
  const fraction = String(total % 1_000_000n).padStart(6, "0");
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${pad(Math.floor(seconds / 3600))}:${pad(Math.floor(seconds / 60) % 60)}:${
    pad(seconds % 60)
  }.${fraction}`;
}

/**
 * A bit string (most significant bit first) of Debezium's little-endian
 * Bits bytes, padded to the `length` parameter of a `bit(n)` column. A
 * `varbit` without a length loses its leading zeros (as with Debezium).
 */
function bitString(bytes: Uint8Array, schema: ConnectSchema): string {
  let value = 0n;
  for (let i = bytes.length - 1; i >= 0; i--) value = (value << 8n) | BigInt(bytes[i]);
  const length = Number(schema.parameters?.length ?? 0);
  const text = value.toString(2);
  return length > 0 && length < 2147483647 ? text.padStart(length, "0") : text;
}

/**
 * An interval's text (`-12:00:00.5`, hours unbounded) of Debezium's
 * MicroDuration microseconds. The months and days it was made of are gone
 * (Debezium counts a month as 30.4375 days).
 */
function duration(value: unknown): unknown {
  const total = micros(value, 1n);
  if (total === undefined) return value;
  const negative = total < 0n;
  const magnitude = negative ? -total : total;
  const hours = magnitude / 3_600_000_000n;
  const rest = magnitude % 3_600_000_000n;
  const minutes = String(rest / 60_000_000n).padStart(2, "0");
  const seconds = String((rest % 60_000_000n) / 1_000_000n).padStart(2, "0");
  const fraction = String(rest % 1_000_000n).padStart(6, "0");
  return `${negative ? "-" : ""}${hours}:${minutes}:${seconds}.${fraction}`;
}

/** `YYYY-MM-DD HH:MM:SS.ffffff` (UTC, ` BC` before year 1) of an epoch time. */
function timestamp(value: unknown, scale: bigint, divisor = 1n): unknown {
  const endless = infinity(value);
  if (endless) return endless;
  const total = micros(value, scale, divisor);
  if (total === undefined) return value;
  let days = total / 86_400_000_000n;
  let rest = total % 86_400_000_000n;
  if (rest < 0n) {
    days -= 1n;
    rest += 86_400_000_000n;
  }
  const date = isoDate(Number(days));
  const [day, era] = date.split(" ");
  const time = timeOfDay(String(rest), 1n) as string;
  return `${day} ${time}${era ? ` ${era}` : ""}`;
}
