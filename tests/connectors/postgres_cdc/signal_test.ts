/**
 * Debezium's signal table (`signal.data.collection`): an execute-snapshot
 * row snapshots a table whose rows were never streamed, at that point of
 * the stream, and a restart in the middle of it takes it again; signals
 * Sluice cannot honour exactly are refused and change nothing.
 */
import postgres from "postgres";
import { assert, assertEquals, assertMatch } from "../../_assert.ts";
import { createTestDatabase } from "../../_services.ts";
import { capturingLogs } from "../../_logs.ts";
import { openSource, uniqueSlot, waitForActiveSlot } from "../../_cdc.ts";
import type { ChangeEvent, SluiceRecord } from "../../../api/record.ts";
import postgresCdc from "../../../connectors/postgres_cdc/mod.ts";
import { parseSignal, signalTables } from "../../../connectors/postgres_cdc/_signals.ts";

const event = (record: SluiceRecord) => record.value as ChangeEvent;
const tableOf = (record: SluiceRecord) => event(record).source.table as string;
/** A decimal LSN as PostgreSQL writes it (0/16B3748). */
const lsnText = (decimal: string) => {
  const value = BigInt(decimal);
  return `${(value >> 32n).toString(16).toUpperCase()}/${
    (value & 0xffffffffn).toString(16).toUpperCase()
  }`;
};
const SIGNAL_DDL = `create table public.sig (id text primary key, type text not null, data text)`;

async function fixture(name: string) {
  const db = await createTestDatabase(name);
  const sql = postgres(db.url, { max: 2, onnotice: () => {} });
  await sql.unsafe(`
    create table public.a (id int primary key, note text);
    create table public.b (id int primary key, name text);
    ${SIGNAL_DDL};
    insert into public.b values (1, 'one'), (2, 'two'), (3, 'three'), (4, 'four');`);
  const slot = uniqueSlot("cdc_signal");
  return {
    sql,
    slot,
    config: (extra: Record<string, string> = {}) => ({
      "connection.url": db.url,
      "topic.prefix": "shop",
      "slot.name": slot,
      "publication.name": "signal_pub",
      "snapshot.mode": "never",
      "poll.interval.ms": "10",
      "max.batch.size": "2",
      "signal.data.collection": "public.sig",
      ...extra,
    }),
    async [Symbol.asyncDispose]() {
      await sql`select pg_drop_replication_slot(slot_name) from pg_replication_slots
        where slot_name = ${slot} and not active`;
      await sql.end();
      await db.drop();
    },
  };
}

Deno.test("an execute-snapshot signal snapshots a table at that point of the stream, again after a restart in the middle", async () => {
  await using f = await fixture("cdc_signal_snapshot");
  // Nothing is acknowledged to the slot, as after a crash before the commits.
  const source = await openSource(f.config(), undefined, { commit: false });
  let offsetInSnapshot;
  try {
    await waitForActiveSlot(f.sql, f.slot);
    // The rows of b were written before the slot: streaming alone never sends them.
    await f.sql`insert into public.a values (1, 'before')`;
    await f.sql.begin(async (tx) => {
      await tx`insert into public.sig values ('s1', 'execute-snapshot',
        '{"data-collections": ["public.b"], "type": "blocking"}')`;
      await tx`update public.b set name = 'ONE' where id = 1`;
    });
    await f.sql`insert into public.a values (2, 'after')`;
    const records = await source.readUntil(
      "the insert after the signal",
      (r) => tableOf(r) === "a" && event(r).op === "c" && event(r).after?.id === 2,
    );
    const summary = records.map((r) =>
      event(r).op === "r" ? "b:r" : `${tableOf(r)}:${event(r).op}:${event(r).after?.id}`
    );
    assertEquals(summary, ["a:c:1", "b:r", "b:r", "b:r", "b:r", "sig:c:s1", "b:u:1", "a:c:2"]);
    const snapshot = records.filter((r) => event(r).op === "r");
    // The snapshot reads the table as it is now (its transaction committed
    // long before), and carries the signal transaction's commit LSN, the
    // same as the update streamed after it: a sink's guard never finds that
    // update older.
    const names = snapshot.map((r) => `${event(r).after?.id}:${event(r).after?.name}`);
    assertEquals(names.sort(), ["1:ONE", "2:two", "3:three", "4:four"]);
    const update = records.find((r) => event(r).op === "u")!;
    const commitOf = (r: SluiceRecord) => JSON.parse(event(r).source.sequence as string)[0];
    assertEquals(new Set(snapshot.map(commitOf)), new Set([commitOf(update)]));
    assertEquals(event(snapshot[0]).source.snapshot, "first");
    assertEquals(event(snapshot.at(-1)!).source.snapshot, "last");
    // The snapshot's batches carry the offset of what came before the signal
    // (no change of its transaction delivered yet).
    const signalCommit = commitOf(update);
    const inSnapshot = source.offsets.filter((o) =>
      JSON.stringify(o).includes(`"partial":{"commitLsn":"${lsnText(signalCommit)}"`) &&
      JSON.stringify(o).includes(`"events":0`)
    );
    assert(inSnapshot.length >= 2, JSON.stringify(source.offsets));
    offsetInSnapshot = inSnapshot[1];
  } finally {
    await source.close();
  }

  // A restart from that offset (a crash in the middle of the snapshot) reads
  // the signal again and takes the whole snapshot again.
  const again = await openSource(f.config(), offsetInSnapshot);
  try {
    const records = await again.readUntil(
      "the insert after the signal",
      (r) => tableOf(r) === "a" && event(r).after?.id === 2,
    );
    const ops = records.map((r) => `${tableOf(r)}:${event(r).op}`);
    assertEquals(ops.filter((op) => op === "b:r").length, 4, ops.join(" "));
    assert(!ops.includes("a:c") || ops.indexOf("a:c") === ops.length - 1, ops.join(" "));
  } finally {
    await again.close();
  }
});

