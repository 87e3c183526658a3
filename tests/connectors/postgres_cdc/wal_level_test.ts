/**
 * `postgres_cdc` on a server without logical decoding (`wal_level=replica`,
 * PostgreSQL's default): it stops with a sentence saying so, leaves no
 * publication behind, and starts normally once the server is fixed.
 */
import postgres from "postgres";
import { getLogger } from "@logtape/logtape";
import { assertEquals, assertRejects } from "../../_assert.ts";
import type { SourceBatch } from "../../../api/plugin.ts";
import postgresCdc from "../../../connectors/postgres_cdc/mod.ts";
import { restartPostgres, startPostgres } from "../../../dev/postgres.ts";

async function firstBatch(url: string): Promise<SourceBatch | undefined> {
  const config = postgresCdc.config.parse({
    "connection.url": url,
    "topic.prefix": "shop",
    "table.include.list": "public.items",
    "slot.name": "wal_level_test",
  });
  const controller = new AbortController();
  const source = await postgresCdc.create(config, {
    pipeline: "wal-level-test",
    logger: getLogger(["sluice", "test", "cdc"]),
    signal: controller.signal,
    offset: undefined,
    fullRefresh: false,
  });
  try {
    const iterator = source.read()[Symbol.asyncIterator]();
    const next = await iterator.next();
    return next.done ? undefined : next.value;
  } finally {
    controller.abort();
    await source.close();
  }
}

Deno.test("postgres_cdc on wal_level=replica says how to fix it and leaves no publication", async () => {
  await using server = await startPostgres();
  const admin = postgres(server.url, { max: 1, onnotice: () => {} });
  try {
    await admin.unsafe("create table public.items (id int primary key, name text)");
    await admin.unsafe("insert into public.items values (1, 'a')");
    await admin.unsafe("alter system set wal_level = replica");
    await admin.end();
    await restartPostgres(server, "fast");
    const sql = postgres(server.url, { max: 1, onnotice: () => {} });
    try {
      await assertRejects(
        () => firstBatch(server.url),
        Error,
        `the server's wal_level is "replica"; logical decoding needs wal_level = logical`,
      );
      assertEquals([...await sql`select pubname from pg_publication`], []);
      assertEquals([...await sql`select slot_name from pg_replication_slots`], []);
      await sql.unsafe("alter system set wal_level = logical");
    } finally {
      await sql.end();
    }
    await restartPostgres(server, "fast");
    const batch = await firstBatch(server.url);
    assertEquals(batch?.records.map((r) => r.key), [{ id: 1 }]);
  } finally {
    await admin.end();
  }
});
