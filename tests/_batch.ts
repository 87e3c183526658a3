/**
 * Helpers for batch-sync tests: a source and a target database with one
 * table each, and pipeline specs built from JSON as users write them.
 *
 * @module
 */
import postgres from "postgres";
import { builtinRegistry } from "../builtins.ts";
import { buildPipelines, parseConnectors, type PipelineSpec } from "../core/config.ts";
import type { Registry } from "../core/registry.ts";
import { createTestDatabase, type TestDatabase } from "./_services.ts";

/** A source and a target database, with clients; dispose to drop both. */
export interface SyncFixture extends AsyncDisposable {
  source: TestDatabase;
  target: TestDatabase;
  sourceSql: postgres.Sql;
  targetSql: postgres.Sql;
}

/** Creates two databases and runs the given DDL in each. */
export async function syncFixture(
  name: string,
  sourceDdl: string,
  targetDdl: string,
): Promise<SyncFixture> {
  const source = await createTestDatabase(`${name}_src`);
  const target = await createTestDatabase(`${name}_dst`);
  const sourceSql = postgres(source.url, { max: 2, onnotice: () => {} });
  const targetSql = postgres(target.url, { max: 2, onnotice: () => {} });
  await sourceSql.unsafe(sourceDdl);
  await targetSql.unsafe(targetDdl);
  return {
    source,
    target,
    sourceSql,
    targetSql,
    async [Symbol.asyncDispose]() {
      await sourceSql.end();
      await targetSql.end();
      await source.drop();
      await target.drop();
    },
  };
}

/** Builds pipeline specs from connector JSON with the built-in plugins (and extra ones). */
export function specsFrom(
  json: unknown,
  registry: Registry = builtinRegistry(),
): Promise<PipelineSpec[]> {
  return buildPipelines(parseConnectors(json), { registry });
}

/** md5 over a table's rows in key order, for comparing contents. */
export async function tableDigest(sql: postgres.Sql, query: string): Promise<string> {
  const rows = await sql.unsafe<{ digest: string | null }[]>(
    `select md5(string_agg(t::text, '|')) as digest from (${query}) t`,
  );
  return rows[0].digest ?? "empty";
}
