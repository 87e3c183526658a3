import postgres from "postgres";
import { getLogger } from "@logtape/logtape";
import { assertEquals } from "../../_assert.ts";
import { RetriableError } from "../../../api/errors.ts";
import type { SluiceRecord } from "../../../api/record.ts";
import { restartPostgres, startPostgres } from "../../../dev/postgres.ts";
import sinkPlugin from "../../../sinks/postgres/mod.ts";
import { waitUntil } from "../../_wait.ts";

function batch(from: number, count: number) {
  const records: SluiceRecord[] = Array.from({ length: count }, (_, i) => ({
    topic: "t",
    key: { id: from + i },
    value: { id: from + i, v: "x".repeat(40) },
  }));
  return { records, offset: { key: "restart", value: from }, reject: () => Promise.resolve() };
}

Deno.test("the postgres sink recovers when its server restarts in the middle of a COPY", async () => {
  await using server = await startPostgres();
  const admin = postgres(server.url, { max: 1, onnotice: () => {} });
  await admin.unsafe("create table t (id int primary key, v text)");
  const sink = await sinkPlugin.create(
    sinkPlugin.config.parse({ "connection.url": server.url, table: "public.t" }),
    {
      pipeline: "restart",
      logger: getLogger(["sluice", "test"]),
      signal: new AbortController().signal,
    },
  );
  try {
    const inFlight = sink.write(batch(1_000_000, 200_000)).then(() => undefined, (error) => error);
    await waitUntil("the COPY to be running on the server", async () => {
      const running = await admin`select 1 from pg_stat_activity
        where query ilike 'copy%' and state = 'active' and pid <> pg_backend_pid()`;
      return running.length > 0;
    }, { intervalMs: 10 });
    await restartPostgres(server, "immediate");
    const error = await inFlight;
    if (error !== undefined) assertEquals(error instanceof RetriableError, true, String(error));
    // Later batches go through on a fresh connection instead of hanging.
    for (let i = 0; i < 3; i++) assertEquals((await sink.write(batch(i * 100, 100))).written, 100);
    await admin.end();
    const check = postgres(server.url, { max: 1 });
    const [{ n }] = await check`select count(*)::int as n from t where id < 1000`;
    await check.end();
    assertEquals(n, 300);
  } finally {
    await sink.close();
  }
});
