/**
 * The `postgres` sink on its own, with hand-made records against the
 * private PostgreSQL of `deno task test`: deletes it cannot apply, the
 * write timestamp, rejected rows, key-only deletes, unknown fields, and
 * schema evolution.
 */
import postgres from "postgres";
import { getLogger } from "@logtape/logtape";
import { assert, assertEquals, assertMatch, assertRejects } from "../../_assert.ts";
import { createTestDatabase } from "../../_services.ts";
import postgresSink from "../../../sinks/postgres/mod.ts";
import {
  postgresDeadLetters,
  postgresDeadLetterStore,
} from "../../../sinks/postgres/_dead_letters.ts";
import type {
  RecordFailure,
  RunStats,
  Sink,
  SinkResult,
  SourceMode,
  ValidationCheck,
} from "../../../api/plugin.ts";
import type { ChangeOp, Row, SluiceRecord } from "../../../api/record.ts";
import { changeEvent } from "./_events.ts";

/** A change event of public.items, as postgres_cdc makes it, at commit LSN `commit`. */
const change = (op: ChangeOp, row: Row | null, commit: number, key?: Row) =>
  changeEvent(op, row, commit, { key });

const row = (value: Row): SluiceRecord => ({ topic: "t", key: { id: value.id }, value });

interface Harness {
  sql: postgres.Sql;
  url: string;
  /** Writes records; failures handed to the sink's `reject` are collected. */
  write(...records: SluiceRecord[]): Promise<SinkResult>;
  failures: RecordFailure[];
  /** The sink's own checks after its writes (its key checksum among them). */
  validate(): Promise<ValidationCheck[]>;
}

async function withSink(
  ddl: string,
  extra: Record<string, string>,
  fn: (harness: Harness) => Promise<void>,
  sourceMode?: SourceMode,
) {
  const db = await createTestDatabase("pg_sink");
  const sql = postgres(db.url, { max: 1, onnotice: () => {} });
  let sink: Sink | undefined;
  try {
    await sql.unsafe(ddl);
    const config = postgresSink.config.parse({
      "connection.url": db.url,
      table: "public.items",
      ...extra,
    });
    sink = await postgresSink.create(config, {
      pipeline: "pg-sink-test",
      logger: getLogger(["sluice", "test"]),
      signal: new AbortController().signal,
      sourceMode,
    });
    const failures: RecordFailure[] = [];
    const write = (...records: SluiceRecord[]) =>
      sink!.write({
        records,
        reject: (rejected) => {
          failures.push(...rejected);
          return Promise.resolve();
        },
      });
    const validate = () => sink!.validate!({} as RunStats);
    await fn({ sql, url: db.url, write, failures, validate });
  } finally {
    await sink?.close();
    await sql.end();
    await db.drop();
  }
}

const NO_DELETED_AT = `create table public.items (id int primary key, name text)`;

Deno.test("a stream sink whose target has no soft-delete column refuses to start, naming the remedies", async () => {
  const error = await assertRejects(() =>
    withSink(NO_DELETED_AT, {}, () => Promise.resolve(), "stream")
  );
  assertMatch(error.message, /delete\.mode is "soft" but table "public\.items" has no column/);
  assertMatch(error.message, /"deleted_at" \(soft\.delete\.column\)/);
  assertMatch(error.message, /add column "deleted_at" timestamptz/);
  assertMatch(error.message, /set delete\.mode to "hard"/);
});

Deno.test("a delete the target cannot apply is handed over as a failure, never dropped", async () => {
  await withSink(NO_DELETED_AT, {}, async ({ write, failures, sql }) => {
    await write(row({ id: 1, name: "a" }));
    const result = await write(change("d", null, 10, { id: 1 }));
    assertEquals(result.written, 0);
    assertEquals(failures.length, 1);
    assertMatch(failures[0].error.message, /^Cannot apply a delete: delete\.mode is "soft"/);
    assertEquals((await sql`select count(*)::int as n from items`)[0].n, 1);
  });
});

