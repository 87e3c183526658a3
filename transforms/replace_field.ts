/**
 * `replace_field`: Kafka's ReplaceField. Keeps only `include`d fields (all
 * when empty), drops `exclude`d ones, then renames with `renames`
 * (`old:new,…`). Applies to every row image (`before`, `after`, batch rows).
 * Renames also apply to the key, which holds row columns; include/exclude
 * leave the key alone so a record keeps its identity.
 *
 * ```json
 * {
 *   "transforms": "fields",
 *   "transforms.fields.type": "org.apache.kafka.connect.transforms.ReplaceField$Value",
 *   "transforms.fields.exclude": "internal_notes,password_hash",
 *   "transforms.fields.renames": "nin:national_id,tel:phone"
 * }
 * ```
 *
 * @module
 */
import { z } from "zod";
import { defineTransform } from "../api/plugin.ts";
import { mapRecordRows, type Row } from "../api/record.ts";
import { list } from "../api/options.ts";
import { addIssue, mapKey, parsePairs } from "./_shared.ts";

const config = z.strictObject({
  include: list().default([]).describe("Fields to keep; empty keeps every field not excluded."),
  exclude: list().default([]).describe("Fields to drop."),
  renames: list().default([]).describe('Renames as "old:new" pairs, comma-separated.'),
  whitelist: list().optional().describe("Deprecated Kafka name of `include`."),
  blacklist: list().optional().describe("Deprecated Kafka name of `exclude`."),
}).superRefine((value, ctx) => {
  const renames = parsePairs(value.renames);
  if (typeof renames === "string") addIssue(ctx, "renames", renames, value.renames.join(","));
  if (value.whitelist && value.include.length > 0) {
    addIssue(ctx, "whitelist", "cannot be used together with include");
  }
  if (value.blacklist && value.exclude.length > 0) {
    addIssue(ctx, "blacklist", "cannot be used together with exclude");
  }
});

/** Keeps, drops and renames fields. */
export const replaceField = defineTransform({
  name: "replace_field",
  aliases: ["org.apache.kafka.connect.transforms.ReplaceField$Value"],
  summary: "Keeps (include), drops (exclude) and renames fields of every row image.",
  config,
  create(options) {
    const include = new Set(options.whitelist ?? options.include);
    const exclude = new Set(options.blacklist ?? options.exclude);
    const renames = parsePairs(options.renames) as Map<string, string>;
    const filter = (name: string) =>
      !exclude.has(name) && (include.size === 0 || include.has(name));
    const rewrite = (row: Row, keep: (name: string) => boolean): Row => {
      const out: Row = {};
      for (const name in row) {
        if (keep(name)) out[renames.get(name) ?? name] = row[name];
      }
      return out;
    };
    const mapValue = (row: Row) => rewrite(row, filter);
    const mapKeyRow = (row: Row) => rewrite(row, () => true);
    return {
      apply(record) {
        const mapped = mapRecordRows(record, mapValue);
        return renames.size > 0 ? mapKey(mapped, mapKeyRow) : mapped;
      },
    };
  },
});
