/**
 * `postgres`: writes records into PostgreSQL tables, set-based.
 *
 * Each batch is copied (COPY, text format) into a temporary staging table and
 * merged with one `INSERT … SELECT … ON CONFLICT (key) DO UPDATE` per table,
 * in one transaction together with the pipeline's offset. A row the target
 * rejects (a value that does not fit a column, a failed constraint) is found
 * by bisecting the batch under savepoints and handed to the dead-letter
 * destination; the rest of the batch lands.
 *
 * Change events (`op` c/u/r) are upserts of their `after` image; deletes
 * (`op` d, or a tombstone) become soft deletes (`deleted_at` set) or hard
 * deletes, as `delete.mode` says; a truncate (`op` t) soft-deletes or
 * deletes every row (`delete.mode` none ignores it). Columns an event leaves
 * out (unchanged TOAST values) keep their stored value. When the table has
 * the `source.position.column` (e.g. `_source_lsn pg_lsn`), every write
 * stores the event's commit LSN there and events older than the row's are
 * skipped, so replaying a stream from an older position never rolls a row
 * back.
 *
 * ```json
 * { "sink.class": "postgres",
 *   "sink.connection.url": "${env:CITIZEN_URL}",
 *   "sink.table": "public.profile_summary",
 *   "sink.fields.mapping": "full_name:display_name,updated_at:source_updated_at",
 *   "sink.write.timestamp.column": "synced_at",
 *   "sink.delete.mode": "soft" }
 * ```
 *
 * @module
 */
import type postgres from "postgres";
import { z } from "zod";
import { always, boolean, list } from "../../api/options.ts";
import {
  type DeadLetterWriter,
  defineSink,
  type RecordFailure,
  type SinkBatch,
  type SinkResult,
  type ValidationCheck,
} from "../../api/plugin.ts";
import {
  type ChangeEvent,
  isChangeEvent,
  type JsonValue,
  type Row,
  type SluiceRecord,
} from "../../api/record.ts";
import { errorMessage, RetriableError } from "../../api/errors.ts";
import { deadLetterEntry } from "../../api/dead_letters.ts";
import { encodeJson } from "../../api/json.ts";
import {
  checkConnection,
  connect,
  connectionOptions,
  connectionUrl,
  createOnce,
  isConnectionError,
  parseTableName,
  type Sql,
} from "../../drivers/postgres.ts";
import { changePosition } from "../../drivers/pg_codec.ts";
import { keyHash, TargetTable } from "./_table.ts";

const schema = z.strictObject({
  ...connectionOptions,
  table: z.string().optional().describe(
    "Target table as schema.table. Default: table.name.format.",
  ),
  "table.name.format": z.string().default("${topic}").describe(
    "Target table from the record's topic: ${topic} is replaced by the topic (Kafka Connect JDBC).",
  ),
  "primary.key.fields": list().optional().describe(
    "Key columns of the target (after mapping); default: its primary key.",
  ),
  "fields.mapping": list().default([]).describe(
    'Renames: "source_field:target_column,…". Fields the target lacks are ignored (logged once).',
  ),
  "insert.mode": z.enum(["upsert", "insert"]).default("upsert").describe(
    "upsert: insert or update by key (idempotent). insert: plain INSERT, duplicates fail.",
  ),
  "delete.mode": z.enum(["soft", "hard", "none"]).default("soft").describe(
    "How deletes and tombstones apply: soft sets soft.delete.column, hard deletes the row, none ignores them.",
  ),
  "soft.delete.column": z.string().default("deleted_at").describe(
    "Timestamp column set by soft deletes and cleared by later upserts.",
  ),
  "write.timestamp.column": z.string().optional().describe(
    "Column set to now() on every write, e.g. synced_at (ignored when the table lacks it).",
  ),
  "offsets.table": z.string().default("public.sluice_offsets").describe(
    "Table that keeps pipeline offsets, written in the same transaction as the rows.",
  ),
  "source.position.column": z.string().default("_source_lsn").describe(
    "Stale-event guard for change events: when the target table has this column (pg_lsn, or a numeric type), each write stores the event's source position (the commit LSN: source.sequence[0], else source.lsn) there, and an event older than the row's stored position is skipped, so a replay cannot roll a row back. Tombstones are then ignored (the delete event before them carries the position). Empty: off.",
  ),
  "validate.checksum": boolean().default(true).describe(
    "Compare a checksum of the keys the database wrote with the keys it was given.",
  ),
}).superRefine((config, context) => checkConnection(config, context), { when: always });