Deno.test("write.timestamp.column is set on inserts as well as updates, by COPY and by merge", async () => {
  const ddl = `create table public.items (id int primary key, name text, synced_at timestamptz,
                 deleted_at timestamptz)`;
  await withSink(ddl, { "write.timestamp.column": "synced_at" }, async ({ write, sql }) => {
    await write(row({ id: 1, name: "bulk" })); // first load: COPY
    await write(row({ id: 2, name: "merged" }), row({ id: 1, name: "updated" })); // merge
    await write(change("c", { id: 3, name: "event" }, 5));
    const rows = await sql`select id, synced_at is not null as stamped from items order by id`;
    assertEquals(rows.map((r) => [r.id, r.stamped]), [[1, true], [2, true], [3, true]]);
  });
});

Deno.test("rejected rows are isolated in one pass and dead letters keep jsonb as JSON", async () => {
  const ddl = `create table public.items (id int primary key, name text, doc jsonb,
                 deleted_at timestamptz, check (id % 10 <> 3))`;
  await withSink(ddl, {}, async ({ write, failures, sql }) => {
    await write(row({ id: 0, name: "seed", doc: "{}" })); // not a first load any more
    const records = Array.from(
      { length: 500 },
      (_, i) => row({ id: i + 1, name: `n${i + 1}`, doc: `{"n": ${i + 1}, "tags": ["a"]}` }),
    );
    const result = await write(...records);
    assertEquals(result.written, 450);
    assertEquals(failures.length, 50);
    assert(failures.every((f) => /violates check constraint/.test(f.error.message)));
    assertEquals((failures[0].error as Error & { code?: string }).code, "23514");
    assertEquals(failures.map((f) => (f.record.key as Row).id).slice(0, 3), [3, 13, 23]);
    // The dead letter shows the document, not a string holding it.
    assertEquals((failures[0].record.value as Row).doc, { n: 3, tags: ["a"] });
    const [{ n }] = await sql`select count(*)::int as n from items`;
    assertEquals(n, 451);
    // Unless parsing would change a number: a replay must write what came.
    const exact = ['{"n": 9007199254740993}', '{"n": 0.10000000000000000555}', '{"n": 1.50}'];
    await write(...exact.map((doc, i) => row({ id: 1003 + i * 10, name: "x", doc })));
    assertEquals(failures.slice(50).map((f) => (f.record.value as Row).doc), exact);
  });
});

Deno.test("a dead-letter table reads as empty until its first letter, then lists in id order", async () => {
  const db = await createTestDatabase("pg_dead_letters");
  const store = postgresDeadLetterStore(db.url, "public.dead");
  const writer = postgresDeadLetters(db.url, "public.dead");
  try {
    assertEquals(await store.count("p"), 0); // nothing created just to be read
    const failures = Array.from({ length: 12 }, (_, i) => ({
      record: row({ id: i }),
      error: new Error(`bad ${i}`),
      stage: "sink",
    }));
    await writer.write(failures, "p");
    assertEquals(await store.count("p"), 12); // the table made since is seen
    const listed = await store.list("p", {});
    assertEquals(listed.map((letter) => letter.error), failures.map((f) => f.error.message));
  } finally {
    await store.close();
    await writer.close();
    await db.drop();
  }
});

Deno.test("primary.key.fields without a unique index on them fails the sink at start, naming the index to add", async () => {
  const ddl = `create table public.items (id int, name text, deleted_at timestamptz)`;
  await assertRejects(
    () => withSink(ddl, { "primary.key.fields": "id" }, () => Promise.resolve()),
    Error,
    'has no primary key or unique index on "id" (sink.primary.key.fields)',
  );
  const unique = `create table public.items (id int, code text, name text, deleted_at timestamptz);
    create unique index on public.items (code, id)`;
  await withSink(unique, { "primary.key.fields": "id,code" }, async ({ write, sql }) => {
    await write(row({ id: 1, code: "x", name: "a" }));
    await write(row({ id: 1, code: "x", name: "b" }));
    assertEquals([...await sql`select name from items`], [{ name: "b" }]);
  });
});

