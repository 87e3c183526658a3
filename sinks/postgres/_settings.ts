/**
 * The postgres sink's options: the zod schema (the only spec of them) and
 * the camelCase settings object its `.transform()` builds, so the rest of
 * the sink speaks one vocabulary.
 *
 * @module
 */
import { z } from "zod";
import { always, boolean, list } from "../../api/options.ts";
import {
  checkConnection,
  type ConnectionConfig,
  connectionOptions,
} from "../../drivers/postgres.ts";

const options = z.strictObject({
  ...connectionOptions,
  table: z.string().optional().describe(
    "Target table as schema.table. Default: table.name.format.",
  ),
  "table.name.format": z.string().default("${topic}").describe(
    "Target table from the record's topic: ${topic} is replaced by the topic (Kafka Connect JDBC).",
  ),
  "primary.key.fields": list().optional().describe(
    "Key columns of the target (after mapping); default: its primary key (or, for auto.create, the record key's fields). Key columns outside a change event's key need the old row in updates (REPLICA IDENTITY FULL at the source): an update without it fails, as it may have moved the row.",
  ),
  "fields.mapping": list().default([]).describe(
    'Renames: "source_field:target_column,…"; an entry that is not one such pair is a config error.',
  ),
  "fields.exclude": list().default([]).describe(
    "Source fields deliberately not written (before mapping). Any other field the target lacks is an error (or a new column, with schema.evolution basic).",
  ),
  "insert.mode": z.enum(["upsert", "insert"]).default("upsert").describe(
    "upsert: insert or update by key (idempotent). insert: plain INSERT, duplicates fail.",
  ),
  "delete.mode": z.enum(["soft", "hard", "none"]).default("soft").describe(
    "How deletes and tombstones apply: soft sets soft.delete.column, hard deletes the row, none ignores them (so a key change, a delete plus a create, then leaves the old row too). A stream pipeline whose target cannot apply them (soft without the column) does not start; in a batch pipeline such a delete fails its record.",
  ),
  "session.replication.role": z.enum(["origin", "replica"]).default("origin").describe(
    "replica: the sink's sessions set session_replication_role to replica, as PostgreSQL's logical replication applies changes: the target's foreign keys are not checked, their ON DELETE and ON UPDATE actions do not run, and its ordinary triggers do not fire (ENABLE REPLICA or ALWAYS triggers do). For a target that has the source's foreign keys: the source checked them and its change events carry every cascaded change, while topics are consumed independently, a source transaction larger than a batch is split and a key change arrives as a delete and a create, so a target that checks or cascades stops the stream (with hard deletes, a key change on a table the target's keys cascade from fails its record rather than delete the rows the source kept). Needs a superuser, or GRANT SET ON PARAMETER session_replication_role TO the sink's user (PostgreSQL 15+). origin: the target checks its keys; the sink orders each batch's writes parents first.",
  ),
  "soft.delete.column": z.string().default("deleted_at").describe(
    "Timestamp column set by soft deletes and cleared by later upserts.",
  ),
  "write.timestamp.column": z.string().optional().describe(
    "Column set to now() on every insert and update, e.g. synced_at (ignored when the table lacks it).",
  ),
  "offsets.table": z.string().default("public.sluice_offsets").describe(
    "Table that keeps pipeline offsets, written in the same transaction as the rows.",
  ),
  "source.position.column": z.string().default("_source_lsn").describe(
    "Stale-event guard for change events: when the target table has this column (pg_lsn, or a numeric type), each write stores the event's source position (the commit LSN: source.sequence[0], else source.lsn) there, and an event older than the row's stored position is skipped, so a replay cannot roll a row back. Rows flattened by unwrap keep their event's position, and so does the tombstone it makes of a delete, which deletes; a tombstone without one (Debezium's, after its delete event) is then ignored, as that event carries the delete. Empty: off.",
  ),
  "snapshot.sweep": boolean().default(true).describe(
    "When a table's snapshot ends (a snapshot redone after an interruption, an offset reset, a lost slot, an execute-snapshot signal), delete (per delete.mode) the live rows older than the snapshot that it did not write: rows deleted at the source meanwhile. Needs source.position.column. Turn it off when several source tables or pipelines write one target table: their rows cannot be told apart, and the sweep would delete the others' rows. A sink that has written rows of another source table into the table skips the sweep and warns.",
  ),
  "version.column": z.string().default("").describe(
    "Version guard shared by batch rows and change events: a target column (after fields.mapping) holding the source row's version, e.g. its updated_at or a version counter. An upsert only overwrites a row whose version is older than its own; at an equal version nothing is written (a replay or a late batch changes nothing), except for a change event of the transaction that wrote the row (equal source.position.column), so two updates of one row in one transaction both apply, and a change event at a later source position than a soft-deleted row's revives it, whatever its version; in a full refresh (--full-refresh) an equal version is written too, unless the row is soft-deleted, so a row changed without its version changing is repaired. A record without a version fails. A delete whose image carries a version only applies to a row not newer than it, and a soft delete stores that version; a delete without one (a key-only before image, a tombstone) applies whatever the row's version. Rows left alone count as skipped. The rule trusts the source's versions: they must grow with every change of a row. Every target table needs the column. Empty: off.",
  ),
  "auto.create": boolean().default(false).describe(
    "Create a missing target table from the first record: its fields become columns with types inferred from their values (numbers numeric, booleans boolean, bytes bytea, arrays text[], objects jsonb, strings and nulls text: records carry values, not column types), its key fields (or primary.key.fields) the primary key, plus the soft-delete, write-timestamp and, for change events, source-position columns.",
  ),
  "schema.evolution": z.enum(["none", "basic"]).default("none").describe(
    "Debezium JDBC sink's schema evolution. basic: a field the table lacks becomes a new nullable column, and a value too wide for its column widens it (smallint → integer → bigint → numeric, varchar(n) → longer); a value that would need a narrowing or another kind of type (1.5 for an integer column) fails its record. none: such a record fails (errors.tolerance).",
  ),
  "auto.evolve": boolean().default(false).describe(
    'Kafka Connect JDBC\'s spelling of schema.evolution: true means "basic".',
  ),
  "validate.checksum": boolean().default(true).describe(
    "Compare a checksum of the keys the database wrote with the keys it was given.",
  ),
}).superRefine((config, context) => {
  checkConnection(config, context);
  for (const message of mappingProblems(config["fields.mapping"] ?? [])) {
    context.addIssue({ code: "custom", message, path: ["fields.mapping"], input: undefined });
  }
}, { when: always });

