import {
  assert,
  assertEquals,
  assertMatch,
  assertRejects,
  assertStrictEquals,
} from "../_assert.ts";
import { timestampConverter } from "../../transforms/timestamp_converter.ts";
import { apply, changeRecord, configIssues, images, make, rowRecord } from "../_transforms.ts";
import type { SluiceRecord } from "../../api/record.ts";

// The instants of Kafka's TimestampConverterTest.
const DATE = new Date(86_400_000); // 1970-01-02
const TIME = new Date(1234); // 00:00:01.234
const DATE_PLUS_TIME = new Date(86_401_234);
const DATE_PLUS_TIME_UNIX = 86_401_234;
const DATE_PLUS_TIME_UNIX_MICROS = 86_401_234_123;
const DATE_PLUS_TIME_UNIX_NANOS = 86_401_234_123_456;
const DATE_PLUS_TIME_UNIX_SECONDS = 86_401;
const STRING_DATE_FMT = "yyyy MM dd HH mm ss SSS z";
const DATE_PLUS_TIME_STRING = "1970 01 02 00 00 01 234 UTC";

const whole = (value: unknown): SluiceRecord => ({ topic: "t", key: null, value });

const badConfigs: [string, Record<string, unknown>, string, RegExp][] = [
  ["a missing target type (testConfigNoTargetType)", {}, "target.type", /must be one of/],
  [
    "an invalid target type (testConfigInvalidTargetType)",
    { "target.type": "invalid" },
    "target.type",
    /must be one of/,
  ],
  [
    "an invalid unix precision (testConfigInvalidUnixPrecision)",
    { "target.type": "unix", "unix.precision": "invalid" },
    "unix.precision",
    /must be one of/,
  ],
  [
    "a string target without a format (testConfigMissingFormat)",
    { "target.type": "string" },
    "format",
    /is required when target.type is string/,
  ],
  [
    "an invalid format (testConfigInvalidFormat)",
    { "target.type": "string", format: "bad-format" },
    "format",
    /illegal pattern character 'b'/,
  ],
];

for (const [what, options, path, message] of badConfigs) {
  Deno.test(`timestamp_converter refuses ${what} at validation`, () => {
    const issue = configIssues(timestampConverter, options).find((i) => i.path === path);
    assert(issue, `expected an issue at ${path}`);
    assertMatch(issue.message, message);
  });
}

Deno.test("timestamp_converter accepts a valid unix precision (testConfigValidUnixPrecision)", () => {
  assertEquals(
    configIssues(timestampConverter, { "target.type": "unix", "unix.precision": "seconds" }),
    [],
  );
});

// Schemaless conversions of the whole value.
const conversions: [string, Record<string, string>, unknown, unknown][] = [
  [
    "Timestamp to Timestamp (testSchemalessIdentity)",
    { "target.type": "Timestamp" },
    DATE_PLUS_TIME,
    DATE_PLUS_TIME,
  ],
  ["Timestamp to Date", { "target.type": "Date" }, DATE_PLUS_TIME, DATE],
  ["Timestamp to Time", { "target.type": "Time" }, DATE_PLUS_TIME, TIME],
  ["Timestamp to unix", { "target.type": "unix" }, DATE_PLUS_TIME, DATE_PLUS_TIME_UNIX],
  [
    "Timestamp to string",
    { "target.type": "string", format: STRING_DATE_FMT },
    DATE_PLUS_TIME,
    DATE_PLUS_TIME_STRING,
  ],
  ["Date to Timestamp", { "target.type": "Timestamp" }, DATE, DATE],
  ["Time to Timestamp", { "target.type": "Timestamp" }, TIME, TIME],
  ["unix to Timestamp", { "target.type": "Timestamp" }, DATE_PLUS_TIME_UNIX, DATE_PLUS_TIME],
  [
    "string to Timestamp",
    { "target.type": "Timestamp", format: STRING_DATE_FMT },
    DATE_PLUS_TIME_STRING,
    DATE_PLUS_TIME,
  ],
  [
    "string to unix in microseconds (testSchemalessStringToUnix_Micros)",
    { "target.type": "unix", "unix.precision": "microseconds", format: STRING_DATE_FMT },
    DATE_PLUS_TIME_STRING,
    86_401_234_000,
  ],
  [
    "string to unix in nanoseconds",
    { "target.type": "unix", "unix.precision": "nanoseconds", format: STRING_DATE_FMT },
    DATE_PLUS_TIME_STRING,
    86_401_234_000_000,
  ],
  [
    "string to unix in seconds",
    { "target.type": "unix", "unix.precision": "seconds", format: STRING_DATE_FMT },
    DATE_PLUS_TIME_STRING,
    86_401,
  ],
  [
    "an ISO 8601 string to Timestamp when no format is set",
    { "target.type": "Timestamp" },
    "1970-01-02T00:00:01.234Z",
    DATE_PLUS_TIME,
  ],
  [
    "a Timestamp to a string with names, 12-hour clock and offsets",
    { "target.type": "string", format: "EEE, d MMM yyyy hh:mm a Z '('XXX')'" },
    new Date(Date.UTC(2024, 2, 10, 13, 5)),
    "Sun, 10 Mar 2024 01:05 PM +0000 (Z)",
  ],
  [
    "a string with a zone offset to Timestamp",
    { "target.type": "Timestamp", format: "yyyy-MM-dd'T'HH:mm:ssXXX" },
    "2024-03-10T14:05:00+01:00",
    new Date(Date.UTC(2024, 2, 10, 13, 5)),
  ],
  [
    "nanoseconds past a safe integer to a bigint",
    { "target.type": "unix", "unix.precision": "nanoseconds" },
    new Date(Date.UTC(2024, 0, 1)),
    1_704_067_200_000_000_000n,
  ],
];