Deno.test("a row failing only at the end of the statement is still found, row by row", async () => {
  // An AFTER trigger raises once the whole statement ran, so the failing row
  // cannot be read off the walk: the rows are then tried one by one.
  const ddl = `create table public.items (id int primary key, name text, deleted_at timestamptz);
    create function refuse_bad() returns trigger language plpgsql as
      $$ begin if new.name = 'bad' then raise exception 'bad row %', new.id; end if;
         return null; end $$;
    create trigger refuse_bad after insert or update on items
      for each row execute function refuse_bad();`;
  await withSink(ddl, {}, async ({ write, failures, sql }) => {
    await write(row({ id: 0, name: "seed" }));
    const names = ["a", "b", "bad", "c", "bad", "d"];
    const result = await write(...names.map((name, i) => row({ id: i + 1, name })));
    assertEquals(result.written, 4);
    assertEquals(failures.map((f) => [(f.record.key as Row).id, f.error.message]), [
      [3, 'Cannot write to table "public.items" (key {"id":3}): bad row 3'],
      [5, 'Cannot write to table "public.items" (key {"id":5}): bad row 5'],
    ]);
    const ids = await sql`select id from items order by id`;
    assertEquals(ids.map((r) => r.id), [0, 1, 2, 4, 6]);
  });
});

Deno.test("a value the column cannot take fails naming the table, the column and the key", async () => {
  // After a column's type changed, PostgreSQL says only what it could not read.
  const ddl = `create table public.items (id int primary key, risk numeric, code varchar(3),
                 n integer, note text, deleted_at timestamptz)`;
  await withSink(ddl, {}, async ({ write, failures }) => {
    await write(row({ id: 0, risk: 1, code: "a", n: 1, note: "high" }));
    const result = await write(
      row({ id: 1, risk: "high", code: "b", n: 1, note: "high" }),
      row({ id: 2, risk: 2, code: "abc", n: 1, note: "x" }),
      row({ id: 3, risk: 3, code: "c", n: 99999999999, note: "x" }),
      row({ id: 4, risk: 4, code: "d", n: 4, note: "x" }),
    );
    assertEquals(result.written, 2);
    const errors = failures.map((f) => f.error.message);
    assertEquals(errors, [
      'Cannot write to table "public.items" (column "risk", key {"id":1}): invalid input syntax for type numeric: "high"',
      'Cannot write to table "public.items" (column "n", key {"id":3}): value "99999999999" is out of range for type integer',
    ]);
    assertEquals((failures[0].error as Error & { code?: string }).code, "22P02");
  });
});

Deno.test("a value longer than its varchar, char or bit column is refused, not cut to size", async () => {
  const ddl = `create table public.items (id int primary key, code varchar(3), flag char(2),
                 bits bit(3), codes varchar(3)[], deleted_at timestamptz)`;
  await withSink(ddl, {}, async ({ write, failures, sql }) => {
    await write(row({ id: 0, code: "a", flag: "x", bits: "101", codes: ["a"] })); // not a first load
    const result = await write(
      row({ id: 1, code: "long", flag: "x", bits: "101", codes: ["a"] }),
      row({ id: 2, code: "abc", flag: "xyz", bits: "101", codes: ["a"] }),
      row({ id: 3, code: "abc", flag: "x", bits: "1011", codes: ["a"] }),
      row({ id: 4, code: "abc", flag: "x", bits: "101", codes: ["abcd"] }),
      row({ id: 0, code: "upda", flag: "x", bits: "101", codes: ["a"] }), // an update
      row({ id: 5, code: "abc", flag: "xy", bits: "010", codes: ["abc"] }),
      // Longer by spaces alone: PostgreSQL would cut them without an error.
      row({ id: 6, code: "ab  ", flag: "x", bits: "101", codes: ["a"] }),
      row({ id: 7, code: "abc", flag: "x", bits: "101", codes: ["a", "ab    "] }),
    );
    assertEquals(result.written, 1);
    assertEquals(failures.map((f) => (f.record.key as Row).id), [6, 7, 1, 2, 3, 4, 0]);
    assertEquals(
      failures[0].error.message,
      'Cannot write to table "public.items" (column "code", key {"id":6}): value "ab  " is ' +
        "longer than type character varying(3) by trailing spaces, which PostgreSQL would cut " +
        "without a word; widen the column or trim the value at the source",
    );
    assertEquals((failures[0].error as Error & { code?: string }).code, "22001");
    failures.splice(0, 2);
    assertMatch(
      failures[0].error.message,
      /^Cannot write to table "public\.items" \(column "code", key \{"id":1\}\): value too long for type character varying\(3\)$/,
    );
    assertMatch(failures[1].error.message, /\(column "flag", key \{"id":2\}\): value too long/);
    const rows = await sql`select id, code, flag, bits::text, codes from items order by id`;
    assertEquals(rows.map((r) => [r.id, r.code, r.flag, r.bits, r.codes]), [
      [0, "a", "x ", "101", ["a"]],
      [5, "abc", "xy", "010", ["abc"]],
    ]);
  });
});

