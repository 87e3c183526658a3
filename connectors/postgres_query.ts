/**
 * `postgres_query`: reads a table or a query from PostgreSQL in batch jobs.
 *
 * - `mode: full` reads every row on every run, streamed with COPY.
 * - `mode: incremental` reads rows changed since the last run, in keyset
 *   order of (`timestamp.column.name`, key columns), in chunks of
 *   `chunk.size`. The watermark (last timestamp and key) is the offset, so
 *   rows sharing one timestamp across a chunk boundary are neither skipped
 *   nor read twice. A run reads in one REPEATABLE READ snapshot and records
 *   its `xmin`: every transaction that snapshot could not see, and every
 *   subtransaction of one (a savepoint, a PL/pgSQL EXCEPTION block), has an
 *   id at or after it. The next run also reads the rows at or behind the
 *   watermark whose `xmin` is at or after that one, so a transaction that
 *   commits a row stamped behind the watermark after a run is not missed,
 *   whatever the order of transaction ids. (Table mode only: a `query` has
 *   no `xmin`.) The next run skips that scan only when no other session of
 *   the database had a transaction open and no transaction id was handed out
 *   after the snapshot (see {@linkcode takeSnapshot}).
 * - The timestamp column must hold no NULL in the rows read: a run fails
 *   before reading when it does (such rows could never be read).
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
import {
  type CopyColumnType,
  type CopyRows,
  defineSource,
  type OffsetChange,
  type OffsetEntry,
  type SourceBatch,
  type SourceContext,
  type ValidationCheck,
} from "../api/plugin.ts";
import type { JsonValue, Row, SluiceRecord } from "../api/record.ts";
import { OffsetChangeError, RetriableError } from "../api/errors.ts";
import { redactSecrets } from "../api/redact.ts";
import {
  checkConnection,
  connect,
  connectionOptions,
  connectionUrl,
  databaseLabel,
  isConnectionError,
  isLoginError,
  keyColumnsProblem,
  parseTableName,
  primaryKeyColumns,
  quoteIdent,
  type Sql,
} from "../drivers/postgres.ts";
import { decodeRawRow, parseCopyText } from "../drivers/pg_types.ts";
import { PgCodec } from "../drivers/pg_codec.ts";
import { type Decoder, encodeText } from "../drivers/pg_text.ts";
import {
  copyTextChunks,
  decodeCopyText,
  lastLine,
  type PausableStream,
} from "../drivers/pg_copy_text.ts";
import { rowsExist } from "./_row_lookup.ts";

/** pg_type OID of timestamptz. */
const TIMESTAMPTZ_OID = 1184;

/** Rows per chunk when chunk.size is not given. */
const DEFAULT_CHUNK_ROWS = 2000;

/**
 * Rows handed on as COPY text go in chunks of about this many bytes (and
 * of chunk.size rows only when it is given): the memory in flight is then
 * bounded by bytes, whatever the width of the rows. Each chunk is one
 * transaction at the sink, whose fixed cost (a COPY, a commit, a merge
 * statement and their round trips) is paid per chunk: on a 1M-row full
 * sync (rows of ~160 bytes of text), 1 MiB chunks took 2.5-2.9 s of
 * client CPU and 9.1-9.5 s of server CPU against 4.3-5.5 s and 10.2-12.2
 * s with 256 KiB ones, at a peak RSS of 123 MB against 119 MB (2 MiB: 131
 * MB for little more gain).
 */
const COPY_CHUNK_BYTES = 1 << 20;

const MODES = {
  full: "full",
  bulk: "full",
  incremental: "incremental",
  timestamp: "incremental",
};

const options = z.strictObject({
  ...connectionOptions,
  table: z.string().optional().describe(
    "Table to read, as schema.table. Give this or query.",
  ),
  query: z.string().optional().describe(
    "A SELECT to read instead of a table (no late-commit protection: a query has no xmin).",
  ),
  mode: z.enum(Object.keys(MODES) as [keyof typeof MODES]).default("full")
    .transform((mode) => MODES[mode] as "full" | "incremental")
    .describe(
      "full: every row on every run. incremental: rows changed since the last run (bulk and timestamp are accepted as aliases).",
    ),
  "timestamp.column.name": z.string().default("updated_at").describe(
    "Column that tells when a row last changed (incremental mode). A run fails before reading when rows it would read hold NULL in it.",
  ),
  "key.columns": list().optional().describe(
    "Columns that identify a row and break ties between equal timestamps; default: the table's primary key. For a table they must be NOT NULL and hold a primary key or unique index (a run checks before reading).",
  ),
  columns: list().optional().describe("Columns to read; default: all."),
  where: z.string().optional().describe(
    "An SQL condition rows must meet, e.g. is_active.",
  ),
  "chunk.size": positiveInteger().optional().describe(
    "Rows per chunk (default 2000); each chunk is written and its watermark committed before the next is read. Rows handed to a postgres sink as COPY text (no transforms; a full load, or an incremental run's changed rows) go in chunks of about 1 MiB unless chunk.size is set.",
  ),
  "batch.max.rows": positiveInteger().optional().describe(
    "Alias of chunk.size (Kafka Connect JDBC).",
  ),
  copy: boolean().default(true).describe(
    "Read with COPY: full loads (full mode, and the first run of an incremental job), and an incremental run's changed rows when they go to a postgres sink as COPY text (in keyset order; each chunk commits the watermark of its last row). false: SELECT in keyset chunks.",
  ),
  topic: z.string().optional().describe(
    "Topic of the records; default: schema.table, or the pipeline name for a query.",
  ),
});