/**
 * What is wrong with `fields.mapping` entries, one sentence each: an entry
 * that is not `source:target` would otherwise be dropped without a word and
 * its field written under its own name (or fail later as an unknown column).
 */
function mappingProblems(entries: readonly string[]): string[] {
  const problems: string[] = [];
  const targets = new Map<string, string>();
  const sources = new Set<string>();
  for (const entry of entries) {
    const parts = entry.split(":").map((part) => part.trim());
    if (parts.length !== 2 || !parts[0] || !parts[1]) {
      problems.push(
        `each entry must be "source_field:target_column": current entry is ${
          JSON.stringify(entry)
        }`,
      );
      continue;
    }
    const [from, to] = parts;
    if (sources.has(from)) problems.push(`maps field "${from}" twice`);
    const other = targets.get(to);
    if (other !== undefined && other !== from) {
      problems.push(`maps both "${other}" and "${from}" to column "${to}"`);
    }
    sources.add(from);
    targets.set(to, from);
  }
  return problems;
}

/** The sink's settings, as the rest of the sink reads them. */
export interface Settings {
  readonly connection: ConnectionConfig;
  /** A fixed target table, or undefined when each record's topic names it. */
  readonly table?: string;
  readonly tableNameFormat: string;
  readonly primaryKeyFields?: readonly string[];
  /** Source field → target column. */
  readonly mapping: ReadonlyMap<string, string>;
  readonly excludedFields: ReadonlySet<string>;
  readonly insertMode: "upsert" | "insert";
  readonly deleteMode: "soft" | "hard" | "none";
  readonly softDeleteColumn: string;
  /** `session.replication.role`: replica applies changes without the target's keys and triggers. */
  readonly replicationRole: "origin" | "replica";
  readonly writeTimestampColumn?: string;
  readonly offsetsTable: string;
  readonly positionColumn?: string;
  /** Whether the end of a table's snapshot sweeps the rows it did not write. */
  readonly snapshotSweep: boolean;
  /** Column holding the source row's version (the version guard), when set. */
  readonly versionColumn?: string;
  readonly autoCreate: boolean;
  readonly schemaEvolution: "none" | "basic";
  readonly validateChecksum: boolean;
}

/** The sink's config schema: dotted Kafka Connect keys in, {@linkcode Settings} out. */
export const schema = options.transform((config): Settings => {
  const connection: ConnectionConfig = {};
  for (const key of Object.keys(connectionOptions) as (keyof ConnectionConfig)[]) {
    // deno-lint-ignore no-explicit-any
    if (config[key] !== undefined) (connection as any)[key] = config[key];
  }
  return {
    connection,
    table: config.table,
    tableNameFormat: config["table.name.format"],
    primaryKeyFields: config["primary.key.fields"],
    mapping: parseMapping(config["fields.mapping"]),
    excludedFields: new Set(config["fields.exclude"]),
    insertMode: config["insert.mode"],
    deleteMode: config["delete.mode"],
    softDeleteColumn: config["soft.delete.column"],
    replicationRole: config["session.replication.role"],
    writeTimestampColumn: config["write.timestamp.column"],
    offsetsTable: config["offsets.table"],
    positionColumn: config["source.position.column"] || undefined,
    snapshotSweep: config["snapshot.sweep"],
    versionColumn: config["version.column"] || undefined,
    autoCreate: config["auto.create"],
    schemaEvolution: config["auto.evolve"] ? "basic" : config["schema.evolution"],
    validateChecksum: config["validate.checksum"],
  };
});

function parseMapping(pairs: readonly string[]): Map<string, string> {
  const mapping = new Map<string, string>();
  for (const pair of pairs) {
    // Entries were checked by the schema (mappingProblems).
    const [from, to] = pair.split(":").map((part) => part.trim());
    mapping.set(from, to);
  }
  return mapping;
}
