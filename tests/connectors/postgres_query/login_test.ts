/**
 * A source whose login the server refuses says which database refused it:
 * a pipeline has two databases, and "role does not exist" alone leaves the
 * user guessing which.
 */
import postgres from "postgres";
import { assertEquals, assertMatch } from "../../_assert.ts";
import { specsFrom } from "../../_batch.ts";
import { uniqueSlot } from "../../_cdc.ts";
import { createTestDatabase } from "../../_services.ts";
import { runPipeline } from "../../../core/pipeline.ts";
import { MemoryOffsetStore } from "../../../core/offsets.ts";

Deno.test("a source login the server refuses names the source database, for jobs and streams", async () => {
  const db = await createTestDatabase("login");
  try {
    const sql = postgres(db.url, { max: 1, onnotice: () => {} });
    await sql`create table public.t (id int primary key)`;
    await sql.end();
    const url = new URL(db.url);
    url.username = "no_such_role";
    const sources = [
      { "connector.class": "postgres_query", table: "public.t" },
      {
        "connector.class": "postgres_cdc",
        "topic.prefix": "x",
        "slot.name": uniqueSlot("login"),
        "sink.delete.mode": "hard",
      },
    ];
    for (const source of sources) {
      const [spec] = await specsFrom({
        name: "p",
        config: {
          ...source,
          "connection.url": url.href,
          "sink.class": "postgres",
          "sink.connection.url": db.url,
          "sink.table": "public.t",
          "errors.retry.timeout": "0",
        },
      });
      const report = await runPipeline(spec, { offsets: new MemoryOffsetStore() });
      assertEquals(report.status, "failed");
      const where = `${url.hostname}:${url.port}${url.pathname}`;
      assertMatch(
        report.error!.message,
        new RegExp(`^Cannot connect to the source database ${where}: role "no_such_role"`),
      );
    }
  } finally {
    await db.drop();
  }
});
