/**
 * The PostgreSQL job coordinator against the real server: a lock held by
 * one worker skips the others, a recorded tick never runs twice, and
 * successes are seen group-wide (a killed holder: tests/e2e/cluster_test.ts).
 */
import { assertEquals } from "../_assert.ts";
import { createTestDatabase } from "../_services.ts";
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