type Options = z.output<typeof options>;

/** The parsed config in the plugin's own vocabulary. */
interface Settings {
  /** Where to connect (built from connection.url or the database.* keys). */
  readonly url: string;
  readonly table?: { schema: string; table: string; quoted: string };
  readonly query?: string;
  readonly incremental: boolean;
  readonly timestampColumn: string;
  readonly keyColumns?: readonly string[];
  readonly columns?: readonly string[];
  readonly where?: string;
  readonly chunkSize: number;
  /** Rows per chunk of COPY text: chunk.size when given, else bounded by bytes only. */
  readonly copyChunkRows?: number;
  readonly copy: boolean;
  readonly topic?: string;
}

function checkOptions(config: Options, context: z.RefinementCtx): void {
  const issue = (path: string, message: string) =>
    context.addIssue({
      code: "custom",
      path: [path],
      message,
      input: undefined,
    });
  checkConnection(config, context);
  if (!config.table === !config.query) {
    issue("table", "give exactly one of table and query");
  }
  if (config.table) {
    try {
      parseTableName(config.table);
    } catch (error) {
      issue("table", (error as Error).message);
    }
  }
  if (config.query && config.mode === "incremental" && !config["key.columns"]) {
    issue(
      "key.columns",
      "is required for an incremental query (there is no primary key to read)",
    );
  }
}

function toSettings(config: Options): Settings {
  return {
    url: connectionUrl(config),
    table: config.table ? parseTableName(config.table) : undefined,
    query: config.query,
    incremental: config.mode === "incremental",
    timestampColumn: config["timestamp.column.name"],
    keyColumns: config["key.columns"],
    columns: config.columns,
    where: config.where,
    chunkSize: config["batch.max.rows"] ?? config["chunk.size"] ?? DEFAULT_CHUNK_ROWS,
    copyChunkRows: config["batch.max.rows"] ?? config["chunk.size"],
    copy: config.copy,
    topic: config.topic,
  };
}

const schema = options.superRefine(checkOptions, { when: always }).transform(
  toSettings,
);

/**
 * What the next run must know about a run's snapshot: the oldest
 * transaction it could not see. A subtransaction's id is handed out after
 * its parent's, and the snapshot's running list names only top-level
 * transactions, so every id the snapshot could not see, subtransactions
 * included, is at or after its xmin; ids before it had all finished.
 */
interface SnapshotMark {
  /** The snapshot's xmin as a 64-bit `xid8` (epoch and id), in decimal. */
  xmin: string;
}

/** What a run learnt about its snapshot (see {@linkcode takeSnapshot}). */
interface RunSnapshot {
  /** The transactions it could not see; null for a query, which has no xmin. */
  readonly mark: SnapshotMark | null;
  /** No other transaction was open or had an id: none can commit behind it with a now() stamp. */
  readonly quiet: boolean;
  /** The snapshot's xmax as a 64-bit `xid8`: the next id not yet handed out. */
  readonly xmax: bigint;
}

/** The offset of an incremental job. */
interface Watermark {
  /** Timestamp of the last row read, as PostgreSQL text; null before any row. */
  ts: string | null;
  /** Key of the last row read. */
  key: JsonValue[] | null;
  /**
   * The snapshot that read up to here; null when no transaction could commit
   * a row behind the watermark after it (or when reading a query).
   */
  snapshot: SnapshotMark | null;
}

/** 2^32: transaction ids in rows (`xid`) are 32-bit. */
const XID_SPAN = 1n << 32n;

/**
 * Ids at most this far behind this run's snapshot compare by `age()`:
 * 2^31, less a margin for the ids handed out between the snapshot and the
 * scan, from which `age()` counts.
 */
const AGE_LIMIT = (1n << 31n) - (1n << 28n);

/**
 * A watermark from a stored offset, including the shapes older versions
 * stored, whose marks held 32-bit ids: those are placed in the 64-bit space
 * of `now`, this run's snapshot, as the latest id with those 32 bits.
 */