Deno.test("a value with more fractional digits than its column keeps is refused, not rounded", async () => {
  const ddl = `create table public.items (id numeric(6,2) primary key, amount numeric(6,2),
                 at timestamptz(0), seen timestamp(3), clock time(2), span interval(0),
                 amounts numeric(6,2)[], hundreds numeric(6,-2), days interval day,
                 born date, holidays date[], ratio real, share double precision,
                 deleted_at timestamptz)`;
  const good = {
    amount: "1.2300", // trailing zeros are no loss
    at: "2026-12-01 10:00:00.000+00",
    seen: "2026-12-01T10:00:00.123Z",
    clock: "10:00:00.12",
    span: "1 day 00:00:01",
    amounts: [1.5, "2.10"],
    hundreds: 12300,
    days: "P2D",
    born: "2026-12-01T00:00:00Z", // midnight: the date alone is no loss
    holidays: ["2026-12-24", "2026-12-25 00:00:00+01"],
    ratio: 0.1, // reads back from a real as 0.1
    share: "0.30000000000000004",
  };
  const cases: [string, Row][] = [
    ["amount", { amount: 1.2345 }],
    ["at", { at: "2026-12-01 10:00:00.7+00" }],
    ["seen", { seen: "2026-12-01 10:00:00.123456" }],
    ["clock", { clock: "10:00:00.125" }],
    ["span", { span: "00:00:00.5" }],
    ["amounts", { amounts: [1, "2.001"] }],
    ["hundreds", { hundreds: 12345 }],
    ["amount", { amount: "1.5e-3" }],
    ["days", { days: "1 day 03:00:00" }], // interval day drops the hours
    ["born", { born: "2026-12-01 10:30:00+00" }], // a date drops the time of day
    ["holidays", { holidays: ["2026-12-24", "2026-12-25T00:00:00.5Z"] }],
    ["ratio", { ratio: "0.123456789" }], // a real keeps 0.12345679
    ["ratio", { ratio: 16777217 }],
    ["share", { share: "0.12345678901234567890" }],
  ];
  for (const firstLoad of [true, false]) {
    await withSink(ddl, {}, async ({ write, failures, sql }) => {
      if (!firstLoad) await write(row({ id: 0, ...good }));
      const result = await write(
        ...cases.map(([, values], i) => row({ id: i + 1, ...good, ...values })),
        row({ id: 100, ...good }),
        row({ id: 1.005, ...good }), // the key would become 1.01
      );
      assertEquals(result.written, 1);
      assertEquals(failures.map((f) => (f.record.key as Row).id), [
        ...cases.map((_, i) => i + 1),
        1.005,
      ]);
      assertEquals(
        failures[0].error.message,
        'Cannot write to table "public.items" (column "amount", key {"id":1}): value "1.2345" ' +
          "has more digits than type numeric(6,2) keeps (2 decimal places): PostgreSQL would " +
          "round it; widen the column or round the value at the source",
      );
      cases.forEach(([column], i) => {
        assertMatch(failures[i].error.message, new RegExp(`\\(column "${column}", key`));
      });
      assertMatch(
        failures[1].error.message,
        /type timestamp\(0\) with time zone keeps \(0 fractional-second digits\)/,
      );
      assertMatch(
        failures[cases.length - 3].error.message,
        /value "0\.123456789" has more digits than type real keeps: PostgreSQL would store the nearest single-precision number/,
      );
      assertMatch(
        failures[cases.length - 5].error.message,
        /value "2026-12-01 10:30:00\+00" has a time of day, which type date drops/,
      );
      const rows =
        await sql`select id::text, amount::text, at::text, seen::text from items order by id`;
      assertEquals(rows.map((r) => r.id), [...(firstLoad ? [] : ["0.00"]), "100.00"]);
      assertEquals(rows.at(-1)!.amount, "1.23");
      assertEquals(rows.at(-1)!.seen, "2026-12-01 10:00:00.123");
    });
  }
});

