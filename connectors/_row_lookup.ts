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
 * A table that no longer exists holds no rows: false.
 */
export async function rowsExist(
  url: string,
  lookups: readonly (RowLookup | undefined)[],
  applicationName: string,
): Promise<(boolean | undefined)[]> {
  const found: (boolean | undefined)[] = lookups.map(() => undefined);
  if (lookups.every((lookup) => lookup === undefined)) return found;
  await using sql = connect(url, { max: 1, applicationName });
  for (const [index, lookup] of lookups.entries()) {
    const columns = lookup ? Object.keys(lookup.key) : [];
    if (!lookup || columns.length === 0) continue;
    const where = columns.map((column, i) => `${quoteIdent(column)} = $${i + 1}`).join(" and ");
    try {
      const [row] = await sql.unsafe(
        `select exists (select 1 from ${quoteIdent(lookup.schema)}.${
          quoteIdent(lookup.table)
        } where ${where}) as found`,
        columns.map((column) => keyText(lookup.key[column])) as never[],
      );
      found[index] = row.found === true;
    } catch (error) {
      if (isConnectionError(error)) throw error;
      if ((error as { code?: string }).code === "42P01") found[index] = false;
    }
  }
  return found;
}