Deno.test("changes streamed after a signalled snapshot keep the stream's table shape (old keys, types)", async () => {
  await using f = await fixture("cdc_signal_shape");
  const source = await openSource(f.config());
  try {
    await waitForActiveSlot(f.sql, f.slot);
    await f.sql`insert into public.a values (1, 'one'), (2, 'two')`;
    await source.readUntil("the inserts", (r) => event(r)?.after?.id === 2);
    // The capture lags on purpose: all of this is in the WAL before it reads
    // the signal, so the snapshot sees the table after the ALTER while the
    // changes after the signal were written before it.
    await f.sql`insert into public.sig values ('s2', 'execute-snapshot',
      '{"data-collections": ["public.a"], "type": "blocking"}')`;
    await f.sql`insert into public.a values (3, '42')`;
    await f.sql`delete from public.a where id in (1, 2)`;
    await f.sql`alter table public.a alter column note type int using note::int`;
    await f.sql`insert into public.a values (4, 43)`;
    const records = await source.readUntil(
      "row 4 streamed",
      (r) => event(r)?.op === "c" && event(r).after?.id === 4,
    );
    // The snapshot reads the table as it is when it runs.
    const snapshot = records.filter((r) => event(r)?.op === "r");
    assertEquals(snapshot.map((r) => event(r).after), [{ id: 3, note: 42 }, { id: 4, note: 43 }]);
    const streamed = records.filter((r) =>
      r.value !== null && tableOf(r) === "a" && event(r).op !== "r"
    )
      .map((r) => [event(r).op, event(r).before, event(r).after]);
    assertEquals(streamed, [
      ["c", null, { id: 3, note: "42" }], // written while note was text
      ["d", { id: 1 }, null],
      ["d", { id: 2 }, null],
      ["c", null, { id: 4, note: 43 }],
    ]);
  } finally {
    await source.close();
  }
});

Deno.test("a signal table missing from the publication is named at start", async () => {
  await using f = await fixture("cdc_signal_missing");
  await using logs = await capturingLogs();
  const source = await openSource(f.config({ "signal.data.collection": "public.nosuch" }));
  try {
    await waitForActiveSlot(f.sql, f.slot);
    assertMatch(
      logs.lines.join("\n"),
      /The signal table public\.nosuch \(signal\.data\.collection\) is not in publication signal_pub/,
    );
  } finally {
    await source.close();
  }
});

Deno.test("signals Sluice cannot honour exactly are refused and the stream goes on", async () => {
  await using f = await fixture("cdc_signal_refused");
  await using logs = await capturingLogs();
  const source = await openSource(f.config());
  try {
    await waitForActiveSlot(f.sql, f.slot);
    await f.sql`insert into public.sig values
      ('bad1', 'execute-snapshot', '{"data-collections": ["public.nope"]}'),
      ('bad2', 'execute-snapshot', '{"data-collections": ["public.b"], "additional-conditions": [{"data-collection": "public.b", "filter": "id > 2"}]}'),
      ('bad3', 'pause-snapshot', null),
      ('log1', 'log', '{"message": "hello"}')`;
    await f.sql`insert into public.a values (9, 'marker')`;
    const records = await source.readUntil("the marker", (r) => tableOf(r) === "a");
    assertEquals(records.filter((r) => event(r).op === "r"), []);
    assertEquals(records.filter((r) => tableOf(r) === "sig").length, 4);
    const log = logs.lines.join("\n");
    assertMatch(log, /Signal bad1 refused, nothing done: public\.nope names no captured table/);
    assertMatch(log, /Signal bad2 refused, nothing done: additional-conditions are not supported/);
    assertMatch(
      log,
      /Signal bad3 refused, nothing done: signal type "pause-snapshot" is not supported/,
    );
    assertMatch(log, /Signal log1: hello/);
    assert(!log.includes("is not in publication"), "the signal table is in the publication");
  } finally {
    await source.close();
  }
});