Deno.test("a delete whose key a column would round is refused, not applied to another row", async () => {
  const ddl =
    `create table public.items (id numeric(6,2) primary key, name text, deleted_at timestamptz)`;
  await withSink(ddl, { "delete.mode": "hard" }, async ({ write, failures, sql }) => {
    await write(row({ id: 1.01, name: "a" }));
    const result = await write(change("d", null, 10, { id: 1.005 }));
    assertEquals(result.written, 0);
    assertEquals(failures.length, 1);
    assertMatch(
      failures[0].error.message,
      /\(column "id", key \{"id":1\.005\}\): value "1\.005" has more digits/,
    );
    assertEquals((await sql`select id::text from items`).map((r) => r.id), ["1.01"]);
  });
});

Deno.test("a running sink sees the target fixed: a column added, a type widened, a column dropped", async () => {
  const ddl = `create table public.items (id int primary key, n integer, amount numeric(6,2),
                 note text, deleted_at timestamptz)`;
  await withSink(ddl, {}, async ({ write, failures, sql }) => {
    await write(row({ id: 0, n: 1, amount: 1, note: "a" }));
    await write(
      row({ id: 1, n: 1, extra: "x" }),
      row({ id: 2, n: "two" }),
      row({ id: 3, amount: 1.2345 }),
    );
    assertEquals(failures.map((f) => (f.record.key as Row).id), [1, 2, 3]);
    assertMatch(failures[0].error.message, /no column for field "extra"/);
    // The operator fixes the target; the running sink takes the replay.
    await sql.unsafe(`alter table public.items add column extra text,
      alter column n type text, alter column amount type numeric(12,4)`);
    failures.length = 0;
    const replay = await write(
      row({ id: 1, n: 1, extra: "x" }),
      row({ id: 2, n: "two" }),
      row({ id: 3, amount: 1.2345 }),
    );
    assertEquals(failures.map((f) => f.error.message), []);
    assertEquals(replay.written, 3);
    const rows = await sql`select id, n, amount::text, extra from items order by id`;
    assertEquals(rows.map((r) => [r.id, r.n, r.amount, r.extra]), [
      [0, "1", "1.0000", null],
      [1, "1", null, "x"],
      [2, "two", null, null],
      [3, null, "1.2345", null],
    ]);
    // A column dropped under the sink: the record fails as one the table has no column for.
    await sql.unsafe("alter table public.items drop column note");
    const dropped = await write(row({ id: 4, n: "4", note: "gone" }), row({ id: 5, n: "5" }));
    assertEquals(dropped.written, 1);
    assertEquals(failures.length, 1);
    assertMatch(failures[0].error.message, /has no column for field "note"/);
  });
});

Deno.test("a delete without the table's key names what it carries and the remedies", async () => {
  const ddl = `create table public.items (id int primary key, code text, deleted_at timestamptz)`;
  await withSink(ddl, {}, async ({ write, failures, sql }) => {
    await write(row({ id: 1, code: "a" }));
    // Keyed by a replica identity index on code, as a source without a primary key sends it.
    const result = await write(change("d", null, 10, { code: "a" }));
    assertEquals(result.written, 0);
    assertEquals(failures.map((f) => f.error.message), [
      'key column "id" of table "public.items" is missing or null: the delete carries only ' +
      '"code" (the source\'s key and replica identity); key the table by the columns the ' +
      "source's events are keyed by (primary.key.fields), or set REPLICA IDENTITY FULL on " +
      "the source table",
    ]);
    assertEquals((await sql`select deleted_at from items`)[0].deleted_at, null);
  });
});