function watermarkFrom(
  offset: JsonValue | undefined,
  now: RunSnapshot,
): Watermark | undefined {
  if (typeof offset !== "object" || offset === null || Array.isArray(offset)) {
    return undefined;
  }
  if (!("ts" in offset) || !("key" in offset)) return undefined;
  const stored = offset as
    & { ts: string | null; key: JsonValue[] | null }
    & Record<string, unknown>;
  const widen = (id: string) =>
    now.xmax - ((now.xmax - BigInt(id)) % XID_SPAN + XID_SPAN) % XID_SPAN;
  let snapshot: SnapshotMark | null = null;
  const mark = stored.snapshot as Record<string, unknown> | null | undefined;
  if (mark && typeof mark.xmin === "string") {
    snapshot = { xmin: mark.xmin };
  } else if (mark && typeof mark.xmax === "string") {
    // Marks of an older version: xmax and the running list, whose oldest is xmin.
    const ids = [mark.xmax, ...(mark.xip as string[] ?? [])].map(widen);
    snapshot = { xmin: ids.reduce((a, b) => a < b ? a : b).toString() };
  } else if (mark === undefined && typeof stored.xmin === "string") {
    // Before 0.2 the offset held only the snapshot's 32-bit xmin.
    snapshot = { xmin: widen(stored.xmin).toString() };
  }
  return { ts: stored.ts, key: stored.key, snapshot };
}

export default defineSource({
  name: "postgres_query",
  aliases: ["io.confluent.connect.jdbc.JdbcSourceConnector"],
  mode: "batch",
  summary: "Reads a PostgreSQL table or query, fully or incrementally by a timestamp column.",
  config: schema,
  plan(settings) {
    const what = settings.table ? `${settings.table.schema}.${settings.table.table}` : "query";
    const how = settings.incremental ? `incremental on ${settings.timestampColumn}` : "full";
    const table = settings.table && `${settings.table.schema}.${settings.table.table}`;
    const topic = settings.topic ?? table;
    return { reads: `postgres ${what} (${how})`, ...(topic ? { emits: [topic] } : {}) };
  },
  offsets: {
    list: (settings, stored) => Promise.resolve(listWatermark(settings, stored)),
    change: (settings, _stored, change) => Promise.resolve(changeWatermark(settings, change)),
  },
  // Rows of a query cannot be looked up: only a table's, by the record's key.
  rowsExist: (settings, records, context) =>
    rowsExist(
      settings.url,
      records.map((record) =>
        settings.table && record.key
          ? { schema: settings.table.schema, table: settings.table.table, key: record.key }
          : undefined
      ),
      `sluice:${context.pipeline}:replay`,
    ),
  create(settings, context) {
    const reader = new QueryReader(settings, context);
    return {
      read: () => reader.read(),
      validate: () => Promise.resolve(reader.checks()),
      // The count the run's validation takes in its snapshot, before the first row.
      expectedRecords: () => reader.expected,
      close: () => reader.close(),
    };
  },
});

/** The stored watermark as a Kafka Connect entry (partition: the table or query). */
function listWatermark(settings: Settings, stored: JsonValue | undefined): OffsetEntry[] {
  if (typeof stored !== "object" || stored === null || Array.isArray(stored)) return [];
  const partition: Record<string, JsonValue> = settings.table
    ? { table: `${settings.table.schema}.${settings.table.table}` }
    : { query: settings.query ?? "" };
  return [{ partition, offset: stored }];
}

/**
 * The watermark after an operator's change: none (the next run reads
 * everything), or a time (the next run reads the rows stamped at or after it).
 */
function changeWatermark(settings: Settings, change: OffsetChange): JsonValue | undefined {
  if (change.to === "reset" || change.to === "earliest") return undefined;
  if (!settings.incremental) {
    throw new OffsetChangeError(
      "This job reads in full mode: every run reads everything, so only a reset applies",
    );
  }
  const at = (ts: string): JsonValue => ({ ts, key: null, snapshot: null });
  if (change.to === "timestamp") return at(change.at.toISOString());
  if (change.to === "latest") {
    throw new OffsetChangeError(
      "postgres_query has no latest position to move to; give --to-timestamp <time> (the next run reads rows stamped at or after it) or --to-earliest (a full read)",
    );
  }
  const entry = change.entries.length === 1 ? change.entries[0] : undefined;
  if (entry?.offset === null) return undefined;
  const ts = entry?.offset?.ts;
  if (typeof ts !== "string" || Number.isNaN(Date.parse(ts))) {
    throw new OffsetChangeError(
      `give one entry whose offset is {"ts": "<time>"} (the next run reads rows whose ${settings.timestampColumn} is at or after it), or null for a full read: current value is ${
        JSON.stringify(change.entries.map((e) => e.offset))
      }`,
    );
  }
  return at(ts);
}

/** What a run reads: column names, their decoders and the key. */
interface Shape {
  readonly names: readonly string[];
  readonly decoders: readonly Decoder[];
  /** Each column's type, for rows handed on as COPY text. */
  readonly types: readonly CopyColumnType[];
  readonly keyColumns: readonly string[];
  /** Type OID of the timestamp column (incremental mode). */
  readonly timestampType?: number;
  /** `select <columns> from <table or query> where <user condition>`. */
  readonly select: string;
  /** Whether the rows read carry an `xmin` (a table; not a view, a foreign table or a query). */
  readonly hasXmin: boolean;
}

