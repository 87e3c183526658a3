/**
 * What an operator can do to a postgres_cdc pipeline's offsets (issue 10):
 * an LSN may move forward, never before the replication slot's confirmed
 * position (PostgreSQL keeps no WAL before it); WAL has no time index; a
 * reset forgets the offset; --to-latest moves to the current WAL position.
 */
import postgres from "postgres";
import { assert, assertEquals, assertMatch } from "../../_assert.ts";
import { uniqueSlot } from "../../_cdc.ts";
import { kafkaSpecs } from "../../_kafka.ts";
import { createTestDatabase } from "../../_services.ts";
import { OffsetChangeError } from "../../../api/errors.ts";
import { formatLsn, parseLsn } from "../../../connectors/postgres_cdc/_lsn.ts";
import { changeOffsets, listOffsets } from "../../../core/offset_admin.ts";
import { MemoryOffsetStore } from "../../../core/offsets.ts";

async function refusal(work: Promise<unknown>): Promise<Error> {
  try {
    await work;
  } catch (error) {
    assert(error instanceof OffsetChangeError, String(error));
    return error;
  }
  throw new Error("expected an OffsetChangeError");
}

Deno.test("postgres_cdc offsets: forward only from the slot's confirmed LSN, no timestamps, reset and latest", async () => {
  const db = await createTestDatabase("cdc_offsets");
  const sql = postgres(db.url, { max: 1, onnotice: () => {} });
  const slot = uniqueSlot("cdc_offsets");
  try {
    await sql`create table public.items (id int primary key)`;
    await sql`select pg_create_logical_replication_slot(${slot}, 'pgoutput')`;
    await sql`insert into public.items select generate_series(1, 100)`;
    const [{ lsn }] = await sql`select pg_current_wal_lsn()::text as lsn`;
    await sql`select pg_replication_slot_advance(${slot}, ${lsn}::pg_lsn)`;
    const [{ confirmed }] = await sql`select confirmed_flush_lsn::text as confirmed
      from pg_replication_slots where slot_name = ${slot}`;
    const [spec] = await kafkaSpecs({
      name: "cdc",
      config: {
        "connector.class": "postgres_cdc",
        "connection.url": db.url,
        "topic.prefix": "src",
        "slot.name": slot,
        "table.include.list": "public.items",
        "offset.storage": "file",
      },
    });
    const store = new MemoryOffsetStore();
    const at = (value: string) => ({
      to: "entries" as const,
      entries: [{ partition: { server: "src" }, offset: { lsn: value } }],
    });

    const back = formatLsn(parseLsn(confirmed) - 1n);
    const error = await refusal(changeOffsets(spec, store, at(back)));
    assertMatch(
      error.message,
      new RegExp(`has confirmed ${confirmed}: PostgreSQL keeps no WAL before it`),
    );
    assertEquals(await store.read("cdc"), undefined, "nothing changed");

    const listed = await changeOffsets(spec, store, at(confirmed));
    assertEquals(listed, [{
      partition: { server: "src" },
      offset: { lsn: confirmed, txId: null },
    }]);
    assertEquals(await listOffsets(spec, store), listed);

    const time = await refusal(changeOffsets(spec, store, { to: "timestamp", at: new Date() }));
    assertMatch(time.message, /cannot seek by time/);

    await sql`insert into public.items select generate_series(101, 110)`;
    const [{ now }] = await sql`select pg_current_wal_lsn()::text as now`;
    await changeOffsets(spec, store, { to: "latest" });
    const latest = await store.read("cdc") as { lsn: string };
    assert(parseLsn(latest.lsn) >= parseLsn(now), `${latest.lsn} ≥ ${now}`);

    assertEquals(await changeOffsets(spec, store, { to: "reset" }), []);
    assertEquals(await store.read("cdc"), undefined);

    // Without the slot, no stored position can help: the next start would miss changes anyway.
    await sql`select pg_drop_replication_slot(${slot})`;
    for (const change of [{ to: "latest" as const }, at(confirmed)]) {
      const gone = await refusal(changeOffsets(spec, store, change));
      assertMatch(
        gone.message,
        new RegExp(`Replication slot "${slot}" does not exist: .*Reset with --to-earliest`),
      );
    }
    assertEquals(await store.read("cdc"), undefined);
  } finally {
    await sql`select pg_drop_replication_slot(${slot})`.catch(() => {});
    await sql.end();
    await db.drop();
  }
});
