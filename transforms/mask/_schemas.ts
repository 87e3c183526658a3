/**
 * The schemas of masked records. A masked record keeps a key and value schema
 * that fit what the masks wrote, so a topic written with JsonConverter's
 * schemas or Avro stays typed (a JDBC sink or a schema registry reads it) and
 * the personal data's type does not outlive it:
 *
 * - `hmac`, `hash`, `truncate`, `partial` and `email` write text, so their
 *   fields become plain strings whatever the column was (a UUID's digest is
 *   no UUID, an enum's no allowed value);
 * - `redact` writes an empty value or a replacement of the value's own
 *   type: a plain field keeps its schema, a semantic one (a Decimal, a time,
 *   a UUID: their text in the record) becomes a plain string, as "" or the
 *   replacement is no such value;
 * - `null` makes its field optional;
 * - `date`, `number` and `fpe` keep the value's type and form, and so the
 *   field's schema.
 *
 * Schemas stay shared: each input schema maps to one masked schema, made on
 * first sight.
 *
 * @module
 */
import type { ConnectSchema, RecordSchemas } from "../../api/schema.ts";
import type { Strategy } from "./_strategies.ts";

const TEXT_RESULTS: ReadonlySet<Strategy> = new Set([
  "hmac",
  "hash",
  "truncate",
  "partial",
  "email",
]);

/** Maps the schemas of records to the schemas of their masked copies. */
export class MaskedSchemas {
  readonly #strategies: ReadonlyMap<string, Strategy>;
  readonly #records = new WeakMap<RecordSchemas, RecordSchemas>();

  constructor(strategies: ReadonlyMap<string, Strategy>) {
    this.#strategies = strategies;
  }

  /**
   * The schemas of the masked copy of a record that carried `schemas`: always
   * a new object (the same one for the same input), so the runtime keeps them
   * as the transform's own instead of dropping the schema of a value it
   * replaced.
   */
  of(schemas: RecordSchemas, changeEvent: boolean): RecordSchemas {
    let masked = this.#records.get(schemas);
    if (!masked) {
      masked = {
        ...(schemas.key ? { key: this.#row(schemas.key) } : {}),
        ...(schemas.value
          ? { value: changeEvent ? this.#envelope(schemas.value) : this.#row(schemas.value) }
          : {}),
      };
      this.#records.set(schemas, masked);
    }
    return masked;
  }

  /** A change event's envelope: its `before` and `after` structs masked. */
  #envelope(envelope: ConnectSchema): ConnectSchema {
    const fields = envelope.fields?.map((field) =>
      field.field === "before" || field.field === "after" ? this.#row(field) : field
    );
    return { ...envelope, fields };
  }

  #row(row: ConnectSchema): ConnectSchema {
    if (row.type !== "struct" || !row.fields) return row;
    return {
      ...row,
      fields: row.fields.map((field) => {
        const strategy = this.#strategies.get(field.field ?? "");
        return strategy ? maskedField(field, strategy) : field;
      }),
    };
  }
}

/** The schema of one masked field (key order as JsonConverter writes it). */
function maskedField(field: ConnectSchema, strategy: Strategy): ConnectSchema {
  if (TEXT_RESULTS.has(strategy) || (strategy === "redact" && field.name !== undefined)) {
    return { type: "string", optional: field.optional ?? false, field: field.field };
  }
  if (strategy === "null" && field.optional !== true) {
    const { field: name, ...rest } = field;
    return { ...rest, optional: true, field: name };
  }
  return field;
}
