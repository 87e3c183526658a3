/**
 * Publication and replication slot management, on an ordinary connection.
 *
 * - `filtered` (the default when an include list is given): creates the
 *   publication `FOR TABLE` the tables the include and exclude lists
 *   capture, or adds the missing ones to an existing one. Tables it already
 *   publishes are kept: another pipeline sharing the publication may read
 *   them, and dropping them would silently stop it.
 * - `all_tables`: creates `FOR ALL TABLES` when the publication is missing
 *   (needs a superuser), with a warning; an existing publication is used as
 *   it is.
 * - `disabled`: the publication must exist.
 *
 * PostgreSQL refuses UPDATE and DELETE on a published table that has no
 * replica identity (no primary key under REPLICA IDENTITY DEFAULT, or
 * NOTHING), for every session, including the source application's. So a
 * captured table without one stops the pipeline at start, before the
 * publication is touched, and an all-tables publication reports the tables
 * whose writes it breaks.
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

/** How the publication is managed (`publication.autocreate.mode`). */
export type AutocreateMode = "all_tables" | "filtered" | "disabled";

/**
 * Of the tables `oids`, those without a usable replica identity: no primary
 * key under REPLICA IDENTITY DEFAULT, REPLICA IDENTITY NOTHING, or USING
 * INDEX on an index that is gone. Once such a table is in a publication,
 * PostgreSQL refuses every UPDATE and DELETE on it, for every session.
 */
export async function tablesWithoutReplicaIdentity(
  sql: Sql,
  oids: readonly number[],
): Promise<TableRef[]> {
  if (oids.length === 0) return [];
  const rows = await sql<TableRef[]>`
    select c.oid::int as oid, n.nspname as schema, c.relname as table
    from pg_class c join pg_namespace n on n.oid = c.relnamespace
    where c.oid = any(${oids as number[]}::oid[]) and (
      c.relreplident = 'n'
      or (c.relreplident = 'd' and not exists (
        select 1 from pg_index i where i.indrelid = c.oid and i.indisprimary))
      or (c.relreplident = 'i' and not exists (
        select 1 from pg_index i where i.indrelid = c.oid and i.indisreplident)))
    order by 2, 3`;
  return [...rows];
}

/** A table whose replica identity index leaves out primary-key columns. */
export interface NarrowIdentity extends TableRef {
  readonly index: string;
  readonly identity: readonly string[];
  readonly key: readonly string[];
}

/**
 * Of the tables `oids`, those with REPLICA IDENTITY USING INDEX on an index
 * that does not hold every primary-key column. Events are keyed by the
 * primary key (as Debezium's are), but PostgreSQL sends only the identity
 * columns with a DELETE or an update that changes them: such events could
 * not name their row.
 */
export async function identitiesWithoutKey(
  sql: Sql,
  oids: readonly number[],
): Promise<NarrowIdentity[]> {
  if (oids.length === 0) return [];
  const rows = await sql<NarrowIdentity[]>`
    select c.oid::int as oid, n.nspname as schema, c.relname as table,
           r.indexrelid::regclass::text as index,
           array(select a.attname from unnest(r.indkey) with ordinality k(num, pos)
                 join pg_attribute a on a.attrelid = c.oid and a.attnum = k.num
                 order by k.pos) as identity,
           array(select a.attname from unnest(p.indkey) with ordinality k(num, pos)
                 join pg_attribute a on a.attrelid = c.oid and a.attnum = k.num
                 order by k.pos) as key
    from pg_class c join pg_namespace n on n.oid = c.relnamespace
    join pg_index r on r.indrelid = c.oid and r.indisreplident
    join pg_index p on p.indrelid = c.oid and p.indisprimary
    where c.oid = any(${oids as number[]}::oid[]) and c.relreplident = 'i'
      and not (p.indkey::int2[] <@ r.indkey::int2[])
    order by 2, 3`;
  return [...rows];
}

