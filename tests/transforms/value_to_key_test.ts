import {
  assert,
  assertEquals,
  assertMatch,
  assertRejects,
  assertStrictEquals,
} from "../_assert.ts";
import { valueToKey } from "../../transforms/value_to_key.ts";
import { apply, changeRecord, configIssues, make, rowRecord } from "../_transforms.ts";

Deno.test("value_to_key builds the key from row fields (schemaless)", async () => {
  const transform = await make(valueToKey, { fields: "a,b" });
  const out = await apply(transform, rowRecord({ a: 1, b: 2, c: 3 }, { key: { original: true } }));
  assertEquals(out!.key, { a: 1, b: 2 });
  assertEquals(out!.value, { a: 1, b: 2, c: 3 });
});

Deno.test("value_to_key uses the after image, or the before image of a delete", async () => {
  const transform = await make(valueToKey, { fields: ["id"] });
  assertEquals(
    (await apply(transform, changeRecord("u", { before: { id: 1 }, after: { id: 2 } })))!.key,
    { id: 2 },
  );
  assertEquals(
    (await apply(transform, changeRecord("d", { before: { id: 3 } })))!.key,
    { id: 3 },
  );
});

Deno.test("value_to_key leaves tombstones with their key", async () => {
  const transform = await make(valueToKey, { fields: "id" });
  const tombstone = rowRecord(null, { key: { id: 1 } });
  assertStrictEquals(await apply(transform, tombstone), tombstone);
});

Deno.test("value_to_key fails a record that lacks a key field, naming it", async () => {
  const transform = await make(valueToKey, { fields: "a,z" });
  await assertRejects(
    async () => await apply(transform, rowRecord({ a: 1 }, { topic: "t" })),
    /value_to_key: field "z" is not in the row of a record on "t"/,
  );
});

const badConfigs: [string, Record<string, unknown>, RegExp][] = [
  ["missing fields", {}, /is required/],
  ["an empty field list", { fields: "" }, /must name at least one field/],
];
for (const [what, options, message] of badConfigs) {
  Deno.test(`value_to_key refuses ${what} at validation`, () => {
    const issue = configIssues(valueToKey, options).find((i) => i.path === "fields");
    assert(issue, "expected an issue at fields");
    assertMatch(issue.message, message);
  });
}