/** One run of the source: a snapshot, then full or incremental reading. */
class QueryReader {
  readonly #settings: Settings;
  readonly #context: SourceContext;
  readonly #topic: string;
  #sql: Sql | undefined;
  #expected: number | undefined;
  #readCount = 0;

  constructor(settings: Settings, context: SourceContext) {
    this.#settings = settings;
    this.#context = context;
    const table = settings.table;
    this.#topic = settings.topic ??
      (table ? `${table.schema}.${table.table}` : context.pipeline);
  }

  async *read(): AsyncGenerator<SourceBatch> {
    // One connection, one REPEATABLE READ snapshot for the whole run.
    const sql = connect(this.#settings.url, {
      max: 1,
      applicationName: `sluice:${this.#context.pipeline}`,
    });
    this.#sql = sql;
    try {
      yield* this.#readInSnapshot(sql);
    } catch (error) {
      if (isConnectionError(error)) {
        throw new RetriableError(
          `Cannot read from the source database ${databaseLabel(this.#settings.url)}: ${
            redactSecrets((error as Error).message)
          }`,
          { cause: error },
        );
      }
      if (isLoginError(error)) {
        throw new Error(
          `Cannot connect to the source database ${databaseLabel(this.#settings.url)}: ${
            redactSecrets((error as Error).message)
          }`,
          { cause: error },
        );
      }
      throw error;
    } finally {
      await sql.end({ timeout: 1 });
      this.#sql = undefined;
    }
  }

  /** The rows this run's snapshot holds in the synced range, once counted. */
  get expected(): number | undefined {
    return this.#expected;
  }

  checks(): ValidationCheck[] {
    if (this.#expected === undefined) return [];
    return [{
      name: "source row count",
      ok: this.#expected === this.#readCount,
      detail:
        `${this.#readCount} rows read; the source snapshot holds ${this.#expected} in the synced range`,
    }];
  }

  async close(): Promise<void> {
    await this.#sql?.end({ timeout: 1 });
  }

  async *#readInSnapshot(sql: Sql): AsyncGenerator<SourceBatch> {
    await sql.unsafe("begin isolation level repeatable read read only");
    const taken = await takeSnapshot(sql);
    const shape = await this.#describe(sql);
    if (!this.#settings.incremental) {
      if (this.#context.since) {
        throw new Error(
          `${this.#context.pipeline} reads in full mode: a window (--since) needs mode incremental and its timestamp.column.name`,
        );
      }
      this.#expected = await count(sql, shape.select);
      yield* this.#copy(sql, shape, shape.select);
      return;
    }
    // A query (or a view) has no xmin: there is nothing to find late rows by.
    const run = shape.hasXmin ? taken : { ...taken, mark: null, quiet: false };
    await this.#refuseNullStamps(sql, shape);
    const incremental = new IncrementalRead(
      this.#settings,
      shape,
      sql,
      run,
      (rows) => {
        this.#readCount += rows.length;
        return rows.map((row) => this.#toRecord(shape, row));
      },
    );
    const since = this.#context.since;
    if (since) {
      // A window re-synced by hand: the stored watermark stays as it is.
      const window = {
        where: `${quoteIdent(this.#settings.timestampColumn)} >= $1`,
        params: [since.toISOString()],
      };
      this.#expected = await count(sql, `${shape.select} and ${window.where}`, window.params);
      for await (const batch of incremental.chunks(window)) {
        if (batch.records.length > 0) yield { records: batch.records };
      }
      return;
    }
    const previous = watermarkFrom(this.#context.offset, taken);
    if (!previous || previous.ts === null) {
      // First run (or full refresh): everything up to the snapshot.
      this.#expected = await count(sql, shape.select);
      if (!this.#settings.copy) {
        yield* incremental.chunks({ where: "true", params: [] });
        return;
      }
      // Before the COPY: a query after a COPY OUT can hang (FACTS.md, postgres.js #499).
      const final = await incremental.final(await incremental.lastRow());
      yield* this.#copy(sql, shape, shape.select);
      yield { records: [], offset: final as unknown as JsonValue };
      return;
    }
    this.#expected = await incremental.countSince(previous);
    if (!this.#settings.copy || !this.#context.copyText) {
      yield* incremental.since(previous);
      return;
    }
    // Rows handed on as COPY text, as a first run's are: the late rows
    // (few) first by keyset, then the rows ahead in one ordered COPY, each
    // chunk with the watermark of its last row.
    yield* incremental.late(previous);
    const ahead = incremental.ahead(previous);
    // Before the COPY: a query after a COPY OUT can hang (FACTS.md, postgres.js #499).
    const final = await incremental.final(await incremental.lastRow(ahead), previous);
    const stream = await sql.unsafe(`copy (${incremental.ordered(ahead)}) to stdout`).readable();
    for await (const batch of this.#copyText(stream as unknown as PausableStream, shape)) {
      const last = decodeCopyText(lastLine(batch.copy!.text), shape.names, shape.decoders)[0];
      yield { ...batch, offset: incremental.watermarkOf(last) as unknown as JsonValue };
    }
    yield { records: [], offset: final as unknown as JsonValue };
  }

  /**
   * Fails the run, before anything is read, when rows it would read hold
   * NULL in the timestamp column: keyset reading never reaches them, and a
   * full read would leave a watermark without a time. A table's NOT NULL
   * column is taken at its word; a nullable one, or a query's, is checked on
   * every run (with an index on the column, a single index probe).
   */
  async #refuseNullStamps(sql: Sql, shape: Shape): Promise<void> {
    const { table, timestampColumn } = this.#settings;
    const column = quoteIdent(timestampColumn);
    if (table) {
      const [{ notNull }] = await sql.unsafe<{ notNull: boolean }[]>(
        `select coalesce((select attnotnull from pg_attribute
                          where attrelid = $1::regclass and attname = $2 and not attisdropped),
                         false) as "notNull"`,
        [table.quoted, timestampColumn],
      );
      if (notNull) return;
    }
    const [{ found }] = await sql.unsafe<{ found: boolean }[]>(
      `select exists (${shape.select} and ${column} is null) as found`,
    );
    if (!found) return;
    const nulls = await count(sql, `${shape.select} and ${column} is null`);
    const what = table ? `${table.schema}.${table.table}` : "the query";
    throw new Error(
      `Cannot read ${what} incrementally: its timestamp column "${timestampColumn}" (timestamp.column.name) is NULL in ${nulls} of the rows to read, and an incremental run never reads such rows. Set the NULLs and make the column NOT NULL with a default (e.g. now()), read in mode full, or read a query that coalesces the column`,
    );
  }

  /** Column names, decoders and key columns of what this run reads. */
  async #describe(sql: Sql): Promise<Shape> {
    const { table, query, columns, where } = this.#settings;
    const from = table ? table.quoted : `(${query}) as sluice_query`;
    const columnList = columns?.map(quoteIdent).join(", ") ?? "*";
    const probe = await sql.unsafe(`select ${columnList} from ${from} limit 0`)
      .raw();
    const names = probe.columns.map((column) => column.name);
    const decoders = await new PgCodec(sql).decoders(
      probe.columns.map((c) => ({ typeOid: c.type })),
    );
    const types = await columnTypes(sql, names, probe.columns);
    const keyColumns = this.#settings.keyColumns ??
      (table ? await primaryKeyColumns(sql, table.quoted) : []);
    if (keyColumns.length === 0) {
      throw new Error(
        `Cannot read ${table?.quoted}: it has no primary key; set key.columns`,
      );
    }
    const problem = table && this.#settings.keyColumns
      ? await keyColumnsProblem(sql, table.quoted, keyColumns)
      : undefined;
    if (problem) {
      throw new Error(
        `Cannot read ${table!.quoted} by key.columns ${keyColumns.join(",")}: ${problem}. ` +
          `Name columns a primary key or a unique index of NOT NULL columns covers, or leave ` +
          `key.columns out to use the primary key`,
      );
    }
    const required = [
      ...keyColumns,
      ...(this.#settings.incremental ? [this.#timestamp()] : []),
    ];
    for (const column of required) {
      if (!names.includes(column)) {
        const role = column === this.#timestamp() ? "timestamp column" : "key column";
        throw new Error(
          `${role} "${column}" is not among the columns read: ${names.join(", ")}`,
        );
      }
    }
    const select = `select ${columnList} from ${from} where ${where ? `(${where})` : "true"}`;
    const timestampType = probe.columns[names.indexOf(this.#timestamp())]?.type;
    const [relation] = table
      ? await sql.unsafe<{ kind: string }[]>(
        "select relkind::text as kind from pg_class where oid = $1::regclass",
        [table.quoted],
      )
      : [];
    const hasXmin = ["r", "p", "m"].includes(relation?.kind ?? "");
    return { names, decoders, types, keyColumns, timestampType, select, hasXmin };
  }

  #timestamp(): string {
    return this.#settings.timestampColumn;
  }

  async *#copy(
    sql: Sql,
    shape: Shape,
    select: string,
  ): AsyncGenerator<SourceBatch> {
    const stream = await sql.unsafe(`copy (${select}) to stdout`).readable();
    if (this.#context.copyText) {
      yield* this.#copyText(stream as unknown as PausableStream, shape);
      return;
    }
    const rows = parseCopyText(
      stream as AsyncIterable<Uint8Array>,
      shape.names,
      shape.decoders,
      this.#settings.chunkSize,
    );
    for await (const chunk of rows) {
      this.#readCount += chunk.length;
      yield { records: chunk.map((row) => this.#toRecord(shape, row)) };
    }
  }

  /**
   * The COPY stream handed on undecoded, in chunks of about
   * {@linkcode COPY_CHUNK_BYTES}, each decodable on demand.
   */
  async *#copyText(
    stream: PausableStream,
    shape: Shape,
  ): AsyncGenerator<SourceBatch> {
    const rows = this.#settings.copyChunkRows ?? Number.MAX_SAFE_INTEGER;
    const chunks = copyTextChunks(stream, rows, COPY_CHUNK_BYTES);
    for await (const { text, count } of chunks) {
      this.#readCount += count;
      const copy: CopyRows = {
        topic: this.#topic,
        columns: shape.types,
        text,
        count,
        decode: () =>
          decodeCopyText(text, shape.names, shape.decoders).map((row) =>
            this.#toRecord(shape, row)
          ),
        // Detaching the buffer frees its memory now, not at the next full GC.
        release: () => void (text.buffer as ArrayBuffer).transfer(0),
      };
      yield { records: [], copy };
    }
  }

  #toRecord(shape: Shape, row: Row): SluiceRecord {
    return {
      topic: this.#topic,
      key: Object.fromEntries(
        shape.keyColumns.map((column) => [column, row[column]]),
      ),
      value: row,
    };
  }
}

