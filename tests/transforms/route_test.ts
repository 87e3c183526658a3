import {
  assert,
  assertEquals,
  assertMatch,
  assertRejects,
  assertStrictEquals,
} from "../_assert.ts";
import { route } from "../../transforms/route.ts";
import { apply, changeRecord, configIssues, make, rowRecord } from "../_transforms.ts";

async function routed(options: Record<string, string>, topic: string): Promise<string> {
  const transform = await make(route, options);
  return (await apply(transform, rowRecord({ id: 1 }, { topic })))!.topic;
}

// Kafka's RegexRouterTest, plus the Java details it relies on.
const regexCases: [string, string, string, string, string][] = [
  ["replaces a static topic (staticReplacement)", "foo", "bar", "foo", "bar"],
  ["leaves a topic that does not match alone (doesntMatch)", "foo", "bar", "orig", "orig"],
  ["keeps the topic with (.*) and $1 (identity)", "(.*)", "$1", "orig", "orig"],
  ["adds a prefix (addPrefix)", "(.*)", "prefix-$1", "orig", "prefix-orig"],
  ["adds a suffix (addSuffix)", "(.*)", "$1-suffix", "orig", "orig-suffix"],
  ["slices the topic (slice)", "(.*)-(\\d\\d\\d\\d\\d\\d\\d\\d)", "$1", "index-20160117", "index"],
  ["requires the regex to match the whole topic", "foo", "bar", "foobar", "foobar"],
  ["reads $10 as group 1 then 0 when there is no group 10", "(a)", "$10", "a", "a0"],
  [
    "reads $12 as group 12 when it exists",
    "(a)(b)(c)(d)(e)(f)(g)(h)(i)(j)(k)(l)",
    "$12",
    "abcdefghijkl",
    "l",
  ],
  ["treats \\$ as a literal dollar", "(.*)", "\\$1-$1", "orig", "$1-orig"],
  ["inserts named groups with ${name}", "(?<base>.*)\\.v\\d", "${base}", "orders.v2", "orders"],
  ["honours the (?i) inline flag", "(?i)ORDERS", "orders_all", "Orders", "orders_all"],
  ["reads \\Q…\\E as a literal", "\\Qa.b\\E-(.*)", "$1", "a.b-x", "x"],
  ["treats an unmatched optional group as empty", "(a)?(b)", "[$1$2]", "b", "[b]"],
];

for (const [what, regex, replacement, topic, expected] of regexCases) {
  Deno.test(`route ${what}`, async () => {
    assertStrictEquals(await routed({ regex, replacement }, topic), expected);
  });
}

Deno.test("route rewrites the topic with Java-style $1 replacements on change events", async () => {
  const transform = await make(route, {
    regex: "warehouse\\.(\\w+)\\.(\\w+)",
    replacement: "citizen.$1.$2",
  });
  const out = await apply(transform, changeRecord("c", { after: { id: 1 } }));
  assertStrictEquals(out!.topic, "citizen.public.profiles");
});

Deno.test("route returns the same record when the topic does not change", async () => {
  const transform = await make(route, { regex: "x", replacement: "y" });
  const record = rowRecord({ id: 1 }, { topic: "z" });
  assertStrictEquals(await apply(transform, record), record);
});

Deno.test("route fills topic.format from the change event's source block", async () => {
  const transform = await make(route, { "topic.format": "citizen.${db}.${schema}.${table}" });
  const out = await apply(
    transform,
    changeRecord("u", { before: { id: 1 }, after: { id: 1 } }, {
      source: { schema: "crm", table: "applications" },
    }),
  );
  assertStrictEquals(out!.topic, "citizen.smart_warehouse.crm.applications");
});

Deno.test("route reads the table of a batch row from its schema.table topic or origin", async () => {
  const transform = await make(route, { "topic.format": "${schema}__${table}__${topic}" });
  assertStrictEquals(
    (await apply(transform, rowRecord({ id: 1 }, { topic: "public.profiles" })))!.topic,
    "public__profiles__public.profiles",
  );
  assertStrictEquals(
    (await apply(
      transform,
      rowRecord({ id: 1 }, { topic: "p", origin: { schema: "s", table: "t" } }),
    ))!.topic,
    "s__t__p",
  );
});

Deno.test("route routes by a field of the after image, the before image of deletes, or the key of tombstones", async () => {
  const transform = await make(route, { field: "region" });
  assertStrictEquals(
    (await apply(transform, changeRecord("c", { after: { id: 1, region: "north" } })))!.topic,
    "north",
  );
  assertStrictEquals(
    (await apply(transform, changeRecord("d", { before: { id: 1, region: "south" } })))!.topic,
    "south",
  );
  assertStrictEquals(
    (await apply(transform, rowRecord(null, { key: { region: "east" } })))!.topic,
    "east",
  );
});

Deno.test("route combines field and topic.format", async () => {
  const transform = await make(route, { field: "region", "topic.format": "${table}.${field}" });
  const out = await apply(transform, changeRecord("r", { after: { region: "north" } }));
  assertStrictEquals(out!.topic, "profiles.north");
});

Deno.test("route fails a record whose routing field is missing or null, naming the field", async () => {
  const transform = await make(route, { field: "region" });
  await assertRejects(
    async () => await apply(transform, rowRecord({ id: 1 }, { topic: "t" })),
    /route: cannot route a record on "t" by field "region": it is missing/,
  );
  await assertRejects(
    async () => await apply(transform, rowRecord({ region: null })),
    /it is null/,
  );
  await assertRejects(
    async () => await apply(transform, rowRecord(null)),
    /it is missing: it is a tombstone/,
  );
});

const badConfigs: [string, Record<string, unknown>, string, RegExp][] = [
  ["no way to route", {}, "regex", /is required: set regex \+ replacement/],
  ["a regex without a replacement", { regex: "a" }, "replacement", /is required when regex/],
  ["a replacement without a regex", { replacement: "a" }, "regex", /is required when replacement/],
  ["an invalid regex", { regex: "(", replacement: "x" }, "regex", /is invalid/],
  [
    "a possessive quantifier",
    { regex: "a*+", replacement: "x" },
    "regex",
    /possessive quantifiers .* are not supported/,
  ],
  [
    "a reference to a missing group",
    { regex: "(a)", replacement: "$2" },
    "replacement",
    /has no group 2 \(it has 1\)/,
  ],
  [
    "a trailing $",
    { regex: "a", replacement: "x$" },
    "replacement",
    /a trailing \$ names no group/,
  ],
  ["a $ before a letter", { regex: "a", replacement: "$x" }, "replacement", /must be followed/],
  [
    "an unknown placeholder",
    { "topic.format": "${tabel}" },
    "topic.format",
    /uses \$\{tabel\}; valid placeholders are/,
  ],
  ["${field} without field", { "topic.format": "${field}" }, "topic.format", /field must be set/],
  [
    "regex mixed with field",
    { regex: "a", replacement: "b", field: "x" },
    "regex",
    /cannot be combined/,
  ],
  ["a misspelt option", { regexp: "a" }, "regexp", /is not an option/],
];

for (const [what, options, path, message] of badConfigs) {
  Deno.test(`route refuses ${what} at validation`, () => {
    const issues = configIssues(route, options);
    assert(issues.length > 0, "expected a config issue");
    const issue = issues.find((i) => i.path === path);
    assert(issue, `expected an issue at ${path}, got ${JSON.stringify(issues)}`);
    assertMatch(issue.message, message);
  });
}

Deno.test("route accepts Kafka's class name as an alias", () => {
  assertEquals(route.aliases, ["org.apache.kafka.connect.transforms.RegexRouter"]);
});
