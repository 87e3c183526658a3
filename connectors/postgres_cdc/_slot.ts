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
import { closest } from "../../api/spelling.ts";

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

/**
 * Drops a slot once no walsender uses it. A walsender that was told to stop
 * can take seconds to exit on a busy server, and a drop that gave up would
 * leave a slot holding WAL back forever: wait up to `waitMs` for it. When
 * the walsender still holding the slot is `ownPid` (this process' own
 * replication connection, already closed), it is ended; a walsender of
 * another process is never ended, and the drop fails naming it.
 */
export async function dropSlot(
  sql: Sql,
  name: string,
  { ownPid, waitMs = 15_000 }: { ownPid?: number; waitMs?: number } = {},
): Promise<void> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    const slot = await inspectSlot(sql, name);
    if (!slot) return;
    if (slot.activePid === null) {
      try {
        await sql`select pg_drop_replication_slot(slot_name) from pg_replication_slots
                  where slot_name = ${name}`;
        return;
      } catch (error) {
        // 55006: a walsender took the slot between the two statements.
        if ((error as { code?: string }).code !== "55006") throw error;
      }
    } else if (slot.activePid === ownPid) {
      await sql`select pg_terminate_backend(${ownPid}::int)`;
    }
    if (Date.now() >= deadline) {
      throw new Error(
        `Replication slot "${name}" is still in use by walsender pid ${
          slot.activePid ?? "(unknown)"
        } after ${
          waitMs / 1000
        } s; drop it when that process has stopped: select pg_drop_replication_slot('${name}')`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** A table of the database, with where it sits in a partition tree. */
export interface CatalogTable extends TableRef {
  /** A partitioned table (relkind `p`): its rows live in its partitions. */
  readonly partitioned: boolean;
  /** The partitioned tables it is a partition of, nearest first; empty when it is not a partition. */
  readonly ancestors: readonly number[];
}

/**
 * The ordinary and partitioned tables of the database, partitions included,
 * outside system schemas. The ancestors come from a walk up `pg_inherits`
 * rather than `pg_partition_ancestors` (PostgreSQL 12+), which older
 * servers lack.
 */
export async function userTables(sql: Sql): Promise<CatalogTable[]> {
  const rows = await sql<CatalogTable[]>`
    select c.oid::int as oid, n.nspname as schema, c.relname as table,
      c.relkind = 'p' as partitioned,
      coalesce((
        with recursive up(rel, depth, partition) as (
          select i.inhparent, 1, p.relispartition
          from pg_inherits i join pg_class p on p.oid = i.inhparent
          where i.inhrelid = c.oid and c.relispartition
          union all
          select i.inhparent, up.depth + 1, p.relispartition
          from up join pg_inherits i on i.inhrelid = up.rel
          join pg_class p on p.oid = i.inhparent
          where up.partition)
        select array_agg(rel::int order by depth) from up), '{}') as ancestors
    from pg_class c join pg_namespace n on n.oid = c.relnamespace
    where c.relkind in ('r', 'p')
      and n.nspname not in ('pg_catalog', 'information_schema')
      and n.nspname not like 'pg\\_toast%' and n.nspname not like 'pg\\_temp%'
    order by 2, 3`;
  return [...rows];
}

/**
 * The tables the filter captures, each once: a partition whose partitioned
 * ancestor is captured too (an include regex matching both, or the default
 * of capturing everything) is left out, since its rows are read and its
 * changes arrive under that ancestor's name (`publish_via_partition_root`).
 * A partition named without its ancestor is captured under its own name.
 */
export function capturedTables(
  all: readonly CatalogTable[],
  filter: CaptureFilter,
): CatalogTable[] {
  const matched = all.filter((t) => filter.table(t.schema, t.table));
  const oids = new Set(matched.map((t) => t.oid));
  return matched.filter((t) => !t.ancestors.some((oid) => oids.has(oid)));
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
): Promise<TableWithoutIdentity[]> {
  if (oids.length === 0) return [];
  const rows = await sql<TableWithoutIdentity[]>`
    select c.oid::int as oid, n.nspname as schema, c.relname as table,
      c.relreplident as identity,
      exists (select 1 from pg_index i where i.indrelid = c.oid and i.indisprimary) as "primaryKey"
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

/** A table without a usable replica identity, and why. */
export interface TableWithoutIdentity extends TableRef {
  /** `relreplident`: d (default), n (nothing), i (index), f (full). */
  readonly identity: string;
  readonly primaryKey: boolean;
}

/** Why a table has no usable replica identity, and the statement that gives it one. */
function identityProblem(t: TableWithoutIdentity): string {
  const table = qualified(t);
  if (t.identity === "n" && t.primaryKey) {
    return `${t.schema}.${t.table} has a primary key but REPLICA IDENTITY NOTHING (run ALTER TABLE ${table} REPLICA IDENTITY DEFAULT to use its primary key)`;
  }
  if (t.identity === "i") {
    return `${t.schema}.${t.table} has REPLICA IDENTITY USING INDEX on an index that is gone (run ALTER TABLE ${table} REPLICA IDENTITY DEFAULT, FULL, or USING INDEX on another unique index)`;
  }
  return `${t.schema}.${t.table} has no primary key${
    t.identity === "n" ? " and REPLICA IDENTITY NOTHING" : ""
  } (give it a primary key, or run ALTER TABLE ${table} REPLICA IDENTITY FULL)`;
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

/** What {@linkcode preparePublication} found and did. */
export interface PreparedPublication {
  /**
   * Captured tables whose changes the publication did not carry under their
   * own name before this start (added to it now, or partitioned tables now
   * published via their root): their rows written before were never
   * streamed, and only a snapshot copies them.
   */
  readonly newlyPublished: readonly TableRef[];
  /** The captured tables' generated columns, `schema.table.column`, named in a warning already. */
  readonly generated: ReadonlySet<string>;
}

/** The publication's flags, when it exists. */
async function inspectPublication(
  sql: Sql,
  name: string,
): Promise<{ all: boolean; viaroot: boolean } | undefined> {
  // pubviaroot exists from PostgreSQL 13 on; through jsonb it reads as null before.
  const rows = await sql<{ all: boolean; viaroot: boolean }[]>`
    select puballtables as all, coalesce((to_jsonb(p) ->> 'pubviaroot')::boolean, false) as viaroot
    from pg_publication p where pubname = ${name}`;
  return rows[0];
}

/**
 * Makes sure the publication exists (and, in filtered mode, publishes the
 * captured tables), after checking that no captured table would make the
 * source application's writes fail; then checks that every captured table's
 * changes arrive under a captured name, and fails naming the fix otherwise.
 *
 * A captured partitioned table is published with
 * `publish_via_partition_root = true` (PostgreSQL 13+): its partitions'
 * changes arrive under its name and key, and partitions attached later are
 * included. Without it they would arrive under the partitions' names, which
 * the include list does not match, and be dropped.
 */
export async function preparePublication(
  sql: Sql,
  name: string,
  mode: AutocreateMode,
  filter: CaptureFilter,
  logger: Logger,
): Promise<PreparedPublication> {
  for (let attempt = 1;; attempt++) {
    try {
      return await preparePublicationOnce(sql, name, mode, filter, logger);
    } catch (error) {
      // Another pipeline created the publication, or changed it, between our
      // look and our change. Look again.
      if (!publicationRace(error) || attempt === 5) throw error;
      logger.debug("Publication {name} changed while being prepared ({error}); looking again", {
        name,
        error: (error as Error).message,
      });
    }
  }
}

/**
 * Whether `error` says another session changed the publication at the same
 * time: duplicate_object (it exists now, or has the table), a unique
 * violation in the catalog (created at the same instant), or a catalog row
 * updated concurrently.
 */
function publicationRace(error: unknown): boolean {
  const { code, message } = error as { code?: string; message?: string };
  return code === "42710" || (code === "23505" && /pg_publication/.test(message ?? "")) ||
    (code === "XX000" && /concurrently/.test(message ?? ""));
}

async function preparePublicationOnce(
  sql: Sql,
  name: string,
  mode: AutocreateMode,
  filter: CaptureFilter,
  logger: Logger,
): Promise<PreparedPublication> {
  await requireLogicalDecoding(sql);
  const existing = await inspectPublication(sql, name);
  if (mode === "disabled" && !existing) {
    throw new Error(
      `Publication "${name}" does not exist; create it, or set publication.autocreate.mode to filtered or all_tables`,
    );
  }
  const all = await userTables(sql);
  const captured = capturedTables(all, filter);
  warnOfUnmatchedIncludes(filter, all, logger);
  await requirePartitionRootSupport(sql, captured);
  const published = mode === "disabled" ? await publishedTables(sql, name) : undefined;
  await refuseTablesWithoutIdentity(
    sql,
    withPartitions(
      published ? captured.filter((t) => carries(published, t, all)) : captured,
      all,
    ),
  );
  let newlyPublished: TableRef[] = [];
  if (mode !== "disabled") {
    if (mode === "filtered" && existing?.all) {
      logger.warn(
        "Publication {name} publishes all tables; it is used as it is (events are still filtered)",
        { name },
      );
    }
    try {
      newlyPublished = mode === "all_tables" || existing?.all
        ? await useAllTablesPublication(sql, name, existing, captured, logger)
        : await publishCapturedTables(sql, name, existing, captured, all, logger);
    } catch (error) {
      throw publicationPrivilegeError(error, name, mode, captured) ?? error;
    }
  }
  await checkArrival(sql, name, captured, all, filter, logger);
  const generated = await warnOfGeneratedColumns(sql, captured.map((t) => t.oid), logger);
  return { newlyPublished, generated };
}

/** Warns of each include-list entry that matches nothing, with the name it may have meant. */
function warnOfUnmatchedIncludes(
  filter: CaptureFilter,
  all: readonly CatalogTable[],
  logger: Logger,
): void {
  for (const { list, entry, names } of filter.unmatchedIncludes(all)) {
    const meant = closest(entry.replaceAll("\\.", "."), names);
    logger.warn(
      `{list} entry {entry} matches no ${
        list === "schema.include.list" ? "schema with tables" : "table"
      } of the database${
        meant ? " (did you mean {meant}?)" : ""
      }: nothing is captured for it. A table created later is captured from the next start`,
      { list, entry, meant },
    );
  }
}

/**
 * Warns of the generated columns of the tables `oids` not in `known`
 * (`schema.table.column`), and answers all of them: logical decoding carries
 * no generated column's value (PostgreSQL 17 and older), so their events
 * leave them out, and the snapshot does too, to match. A target column of
 * the same name would stay NULL without a word unless it is generated
 * there as well, which the warning spells out.
 */
export async function warnOfGeneratedColumns(
  sql: Sql,
  oids: readonly number[],
  logger: Logger,
  known: ReadonlySet<string> = new Set(),
): Promise<Set<string>> {
  if (oids.length === 0) return new Set();
  const rows = await sql<{ table: string; column: string; definition: string }[]>`
    select format('%I.%I', n.nspname, c.relname) as table, a.attname as column,
           format('%I %s generated always as (%s) stored', a.attname,
                  format_type(a.atttypid, a.atttypmod), pg_get_expr(d.adbin, d.adrelid))
             as definition
    from pg_attribute a
    join pg_class c on c.oid = a.attrelid
    join pg_namespace n on n.oid = c.relnamespace
    left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
    where a.attrelid = any(${oids as number[]}::oid[]) and a.attnum > 0
      and not a.attisdropped and a.attgenerated <> ''
    order by 1, a.attnum`;
  const named = new Set(rows.map((row) => `${row.table}.${row.column}`));
  const fresh = rows.filter((row) => !known.has(`${row.table}.${row.column}`));
  if (fresh.length === 0) return named;
  logger.warn(
    "Generated columns {columns} are left out of change events and snapshot rows: PostgreSQL's logical decoding does not carry their values. A target column of the same name keeps its default (NULL) unless it is generated there too: {definitions}",
    {
      columns: fresh.map((row) => `${row.table}.${row.column}`).join(", "),
      definitions: fresh.map((row) => `${row.table}: ${row.definition}`).join("; "),
    },
  );
  return named;
}

/** Refuses, naming them, partitioned tables on a server that cannot publish them via their root. */
async function requirePartitionRootSupport(sql: Sql, captured: readonly CatalogTable[]) {
  const partitioned = captured.filter((t) => t.partitioned);
  if (partitioned.length === 0) return;
  const [{ version }] = await sql<{ version: number }[]>`
    select current_setting('server_version_num')::int as version`;
  if (version >= 130000) return;
  throw new Error(
    `Cannot capture the partitioned table${partitioned.length > 1 ? "s" : ""} ${
      names(partitioned)
    }: PostgreSQL ${
      Math.floor(version / 10000)
    } cannot publish a partitioned table (publish_via_partition_root needs PostgreSQL 13). ` +
      `Capture its partitions instead (name them in table.include.list); their changes arrive under their own names`,
  );
}

/** The tables and every partition under them (the relations whose rows are written). */
function withPartitions(tables: readonly CatalogTable[], all: readonly CatalogTable[]) {
  const oids = new Set(tables.map((t) => t.oid));
  return [...tables, ...all.filter((t) => t.ancestors.some((oid) => oids.has(oid)))];
}

/**
 * Whether `published` (the publication's `pg_publication_tables`) carries
 * changes of `table`: it lists the table, one of its ancestors (via the
 * root), or one of its partitions (without it).
 */
function carries(
  published: readonly TableRef[],
  table: CatalogTable,
  all: readonly CatalogTable[],
): boolean {
  const oids = new Set(published.map((t) => t.oid));
  if (oids.has(table.oid) || table.ancestors.some((oid) => oids.has(oid))) return true;
  return all.some((t) => oids.has(t.oid) && t.ancestors.includes(table.oid));
}

/**
 * Checks under which name each captured table's changes arrive, from the
 * publication as it is now: pgoutput sends a partition's changes under the
 * topmost published ancestor's name when `publish_via_partition_root` is on,
 * under the partition's own name when it is off. A name the filter does not
 * capture would drop them silently, so that stops the start, naming the fix.
 */
async function checkArrival(
  sql: Sql,
  name: string,
  captured: readonly CatalogTable[],
  all: readonly CatalogTable[],
  filter: CaptureFilter,
  logger: Logger,
): Promise<void> {
  const publication = await inspectPublication(sql, name);
  if (!publication) return;
  const arriving = new Set((await publishedTables(sql, name)).map((t) => t.oid));
  const byOid = new Map(all.map((t) => [t.oid, t]));
  const label = (t: TableRef) => `${t.schema}.${t.table}`;
  const problems: string[] = [];
  const underPartitionNames: CatalogTable[] = [];
  const unpublished: CatalogTable[] = [];
  for (const table of captured) {
    if (table.partitioned && !publication.viaroot) {
      const parts = all.filter((t) => !t.partitioned && t.ancestors.includes(table.oid));
      if (parts.length > 0 && parts.every((t) => filter.table(t.schema, t.table))) {
        underPartitionNames.push(table);
      } else {
        problems.push(
          `${
            label(table)
          } is partitioned, and publication "${name}" sends its partitions' changes ` +
            `under the partitions' names (publish_via_partition_root is off), which the include list ` +
            `does not capture: run ALTER PUBLICATION ${
              quoteIdent(name)
            } SET (publish_via_partition_root = true)`,
        );
      }
      continue;
    }
    if (arriving.has(table.oid)) continue;
    const root = table.ancestors.findLast((oid) => arriving.has(oid));
    if (root !== undefined) {
      const ancestor = label(byOid.get(root)!);
      problems.push(
        `${label(table)} is a partition of ${ancestor}, and publication "${name}" publishes ` +
          `${ancestor} with publish_via_partition_root, so its changes arrive as ${ancestor}, which ` +
          `the include list does not capture: capture ${ancestor} instead, or give this pipeline ` +
          `its own publication.name`,
      );
    } else {
      unpublished.push(table);
    }
  }
  if (problems.length > 0) {
    throw new Error(`Cannot capture every change of the captured tables: ${problems.join("; ")}`);
  }
  if (underPartitionNames.length > 0) {
    logger.warn(
      "Publication {name} has publish_via_partition_root off, so changes of the partitioned tables {tables} arrive under their partitions' names (one topic per partition). For one topic per partitioned table run ALTER PUBLICATION … SET (publish_via_partition_root = true) (the topics then change)",
      { name, tables: names(underPartitionNames) },
    );
  }
  if (unpublished.length > 0) {
    logger.warn(
      "Publication {name} does not publish the captured tables {tables}: none of their changes are streamed. Add them (ALTER PUBLICATION … ADD TABLE …), or narrow table.include.list",
      { name, tables: names(unpublished) },
    );
  }
}

