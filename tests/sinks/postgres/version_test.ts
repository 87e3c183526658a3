/**
 * The `postgres` sink's version guard (`version.column`): batch rows and
 * change events carry the source row's version, and a write only lands on a
 * row older than it. Hand-made records against the private PostgreSQL of
 * `deno task test`; the flows through real sources are in
 * `tests/e2e/hybrid_test.ts`.
 */
import postgres from "postgres";
import { getLogger } from "@logtape/logtape";
import { assert, assertEquals, assertMatch } from "../../_assert.ts";
import { createTestDatabase } from "../../_services.ts";
import postgresSink from "../../../sinks/postgres/mod.ts";
import type { RecordFailure, Sink, SinkResult } from "../../../api/plugin.ts";
import type { ChangeOp, Row, SluiceRecord } from "../../../api/record.ts";
import { changeEvent } from "./_events.ts";

/** A row as postgres_query reads it. */
function row(id: number, name: string, version: string | null): SluiceRecord {
  return { topic: "items", key: { id }, value: { id, name, version } };
}

/** A change event at commit LSN `commit` (as postgres_cdc or Debezium makes it). */
const change = (op: ChangeOp, image: Row, commit: number) => changeEvent(op, image, commit);

type Write = (...records: SluiceRecord[]) => Promise<SinkResult>;

async function withSink(
  ddl: string,
  extra: Record<string, string>,
  fn: (
    write: Write,
    sql: postgres.Sql,
    rejected: RecordFailure[],
    refresh: Write,
  ) => Promise<void>,
) {
  const db = await createTestDatabase("version_sink");
  const sql = postgres(db.url, { max: 1, onnotice: () => {} });
  let sink: Sink | undefined;
  const rejected: RecordFailure[] = [];
  try {
    await sql.unsafe(ddl);
    const config = postgresSink.config.parse({
      "connection.url": db.url,
      table: "public.items",
      "version.column": "version",
      ...extra,
    });
    sink = await postgresSink.create(config, {
      pipeline: "version-sink-test",
      logger: getLogger(["sluice", "test"]),
      signal: new AbortController().signal,
    });
    const write: Write = (...records) =>
      sink!.write({
        records,
        reject: (failures) => {
          rejected.push(...failures);
          return Promise.resolve();
        },
      });
    // A write of a full refresh (`--full-refresh`).
    const refresh: Write = (...records) =>
      sink!.write({ records, refresh: true, reject: () => Promise.resolve() });
    await fn(write, sql, rejected, refresh);
  } finally {
    await sink?.close();
    await sql.end();
    await db.drop();
  }
}

const ITEMS = `create table public.items (
  id int primary key, name text, qty int, version timestamptz, deleted_at timestamptz,
  synced_at timestamptz)`;
const T1 = "2026-01-01 10:00:00.000001+00";
const T2 = "2026-01-01 10:00:00.000002+00";
const T3 = "2026-01-01 11:00:00+00";

async function rowsOf(sql: postgres.Sql) {
  return await sql`select id, name, version::text as version, deleted_at is not null as deleted
                   from items order by id`;
}

Deno.test("the version guard writes newer rows and skips older and equal ones", async () => {
  await withSink(ITEMS, { "write.timestamp.column": "synced_at" }, async (write, sql) => {
    assertEquals(await write(row(1, "a", T1), row(2, "b", T2)), { written: 2, skipped: 0 });
    // Newer overwrites; older is skipped; microseconds count.
    assertEquals(await write(row(1, "a2", T2), row(2, "b-old", T1)), { written: 1, skipped: 1 });
    const [{ synced }] = await sql`select synced_at::text as synced from items where id = 2`;
    // Equal versions: a replay changes nothing, not even the write timestamp.
    assertEquals(await write(row(1, "a-replay", T2), row(2, "b-replay", T2)), {
      written: 0,
      skipped: 2,
    });
    assertEquals((await rowsOf(sql)).map((r) => [r.id, r.name, r.version]), [
      [1, "a2", "2026-01-01 10:00:00.000002+00"],
      [2, "b", "2026-01-01 10:00:00.000002+00"],
    ]);
    const [after] = await sql`select synced_at::text as synced from items where id = 2`;
    assertEquals(after.synced, synced);
  });
});

