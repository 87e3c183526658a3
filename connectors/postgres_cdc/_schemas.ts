/**
 * Debezium's Kafka Connect schemas of a captured table's events, built once
 * per table shape (each Relation message) and attached to every record by
 * reference: the key struct `<topic>.Key`, and the envelope
 * `<topic>.Envelope` with `before`/`after` structs `<topic>.Value`, the
 * `io.debezium.connector.postgresql.Source` block, `transaction`, `op` and
 * the timestamps. Columns get Debezium's PostgreSQL type mappings (literal
 * type plus semantic type name) for the connector's `decimal.handling.mode`
 * and `time.precision.mode`; NOT NULL columns and key fields are not
 * optional.
 *
 * The record values stay what the codec made of them (PostgreSQL's text for
 * numeric, dates…); the kafka sink's JsonConverter turns them into the
 * schema's representation when it writes (`drivers/connect_json.ts`).
 *
 * Checked against Debezium 3.6.1's own output (tests/e2e/debezium_interop_test.ts).
 * Not rendered: column defaults (`default`), `column.propagate.source.type`
 * parameters, PostGIS types (strings here); `hstore` stays a plain string
 * (Debezium: `io.debezium.data.Json` of its map), so it travels losslessly.
 *
 * @module
 */
import type { ConnectSchema, RecordSchemas } from "../../api/schema.ts";
import type { Sql } from "../../drivers/postgres.ts";
import type { RelationColumn } from "./_pgoutput.ts";
import type { DecimalMode, IntervalMode, TimeMode } from "./_values.ts";

/** What the catalog says about one column, beyond pgoutput's Relation message. */
export interface ColumnFacts {
  readonly notNull: boolean;
  /** `typname` of the column's type, domains resolved to their base type. */
  readonly type: string;
  /** `typcategory` of that type (`A` array, `E` enum…). */
  readonly category: string;
  /** The type modifier (of the domain when the column's type is one). */
  readonly modifier: number;
  /** For arrays: the element's `typname` and `typcategory`. */
  readonly element?: string;
  readonly elementCategory?: string;
  /** For enums (and arrays of enums): the labels in order. */
  readonly labels?: string;
}

/**
 * The column facts of a table shape, by column name. The type comes from the
 * Relation message (its OID and modifier), never from the table as it is now:
 * the stream may be decoding events written before an `ALTER COLUMN … TYPE`
 * that has already run, and those events must keep the type they were
 * written with. Only NOT NULL is read from the live table (pgoutput does not
 * send it), and only while the column still has the message's type.
 */
export async function columnFacts(
  sql: Sql,
  oid: number,
  columns: readonly RelationColumn[],
): Promise<Map<string, ColumnFacts>> {
  if (columns.length === 0) return new Map();
  const rows = await sql<
    {
      name: string;
      not_null: boolean;
      type: string;
      category: string;
      modifier: number;
      element: string | null;
      element_category: string | null;
      labels: string | null;
    }[]
  >`
    select m.name, coalesce(a.attnotnull, false) as not_null, b.typname as type,
           b.typcategory as category,
           (case when t.typbasetype <> 0 then t.typtypmod else m.modifier end)::int as modifier,
           e.typname as element, e.typcategory as element_category,
           (select string_agg(l.enumlabel, ',' order by l.enumsortorder) from pg_enum l
             where l.enumtypid = coalesce(e.oid, b.oid)) as labels
    from unnest(${columns.map((c) => c.name)}::text[], ${columns.map((c) => c.typeOid)}::oid[],
                ${columns.map((c) => c.typeModifier)}::int[]) as m(name, type_oid, modifier)
    join pg_type t on t.oid = m.type_oid
    join pg_type b on b.oid = coalesce(nullif(t.typbasetype, 0), t.oid)
    left join pg_type e on e.oid = b.typelem and b.typcategory = 'A'
    left join pg_attribute a on a.attrelid = ${oid} and a.attname = m.name
      and a.atttypid = m.type_oid and a.attnum > 0 and not a.attisdropped`;
  return new Map(rows.map((row) => [row.name, {
    notNull: row.not_null,
    type: row.type,
    category: row.category,
    modifier: row.modifier,
    element: row.element ?? undefined,
    elementCategory: row.element_category ?? undefined,
    labels: row.labels ?? undefined,
  }]));
}

/** The modes that decide the semantic types. */
export interface SchemaModes {
  readonly decimal: DecimalMode;
  readonly time: TimeMode;
  /** Absent: numeric. */
  readonly interval?: IntervalMode;
}

