/**
 * Transactions that touch several tables in turn: the postgres sink writes
 * a batch table by table (one staging round trip each) when no foreign key
 * links the batch's tables, and keeps the records' order across tables when
 * one does.
 */
import postgres from "postgres";
import { getLogger } from "@logtape/logtape";
import { assertEquals } from "../../_assert.ts";
import { createTestDatabase } from "../../_services.ts";
import postgresSink from "../../../sinks/postgres/mod.ts";
import type { Sink, SinkResult } from "../../../api/plugin.ts";
import type { ChangeOp, Row, SluiceRecord } from "../../../api/record.ts";
import { changeEvent } from "./_events.ts";

/** A change event of `public.<table>` at commit LSN `commit`, on topic `public.<table>`. */
const change = (op: ChangeOp, table: string, row: Row, commit: number) =>
  changeEvent(op, row, commit, { table, topic: `public.${table}` });

async function withSink(
  ddl: string,
  fn: (
    write: (...records: SluiceRecord[]) => Promise<SinkResult>,
    sql: postgres.Sql,
  ) => Promise<void>,
) {
  const db = await createTestDatabase("interleaved_sink");
  const sql = postgres(db.url, { max: 1, onnotice: () => {} });
  let sink: Sink | undefined;
  try {
    await sql.unsafe(ddl);
    const config = postgresSink.config.parse({
      "connection.url": db.url,
      "table.name.format": "${topic}",
      "delete.mode": "hard",
    });
    sink = await postgresSink.create(config, {
      pipeline: "interleaved-sink-test",
      logger: getLogger(["sluice", "test"]),
      signal: new AbortController().signal,
    });
    const write = (...records: SluiceRecord[]) =>
      sink!.write({ records, reject: (failures) => Promise.reject(failures[0].error) });
    await fn(write, sql);
  } finally {
    await sink?.close();
    await sql.end();
    await db.drop();
  }
}

Deno.test("records of unlinked tables in turn are written per table, each table's in order", async () => {
  await withSink(
    `create table public.applications (id int primary key, status text);
     create table public.documents (id int primary key, name text);`,
    async (write, sql) => {
      const records: SluiceRecord[] = [];
      let lsn = 100;
      for (let id = 1; id <= 300; id++) {
        records.push(change("c", "applications", { id, status: "new" }, lsn++));
        records.push(change("c", "documents", { id, name: `doc ${id}` }, lsn++));
        if (id % 3 === 0) {
          records.push(change("u", "applications", { id, status: "approved" }, lsn++));
          records.push(change("d", "documents", { id: id - 1, name: `doc ${id - 1}` }, lsn++));
        }
      }
      assertEquals((await write(...records)).written, records.length);
      const [apps] = await sql`select count(*)::int as n,
        count(*) filter (where status = 'approved')::int as approved from applications`;
      assertEquals(apps, { n: 300, approved: 100 });
      const [docs] = await sql`select count(*)::int as n from documents`;
      assertEquals(docs.n, 200);
    },
  );
});

Deno.test("records of tables a foreign key links keep their order across tables", async () => {
  await withSink(
    `create table public.parents (id int primary key, name text);
     create table public.children (id int primary key, parent int not null references parents);
     insert into parents values (0, 'old');
     insert into children values (0, 0);`,
    async (write, sql) => {
      // Grouped by table, the parents' writes would go first and the delete
      // of parent 0 would find child 0 still referencing it.
      const result = await write(
        change("c", "parents", { id: 1, name: "new" }, 100),
        change("c", "children", { id: 1, parent: 1 }, 101),
        change("d", "children", { id: 0, parent: 0 }, 102),
        change("d", "parents", { id: 0, name: "old" }, 103),
      );
      assertEquals(result.written, 4);
      assertEquals([...await sql`select id, parent from children`], [{ id: 1, parent: 1 }]);
      assertEquals([...await sql`select id, name from parents`], [{ id: 1, name: "new" }]);
    },
  );
});
