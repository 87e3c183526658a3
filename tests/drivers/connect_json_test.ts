/**
 * JsonConverter's writing side (`drivers/connect_json.ts`): Java's number
 * formats, Decimal bytes, PostgreSQL text into Debezium's representations,
 * and a value that does not fit its schema. The decoding side
 * (`connect_schema.ts`) reads back what is written.
 */
import { assertEquals, assertThrows } from "../_assert.ts";
import type { ConnectSchema } from "../../api/schema.ts";
import { mapRecordRows, withFittingSchemas } from "../../api/record.ts";
import {
  connectEnvelope,
  javaDouble,
  payloadJson,
  twosComplement,
  unscaledAt,
} from "../../drivers/connect_json.ts";
import { decodeBySchema } from "../../drivers/connect_schema.ts";

const named = (type: string, name: string, parameters?: Record<string, string>): ConnectSchema => ({
  type,
  name,
  parameters,
});

Deno.test("doubles are printed as Java prints them, and NaN and infinities as Jackson quotes them", () => {
  assertEquals(
    [1, 1.5, -2, 0.1, 1e7, 1.7976931348623157e308, 5e-324, 0.001, 0.0001, -0, NaN, -Infinity]
      .map(javaDouble),
    [
      "1.0",
      "1.5",
      "-2.0",
      "0.1",
      "1.0E7",
      "1.7976931348623157E308",
      "4.9E-324",
      "0.001",
      "1.0E-4",
      "-0.0",
      '"NaN"',
      '"-Infinity"',
    ],
  );
});

Deno.test("decimals become Java's BigInteger bytes of the unscaled value, and read back exactly", () => {
  assertEquals([0n, 127n, 128n, -1n, -128n, -129n, 1250n].map((n) => [...twosComplement(n)]), [
    [0],
    [127],
    [0, 128],
    [255],
    [128],
    [255, 127],
    [4, 226],
  ]);
  assertEquals(unscaledAt("-0.00000000000000000001", 20), -1n);
  assertEquals(unscaledAt("NaN", 2), undefined);
  const decimal = named("bytes", "org.apache.kafka.connect.data.Decimal", { scale: "2" });
  for (const text of ["12.50", "-92233720368547758.08", "0.00"]) {
    const written = JSON.parse(payloadJson(decimal, text));
    assertEquals(decodeBySchema(decimal, written), text);
  }
  assertEquals(payloadJson(decimal, "-$1,234.50"), payloadJson(decimal, "-1234.50"), "money text");
  const variable = { type: "struct", name: "io.debezium.data.VariableScaleDecimal" };
  assertEquals(payloadJson(variable, "-0.001"), '{"scale":3,"value":"/w=="}');
  assertEquals(decodeBySchema(variable, { scale: 3, value: "/w==" }), "-0.001");
  // NaN and infinities have no Decimal form: the record fails rather than carry null.
  for (const [schema, text] of [[decimal, "NaN"], [variable, "-Infinity"]] as const) {
    assertThrows(() => payloadJson(schema, text), Error, "decimal.handling.mode to string");
  }
});

Deno.test("a bit varying value whose leading zeros the Bits bytes would lose fails, bit(n) keeps them", () => {
  const varbit = named("bytes", "io.debezium.data.Bits", { length: "2147483647" });
  for (const text of ["", "0010"]) {
    assertThrows(() => payloadJson(varbit, text), Error, "has no exact Connect Bits form");
  }
  assertEquals(decodeBySchema(varbit, JSON.parse(payloadJson(varbit, "1010"))), "1010");
  assertEquals(decodeBySchema(varbit, JSON.parse(payloadJson(varbit, "0"))), "0");
  const bit4 = named("bytes", "io.debezium.data.Bits", { length: "4" });
  assertEquals(decodeBySchema(bit4, JSON.parse(payloadJson(bit4, "0010"))), "0010");
});