for (const [what, options, input, expected] of conversions) {
  Deno.test(`timestamp_converter converts ${what}`, async () => {
    const transform = await make(timestampConverter, options);
    assertEquals((await apply(transform, whole(input)))!.value, expected);
  });
}

for (const target of ["string", "Date", "Timestamp", "unix", "Time"]) {
  Deno.test(`timestamp_converter passes null values and null fields through to ${target}`, async () => {
    const options = { "target.type": target, format: STRING_DATE_FMT };
    const wholeValue = await make(timestampConverter, options);
    assertStrictEquals((await apply(wholeValue, whole(null)))!.value, null);
    const field = await make(timestampConverter, { ...options, field: "ts" });
    assertStrictEquals((await apply(field, whole(null)))!.value, null);
    assertEquals((await apply(field, rowRecord({ ts: null, other: "test" })))!.value, {
      ts: null,
      other: "test",
    });
  });
}

Deno.test("timestamp_converter converts one field of a row (testSchemalessFieldConversion)", async () => {
  const transform = await make(timestampConverter, { "target.type": "Date", field: "ts" });
  assertEquals((await apply(transform, rowRecord({ ts: DATE_PLUS_TIME })))!.value, { ts: DATE });
});

const precisions: [string, number][] = [
  ["microseconds", DATE_PLUS_TIME_UNIX_MICROS],
  ["nanoseconds", DATE_PLUS_TIME_UNIX_NANOS],
];
for (const [precision, value] of precisions) {
  Deno.test(`timestamp_converter reads unix ${precision} fields (testWithSchemaFieldConversion)`, async () => {
    const transform = await make(timestampConverter, {
      "target.type": "Timestamp",
      field: "ts",
      "unix.precision": precision,
    });
    assertEquals((await apply(transform, rowRecord({ ts: value })))!.value, {
      ts: DATE_PLUS_TIME,
    });
  });
}

Deno.test("timestamp_converter reads unix seconds fields (testWithSchemaFieldConversion_Seconds)", async () => {
  const transform = await make(timestampConverter, {
    "target.type": "Timestamp",
    field: "ts",
    "unix.precision": "seconds",
  });
  assertEquals((await apply(transform, rowRecord({ ts: DATE_PLUS_TIME_UNIX_SECONDS })))!.value, {
    ts: new Date(86_401_000),
  });
});

Deno.test("timestamp_converter converts the field in before, after and the key of change events", async () => {
  const transform = await make(timestampConverter, { "target.type": "unix", field: "day" });
  const out = await apply(
    transform,
    changeRecord("u", { before: { day: DATE }, after: { day: DATE_PLUS_TIME } }, {
      key: { day: DATE },
    }),
  );
  assertEquals(images(out), { before: { day: 86_400_000 }, after: { day: 86_401_234 } });
  assertEquals(out!.key, { day: 86_400_000 });
});

Deno.test("timestamp_converter fails records whose value cannot be read, naming the field", async () => {
  const formatted = await make(timestampConverter, {
    "target.type": "Timestamp",
    field: "ts",
    format: "yyyy-MM-dd",
  });
  await assertRejects(
    async () => await apply(formatted, rowRecord({ ts: "10/03/2024" })),
    /timestamp_converter: cannot convert field "ts" \(string\): does not match the pattern "yyyy-MM-dd"/,
  );
  const plain = await make(timestampConverter, { "target.type": "Timestamp", field: "ts" });
  await assertRejects(async () => await apply(plain, rowRecord({ ts: true })), /expected a Date/);
  await assertRejects(
    async () => await apply(plain, rowRecord({ ts: "yesterday" })),
    /not an ISO 8601/,
  );
  const wholeValue = await make(timestampConverter, { "target.type": "Timestamp" });
  await assertRejects(async () => await apply(wholeValue, rowRecord({ ts: 1 })), /set "field"/);
});
