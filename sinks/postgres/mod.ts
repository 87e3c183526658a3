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
 * deletes, as `delete.mode` says.
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
import { always, boolean, list } from "../../core/options.ts";
import {
  type DeadLetterWriter,
  defineSink,
  type RecordFailure,
  type SinkBatch,
  type SinkResult,
  type ValidationCheck,
} from "../../core/plugin.ts";
import { isChangeEvent, type JsonValue, type Row, type SluiceRecord } from "../../core/record.ts";
import { errorMessage, RetriableError } from "../../core/errors.ts";
import { deadLetterEntry } from "../../core/dead_letters.ts";
import { encodeJson } from "../../core/json.ts";
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
  "validate.checksum": boolean().default(true).describe(
    "Compare a checksum of the keys the database wrote with the keys it was given.",
  ),
}).superRefine((config, context) => checkConnection(config, context), { when: always });

type Config = z.output<typeof schema>;

/** What the sink needs of a client or a transaction. */
type Transaction = postgres.TransactionSql;

/** One upsert or delete, ready for the table. */
interface Operation {
  kind: "upsert" | "delete";
  record: SluiceRecord;
  row: Row;
}

export default defineSink({
  name: "postgres",
  aliases: [
    "io.debezium.connector.jdbc.JdbcSinkConnector",
    "io.confluent.connect.jdbc.JdbcSinkConnector",
  ],
  summary: "Upserts rows and change events into PostgreSQL tables, with soft or hard deletes.",
  config: schema,
  async create(config, context) {
    const url = connectionUrl(config);
    const sql = connect(url, { max: 1, applicationName: `sluice:${context.pipeline}` });
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
        });
        tables.set(name, table);
      }
      return table;
    }

    /** Maps field names and keeps the target's columns. */
    function project(table: TargetTable, source: Row): Row {
      const row: Row = {};
      const ignored: string[] = [];
      for (const [field, value] of Object.entries(source)) {
        const column = mapping.get(field) ?? field;
        if (table.columns.has(column)) row[column] = value;
        else ignored.push(field);
      }
      if (ignored.length > 0 && !ignoredLogged.has(table.name)) {
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
        return record.key ? { kind: "delete", record, row: project(table, record.key) } : undefined;
      }
      if (isChangeEvent(value)) {
        if (value.op === "d") {
          const image = value.before ?? record.key ?? {};
          return { kind: "delete", record, row: project(table, { ...record.key, ...image }) };
        }
        if (value.op === "t" || !value.after) return undefined;
        return { kind: "upsert", record, row: project(table, value.after) };
      }
      return { kind: "upsert", record, row: project(table, value as Row) };
    }

    /** Applies one run of same-kind operations on one table, isolating rejected rows. */
    async function apply(
      tx: Transaction,
      table: TargetTable,
      kind: "upsert" | "delete",
      operations: Operation[],
      failures: RecordFailure[],
    ): Promise<{ written: number; skipped: number }> {
      if (kind === "delete" && table.deletes === "none") {
        return { written: 0, skipped: operations.length };
      }
      // The last operation on a key wins; ON CONFLICT cannot touch a row twice.
      const byKey = new Map<string, Operation>();
      for (const operation of operations) {
        const missing = table.primaryKey.find((c) =>
          operation.row[c] === undefined || operation.row[c] === null
        );
        if (missing) {
          failures.push({
            record: operation.record,
            error: new Error(`key column "${missing}" of table "${table.name}" is missing or null`),
            stage: "sink",
          });
          continue;
        }
        const key = table.primaryKey.map((c) => String(operation.row[c])).join("\u001f");
        byKey.delete(key);
        byKey.set(key, operation);
      }
      const unique = [...byKey.values()];
      const superseded = operations.length - unique.length -
        operations.filter((op) => failures.some((f) => f.record === op.record)).length;
      if (unique.length === 0) return { written: superseded, skipped: 0 };
      const columns = kind === "delete" ? [...table.primaryKey] : columnsOf(unique);
      await table.stage(tx, columns, unique.map((op) => op.row));
      const failedBefore = failures.length;
      let count = 0;
      const attempt = async (first: number, last: number): Promise<void> => {
        try {
          const result = await tx.savepoint((sp) =>
            kind === "delete"
              ? table.delete(sp, first, last)
              : table.merge(sp, columns, first, last)
          );
          count += result.count;
          if (kind === "upsert") totals.writtenChecksum += result.checksum;
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
      if (kind === "upsert") {
        for (const op of applied) {
          totals.givenChecksum += keyHash(table.primaryKey.map((c) => op.row[c]));
        }
      }
      // A delete of a row that is absent (or already deleted) changes nothing: skipped.
      const skipped = kind === "delete" ? applied.length - count : 0;
      return { written: count + superseded, skipped };
    }

    async function write(batch: SinkBatch): Promise<SinkResult> {
      const failures: RecordFailure[] = [];
      let written = 0;
      let skipped = 0;
      // Consecutive operations of one kind on one table go together, preserving order.
      // Tables are looked up first: the transaction holds the only connection.
      const runs: { table: TargetTable; kind: Operation["kind"]; operations: Operation[] }[] = [];
      for (const record of batch.records) {
        const table = await tableFor(record);
        const operation = operationOf(table, record);
        if (!operation) {
          skipped++;
          continue;
        }
        const last = runs.at(-1);
        if (last && last.table === table && last.kind === operation.kind) {
          last.operations.push(operation);
        } else runs.push({ table, kind: operation.kind, operations: [operation] });
      }
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
      }).catch((error) => {
        throw isConnectionError(error) ? wrap(error, "Cannot write to PostgreSQL") : error;
      });
      return { written, skipped };
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
      validate(): Promise<ValidationCheck[]> {
        if (!config["validate.checksum"]) return Promise.resolve([]);
        return Promise.resolve([{
          name: "target key checksum",
          ok: totals.givenChecksum === totals.writtenChecksum,
          detail:
            `checksum of keys given ${totals.givenChecksum}, written ${totals.writtenChecksum}`,
        }]);
      },
      async close() {
        await sql.end({ timeout: 5 });
      },
    };
  },
});

function columnsOf(operations: readonly Operation[]): string[] {
  const columns = new Set<string>();
  for (const op of operations) for (const column of Object.keys(op.row)) columns.add(column);
  return [...columns];
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