type Config = z.output<typeof schema>;

/** What the sink needs of a client or a transaction. */
type Transaction = postgres.TransactionSql;

/** One upsert, delete or truncate, ready for the table. */
interface Operation {
  kind: "upsert" | "delete" | "truncate";
  record: SluiceRecord;
  row: Row;
  /** The key columns' values as one string, computed once (see {@linkcode keyOf}). */
  key?: string;
}

/** The identity of an operation's row in its table. */
function keyOf(table: TargetTable, operation: Operation): string {
  if (operation.key !== undefined) return operation.key;
  const columns = table.primaryKey;
  operation.key = columns.length === 1
    ? String(operation.row[columns[0]])
    : columns.map((c) => String(operation.row[c])).join("\u001f");
  return operation.key;
}

export default defineSink({
  name: "postgres",
  aliases: [
    "io.debezium.connector.jdbc.JdbcSinkConnector",
    "io.confluent.connect.jdbc.JdbcSinkConnector",
  ],
  summary: "Upserts rows and change events into PostgreSQL tables, with soft or hard deletes.",
  plan(config) {
    return { destination: `postgres ${config.table ?? config["table.name.format"]}` };
  },
  config: schema,
  async create(config, context) {
    const url = connectionUrl(config);
    const open = () => connect(url, { max: 1, applicationName: `sluice:${context.pipeline}` });
    let sql = open();
    /**
     * After a lost connection the client is replaced, not reused: postgres.js
     * can be left wedged (its next transaction never starts) when the server
     * went away in the middle of a COPY.
     */
    const replaceClient = () => {
      const dead = sql;
      sql = open();
      dead.end({ timeout: 0 }).catch(() => {});
    };
    const offsetsTable = parseTableName(config["offsets.table"]).quoted;
    const mapping = parseMapping(config["fields.mapping"]);
    const tables = new Map<string, TargetTable>();
    const ignoredLogged = new Set<string>();
    const totals = { given: 0, written: 0, givenChecksum: 0n, writtenChecksum: 0n };

    try {
      await createOnce(
        sql,
        `create table if not exists ${offsetsTable} (
           pipeline text primary key, "offset" jsonb not null,
           updated_at timestamptz not null default now())`,
      );
    } catch (error) {
      await sql.end({ timeout: 1 });
      throw wrap(error, "Cannot prepare the offsets table");
    }

    async function tableFor(record: SluiceRecord): Promise<TargetTable> {
      const name = config.table ?? config["table.name.format"].replaceAll("${topic}", record.topic);
      let table = tables.get(name);
      if (!table) {
        table = await TargetTable.open(sql, name, {
          insertMode: config["insert.mode"],
          deleteMode: config["delete.mode"],
          softDeleteColumn: config["soft.delete.column"],
          writeTimestampColumn: config["write.timestamp.column"],
          primaryKey: config["primary.key.fields"],
          positionColumn: config["source.position.column"] || undefined,
        });
        tables.set(name, table);
      }
      return table;
    }

    /** Per table: source field → target column, or null when the table lacks it. */
    const columnOf = new Map<TargetTable, Map<string, string | null>>();

    /** Maps field names and keeps the target's columns. */
    function project(table: TargetTable, source: Row): Row {
      let columns = columnOf.get(table);
      if (!columns) columnOf.set(table, columns = new Map());
      const row: Row = {};
      let ignored: string[] | undefined;
      for (const field in source) {
        let column = columns.get(field);
        if (column === undefined) {
          const mapped = mapping.get(field) ?? field;
          column = table.columns.has(mapped) ? mapped : null;
          columns.set(field, column);
        }
        if (column !== null) row[column] = source[field];
        else (ignored ??= []).push(field);
      }
      if (ignored && !ignoredLogged.has(table.name)) {
        ignoredLogged.add(table.name);
        context.logger.info("Fields not in {table} are not written: {fields}", {
          table: table.name,
          fields: ignored.join(", "),
        });
      }
      return row;
    }

    function operationOf(table: TargetTable, record: SluiceRecord): Operation | undefined {
      const value = record.value;
      if (value === null || value === undefined) {
        // With a position column the delete event carries the delete (and its
        // position); an unpositioned tombstone replayed later could delete a
        // row that was re-created since.
        if (table.positionColumn) return undefined;
        return record.key ? { kind: "delete", record, row: project(table, record.key) } : undefined;
      }
      if (isChangeEvent(value)) {
        const operation = changeOperation(table, record, value);
        const column = table.positionColumn;
        const position = column ? record.position ?? changePosition(value.source) : undefined;
        // A bigint: the column's encoder writes it as an LSN or a number.
        if (operation && column && position !== undefined) operation.row[column] = position;
        return operation;
      }
      return { kind: "upsert", record, row: project(table, value as Row) };
    }

    function changeOperation(
      table: TargetTable,
      record: SluiceRecord,
      value: ChangeEvent,
    ): Operation | undefined {
      if (value.op === "d") {
        const image = value.before ?? record.key ?? {};
        return { kind: "delete", record, row: project(table, { ...record.key, ...image }) };
      }
      if (value.op === "t") return { kind: "truncate", record, row: {} };
      if (!value.after) return undefined;
      return { kind: "upsert", record, row: project(table, value.after) };
    }

    /** Applies one run of same-kind operations on one table, isolating rejected rows. */
    async function apply(
      tx: Transaction,
      table: TargetTable,
      kind: Operation["kind"],
      operations: Operation[],
      failures: RecordFailure[],
    ): Promise<{ written: number; skipped: number }> {
      if (kind !== "upsert" && table.deletes === "none") {
        return { written: 0, skipped: operations.length };
      }
      if (kind === "truncate") {
        const column = table.positionColumn;
        for (const { record } of operations) {
          const value = record.value as ChangeEvent;
          const position = column ? record.position ?? changePosition(value.source) : undefined;
          await table.truncate(
            tx,
            position === undefined ? undefined : table.positionText(position),
          );
        }
        return { written: operations.length, skipped: 0 };
      }
      // The last operation on a key wins; ON CONFLICT cannot touch a row twice.
      // Upserts of one key are merged instead: a change event leaves out the
      // columns it does not carry (unchanged TOAST values), which keep the
      // value an earlier event of the run gave them.
      const byKey = new Map<string, Operation>();
      const failedBefore = failures.length;
      operations: for (const operation of operations) {
        for (const column of table.primaryKey) {
          const value = operation.row[column];
          if (value === undefined || value === null) {
            failures.push({
              record: operation.record,
              error: new Error(
                `key column "${column}" of table "${table.name}" is missing or null`,
              ),
              stage: "sink",
            });
            continue operations;
          }
        }
        const key = keyOf(table, operation);
        const earlier = byKey.get(key);
        if (earlier === undefined) {
          byKey.set(key, operation);
          continue;
        }
        // Re-inserted so that the map's order is the order of each key's last operation.
        byKey.delete(key);
        byKey.set(
          key,
          kind === "upsert"
            ? { ...operation, row: { ...earlier.row, ...operation.row } }
            : operation,
        );
      }
      const unique = [...byKey.values()];
      const superseded = operations.length - unique.length - (failures.length - failedBefore);
      if (unique.length === 0) return { written: superseded, skipped: 0 };
      // Rows are written in groups with the same columns, so that a row
      // leaving a column out never overwrites it with null.
      const groups = new Map<string, { columns: string[]; operations: Operation[] }>();
      const position = table.positionColumn;
      for (const operation of unique) {
        const columns = kind === "delete"
          ? [
            ...table.primaryKey,
            ...(position && operation.row[position] !== undefined ? [position] : []),
          ]
          : Object.keys(operation.row);
        // Rows of one source list their fields in one order, so no sorting is needed.
        const signature = columns.join("\u0000");
        const group = groups.get(signature);
        if (group) group.operations.push(operation);
        else groups.set(signature, { columns, operations: [operation] });
      }
      let written = superseded;
      let skipped = 0;
      for (const group of groups.values()) {
        const result = await applyGroup(tx, table, kind, group.columns, group.operations, failures);
        written += result.written;
        skipped += result.skipped;
      }
      return { written, skipped };
    }

    /** Writes operations on distinct keys that carry the same columns. */
    async function applyGroup(
      tx: Transaction,
      table: TargetTable,
      kind: "upsert" | "delete",
      columns: string[],
      unique: Operation[],
      failures: RecordFailure[],
    ): Promise<{ written: number; skipped: number }> {
      const rows = unique.map((op) => op.row);
      // An update event means the row exists: COPY would only fail, so merge.
      const updates = unique.some((op) =>
        isChangeEvent(op.record.value) && op.record.value.op === "u"
      );
      if (kind === "upsert" && table.bulk && !updates) {
        try {
          const count = await tx.savepoint((sp) => table.copyInto(sp, columns, rows));
          return { written: count, skipped: 0 };
        } catch (error) {
          if (isConnectionError(error)) throw error;
          table.bulk = false;
          context.logger.debug("Bulk COPY into {table} ended: {error}", {
            table: table.name,
            error: errorMessage(error),
          });
        }
      }
      await table.stage(tx, columns, rows);
      const failedBefore = failures.length;
      let count = 0;
      let writtenChecksum = 0n;
      const attempt = async (first: number, last: number): Promise<void> => {
        try {
          const result = await tx.savepoint((sp) =>
            kind === "delete"
              ? table.delete(sp, first, last, columns)
              : table.merge(sp, columns, first, last)
          );
          count += result.count;
          writtenChecksum += result.checksum;
        } catch (error) {
          if (isConnectionError(error)) throw error;
          if (first === last) {
            failures.push({
              record: unique[first - 1].record,
              error: error instanceof Error ? error : new Error(String(error)),
              stage: "sink",
            });
            return;
          }
          const middle = Math.floor((first + last) / 2);
          await attempt(first, middle);
          await attempt(middle + 1, last);
        }
      };
      await attempt(1, unique.length);
      const rejected = new Set(failures.slice(failedBefore).map((f) => f.record));
      const applied = unique.filter((op) => !rejected.has(op.record));
      // Only the stale-event guard may skip upserts; any other row the database
      // did not write (a trigger, a rule) must fail validation.
      const staleGuard = kind === "upsert" && table.positionColumn !== undefined;
      if (kind === "upsert") {
        totals.writtenChecksum += writtenChecksum;
        if (count === applied.length || !staleGuard) {
          for (const op of applied) {
            totals.givenChecksum += keyHash(table.primaryKey.map((c) => op.row[c]));
          }
        } else {
          // Stale events were skipped on purpose: the check covers what was written.
          totals.givenChecksum += writtenChecksum;
        }
      }
      // A delete of a row that is absent (or already deleted), or an event
      // older than the row (stale-event guard), changes nothing: skipped.
      const skipped = kind === "upsert" && !staleGuard ? 0 : applied.length - count;
      return { written: count, skipped };
    }

    async function writeOnce(batch: SinkBatch): Promise<SinkResult> {
      const failures: RecordFailure[] = [];
      let written = 0;
      let skipped = 0;
      // Consecutive operations on one table go together, in order per key (see
      // `runsOf`). Tables are looked up first: the transaction holds the only connection.
      const runs: Run[] = [];
      let segment: { table: TargetTable; operations: Operation[] } | undefined;
      for (const record of batch.records) {
        const table = await tableFor(record);
        const operation = operationOf(table, record);
        if (!operation) {
          skipped++;
          continue;
        }
        if (segment && segment.table !== table) {
          runs.push(...runsOf(segment.table, segment.operations));
          segment = undefined;
        }
        segment ??= { table, operations: [] };
        segment.operations.push(operation);
      }
      if (segment) runs.push(...runsOf(segment.table, segment.operations));
      await sql.begin(async (tx) => {
        for (const run of runs) {
          const result = await apply(tx, run.table, run.kind, run.operations, failures);
          written += result.written;
          skipped += result.skipped;
        }
        // Dead letters are safe (or the pipeline stops) before the batch commits.
        if (failures.length > 0) await batch.reject(failures);
        if (batch.offset) {
          await tx.unsafe(
            `insert into ${offsetsTable} (pipeline, "offset") values ($1, $2::text::jsonb)
             on conflict (pipeline) do update set "offset" = excluded."offset", updated_at = now()`,
            [batch.offset.key, JSON.stringify(batch.offset.value)],
          );
        }
      });
      return { written, skipped };
    }

    async function write(batch: SinkBatch): Promise<SinkResult> {
      try {
        return await writeOnce(batch);
      } catch (error) {
        if (!isConnectionError(error)) throw error;
        replaceClient();
        throw wrap(error, "Cannot write to PostgreSQL");
      }
    }

    return {
      write,
      offsets: {
        async read(key: string): Promise<JsonValue | undefined> {
          const rows = await sql.unsafe<{ offset: JsonValue }[]>(
            `select "offset" from ${offsetsTable} where pipeline = $1`,
            [key],
          );
          return rows[0]?.offset;
        },
      },
      deadLetters(destination: string): DeadLetterWriter {
        return postgresDeadLetters(url, destination);
      },
      async validate(): Promise<ValidationCheck[]> {
        const checks: ValidationCheck[] = [];
        // A table loaded only by bulk COPY: its row count must equal the rows copied
        // (COPY does not say how many rows triggers or rules let through).
        for (const table of tables.values()) {
          if (!table.bulk || table.bulkRows === 0) continue;
          const count = await table.count(sql);
          checks.push({
            name: "target row count",
            ok: count === table.bulkRows,
            detail: `${table.name} holds ${count} rows after a bulk load of ${table.bulkRows}`,
          });
        }
        if (config["validate.checksum"]) {
          checks.push({
            name: "target key checksum",
            ok: totals.givenChecksum === totals.writtenChecksum,
            detail:
              `checksum of keys given ${totals.givenChecksum}, written ${totals.writtenChecksum}`,
          });
        }
        return checks;
      },
      async close() {
        await sql.end({ timeout: 5 });
      },
    };
  },
});

