/**
 * Connect schemas and values as Avro (drivers/connect_avro.ts) and the
 * registry's wire format (drivers/schema_registry.ts): values in, bytes out
 * and back, without a registry. The registry itself is exercised in
 * tests/e2e/avro_registry_test.ts.
 */
import { Buffer } from "node:buffer";
import { assertEquals, assertThrows } from "../_assert.ts";
import type { ConnectSchema } from "../../api/schema.ts";
import {
  avroDatum,
  avroSchemaOf,
  avroType,
  connectSchemaOfAvro,
  valueOfDatum,
} from "../../drivers/connect_avro.ts";
import { frame, unframe } from "../../drivers/schema_registry.ts";

const value: ConnectSchema = {
  type: "struct",
  fields: [
    { type: "int64", optional: false, field: "id" },
    {
      type: "bytes",
      optional: true,
      name: "org.apache.kafka.connect.data.Decimal",
      version: 1,
      parameters: { scale: "2", "connect.decimal.precision": "10" },
      field: "amount",
    },
    { type: "int32", optional: true, name: "io.debezium.time.Date", version: 1, field: "born" },
    { type: "int16", optional: true, field: "Mixed Case" },
    { type: "array", items: { type: "string", optional: true }, optional: true, field: "tags" },
    { type: "bytes", optional: true, field: "raw" },
  ],
  optional: true,
  name: "warehouse-cdc.public.t.Value",
};

const envelope: ConnectSchema = {
  type: "struct",
  fields: [{ ...value, field: "before" }, { ...value, field: "after" }],
  optional: false,
  name: "warehouse-cdc.public.t.Envelope",
};

Deno.test("a Connect struct becomes an Avro record as Confluent's AvroData writes it", () => {
  const avro = avroSchemaOf(value) as { name: string; namespace: string; fields: unknown[] };
  assertEquals(avro.name, "Value");
  assertEquals(avro.namespace, "warehouse_cdc.public.t");
  assertEquals(avro.fields[0], { name: "id", type: "long" });
  assertEquals(avro.fields[1], {
    name: "amount",
    type: ["null", {
      type: "bytes",
      scale: 2,
      precision: 10,
      logicalType: "decimal",
      "connect.version": 1,
      "connect.parameters": { scale: "2", "connect.decimal.precision": "10" },
      "connect.name": "org.apache.kafka.connect.data.Decimal",
    }],
    default: null,
  });
  assertEquals(avro.fields[3], {
    name: "Mixed_Case",
    type: ["null", { type: "int", "connect.type": "int16" }],
    default: null,
    "connect.field.name": "Mixed Case",
  });
});

Deno.test("a struct type used twice is defined once and then named", () => {
  const avro = avroSchemaOf(envelope) as { fields: { type: unknown }[] };
  assertEquals(avro.fields[1].type, ["null", "warehouse_cdc.public.t.Value"]);
  avroType(avro); // avsc refuses a name defined twice
});

Deno.test("a value survives Avro and the wire format: exact longs, decimals, dates, names, bytes", () => {
  const row = {
    id: "9007199254740993",
    amount: "-12.50",
    born: "2024-02-29",
    "Mixed Case": 7,
    tags: ["a", null],
    raw: new Uint8Array([0, 255]),
  };
  const type = avroType(avroSchemaOf(envelope));
  const bytes = frame(42, type.toBuffer(avroDatum(envelope, { before: null, after: row })));
  const { id, payload } = unframe(bytes);
  assertEquals(id, 42);
  const avroText = JSON.stringify(avroSchemaOf(envelope));
  const back = valueOfDatum(
    connectSchemaOfAvro(JSON.parse(avroText)),
    type.fromBuffer(Buffer.from(payload)),
  );
  assertEquals(back, { before: null, after: row });
});

Deno.test("bytes that are not in the wire format and values that do not fit are refused with a reason", () => {
  assertThrows(() => unframe(new TextEncoder().encode('{"id":1}')), Error, "magic byte 123");
  assertThrows(
    () => avroDatum(value, { id: null }),
    Error,
    `field "id" of warehouse-cdc.public.t.Value is null, but its schema requires a value`,
  );
  assertThrows(
    () => avroSchemaOf({ type: "map", keys: { type: "int32" }, values: { type: "string" } }),
    Error,
    "maps with int32 keys",
  );
});
