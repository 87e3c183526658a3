/**
 * The PostgreSQL job coordinator against the real server: a lock held by
 * one worker skips the others, a recorded tick never runs twice, and
 * successes are seen group-wide (a killed holder: tests/e2e/cluster_test.ts).
 */
import postgres from "postgres";
import { assertEquals } from "../_assert.ts";
import { createTestDatabase } from "../_services.ts";
import { waitUntil } from "../_wait.ts";
import { PgJobCoordinator, PgOffsetStore } from "../../drivers/pg_cluster.ts";

Deno.test("job claims: one holder at a time, each tick once, successes seen by every worker", async () => {
  const db = await createTestDatabase("pg_cluster");
  const a = new PgJobCoordinator(db.url, "worker-a");
  const b = new PgJobCoordinator(db.url, "worker-b");
  try {
    const tick = "2026-11-30T02:00:00.000Z";
    const first = await a.claim("sync", tick);
    if (!("lease" in first)) throw new Error(`worker-a was refused: ${first.skipped}`);
    assertEquals(await b.claim("sync", tick), { skipped: "running_elsewhere", holder: "worker-a" });
    await first.lease.finish("succeeded");
    // The first finished before the second tried: the recorded tick still stops it.
    assertEquals(await b.claim("sync", tick), { skipped: "already_run" });
    const next = await b.claim("sync", "2026-11-30T03:00:00.000Z");
    if (!("lease" in next)) throw new Error(`the next tick was refused: ${next.skipped}`);
    await next.lease.finish("failed");
    const last = await a.lastSuccess(["sync", "other"]);
    assertEquals([...last.keys()], ["sync"]);
    assertEquals((await b.lastRun("sync"))?.worker, "worker-b");
    assertEquals((await b.lastRun("sync"))?.status, "failed");
  } finally {
    await a.close();
    await b.close();
    await db.drop();
  }
});

Deno.test("a run whose worker died shows as interrupted, and the next claim records it so", async () => {
  const db = await createTestDatabase("pg_cluster_died");
  const a = new PgJobCoordinator(db.url, "worker-a-with-a-name-long-enough-to-be-cut-by-postgres");
  const b = new PgJobCoordinator(db.url, "worker-b");
  const sql = postgres(db.url, { max: 1, onnotice: () => {} });
  try {
    const claim = await a.claim("sync", "t1");
    if (!("lease" in claim)) throw new Error(`worker-a was refused: ${claim.skipped}`);
    assertEquals((await b.lastRun("sync"))?.status, "running");
    // Worker a dies: its lock session goes away and nobody records how the run ended.
    await sql`select pg_terminate_backend(pid) from pg_stat_activity
                 where application_name like 'sluice-worker worker-a%'`;
    // pg_terminate_backend signals; the backend (and its lock) goes a moment later.
    await waitUntil(
      "the dead worker's run",
      async () => (await b.lastRun("sync"))?.status === "interrupted",
    );
    const next = await b.claim("sync", "t2");
    if (!("lease" in next)) throw new Error(`worker-b was refused: ${next.skipped}`);
    assertEquals(
      [
        ...await sql`select tick, status, finished_at is not null as ended
                   from public.sluice_job_ticks order by tick`,
      ],
      [{ tick: "t1", status: "interrupted", ended: true }, {
        tick: "t2",
        status: "running",
        ended: false,
      }],
    );
    await next.lease.finish("succeeded");
  } finally {
    await a.close().catch(() => {}); // its connections were terminated
    await b.close();
    await sql.end();
    await db.drop();
  }
});

Deno.test("the group's offsets in the cluster database: written by one worker, read by another", async () => {
  const db = await createTestDatabase("pg_offsets");
  const a = new PgOffsetStore(db.url);
  const b = new PgOffsetStore(db.url);
  try {
    assertEquals(await b.read("cdc"), undefined);
    await a.write("cdc", { lsn: "0/16B3748", txId: 745 });
    assertEquals(await b.read("cdc"), { lsn: "0/16B3748", txId: 745 });
    await b.write("cdc", { lsn: "0/16B4000", txId: 746 });
    assertEquals(await a.read("cdc"), { lsn: "0/16B4000", txId: 746 });
    await a.delete("cdc");
    assertEquals(await b.read("cdc"), undefined);
  } finally {
    await a.close();
    await b.close();
    await db.drop();
  }
});
