/**
 * Kafka Connect schemas and values as Avro, the way Confluent's AvroConverter
 * (its AvroData) maps them, so that consumers using that converter or
 * Apicurio's read Sluice's topics, and Sluice reads theirs:
 *
 * - a struct is a record named after the schema (`ConnectDefault` when it
 *   has no name); an optional schema is the union `["null", T]` and an
 *   optional field defaults to null;
 * - `int8`/`int16` are `int` with `connect.type`; semantic types keep their
 *   name, version and parameters in `connect.name`, `connect.version`,
 *   `connect.parameters`; Decimal also gets Avro's `decimal` logical type,
 *   and Connect's Date/Time/Timestamp Avro's `date`/`time-millis`/
 *   `timestamp-millis`;
 * - a map with string keys is an Avro map, arrays are arrays.
 *
 * Values go through the JsonConverter representation (`payloadJson`), which
 * already turns Sluice's values into Connect's (decimals to unscaled bytes,
 * temporal text to epoch numbers); reading comes back through
 * `decodeBySchema`. One codec, two framings.
 *
 * @module
 */
import avro from "avsc";
import { Buffer } from "node:buffer";
import type { ConnectSchema } from "../api/schema.ts";
import { payloadJson } from "./connect_json.ts";
import { decodeBySchema } from "./connect_schema.ts";

/** An Avro schema in its JSON form. */
export type AvroSchema = string | AvroSchema[] | { [key: string]: unknown };

const AVRO_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** A valid Avro name: other characters become `_`, a leading digit gets one. */
export function avroName(name: string): string {
  if (AVRO_NAME.test(name)) return name;
  const clean = name.replace(/[^A-Za-z0-9_]/g, "_");
  return /^[0-9]/.test(clean) || clean === "" ? `_${clean}` : clean;
}

/** A Connect name made a valid Avro full name: each dotted part sanitized. */
function avroFullName(name: string): string {
  return name.split(".").map(avroName).join(".");
}

/** Where a field's Connect name is kept when Avro's rules changed it (`Mixed Case` → `Mixed_Case`). */
const FIELD_NAME = "connect.field.name";

const CONNECT_LOGICAL: Record<string, Record<string, unknown>> = {
  "org.apache.kafka.connect.data.Date": { logicalType: "date" },
  "org.apache.kafka.connect.data.Time": { logicalType: "time-millis" },
  "org.apache.kafka.connect.data.Timestamp": { logicalType: "timestamp-millis" },
};

/**
 * The Avro schema of a Connect schema (see the module doc).
 *
 * @example A key struct
 * ```ts
 * import { avroSchemaOf } from "./connect_avro.ts";
 * import assert from "node:assert/strict";
 *
 * const avro = avroSchemaOf({
 *   type: "struct",
 *   fields: [{ type: "int32", optional: false, field: "id" }],
 *   optional: false,
 *   name: "w.public.t.Key",
 * });
 * assert.deepEqual(avro, {
 *   type: "record",
 *   name: "Key",
 *   namespace: "w.public.t",
 *   fields: [{ name: "id", type: "int" }],
 * });
 * ```
 */
export function avroSchemaOf(schema: ConnectSchema): AvroSchema {
  return toAvro(schema, new Set(), true);
}

function toAvro(schema: ConnectSchema, named: Set<string>, top = false): AvroSchema {
  const type = bareAvro(schema, named);
  // A top-level optional schema stays bare: a null value is a null message.
  return schema.optional && !top ? ["null", type] : type;
}

function bareAvro(schema: ConnectSchema, named: Set<string>): AvroSchema {
  if (schema.type === "struct") return recordAvro(schema, named);
  let avro: Record<string, unknown>;
  switch (schema.type) {
    case "int8":
    case "int16":
      avro = { type: "int", "connect.type": schema.type };
      break;
    case "int32":
      avro = { type: "int" };
      break;
    case "int64":
      avro = { type: "long" };
      break;
    case "float":
    case "double":
    case "boolean":
    case "string":
    case "bytes":
      avro = { type: schema.type };
      break;
    case "array":
      avro = { type: "array", items: toAvro(schema.items ?? { type: "string" }, named) };
      break;
    case "map":
      if (schema.keys?.type !== "string") {
        throw new Error(`maps with ${schema.keys?.type} keys have no Avro form here`);
      }
      avro = { type: "map", values: toAvro(schema.values ?? { type: "string" }, named) };
      break;
    default:
      throw new Error(`the Connect type ${JSON.stringify(schema.type)} has no Avro form`);
  }
  if (schema.name === "org.apache.kafka.connect.data.Decimal") {
    const scale = Number(schema.parameters?.scale ?? 0);
    const precision = Number(schema.parameters?.["connect.decimal.precision"] ?? 64);
    Object.assign(avro, { scale, precision, logicalType: "decimal" });
  } else if (schema.name && CONNECT_LOGICAL[schema.name]) {
    Object.assign(avro, CONNECT_LOGICAL[schema.name]);
  }
  if (schema.version !== undefined) avro["connect.version"] = schema.version;
  if (schema.doc !== undefined) avro["connect.doc"] = schema.doc;
  if (schema.parameters) avro["connect.parameters"] = schema.parameters;
  if (schema.name !== undefined) avro["connect.name"] = schema.name;
  return Object.keys(avro).length === 1 ? avro.type as string : avro;
}