Deno.test("a row without a version fails its record instead of overwriting blindly", async () => {
  await withSink(ITEMS, {}, async (write, sql, rejected) => {
    await write(row(1, "a", T2));
    assertEquals(await write(row(1, "no version", null), row(2, "b", T1)), {
      written: 1,
      skipped: 0,
    });
    assertEquals(rejected.length, 1);
    assertMatch(rejected[0].error.message, /no version for column "version"/);
    assertEquals((await rowsOf(sql)).map((r) => r.name), ["a", "b"]);
  });
});

Deno.test("a soft delete keeps its version, so a late batch of the old row cannot revive it", async () => {
  await withSink(ITEMS, {}, async (write, sql) => {
    await write(row(1, "a", T2), row(2, "b", T2), row(3, "c", T2));
    // A delete that saw an older version than the row's is skipped.
    assertEquals(await write(change("d", { id: 1, name: "a", version: T1 }, 10)), {
      written: 0,
      skipped: 1,
    });
    // A delete that saw the row's version applies (soft) and stores it.
    assertEquals(await write(change("d", { id: 2, name: "b", version: T3 }, 20)), {
      written: 1,
      skipped: 0,
    });
    // A delete without a version (a key-only before image) applies whatever the version.
    assertEquals(await write(change("d", { id: 3 }, 30)), { written: 1, skipped: 0 });
    // The hourly batch read rows 2 and 3 before they were deleted: it cannot revive them.
    assertEquals(await write(row(2, "b", T2), row(3, "c", T2)), { written: 0, skipped: 2 });
    assertEquals((await rowsOf(sql)).map((r) => [r.id, r.version, r.deleted]), [
      [1, "2026-01-01 10:00:00.000002+00", false],
      [2, "2026-01-01 11:00:00+00", true],
      [3, "2026-01-01 10:00:00.000002+00", true],
    ]);
    // A newer write (the row re-created at the source) revives it.
    assertEquals(await write(row(3, "c again", T3)), { written: 1, skipped: 0 });
    const [three] = await sql`select name, deleted_at from items where id = 3`;
    assertEquals([three.name, three.deleted_at], ["c again", null]);
  });
});

Deno.test("a hard delete that saw an older version leaves the newer row", async () => {
  await withSink(ITEMS, { "delete.mode": "hard" }, async (write, sql) => {
    await write(row(1, "a", T2), row(2, "b", T2));
    assertEquals(
      await write(
        change("d", { id: 1, name: "a", version: T1 }, 10),
        change("d", { id: 2, name: "b", version: T2 }, 20),
      ),
      { written: 1, skipped: 1 },
    );
    assertEquals((await rowsOf(sql)).map((r) => r.id), [1]);
  });
});

const POSITIONED = `create table public.items (
  id int primary key, name text, qty int, version timestamptz, deleted_at timestamptz,
  _source_lsn pg_lsn)`;

Deno.test("with a position column, updates of one transaction sharing a version apply in order", async () => {
  await withSink(POSITIONED, {}, async (write, sql) => {
    await write(change("c", { id: 1, name: "a", version: T1 }, 100));
    // One source transaction updated the row twice; now() gave both updates one
    // version, and the sink received them in separate batches.
    assertEquals(await write(change("u", { id: 1, name: "b", version: T2 }, 200)), {
      written: 1,
      skipped: 0,
    });
    assertEquals(await write(change("u", { id: 1, name: "c", version: T2 }, 200)), {
      written: 1,
      skipped: 0,
    });
    // An event of another transaction with the same version is not newer.
    assertEquals(await write(change("u", { id: 1, name: "x", version: T2 }, 300)), {
      written: 0,
      skipped: 1,
    });
    // A newer position does not make an older version newer (a batch wrote T3 meanwhile).
    await write(row(1, "batch", T3));
    assertEquals(await write(change("u", { id: 1, name: "y", version: T2 }, 400)), {
      written: 0,
      skipped: 1,
    });
    // And a newer version at an older position is a replay: skipped too.
    assertEquals(
      await write(change("u", { id: 1, name: "z", version: "2027-01-01 00:00:00+00" }, 50)),
      { written: 0, skipped: 1 },
    );
    const [one] = await sql`select name, version::text as version, _source_lsn::text as lsn
                            from items`;
    assertEquals([one.name, one.version, one.lsn], ["batch", "2026-01-01 11:00:00+00", "0/C8"]);
  });
});

