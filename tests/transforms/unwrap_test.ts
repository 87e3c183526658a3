import {
  assert,
  assertEquals,
  assertMatch,
  assertRejects,
  assertStrictEquals,
} from "../_assert.ts";
import { unwrap } from "../../transforms/unwrap.ts";
import type { SluiceRecord } from "../../api/record.ts";
import { apply, changeRecord, configIssues, make } from "../_transforms.ts";

// The records of Debezium's AbstractExtractStateTest.
const SOURCE = { lsn: 1234, db: "test_db", table: "test_table", ts_ms: 1588252618953 };
const TRANSACTION = { id: "571", total_order: 42, data_collection_order: 42 };

const createRecord = (extra: Partial<SluiceRecord> = {}) =>
  changeRecord("c", { after: { id: 1, name: "myRecord" } }, {
    topic: "dummy",
    source: SOURCE,
    ...extra,
  });
const updateRecord = () =>
  changeRecord("u", {
    before: { id: 1, name: "myRecord" },
    after: { id: 1, name: "updatedRecord" },
  }, {
    topic: "dummy",
    source: SOURCE,
    envelope: { transaction: TRANSACTION },
  });
const deleteRecord = (extra: Partial<SluiceRecord> = {}) =>
  changeRecord("d", { before: { id: 1, name: "myRecord" } }, {
    topic: "dummy",
    source: { ...SOURCE, version: "version!" },
    ...extra,
  });
const truncateRecord = () => changeRecord("t", {}, { topic: "dummy", source: SOURCE });
const tombstone = (): SluiceRecord => ({ topic: "dummy", key: { id: 1 }, value: null });
const unknownRecord = (): SluiceRecord => ({ topic: "dummy", key: null, value: { id: 1 } });

async function unwrapped(options: Record<string, string>, record: SluiceRecord) {
  return await apply(await make(unwrap, options), record);
}
const mode = (m: string) => ({ "delete.tombstone.handling.mode": m });

// What each mode makes of each kind of record: "null" (dropped), "same", "tombstone", or a row.
const modeCases: [string, string, () => SluiceRecord, unknown][] = [
  ["drop", "tombstones (testTombstoneDroppedByDefault)", tombstone, "null"],
  ["tombstone", "tombstones (testTombstoneForwardConfigured)", tombstone, "null"],
  ["rewrite", "tombstones", tombstone, "null"],
  ["rewrite-with-tombstone", "tombstones (testTombstoneRewriteWithTombstone)", tombstone, "same"],
  ["delete-to-tombstone", "tombstones", tombstone, "same"],
  ["tombstone", "truncates (testTruncateDroppedByDefault)", truncateRecord, "null"],
  ["drop", "truncates", truncateRecord, "null"],
  ["rewrite-with-tombstone", "truncates", truncateRecord, "same"],
  ["drop", "deletes (testHandleDeleteDrop)", deleteRecord, "null"],
  ["tombstone", "deletes (testHandleDeleteNone)", deleteRecord, "tombstone"],
  ["delete-to-tombstone", "deletes", deleteRecord, "tombstone"],
  ["rewrite", "deletes (testHandleDeleteRewrite)", deleteRecord, {
    id: 1,
    name: "myRecord",
    __deleted: "true",
  }],
  ["rewrite-with-tombstone", "deletes", deleteRecord, {
    id: 1,
    name: "myRecord",
    __deleted: "true",
  }],
  ["tombstone", "creates (testUnwrapCreateRecord)", createRecord, { id: 1, name: "myRecord" }],
  ["rewrite", "creates (testHandleCreateRewrite)", createRecord, {
    id: 1,
    name: "myRecord",
    __deleted: "false",
  }],
  ["drop", "updates", updateRecord, { id: 1, name: "updatedRecord" }],
  [
    "tombstone",
    "records that are not change events (testIgnoreUnknownRecord)",
    unknownRecord,
    "same",
  ],
];

for (const [m, what, build, expected] of modeCases) {
  const outcome = typeof expected === "string" ? expected : "their row";
  Deno.test(`unwrap in ${m} mode turns ${what} into ${outcome}`, async () => {
    const record = build();
    const out = await unwrapped(mode(m), record);
    if (expected === "null") assertStrictEquals(out, null);
    else if (expected === "same") assertStrictEquals(out, record);
    else if (expected === "tombstone") {
      assertStrictEquals(out!.value, null);
      assertEquals(out!.key, record.key);
    } else assertEquals(out!.value, expected);
  });
}