Deno.test("a signalled snapshot that cannot read its table fails loudly and the stream goes on", async () => {
  await using f = await fixture("cdc_signal_denied");
  await using logs = await capturingLogs();
  // A capture user that may stream and read a and sig, but not b.
  const role = `trial_${f.slot}`;
  await f.sql.unsafe(`create role ${role} login replication;
    grant select on public.a, public.sig to ${role};
    create publication signal_pub for table public.a, public.b, public.sig;`);
  const url = new URL(f.config()["connection.url"]);
  url.username = role;
  const source = await openSource(
    f.config({ "connection.url": url.href, "publication.autocreate.mode": "disabled" }),
  );
  try {
    await waitForActiveSlot(f.sql, f.slot);
    await f.sql`insert into public.sig values ('denied', 'execute-snapshot',
      '{"data-collections": ["public.b"]}')`;
    await f.sql`insert into public.a values (7, 'after')`;
    const records = await source.readUntil(
      "the insert after the signal",
      (r) => tableOf(r) === "a",
    );
    assertEquals(records.filter((r) => event(r).op === "r"), []);
    assertMatch(
      logs.lines.join("\n"),
      /Signal denied: the snapshot failed after 0 rows and is abandoned.*permission denied/,
    );
  } finally {
    await source.close();
    await f.sql`select pg_drop_replication_slot(slot_name) from pg_replication_slots
      where slot_name = ${f.slot} and not active`;
    await f.sql.unsafe(
      `drop publication signal_pub; revoke all on public.a, public.sig from ${role};
      drop role ${role}`,
    );
  }
});

Deno.test("signal rows are parsed as Debezium writes them, and their tables matched by name or pattern", () => {
  assertEquals(
    parseSignal({ id: "x", type: "execute-snapshot", data: '{"data-collections": ["public.b"]}' }),
    { kind: "snapshot", id: "x", collections: ["public.b"], type: "incremental" },
  );
  // Other column names: the first three columns, as Debezium reads them.
  assertEquals(
    parseSignal({
      signal_id: "p",
      kind: "execute-snapshot",
      payload: '{"data-collections": ["s.t"], "type": "blocking"}',
    }),
    { kind: "snapshot", id: "p", collections: ["s.t"], type: "blocking" },
  );
  assertEquals(parseSignal({ id: "l", type: "log", data: '{"message": "hi"}' }), {
    kind: "log",
    id: "l",
    message: "hi",
  });
  // Type names in any case, as Debezium reads them.
  assertEquals(
    parseSignal({
      id: "u",
      type: "EXECUTE-SNAPSHOT",
      data: '{"data-collections": ["a.b"], "type": "BLOCKING"}',
    }),
    { kind: "snapshot", id: "u", collections: ["a.b"], type: "blocking" },
  );
  const refused = (row: Record<string, unknown>) => {
    const signal = parseSignal(row);
    assert(signal.kind === "refused", JSON.stringify(signal));
    return signal.reason;
  };
  assertMatch(refused({ id: "1", type: "execute-snapshot", data: "{" }), /not JSON/);
  assertMatch(refused({ id: "2", type: "execute-snapshot", data: "{}" }), /data-collections/);
  assertMatch(
    refused({
      id: "3",
      type: "execute-snapshot",
      data: '{"data-collections": ["a.b"], "type": "x"}',
    }),
    /unknown/,
  );
  assertMatch(refused({ id: "4", type: "stop-snapshot", data: null }), /not supported/);
  assertMatch(refused({ id: "5", type: "log", data: '{"msg": "x"}' }), /needs data \{"message"/);

  const tables = [
    { oid: 1, schema: "public", table: "orders" },
    { oid: 2, schema: "public", table: "order_lines" },
    { oid: 3, schema: "sales", table: "orders" },
  ];
  assertEquals(signalTables(["public.orders"], tables).map((t) => t.oid), [1]);
  assertEquals(signalTables(["public\\.order.*", "sales.orders"], tables).map((t) => t.oid), [
    1,
    2,
    3,
  ]);
  // Names in any case, as the include lists read them; an exact name wins.
  assertEquals(signalTables(["PUBLIC.ORDERS"], tables).map((t) => t.oid), [1]);
  const quoted = (() => {
    try {
      signalTables(['public."orders"'], tables);
    } catch (e) {
      return (e as Error).message;
    }
  })();
  assertMatch(String(quoted), /without quotes/);
  let error: Error | undefined;
  try {
    signalTables(["public.nope", "sales.orders"], tables);
  } catch (e) {
    error = e as Error;
  }
  assertMatch(String(error?.message), /public\.nope names no captured table/);
});

Deno.test("signal.data.collection is checked before anything connects", () => {
  const base = {
    "connection.url": "postgres://u@127.0.0.1:1/db",
    "topic.prefix": "shop",
  };
  const problems = (extra: Record<string, string>) => {
    const result = postgresCdc.config.safeParse({ ...base, ...extra });
    return result.success
      ? []
      : result.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`);
  };
  assertEquals(problems({ "signal.data.collection": "public.sig" }), []);
  assertMatch(problems({ "signal.data.collection": "sig" }).join("\n"), /schema\.table/);
  assertMatch(
    problems({ "signal.data.collection": "public.sig", "table.include.list": "public.a" }).join(
      "\n",
    ),
    /leave out/,
  );
});