/** A permission failure on the publication, as a sentence with the two ways out. */
function publicationPrivilegeError(
  error: unknown,
  name: string,
  mode: AutocreateMode,
  captured: readonly CatalogTable[],
): Error | undefined {
  if ((error as { code?: string }).code !== "42501") return undefined;
  const tables = captured.map((t) => `${quoteIdent(t.schema)}.${quoteIdent(t.table)}`).join(", ");
  const statement = mode === "all_tables"
    ? `CREATE PUBLICATION ${quoteIdent(name)} FOR ALL TABLES${viaRoot(captured)}`
    : `CREATE PUBLICATION ${quoteIdent(name)} FOR TABLE ${tables}${viaRoot(captured)}`;
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
 * Throws, naming them and the fix, when captured tables have no usable
 * replica identity, or one that leaves out the key the events carry. Only
 * tables holding rows count: a partitioned table's own setting is not what
 * its partitions log (it is not inherited).
 */
async function refuseTablesWithoutIdentity(sql: Sql, captured: readonly CatalogTable[]) {
  const holdingRows = captured.filter((t) => !t.partitioned).map((t) => t.oid);
  const narrow = await identitiesWithoutKey(sql, holdingRows);
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
  const lacking = await tablesWithoutReplicaIdentity(sql, holdingRows);
  if (lacking.length === 0) return;
  throw new Error(
    `Cannot capture ${
      names(lacking)
    }: without a usable replica identity, a published table refuses every UPDATE and DELETE, for the source application too: ${
      lacking.map(identityProblem).join("; ")
    }. Or leave it out of the capture (table.exclude.list, or a narrower table.include.list)`,
  );
}

/**
 * `FOR ALL TABLES`: created when missing (via the partition root when a
 * captured table is partitioned). It also publishes tables that are not
 * captured, and tables created later; the ones without a replica identity
 * are reported, since their UPDATEs and DELETEs fail. An existing one is
 * used as it is: other subscribers may depend on its settings.
 */
async function useAllTablesPublication(
  sql: Sql,
  name: string,
  existing: { viaroot: boolean } | undefined,
  captured: readonly CatalogTable[],
  logger: Logger,
): Promise<TableRef[]> {
  if (!existing) {
    logger.warn(
      "Creating publication {name} FOR ALL TABLES (publication.autocreate.mode all_tables): every table of the database is published, including tables created later; an UPDATE or DELETE on one without a primary key or replica identity will fail. publication.autocreate.mode filtered publishes only the captured tables",
      { name },
    );
    await sql.unsafe(
      `create publication ${quoteIdent(name)} for all tables${viaRoot(captured)}`,
    );
  }
  const all = await userTables(sql);
  const lacking = await tablesWithoutReplicaIdentity(sql, all.map((t) => t.oid));
  if (lacking.length > 0) {
    logger.error(
      "Publication {name} publishes all tables, so UPDATE and DELETE fail on these tables without a primary key or replica identity: {tables}. Give them one (ALTER TABLE … REPLICA IDENTITY FULL), or publish only the captured tables (publication.autocreate.mode filtered)",
      { name, tables: names(lacking) },
    );
  }
  return existing ? [] : [...captured];
}

/** The `WITH` clause that publishes partitioned tables under their own name, when one is captured. */
function viaRoot(captured: readonly CatalogTable[]): string {
  return captured.some((t) => t.partitioned) ? " with (publish_via_partition_root = true)" : "";
}

/**
 * The tables named in the publication itself (`pg_publication_rel`), as
 * opposed to `pg_publication_tables`, which lists the names changes arrive
 * under (a published partitioned table's partitions, without via-root).
 */
async function publicationMembers(sql: Sql, publication: string): Promise<TableRef[]> {
  const rows = await sql<TableRef[]>`
    select c.oid::int as oid, n.nspname as schema, c.relname as table
    from pg_publication p
    join pg_publication_rel r on r.prpubid = p.oid
    join pg_class c on c.oid = r.prrelid
    join pg_namespace n on n.oid = c.relnamespace
    where p.pubname = ${publication}
    order by 2, 3`;
  return [...rows];
}

/**
 * `FOR TABLE` the captured tables: created, or brought to that set. Returns
 * the captured tables whose changes it did not carry under their name before.
 */
async function publishCapturedTables(
  sql: Sql,
  name: string,
  existing: { viaroot: boolean } | undefined,
  wanted: readonly CatalogTable[],
  all: readonly CatalogTable[],
  logger: Logger,
): Promise<TableRef[]> {
  const quoted = quoteIdent(name);
  const list = wanted.map(qualified).join(", ");
  if (wanted.length === 0) {
    logger.warn("No table matches the include and exclude lists; publication {name} is empty", {
      name,
    });
  }
  if (!existing) {
    logger.info("Creating publication {name} for {tables}", { name, tables: list || "no tables" });
    await sql.unsafe(
      `create publication ${quoted}${list ? ` for table ${list}` : ""}${viaRoot(wanted)}`,
    );
    return [...wanted];
  }
  const arriving = await publishedTables(sql, name);
  const members = await publicationMembers(sql, name);
  const covered = [...arriving, ...members];
  const missing = wanted.filter((t) => !carries(covered, t, all));
  // Tables it publishes that are neither captured nor partitions of a captured one.
  const wantedOids = new Set(wanted.map((t) => t.oid));
  const others = members.filter((m) => {
    const table = all.find((t) => t.oid === m.oid);
    return !wantedOids.has(m.oid) && !table?.ancestors.some((oid) => wantedOids.has(oid));
  });
  const newly: TableRef[] = [...missing];
  const partitioned = wanted.filter((t) => t.partitioned);
  if (partitioned.length > 0 && !existing.viaroot) {
    // Sluice manages this publication (filtered mode): without via-root the
    // partitions' changes arrive under names the include list does not match.
    logger.warn(
      "Setting publish_via_partition_root on publication {name}, so that changes of the partitioned tables {tables} arrive under their own names: changes of their partitions arrived under the partitions' names until now (other pipelines sharing the publication see them under the partitioned table's name from now on)",
      { name, tables: names(partitioned) },
    );
    await sql.unsafe(`alter publication ${quoted} set (publish_via_partition_root = true)`);
    newly.push(...partitioned.filter((t) => !missing.includes(t)));
  }
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
  return newly;
}

/** How long slot creation may wait in silence before the blocking transactions are named. */
const SLOT_WAIT_WARN_MS = 5_000;

/**
 * Runs `create` (creating a replication slot), and while it waits longer
 * than {@linkcode SLOT_WAIT_WARN_MS}, names every 30 s the transactions it
 * waits for: PostgreSQL starts decoding only once the transactions running
 * when the slot was asked for have ended, and says nothing meanwhile.
 */
export async function whileSlotWaits<T>(
  sql: Sql,
  slot: string,
  logger: Logger,
  create: () => Promise<T>,
): Promise<T> {
  const started = Date.now();
  let timer: ReturnType<typeof setTimeout> | undefined;
  let done = false;
  const warn = async () => {
    const open = await openTransactions(sql).catch(() => undefined);
    if (done) return;
    logger.warn(
      "Creating replication slot {slot} waits ({seconds} s so far) for the transactions open on the source to end: {transactions}. It goes on by itself once they end (or end them: select pg_terminate_backend(pid))",
      {
        slot,
        seconds: Math.round((Date.now() - started) / 1000),
        transactions: open?.length
          ? open.join("; ")
          : "(cannot list them: no pg_stat_activity rows visible)",
      },
    );
    timer = setTimeout(warn, 30_000);
  };
  timer = setTimeout(warn, SLOT_WAIT_WARN_MS);
  try {
    return await create();
  } finally {
    done = true;
    clearTimeout(timer);
  }
}

/** Transactions with a transaction id, oldest first, as `pid 123 (user, app, since …): query`. */
async function openTransactions(sql: Sql): Promise<string[]> {
  const rows = await sql<
    { pid: number; user: string | null; app: string | null; since: string; query: string }[]
  >`
    select pid, usename as user, application_name as app,
           to_char(xact_start at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') as since,
           left(regexp_replace(query, '[[:space:]]+', ' ', 'g'), 120) as query
    from pg_stat_activity
    where backend_xid is not null and pid <> pg_backend_pid()
    order by xact_start limit 5`;
  const prepared = await sql<{ gid: string; since: string }[]>`
    select gid, to_char(prepared at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') as since
    from pg_prepared_xacts order by prepared limit 5`;
  return [
    ...rows.map((row) =>
      `pid ${row.pid} (${row.user ?? "?"}${
        row.app ? `, ${row.app}` : ""
      }, open since ${row.since}): ${row.query}`
    ),
    ...prepared.map((row) => `prepared transaction '${row.gid}' (since ${row.since})`),
  ];
}
