import {
  assert,
  assertEquals,
  assertMatch,
  assertRejects,
  assertStrictEquals,
} from "../_assert.ts";
import { cast } from "../../transforms/cast.ts";
import { apply, changeRecord, configIssues, images, make, rowRecord } from "../_transforms.ts";

// Kafka's CastTest: config checks.
const badSpecs: [string, string, RegExp][] = [
  ["an empty spec (testConfigEmpty)", "", /at least one cast/],
  ["an unknown type (testConfigInvalidSchemaType)", "foo:faketype", /unknown type "faketype"/],
  ["an array target (testConfigInvalidTargetType)", "foo:array", /cannot cast to array/],
  ["a bytes target (testUnsupportedTargetType)", "foo:bytes", /cannot cast to bytes/],
  ["an entry with two colons (testConfigInvalidMap)", "foo:int8:extra", /"foo:int8:extra"/],
  ["a whole type mixed with fields", "foo:int8,int32", /cannot be mixed/],
];

for (const [what, spec, message] of badSpecs) {
  Deno.test(`cast refuses ${what} at validation`, () => {
    const issue = configIssues(cast, { spec }).find((i) => i.path === "spec");
    assert(issue, "expected an issue at spec");
    assertMatch(issue.message, message);
  });
}

Deno.test("cast refuses a missing spec and unknown options at validation", () => {
  assertEquals(configIssues(cast, {}).map((i) => i.path), ["spec"]);
  assert(configIssues(cast, { spec: "int8", specs: "x" }).some((i) => i.path === "specs"));
});

// castWholeRecordValueSchemaless*.
const wholeCases: [string, unknown, unknown][] = [
  ["int8", 42, 42],
  ["int16", 42, 42],
  ["int32", 42, 42],
  ["int64", 42, 42],
  ["float32", 42, 42],
  ["float64", 42, 42],
  ["boolean", 42, true],
  ["boolean", 0, false],
  ["string", 42, "42"],
  ["string", 42n, "42"],
  ["int32", 42.9, 42],
  ["int32", -42.9, -42],
  ["float32", 0.1, Math.fround(0.1)],
  ["int64", "9223372036854775807", 9223372036854775807n],
  ["string", new Date(86_400_001), "1970-01-02T00:00:00.001Z"],
];

for (const [type, input, expected] of wholeCases) {
  const label = input instanceof Date ? `Date ${input.toISOString()}` : `${typeof input} ${input}`;
  Deno.test(`cast casts a whole ${label} value to ${type}`, async () => {
    const transform = await make(cast, { spec: type });
    const out = await apply(transform, { topic: "t", key: null, value: input });
    assertStrictEquals(out!.value, expected);
  });
}

Deno.test("cast passes records with a null value unchanged (castNullValueRecordSchemaless)", async () => {
  const transform = await make(cast, { spec: "foo:int64" });
  const record = rowRecord(null, { key: { id: "k" } });
  assertEquals(await apply(transform, record), record);
});

Deno.test("cast fails a whole-value cast of a list or a row (castWholeRecordValueSchemalessUnsupportedType)", async () => {
  const transform = await make(cast, { spec: "int8" });
  await assertRejects(
    async () => await apply(transform, { topic: "t", key: null, value: ["foo"] }),
    /cast: cannot cast the value \(array\) to int8: not a number/,
  );
  await assertRejects(
    async () => await apply(transform, rowRecord({ a: 1 })),
    /it is a row; name fields as "field:int8"/,
  );
});

Deno.test("cast casts fields of a row (castFieldsSchemaless)", async () => {
  const transform = await make(cast, {
    spec:
      "int8:int16,int16:int32,int32:int64,int64:boolean,float32:float64,float64:boolean,boolean:int8,string:int32",
  });
  const out = await apply(
    transform,
    rowRecord({
      int8: 8,
      int16: 16,
      int32: 32,
      int64: 64,
      float32: 32,
      float64: -64,
      boolean: true,
      string: "42",
    }),
  );
  assertEquals(out!.value, {
    int8: 8,
    int16: 16,
    int32: 32,
    int64: true,
    float32: 32,
    float64: true,
    boolean: 1,
    string: 42,
  });
});

Deno.test("cast casts decimals, dates and bytes to strings and leaves absent fields absent (castFieldsWithSchema)", async () => {
  const transform = await make(cast, {
    spec: "bigdecimal:string,date:string,bytes:string,optional:int32,timestamp:int64",
  });
  const out = await apply(
    transform,
    rowRecord({
      bigdecimal: "42",
      date: new Date(86_400_000),
      bytes: new Uint8Array([0xFE, 0xDC, 0xBA, 0x98, 0x76, 0x54, 0x32, 0x10]),
      timestamp: new Date(0),
    }),
  );
  assertEquals(out!.value, {
    bigdecimal: "42",
    date: "1970-01-02T00:00:00.000Z",
    bytes: "/ty6mHZUMhA=",
    timestamp: 0,
  });
});

Deno.test("cast casts before, after and key columns of change events", async () => {
  const transform = await make(cast, { spec: "id:int32,age:int16" });
  const out = await apply(
    transform,
    changeRecord("u", { before: { id: "7", age: "30" }, after: { id: "7", age: null } }, {
      key: { id: "7" },
    }),
  );
  assertEquals(images(out), { before: { id: 7, age: 30 }, after: { id: 7, age: null } });
  assertEquals(out!.key, { id: 7 });
});

const badValues: [string, string, unknown, RegExp][] = [
  ["a number out of the int8 range", "int8", 300, /out of range -128\.\.127/],
  [
    "a number out of the int32 range (Kafka would wrap it)",
    "int32",
    2147483648,
    /out of range/,
  ],
  ["a string that is not an integer", "int32", "4.2", /the string is not an integer/],
  ["a string that is not a number", "float64", "abc", /not a number/],
  ["a string that is not a boolean", "boolean", "yes", /only "true" and "false"/],
  ["an infinite number", "int64", Infinity, /not a finite number/],
];

for (const [what, type, value, message] of badValues) {
  Deno.test(`cast fails a record with ${what}, naming the field`, async () => {
    const transform = await make(cast, { spec: `f:${type}` });
    const error = await assertRejects(async () => await apply(transform, rowRecord({ f: value })));
    assertMatch(error.message, /^cast: cannot cast field "f"/);
    assertMatch(error.message, message);
  });
}
