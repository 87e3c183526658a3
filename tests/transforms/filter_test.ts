import {
  assert,
  assertEquals,
  assertMatch,
  assertRejects,
  assertStrictEquals,
} from "../_assert.ts";
import { filter } from "../../transforms/filter.ts";
import type { ChangeEvent, SluiceRecord } from "../../api/record.ts";
import { apply, changeRecord, configIssues, make, rowRecord } from "../_transforms.ts";

const app = (op: "c" | "u" | "d", status: string, id = 1) =>
  changeRecord(op, op === "d" ? { before: { id, status } } : { after: { id, status } }, {
    source: { table: "applications" },
    topic: "warehouse.public.applications",
  });
const profile = () => changeRecord("c", { after: { id: 9, name: "Anna" } });

async function kept(options: Record<string, string>, records: SluiceRecord[]) {
  const transform = await make(filter, options);
  const out = [];
  for (const record of records) {
    const result = await apply(transform, record);
    if (result) out.push(result);
  }
  return out;
}

Deno.test("filter keeps only applications whose status is final", async () => {
  const records = [app("c", "final", 1), app("c", "draft", 2), app("u", "final", 3), profile()];
  const out = await kept(
    { condition: "table != 'applications' || value.status == 'final'" },
    records,
  );
  assertEquals(out, [records[0], records[2], records[3]]);
});

Deno.test("filter drops deletes of draft rows", async () => {
  const records = [app("d", "draft", 1), app("d", "final", 2), app("u", "draft", 3)];
  const out = await kept(
    { condition: "op == 'd' && value.status == 'draft'", action: "drop" },
    records,
  );
  assertEquals(out, [records[1], records[2]]);
});

Deno.test("filter sees before and after, key, topic, schema and headers", async () => {
  const update = changeRecord("u", { before: { status: "draft" }, after: { status: "final" } }, {
    key: { id: 7 },
    headers: { origin: "portal" },
  });
  const conditions = [
    "before.status != after.status",
    "key.id == 7",
    "topic.startsWith('warehouse.') && schema == 'public' && db == 'smart_warehouse'",
    "headers['origin'] == 'portal'",
    "row.status == 'final'",
  ];
  for (const condition of conditions) {
    assertStrictEquals((await kept({ condition }, [update])).length, 1, condition);
  }
});

Deno.test("filter treats batch rows as reads of the table named by the topic", async () => {
  const rows = [
    rowRecord({ amount: 150 }, { topic: "public.payments" }),
    rowRecord({ amount: 50 }, { topic: "public.payments" }),
  ];
  const out = await kept({
    condition: "op == 'r' && table == 'payments' && value.amount > 100 && before == null",
  }, rows);
  assertEquals(out, [rows[0]]);
});

Deno.test("filter keeps, drops or evaluates tombstones per null.handling.mode", async () => {
  const tombstone = rowRecord(null, { key: { id: 1 } });
  const condition = "value.status == 'final'";
  assertStrictEquals((await kept({ condition }, [tombstone])).length, 1);
  assertStrictEquals(
    (await kept({ condition, "null.handling.mode": "drop" }, [tombstone])).length,
    0,
  );
  assertStrictEquals(
    (await kept({ condition: "value == null && op == ''", "null.handling.mode": "evaluate" }, [
      tombstone,
    ])).length,
    1,
  );
});

Deno.test("filter fails a record on which the condition cannot be evaluated", async () => {
  const transform = await make(filter, { condition: "value.status == 'final'" });
  await assertRejects(
    async () => await apply(transform, rowRecord({ id: 1 }, { topic: "t" })),
    /filter: cannot evaluate the condition on a record on "t": No such key: status/,
  );
  const dynamic = await make(filter, { condition: "value.status" });
  await assertRejects(
    async () => await apply(dynamic, rowRecord({ status: "final" })),
    /the condition gave string, not a bool/,
  );
});

