/**
 * `postgres_cdc` across a crash of the source PostgreSQL: a slot's
 * confirmed position is saved only at checkpoints, so after crash recovery
 * PostgreSQL re-delivers transactions Sluice had already acknowledged. The
 * stored offset makes the source skip them: the sink sees every change once.
 */
import postgres from "postgres";
import { assert, assertEquals } from "../../_assert.ts";
import { specsFrom, tableDigest } from "../../_batch.ts";
import { createTestDatabase } from "../../_services.ts";
import { startStream, uniqueSlot, waitForActiveSlot } from "../../_cdc.ts";
import { waitUntil } from "../../_wait.ts";
import { restartPostgres, startPostgres } from "../../../dev/postgres.ts";
import { isRetriable } from "../../../core/runtime.ts";

Deno.test("postgres_cdc skips transactions a crashed source re-delivers, and loses none", async () => {
  await using server = await startPostgres();
  const admin = postgres(server.url, { max: 1, onnotice: () => {} });
  await admin.unsafe("create database warehouse");
  await admin.end();
  const sourceUrl = server.urlFor("warehouse");
  const target = await createTestDatabase("cdc_crash_dst");
  let source = postgres(sourceUrl, { max: 1, onnotice: () => {} });
  const sink = postgres(target.url, { max: 1, onnotice: () => {} });
  try {
    await source`create table items (id int primary key, n int)`;
    await sink`create table items (id int primary key, n int, deleted_at timestamptz,
                                   _source_lsn pg_lsn)`;
    const slot = uniqueSlot("crash");
    const [spec] = await specsFrom({
      name: "crash",
      config: {
        "connector.class": "postgres_cdc",
        "connection.url": sourceUrl,
        "topic.prefix": "wh",
        "slot.name": slot,
        "snapshot.mode": "never",
        "poll.interval.ms": "10",
        "max.batch.size": "25",
        "sink.class": "postgres",
        "sink.connection.url": target.url,
        "sink.table": "public.items",
      },
    });
    const insert = (from: number, to: number) =>
      source.unsafe(`do $$ begin for g in ${from}..${to} loop
                       insert into items values (g, g); commit;
                     end loop; end $$`);
    const count = async () => (await sink`select count(*)::int as n from items`)[0].n;

    const first = startStream(spec);
    await waitForActiveSlot(source, slot);
    await insert(1, 100);
    await waitUntil("the first 100 rows", async () => (await count()) === 100);

    await source.end();
    // Crash recovery, no shutdown checkpoint: the slot's confirmed position
    // goes back (seen: 0/1949608 before, 0/19450B8 after).
    await restartPostgres(server, "immediate");
    const report = await first.done;
    assertEquals(report.status, "failed");
    assert(isRetriable(report.error), `retriable: ${report.error?.message}`);
    source = postgres(sourceUrl, { max: 1, onnotice: () => {} });

    await insert(101, 150);
    const second = startStream(spec);
    try {
      await waitUntil("all 150 rows", async () => (await count()) === 150);
    } finally {
      const report2 = await second.stop();
      assertEquals(report2.status, "stopped", report2.error?.message);
      assertEquals(report2.stats.read, 50, "re-delivered transactions are skipped");
    }
    const digest = "select id, n from items order by id";
    assertEquals(await tableDigest(sink, digest), await tableDigest(source, digest));
  } finally {
    await source.end();
    await sink.end();
    await target.drop();
  }
});
