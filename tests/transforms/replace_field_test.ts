import { assert, assertEquals, assertMatch, assertStrictEquals } from "../_assert.ts";
import { replaceField } from "../../transforms/replace_field.ts";
import { apply, changeRecord, configIssues, images, make, rowRecord } from "../_transforms.ts";

const VALUE = { dont: "whatever", abc: 42, foo: true, etc: "etc" };

// Kafka's ReplaceFieldTest.
const cases: [string, Record<string, string>, Record<string, unknown>][] = [
  [
    "drops excluded fields and renames the rest (schemaless)",
    { exclude: "dont", renames: "abc:xyz,foo:bar" },
    { xyz: 42, bar: true, etc: "etc" },
  ],
  [
    "keeps only included fields and renames them (withSchema)",
    { include: "abc,foo", renames: "abc:xyz,foo:bar" },
    { xyz: 42, bar: true },
  ],
  [
    "accepts the deprecated whitelist and blacklist names",
    { whitelist: "abc,foo,dont", blacklist: "dont" },
    { abc: 42, foo: true },
  ],
  ["leaves a row alone when nothing is configured", {}, VALUE],
  ["ignores names that are not in the row", { exclude: "nope", renames: "nope:other" }, VALUE],
];

for (const [what, options, expected] of cases) {
  Deno.test(`replace_field ${what}`, async () => {
    const transform = await make(replaceField, options);
    assertEquals((await apply(transform, rowRecord(VALUE)))!.value, expected);
  });
}

Deno.test("replace_field passes tombstones unchanged (tombstoneSchemaless)", async () => {
  const transform = await make(replaceField, { include: "abc,foo", renames: "abc:xyz,foo:bar" });
  const tombstone = rowRecord(null, { key: { abc: 1 } });
  assertEquals(await apply(transform, tombstone), { ...tombstone, key: { xyz: 1 } });
});

Deno.test("replace_field rewrites before and after, and renames key columns without filtering the key", async () => {
  const transform = await make(replaceField, { exclude: "secret,id", renames: "id:profile_id" });
  const out = await apply(
    transform,
    changeRecord("u", {
      before: { id: 1, name: "a", secret: "s" },
      after: { id: 1, name: "b", secret: "t" },
    }, { key: { id: 1 } }),
  );
  assertEquals(images(out), { before: { name: "a" }, after: { name: "b" } });
  assertEquals(out!.key, { profile_id: 1 });
  // A key change's create names the old key in a header: renamed alike, so
  // the sink finds the stored row under the target's column names.
  const moved = await apply(
    transform,
    changeRecord("c", { after: { id: 2, name: "b" } }, {
      key: { id: 2 },
      headers: { "__debezium.oldkey": '{"id":1}', "__sluice.unavailable": '["secret"]' },
    }),
  );
  assertEquals(moved!.headers, {
    "__debezium.oldkey": '{"profile_id":1}',
    "__sluice.unavailable": '["secret"]',
  });
  // A key the renames leave alone keeps its header text as it came (an int64
  // beyond 2^53 would not survive parsing and writing again).
  const untouched = await apply(
    await make(replaceField, { renames: "name:title" }),
    changeRecord("c", { after: { id: 2, name: "b" } }, {
      key: { id: 9007199254740993n },
      headers: { "__debezium.oldkey": '{"id":9007199254740993}' },
    }),
  );
  assertEquals(untouched!.headers, { "__debezium.oldkey": '{"id":9007199254740993}' });
});

Deno.test("replace_field keeps the original field order", async () => {
  const transform = await make(replaceField, { renames: "b:z" });
  const out = await apply(transform, rowRecord({ a: 1, b: 2, c: 3 }));
  assertEquals(Object.keys(out!.value as object), ["a", "z", "c"]);
});

const badConfigs: [string, Record<string, unknown>, string, RegExp][] = [
  ["a rename without a colon", { renames: "abc" }, "renames", /each entry must be "old:new"/],
  ["a rename with two colons", { renames: "a:b:c" }, "renames", /current entry is "a:b:c"/],
  ["include together with whitelist", { include: "a", whitelist: "b" }, "whitelist", /together/],
  ["a misspelt option", { rename: "a:b" }, "rename", /is not an option/],
];

for (const [what, options, path, message] of badConfigs) {
  Deno.test(`replace_field refuses ${what} at validation`, () => {
    const issue = configIssues(replaceField, options).find((i) => i.path === path);
    assert(issue, `expected an issue at ${path}`);
    assertMatch(issue.message, message);
  });
}

Deno.test("replace_field accepts ReplaceField$Value as an alias", () => {
  assertStrictEquals(
    replaceField.aliases?.[0],
    "org.apache.kafka.connect.transforms.ReplaceField$Value",
  );
});
