/**
 * Every built-in source (and the user-written example source of the
 * fixtures) runs the source contract against its real service. A new source
 * gets it by adding one harness to the table (the last test fails until it
 * has one).
 */
import postgres from "postgres";
import kafkaSource from "../../connectors/kafka.ts";
import { sources } from "../../connectors/mod.ts";
import postgresCdc from "../../connectors/postgres_cdc/mod.ts";
import postgresQuery from "../../connectors/postgres_query.ts";
import numbersSource from "../fixtures/numbers_source.ts";
import { assertEquals } from "../_assert.ts";
import { createTestDatabase, testKafkaBrokers } from "../_services.ts";
import { uniqueSlot } from "../_cdc.ts";
import { waitUntil } from "../_wait.ts";
import { bytes, createTopic, produce, uniqueName } from "../_kafka.ts";
import { sourceContract, type SourceEnv, type SourceHarness } from "./source_contract.ts";

const ITEMS = `create table public.items (
  id int primary key, name text, updated_at timestamptz not null default clock_timestamp())`;

/** A database with the items table holding `ids`; `config` gets its URL. */
async function itemsDatabase(
  prefix: string,
  ids: readonly number[],
  config: (url: string) => Record<string, string>,
  everyKind: (sql: postgres.Sql) => Promise<void> = async () => {},
): Promise<SourceEnv & { sql: postgres.Sql }> {
  const db = await createTestDatabase(prefix);
  const sql = postgres(db.url, { max: 2, onnotice: () => {} });
  await sql.unsafe(ITEMS);
  const insert = async (ids: readonly number[]) => {
    // One transaction per row, each with a later updated_at.
    for (const id of ids) await sql`insert into items (id, name) values (${id}, ${"n" + id})`;
  };
  await insert(ids);
  return {
    sql,
    config: config(db.url),
    insert,
    everyKind: () => everyKind(sql),
    async [Symbol.asyncDispose]() {
      await sql.end();
      await db.drop();
    },
  };
}

const postgresQueryHarness: SourceHarness = {
  plugin: postgresQuery,
  kinds: ["row"],
  redelivers: "late-commit protection: the next run reads again the rows written by " +
    "transactions still running anywhere on the server at the previous run's snapshot (xmin)",
  setup: (ids) =>
    itemsDatabase("contract_query", ids, (url) => ({
      "connection.url": url,
      table: "public.items",
      mode: "incremental",
      "chunk.size": "2",
    })),
};

const postgresCdcHarness: SourceHarness = {
  plugin: postgresCdc,
  kinds: ["r", "c", "u", "d", "tombstone", "t"],
  snapshots: true,
  async setup(ids) {
    const slot = uniqueSlot("contract");
    const env = await itemsDatabase("contract_cdc", ids, (url) => ({
      "connection.url": url,
      "topic.prefix": "contract",
      "slot.name": slot,
      "publication.name": "contract_pub",
      "snapshot.mode": "initial",
      "max.batch.size": "2",
    }), async (sql) => {
      await sql`insert into items (id, name) values (901, 'created')`;
      await sql`update items set name = 'updated' where id = 901`;
      await sql`delete from items where id = 901`;
      await sql`truncate items`;
    });
    return Object.assign(env, { slot });
  },
  // Changes made once the slot exists are captured, whether it streams yet or
  // is still snapshotting.
  async ready(env) {
    const { sql, slot } = env as SourceEnv & { sql: postgres.Sql; slot: string };
    await waitUntil(
      `slot ${slot} to exist`,
      async () =>
        (await sql`select 1 from pg_replication_slots where slot_name = ${slot}`).length > 0,
    );
  },
};

/** A Debezium change event as JSON bytes. */
function envelope(op: string, before: unknown, after: unknown) {
  const source = { connector: "postgresql", db: "d", schema: "public", table: "items", lsn: 1 };
  return bytes(JSON.stringify({ before, after, source, op, ts_ms: 1_700_000_000_000 }));
}

const kafkaHarness: SourceHarness = {
  plugin: kafkaSource,
  kinds: ["row", "r", "c", "u", "d", "tombstone", "t"],
  async setup(ids) {
    const topic = uniqueName("contract-source");
    await createTopic(topic, 1);
    const key = (id: number) => bytes(JSON.stringify({ id }));
    const insert = (ids: readonly number[]) =>
      produce(ids.map((id) => ({
        topic,
        key: key(id),
        value: bytes(JSON.stringify({ id, name: `n${id}` })),
      })));
    if (ids.length > 0) await insert(ids);
    return {
      config: {
        "bootstrap.servers": testKafkaBrokers(),
        topics: topic,
        "group.id": uniqueName("contract-group"),
        "max.poll.records": "2",
        "fetch.max.wait.ms": "100",
      },
      insert,
      everyKind: () =>
        produce([
          { topic, key: key(900), value: envelope("r", null, { id: 900 }) },
          { topic, key: key(901), value: envelope("c", null, { id: 901 }) },
          { topic, key: key(901), value: envelope("u", null, { id: 901, name: "x" }) },
          { topic, key: key(901), value: envelope("d", { id: 901 }, null) },
          { topic, key: key(901), value: null },
          { topic, key: null, value: envelope("t", null, null) },
        ]),
      async [Symbol.asyncDispose]() {},
    };
  },
};

const numbersHarness: SourceHarness = {
  plugin: numbersSource,
  kinds: ["row"],
  setup: () =>
    Promise.resolve({
      config: { count: "9", "chunk.size": "2" },
      insert: async () => {}, // it always emits 1 to count
      everyKind: async () => {},
      async [Symbol.asyncDispose]() {},
    }),
};

const TABLE: SourceHarness[] = [
  postgresQueryHarness,
  postgresCdcHarness,
  kafkaHarness,
  numbersHarness,
];

for (const harness of TABLE) sourceContract(harness);

Deno.test("every built-in source is in the contract table", () => {
  const covered = TABLE.map((harness) => harness.plugin.name).filter((name) => name !== "numbers");
  assertEquals(covered.sort(), sources.map((plugin) => plugin.name).sort());
});
