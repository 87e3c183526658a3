/**
 * The target's foreign keys, as the postgres sink needs them: which of a
 * batch's tables reference which (the order of its writes), which keys
 * would act on a key change's delete, and what a failed key tells the user.
 *
 * @module
 */
import type { Reference } from "../../drivers/pg_foreign_keys.ts";
import type { Queryable, TargetTable } from "./_table.ts";

/** SQLSTATE foreign_key_violation. */
export const FOREIGN_KEY_VIOLATION = "23503";

/** What a foreign-key failure at the target tells the user to do. */
export const FOREIGN_KEY_HINT =
  " (the source already checked this key; its changes can reach the target in another order: topics are consumed independently, a source transaction larger than a batch is split, tables whose keys form a cycle are copied in name order. Set the sink's session.replication.role to replica to apply them as PostgreSQL's logical replication does, or drop the target's foreign keys)";

/** Why a key change cannot be applied as a delete and a create (see the writer's `#keyChange`). */
export function keyChangeCascades(table: string, key: string): string {
  return `Cannot apply a key change to table "${table}": it arrives as a delete of the old key and a create of the new one, and the target's foreign key ${key} acts ON DELETE on the rows that reference the old key, which the source kept (it moved them to the new key). Set the sink's session.replication.role to replica (the target's keys then take the source's changes as they come), or make that key ON DELETE NO ACTION at the target`;
}

/**
 * A foreign key referencing `table` whose ON DELETE action changes the rows
 * that reference it (CASCADE, SET NULL, SET DEFAULT), as `name of table`;
 * undefined when there is none.
 */
export async function cascadingKey(
  sql: Queryable,
  table: TargetTable,
): Promise<string | undefined> {
  const [found] = await sql.unsafe<{ key: string }[]>(
    `select format('%I of %s', conname, conrelid::regclass) as key from pg_constraint
     where contype = 'f' and confdeltype in ('c', 'n', 'd') and confrelid = to_regclass($1)
     order by conname limit 1`,
    [table.quoted],
  );
  return found?.key;
}

/**
 * The foreign keys among `tables`, as child → parent table names, a table
 * referencing itself included (asked per batch: keys come and go).
 */
export async function foreignKeys(
  sql: Queryable,
  tables: readonly TargetTable[],
): Promise<Reference[]> {
  const pairs = await sql.unsafe<{ child: number; parent: number }[]>(
    `with batch as (
       select to_regclass(name) as oid, n::int
       from unnest($1::text[]) with ordinality as t(name, n)
     )
     select distinct child.n as child, parent.n as parent
     from pg_constraint key
     join batch child on child.oid = key.conrelid
     join batch parent on parent.oid = key.confrelid
     where key.contype = 'f'`,
    [tables.map((table) => table.quoted)],
  );
  return pairs.map(({ child, parent }) => ({
    child: tables[child - 1].name,
    parent: tables[parent - 1].name,
  }));
}