Deno.test("unwrap uses tombstone mode by default", async () => {
  assertStrictEquals((await unwrapped({}, deleteRecord({ key: { id: 1 } })))!.value, null);
  assertStrictEquals(await unwrapped({}, tombstone()), null);
});

Deno.test("unwrap keeps the key, topic, headers, timestamp and origin (testUnwrapPropagatesRecordHeaders)", async () => {
  const record = createRecord({
    key: { id: 1 },
    headers: { "application/debezium-test-header": "shouldPropagatePreviousRecordHeaders" },
    timestamp: 5,
    origin: { lsn: "0/16B3748" },
  });
  const out = await unwrapped({}, record);
  assertEquals(out, {
    topic: "dummy",
    key: { id: 1 },
    value: { id: 1, name: "myRecord" },
    headers: { "application/debezium-test-header": "shouldPropagatePreviousRecordHeaders" },
    timestamp: 5,
    origin: { lsn: "0/16B3748" },
  });
});

const fieldCases: [string, Record<string, string>, () => SluiceRecord, Record<string, unknown>][] =
  [
    ["adds the operation (testAddField)", { "add.fields": "op" }, createRecord, { __op: "c" }],
    [
      "adds envelope and source timestamps (testAddTimestamp)",
      { "add.fields": "ts_ms,source.ts_ms" },
      createRecord,
      { __ts_ms: 1_700_000_000_100, __source_ts_ms: 1588252618953 },
    ],
    [
      "resolves unqualified names to the envelope, transaction or source block (testAddFields)",
      { "add.fields": "op , lsn,id", "add.fields.prefix": "prefix." },
      updateRecord,
      { "prefix.op": "u", "prefix.lsn": 1234, "prefix.id": "571" },
    ],
    [
      "renames with entry:name (testNewFieldAndHeaderMapping)",
      {
        "add.fields":
          "op:OP, lsn:LSN, id:ID, source.lsn:source_lsn, transaction.total_order:TOTAL_ORDER",
        "add.fields.prefix": "",
      },
      updateRecord,
      { OP: "u", LSN: 1234, ID: "571", source_lsn: 1234, TOTAL_ORDER: 42 },
    ],
    [
      "adds null for a field of a missing block (testAddFieldsForMissingOptionalField)",
      { "add.fields": "op,lsn,id" },
      createRecord,
      { __op: "c", __lsn: 1234, __id: null },
    ],
    [
      "names qualified fields with underscores (testAddFieldsSpecifyStruct)",
      { "add.fields": "op,source.lsn,transaction.id,transaction.total_order" },
      updateRecord,
      { __op: "u", __source_lsn: 1234, __transaction_id: "571", __transaction_total_order: 42 },
    ],
    [
      "skips names the event does not have and reads other envelope fields (testNewNotDefaultField)",
      { "add.fields": "notExisting,op:OP,changes:META_SRC_CHANGED", "add.fields.prefix": "" },
      () =>
        changeRecord("u", { before: { id: 1 }, after: { id: 1, name: "x" } }, {
          envelope: { changes: ["name"] },
        }),
      { OP: "u", META_SRC_CHANGED: ["name"] },
    ],
    [
      "adds the table and schema",
      { "add.fields": "table,schema" },
      createRecord,
      { __table: "test_table", __schema: "public" },
    ],
  ];

for (const [what, options, build, added] of fieldCases) {
  Deno.test(`unwrap ${what}`, async () => {
    const record = build();
    const out = await unwrapped({ ...mode("tombstone"), ...options }, record);
    const row = (record.value as { after: Record<string, unknown> }).after;
    assertEquals(out!.value, { ...row, ...added });
  });
}

const headerCases: [string, Record<string, string>, () => SluiceRecord, Record<string, string>][] =
  [
    ["adds the operation header (testAddHeader)", { "add.headers": "op" }, createRecord, {
      __op: "c",
    }],
    [
      "adds headers as text (testAddHeaders)",
      { "add.headers": "op , lsn,id" },
      updateRecord,
      { __op: "u", __lsn: "1234", __id: "571" },
    ],
    [
      "leaves out headers whose value is null (testAddHeadersForMissingOptionalField)",
      { "add.headers": "op,lsn,id" },
      createRecord,
      { __op: "c", __lsn: "1234" },
    ],
    [
      "prefixes qualified headers (testAddHeadersSpecifyStruct)",
      {
        "add.headers": "op,source.lsn,transaction.id,transaction.total_order",
        "add.headers.prefix": "prefix.",
      },
      updateRecord,
      {
        "prefix.op": "u",
        "prefix.source_lsn": "1234",
        "prefix.transaction_id": "571",
        "prefix.transaction_total_order": "42",
      },
    ],
  ];