/** A keyset-ordered slice of the rows: a condition with its parameters. */
interface Slice {
  readonly where: string;
  readonly params: readonly unknown[];
  /** When set, every chunk commits this unchanged position (late rows). */
  readonly holdAt?: Watermark;
  /** The position before the first chunk. */
  readonly startAfter?: Watermark;
}

/** Reads rows in keyset order of (timestamp, key), in chunks. */
class IncrementalRead {
  readonly #settings: Settings;
  readonly #shape: Shape;
  readonly #sql: Sql;
  readonly #run: RunSnapshot;
  readonly #emit: (rows: Row[]) => SluiceRecord[];
  /** `"updated_at", "id"`, quoted. */
  readonly #order: string[];

  constructor(
    settings: Settings,
    shape: Shape,
    sql: Sql,
    run: RunSnapshot,
    emit: (rows: Row[]) => SluiceRecord[],
  ) {
    this.#settings = settings;
    this.#shape = shape;
    this.#sql = sql;
    this.#run = run;
    this.#emit = emit;
    this.#order = [settings.timestampColumn, ...shape.keyColumns].map(
      quoteIdent,
    );
  }

  watermarkOf(row: Row): Watermark {
    const ts = row[this.#settings.timestampColumn];
    // Never a null watermark: it would make the next run a full read.
    // (#refuseNullStamps fails the run before such a row can be read.)
    if (ts === null || ts === undefined) {
      throw new Error(
        `Cannot place the watermark: the timestamp column "${this.#settings.timestampColumn}" of a row read is NULL`,
      );
    }
    return {
      ts: ts as string,
      key: this.#shape.keyColumns.map((column) => storableKey(row[column])),
      snapshot: this.#run.mark,
    };
  }

  /**
   * The position at the end of the run: after `last` (or `startAfter` when
   * nothing was read), with this snapshot's mark, or none when the next run
   * may skip the late-row scan.
   */
  async final(last: Row | null, startAfter?: Watermark): Promise<Watermark> {
    const at = last ? this.watermarkOf(last) : {
      ts: startAfter?.ts ?? null,
      key: startAfter?.key ?? null,
      snapshot: this.#run.mark,
    };
    return {
      ...at,
      snapshot: await this.#skippable(at.ts) ? null : this.#run.mark,
    };
  }

  /**
   * Whether no transaction can commit a row behind a watermark at `ts`
   * later: the snapshot was quiet, and `ts` is a timestamptz older than this
   * run's start, so the now() of any transaction that begins later is newer.
   * A date, a plain timestamp or a number could tie, or come from another
   * clock: those keep the scan.
   */
  async #skippable(ts: string | null): Promise<boolean> {
    if (!this.#run.quiet || this.#run.mark === null) return false;
    if (ts === null) return true;
    if (this.#shape.timestampType !== TIMESTAMPTZ_OID) return false;
    const [{ before }] = await this.#sql.unsafe<{ before: boolean }[]>(
      "select $1::timestamptz < now() as before",
      [ts],
    );
    return before;
  }

  /** The row that comes last in keyset order (of `slice`, or of all), or null for an empty range. */
  async lastRow(slice?: Slice): Promise<Row | null> {
    const descending = this.#order.map((c) => `${c} desc`).join(", ");
    const where = slice ? ` and ${slice.where}` : "";
    const last = await this.#sql.unsafe(
      `${this.#shape.select}${where} order by ${descending} limit 1`,
      (slice?.params ?? []) as never[],
    )
      .raw();
    if (!last[0]) return null;
    return decodeRawRow(
      last[0] as Uint8Array[],
      this.#shape.names,
      this.#shape.decoders,
    );
  }

  /** How many rows {@linkcode since} will read. */
  async countSince(previous: Watermark): Promise<number> {
    const late = this.#lateSlice(previous);
    const ahead = this.ahead(previous);
    let total = await count(
      this.#sql,
      `${this.#shape.select} and ${ahead.where}`,
      ahead.params,
    );
    if (late) {
      total += await count(
        this.#sql,
        `${this.#shape.select} and ${late.where}`,
        late.params,
      );
    }
    return total;
  }

  /**
   * Rows changed since `previous`: first the rows at or behind it written by
   * transactions its snapshot could not see, then the rows ahead of it.
   */
  async *since(previous: Watermark): AsyncGenerator<SourceBatch> {
    yield* this.late(previous);
    yield* this.chunks(this.ahead(previous));
  }

  /** The rows at or behind `previous` its snapshot could not see, if they can be told apart. */
  async *late(previous: Watermark): AsyncGenerator<SourceBatch> {
    const late = this.#lateSlice(previous);
    // Until the late rows are written, the stored position stays where it was.
    if (late) yield* this.chunks(late);
  }

  /**
   * The query of `slice` in keyset order, its parameters written in as
   * literals (COPY takes none). An untyped literal takes the type of the
   * column it is compared with, as a parameter does; the escape-string form
   * reads the same whatever standard_conforming_strings says.
   */
  ordered(slice: Slice): string {
    const where = slice.where.replace(/\$(\d+)/g, (_, n: string) => {
      const text = String(slice.params[Number(n) - 1]);
      return `E'${text.replaceAll("\\", "\\\\").replaceAll("'", "''")}'`;
    });
    return `${this.#shape.select} and ${where} order by ${this.#order.join(", ")}`;
  }

  ahead(previous: Watermark): Slice {
    if (previous.key === null && previous.ts !== null) {
      // Set by an operator (--to-timestamp): every row at or after that time.
      return {
        where: `${this.#order[0]} >= $1`,
        params: [previous.ts],
        startAfter: previous,
      };
    }
    return {
      where: `${this.#tuple()} > (${placeholders(1, this.#order.length)})`,
      params: [previous.ts, ...(previous.key ?? [])],
      startAfter: previous,
    };
  }

  /**
   * The rows at or behind `previous` that its snapshot may not have seen:
   * those whose `xmin` is at or after that snapshot's xmin. A row's `xmin`
   * is 32 bits, so ids are compared by `age()`, their distance back from the
   * newest id, which is exact below 2^31: every row not frozen is that
   * recent (PostgreSQL freezes rows long before), and the previous xmin is
   * checked to be, counted in 64 bits. A frozen row keeps its old id: one
   * more than 2^31 ids old has a negative age and is left out; one some
   * multiple of 2^32 older may match and is read again, which is harmless.
   * When the previous xmin is too old (or not of this server), every row
   * behind the watermark is read again.
   */
  #lateSlice(previous: Watermark): Slice | undefined {
    if (!this.#settings.table || previous.snapshot === null) return undefined;
    const n = this.#order.length;
    const xmin = BigInt(previous.snapshot.xmin);
    const since = this.#run.xmax - xmin;
    const comparable = since >= 0n && since < AGE_LIMIT;
    const unseen = comparable ? `age(xmin) between 0 and age($${n + 1}::text::xid)` : "true";
    return {
      where: `${this.#tuple()} <= (${placeholders(1, n)}) and ${unseen}`,
      params: [
        previous.ts,
        ...(previous.key ?? []),
        ...(comparable ? [(xmin % XID_SPAN).toString()] : []),
      ],
      holdAt: previous,
    };
  }

  /** Reads one slice in chunks, each yielded with the position reached. */
  async *chunks(slice: Slice): AsyncGenerator<SourceBatch> {
    const chunkSize = this.#settings.chunkSize;
    const orderBy = this.#order.join(", ");
    let cursor: Watermark | undefined;
    let last: Row | null = null;
    for (;;) {
      const after = cursor
        ? ` and ${this.#tuple()} > (${placeholders(slice.params.length + 1, this.#order.length)})`
        : "";
      const params = cursor ? [...slice.params, cursor.ts, ...(cursor.key ?? [])] : slice.params;
      const raw = await this.#sql.unsafe(
        `${this.#shape.select} and ${slice.where}${after} order by ${orderBy} limit ${chunkSize}`,
        params as never[],
      ).raw();
      const rows = raw.map((r) =>
        decodeRawRow(r as Uint8Array[], this.#shape.names, this.#shape.decoders)
      );
      if (rows.length > 0) {
        last = rows[rows.length - 1];
        cursor = this.watermarkOf(last);
        const offset = slice.holdAt ?? cursor;
        yield {
          records: this.#emit(rows),
          offset: offset as unknown as JsonValue,
        };
      }
      if (rows.length < chunkSize) break;
    }
    if (slice.holdAt) return;
    // Record this snapshot's mark even when nothing new was read.
    const final = await this.final(last, slice.startAfter);
    yield { records: [], offset: final as unknown as JsonValue };
  }

  #tuple(): string {
    return `(${this.#order.join(", ")})`;
  }
}

