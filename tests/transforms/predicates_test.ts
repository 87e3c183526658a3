import { assert, assertMatch, assertStrictEquals } from "../_assert.ts";
import { hasHeaderKey } from "../../transforms/has_header_key.ts";
import { recordIsTombstone } from "../../transforms/record_is_tombstone.ts";
import { topicNameMatches } from "../../transforms/topic_name_matches.ts";
import { configIssues, makePredicate, rowRecord } from "../_transforms.ts";

// Kafka's TopicNameMatchesTest.
Deno.test("topic_name_matches refuses an empty or invalid pattern at validation", () => {
  assertMatch(configIssues(topicNameMatches, { pattern: "" })[0].message, /must not be empty/);
  assertMatch(configIssues(topicNameMatches, { pattern: "[" })[0].message, /is invalid/);
  assertMatch(configIssues(topicNameMatches, {})[0].message, /is required/);
});

Deno.test("topic_name_matches is true only when the pattern matches the whole topic", () => {
  const matches = makePredicate(topicNameMatches, { pattern: "my-prefix-.*" });
  assertStrictEquals(matches(rowRecord({}, { topic: "my-prefix-" })), true);
  assertStrictEquals(matches(rowRecord({}, { topic: "my-prefix-foo" })), true);
  assertStrictEquals(matches(rowRecord({}, { topic: "x-my-prefix-" })), false);
  assertStrictEquals(matches(rowRecord({}, { topic: "your-prefix-" })), false);
  const exact = makePredicate(topicNameMatches, { pattern: "orders" });
  assertStrictEquals(exact(rowRecord({}, { topic: "orders_v2" })), false);
});

// Kafka's HasHeaderKeyTest.
Deno.test("has_header_key refuses an empty name at validation", () => {
  assertMatch(configIssues(hasHeaderKey, { name: "" })[0].message, /must not be empty/);
});

Deno.test("has_header_key is true when the record has the header", () => {
  const has = makePredicate(hasHeaderKey, { name: "foo" });
  assertStrictEquals(has(rowRecord({}, { headers: { foo: "1", bar: "2" } })), true);
  assertStrictEquals(has(rowRecord({}, { headers: { foo: "" } })), true);
  assertStrictEquals(has(rowRecord({}, { headers: { bar: "2" } })), false);
  assertStrictEquals(has(rowRecord({})), false);
});

Deno.test("record_is_tombstone is true for null values only and takes no options", () => {
  const tombstone = makePredicate(recordIsTombstone);
  assertStrictEquals(tombstone(rowRecord(null, { key: { id: 1 } })), true);
  assertStrictEquals(tombstone(rowRecord({ id: 1 })), false);
  assert(configIssues(recordIsTombstone, { name: "x" }).some((i) => i.path === "name"));
});