Deno.test("PostgreSQL's temporal text becomes Debezium's numbers and zoned strings", () => {
  const json = (name: string, type: string, value: unknown) =>
    payloadJson(named(type, name), value);
  assertEquals(json("io.debezium.time.Date", "int32", "2024-02-29"), "19782");
  assertEquals(json("io.debezium.time.Date", "int32", 19782), "19782", "adaptive mode's number");
  assertEquals(json("io.debezium.time.MicroTime", "int64", "24:00:00"), "86400000000");
  assertEquals(json("io.debezium.time.Time", "int32", "10:11:12.123"), "36672123");
  assertEquals(
    json("io.debezium.time.MicroTimestamp", "int64", "0044-03-15 12:00:00.000001 BC"),
    "-63517780799999999",
  );
  // The adaptive codec's exact string past 2^53 µs is already the epoch number.
  assertEquals(
    json("io.debezium.time.MicroTimestamp", "int64", "-63517780799999999"),
    "-63517780799999999",
  );
  assertEquals(
    json("io.debezium.time.ZonedTimestamp", "string", "2024-02-29 23:59:59.123456+05:30"),
    '"2024-02-29T18:29:59.123456Z"',
  );
  assertEquals(
    json("io.debezium.time.ZonedTimestamp", "string", "1970-01-01 00:00:00+00"),
    '"1970-01-01T00:00:00.000000Z"',
  );
  assertEquals(json("io.debezium.time.ZonedTime", "string", "00:00:00-12"), '"12:00:00Z"');
  assertEquals(
    json("io.debezium.time.MicroDuration", "int64", "-1 days +00:00:00.000001"),
    "-86399999999",
  );
  assertEquals(
    json("io.debezium.time.MicroDuration", "int64", "178000000 years"),
    "9223372036854775807",
  );
  assertEquals(json("io.debezium.data.Bits", "bytes", "10101010"), '"qg=="');
  // interval.handling.mode string: ISO 8601, each field with its sign (exact).
  for (
    const [text, iso] of [
      ["1 year 2 mons -3 days -04:05:06.789", "P1Y2M-3DT-4H-5M-6.789S"],
      ["-1 days +02:00:00", "P-1DT2H"],
      ["00:00:00", "PT0S"],
      ["-00:00:00.5", "PT-0.5S"],
      ["2562047788:00:54.775807", "PT2562047788H54.775807S"],
    ]
  ) assertEquals(json("io.debezium.time.Interval", "string", text), JSON.stringify(iso));
});

Deno.test("a value with a field its schema lacks fails, and mapRecordRows drops the value schema", () => {
  const schema: ConnectSchema = {
    type: "struct",
    fields: [{ type: "int32", optional: false, field: "id" }],
    optional: false,
    name: "t.Value",
  };
  assertEquals(
    connectEnvelope(schema, { id: 1 }),
    '{"schema":{"type":"struct","fields":[{"type":"int32","optional":false,"field":"id"}],"optional":false,"name":"t.Value"},"payload":{"id":1}}',
  );
  assertEquals(connectEnvelope(undefined, { id: 1 }), '{"schema":null,"payload":{"id":1}}');
  assertThrows(() => connectEnvelope(schema, { id: 1, extra: 2 }), Error, "extra");
  const record = {
    topic: "t",
    key: { id: 1 },
    value: { id: 1 },
    schemas: { key: schema, value: schema },
  };
  const mapped = mapRecordRows(record, (row) => ({ ...row, extra: 2 }));
  assertEquals(mapped.schemas, { key: schema });
});

Deno.test("a null where the schema requires a value fails, as Kafka Connect's converter fails it", () => {
  const schema: ConnectSchema = {
    type: "struct",
    fields: [
      { type: "int32", optional: false, field: "id" },
      { type: "string", optional: true, field: "note" },
      { type: "string", optional: false, field: "code" },
    ],
    optional: false,
    name: "t.Value",
  };
  assertEquals(
    JSON.parse(connectEnvelope(schema, { id: 1, note: null, code: "a" })).payload,
    { id: 1, note: null, code: "a" },
  );
  assertThrows(
    () => connectEnvelope(schema, { id: 1, note: "x", code: null }),
    Error,
    'field "code" of t.Value is null, but its schema requires a value',
  );
  // Left out (an unchanged TOAST value) is not null: the stand-in is written.
  assertEquals(
    JSON.parse(connectEnvelope(schema, { id: 1, note: "x" })).payload.code,
    "__debezium_unavailable_value",
  );
});

Deno.test("a transform step that replaces a record's value or key drops the schema it carried over", () => {
  const schema: ConnectSchema = { type: "struct", fields: [], optional: false };
  const input = {
    topic: "t",
    key: { id: 1 },
    value: { id: 1 },
    schemas: { key: schema, value: schema },
  };
  assertEquals(withFittingSchemas(input, { ...input, topic: "u" }).schemas, input.schemas);
  assertEquals(withFittingSchemas(input, { ...input, value: { id: 2 } }).schemas, { key: schema });
  assertEquals(withFittingSchemas(input, { ...input, key: { k: 1 } }).schemas, { value: schema });
  assertEquals("schemas" in withFittingSchemas(input, { ...input, key: null, value: null }), false);
  const own = { value: schema };
  assertEquals(withFittingSchemas(input, { ...input, value: 1, schemas: own }).schemas, own);
});
