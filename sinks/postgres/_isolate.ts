/**
 * Writes staged rows set-based and, when the database rejects the set,
 * finds the rejected rows in one round trip: a PL/pgSQL function walks the
 * staged rows set-based, naming the row each failed statement stopped at
 * (see {@linkcode ensureFunction}), and answers the rejected row numbers
 * with their SQLSTATE and message.
 *
 * Bisection under savepoints took one round trip (and one failed statement)
 * per level per bad row: with 10% bad rows, thousands of round trips per
 * batch; one subtransaction per row costs a statement per row.
 *
 * @module
 */
import { createHash } from "node:crypto";
import type { Queryable, TargetTable } from "./_table.ts";
import type { MergeCount } from "./_table.ts";
import { isConnectionError, quoteIdent } from "../../drivers/postgres.ts";

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
 * savepoint; if the database refuses it, row by row on the server. With
 * `keys`, the set-based statement also says which keys it wrote.
 */
export async function writeStaged(
  tx: Savepoints,
  table: TargetTable,
  kind: "upsert" | "delete",
  columns: readonly string[],
  count: number,
  keys = false,
): Promise<StagedWrite> {
  // After a batch with rejected upserts the next one likely has some too: the
  // function's own set-based first try saves a doomed statement and its rollback.
  if (kind === "upsert" && rejecting.has(table)) {
    const result = await isolateRows(tx, table, kind, columns, count);
    if (result.rejected.length === 0) rejecting.delete(table);
    return result;
  }
  try {
    const result = await tx.savepoint((sp) =>
      kind === "delete"
        ? table.delete(sp, 1, count, columns, keys)
        : table.merge(sp, columns, 1, count, keys)
    );
    return { ...result, rejected: [] };
  } catch (error) {
    if (isConnectionError(error)) throw error;
  }
  const result = await isolateRows(tx, table, kind, columns, count);
  if (kind === "upsert" && result.rejected.length > 0) rejecting.add(table);
  return result;
}

/** Tables whose last upsert batch had rejected rows. */
const rejecting = new WeakSet<TargetTable>();

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
  // An upsert's checksum is already over the staged keys the function wrote (its
  // statements return nothing), hashed as the given keys are.
  return { count: written, checksum, rejected, ...(kind === "upsert" ? { given: checksum } : {}) };
}

/**
 * Creates (in the session's pg_temp schema, so nothing is left behind) the
 * function that applies staged rows `$1..$2` and answers one row per
 * rejected staged row, then a row numbered 0 with the count and key
 * checksum of what it wrote.
 *
 * Upserts go set-based from the first unwritten row to the end. Each row
 * sets a temporary sequence to its number as it passes, and sequences
 * ignore rollbacks, so when the statement fails the sequence names the row
 * that failed: it is rejected and the walk goes on after it. The rows the
 * failed statements rolled back then go in with one more statement. That
 * is about one statement per rejected row instead of one per row. When a
 * failure cannot be pinned on a row (an error raised at the end of a
 * statement), those rows are written row by row, each in its own
 * subtransaction, as deletes always are.
 */
async function ensureFunction(
  sql: Queryable,
  table: TargetTable,
  kind: "upsert" | "delete",
  columns: readonly string[],
): Promise<string> {
  const staging = table.stagingName(columns);
  const body = kind === "upsert" ? upsertBody(table, columns) : deleteBody(table, columns);
  const hash = createHash("sha1").update(`${staging}\u0000${body}`).digest("hex");
  const name = `pg_temp.sluice_isolate_${hash.slice(0, 16)}`;
  // Created once per session (and again after a rollback took it away):
  // replacing it would make PL/pgSQL compile it and plan its statements anew.
  const [{ exists }] = await sql.unsafe<{ exists: boolean }[]>(
    "select to_regprocedure($1) is not null as exists",
    [`${name}(int, int)`],
  );
  if (exists) return name;
  await sql.unsafe(
    `create function ${name}(int, int)
       returns table (sluice_row int, sluice_state text, sluice_message text,
                      sluice_count int, sluice_checksum text)
       language plpgsql
       -- Ordered index scans: a statement that fails at row k has read only rows up to k.
       set enable_seqscan = off set enable_bitmapscan = off set enable_sort = off set jit = off
       as $sluice$
     #variable_conflict use_column
     declare
       staged ${staging}%rowtype;
       sluice_lo int;
       sluice_hi int;
       sluice_bad int;
       sluice_from int;
       sluice_to int;
       region_from int;
       region_to int;
       sluice_rejected int[] := '{}';
       rejected_states text[] := '{}';
       rejected_messages text[] := '{}';
       bad_state text;
       bad_message text;
       total int := 0;
       total_sum numeric := 0;
       one_n int;
       one_s text;
     begin
       ${body}
       sluice_row := 0; sluice_state := null; sluice_message := null;
       sluice_count := total; sluice_checksum := total_sum::text;
       return next;
     end
     $sluice$`,
  );
  return name;
}