/** A captured column: its name and (when the catalog knows it) its facts. */
export interface SchemaColumn {
  readonly name: string;
  readonly facts: ColumnFacts | undefined;
  /** Optional in the value struct (key columns never are). */
  readonly optional: boolean;
}

/** The key and envelope schemas of one table shape. */
export function tableSchemas(
  topic: string,
  columns: readonly SchemaColumn[],
  keyNames: readonly string[],
  modes: SchemaModes,
): RecordSchemas {
  const keys = new Set(keyNames);
  const fields = columns.map((c) =>
    withField(columnSchema(c.facts, modes, !keys.has(c.name) && c.optional), c.name)
  );
  const rowSchema = (): ConnectSchema => ({
    type: "struct",
    fields,
    optional: true,
    name: `${topic}.Value`,
  });
  const keyFields = keyNames.map((name) => {
    const column = columns.find((c) => c.name === name);
    return withField(columnSchema(column?.facts, modes, false), name);
  });
  const key: ConnectSchema | undefined = keyFields.length > 0
    ? { type: "struct", fields: keyFields, optional: false, name: `${topic}.Key` }
    : undefined;
  const value: ConnectSchema = {
    type: "struct",
    fields: [
      { ...rowSchema(), field: "before" },
      { ...rowSchema(), field: "after" },
      SOURCE,
      TRANSACTION,
      { type: "string", optional: false, field: "op" },
      { type: "int64", optional: true, field: "ts_ms" },
      { type: "int64", optional: true, field: "ts_us" },
      { type: "int64", optional: true, field: "ts_ns" },
    ],
    optional: false,
    name: `${topic}.Envelope`,
    version: 2,
  };
  return { key, value };
}

function withField(schema: ConnectSchema, field: string): ConnectSchema {
  return { ...schema, field };
}

const string = (optional: boolean, field?: string): ConnectSchema =>
  field === undefined ? { type: "string", optional } : { type: "string", optional, field };
const int64 = (optional: boolean, field: string): ConnectSchema => ({
  type: "int64",
  optional,
  field,
});

/** Debezium's `io.debezium.connector.postgresql.Source` block. */
const SOURCE: ConnectSchema = {
  type: "struct",
  fields: [
    string(false, "version"),
    string(false, "connector"),
    string(false, "name"),
    int64(false, "ts_ms"),
    {
      type: "string",
      optional: true,
      name: "io.debezium.data.Enum",
      version: 1,
      parameters: {
        allowed:
          "true,first,first_in_data_collection,last_in_data_collection,last,false,incremental",
      },
      default: "false",
      field: "snapshot",
    },
    string(false, "db"),
    string(true, "sequence"),
    int64(true, "ts_us"),
    int64(true, "ts_ns"),
    string(false, "schema"),
    string(false, "table"),
    int64(true, "txId"),
    int64(true, "lsn"),
    int64(true, "xmin"),
    string(true, "origin"),
    int64(true, "origin_lsn"),
  ],
  optional: false,
  name: "io.debezium.connector.postgresql.Source",
  version: 1,
  field: "source",
};

/** Debezium's transaction block (`provide.transaction.metadata`); always null here. */
const TRANSACTION: ConnectSchema = {
  type: "struct",
  fields: [
    string(false, "id"),
    int64(false, "total_order"),
    int64(false, "data_collection_order"),
  ],
  optional: true,
  name: "event.block",
  version: 1,
  field: "transaction",
};

/** A semantic type: literal type, optionality, name and version 1 (and parameters). */
function semantic(
  type: string,
  optional: boolean,
  name: string,
  parameters?: Record<string, string>,
): ConnectSchema {
  return parameters
    ? { type, optional, name, version: 1, parameters }
    : { type, optional, name, version: 1 };
}

/** The schema of one column (without `field`). Unknown types are strings. */
export function columnSchema(
  facts: ColumnFacts | undefined,
  modes: SchemaModes,
  optional: boolean,
): ConnectSchema {
  if (!facts) return string(optional);
  if (facts.category === "A" && facts.element) {
    const element: ColumnFacts = {
      notNull: false,
      type: facts.element,
      category: facts.elementCategory ?? "",
      modifier: facts.modifier,
      labels: facts.labels,
    };
    return { type: "array", items: scalarSchema(element, modes, true), optional };
  }
  return scalarSchema(facts, modes, optional);
}