const qualified = (t: TableRef) => `${quoteIdent(t.schema)}.${quoteIdent(t.table)}`;
const names = (tables: readonly TableRef[]) =>
  tables.map((t) => `${t.schema}.${t.table}`).join(", ");

/**
 * Throws a sentence with the fix when the server cannot decode its WAL
 * (`wal_level` below `logical`, PostgreSQL's default): checked before the
 * publication is created, which the slot's creation would otherwise leave
 * behind when it fails.
 */
async function requireLogicalDecoding(sql: Sql): Promise<void> {
  const [{ level }] = await sql<{ level: string }[]>`select current_setting('wal_level') as level`;
  if (level === "logical") return;
  throw new Error(
    `Cannot capture changes: the server's wal_level is "${level}"; logical decoding needs ` +
      `wal_level = logical. Set it (ALTER SYSTEM SET wal_level = logical, or in ` +
      `postgresql.conf) and restart PostgreSQL; managed services call it logical ` +
      `replication (e.g. rds.logical_replication = 1)`,
  );
}

/**
 * Makes sure the publication exists (and, in filtered mode, publishes the
 * captured tables), after checking that no captured table would make the
 * source application's writes fail.
 */
export async function preparePublication(
  sql: Sql,
  name: string,
  mode: AutocreateMode,
  filter: CaptureFilter,
  logger: Logger,
): Promise<void> {
  await requireLogicalDecoding(sql);
  const rows = await sql<{ all: boolean }[]>`
    select puballtables as all from pg_publication where pubname = ${name}`;
  const existing = rows[0];
  if (mode === "disabled" && !existing) {
    throw new Error(
      `Publication "${name}" does not exist; create it, or set publication.autocreate.mode to filtered or all_tables`,
    );
  }
  const captured = (await userTables(sql)).filter((t) => filter.table(t.schema, t.table));
  const published = mode === "disabled" ? await publishedTables(sql, name) : undefined;
  await refuseTablesWithoutIdentity(
    sql,
    published ? captured.filter((t) => published.some((p) => p.oid === t.oid)) : captured,
  );
  if (mode === "disabled") return;
  if (mode === "filtered" && existing?.all) {
    logger.warn(
      "Publication {name} publishes all tables; it is used as it is (events are still filtered)",
      { name },
    );
  }
  try {
    if (mode === "all_tables" || existing?.all) {
      await useAllTablesPublication(sql, name, existing !== undefined, logger);
      return;
    }
    await publishCapturedTables(sql, name, existing !== undefined, captured, logger);
  } catch (error) {
    throw publicationPrivilegeError(error, name, mode, captured) ?? error;
  }
}

/** A permission failure on the publication, as a sentence with the two ways out. */
function publicationPrivilegeError(
  error: unknown,
  name: string,
  mode: AutocreateMode,
  captured: readonly TableRef[],
): Error | undefined {
  if ((error as { code?: string }).code !== "42501") return undefined;
  const tables = captured.map((t) => `${quoteIdent(t.schema)}.${quoteIdent(t.table)}`).join(", ");
  const statement = mode === "all_tables"
    ? `CREATE PUBLICATION ${quoteIdent(name)} FOR ALL TABLES`
    : `CREATE PUBLICATION ${quoteIdent(name)} FOR TABLE ${tables}`;
  return new Error(
    `Cannot create or alter publication "${name}" (publication.autocreate.mode ${mode}): ` +
      `${(error as Error).message}. Either grant the connector's user what it needs ` +
      `(CREATE on the database, and ownership of the captured tables; FOR ALL TABLES needs a ` +
      `superuser), or have an administrator run "${statement}" and set ` +
      `publication.autocreate.mode to disabled`,
    { cause: error },
  );
}

/**
 * Throws, naming them, when captured tables have no usable replica
 * identity, or one that leaves out the key the events carry.
 */