/**
 * A key value as the watermark stores it: JSON as it is, anything else
 * (bytea's bytes, a Date) as its PostgreSQL text, which the next run's
 * comparison with the key column casts back. JSON of bytes would be an
 * object of indexes that no column compares with.
 */
function storableKey(value: unknown): JsonValue {
  if (value === null || typeof value === "string" || typeof value === "boolean") return value;
  if (typeof value === "number" && Number.isFinite(value)) return value;
  return encodeText(value);
}

/**
 * Takes the run's snapshot (the first statement of its transaction) and
 * returns what the next run needs to find rows committed after it, and
 * whether the snapshot was quiet: no transaction can still commit a row
 * that it did not see, except ones that begin after it.
 *
 * Quiet needs three things. Every id below the snapshot's xmax had finished
 * (its xmin is its xmax). No other session of this database had a transaction
 * open right after the snapshot: one that has written nothing yet has no
 * transaction id, so no snapshot lists it, yet its `now()` may already be
 * older than the newest row. A role without `pg_read_all_stats` sees
 * another role's sessions without their state: each counts as open. And no transaction id was handed out after the
 * snapshot's xmax, checked last by taking one: a transaction whose id is
 * newer than every finished one is not listed either (issue 7, item 2).
 * Transactions that begin later stamp `now()` values newer than this run's
 * start; {@linkcode IncrementalRead.final} skips the next scan only when the
 * watermark is older than that.
 */
