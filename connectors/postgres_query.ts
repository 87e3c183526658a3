/**
 * `postgres_query`: reads a table or a query from PostgreSQL in batch jobs.
 *
 * - `mode: full` reads every row on every run, streamed with COPY.
 * - `mode: incremental` reads rows changed since the last run, in keyset
 *   order of (`timestamp.column.name`, key columns), in chunks of
 *   `chunk.size`. The watermark (last timestamp and key) is the offset, so
 *   rows sharing one timestamp across a chunk boundary are neither skipped
 *   nor read twice. A run reads in one REPEATABLE READ snapshot and records
 *   that snapshot's oldest running transaction; the next run also reads rows
 *   written by transactions that were still running then (found by their
 *   `xmin`), so a long transaction that commits a row with an `updated_at`
 *   older than the watermark is not missed. (Table mode only: a `query` has
 *   no `xmin`. When no transaction was running, the next run skips that scan.)
 *
 * ```json
 * { "name": "profile_sync",
 *   "config": {
 *     "connector.class": "postgres_query",
 *     "connection.url": "${env:WAREHOUSE_URL}",
 *     "table": "public.profile_360",
 *     "mode": "incremental",
 *     "timestamp.column.name": "updated_at",
 *     "chunk.size": "5000",
 *     "sink.class": "postgres",
 *     "sink.connection.url": "${env:CITIZEN_URL}",
 *     "sink.table": "public.profile_summary",
 *     "job.schedule": "0 * * * *" } }
 * ```
 *
 * @module
 */
import { z } from "zod";
import { always, boolean, list, positiveInteger } from "../api/options.ts";
import { defineSource, type SourceBatch, type ValidationCheck } from "../api/plugin.ts";
import type { JsonValue, Row, SluiceRecord } from "../api/record.ts";
import { RetriableError } from "../api/errors.ts";
import {
  checkConnection,
  connect,
  connectionOptions,
  connectionUrl,
  isConnectionError,
  parseTableName,
  primaryKeyColumns,
  quoteIdent,
  type Sql,
} from "../drivers/postgres.ts";
import { decodeRawRow, parseCopyText } from "../drivers/pg_types.ts";
import { PgCodec } from "../drivers/pg_codec.ts";
import type { Decoder } from "../drivers/pg_text.ts";

const MODES = { full: "full", bulk: "full", incremental: "incremental", timestamp: "incremental" };

const schema = z.strictObject({
  ...connectionOptions,
  table: z.string().optional().describe("Table to read, as schema.table. Give this or query."),
  query: z.string().optional().describe(
    "A SELECT to read instead of a table (no late-commit protection: a query has no xmin).",
  ),
  mode: z.enum(Object.keys(MODES) as [keyof typeof MODES]).default("full")
    .transform((mode) => MODES[mode] as "full" | "incremental")
    .describe(
      "full: every row on every run. incremental: rows changed since the last run (bulk and timestamp are accepted as aliases).",
    ),
  "timestamp.column.name": z.string().default("updated_at").describe(
    "Column that tells when a row last changed (incremental mode).",
  ),
  "key.columns": list().optional().describe(
    "Columns that identify a row and break ties between equal timestamps; default: the table's primary key.",
  ),
  columns: list().optional().describe("Columns to read; default: all."),
  where: z.string().optional().describe("An SQL condition rows must meet, e.g. is_active."),
  "chunk.size": positiveInteger().default(2000).describe(
    "Rows per chunk; each chunk is written and its watermark committed before the next is read.",
  ),
  "batch.max.rows": positiveInteger().optional().describe(
    "Alias of chunk.size (Kafka Connect JDBC).",
  ),
  copy: boolean().default(true).describe(
    "Read full loads (full mode, and the first run of an incremental job) with COPY.",
  ),
  topic: z.string().optional().describe(
    "Topic of the records; default: schema.table, or the pipeline name for a query.",
  ),
}).superRefine((config, context) => {
  checkConnection(config, context);
  if (!config.table === !config.query) {
    context.addIssue({
      code: "custom",
      path: ["table"],
      message: "give exactly one of table and query",
      input: undefined,
    });
  }
  if (config.query && config.mode === "incremental" && !config["key.columns"]) {
    context.addIssue({
      code: "custom",
      path: ["key.columns"],
      message: "is required for an incremental query (there is no primary key to read)",
      input: undefined,
    });
  }
}, { when: always });

/** The offset of an incremental job. */
interface Watermark {
  /** Timestamp of the last row read, as PostgreSQL text; null before any row. */
  ts: string | null;
  /** Key of the last row read. */
  key: JsonValue[] | null;
  /** Oldest transaction still running when the snapshot that read up to here was taken. */
  xmin: string | null;
}