async function refuseTablesWithoutIdentity(sql: Sql, captured: readonly TableRef[]) {
  const narrow = await identitiesWithoutKey(sql, captured.map((t) => t.oid));
  if (narrow.length > 0) {
    const list = (columns: readonly string[]) => `(${columns.join(", ")})`;
    throw new Error(
      `Cannot capture ${
        narrow.map((t) =>
          `${t.schema}.${t.table} (REPLICA IDENTITY USING INDEX ${t.index} on ${
            list(t.identity)
          }, primary key ${list(t.key)})`
        ).join(", ")
      }: its events are keyed by the primary key, but PostgreSQL sends only the replica ` +
        `identity's columns with a DELETE or an update that changes them, so those events ` +
        `could not name their row (a sink would keep the deleted row). Run ALTER TABLE … ` +
        `REPLICA IDENTITY DEFAULT (the primary key) or FULL, or use an identity index that ` +
        `holds every primary-key column`,
    );
  }
  const lacking = await tablesWithoutReplicaIdentity(sql, captured.map((t) => t.oid));
  if (lacking.length === 0) return;
  throw new Error(
    `Cannot capture ${
      names(lacking)
    }: without a primary key or a replica identity, a published table refuses every UPDATE and DELETE, for the source application too. Give each a primary key or run ALTER TABLE … REPLICA IDENTITY FULL, or leave it out of the capture (table.exclude.list, or a narrower table.include.list)`,
  );
}

/**
 * `FOR ALL TABLES`: created when missing. It also publishes tables that are
 * not captured, and tables created later; the ones without a replica
 * identity are reported, since their UPDATEs and DELETEs fail.
 */
async function useAllTablesPublication(
  sql: Sql,
  name: string,
  exists: boolean,
  logger: Logger,
): Promise<void> {
  if (!exists) {
    logger.warn(
      "Creating publication {name} FOR ALL TABLES (publication.autocreate.mode all_tables): every table of the database is published, including tables created later; an UPDATE or DELETE on one without a primary key or replica identity will fail. publication.autocreate.mode filtered publishes only the captured tables",
      { name },
    );
    await sql.unsafe(`create publication ${quoteIdent(name)} for all tables`);
  }
  const all = await userTables(sql);
  const lacking = await tablesWithoutReplicaIdentity(sql, all.map((t) => t.oid));
  if (lacking.length > 0) {
    logger.error(
      "Publication {name} publishes all tables, so UPDATE and DELETE fail on these tables without a primary key or replica identity: {tables}. Give them one (ALTER TABLE … REPLICA IDENTITY FULL), or publish only the captured tables (publication.autocreate.mode filtered)",
      { name, tables: names(lacking) },
    );
  }
}

/** `FOR TABLE` the captured tables: created, or brought to that set. */
async function publishCapturedTables(
  sql: Sql,
  name: string,
  exists: boolean,
  wanted: readonly TableRef[],
  logger: Logger,
): Promise<void> {
  const quoted = quoteIdent(name);
  const list = wanted.map(qualified).join(", ");
  if (wanted.length === 0) {
    logger.warn("No table matches the include and exclude lists; publication {name} is empty", {
      name,
    });
  }
  if (!exists) {
    logger.info("Creating publication {name} for {tables}", { name, tables: list || "no tables" });
    await sql.unsafe(`create publication ${quoted}${list ? ` for table ${list}` : ""}`);
    return;
  }
  const current = await publishedTables(sql, name);
  const missing = wanted.filter((t) => !current.some((c) => c.oid === t.oid));
  const others = current.filter((c) => !wanted.some((t) => t.oid === c.oid));
  if (missing.length > 0) {
    logger.info("Adding {tables} to publication {name}", { name, tables: names(missing) });
    await sql.unsafe(`alter publication ${quoted} add table ${missing.map(qualified).join(", ")}`);
  }
  if (others.length > 0) {
    // Dropping them could silently stop another pipeline that shares the publication.
    logger.info(
      "Publication {name} also publishes {tables}, which this pipeline does not capture; they are kept (events are still filtered). Give each pipeline its own publication.name, or drop them with ALTER PUBLICATION … DROP TABLE",
      { name, tables: names(others) },
    );
  }
}