async function takeSnapshot(sql: Sql): Promise<RunSnapshot> {
  const [seen] = await sql.unsafe<
    { xmin: string; xmax: string; running: boolean; othersOpen: boolean }[]
  >(
    `select pg_snapshot_xmin(s)::text as xmin, pg_snapshot_xmax(s)::text as xmax,
            pg_snapshot_xmin(s) <> pg_snapshot_xmax(s) as running,
            exists (select 1 from pg_stat_activity a
                    where a.datname = current_database() and a.pid <> pg_backend_pid()
                      and (a.xact_start is not null and a.backend_type <> 'autovacuum worker'
                           -- another role's session, shown without pg_read_all_stats with
                           -- neither its type nor its state: it may hold a transaction open
                           or a.backend_type is null)) as "othersOpen"
     from pg_current_snapshot() as s`,
  );
  const mark = { xmin: seen.xmin };
  const xmax = BigInt(seen.xmax);
  if (seen.running || seen.othersOpen) return { mark, quiet: false, xmax };
  const [{ next }] = await sql.unsafe<{ next: string }[]>(
    "select pg_current_xact_id()::text as next",
  );
  return { mark, quiet: next === seen.xmax, xmax };
}

/**
 * The columns read with their types' `format_type` names, and the type
 * modifiers of those read straight from a table column (a sink checks
 * them against narrower target columns).
 */
