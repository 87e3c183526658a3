/**
 * Kafka Connect JSON with schemas (as Debezium writes it), decoded by its
 * schema into the values a postgres sink writes back unchanged.
 */
import { assertEquals } from "../_assert.ts";
import { decimalText, decodeBySchema } from "../../drivers/connect_schema.ts";
import { payloadJson } from "../../drivers/connect_json.ts";

Deno.test("decimals decode from unscaled two's-complement bytes to exact text", () => {
  assertEquals(decimalText(Uint8Array.from([0x30, 0x39]), 2), "123.45");
  assertEquals(decimalText(Uint8Array.from([0xcf, 0xc7]), 2), "-123.45");
  assertEquals(decimalText(Uint8Array.from([0x01]), 3), "0.001");
  assertEquals(decimalText(Uint8Array.from([0x05]), 0), "5");
  assertEquals(decimalText(new Uint8Array(), 0), "0");
});

Deno.test("a Debezium after image decodes bytes, decimals and temporal types by its schema", () => {
  const schema = {
    type: "struct",
    fields: [
      { field: "id", type: "int32" },
      { field: "photo", type: "bytes", optional: true },
      {
        field: "amount",
        type: "bytes",
        name: "org.apache.kafka.connect.data.Decimal",
        parameters: { scale: "2" },
      },
      {
        field: "free",
        type: "struct",
        name: "io.debezium.data.VariableScaleDecimal",
        fields: [{ field: "scale", type: "int32" }, { field: "value", type: "bytes" }],
      },
      { field: "born", type: "int32", name: "io.debezium.time.Date" },
      { field: "ancient", type: "int32", name: "io.debezium.time.Date" },
      { field: "at", type: "int64", name: "io.debezium.time.MicroTimestamp" },
      { field: "at_ms", type: "int64", name: "io.debezium.time.Timestamp" },
      { field: "at_ns", type: "int64", name: "io.debezium.time.NanoTimestamp" },
      { field: "t", type: "int64", name: "io.debezium.time.MicroTime" },
      { field: "tz", type: "string", name: "io.debezium.time.ZonedTimestamp" },
      { field: "blobs", type: "array", items: { type: "bytes" } },
      { field: "name", type: "string" },
    ],
  };
  const payload = {
    id: 1,
    photo: "AAECA//+",
    amount: "MDk=",
    free: { scale: 3, value: "AQ==" },
    born: 19782,
    ancient: -2440588,
    at: 1709251199123456,
    at_ms: -1,
    at_ns: 1709251199123456789,
    t: 86399999999,
    tz: "2024-02-29T23:59:59.123456Z",
    blobs: ["AA==", null],
    name: "AAECA//+",
  };
  assertEquals(decodeBySchema(schema, payload), {
    id: 1,
    photo: Uint8Array.from([0, 1, 2, 3, 255, 254]),
    amount: "123.45",
    free: "0.001",
    born: "2024-02-29",
    ancient: "4714-11-24 BC",
    at: "2024-02-29 23:59:59.123456",
    at_ms: "1969-12-31 23:59:59.999000",
    at_ns: "2024-02-29 23:59:59.123456",
    t: "23:59:59.999999",
    tz: "2024-02-29T23:59:59.123456Z",
    blobs: [Uint8Array.from([0]), null],
    name: "AAECA//+",
  });
  // Nothing to decode: the very same object comes back.
  const plain = { id: 1, name: "x" };
  assertEquals(
    decodeBySchema({ type: "struct", fields: [{ field: "id", type: "int32" }] }, plain) === plain,
    true,
  );
});

Deno.test("a multidimensional array of decimals comes back from the JSON Sluice's producer writes", () => {
  const schema = {
    type: "array",
    items: {
      type: "bytes",
      name: "org.apache.kafka.connect.data.Decimal",
      parameters: { scale: "3" },
    },
  };
  const value = [["1.000", "2.000"], ["3.500", "-4.250"]];
  const payload = JSON.parse(payloadJson(schema, value));
  assertEquals(decodeBySchema(schema, payload), value);
});

Deno.test("dates and timestamps before 1 AD and at ±infinity come back as PostgreSQL reads them", () => {
  const schema = {
    type: "struct",
    fields: [
      { field: "tz", type: "string", name: "io.debezium.time.ZonedTimestamp" },
      { field: "tz0", type: "string", name: "io.debezium.time.ZonedTimestamp" },
      { field: "tzinf", type: "string", name: "io.debezium.time.ZonedTimestamp" },
      { field: "d", type: "int32", name: "io.debezium.time.Date" },
      { field: "dinf", type: "int32", name: "io.debezium.time.Date" },
      { field: "ts", type: "int64", name: "io.debezium.time.MicroTimestamp" },
      { field: "tsinf", type: "int64", name: "io.debezium.time.MicroTimestamp" },
    ],
  };
  // As Sluice's producer writes them (JSON numbers round Long.MIN_VALUE and MAX_VALUE).
  const payload = JSON.parse(`{"tz": "-0043-03-15T12:00:00.000000Z",
    "tz0": "0000-01-01T00:00:00.000000Z", "tzinf": "infinity",
    "d": -2440588, "dinf": -9223372036854775808,
    "ts": 1709251199123456, "tsinf": 9223372036854775807}`);
  assertEquals(decodeBySchema(schema, payload), {
    tz: "0044-03-15 12:00:00.000000+00 BC",
    tz0: "0001-01-01 00:00:00.000000+00 BC",
    tzinf: "infinity",
    d: "4714-11-24 BC",
    dinf: "-infinity",
    ts: "2024-02-29 23:59:59.123456",
    tsinf: "infinity",
  });
});