/** Emits the current row as rejected (inside the function). */
const REJECT = `sluice_rejected := sluice_rejected || sluice_row;
         sluice_count := null; sluice_checksum := null;
         return next;`;

/** Deletes: row by row, each in its own subtransaction. */
function deleteBody(table: TargetTable, columns: readonly string[]): string {
  const oneRow = table.writeStatement("delete", columns, { alias: "staged", where: "true" });
  return `
       for staged in select * from ${table.stagingName(columns)} t
                     where t.__row between $1 and $2 order by t.__row loop
         begin
           ${oneRow} into one_n, one_s;
           total := total + one_n;
           total_sum := total_sum + one_s::numeric;
         exception when others then
           sluice_row := staged.__row; sluice_state := sqlstate; sluice_message := sqlerrm;
           ${REJECT}
         end;
       end loop;`;
}

/**
 * Upserts: the marked walk, then the rows its failed statements rolled back
 * in one statement, then (only where a failure could not be pinned on a
 * row) row by row. Verdicts are kept in arrays and answered at the end, so
 * the walk's can be withdrawn when the rolled-back rows do not go in
 * without them. Statements are counted with ROW_COUNT; the key checksum is
 * taken once at the end over the rows not rejected.
 */
function upsertBody(table: TargetTable, columns: readonly string[]): string {
  const staging = table.stagingName(columns);
  const index = quoteIdent(`${staging.slice(1, -1)}_row`);
  const range = table.bareUpsertStatement(columns, {
    alias: "s",
    // OFFSET 0 keeps the marking filter above the sort, so rows are marked in order.
    table: `(select * from ${staging} t where t.__row between sluice_lo and sluice_hi
              and t.__row <> all(sluice_rejected) order by t.__row offset 0)`,
    where: "setval('pg_temp.sluice_mark', s.__row) is not null",
  });
  const oneRow = table.bareUpsertStatement(columns, { alias: "staged", where: "true" });
  const rowByRow = (from: string, to: string) => `
         for staged in select * from ${staging} t where t.__row between ${from} and ${to}
                       order by t.__row loop
           begin
             ${oneRow};
             get diagnostics one_n = row_count;
             total := total + one_n;
           exception when others then
             sluice_rejected := sluice_rejected || staged.__row;
             rejected_states := rejected_states || sqlstate::text;
             rejected_messages := rejected_messages || sqlerrm;
           end;
         end loop;`;
  return `
       create temporary sequence if not exists sluice_mark minvalue 0;
       create index if not exists ${index} on ${staging} (__row);
       sluice_lo := $1;
       while sluice_lo <= $2 loop
         sluice_hi := $2;
         perform setval('pg_temp.sluice_mark', sluice_lo - 1);
         begin
           ${range};
           get diagnostics one_n = row_count;
           total := total + one_n;
           sluice_lo := $2 + 1;
         exception when others then
           -- setval() also sets currval(), and neither follows a rollback.
           sluice_bad := currval('pg_temp.sluice_mark');
           if sluice_bad < sluice_lo then
             sluice_from := sluice_lo;
             sluice_to := $2;
             sluice_lo := $2 + 1;
           else
             sluice_rejected := sluice_rejected || sluice_bad;
             rejected_states := rejected_states || sqlstate::text;
             rejected_messages := rejected_messages || sqlerrm;
             region_from := coalesce(region_from, sluice_lo);
             region_to := sluice_bad;
             sluice_lo := sluice_bad + 1;
           end if;
         end;
       end loop;
       if region_from is not null then
         sluice_lo := region_from;
         sluice_hi := region_to;
         begin
           ${range};
           get diagnostics one_n = row_count;
           total := total + one_n;
         exception when others then
           -- A failure the walk pinned on the wrong row (one raised at the
           -- end of a statement): its verdicts are withdrawn, rows go one by one.
           sluice_rejected := '{}';
           rejected_states := '{}';
           rejected_messages := '{}';
           ${rowByRow("region_from", "region_to")}
         end;
       end if;
       if sluice_from is not null then
         ${rowByRow("sluice_from", "sluice_to")}
       end if;
       for i in 1 .. coalesce(array_length(sluice_rejected, 1), 0) loop
         sluice_row := sluice_rejected[i];
         sluice_state := rejected_states[i];
         sluice_message := rejected_messages[i];
         sluice_count := null; sluice_checksum := null;
         return next;
       end loop;
       ${table.stagedChecksum(columns, "sluice_rejected")} into one_s;
       total_sum := one_s::numeric;`;
}
