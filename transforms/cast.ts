/**
 * `cast`: Kafka's Cast. `spec` is `field:type,…` to cast fields of every row
 * image (and of the key, where the field is a key column), or a single
 * `type` to cast a whole primitive value. Types: int8, int16, int32, int64,
 * float32, float64, boolean, string.
 *
 * Differences from Kafka, on purpose: a number that does not fit the target
 * integer type is an error instead of wrapping around, and only "true" or
 * "false" (any case) cast to boolean. Dates cast to numbers as epoch
 * milliseconds and to strings as ISO 8601; bytes cast to base64 strings;
 * objects and arrays cast to JSON strings. Fields absent from a row are left
 * absent; null stays null.
 *
 * ```json
 * {
 *   "transforms": "types",
 *   "transforms.types.type": "org.apache.kafka.connect.transforms.Cast$Value",
 *   "transforms.types.spec": "age:int16,score:float64,active:boolean,zip:string"
 * }
 * ```
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { z } from "zod";
import { defineTransform } from "../api/plugin.ts";
import { mapRecordRows, type Row } from "../api/record.ts";
import { list } from "../api/options.ts";
import { addIssue, isRow, mapKey, typeName } from "./_shared.ts";

const TYPES = [
  "int8",
  "int16",
  "int32",
  "int64",
  "float32",
  "float64",
  "boolean",
  "string",
] as const;
type CastType = typeof TYPES[number];
const KAFKA_ONLY = ["bytes", "array", "map", "struct"];

const INT_RANGE: Record<string, [bigint, bigint]> = {
  int8: [-128n, 127n],
  int16: [-32768n, 32767n],
  int32: [-2147483648n, 2147483647n],
  int64: [-9223372036854775808n, 9223372036854775807n],
};

const config = z.strictObject({
  spec: list().describe(
    'Casts as "field:type" pairs, or one type to cast the whole value. Types: int8, int16, int32, int64, float32, float64, boolean, string.',
  ),
}).superRefine((value, ctx) => {
  const result = parseSpec(value.spec);
  if (typeof result === "string") addIssue(ctx, "spec", result, value.spec.join(","));
});

type Spec = { whole: CastType } | { fields: Map<string, CastType> };

function parseSpec(entries: readonly string[]): Spec | string {
  if (entries.length === 0) return "must name at least one cast";
  const fields = new Map<string, CastType>();
  let whole: CastType | undefined;
  for (const entry of entries) {
    const parts = entry.split(":").map((part) => part.trim());
    if (parts.length > 2 || parts.some((part) => part === "")) {
      return `each entry must be "field:type" or a single type: current entry is ${
        JSON.stringify(entry)
      }`;
    }
    const type = parts[parts.length - 1];
    if (!(TYPES as readonly string[]).includes(type)) {
      return KAFKA_ONLY.includes(type)
        ? `cannot cast to ${type}; supported types are ${TYPES.join(", ")}`
        : `unknown type ${JSON.stringify(type)}; supported types are ${TYPES.join(", ")}`;
    }
    if (parts.length === 1) whole = type as CastType;
    else fields.set(parts[0], type as CastType);
  }
  if (whole !== undefined && (entries.length > 1 || fields.size > 0)) {
    return "a whole-value type cannot be mixed with field casts";
  }
  return whole !== undefined ? { whole } : { fields };
}

/** Casts fields or whole values to Kafka Connect primitive types. */
export const cast = defineTransform({
  name: "cast",
  aliases: ["org.apache.kafka.connect.transforms.Cast$Value"],
  summary:
    "Casts fields (or a whole primitive value) to int8…int64, float32/64, boolean or string.",
  config,
  create(options) {
    const spec = parseSpec(options.spec) as Spec;
    if ("whole" in spec) {
      return {
        apply(record) {
          if (record.value === null || record.value === undefined) return record;
          if (isRow(record.value)) {
            throw new Error(
              `cast: cannot cast the whole value of a record on "${record.topic}" to ${spec.whole}: it is a row; name fields as "field:${spec.whole}"`,
            );
          }
          return { ...record, value: castValue(record.value, spec.whole, "the value") };
        },
      };
    }
    const castRow = (row: Row): Row => {
      let out: Row | undefined;
      for (const [field, type] of spec.fields) {
        if (!(field in row)) continue;
        out ??= { ...row };
        out[field] = castValue(row[field], type, `field "${field}"`);
      }
      return out ?? row;
    };
    return {
      apply(record) {
        return mapKey(mapRecordRows(record, castRow), castRow);
      },
    };
  },
});

/** Casts one value; throws an Error naming `where` when it cannot. */
export function castValue(value: unknown, type: CastType, where: string): unknown {
  if (value === null || value === undefined) return value ?? null;
  const fail = (why: string): never => {
    throw new Error(`cast: cannot cast ${where} (${typeName(value)}) to ${type}: ${why}`);
  };
  switch (type) {
    case "string":
      if (typeof value === "string") return value;
      if (value instanceof Date) return value.toISOString();
      if (ArrayBuffer.isView(value)) {
        return Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString("base64");
      }
      if (typeof value === "object") return JSON.stringify(value);
      return String(value);
    case "boolean":
      if (typeof value === "boolean") return value;
      if (typeof value === "number") return value !== 0;
      if (typeof value === "bigint") return value !== 0n;
      if (typeof value === "string") {
        const lower = value.trim().toLowerCase();
        if (lower === "true" || lower === "false") return lower === "true";
        return fail('only "true" and "false" are booleans');
      }
      return fail("not a number, string or boolean");
    case "float32":
    case "float64": {
      const number = toNumber(value, fail);
      return type === "float32" ? Math.fround(number) : number;
    }
    default:
      return toInteger(value, type, fail);
  }
}

function toNumber(value: unknown, fail: (why: string) => never): number {
  if (typeof value === "number") return value;
  if (typeof value === "bigint") return Number(value);
  if (typeof value === "boolean") return value ? 1 : 0;
  if (value instanceof Date) return value.getTime();
  if (typeof value === "string" && value.trim() !== "") {
    const number = Number(value);
    if (!Number.isNaN(number)) return number;
  }
  return fail("not a number");
}

function toInteger(value: unknown, type: CastType, fail: (why: string) => never): number | bigint {
  let integer: bigint;
  if (typeof value === "bigint") integer = value;
  else if (typeof value === "string") {
    if (!/^\s*[-+]?\d+\s*$/.test(value)) return fail("the string is not an integer");
    integer = BigInt(value.trim());
  } else {
    const number = toNumber(value, fail);
    if (!Number.isFinite(number)) return fail("not a finite number");
    integer = BigInt(Math.trunc(number));
  }
  const [min, max] = INT_RANGE[type];
  if (integer < min || integer > max) return fail(`out of range ${min}..${max}`);
  const small = Number(integer);
  return Number.isSafeInteger(small) ? small : integer;
}
