/**
 * `insert_field`: Kafka's InsertField, for every row image (`before`,
 * `after`, batch rows). Inserts the topic, the Kafka partition and offset
 * (from the record's origin), the record timestamp (epoch milliseconds, as
 * Kafka does without a schema), a static value, and fields of the Debezium
 * `source` block (or of the origin, for batch rows). Kafka's `!` (required)
 * and `?` (optional) suffixes on field names are accepted and ignored.
 * Tombstones pass unchanged; a value that is not a row is an error.
 *
 * ```json
 * {
 *   "transforms": "meta",
 *   "transforms.meta.type": "org.apache.kafka.connect.transforms.InsertField$Value",
 *   "transforms.meta.static.field": "synced_by",
 *   "transforms.meta.static.value": "sluice",
 *   "transforms.meta.timestamp.field": "source_ts",
 *   "transforms.meta.source.fields": "lsn:cdc_lsn,table"
 * }
 * ```
 *
 * @module
 */
import { z } from "zod";
import { defineTransform } from "../api/plugin.ts";
import { isChangeEvent, mapRecordRows, type Row, type SluiceRecord } from "../api/record.ts";
import { list } from "../api/options.ts";
import { addIssue, isRow } from "./_shared.ts";

const fieldName = (what: string) =>
  z.string().min(1).transform((name) => name.replace(/[!?]$/, "")).optional().describe(
    `Field that receives ${what}.`,
  );

const config = z.strictObject({
  "topic.field": fieldName("the topic"),
  "partition.field": fieldName("the Kafka partition (origin.partition)"),
  "offset.field": fieldName("the Kafka offset (origin.offset)"),
  "timestamp.field": fieldName("the record timestamp in epoch milliseconds"),
  "static.field": fieldName("`static.value`"),
  "static.value": z.string().optional().describe("The value inserted into `static.field`."),
  "source.fields": list().default([]).describe(
    'Fields of the change event\'s source block (or of the origin, for batch rows), as "name" or "name:target".',
  ),
  "source.fields.prefix": z.string().default("source_").describe(
    "Prefix of the target name of a `source.fields` entry given without one.",
  ),
}).superRefine((value, ctx) => {
  if ((value["static.field"] === undefined) !== (value["static.value"] === undefined)) {
    addIssue(ctx, "static.field", "static.field and static.value must be set together");
  }
  for (const entry of value["source.fields"]) {
    if (!/^[^:]+(:[^:]+)?$/.test(entry)) {
      addIssue(ctx, "source.fields", 'entries must be "name" or "name:target"', entry);
    }
  }
  const any = ["topic.field", "partition.field", "offset.field", "timestamp.field", "static.field"]
    .some((key) => value[key as keyof typeof value] !== undefined);
  if (!any && value["source.fields"].length === 0) {
    addIssue(ctx, "topic.field", "nothing to insert: set at least one *.field option");
  }
});

/** Inserts record metadata and static values into rows. */
export const insertField = defineTransform({
  name: "insert_field",
  aliases: ["org.apache.kafka.connect.transforms.InsertField$Value"],
  summary:
    "Inserts the topic, partition, offset, timestamp, a static value or source metadata into rows.",
  config,
  create(options) {
    const sourceFields = options["source.fields"].map((entry) => {
      const [name, target] = entry.split(":").map((part) => part.trim());
      return { name, target: target ?? `${options["source.fields.prefix"]}${name}` };
    });
    return {
      apply(record) {
        if (record.value === null || record.value === undefined) return record;
        if (!isRow(record.value)) {
          throw new Error(
            `insert_field: the value of a record on "${record.topic}" is not a row, so no field can be inserted`,
          );
        }
        const fields = fieldsFor(record, options, sourceFields);
        return mapRecordRows(record, (row: Row) => ({ ...row, ...fields }));
      },
    };
  },
});

function fieldsFor(
  record: SluiceRecord,
  options: z.output<typeof config>,
  sourceFields: { name: string; target: string }[],
): Row {
  const fields: Row = {};
  const origin = record.origin ?? {};
  if (options["topic.field"]) fields[options["topic.field"]] = record.topic;
  if (options["partition.field"]) fields[options["partition.field"]] = origin.partition ?? null;
  if (options["offset.field"]) fields[options["offset.field"]] = origin.offset ?? null;
  if (options["timestamp.field"]) fields[options["timestamp.field"]] = record.timestamp ?? null;
  if (options["static.field"]) fields[options["static.field"]] = options["static.value"];
  if (sourceFields.length > 0) {
    const source: Record<string, unknown> = isChangeEvent(record.value)
      ? record.value.source ?? {}
      : origin;
    for (const { name, target } of sourceFields) fields[target] = source[name] ?? null;
  }
  return fields;
}