async function columnTypes(
  sql: Sql,
  names: readonly string[],
  columns: readonly { type: number; table?: number; number?: number }[],
): Promise<CopyColumnType[]> {
  const oids = columns.map((column) => column.type);
  const rows = await sql.unsafe<{ oid: number; type: string }[]>(
    "select t.oid::int as oid, format_type(t.oid, null) as type from unnest($1::oid[]) as t(oid)",
    [oids as number[]],
  );
  const typeOf = new Map(rows.map((row) => [row.oid, row.type]));
  const modifiers = await sql.unsafe<{ i: number; modifier: number }[]>(
    `select u.i::int as i, a.atttypmod::int as modifier
       from unnest($1::oid[], $2::int[]) with ordinality as u(rel, num, i)
       join pg_attribute a on a.attrelid = u.rel and a.attnum = u.num
       join pg_type t on t.oid = a.atttypid
      where t.typtype <> 'd'`,
    [columns.map((c) => c.table ?? 0), columns.map((c) => c.number ?? 0)] as never[],
  );
  const modifierOf = new Map(modifiers.map((row) => [row.i - 1, row.modifier]));
  return names.map((name, i) => ({
    name,
    typeOid: oids[i],
    type: typeOf.get(oids[i]) ?? "",
    ...(modifierOf.has(i) ? { typeModifier: modifierOf.get(i) } : {}),
  }));
}

function placeholders(first: number, count: number): string {
  return Array.from({ length: count }, (_, i) => `$${first + i}`).join(", ");
}

async function count(
  sql: Sql,
  select: string,
  params: readonly unknown[] = [],
): Promise<number> {
  const rows = await sql.unsafe<{ n: string }[]>(
    `select count(*)::text as n from (${select}) as counted`,
    params as never[],
  );
  return Number(rows[0].n);
}