Deno.test("a soft-deleted row written again at a later position revives whatever its version; a write without one cannot", async () => {
  await withSink(POSITIONED, {}, async (write, sql) => {
    await write(change("c", { id: 1, name: "a", version: T1 }, 100));
    assertEquals(await write(change("d", { id: 1, name: "a", version: T1 }, 200)), {
      written: 1,
      skipped: 0,
    });
    // The hourly batch read the row before its delete: no position, no revival.
    assertEquals(await write(row(1, "late batch", T1)), { written: 0, skipped: 1 });
    // An event from before the delete: stale.
    assertEquals(await write(change("u", { id: 1, name: "replayed", version: T1 }, 150)), {
      written: 0,
      skipped: 1,
    });
    // Re-created after the delete with a version that restarts (or found
    // again by a snapshot): it exists at the source again.
    assertEquals(await write(change("c", { id: 1, name: "again", version: T1 }, 300)), {
      written: 1,
      skipped: 0,
    });
    assertEquals((await rowsOf(sql)).map((r) => [r.name, r.deleted]), [["again", false]]);
    // Deleted again, then re-created with a counter that restarted below it.
    await write(change("u", { id: 1, name: "again", version: T2 }, 310));
    await write(change("d", { id: 1, name: "again", version: T2 }, 320));
    assertEquals(await write(change("c", { id: 1, name: "restarted", version: T1 }, 330)), {
      written: 1,
      skipped: 0,
    });
    assertEquals((await rowsOf(sql)).map((r) => [r.name, r.version, r.deleted]), [
      ["restarted", "2026-01-01 10:00:00.000001+00", false],
    ]);
    // A live row at the same version is still not rewritten by another transaction.
    assertEquals(await write(change("u", { id: 1, name: "same version", version: T1 }, 400)), {
      written: 0,
      skipped: 1,
    });
  });
});

Deno.test("the version guard holds on the bad-row isolation path", async () => {
  await withSink(ITEMS, {}, async (write, sql, rejected) => {
    await write(row(1, "a", T2), row(2, "b", T1));
    // qty does not fit an int: the set fails, the isolation function writes the rest.
    const bad: SluiceRecord = {
      topic: "items",
      key: { id: 3 },
      value: { id: 3, name: "c", qty: "many", version: T2 },
    };
    const batch = [
      { ...row(1, "stale", T1), value: { id: 1, name: "stale", qty: 1, version: T1 } },
      { ...row(2, "newer", T2), value: { id: 2, name: "newer", qty: 2, version: T2 } },
      bad,
      { ...row(4, "new", T1), value: { id: 4, name: "new", qty: 4, version: T1 } },
    ];
    assertEquals(await write(...batch), { written: 2, skipped: 1 });
    assertEquals(rejected.map((f) => f.record.key), [{ id: 3 }]);
    // The next batch goes straight to the isolation function (the table had rejects).
    assertEquals(
      await write({ ...bad, value: { id: 3, name: "c", qty: 3, version: T2 } }, row(2, "old", T1)),
      { written: 1, skipped: 1 },
    );
    assertEquals((await rowsOf(sql)).map((r) => [r.id, r.name]), [
      [1, "a"],
      [2, "newer"],
      [3, "c"],
      [4, "new"],
    ]);
  });
});

Deno.test("a version.column the target table lacks stops the sink before it writes", async () => {
  let error: Error | undefined;
  try {
    await withSink(ITEMS, { "version.column": "row_version" }, () => Promise.resolve());
  } catch (caught) {
    error = caught as Error;
  }
  assert(error !== undefined, "the sink started without its version column");
  assertMatch(error.message, /has no column "row_version" \(version\.column\)/);
});

Deno.test("events folded into a skipped write are counted as skipped, not written", async () => {
  await withSink(ITEMS, {}, async (write, sql) => {
    const events = [
      change("c", { id: 1, name: "a", version: T1 }, 100),
      change("u", { id: 1, name: "b", version: T2 }, 110),
      change("c", { id: 2, name: "x", version: T1 }, 120),
      change("u", { id: 2, name: "y", version: T2 }, 130),
      change("u", { id: 2, name: "z", version: T3 }, 140),
    ];
    assertEquals(await write(...events), { written: 5, skipped: 0 });
    // A replay of the whole stream: every event is older or equal.
    assertEquals(await write(...events), { written: 0, skipped: 5 });
    // Key 1 moves on, key 2 is replayed: each key's events share its write's fate.
    assertEquals(
      await write(
        change("u", { id: 1, name: "c", version: T3 }, 150),
        change("u", { id: 1, name: "d", version: "2026-01-02 00:00:00+00" }, 160),
        ...events.slice(2),
      ),
      { written: 2, skipped: 3 },
    );
    assertEquals((await rowsOf(sql)).map((r) => r.name), ["d", "z"]);
  });
});