function scalarSchema(facts: ColumnFacts, modes: SchemaModes, optional: boolean): ConnectSchema {
  const { type, modifier } = facts;
  if (facts.category === "E") {
    return semantic("string", optional, "io.debezium.data.Enum", { allowed: facts.labels ?? "" });
  }
  switch (type) {
    case "bool":
      return { type: "boolean", optional };
    case "bit":
    case "varbit": {
      if (type === "bit" && modifier === 1) return { type: "boolean", optional };
      const length = String(modifier > 0 ? modifier : 2147483647);
      return semantic("bytes", optional, "io.debezium.data.Bits", { length });
    }
    case "int2":
      return { type: "int16", optional };
    case "int4":
      return { type: "int32", optional };
    case "int8":
    case "oid":
      return { type: "int64", optional };
    case "float4":
      return { type: "float", optional };
    case "float8":
      return { type: "double", optional };
    case "numeric":
      return numericSchema(modifier, modes.decimal, optional);
    case "money":
      // Debezium: a Decimal of scale 2 (money.fraction.digits) without a precision.
      if (modes.decimal !== "precise") return numericSchema(0, modes.decimal, optional);
      return semantic("bytes", optional, "org.apache.kafka.connect.data.Decimal", { scale: "2" });
    case "bytea":
      return { type: "bytes", optional };
    case "json":
    case "jsonb":
      return semantic("string", optional, "io.debezium.data.Json");
    case "xml":
      return semantic("string", optional, "io.debezium.data.Xml");
    case "uuid":
      return semantic("string", optional, "io.debezium.data.Uuid");
    case "tsvector":
      return semantic("string", optional, "io.debezium.data.Tsvector");
    case "ltree":
      return semantic("string", optional, "io.debezium.data.Ltree");
    case "timestamptz":
      return semantic("string", optional, "io.debezium.time.ZonedTimestamp");
    case "timetz":
      return semantic("string", optional, "io.debezium.time.ZonedTime");
    case "interval":
      return modes.interval === "string"
        ? semantic("string", optional, "io.debezium.time.Interval")
        : semantic("int64", optional, "io.debezium.time.MicroDuration");
    case "point":
      return pointSchema(optional);
    case "date":
    case "time":
    case "timestamp":
      return temporalSchema(type, modifier, modes.time, optional);
    default:
      return string(optional);
  }
}

/** numeric: Decimal with scale and precision, VariableScaleDecimal when unconstrained. */
function numericSchema(modifier: number, mode: DecimalMode, optional: boolean): ConnectSchema {
  if (mode === "double") return { type: "double", optional };
  if (mode === "string") return string(optional);
  if (modifier < 4) {
    return {
      type: "struct",
      fields: [
        { type: "int32", optional: false, field: "scale" },
        { type: "bytes", optional: false, field: "value" },
      ],
      optional,
      name: "io.debezium.data.VariableScaleDecimal",
      version: 1,
      doc: "Variable scaled decimal",
    };
  }
  const precision = ((modifier - 4) >> 16) & 0xffff;
  const scale = (modifier - 4) & 0xffff;
  return semantic("bytes", optional, "org.apache.kafka.connect.data.Decimal", {
    scale: String(scale),
    "connect.decimal.precision": String(precision),
  });
}

function pointSchema(optional: boolean): ConnectSchema {
  return {
    type: "struct",
    fields: [
      { type: "double", optional: false, field: "x" },
      { type: "double", optional: false, field: "y" },
      { type: "bytes", optional: true, field: "wkb" },
      { type: "int32", optional: true, field: "srid" },
    ],
    optional,
    name: "io.debezium.data.geometry.Point",
    version: 1,
    doc: "Geometry (POINT)",
  };
}

/** date, time and timestamp by `time.precision.mode` and the column's precision. */
function temporalSchema(
  type: "date" | "time" | "timestamp",
  modifier: number,
  mode: TimeMode,
  optional: boolean,
): ConnectSchema {
  const precision = modifier < 0 ? 6 : modifier;
  if (mode === "isostring") {
    const name = { date: "IsoDate", time: "IsoTime", timestamp: "IsoTimestamp" }[type];
    return semantic("string", optional, `io.debezium.time.${name}`);
  }
  if (mode === "connect") {
    const name = { date: "Date", time: "Time", timestamp: "Timestamp" }[type];
    return semantic(
      type === "timestamp" ? "int64" : "int32",
      optional,
      `org.apache.kafka.connect.data.${name}`,
    );
  }
  if (type === "date") return semantic("int32", optional, "io.debezium.time.Date");
  if (type === "time") {
    return mode === "adaptive_time_microseconds" || precision > 3
      ? semantic("int64", optional, "io.debezium.time.MicroTime")
      : semantic("int32", optional, "io.debezium.time.Time");
  }
  return precision > 3
    ? semantic("int64", optional, "io.debezium.time.MicroTimestamp")
    : semantic("int64", optional, "io.debezium.time.Timestamp");
}
