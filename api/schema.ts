/**
 * Types of the values a record carries, in Kafka Connect's schema model.
 *
 * Records carry values, not types. A source that knows its columns' types
 * (postgres_cdc knows them from pgoutput's Relation messages) may attach a
 * key and value schema to its records; a sink that writes typed formats
 * (the kafka sink with JsonConverter's `schemas.enable=true`, later Avro)
 * reads them. A schema is built once per table shape and shared by
 * reference by every record of that shape: attaching one costs a pointer.
 *
 * The shape is the JSON that Kafka Connect's JsonConverter writes for a
 * schema (`{"type":"struct","fields":[…],"optional":false,"name":…}`), and
 * the schema names are Kafka Connect's and Debezium's semantic types
 * (`org.apache.kafka.connect.data.Decimal`, `io.debezium.time.MicroTimestamp`,
 * …), so Debezium's consumers understand them as they are.
 *
 * A transform that changes the shape of a row must drop or replace the
 * schema; {@linkcode mapRecordRows} drops it.
 *
 * @module
 */

/** Kafka Connect's schema types. */
export type ConnectType =
  | "int8"
  | "int16"
  | "int32"
  | "int64"
  | "float"
  | "double"
  | "boolean"
  | "string"
  | "bytes"
  | "array"
  | "map"
  | "struct";

/**
 * A Kafka Connect schema, as JsonConverter writes it. Struct fields carry
 * their name in `field`. Build schemas with their keys in JsonConverter's
 * order (type, fields/items/keys+values, optional, name, version, doc,
 * parameters, default, field) so that their JSON matches Kafka Connect's
 * byte for byte.
 *
 * @example The value schema of a two-column table
 * ```ts
 * import type { ConnectSchema } from "@sluice/sluice";
 * import assert from "node:assert/strict";
 *
 * const value: ConnectSchema = {
 *   type: "struct",
 *   fields: [
 *     { type: "int32", optional: false, field: "id" },
 *     { type: "int32", optional: true, name: "io.debezium.time.Date", version: 1, field: "born" },
 *   ],
 *   optional: true,
 *   name: "warehouse.public.citizens.Value",
 * };
 * assert.equal(value.fields?.[1].name, "io.debezium.time.Date");
 * ```
 */
export interface ConnectSchema {
  /** The literal type; absent only in schemas read from elsewhere. */
  type?: ConnectType | string;
  /** The fields of a struct, in order. */
  fields?: ConnectSchema[];
  /** The element schema of an array. */
  items?: ConnectSchema;
  /** The key schema of a map. */
  keys?: ConnectSchema;
  /** The value schema of a map. */
  values?: ConnectSchema;
  /** Whether the value may be null. */
  optional?: boolean;
  /** The semantic type (`io.debezium.time.Date`) or a struct's name. */
  name?: string;
  /** The version of the semantic type. */
  version?: number;
  /** Documentation of the type. */
  doc?: string;
  /** Parameters of the semantic type (`scale` of a Decimal), all strings. */
  parameters?: Record<string, string>;
  /** The default value, in the schema's own JSON form. */
  default?: unknown;
  /** The name of the field, when this schema is a struct field. */
  field?: string;
}

/**
 * The schemas a source attaches to its records. Built once per table shape;
 * records share them by reference.
 *
 * @example Schemas attached to a record
 * ```ts
 * import type { RecordSchemas, SluiceRecord } from "@sluice/sluice";
 * import assert from "node:assert/strict";
 *
 * const schemas: RecordSchemas = {
 *   key: {
 *     type: "struct",
 *     fields: [{ type: "int32", optional: false, field: "id" }],
 *     optional: false,
 *     name: "w.public.t.Key",
 *   },
 *   value: { type: "struct", fields: [], optional: false, name: "w.public.t.Envelope" },
 * };
 * const record: SluiceRecord = { topic: "w.public.t", key: { id: 1 }, value: {}, schemas };
 * assert.equal(record.schemas?.key?.name, "w.public.t.Key");
 * ```
 */
export interface RecordSchemas {
  /** The schema of `record.key`; absent when the key has none (or is null). */
  readonly key?: ConnectSchema;
  /** The schema of `record.value`. */
  readonly value?: ConnectSchema;
}
