/**
 * `value_to_key`: Kafka's ValueToKey. Replaces the key with the named fields
 * of the row (the `after` image, or `before` for a delete). An update whose
 * `after` left a field out (an unchanged TOAST value) takes it from
 * `before`, and a delete whose key-only `before` lacks it takes it from the
 * key. A field found nowhere is an error that says why: a record keyed
 * wrongly would land on another partition, out of order with the other
 * changes of its row. Tombstones and truncates keep their key.
 *
 * A record whose key now has other fields than its source's carries the
 * source key's field names in the `__sluice.source.key` header: a sink keyed
 * by the new fields then knows they are not the source's identity, and
 * fails an update that may have moved the row to another key (its old row
 * would stay live) unless the event carries the old row (REPLICA IDENTITY
 * FULL), with which it moves it.
 *
 * ```json
 * {
 *   "transforms": "key",
 *   "transforms.key.type": "org.apache.kafka.connect.transforms.ValueToKey",
 *   "transforms.key.fields": "citizen_id,application_id"
 * }
 * ```
 *
 * @module
 */
import { z } from "zod";
import { defineTransform } from "../api/plugin.ts";
import { recordRow, type Row, type SluiceRecord, SOURCE_KEY_HEADER } from "../api/record.ts";
import { list } from "../api/options.ts";
import { eventField, whyMissing } from "./_shared.ts";

const config = z.strictObject({
  fields: list().pipe(z.array(z.string()).min(1, "must name at least one field")).describe(
    "Row fields that become the key, in this order.",
  ),
});

/** Builds the key from row fields. */
export const valueToKey = defineTransform({
  name: "value_to_key",
  aliases: ["org.apache.kafka.connect.transforms.ValueToKey"],
  summary: "Replaces the key with the named fields of the row.",
  config,
  create(options) {
    return {
      apply(record) {
        if (recordRow(record) === null) return record;
        const key: Row = {};
        for (const field of options.fields) {
          const value = eventField(record, field);
          if (value === undefined) {
            throw new Error(
              `value_to_key: field "${field}" is not in the row of a record on "${record.topic}": ${
                whyMissing(record)
              }`,
            );
          }
          key[field] = value;
        }
        return { ...record, key, headers: withSourceKey(record, options.fields) };
      },
    };
  },
});

/** The record's headers, naming its source key's fields when `fields` are others. */
function withSourceKey(record: SluiceRecord, fields: readonly string[]): SluiceRecord["headers"] {
  if (record.headers?.[SOURCE_KEY_HEADER] !== undefined) return record.headers; // re-keyed before
  const old = record.key && typeof record.key === "object" && !Array.isArray(record.key)
    ? Object.keys(record.key)
    : [];
  if (old.length === fields.length && fields.every((field) => old.includes(field))) {
    return record.headers;
  }
  return { ...record.headers, [SOURCE_KEY_HEADER]: JSON.stringify(old) };
}