function recordAvro(schema: ConnectSchema, named: Set<string>): AvroSchema {
  const fullName = avroFullName(schema.name ?? "io.confluent.connect.avro.ConnectDefault");
  // Avro defines a name once; Debezium's before and after share one.
  if (named.has(fullName)) return fullName;
  named.add(fullName);
  const dot = fullName.lastIndexOf(".");
  const record: Record<string, unknown> = {
    type: "record",
    name: fullName.slice(dot + 1),
    ...(dot > 0 ? { namespace: fullName.slice(0, dot) } : {}),
    fields: (schema.fields ?? []).map((field) => {
      const original = field.field ?? "";
      const name = avroName(original);
      const type = toAvro(field, named);
      return {
        name,
        type,
        ...(field.optional ? { default: null } : {}),
        ...(name !== original ? { [FIELD_NAME]: original } : {}),
      };
    }),
  };
  if (schema.name !== undefined && schema.name !== fullName) record["connect.name"] = schema.name;
  if (schema.doc !== undefined) record.doc = schema.doc;
  return record;
}

// ---------------------------------------------------------------------------
// Avro types: longs as bigints, so int8 and epoch microseconds stay exact.

function readLong(buffer: Buffer): bigint {
  return buffer.readBigInt64LE(0);
}

const ExactLong = avro.types.LongType.__with({
  fromBuffer: readLong,
  toBuffer(n: bigint) {
    const buffer = Buffer.alloc(8);
    buffer.writeBigInt64LE(n);
    return buffer;
  },
  fromJSON: (n: number | string) => BigInt(n),
  toJSON: (n: bigint) => Number(n),
  isValid: (n: unknown) => typeof n === "bigint",
  compare: (a: bigint, b: bigint) => (a < b ? -1 : a > b ? 1 : 0),
});

/**
 * The avsc type of an Avro schema (longs as bigints, `["null", T]` unions
 * unwrapped). Named types it refers to must be in `registry` (filled by
 * calling this on the referenced schemas first with the same registry).
 */
export function avroType(schema: AvroSchema, registry: Record<string, avro.Type> = {}): avro.Type {
  return avro.Type.forSchema(schema as avro.Schema, {
    registry,
    // `{"type":"long", …}` with attributes bypasses avsc's registry; the hook does not.
    typeHook: (s: avro.Schema) =>
      s === "long" || (typeof s === "object" && (s as { type?: unknown }).type === "long")
        ? ExactLong
        : undefined,
    wrapUnions: false,
  });
}

// ---------------------------------------------------------------------------
// Values

/** Keeps integers beyond 2^53 exact while parsing Connect's JSON payload. */
function exactIntegers(_key: string, value: unknown, context?: { source?: string }): unknown {
  if (
    typeof value === "number" && !Number.isSafeInteger(value) && context?.source &&
    /^-?\d+$/.test(context.source)
  ) return BigInt(context.source);
  return value;
}

/**
 * The Avro datum of a Sluice value under its Connect schema: the value in
 * JsonConverter's representation, then bytes as Buffers, longs as bigints.
 * Throws when the value does not fit the schema.
 */
export function avroDatum(schema: ConnectSchema, value: unknown): unknown {
  const text = payloadJson(schema, value);
  const payload = /\d{16}/.test(text) ? JSON.parse(text, exactIntegers) : JSON.parse(text);
  return toDatum(schema, payload);
}

function toDatum(schema: ConnectSchema, value: unknown): unknown {
  if (value === null || value === undefined) {
    if (schema.optional) return null;
    throw new Error(`a null in the required field ${schema.field ?? schema.name ?? ""}`);
  }
  switch (schema.type) {
    case "struct": {
      const row = value as Record<string, unknown>;
      const out: Record<string, unknown> = {};
      for (const field of schema.fields ?? []) {
        out[avroName(field.field as string)] = toDatum(field, row[field.field as string]);
      }
      return out;
    }
    case "array":
      return (value as unknown[]).map((item) =>
        Array.isArray(item) ? toDatum(schema, item) : toDatum(schema.items ?? {}, item)
      );
    case "map":
      return Object.fromEntries(
        Object.entries(value as Record<string, unknown>).map((
          [k, v],
        ) => [k, toDatum(schema.values ?? {}, v)]),
      );
    case "int64":
      return typeof value === "bigint" ? value : BigInt(value as number | string);
    case "float":
    case "double":
      return typeof value === "string" ? Number(value) : value;
    case "bytes":
      return typeof value === "string" ? Buffer.from(value, "base64") : value;
    default:
      return value;
  }
}

