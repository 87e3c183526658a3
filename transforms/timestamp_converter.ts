/**
 * `timestamp_converter`: Kafka's TimestampConverter. Converts `field` of
 * every row image (and of the key, where it is a key column), or the whole
 * value when `field` is empty, to `target.type`:
 *
 * - `Timestamp`: a Date; `Date`: a Date at midnight UTC; `Time`: a Date on
 *   1970-01-01 keeping the time of day; `unix`: a number in `unix.precision`
 *   (a bigint when nanoseconds overflow a safe integer); `string`: text in
 *   `format` (a Java SimpleDateFormat pattern, in UTC).
 *
 * Inputs are recognised by type: Date, a number or bigint (epoch in
 * `unix.precision`), or a string (parsed with `format`, or as ISO 8601 when no
 * format is set). Sub-millisecond precision is lost, as in Kafka.
 *
 * ```json
 * {
 *   "transforms": "ts",
 *   "transforms.ts.type": "org.apache.kafka.connect.transforms.TimestampConverter$Value",
 *   "transforms.ts.field": "created_at",
 *   "transforms.ts.target.type": "string",
 *   "transforms.ts.format": "yyyy-MM-dd HH:mm:ss"
 * }
 * ```
 *
 * @module
 */
import { z } from "zod";
import { defineTransform } from "../api/plugin.ts";
import { mapRecordRows, type Row } from "../api/record.ts";
import { compileDateFormat, type DateFormat } from "./_date_format.ts";
import { addIssue, isRow, mapKey, typeName } from "./_shared.ts";

const DAY = 86_400_000;
const PER_MILLI = { seconds: 0.001, milliseconds: 1, microseconds: 1e3, nanoseconds: 1e6 } as const;
type Precision = keyof typeof PER_MILLI;

const config = z.strictObject({
  field: z.string().default("").describe(
    "The field to convert; empty converts the whole value.",
  ),
  "target.type": z.enum(["string", "unix", "Date", "Time", "Timestamp"]).describe(
    "What to convert to: string, unix (epoch number), Date, Time or Timestamp.",
  ),
  format: z.string().optional().describe(
    "Java SimpleDateFormat pattern (UTC) used to write strings and to parse string inputs; required for target.type string.",
  ),
  "unix.precision": z.enum(["seconds", "milliseconds", "microseconds", "nanoseconds"])
    .default("milliseconds").describe("Unit of epoch numbers, read and written."),
}).superRefine((value, ctx) => {
  if (value["target.type"] === "string" && value.format === undefined) {
    addIssue(ctx, "format", "is required when target.type is string");
  }
  if (value.format !== undefined) {
    try {
      compileDateFormat(value.format);
    } catch (error) {
      addIssue(ctx, "format", `is not a valid pattern: ${(error as Error).message}`, value.format);
    }
  }
});

/** Converts timestamps between Date, epoch numbers and formatted strings. */
export const timestampConverter = defineTransform({
  name: "timestamp_converter",
  aliases: ["org.apache.kafka.connect.transforms.TimestampConverter$Value"],
  summary: "Converts a field or the whole value between Date, Time, Timestamp, unix and string.",
  config,
  create(options) {
    const precision = options["unix.precision"];
    const format = options.format === undefined ? undefined : compileDateFormat(options.format);
    const convert = (value: unknown, where: string): unknown => {
      if (value === null || value === undefined) return value ?? null;
      const millis = toMillis(value, precision, format, where);
      return fromMillis(millis, options["target.type"], precision, format);
    };
    const field = options.field;
    if (field === "") {
      return {
        apply(record) {
          if (record.value === null || record.value === undefined) return record;
          if (isRow(record.value)) {
            throw new Error(
              `timestamp_converter: the value of a record on "${record.topic}" is a row; set "field" to convert one of its fields`,
            );
          }
          return { ...record, value: convert(record.value, "the value") };
        },
      };
    }
    const convertRow = (row: Row): Row =>
      field in row ? { ...row, [field]: convert(row[field], `field "${field}"`) } : row;
    return {
      apply: (record) => mapKey(mapRecordRows(record, convertRow), convertRow),
    };
  },
});

function toMillis(
  value: unknown,
  precision: Precision,
  format: DateFormat | undefined,
  where: string,
): number {
  const fail = (why: string): never => {
    throw new Error(`timestamp_converter: cannot convert ${where} (${typeName(value)}): ${why}`);
  };
  if (value instanceof Date) {
    const millis = value.getTime();
    return Number.isNaN(millis) ? fail("invalid Date") : millis;
  }
  if (typeof value === "number") {
    if (!Number.isFinite(value)) return fail("not finite");
    return precision === "seconds" ? value * 1000 : Math.trunc(value / PER_MILLI[precision]);
  }
  if (typeof value === "bigint") {
    if (precision === "seconds") return Number(value * 1000n);
    return Number(value / BigInt(PER_MILLI[precision]));
  }
  if (typeof value === "string") {
    if (format) {
      try {
        return format.parse(value);
      } catch (error) {
        return fail((error as Error).message);
      }
    }
    const millis = /^\d{4}-\d{2}-\d{2}/.test(value) ? Date.parse(value) : NaN;
    return Number.isNaN(millis) ? fail("not an ISO 8601 timestamp and no format is set") : millis;
  }
  return fail("expected a Date, a number or a string");
}

function fromMillis(
  millis: number,
  target: z.output<typeof config>["target.type"],
  precision: Precision,
  format: DateFormat | undefined,
): unknown {
  const timeOfDay = ((millis % DAY) + DAY) % DAY;
  switch (target) {
    case "Timestamp":
      return new Date(millis);
    case "Date":
      return new Date(millis - timeOfDay);
    case "Time":
      return new Date(timeOfDay);
    case "string":
      return format!.format(new Date(millis));
    case "unix": {
      if (precision === "seconds") return Math.trunc(millis / 1000);
      const scaled = millis * PER_MILLI[precision];
      return Number.isSafeInteger(scaled) ? scaled : BigInt(millis) * BigInt(PER_MILLI[precision]);
    }
  }
}
