import {
  assert,
  assertEquals,
  assertMatch,
  assertRejects,
  assertStrictEquals,
} from "../_assert.ts";
import {
  createDedup,
  dedup,
  type DedupTransform,
  FileSeenStore,
} from "../../transforms/dedup/mod.ts";
import type { SluiceRecord } from "../../api/record.ts";
import { apply, changeRecord, configIssues, make, rowRecord } from "../_transforms.ts";

const event = (
  lsn: number | null,
  id: number,
  extra: Partial<SluiceRecord> & { source?: Record<string, unknown> } = {},
) => changeRecord("u", { after: { id, name: "x" } }, { source: { lsn }, key: { id }, ...extra });

async function passed(transform: DedupTransform, records: SluiceRecord[]): Promise<number[]> {
  const out: number[] = [];
  for (const [index, record] of records.entries()) {
    if (await apply(transform, record)) out.push(index);
  }
  return out;
}

async function withTempDir(run: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "sluice-dedup-" });
  try {
    await run(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("dedup drops change events whose LSN, table and key were already seen", async () => {
  const transform = await make(dedup, {}) as DedupTransform;
  const records = [
    event(100, 1),
    event(100, 1), // redelivered
    event(101, 1), // a later change of the same row
    event(100, 2), // another row in the same WAL position
    event(100, 1, { source: { lsn: 100, table: "applications" } }), // another table
    event(101, 1),
  ];
  assertEquals(await passed(transform, records), [0, 2, 3, 4]);
  assertStrictEquals(transform.dropped, 2);
  assertStrictEquals(transform.size, 4);
});

Deno.test("dedup identifies Kafka records by topic, partition and offset", async () => {
  const transform = await make(dedup, { "id.mode": "kafka" }) as DedupTransform;
  const at = (partition: number, offset: number, topic = "t") =>
    rowRecord({ a: 1 }, { topic, origin: { partition, offset } });
  assertEquals(
    await passed(transform, [at(0, 5), at(0, 5), at(1, 5), at(0, 6), at(0, 5, "u"), at(0, 6)]),
    [0, 2, 3, 4],
  );
  await assertRejects(
    async () => await apply(transform, rowRecord({ a: 1 }, { topic: "t" })),
    /dedup: cannot identify a record on "t": id.mode kafka needs origin.partition and origin.offset/,
  );
});

Deno.test("dedup identifies records by named fields, in batch rows and change events", async () => {
  const transform = await make(dedup, {
    "id.mode": "fields",
    "id.fields": "event_id,kind",
  }) as DedupTransform;
  const records = [
    rowRecord({ event_id: "e1", kind: "a", payload: 1 }),
    rowRecord({ event_id: "e1", kind: "a", payload: 2 }),
    rowRecord({ event_id: "e1", kind: "b" }),
    changeRecord("c", { after: { event_id: "e1", kind: "a" } }),
  ];
  assertEquals(await passed(transform, records), [0, 2]);
  await assertRejects(
    async () => await apply(transform, rowRecord({ event_id: "e9" })),
    /field "kind" is not in the row/,
  );
});

Deno.test("dedup passes tombstones and fails batch rows in cdc mode", async () => {
  const transform = await make(dedup, {});
  const tombstone = rowRecord(null, { key: { id: 1 } });
  assertStrictEquals(await apply(transform, tombstone), tombstone);
  assertStrictEquals(await apply(transform, tombstone), tombstone);
  await assertRejects(
    async () => await apply(transform, rowRecord({ id: 1 })),
    /needs change events/,
  );
  await assertRejects(
    async () => await apply(transform, event(0, 1, { source: { lsn: null } })),
    /its source block has no lsn/,
  );
});

Deno.test("dedup forgets IDs older than window.ms", async () => {
  let now = 1_000;
  const options = dedup.config.parse({ "window.ms": "60000" });
  const transform = await createDedup(options, { now: () => now });
  assertEquals(await passed(transform, [event(1, 1), event(1, 1)]), [0]);
  now += 59_999;
  assertEquals(await passed(transform, [event(1, 1)]), []);
  now += 2;
  assertEquals(await passed(transform, [event(1, 1), event(1, 1)]), [0]);
  assertStrictEquals(transform.size, 1);
});

Deno.test("dedup keeps at most max.entries IDs, forgetting the oldest", async () => {
  const transform = await make(dedup, { "max.entries": "2" }) as DedupTransform;
  assertEquals(await passed(transform, [event(1, 1), event(2, 1), event(3, 1)]), [0, 1, 2]);
  assertStrictEquals(transform.size, 2);
  assertEquals(await passed(transform, [event(3, 1), event(1, 1)]), [1]);
});

Deno.test("dedup remembers committed IDs across a restart with the same state.path", async () => {
  await withTempDir(async (dir) => {
    const options = { "state.path": `${dir}/state/dedup.json`, "state.save.interval.ms": "0" };
    const first = await make(dedup, options) as DedupTransform;
    assertEquals(await passed(first, [event(1, 1), event(2, 2)]), [0, 1]);
    await first.commit!();
    await first.close!();

    const second = await make(dedup, options) as DedupTransform;
    assertEquals(await passed(second, [event(1, 1), event(2, 2), event(3, 3)]), [2]);
    assertStrictEquals(second.dropped, 2);
    await second.close!();

    const text = await Deno.readTextFile(`${dir}/state/dedup.json`);
    assert(!text.includes('"id"'), "key values must not be stored in clear");
  });
});

Deno.test("dedup does not persist IDs of records that were never reported durable", async () => {
  await withTempDir(async (dir) => {
    const options = { "state.path": `${dir}/dedup.json` };
    const first = await make(dedup, options);
    await passed(first as DedupTransform, [event(1, 1)]);
    await first.commit!();
    await passed(first as DedupTransform, [event(2, 2)]); // the batch that failed
    await first.close!();

    const second = await make(dedup, options) as DedupTransform;
    assertEquals(await passed(second, [event(1, 1), event(2, 2)]), [1]);
    await second.close!();
  });
});

Deno.test("dedup saves at most every state.save.interval.ms, and on close", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/dedup.json`;
    const transform = await make(dedup, {
      "state.path": path,
      "state.save.interval.ms": "3600000",
    });
    await passed(transform as DedupTransform, [event(1, 1)]);
    await transform.commit!();
    const afterFirst = await new FileSeenStore(path).load();
    assertStrictEquals([...afterFirst].length, 1);
    await passed(transform as DedupTransform, [event(2, 2)]);
    await transform.commit!();
    assertStrictEquals([...await new FileSeenStore(path).load()].length, 1);
    await transform.close!();
    assertStrictEquals([...await new FileSeenStore(path).load()].length, 2);
  });
});

Deno.test("dedup refuses to start from an unreadable state file", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/dedup.json`, '{"entries": 3}');
    await assertRejects(
      async () => await make(dedup, { "state.path": `${dir}/dedup.json` }),
      /Cannot read dedup state ".*dedup.json": expected \{"version": 1/,
    );
  });
});

const badConfigs: [string, Record<string, unknown>, string, RegExp][] = [
  [
    "fields mode without fields",
    { "id.mode": "fields" },
    "id.fields",
    /must name at least one field/,
  ],
  ["id.fields in cdc mode", { "id.fields": "a" }, "id.fields", /applies only to id.mode fields/],
  ["an unknown mode", { "id.mode": "lsn" }, "id.mode", /must be one of "cdc", "kafka", "fields"/],
  ["a zero window", { "window.ms": "0" }, "window.ms", /positive integer/],
  ["a misspelt option", { "state.file": "x" }, "state.file", /is not an option/],
];

for (const [what, options, path, message] of badConfigs) {
  Deno.test(`dedup refuses ${what} at validation`, () => {
    const issues = configIssues(dedup, options);
    const issue = issues.find((i) => i.path === path);
    assert(issue, `expected an issue at ${path}, got ${JSON.stringify(issues)}`);
    assertMatch(issue.message, message);
  });
}
