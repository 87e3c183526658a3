/**
 * Foreign keys as an order of writes: parents before children. A snapshot
 * copies tables in that order, and the postgres sink groups a batch's writes
 * by it, so that a target holding the source's foreign keys takes them.
 *
 * @module
 */
import type { Sql } from "./postgres.ts";

/** A foreign key from one table (the child) to another (the parent). */
export interface Reference {
  readonly child: string;
  readonly parent: string;
}

/**
 * Each table's rank when parents come before children along `references`
 * (a table referencing itself is ignored), or undefined when they form a
 * cycle.
 */
export function dependencyRanks(
  tables: readonly string[],
  references: readonly Reference[],
): Map<string, number> | undefined {
  const parentsLeft = new Map(tables.map((table) => [table, new Set<string>()]));
  for (const { child, parent } of references) {
    if (child !== parent) parentsLeft.get(child)?.add(parent);
  }
  const rank = new Map<string, number>();
  while (rank.size < tables.length) {
    const ready = [...parentsLeft].filter(([table, parents]) =>
      !rank.has(table) && [...parents].every((parent) => rank.has(parent))
    );
    if (ready.length === 0) return undefined;
    for (const [table] of ready) rank.set(table, rank.size);
  }
  return rank;
}

/**
 * `tables` (by oid) with every table after the tables its foreign keys
 * reference, otherwise in their order; as they are when the keys form a
 * cycle.
 */
export async function parentsFirst<T extends { readonly oid: number }>(
  sql: Sql,
  tables: readonly T[],
): Promise<T[]> {
  if (tables.length < 2) return [...tables];
  const oids = tables.map((table) => table.oid);
  const references = await sql<{ child: number; parent: number }[]>`
    select distinct conrelid::int as child, confrelid::int as parent from pg_constraint
    where contype = 'f' and conrelid = any(${oids}::oid[]) and confrelid = any(${oids}::oid[])`;
  const rank = dependencyRanks(
    oids.map(String),
    references.map(({ child, parent }) => ({ child: String(child), parent: String(parent) })),
  );
  if (!rank) return [...tables];
  const order = (table: T) => rank.get(String(table.oid))!;
  return [...tables].sort((a, b) => order(a) - order(b));
}