/**
 * The Connect schema an Avro schema stands for (the inverse of
 * {@linkcode avroSchemaOf}; plain Avro from elsewhere maps to the nearest
 * Connect types).
 */
export function connectSchemaOfAvro(
  schema: AvroSchema,
  references: readonly AvroSchema[] = [],
): ConnectSchema {
  const named = new Map<string, ConnectSchema>();
  for (const reference of references) fromAvro(reference, named, false);
  return fromAvro(schema, named, false);
}

function fromAvro(
  schema: AvroSchema,
  named: Map<string, ConnectSchema>,
  optional: boolean,
): ConnectSchema {
  if (Array.isArray(schema)) {
    const branches = schema.filter((s) => s !== "null");
    if (branches.length !== 1) throw new Error("unions other than [null, T] are not read");
    return fromAvro(branches[0], named, true);
  }
  if (typeof schema === "string") {
    const known = named.get(schema) ??
      [...named.entries()].find(([k]) => k.endsWith(`.${schema}`))?.[1];
    if (known) return { ...known, optional };
    return { type: PRIMITIVE[schema] ?? schema, optional };
  }
  const type = schema.type as AvroSchema;
  if (typeof type !== "string" || !(type in COMPLEX || type in PRIMITIVE)) {
    return { ...fromAvro(type, named, optional) };
  }
  const out: ConnectSchema = { type: COMPLEX[type] ?? PRIMITIVE[type], optional };
  const connectType = schema["connect.type"];
  if (typeof connectType === "string") out.type = connectType;
  if (type === "record") {
    const namespace = schema.namespace as string | undefined;
    const fullName = String(schema.name).includes(".") || !namespace
      ? String(schema.name)
      : `${namespace}.${schema.name}`;
    out.name = (schema["connect.name"] as string | undefined) ?? fullName;
    named.set(fullName, out);
    out.fields = (schema.fields as Record<string, unknown>[]).map((f) => ({
      ...fromAvro(f.type as AvroSchema, named, false),
      field: (f[FIELD_NAME] as string | undefined) ?? f.name as string,
    }));
    return out;
  }
  if (type === "array") out.items = fromAvro(schema.items as AvroSchema, named, false);
  if (type === "map") {
    out.keys = { type: "string", optional: false };
    out.values = fromAvro(schema.values as AvroSchema, named, false);
  }
  if (typeof schema["connect.name"] === "string") out.name = schema["connect.name"];
  else if (schema.logicalType === "decimal") out.name = "org.apache.kafka.connect.data.Decimal";
  const parameters = schema["connect.parameters"] as Record<string, string> | undefined;
  if (parameters) out.parameters = parameters;
  else if (schema.logicalType === "decimal") {
    out.parameters = { scale: String(schema.scale ?? 0) };
  }
  return out;
}

const PRIMITIVE: Record<string, string> = {
  int: "int32",
  long: "int64",
  float: "float",
  double: "double",
  boolean: "boolean",
  string: "string",
  bytes: "bytes",
  null: "null",
};
const COMPLEX: Record<string, string> = { record: "struct", array: "array", map: "map" };

/**
 * A decoded Avro datum as the Sluice value it stands for: back to
 * JsonConverter's representation (bytes as base64, longs as numbers or,
 * beyond 2^53, decimal strings), then decoded by the Connect schema as a
 * JSON-with-schemas message would be.
 */
export function valueOfDatum(schema: ConnectSchema, datum: unknown): unknown {
  return decodeBySchema(schema, toPayload(schema, datum));
}

function toPayload(schema: ConnectSchema | undefined, value: unknown): unknown {
  if (value === null || value === undefined) return null;
  if (schema?.type === "struct" && typeof value === "object") {
    const row = value as Record<string, unknown>;
    const out: Record<string, unknown> = {};
    for (const field of schema.fields ?? []) {
      const name = field.field as string;
      out[name] = toPayload(field, row[avroName(name)]);
    }
    return out;
  }
  if (typeof value === "bigint") {
    return value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER)
      ? Number(value)
      : value.toString();
  }
  if (value instanceof Uint8Array) return Buffer.from(value).toString("base64");
  if (Array.isArray(value)) return value.map((item) => toPayload(schema?.items, item));
  if (typeof value === "object") {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = toPayload(schema?.values, v);
    return out;
  }
  return value;
}
