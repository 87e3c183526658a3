/**
 * Publication and replication slot management, on an ordinary connection.
 *
 * - `all_tables`: creates `FOR ALL TABLES` when the publication is missing
 *   (needs a superuser); an existing publication is used as it is.
 * - `filtered`: creates the publication `FOR TABLE` the tables the include
 *   and exclude lists capture, or brings an existing one to that set with
 *   `ALTER PUBLICATION … SET TABLE`.
 * - `disabled`: the publication must exist.
 *
 * @module
 */
import type { Logger } from "@logtape/logtape";
import { quoteIdent, type Sql } from "../../drivers/postgres.ts";
import type { CaptureFilter } from "./_filters.ts";
import { parseLsn } from "./_lsn.ts";

/** What `pg_replication_slots` says about a slot. */
export interface SlotInfo {
  readonly plugin: string | null;
  readonly database: string | null;
  readonly active: boolean;
  readonly activePid: number | null;
  readonly confirmedFlush: bigint | null;
}

/** A table of the database. */
export interface TableRef {
  readonly oid: number;
  readonly schema: string;
  readonly table: string;
}

/** The slot named `name`, or undefined. */
export async function inspectSlot(sql: Sql, name: string): Promise<SlotInfo | undefined> {
  const rows = await sql<
    {
      plugin: string | null;
      database: string | null;
      active: boolean;
      active_pid: number | null;
      confirmed: string | null;
    }[]
  >`select plugin, database, active, active_pid, confirmed_flush_lsn::text as confirmed
    from pg_replication_slots where slot_name = ${name}`;
  const row = rows[0];
  if (!row) return undefined;
  return {
    plugin: row.plugin,
    database: row.database,
    active: row.active,
    activePid: row.active_pid,
    confirmedFlush: row.confirmed ? parseLsn(row.confirmed) : null,
  };
}

/** Drops a slot, waiting a little for a walsender that is winding down to release it. */
export async function dropSlot(sql: Sql, name: string): Promise<void> {
  for (let attempt = 0;; attempt++) {
    try {
      await sql`select pg_drop_replication_slot(slot_name) from pg_replication_slots
                where slot_name = ${name}`;
      return;
    } catch (error) {
      // 55006: the slot is still active.
      if ((error as { code?: string }).code !== "55006" || attempt >= 20) throw error;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

/** The ordinary tables (and partitioned tables) of the database, outside system schemas. */
export async function userTables(sql: Sql): Promise<TableRef[]> {
  const rows = await sql<TableRef[]>`
    select c.oid::int as oid, n.nspname as schema, c.relname as table
    from pg_class c join pg_namespace n on n.oid = c.relnamespace
    where c.relkind in ('r', 'p') and not c.relispartition
      and n.nspname not in ('pg_catalog', 'information_schema')
      and n.nspname not like 'pg\\_toast%' and n.nspname not like 'pg\\_temp%'
    order by 2, 3`;
  return [...rows];
}

/** The tables a publication publishes. */
export async function publishedTables(sql: Sql, publication: string): Promise<TableRef[]> {
  const rows = await sql<TableRef[]>`
    select c.oid::int as oid, p.schemaname as schema, p.tablename as table
    from pg_publication_tables p
    join pg_namespace n on n.nspname = p.schemaname
    join pg_class c on c.relnamespace = n.oid and c.relname = p.tablename
    where p.pubname = ${publication}
    order by 2, 3`;
  return [...rows];
}

/** Makes sure the publication exists (and, in filtered mode, publishes the captured tables). */
export async function preparePublication(
  sql: Sql,
  name: string,
  mode: "all_tables" | "filtered" | "disabled",
  filter: CaptureFilter,
  logger: Logger,
): Promise<void> {
  const rows = await sql<{ all: boolean }[]>`
    select puballtables as all from pg_publication where pubname = ${name}`;
  const existing = rows[0];
  const quoted = quoteIdent(name);
  if (mode === "disabled") {
    if (!existing) {
      throw new Error(
        `Publication "${name}" does not exist; create it, or set publication.autocreate.mode to all_tables or filtered`,
      );
    }
    return;
  }
  if (mode === "all_tables") {
    if (!existing) {
      logger.info("Creating publication {name} for all tables", { name });
      await sql.unsafe(`create publication ${quoted} for all tables`);
    }
    return;
  }
  const wanted = (await userTables(sql)).filter((t) => filter.table(t.schema, t.table));
  const list = wanted.map((t) => `${quoteIdent(t.schema)}.${quoteIdent(t.table)}`).join(", ");
  if (wanted.length === 0) {
    logger.warn("No table matches the include and exclude lists; publication {name} is empty", {
      name,
    });
  }
  if (!existing) {
    logger.info("Creating publication {name} for {tables}", { name, tables: list || "no tables" });
    await sql.unsafe(`create publication ${quoted}${list ? ` for table ${list}` : ""}`);
    return;
  }
  if (existing.all) {
    logger.warn(
      "Publication {name} publishes all tables; it is used as it is (events are still filtered)",
      { name },
    );
    return;
  }
  const current = await publishedTables(sql, name);
  const key = (t: TableRef) => `${t.schema}\u0000${t.table}`;
  const same = current.length === wanted.length &&
    current.every((t) => wanted.some((w) => key(w) === key(t)));
  if (same) return;
  logger.info("Setting the tables of publication {name} to {tables}", { name, tables: list });
  if (list) await sql.unsafe(`alter publication ${quoted} set table ${list}`);
  else {
    await sql.unsafe(
      `alter publication ${quoted} drop table ${
        current.map((t) => `${quoteIdent(t.schema)}.${quoteIdent(t.table)}`).join(", ")
      }`,
    );
  }
}
