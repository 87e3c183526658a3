/**
 * Whether a source table still holds the rows that replayed records are
 * about, looked up by key: a replay must not bring back a row the source
 * deleted (or truncated) after the record was dead-lettered.
 *
 * @module
 */
import type { Row } from "../api/record.ts";
import { connect, isConnectionError, quoteIdent } from "../drivers/postgres.ts";

/** One row to look for: its table and its key columns' values. */
export interface RowLookup {
  readonly schema: string;
  readonly table: string;
  readonly key: Row;
}

/** Text for a key value: the server casts it to the column's type (parameters are untyped). */
function keyText(value: unknown): string | null {
  if (value === null || value === undefined) return null;
  if (value instanceof Date) return value.toISOString();
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

/**
 * For each lookup, whether its row exists; undefined for no lookup, or one
 * the database cannot answer (a key column renamed since, no privilege).
 * A table that no longer exists holds no rows: false. One query per table
 * and set of key columns.
 */
export async function rowsExist(
  url: string,
  lookups: readonly (RowLookup | undefined)[],
  applicationName: string,
): Promise<(boolean | undefined)[]> {
  const found: (boolean | undefined)[] = lookups.map(() => undefined);
  const groups = new Map<string, { lookup: RowLookup; columns: string[]; indexes: number[] }>();
  for (const [index, lookup] of lookups.entries()) {
    const columns = lookup ? Object.keys(lookup.key).sort() : [];
    if (!lookup || columns.length === 0) continue;
    const id = JSON.stringify([lookup.schema, lookup.table, columns]);
    const group = groups.get(id) ?? { lookup, columns, indexes: [] };
    group.indexes.push(index);
    groups.set(id, group);
  }
  if (groups.size === 0) return found;
  await using sql = connect(url, { max: 1, applicationName });
  for (const { lookup, columns, indexes } of groups.values()) {
    try {
      const present = await presentKeys(sql, lookup, columns, indexes.map((i) => lookups[i]!.key));
      indexes.forEach((index, n) => found[index] = present.has(n));
    } catch (error) {
      if (isConnectionError(error)) throw error;
      // The table is gone: it holds none of them. Anything else: cannot tell.
      if ((error as { code?: string }).code === "42P01") {
        for (const i of indexes) found[i] = false;
      }
    }
  }
  return found;
}

/** The positions (0-based) in `keys` of the keys that `lookup`'s table holds. */
async function presentKeys(
  sql: ReturnType<typeof connect>,
  lookup: RowLookup,
  columns: readonly string[],
  keys: readonly Row[],
): Promise<Set<number>> {
  const table = `${quoteIdent(lookup.schema)}.${quoteIdent(lookup.table)}`;
  const types = await sql<{ name: string; type: string }[]>`
    select attname as name, format_type(atttypid, atttypmod) as type from pg_attribute
    where attrelid = ${table}::regclass and attname = any(${columns as string[]})
      and attnum > 0 and not attisdropped`;
  const typeOf = new Map(types.map((row) => [row.name, row.type]));
  const missing = columns.filter((column) => !typeOf.has(column));
  if (missing.length > 0) throw new Error(`no column ${missing.join(", ")} in ${table}`);
  const unnested = columns.map((_, i) => `$${i + 1}::text[]`).join(", ");
  const names = columns.map((_, i) => `k${i}`).join(", ");
  const match = columns.map((column, i) =>
    `t.${quoteIdent(column)} = u.k${i}::${typeOf.get(column)}`
  )
    .join(" and ");
  const rows = await sql.unsafe<{ n: number }[]>(
    `select u.n::int - 1 as n from unnest(${unnested}) with ordinality as u(${names}, n)
     where exists (select 1 from ${table} t where ${match})`,
    columns.map((column) => keys.map((key) => keyText(key[column]))) as never[],
  );
  return new Set(rows.map((row) => row.n));
}