function isWatermark(value: JsonValue | undefined): value is Watermark & JsonValue {
  return typeof value === "object" && value !== null && !Array.isArray(value) && "ts" in value &&
    "key" in value;
}

export default defineSource({
  name: "postgres_query",
  aliases: ["io.confluent.connect.jdbc.JdbcSourceConnector"],
  mode: "batch",
  summary: "Reads a PostgreSQL table or query, fully or incrementally by a timestamp column.",
  config: schema,
  create(config, context) {
    const url = connectionUrl(config);
    const chunkSize = config["batch.max.rows"] ?? config["chunk.size"];
    const table = config.table ? parseTableName(config.table) : undefined;
    const topic = config.topic ?? (table ? `${table.schema}.${table.table}` : context.pipeline);
    let expected: number | undefined;
    let readCount = 0;
    let sql: Sql | undefined;

    async function* read(): AsyncGenerator<SourceBatch> {
      // One connection, one REPEATABLE READ snapshot for the whole run.
      sql = connect(url, { max: 1, applicationName: `sluice:${context.pipeline}` });
      try {
        yield* readInSnapshot(sql);
      } catch (error) {
        if (isConnectionError(error)) {
          throw new RetriableError(`Cannot read from PostgreSQL: ${(error as Error).message}`, {
            cause: error,
          });
        }
        throw error;
      } finally {
        await sql.end({ timeout: 1 });
        sql = undefined;
      }
    }

    async function* readInSnapshot(sql: Sql): AsyncGenerator<SourceBatch> {
      await sql.unsafe("begin isolation level repeatable read read only");
      // xmin: the oldest transaction still running; quiet: none was running.
      const [{ xmin, quiet }] = await sql.unsafe<{ xmin: string; quiet: boolean }[]>(
        `select (pg_snapshot_xmin(s)::text::numeric % 4294967296)::text as xmin,
                pg_snapshot_xmin(s) = pg_snapshot_xmax(s) as quiet
         from pg_current_snapshot() as s`,
      );
      const from = table ? `${table.quoted}` : `(${config.query}) as sluice_query`;
      const columnList = config.columns?.map(quoteIdent).join(", ") ?? "*";
      const probe = await sql.unsafe(`select ${columnList} from ${from} limit 0`).raw();
      const names = probe.columns.map((column) => column.name);
      const decoders = await new PgCodec(sql).decoders(
        probe.columns.map((c) => ({ typeOid: c.type })),
      );
      const keyColumns = config["key.columns"] ??
        (table ? await primaryKeyColumns(sql, table.quoted) : []);
      if (keyColumns.length === 0) {
        throw new Error(
          `Cannot read ${config.table}: it has no primary key; set key.columns`,
        );
      }
      for (const column of keyColumns) {
        if (!names.includes(column)) {
          throw new Error(
            `key column "${column}" is not among the columns read: ${names.join(", ")}`,
          );
        }
      }
      const toRecord = (row: Row): SluiceRecord => ({
        topic,
        key: Object.fromEntries(keyColumns.map((column) => [column, row[column]])),
        value: row,
      });
      const userWhere = config.where ? `(${config.where})` : "true";
      const select = `select ${columnList} from ${from}`;

      if (config.mode === "full") {
        expected = await count(sql, `${select} where ${userWhere}`);
        for await (
          const rows of copyRows(sql, `${select} where ${userWhere}`, names, decoders, chunkSize)
        ) {
          readCount += rows.length;
          yield { records: rows.map(toRecord) };
        }
        return;
      }

      const tsColumn = config["timestamp.column.name"];
      if (!names.includes(tsColumn)) {
        throw new Error(
          `timestamp column "${tsColumn}" is not among the columns read: ${names.join(", ")}`,
        );
      }
      const order = [tsColumn, ...keyColumns].map(quoteIdent);
      const tuple = `(${order.join(", ")})`;
      const orderBy = order.join(", ");
      const previous = isWatermark(context.offset) ? context.offset : undefined;
      const watermarkOf = (row: Row, snapshotXmin: string | null): Watermark => ({
        ts: row[tsColumn] as string,
        key: keyColumns.map((column) => row[column] as JsonValue),
        xmin: snapshotXmin,
      });
      // When no transaction was running at this snapshot, none can commit a row
      // behind the watermark later, and the next run needs no late-row scan.
      const newXmin = table && !quiet ? xmin : null;

      if (!previous || previous.ts === null) {
        // First run (or full refresh): everything up to the snapshot.
        expected = await count(sql, `${select} where ${userWhere}`);
        if (config.copy) {
          const last = await sql.unsafe(
            `${select} where ${userWhere} order by ${
              order.map((c) => `${c} desc`).join(", ")
            } limit 1`,
          ).raw();
          const lastRow = last[0] ? decodeRawRow(last[0] as Uint8Array[], names, decoders) : null;
          for await (
            const rows of copyRows(sql, `${select} where ${userWhere}`, names, decoders, chunkSize)
          ) {
            readCount += rows.length;
            yield { records: rows.map(toRecord) };
          }
          const final: Watermark = lastRow
            ? watermarkOf(lastRow, newXmin)
            : { ts: null, key: null, xmin: newXmin };
          yield { records: [], offset: final as unknown as JsonValue };
          return;
        }
        yield* keyset(sql, `${select} where ${userWhere}`, undefined, newXmin);
        return;
      }

      // Phase 1: rows at or behind the watermark written by transactions the
      // previous run could not see (they were still running at its snapshot).
      const lateFilter = table && previous.xmin !== null
        ? `${tuple} <= (${placeholders(1, order.length)}) and age(xmin) <= age($${
          order.length + 1
        }::text::xid)`
        : undefined;
      const lateParams: unknown[] = lateFilter
        ? [previous.ts, ...(previous.key ?? []), previous.xmin]
        : [];
      const aheadFilter = `${tuple} > (${placeholders(1, order.length)})`;
      const aheadParams: unknown[] = [previous.ts, ...(previous.key ?? [])];
      expected = await count(sql, `${select} where ${userWhere} and ${aheadFilter}`, aheadParams);
      if (lateFilter) {
        expected += await count(sql, `${select} where ${userWhere} and ${lateFilter}`, lateParams);
        // Until phase 1 is done, the stored position keeps the previous xmin.
        yield* keyset(
          sql,
          `${select} where ${userWhere} and ${lateFilter}`,
          lateParams,
          null,
          previous,
        );
      }
      // Phase 2: rows ahead of the watermark.
      yield* keyset(
        sql,
        `${select} where ${userWhere} and ${aheadFilter}`,
        aheadParams,
        newXmin,
        undefined,
        previous,
      );

      async function* keyset(
        sql: Sql,
        base: string,
        baseParams: unknown[] | undefined,
        snapshotXmin: string | null,
        /** When set, every chunk commits this unchanged position (phase 1). */
        holdAt?: Watermark,
        startAfter?: Watermark,
      ): AsyncGenerator<SourceBatch> {
        const params = baseParams ?? [];
        let cursor: Watermark | undefined;
        let lastCommitted: Watermark | undefined = startAfter;
        for (;;) {
          const cursorFilter = cursor
            ? ` and ${tuple} > (${placeholders(params.length + 1, order.length)})`
            : "";
          const cursorParams = cursor ? [cursor.ts, ...(cursor.key ?? [])] : [];
          const raw = await sql.unsafe(
            `${base}${cursorFilter} order by ${orderBy} limit ${chunkSize}`,
            [...params, ...cursorParams] as never[],
          ).raw();
          const rows = raw.map((r) => decodeRawRow(r as Uint8Array[], names, decoders));
          if (rows.length > 0) cursor = watermarkOf(rows[rows.length - 1], snapshotXmin);
          readCount += rows.length;
          const position = holdAt ?? cursor ?? lastCommitted;
          if (rows.length > 0) {
            lastCommitted = position;
            yield { records: rows.map(toRecord), offset: position as unknown as JsonValue };
          }
          if (rows.length < chunkSize) break;
        }
        // Record the new snapshot's xmin even when nothing new was read.
        if (!holdAt) {
          const final: Watermark = cursor ?? {
            ts: startAfter?.ts ?? null,
            key: startAfter?.key ?? null,
            xmin: snapshotXmin,
          };
          yield { records: [], offset: { ...final, xmin: snapshotXmin } as unknown as JsonValue };
        }
      }
    }

    return {
      read,
      validate(): Promise<ValidationCheck[]> {
        if (expected === undefined) return Promise.resolve([]);
        return Promise.resolve([{
          name: "source row count",
          ok: expected === readCount,
          detail:
            `${readCount} rows read; the source snapshot holds ${expected} in the synced range`,
        }]);
      },
      async close() {
        await sql?.end({ timeout: 1 });
      },
    };
  },
});

function placeholders(first: number, count: number): string {
  return Array.from({ length: count }, (_, i) => `$${first + i}`).join(", ");
}

async function count(sql: Sql, select: string, params: unknown[] = []): Promise<number> {
  const rows = await sql.unsafe<{ n: string }[]>(
    `select count(*)::text as n from (${select}) as counted`,
    params as never[],
  );
  return Number(rows[0].n);
}

async function* copyRows(
  sql: Sql,
  select: string,
  names: readonly string[],
  decoders: readonly Decoder[],
  chunkSize: number,
): AsyncGenerator<Row[]> {
  const stream = await sql.unsafe(`copy (${select}) to stdout`).readable();
  yield* parseCopyText(stream as AsyncIterable<Uint8Array>, names, decoders, chunkSize);
}
