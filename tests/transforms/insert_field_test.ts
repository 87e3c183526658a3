import {
  assert,
  assertEquals,
  assertMatch,
  assertRejects,
  assertStrictEquals,
} from "../_assert.ts";
import { insertField } from "../../transforms/insert_field.ts";
import { apply, changeRecord, configIssues, images, make, rowRecord } from "../_transforms.ts";

// The options of Kafka's InsertFieldTest, with its ! and ? suffixes.
const KAFKA_OPTIONS = {
  "topic.field": "topic_field!",
  "partition.field": "partition_field",
  "timestamp.field": "timestamp_field?",
  "static.field": "instance_id",
  "static.value": "my-instance-id",
};

Deno.test("insert_field inserts the topic, partition, timestamp and a static value (schemalessInsertConfiguredFields)", async () => {
  const transform = await make(insertField, KAFKA_OPTIONS);
  const out = await apply(
    transform,
    rowRecord({ magic: 42 }, {
      topic: "test",
      timestamp: 123,
      origin: { partition: 0, offset: 7 },
    }),
  );
  assertEquals(out!.value, {
    magic: 42,
    topic_field: "test",
    partition_field: 0,
    timestamp_field: 123,
    instance_id: "my-instance-id",
  });
});

Deno.test("insert_field inserts null for a partition, offset or timestamp the record does not have", async () => {
  const transform = await make(insertField, { ...KAFKA_OPTIONS, "offset.field": "offset" });
  const out = await apply(transform, rowRecord({ magic: 42 }, { topic: "test" }));
  assertEquals(out!.value, {
    magic: 42,
    topic_field: "test",
    partition_field: null,
    offset: null,
    timestamp_field: null,
    instance_id: "my-instance-id",
  });
});

Deno.test("insert_field leaves tombstones unchanged (insertConfiguredFieldsIntoTombstoneEvent)", async () => {
  const transform = await make(insertField, KAFKA_OPTIONS);
  const tombstone = rowRecord(null, { key: { id: 1 } });
  assertStrictEquals(await apply(transform, tombstone), tombstone);
});

Deno.test("insert_field fails a record whose value is not a row (topLevelStructRequired)", async () => {
  const transform = await make(insertField, { "topic.field": "topic_field" });
  await assertRejects(
    async () => await apply(transform, { topic: "t", key: null, value: 42 }),
    /insert_field: the value of a record on "t" is not a row/,
  );
});

Deno.test("insert_field inserts into before and after and reads Debezium source metadata", async () => {
  const transform = await make(insertField, {
    "static.field": "synced_by",
    "static.value": "sluice",
    "source.fields": "lsn:cdc_lsn,table",
  });
  const out = await apply(
    transform,
    changeRecord("u", { before: { id: 1 }, after: { id: 1, name: "x" } }),
  );
  const added = { synced_by: "sluice", cdc_lsn: 1234, source_table: "profiles" };
  assertEquals(images(out), {
    before: { id: 1, ...added },
    after: { id: 1, name: "x", ...added },
  });
});

Deno.test("insert_field reads source fields of batch rows from the origin", async () => {
  const transform = await make(insertField, {
    "source.fields": "watermark,missing",
    "source.fields.prefix": "__",
  });
  const out = await apply(transform, rowRecord({ id: 1 }, { origin: { watermark: "2024-01-01" } }));
  assertEquals(out!.value, { id: 1, __watermark: "2024-01-01", __missing: null });
});

const badConfigs: [string, Record<string, unknown>, string, RegExp][] = [
  ["static.field without static.value", { "static.field": "a" }, "static.field", /set together/],
  ["static.value without static.field", { "static.value": "a" }, "static.field", /set together/],
  ["a config that inserts nothing", {}, "topic.field", /nothing to insert/],
  ["an empty field name", { "topic.field": "" }, "topic.field", /Too small|at least/i],
  ["a malformed source field", { "source.fields": "a:b:c" }, "source.fields", /"name:target"/],
  ["a misspelt option", { "topic.feild": "t" }, "topic.feild", /is not an option/],
];

for (const [what, options, path, message] of badConfigs) {
  Deno.test(`insert_field refuses ${what} at validation`, () => {
    const issue = configIssues(insertField, options).find((i) => i.path === path);
    assert(
      issue,
      `expected an issue at ${path}, got ${JSON.stringify(configIssues(insertField, options))}`,
    );
    assertMatch(issue.message, message);
  });
}
