/**
 * How tests reach the private PostgreSQL and Kafka that `deno task test`
 * starts around them (see dev/with_services.ts).
 *
 * @module
 */
import postgres from "postgres";
import { waitUntil } from "./_wait.ts";

const HOW_TO_RUN = "run the tests through `deno task test` (or " +
  "`deno run -A dev/with_services.ts deno test -A tests/...`), which starts the services";

/** The URL of the test PostgreSQL server (`SLUICE_TEST_PG_URL`). */
export function testPgUrl(): string {
  const url = Deno.env.get("SLUICE_TEST_PG_URL");
  if (!url) throw new Error(`SLUICE_TEST_PG_URL is not set: ${HOW_TO_RUN}.`);
  return url;
}

/** The bootstrap address of the test Kafka broker (`SLUICE_TEST_KAFKA_BROKERS`). */
export function testKafkaBrokers(): string {
  const brokers = Deno.env.get("SLUICE_TEST_KAFKA_BROKERS");
  if (!brokers) throw new Error(`SLUICE_TEST_KAFKA_BROKERS is not set: ${HOW_TO_RUN}.`);
  return brokers;
}

/** A database made for one test; `drop()` removes it. */
export interface TestDatabase {
  url: string;
  name: string;
  /** Ends its sessions, drops its replication slots, then drops it. */
  drop(): Promise<void>;
}

/** An admin connection to the server's default database, ended after `fn`. */
async function withAdmin<T>(fn: (sql: postgres.Sql) => Promise<T>): Promise<T> {
  const sql = postgres(testPgUrl(), { max: 1, onnotice: () => {} });
  try {
    return await fn(sql);
  } finally {
    await sql.end();
  }
}

/**
 * Creates a database with a unique name starting with `prefix` on the test
 * server, so tests can run side by side without seeing each other's tables,
 * publications or slots.
 */
export async function createTestDatabase(prefix: string): Promise<TestDatabase> {
  const clean = prefix.toLowerCase().replace(/[^a-z0-9_]+/g, "_").slice(0, 40);
  const suffix = `${Date.now().toString(36)}_${crypto.randomUUID().slice(0, 8)}`;
  const name = `${clean}_${suffix}`;
  await withAdmin((sql) => sql.unsafe(`CREATE DATABASE "${name}"`));
  const url = new URL(testPgUrl());
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    name,
    drop: () =>
      withAdmin(async (sql) => {
        // DROP DATABASE ... WITH (FORCE) ends ordinary sessions, but refuses
        // while a logical slot lives in the database, and a slot can only be
        // dropped once its walsender is gone. So: end sessions, drop slots,
        // drop the database; retry briefly while walsenders wind down.
        await waitUntil(`database ${name} to be dropped`, async () => {
          await sql`SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                    WHERE datname = ${name} AND pid <> pg_backend_pid()`;
          await sql`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
                    WHERE database = ${name} AND NOT active`;
          await sql.unsafe(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
          return true;
        }, { timeoutMs: 10_000, intervalMs: 100 });
      }),
  };
}