Deno.test("folded events are counted by the key PostgreSQL stores, not by how the event spells it", async () => {
  // A uuid in capitals: PostgreSQL stores and returns it in lower case.
  const ids = ["A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11", "B1FFCDAA-AD1C-4FA9-8C7E-7CCACE491B22"];
  const ddl = ITEMS.replace("id int primary key", "id uuid primary key");
  await withSink(ddl, {}, async (write, sql) => {
    const events = [
      change("c", { id: ids[1], name: "x", version: T1 }, 120),
      change("u", { id: ids[1], name: "y", version: T2 }, 130),
      change("u", { id: ids[1], name: "z", version: T3 }, 140),
    ];
    assertEquals(await write(...events), { written: 3, skipped: 0 });
    // Key 0 is new, key 1 replayed: each key's events share its write's fate.
    assertEquals(
      await write(
        change("c", { id: ids[0], name: "c", version: T3 }, 150),
        change("u", { id: ids[0], name: "d", version: "2026-01-02 00:00:00+00" }, 160),
        ...events,
      ),
      { written: 2, skipped: 3 },
    );
    assertEquals((await rowsOf(sql)).map((r) => r.name).sort(), ["d", "z"]);
  });
});

Deno.test("rows of one key folded into a first load (COPY) are counted as written", async () => {
  await withSink(ITEMS, {}, async (write, sql) => {
    assertEquals(await write(row(1, "a", T1), row(1, "b", T2), row(2, "c", T1)), {
      written: 3,
      skipped: 0,
    });
    assertEquals((await rowsOf(sql)).map((r) => [r.id, r.name]), [[1, "b"], [2, "c"]]);
  });
});

Deno.test("within one batch, an older version of a key never replaces a newer one", async () => {
  await withSink(ITEMS, {}, async (write, sql) => {
    assertEquals(await write(row(1, "a", T1), row(2, "x", T1)), { written: 2, skipped: 0 });
    // Out of order in one batch (a skewed clock, two producers): the batch
    // must end as the same records in two batches would, at the newest version.
    assertEquals(await write(row(1, "newest", T3), row(1, "older", T2)), {
      written: 1,
      skipped: 1,
    });
    // Versions this side cannot order (other offsets) are left to the database.
    assertEquals(
      await write(
        row(2, "newer", "2026-01-01 13:00:00+02"),
        row(2, "older", "2026-01-01 09:30:00+00"),
      ),
      { written: 1, skipped: 1 },
    );
    assertEquals((await rowsOf(sql)).map((r) => [r.id, r.name, r.version]), [
      [1, "newest", "2026-01-01 11:00:00+00"],
      [2, "newer", "2026-01-01 11:00:00+00"],
    ]);
    // Deletes too: a delete that saw the newest version is not lost to an older one.
    assertEquals(
      await write(
        change("d", { id: 1, version: T3 }, 500),
        change("d", { id: 1, version: T1 }, 510),
      ),
      { written: 1, skipped: 1 },
    );
    assertEquals((await rowsOf(sql)).map((r) => [r.id, r.version, r.deleted]), [
      [1, "2026-01-01 11:00:00+00", true],
      [2, "2026-01-01 11:00:00+00", false],
    ]);
  });
});

Deno.test("a full refresh writes rows at the stored version, never older ones, and no soft-deleted row", async () => {
  // Rows from earlier runs: the sink starts on a table that is not empty.
  const ddl = `${ITEMS};
    insert into items (id, name, version) values
      (1, 'stale', '${T2}'), (2, 'newer', '${T3}'), (3, 'deleted', '${T2}');
    update items set deleted_at = now() where id = 3`;
  await withSink(ddl, {}, async (write, sql, _rejected, refresh) => {
    // An ordinary run skips the equal version: row 1 stays stale.
    assertEquals(await write(row(1, "fresh", T2)), { written: 0, skipped: 1 });
    assertEquals(
      await refresh(
        row(1, "fresh", T2),
        row(2, "older", T2),
        row(3, "deleted", T2),
        row(4, "new", T1),
      ),
      { written: 2, skipped: 2 },
    );
    assertEquals((await rowsOf(sql)).map((r) => [r.id, r.name, r.deleted]), [
      [1, "fresh", false],
      [2, "newer", false],
      [3, "deleted", true],
      [4, "new", false],
    ]);
  });
});