/** Operations of one kind on one table, applied by one set-based statement. */
interface Run {
  table: TargetTable;
  kind: Operation["kind"];
  operations: Operation[];
}

/**
 * Splits one table's consecutive operations into runs that keep each key's
 * order: round n holds every key's n-th streak of same-kind operations (its
 * upserts, merged, or its deletes), as a delete run then an upsert run.
 * Change streams interleave upserts and deletes of different keys; this
 * keeps them to a few statements instead of one per alternation. A
 * truncate is a barrier: it ends the rounds before it.
 */
function runsOf(table: TargetTable, operations: readonly Operation[]): Run[] {
  // Batch rows are all upserts: one run, nothing to order.
  const kind = operations[0]?.kind;
  if (kind !== "truncate" && operations.every((operation) => operation.kind === kind)) {
    return kind ? [{ table, kind, operations: [...operations] }] : [];
  }
  const runs: Run[] = [];
  let streaks = new Map<string, Operation[][]>();
  const flush = () => {
    for (let round = 0;; round++) {
      const deletes: Operation[] = [];
      const upserts: Operation[] = [];
      for (const list of streaks.values()) {
        const streak = list[round];
        if (!streak) continue;
        (streak[0].kind === "delete" ? deletes : upserts).push(...streak);
      }
      if (deletes.length === 0 && upserts.length === 0) break;
      if (deletes.length > 0) runs.push({ table, kind: "delete", operations: deletes });
      if (upserts.length > 0) runs.push({ table, kind: "upsert", operations: upserts });
    }
    streaks = new Map();
  };
  for (const operation of operations) {
    if (operation.kind === "truncate") {
      flush();
      runs.push({ table, kind: "truncate", operations: [operation] });
      continue;
    }
    const key = keyOf(table, operation);
    const list = streaks.get(key);
    const last = list?.at(-1);
    if (!list) streaks.set(key, [[operation]]);
    else if (last![0].kind === operation.kind) last!.push(operation);
    else list.push([operation]);
  }
  flush();
  return runs;
}

