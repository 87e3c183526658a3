/**
 * `route`: changes a record's topic. Three ways, one per config:
 *
 * - Kafka's RegexRouter: `regex` must match the whole topic (Java
 *   `Matcher.matches()`), which becomes `replacement` with Java `$1` /
 *   `${name}` group references. A topic that does not match is left alone.
 * - By table: `topic.format` with `${topic}`, `${db}`, `${schema}`, `${table}`
 *   (from the change event's `source` block; for batch rows from the record's
 *   origin or its `schema.table` topic).
 * - By field: `field` names a row column (the `after` image, or `before` for a
 *   delete, or the key for a tombstone) whose value is the topic, or fills
 *   `${field}` in `topic.format`. An update whose `after` left the field out
 *   (an unchanged TOAST value) uses `before`, and a delete whose `before`
 *   lacks it uses the key. A record that holds the field nowhere fails
 *   loudly, saying why: leaving it on its old topic could send a delete
 *   where no consumer applies it. Route deletes by a key column, or give
 *   the source table REPLICA IDENTITY FULL; truncates carry no row.
 *
 * ```json
 * {
 *   "transforms": "byDate,byTable",
 *   "transforms.byDate.type": "org.apache.kafka.connect.transforms.RegexRouter",
 *   "transforms.byDate.regex": "(.*)-(\\d{8})",
 *   "transforms.byDate.replacement": "$1",
 *   "transforms.byTable.type": "route",
 *   "transforms.byTable.topic.format": "citizen.${schema}.${table}"
 * }
 * ```
 *
 * @module
 */
import { z } from "zod";
import { defineTransform } from "../api/plugin.ts";
import type { SluiceRecord } from "../api/record.ts";
import {
  addIssue,
  eventField,
  javaPattern,
  javaReplacement,
  tableOf,
  whyMissing,
} from "./_shared.ts";

const PLACEHOLDERS = ["topic", "db", "schema", "table", "field"] as const;

const config = z.strictObject({
  regex: z.string().min(1).optional().describe(
    "Java regular expression that must match the whole topic (RegexRouter).",
  ),
  replacement: z.string().optional().describe(
    "The new topic when `regex` matches; `$1` / `${name}` insert groups, `\\` escapes.",
  ),
  "topic.format": z.string().min(1).optional().describe(
    "Topic template with ${topic}, ${db}, ${schema}, ${table} and (with `field`) ${field}.",
  ),
  field: z.string().min(1).optional().describe(
    "Row column whose value is the topic, or fills ${field} in `topic.format`.",
  ),
}).superRefine((value, ctx) => {
  const regexMode = value.regex !== undefined || value.replacement !== undefined;
  if (regexMode && (value["topic.format"] !== undefined || value.field !== undefined)) {
    addIssue(ctx, "regex", "cannot be combined with topic.format or field; use two route steps");
    return;
  }
  if (!regexMode && value["topic.format"] === undefined && value.field === undefined) {
    addIssue(ctx, "regex", "is required: set regex + replacement, topic.format, or field");
    return;
  }
  if (regexMode) {
    if (value.regex === undefined) {
      addIssue(ctx, "regex", "is required when replacement is set");
      return;
    }
    if (value.replacement === undefined) {
      addIssue(ctx, "replacement", "is required when regex is set");
      return;
    }
    let pattern: RegExp;
    try {
      pattern = javaPattern(value.regex);
    } catch (error) {
      addIssue(ctx, "regex", `is invalid: ${(error as Error).message}`, value.regex);
      return;
    }
    try {
      javaReplacement(value.replacement, pattern);
    } catch (error) {
      addIssue(ctx, "replacement", `is invalid: ${(error as Error).message}`, value.replacement);
    }
  }
  const format = value["topic.format"];
  if (format !== undefined) {
    for (const [, name] of format.matchAll(/\$\{([^}]*)\}/g)) {
      if (!(PLACEHOLDERS as readonly string[]).includes(name)) {
        addIssue(
          ctx,
          "topic.format",
          `uses \${${name}}; valid placeholders are ${
            PLACEHOLDERS.map((p) => `\${${p}}`).join(", ")
          }`,
          format,
        );
      } else if (name === "field" && value.field === undefined) {
        addIssue(ctx, "topic.format", "uses ${field}, so field must be set", format);
      }
    }
  }
});

/** Routes records to a new topic by regex, table or field. */
export const route = defineTransform({
  name: "route",
  aliases: ["org.apache.kafka.connect.transforms.RegexRouter"],
  summary:
    "Changes the topic: Kafka RegexRouter semantics (Java regex, $1 replacements), or by table or field.",
  config,
  create(options) {
    if (options.regex !== undefined) {
      const pattern = javaPattern(options.regex);
      const replace = javaReplacement(options.replacement!, pattern);
      return {
        apply(record) {
          const match = pattern.exec(record.topic);
          if (!match) return record;
          const topic = replace(match);
          return topic === record.topic ? record : { ...record, topic };
        },
      };
    }
    const format = options["topic.format"];
    const field = options.field;
    return {
      apply(record) {
        const fieldValue = field === undefined ? "" : fieldOf(record, field);
        let topic = fieldValue;
        if (format !== undefined) {
          const table = tableOf(record);
          const values: Record<string, string> = {
            ...table,
            topic: record.topic,
            field: fieldValue,
          };
          topic = format.replace(/\$\{([a-z]+)\}/g, (_, name: string) => values[name]);
        }
        if (topic === "") {
          throw new Error(`route: the computed topic for a record on "${record.topic}" is empty`);
        }
        return topic === record.topic ? record : { ...record, topic };
      },
    };
  },
});

function fieldOf(record: SluiceRecord, field: string): string {
  // A delete's before image, then an update's before image (an unchanged
  // TOAST value is not in after), then the key.
  const value = eventField(record, field);
  if (value === undefined || value === null) {
    const what = value === null ? "it is null" : `it is missing: ${whyMissing(record)}`;
    throw new Error(
      `route: cannot route a record on "${record.topic}" by field "${field}": ${what}`,
    );
  }
  return value instanceof Date ? value.toISOString() : String(value);
}
