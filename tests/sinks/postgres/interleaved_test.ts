/**
 * Transactions that touch several tables in turn: the postgres sink writes
 * a batch table by table (one staging round trip each) when no foreign key
 * links the batch's tables. When one does, each streak of upserts (or of
 * deletes) is written once per table, parents first (children first for
 * deletes), and a random history that keeps every key must land whole; so
 * must one of a table whose foreign key references itself.
 */
import postgres from "postgres";
import { getLogger } from "@logtape/logtape";
import { assertEquals } from "../../_assert.ts";
import { createTestDatabase } from "../../_services.ts";
import postgresSink from "../../../sinks/postgres/mod.ts";
import type { Sink, SinkResult } from "../../../api/plugin.ts";
import { byDependency, type Run } from "../../../sinks/postgres/_operations.ts";
import { dependencyRanks } from "../../../drivers/pg_foreign_keys.ts";
import type { TargetTable } from "../../../sinks/postgres/_table.ts";
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

Deno.test("a random history of three linked tables lands whole, in any batch size", async () => {
  // applications ← documents ← reviews, each child row pointing at a live
  // parent at every step, ids reused after deletes so that a key is deleted
  // and written again within one batch.
  const ddl = `create table public.applications (id int primary key, status text);
     create table public.documents (id int primary key,
       application int not null references applications, name text);
     create table public.reviews (id int primary key,
       document int not null references documents, verdict text);`;
  const history = linkedHistory(1_200, 1234);
  for (const size of [1_200, 97]) {
    await withSink(ddl, async (write, sql) => {
      for (let i = 0; i < history.records.length; i += size) {
        await write(...history.records.slice(i, i + size));
      }
      for (const [table, rows] of Object.entries(history.final)) {
        const stored = await sql.unsafe(`select * from public.${table} order by id`);
        assertEquals([...stored], rows, `${table}, batches of ${size}`);
      }
    });
  }
});

Deno.test("a random history of a table that references itself lands whole", async () => {
  // A category tree: nodes added, moved to another parent (never under
  // their own subtree), deleted leaves first with their subtree, ids reused.
  const history = treeHistory(1_200, 99);
  for (const size of [1_200, 61]) {
    await withSink(
      `create table public.categories (id int primary key,
         parent int references categories on delete restrict, name text);`,
      async (write, sql) => {
        for (let i = 0; i < history.records.length; i += size) {
          await write(...history.records.slice(i, i + size));
        }
        const stored = await sql`select id, parent, name from categories order by id`;
        assertEquals([...stored], history.final, `batches of ${size}`);
      },
    );
  }
});

Deno.test("byDependency writes a streak once per table, parents first, children first for deletes and truncates", () => {
  const rank = dependencyRanks(["children", "parents"], [{
    child: "children",
    parent: "parents",
  }])!;
  assertEquals([...rank], [["parents", 0], ["children", 1]]);
  const run = (table: string, kind: Run["kind"], id: number): Run => ({
    table: { name: table } as TargetTable,
    kind,
    operations: [{ kind, record: { topic: table, key: { id }, value: null }, row: { id } }],
  });
  const runs: Run[] = [];
  for (let id = 0; id < 50; id++) {
    runs.push(run("parents", "upsert", id), run("children", "upsert", id));
  }
  for (let id = 0; id < 50; id++) {
    runs.push(run("parents", "delete", id), run("children", "delete", id));
  }
  runs.push(run("parents", "truncate", 0), run("children", "upsert", 99));
  // A TRUNCATE … CASCADE at the source names the tables in any order.
  runs.push(run("parents", "truncate", 0), run("children", "truncate", 0));
  const regrouped = byDependency(runs, rank);
  assertEquals(
    regrouped.map((run) => [run.table.name, run.kind, run.operations.map((op) => op.row.id)]),
    [
      ["parents", "upsert", [...Array(50).keys()]],
      ["children", "upsert", [...Array(50).keys()]],
      ["children", "delete", [...Array(50).keys()]],
      ["parents", "delete", [...Array(50).keys()]],
      ["parents", "truncate", [0]],
      ["children", "upsert", [99]],
      ["children", "truncate", [0]],
      ["parents", "truncate", [0]],
    ],
  );
  assertEquals(
    dependencyRanks(["a", "b"], [{ child: "a", parent: "b" }, { child: "b", parent: "a" }]),
    undefined,
  );
});