for (const [what, options, build, headers] of headerCases) {
  Deno.test(`unwrap ${what}`, async () => {
    const out = await unwrapped(options, build());
    assertEquals(out!.headers, headers);
  });
}

Deno.test("unwrap adds headers to rewritten deletes and to the tombstone after them (testAddHeadersHandleDeleteRewriteAndTombstone)", async () => {
  const transform = await make(unwrap, {
    ...mode("rewrite-with-tombstone"),
    "add.headers": "op,source.lsn",
    "add.fields": "op,lsn",
  });
  const deleted = await apply(transform, deleteRecord());
  assertEquals(deleted!.value, {
    id: 1,
    name: "myRecord",
    __op: "d",
    __lsn: 1234,
    __deleted: "true",
  });
  assertEquals(deleted!.headers, { __op: "d", __source_lsn: "1234" });
  const after = await apply(transform, tombstone());
  assertStrictEquals(after!.value, null);
  assertEquals(after!.headers, { __op: "d" });
});

Deno.test("unwrap routes by a row field, using the before row of deletes (testAddTopicRoutingField)", async () => {
  const options = { "route.by.field": "name" };
  assertStrictEquals((await unwrapped(options, createRecord()))!.topic, "myRecord");
  assertStrictEquals((await unwrapped(options, updateRecord()))!.topic, "updatedRecord");
  assertStrictEquals((await unwrapped(options, deleteRecord()))!.topic, "myRecord");
  await assertRejects(
    async () => await unwrapped({ "route.by.field": "missing" }, createRecord()),
    /unwrap: cannot route a record on "dummy" by field "missing"/,
  );
});

Deno.test("unwrap drops the fields a header lists, keeping key columns (dropFieldsFromValueWithSchemaCompatibility)", async () => {
  const options = { "drop.fields.header.name": "drop-fields" };
  for (const list of ["id,name", '["id","name"]']) {
    const record = createRecord({ key: { id: 1 }, headers: { "drop-fields": list } });
    const out = await unwrapped(options, record);
    assertEquals(out!.value, { id: 1 });
    assertEquals(out!.key, { id: 1 });
  }
});

Deno.test("unwrap drops listed fields from the row and the key when compatibility is off (dropFieldsFromValueAndKeyWithoutSchemaCompatibility)", async () => {
  const record = createRecord({ key: { id: 1 }, headers: { "drop-fields": "id,name" } });
  const out = await unwrapped({
    "drop.fields.header.name": "drop-fields",
    "drop.fields.keep.schema.compatible": "false",
    "drop.fields.from.key": "true",
  }, record);
  assertEquals(out!.value, {});
  assertEquals(out!.key, {});
});

Deno.test("unwrap leaves records that are not change events alone even with add.headers (testAddHeadersForNonEnvelopeRecord)", async () => {
  const heartbeat: SluiceRecord = {
    topic: "op.with.heartbeat",
    key: { id: "123" },
    value: { ts_ms: 1 },
  };
  assertStrictEquals(await unwrapped({ "add.headers": "op,source.lsn" }, heartbeat), heartbeat);
});

const badConfigs: [string, Record<string, unknown>, string, RegExp][] = [
  ["an unknown mode", mode("none"), "delete.tombstone.handling.mode", /must be one of/],
  ["a malformed add.fields entry", { "add.fields": "a.b.c" }, "add.fields", /entries must be/],
  [
    "an unknown block in add.headers",
    { "add.headers": "after.id" },
    "add.headers",
    /entries must be/,
  ],
  [
    "the removed drop.tombstones option",
    { "drop.tombstones": "false" },
    "drop.tombstones",
    /not an option/,
  ],
  [
    "a non-boolean flag",
    { "drop.fields.from.key": "yes" },
    "drop.fields.from.key",
    /"true", "false"/,
  ],
];

for (const [what, options, path, message] of badConfigs) {
  Deno.test(`unwrap refuses ${what} at validation`, () => {
    const issue = configIssues(unwrap, options).find((i) => i.path === path);
    assert(
      issue,
      `expected an issue at ${path}, got ${JSON.stringify(configIssues(unwrap, options))}`,
    );
    assertMatch(issue.message, message);
  });
}

Deno.test("unwrap accepts Debezium's class name as an alias", () => {
  assertEquals(unwrap.aliases, ["io.debezium.transforms.ExtractNewRecordState"]);
});