Deno.test("filter keeps a delete it cannot judge, and fails an update that left the column out", async () => {
  const transform = await make(filter, { condition: "after.kind == 'A' || op == 'd'" });
  const deleted = changeRecord("d", { before: { id: 1 }, after: null });
  assertEquals(await apply(transform, deleted), deleted);
  // An update whose unchanged TOAST column PostgreSQL did not send: kept, it could
  // leak a row the condition excludes; dropped, lose a change to one it keeps.
  const untoasted = changeRecord("u", { before: null, after: { id: 1, n: 2 } }, { topic: "t" });
  await assertRejects(
    async () => await apply(transform, untoasted),
    /cannot judge an update on "t": No such key: kind\. .*REPLICA IDENTITY FULL.*has\(after\.<column>\)/,
  );
  // Decided by the condition: the row is not one the target holds, so it leaves it.
  const decided = await make(filter, { condition: "has(after.kind) && after.kind == 'A'" });
  const left = await apply(decided, untoasted);
  assertEquals((left?.value as ChangeEvent).op, "d");
  assertEquals((left?.value as ChangeEvent).before, { id: 1, n: 2 });
});

Deno.test("filter by rows: an update that takes a row out of the condition deletes it, and deletes always pass; by events, both are dropped", async () => {
  const full = { topic: "t", key: { id: 4 } };
  const toDraft = changeRecord("u", {
    before: { id: 4, status: "active" },
    after: { id: 4, status: "draft" },
  }, full);
  const keyOnly = changeRecord("u", { before: null, after: { id: 4, status: "draft" } }, full);
  const deleteDraft = changeRecord("d", { before: { id: 4, status: "draft" } }, full);
  const insertDraft = changeRecord("c", { after: { id: 5, status: "draft" } }, full);
  const byRows = await make(filter, { condition: "value.status != 'draft'" });
  const left = await apply(byRows, toDraft);
  assertEquals(left?.value, { ...(toDraft.value as ChangeEvent), op: "d", after: null });
  // Without an old image the new row names the key.
  assertEquals((await apply(byRows, keyOnly))?.value, {
    ...(keyOnly.value as ChangeEvent),
    op: "d",
    before: { id: 4, status: "draft" },
    after: null,
  });
  assertEquals(await apply(byRows, deleteDraft), deleteDraft);
  assertEquals(await apply(byRows, insertDraft), null, "a row the target never holds");
  const dropping = await make(filter, { condition: "value.status == 'draft'", action: "drop" });
  assertEquals((await apply(dropping, toDraft))?.value, left?.value);

  const byEvents = await make(filter, {
    condition: "value.status != 'draft'",
    "change.events": "events",
  });
  assertEquals(await apply(byEvents, toDraft), null);
  assertEquals(await apply(byEvents, deleteDraft), null);
  // A condition that reads op judges events unless told otherwise.
  const onOp = await make(filter, {
    condition: "op == 'u' && value.status == 'draft'",
    action: "drop",
  });
  assertEquals(await apply(onOp, toDraft), null);
  const onOpByRows = await make(filter, {
    condition: "op == 'u' && value.status == 'draft'",
    action: "drop",
    "change.events": "rows",
  });
  assertEquals((await apply(onOpByRows, toDraft))?.value, left?.value);
});

const badConfigs: [string, Record<string, unknown>, string, RegExp][] = [
  ["a missing condition", {}, "condition", /is required/],
  [
    "a syntax error",
    { condition: "value.status ==" },
    "condition",
    /is not valid CEL: Unexpected token/,
  ],
  [
    "an unknown variable",
    { condition: "status == 'final'" },
    "condition",
    /Unknown variable: status/,
  ],
  ["a type error", { condition: "op + 1 == 2" }, "condition", /no such overload/],
  [
    "a condition that is not a bool",
    { condition: "op" },
    "condition",
    /must evaluate to a bool, but evaluates to string/,
  ],
  [
    "an unknown action",
    { condition: "true", action: "remove" },
    "action",
    /must be one of "keep", "drop"/,
  ],
  ["a misspelt option", { condition: "true", conditon: "x" }, "conditon", /is not an option/],
];

for (const [what, options, path, message] of badConfigs) {
  Deno.test(`filter refuses ${what} at validation`, () => {
    const issues = configIssues(filter, options);
    const issue = issues.find((i) => i.path === path);
    assert(issue, `expected an issue at ${path}, got ${JSON.stringify(issues)}`);
    assertMatch(issue.message, message);
  });
}