/**
 * `steps` random changes to applications ← documents ← reviews that keep
 * every foreign key at each step, as change events, and the rows left.
 */
function linkedHistory(steps: number, seed: number) {
  let state = seed;
  const random = (n: number) => {
    state = (state * 1_103_515_245 + 12_345) % 2_147_483_648;
    return Math.floor((state / 2_147_483_648) * n);
  };
  const tables = {
    applications: new Map<number, Row>(),
    documents: new Map<number, Row>(),
    reviews: new Map<number, Row>(),
  };
  type Name = keyof typeof tables;
  const records: SluiceRecord[] = [];
  let lsn = 1_000;
  const put = (table: Name, row: Row) => {
    records.push(change(tables[table].has(row.id as number) ? "u" : "c", table, row, lsn++));
    tables[table].set(row.id as number, row);
  };
  const remove = (table: Name, id: number) => {
    records.push(change("d", table, tables[table].get(id)!, lsn++));
    tables[table].delete(id);
  };
  const children = (table: Name, column: string, parent: number) =>
    [...tables[table].values()].filter((row) => row[column] === parent).map((row) =>
      row.id as number
    );
  const dropDocument = (id: number) => {
    for (const review of children("reviews", "document", id)) remove("reviews", review);
    remove("documents", id);
  };
  const pick = (table: Name) => {
    const ids = [...tables[table].keys()];
    return ids.length === 0 ? undefined : ids[random(ids.length)];
  };
  for (let step = 0; step < steps; step++) {
    const roll = random(10);
    const application = pick("applications"), document = pick("documents");
    if (roll < 3 || application === undefined) {
      put("applications", { id: random(60), status: ["new", "open", "approved"][random(3)] });
    } else if (roll === 3) {
      for (const id of children("documents", "application", application)) dropDocument(id);
      remove("applications", application);
    } else if (roll < 6 || document === undefined) {
      put("documents", { id: random(150), application, name: `doc ${step}` });
    } else if (roll === 6) {
      dropDocument(document);
    } else if (roll < 9) {
      put("reviews", { id: random(300), document, verdict: `verdict ${step}` });
    } else {
      const review = pick("reviews");
      if (review !== undefined) remove("reviews", review);
    }
  }
  const sorted = (rows: Map<number, Row>) =>
    [...rows.values()].sort((a, b) => (a.id as number) - (b.id as number));
  return {
    records,
    final: {
      applications: sorted(tables.applications),
      documents: sorted(tables.documents),
      reviews: sorted(tables.reviews),
    },
  };
}

/** `steps` random changes to a category tree that keep its foreign key at each step. */
function treeHistory(steps: number, seed: number) {
  let state = seed;
  const random = (n: number) => {
    state = (state * 1_103_515_245 + 12_345) % 2_147_483_648;
    return Math.floor((state / 2_147_483_648) * n);
  };
  const nodes = new Map<number, Row>();
  const records: SluiceRecord[] = [];
  let lsn = 1_000;
  const put = (row: Row) => {
    records.push(change(nodes.has(row.id as number) ? "u" : "c", "categories", row, lsn++));
    nodes.set(row.id as number, row);
  };
  const below = (id: number): number[] =>
    [...nodes.values()].filter((row) => row.parent === id).flatMap((row) => [
      ...below(row.id as number),
      row.id as number,
    ]);
  const remove = (id: number) => {
    for (const child of below(id)) {
      records.push(change("d", "categories", nodes.get(child)!, lsn++));
      nodes.delete(child);
    }
    records.push(change("d", "categories", nodes.get(id)!, lsn++));
    nodes.delete(id);
  };
  for (let step = 0; step < steps; step++) {
    const ids = [...nodes.keys()];
    const some = ids.length > 0 ? ids[random(ids.length)] : undefined;
    const roll = random(10);
    if (roll < 4 || some === undefined) {
      const id = random(120);
      if (nodes.has(id)) continue;
      put({ id, parent: some ?? null, name: `new ${step}` });
    } else if (roll < 8) {
      const forbidden = new Set([some, ...below(some)]);
      const parents = ids.filter((id) => !forbidden.has(id));
      const parent = random(4) === 0 || parents.length === 0
        ? null
        : parents[random(parents.length)];
      put({ id: some, parent, name: `moved ${step}` });
    } else {
      remove(some);
    }
  }
  return {
    records,
    final: [...nodes.values()].sort((a, b) => (a.id as number) - (b.id as number)),
  };
}