function parseMapping(pairs: readonly string[]): Map<string, string> {
  const mapping = new Map<string, string>();
  for (const pair of pairs) {
    const [from, to] = pair.split(":").map((part) => part.trim());
    if (from && to) mapping.set(from, to);
  }
  return mapping;
}

function wrap(error: unknown, what: string): Error {
  const message = `${what}: ${errorMessage(error)}`;
  return isConnectionError(error)
    ? new RetriableError(message, { cause: error })
    : new Error(message, { cause: error });
}

/** A dead-letter table in the sink's database, created when missing. */
function postgresDeadLetters(url: string, tableName: string): DeadLetterWriter {
  const table = parseTableName(tableName).quoted;
  let sql: Sql | undefined;
  let ready: Promise<unknown> | undefined;
  return {
    description: `table ${tableName}`,
    async write(failures, pipeline) {
      sql ??= connect(url, { max: 1, applicationName: `sluice:${pipeline}:dead-letters` });
      ready ??= createOnce(
        sql,
        `create table if not exists ${table} (
           id bigserial primary key, pipeline text not null, stage text not null,
           error text not null, error_class text, topic text,
           record_key jsonb, record_value jsonb, headers jsonb,
           failed_at timestamptz not null default now())`,
      );
      await ready;
      const entries = failures.map((failure) => deadLetterEntry(failure, pipeline));
      await sql.unsafe(
        `insert into ${table} (pipeline, stage, error, error_class, topic, record_key, record_value, headers)
         select e->>'pipeline', e->>'stage', e->>'error', e->>'errorClass', e->>'topic',
                e->'key', e->'value', e->'headers'
         from jsonb_array_elements($1::text::jsonb) as e`,
        [encodeJson(entries)],
      );
    },
    async close() {
      await sql?.end({ timeout: 5 });
    },
  };
}