Deno.test("a delete the database refuses is handed over while the other deletes apply", async () => {
  const ddl = `create table public.items (id int primary key, name text);
    create table public.orders (id int primary key, item int references public.items (id));`;
  await withSink(ddl, { "delete.mode": "hard" }, async ({ write, failures, sql }) => {
    await write(row({ id: 1, name: "a" }), row({ id: 2, name: "b" }), row({ id: 3, name: "c" }));
    await sql`insert into orders values (1, 2)`;
    const result = await write(
      change("d", null, 10, { id: 1 }),
      change("d", null, 11, { id: 2 }),
      change("d", null, 12, { id: 3 }),
    );
    assertEquals(result.written, 2);
    assertEquals(failures.length, 1);
    assertEquals((failures[0].record.key as Row).id, 2);
    assertMatch(
      failures[0].error.message,
      /violates foreign key constraint .*\(the source already checked this key; .* Set the sink's session\.replication\.role to replica/,
    );
    assertEquals((await sql`select id from items`).map((r) => r.id), [2]);
  });
});

Deno.test("a delete carrying only the key removes a row written with a source position", async () => {
  const ddl = `create table public.items (id int primary key, name text, body text,
                 deleted_at timestamptz, _source_lsn pg_lsn)`;
  for (const mode of ["soft", "hard"]) {
    await withSink(ddl, { "delete.mode": mode }, async ({ write, sql, failures }) => {
      await write(change("c", { id: 1, name: "a", body: "x" }, 100));
      await write(change("c", { id: 2, name: "b", body: "y" }, 100));
      // An update without the unchanged TOAST column keeps the stored value.
      await write(change("u", { id: 1, name: "a2" }, 150));
      const tombstone: SluiceRecord = { topic: "shop.public.items", key: { id: 1 }, value: null };
      // before: only the key; and a delete whose before is null.
      const bare = change("d", null, 220, { id: 2 });
      const noBefore = { ...bare, value: { ...(bare.value as Row), before: null } };
      const result = await write(change("d", null, 200, { id: 1 }), tombstone, noBefore);
      assertEquals(failures, []);
      assertEquals(result, { written: 2, skipped: 1 });
      const rows =
        await sql`select id, body, deleted_at is not null as deleted, _source_lsn::text as lsn
                             from items order by id`;
      if (mode === "hard") assertEquals(rows.length, 0);
      else {
        assertEquals(rows.map((r) => [r.id, r.body, r.deleted, r.lsn]), [
          [1, "x", true, "0/C8"],
          [2, "y", true, "0/DC"],
        ]);
      }
    });
  }
});

const ITEMS = `create table public.items (id int primary key, name text, qty int,
                 code varchar(3), deleted_at timestamptz)`;

Deno.test("a field the target lacks fails its record unless excluded or evolved", async () => {
  await withSink(ITEMS, {}, async ({ write, failures, sql }) => {
    const result = await write(row({ id: 1, name: "a", color: "red" }), row({ id: 2, name: "b" }));
    assertEquals(result.written, 1);
    assertEquals(failures.length, 1);
    assertMatch(failures[0].error.message, /no column for field "color".*schema\.evolution/);
    // With one fixed table (sink.table), a record of another table is the likelier cause.
    assertMatch(
      failures[0].error.message,
      /if records of topic "t" come from another table than "public\.items", remove sink\.table so that table\.name\.format names each table from its topic$/,
    );
    assertEquals((await sql`select id from items`).map((r) => r.id), [2]);
  });
  await withSink(ITEMS, { "fields.exclude": "color" }, async ({ write, failures }) => {
    assertEquals((await write(row({ id: 1, name: "a", color: "red" }))).written, 1);
    assertEquals(failures, []);
  });
});

Deno.test("schema.evolution basic adds columns and widens, but refuses a narrowing", async () => {
  await withSink(ITEMS, { "schema.evolution": "basic" }, async ({ write, failures, sql }) => {
    await write(row({ id: 1, name: "a", qty: 1, code: "abc" }));
    await write(
      row({ id: 2, name: "b", qty: 5_000_000_000, code: "abcdef", color: "red", n: 1.5 }),
      row({ id: 3, name: "c", qty: 2.5 }),
    );
    assertEquals(failures.length, 1);
    assertMatch(
      failures[0].error.message,
      /column "qty" of table "public\.items" is bigint; the value 2\.5 is not an integer.*never narrows/,
    );
    const types = await sql`select column_name as c, data_type as t, character_maximum_length as l
                            from information_schema.columns where table_name = 'items'
                            order by ordinal_position`;
    assertEquals(types.map((r) => [r.c, r.t, r.l]), [
      ["id", "integer", null],
      ["name", "text", null],
      ["qty", "bigint", null],
      ["code", "character varying", 6],
      ["deleted_at", "timestamp with time zone", null],
      ["color", "text", null],
      ["n", "numeric", null],
    ]);
    const [stored] = await sql`select qty::text, color, n::text from items where id = 2`;
    assertEquals([stored.qty, stored.color, stored.n], ["5000000000", "red", "1.5"]);
  });
});

Deno.test("auto.create makes a missing table from the first record, keyed by the record key", async () => {
  const db = await createTestDatabase("pg_sink_create");
  const config = postgresSink.config.parse({
    "connection.url": db.url,
    table: "public.made",
    "auto.create": "true",
    "write.timestamp.column": "synced_at",
  });
  const sink = await postgresSink.create(config, {
    pipeline: "auto-create",
    logger: getLogger(["sluice", "test"]),
    signal: new AbortController().signal,
    sourceMode: "stream",
  });
  const sql = postgres(db.url, { max: 1, onnotice: () => {} });
  try {
    const event = change("c", { id: 7, name: "x", qty: 3, ok: true, doc: { a: 1 } }, 42);
    await sink.write({ records: [event], reject: (f) => Promise.reject(f[0].error) });
    const columns = await sql`select column_name as c, format_type(atttypid, atttypmod) as t
      from information_schema.columns join pg_attribute on attrelid = 'public.made'::regclass
        and attname = column_name
      where table_name = 'made' order by ordinal_position`;
    assertEquals(columns.map((r) => `${r.c} ${r.t}`), [
      "id numeric",
      "name text",
      "qty numeric",
      "ok boolean",
      "doc jsonb",
      "deleted_at timestamp with time zone",
      "synced_at timestamp with time zone",
      "_source_lsn pg_lsn",
    ]);
    const [made] = await sql`select name, doc, _source_lsn::text as lsn, synced_at is not null as s
                             from made where id = 7`;
    assertEquals([made.name, made.doc, made.lsn, made.s], ["x", { a: 1 }, "0/2A", true]);
  } finally {
    await sink.close();
    await sql.end();
    await db.drop();
  }
});

Deno.test("the key checksum matches for keys whose text PostgreSQL spells its own way", async () => {
  // Each key type's text in PostgreSQL differs from the value's text in
  // JavaScript: `true`, `10.0.0.1/32`, `{1,2}`, `ab` without its padding.
  const ddl = `create table public.items (flag boolean, host inet, ids int[], code char(4),
                 name text, primary key (flag, host, ids, code))`;
  await withSink(ddl, {}, async ({ write, failures, sql, validate }) => {
    const keyed = (n: number, name: string): SluiceRecord => {
      const key = { flag: n % 2 === 0, host: `10.0.0.${n}`, ids: [n, n + 1], code: "ab" };
      return { topic: "t", key, value: { ...key, name } };
    };
    await write(keyed(1, "bulk"), keyed(2, "bulk")); // first load: COPY
    await write(keyed(1, "merged"), keyed(3, "merged")); // merge
    assertEquals(failures, []);
    assertEquals((await sql`select count(*)::int as n from items`)[0].n, 3);
    const checks = await validate();
    const checksum = checks.find((check) => /checksum/.test(check.detail ?? ""));
    assert(checksum?.ok, JSON.stringify(checks));
  });
});

Deno.test("a generated target column is computed by the table: the record's value is not written to it", async () => {
  const ddl = `create table public.items (id int primary key, qty int,
                 total int generated always as (qty * 2) stored)`;
  await withSink(ddl, {}, async ({ write, failures, sql }) => {
    await write(row({ id: 1, qty: 5, total: 10 })); // first load: COPY
    await write(row({ id: 2, qty: 7, total: 14 }), row({ id: 1, qty: 9, total: 18 })); // merge
    await write(change("c", { id: 3, qty: 1, total: 2 }, 5));
    assertEquals(failures.map((failure) => failure.error.message), []);
    const rows = await sql`select id, total from items order by id`;
    assertEquals(rows.map((r) => [r.id, r.total]), [[1, 18], [2, 14], [3, 2]]);
  });
});
