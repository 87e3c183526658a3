/**
 * Writes staged rows set-based and, when the database rejects the set,
 * finds the rejected rows in one round trip: a PL/pgSQL function walks the
 * staged rows with one subtransaction (`BEGIN … EXCEPTION`) per row and
 * answers the rejected row numbers with their SQLSTATE and message.
 *
 * Bisection under savepoints took one round trip (and one failed statement)
 * per level per bad row: with 10% bad rows that is thousands of round trips
 * per batch.
 *
 * @module
 */
import { createHash } from "node:crypto";
import type { Queryable, TargetTable } from "./_table.ts";
import type { MergeCount } from "./_table.ts";
import { isConnectionError } from "../../drivers/postgres.ts";

/** A staged row the database refused. */
export interface RejectedRow {
  /** 1-based row number in the staging table. */
  readonly row: number;
  readonly sqlstate: string;
  readonly message: string;
}

/** What writing a range of staged rows did. */
export interface StagedWrite extends MergeCount {
  readonly rejected: readonly RejectedRow[];
}

/** Something that can run a function under a savepoint (a transaction). */
export interface Savepoints extends Queryable {
  savepoint<T>(fn: (sql: Queryable) => Promise<T>): Promise<T>;
}

/**
 * Upserts or deletes staged rows `1..count`: first as one statement under a
 * savepoint; if the database refuses it, row by row on the server.
 */
export async function writeStaged(
  tx: Savepoints,
  table: TargetTable,
  kind: "upsert" | "delete",
  columns: readonly string[],
  count: number,
): Promise<StagedWrite> {
  try {
    const result = await tx.savepoint((sp) =>
      kind === "delete" ? table.delete(sp, 1, count, columns) : table.merge(sp, columns, 1, count)
    );
    return { ...result, rejected: [] };
  } catch (error) {
    if (isConnectionError(error)) throw error;
  }
  return await isolateRows(tx, table, kind, columns, count);
}

interface IsolationRow {
  sluice_row: number;
  sluice_state: string | null;
  sluice_message: string | null;
  sluice_count: number | null;
  sluice_checksum: string | null;
}

/** Writes staged rows one by one, each in its own subtransaction, on the server. */
async function isolateRows(
  sql: Queryable,
  table: TargetTable,
  kind: "upsert" | "delete",
  columns: readonly string[],
  count: number,
): Promise<StagedWrite> {
  const name = await ensureFunction(sql, table, kind, columns);
  const rows = await sql.unsafe<IsolationRow[]>(`select * from ${name}($1, $2)`, [1, count]);
  const rejected: RejectedRow[] = [];
  let written = 0;
  let checksum = 0n;
  for (const row of rows) {
    if (row.sluice_row === 0) {
      written = row.sluice_count ?? 0;
      checksum = BigInt(row.sluice_checksum ?? "0");
    } else {
      rejected.push({
        row: row.sluice_row,
        sqlstate: row.sluice_state ?? "",
        message: row.sluice_message ?? "",
      });
    }
  }
  return { count: written, checksum, rejected };
}

/**
 * Creates (in the session's pg_temp schema, so nothing is left behind) the function that
 * applies staged rows `first..last` one at a time. It returns one row per
 * rejected staged row, then a row numbered 0 with the count and key
 * checksum of what it wrote.
 */
async function ensureFunction(
  sql: Queryable,
  table: TargetTable,
  kind: "upsert" | "delete",
  columns: readonly string[],
): Promise<string> {
  const staging = table.stagingName(columns);
  const statement = table.writeStatement(kind, columns, { alias: "staged", where: "true" });
  const hash = createHash("sha1").update(`${staging}\u0000${statement}`).digest("hex");
  const name = `pg_temp.sluice_isolate_${hash.slice(0, 16)}`;
  // Session-scoped: the function lives as long as the connection (pg_temp).
  await sql.unsafe(
    `create or replace function ${name}(int, int)
       returns table (sluice_row int, sluice_state text, sluice_message text,
                      sluice_count int, sluice_checksum text)
       language plpgsql as $sluice$
     #variable_conflict use_column
     declare
       staged ${staging}%rowtype;
       total int := 0;
       total_sum numeric := 0;
       one_n int;
       one_s text;
     begin
       for staged in select * from ${staging} t where t.__row between $1 and $2
                     order by t.__row loop
         begin
           ${statement} into one_n, one_s;
           total := total + one_n;
           total_sum := total_sum + one_s::numeric;
         exception when others then
           sluice_row := staged.__row; sluice_state := sqlstate; sluice_message := sqlerrm;
           sluice_count := null; sluice_checksum := null;
           return next;
         end;
       end loop;
       sluice_row := 0; sluice_state := null; sluice_message := null;
       sluice_count := total; sluice_checksum := total_sum::text;
       return next;
     end
     $sluice$`,
  );
  return name;
}
