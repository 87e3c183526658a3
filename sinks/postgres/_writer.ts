/**
 * The running postgres sink: one connection, the target tables, and the
 * write of a batch in one transaction together with the pipeline's offset.
 *
 * @module
 */
import { errorMessage, RetriableError } from "../../api/errors.ts";
import type {
  CopyRows,
  PluginContext,
  RecordFailure,
  ReplayCheck,
  SinkBatch,
  SinkResult,
  ValidationCheck,
} from "../../api/plugin.ts";
import type { JsonValue, Row, SluiceRecord } from "../../api/record.ts";
import {
  connect,
  connectionUrl,
  databaseLabel,
  isConnectionError,
  type Sql,
} from "../../drivers/postgres.ts";
import { OffsetsTable } from "../../drivers/pg_offsets.ts";
import { withJsonParsed } from "./_dead_letters.ts";
import { TableDirectory } from "./_inspect.ts";
import { applyRun, type Totals } from "./_merge.ts";
import {
  cascadingKey,
  FOREIGN_KEY_HINT,
  FOREIGN_KEY_VIOLATION,
  foreignKeys,
  keyChangeCascades,
} from "./_foreign_keys.ts";
import { fillMovedRows } from "./_moved_keys.ts";
import {
  byDependency,
  type Operation,
  Projector,
  type Run,
  runsOf,
  sinkFailure,
} from "./_operations.ts";
import { dependencyRanks } from "../../drivers/pg_foreign_keys.ts";
import type { Settings } from "./_settings.ts";
import type { Queryable, TargetTable } from "./_table.ts";
import { isChangeEvent, NEW_KEY_HEADER } from "../../api/record.ts";
import {
  bulkCopyText,
  checkCopyText,
  copyTextColumns,
  type CopyTextWrite,
  roundingColumns,
  writeCopyText,
} from "./_copy_text.ts";
import { type SnapshotMark, snapshotMark, SnapshotSweeper } from "./_sweep.ts";

/** The sink's state between batches. */
export class PostgresWriter {
  readonly url: string;
  readonly #settings: Settings;
  readonly #context: PluginContext;
  readonly #offsets: OffsetsTable;
  readonly #tables: TableDirectory;
  readonly #projector: Projector;
  readonly #totals: Totals = { givenChecksum: 0n, writtenChecksum: 0n };
  /** Why COPY text was decoded, logged once each. */
  readonly #decodeReasons = new Set<string>();
  /** Tables written from COPY text, logged once each. */
  readonly #copiedInto = new Set<string>();
  /** Removes, when a table's snapshot ends, the rows it did not write. */
  readonly #sweeper: SnapshotSweeper;
  #sql: Sql;

  private constructor(settings: Settings, context: PluginContext) {
    this.#settings = settings;
    this.#context = context;
    this.url = connectionUrl(settings.connection);
    this.#sql = this.#open();
    this.#offsets = new OffsetsTable(settings.offsetsTable);
    this.#projector = new Projector(settings, context.logger);
    this.#sweeper = new SnapshotSweeper(
      context.logger,
      settings.positionColumn ?? "",
      settings.snapshotSweep,
    );
    this.#tables = new TableDirectory(() => this.#sql, settings, context);
  }

  /** Connects, prepares the offsets table and checks a fixed target table. */
  static async open(
    settings: Settings,
    context: PluginContext,
  ): Promise<PostgresWriter> {
    const writer = new PostgresWriter(settings, context);
    try {
      await writer.#offsets.create(writer.#sql);
    } catch (error) {
      await writer.close();
      if (/permission denied to set parameter "session_replication_role"/.test(String(error))) {
        throw new Error(
          `session.replication.role is replica, but the sink's user may not set session_replication_role in ${writer.#where}: as a superuser, GRANT SET ON PARAMETER session_replication_role TO <the sink's user> (PostgreSQL 15+), or connect as a superuser`,
          { cause: error },
        );
      }
      throw wrap(error, `Cannot prepare the offsets table in the sink database ${writer.#where}`);
    }
    try {
      await writer.#tables.prepare();
    } catch (error) {
      await writer.close();
      throw isConnectionError(error)
        ? wrap(error, `Cannot inspect the target table in the sink database ${writer.#where}`)
        : error;
    }
    return writer;
  }

  /** `host:port/database` of the target, for messages. */
  get #where(): string {
    return databaseLabel(this.url);
  }

  #open(): Sql {
    return connect(this.url, {
      max: 1,
      applicationName: `sluice:${this.#context.pipeline}`,
      // Sent at start-up, so a reconnected session applies changes the same way.
      ...(this.#settings.replicationRole === "replica"
        ? { connection: { session_replication_role: "replica" } }
        : {}),
    });
  }

  /**
   * After a lost connection the client is replaced, not reused: postgres.js
   * can be left wedged (its next transaction never starts) when the server
   * went away in the middle of a COPY.
   */
  #replaceClient(): void {
    const dead = this.#sql;
    this.#sql = this.#open();
    dead.end({ timeout: 0 }).catch(() => {});
  }

  /** Writes a batch; a lost connection is retriable. */
  async write(batch: SinkBatch): Promise<SinkResult> {
    try {
      if (batch.copy) {
        const written = await this.#writeCopyText(batch, batch.copy);
        if (written) return written;
        return await this.#writeRecords({
          ...batch,
          records: batch.copy.decode(),
          copy: undefined,
        });
      }
      return await this.#writeRecords(batch);
    } catch (error) {
      if (isConnectionError(error)) {
        this.#replaceClient();
        throw wrap(error, `Cannot write to the sink database ${this.#where}`);
      }
      // A statement that names a table or column no longer there: the tables
      // are described again before the runtime's next attempt.
      const code = (error as { code?: string })?.code ?? "";
      if (TABLE_CHANGED.has(code)) {
        await this.#tables.refresh(this.#tables.names()).catch(() => {});
      }
      // A deferred key, checked at commit: no one record is to blame.
      if (code === FOREIGN_KEY_VIOLATION) {
        const failed = wrap(error, `Cannot commit a batch in the sink database ${this.#where}`);
        failed.message += FOREIGN_KEY_HINT;
        throw failed;
      }
      throw error;
    }
  }

  /**
   * Writes records; when some fail for a reason an altered target may have
   * removed (a missing column, a value of another type) and their table was
   * altered since it was described, the batch is rolled back, the table
   * described again and the batch written once more: "fix the target, then
   * replay" works without a restart. At most one catalog query per such
   * table per batch, and one retry.
   */
  async #writeRecords(batch: SinkBatch): Promise<SinkResult> {
    const changed = new Set<string>();
    // What the rolled-back attempt counted must not count twice.
    const totals = { ...this.#totals };
    const bulkRows = new Map([...this.#tables.values()].map((t) => [t, t.bulkRows]));
    try {
      return await this.#writeOnce(batch, changed);
    } catch (error) {
      if (error !== TABLES_CHANGED) throw error;
    }
    Object.assign(this.#totals, totals);
    for (const table of this.#tables.values()) table.bulkRows = bulkRows.get(table) ?? 0;
    await this.#tables.refresh(changed);
    return await this.#writeOnce(batch);
  }

  /**
   * Writes rows of COPY text as they are (see `_copy_text.ts`), with the
   * offset, in one transaction; undefined when they must be decoded and
   * written as records instead.
   */
  async #writeCopyText(batch: SinkBatch, copy: CopyRows): Promise<SinkResult | undefined> {
    let table = await this.#tables.existing(
      this.#tables.nameFor({ topic: copy.topic, key: null, value: null }),
    );
    if (!table) return this.#decodeBecause("the target table does not exist yet");
    if (batch.overwrite) table = table.withoutVersionGuard();
    else if (batch.refresh) table = table.withEqualVersionsWritten();
    const columns = copyTextColumns(table, this.#projector, copy.columns);
    if (typeof columns === "string") return this.#decodeBecause(columns);
    const debug = (message: string) => this.#context.logger.debug(message);
    let rounding = roundingColumns(table, columns, copy.columns);
    if (rounding.length > 0) {
      const server = checkCopyText(columns, rounding, table, copy.text);
      if (server === false) {
        return this.#decodeBecause(`a value of the chunk would be rounded by ${table.name}`, true);
      }
      rounding = server;
    }
    const target = table;
    const refused = Symbol("refused");
    let write: CopyTextWrite | undefined;
    // A chunk without an offset needs no transaction of its own for a bulk COPY.
    if (!batch.offset) {
      write = await bulkCopyText(this.#sql, target, columns, copy, { debug, rounding });
    }
    if (write) return this.#copied(target, write);
    try {
      write = await this.#sql.begin(async (tx) => {
        const done = await writeCopyText(tx, target, columns, copy, { debug, rounding });
        if (!done) throw refused;
        if (batch.offset) await this.#offsets.write(tx, batch.offset.key, batch.offset.value);
        return done;
      });
    } catch (error) {
      if (error !== refused) throw error;
      // The chunk is written as records, which isolates and dead-letters what was refused.
      return this.#decodeBecause(`${target.name} refused a row of the chunk`, true);
    }
    return this.#copied(target, write);
  }

  /** Accounts a committed chunk of COPY text. */
  #copied(target: TargetTable, write: CopyTextWrite): SinkResult {
    if (!this.#copiedInto.has(target.name)) {
      this.#copiedInto.add(target.name);
      this.#context.logger.debug("Rows go into {table} as COPY text, not decoded", {
        table: target.name,
      });
    }
    target.bulkRows += write.bulkRows;
    this.#totals.givenChecksum += write.givenChecksum;
    this.#totals.writtenChecksum += write.writtenChecksum;
    return { written: write.written, skipped: write.skipped };
  }

  /** Logs (once per reason, unless `always`) why COPY text is decoded; returns undefined. */
  #decodeBecause(reason: string, always = false): undefined {
    if (always || !this.#decodeReasons.has(reason)) {
      this.#decodeReasons.add(reason);
      this.#context.logger.debug("Rows are decoded, not copied as text: {reason}", { reason });
    }
    return undefined;
  }

  /**
   * Writes records in one transaction. With `changed`, failures that an
   * altered table may explain make it ask the catalog first: when their
   * tables did change, it names them in `changed` and throws
   * {@linkcode TABLES_CHANGED} instead of rejecting (the transaction rolls back).
   */
  async #writeOnce(batch: SinkBatch, changed?: Set<string>): Promise<SinkResult> {
    const failures: RecordFailure[] = [];
    const { runs, skipped, marks } = await this.#plan(
      batch.records,
      failures,
      batch.overwrite ? "overwrite" : batch.refresh ? "refresh" : "guarded",
      batch.onlyNew ?? false,
    );
    let written = 0;
    let skippedByTable = 0;
    let reportSweeps = () => {};
    await this.#sql.begin(async (tx) => {
      const context = { failures, totals: this.#totals, logger: this.#context.logger };
      if (marks.length > 0) await this.#sweeper.before(tx, marks);
      this.#sweeper.watch(runs);
      for (const run of runs) {
        const result = await applyRun(tx, run, context);
        written += result.written;
        skippedByTable += result.skipped;
      }
      if (marks.length > 0) reportSweeps = await this.#sweeper.after(tx, marks);
      // Dead letters are safe (or the pipeline stops) before the batch commits.
      // (The runtime logs a few of them per batch, not one line per record.)
      if (failures.length > 0) {
        if (changed && await this.#alteredTables(tx, failures, changed)) throw TABLES_CHANGED;
        await batch.reject(failures.map((failure) => this.#presentable(failure)));
      }
      if (batch.offset) {
        await this.#offsets.write(tx, batch.offset.key, batch.offset.value);
      }
    });
    reportSweeps();
    return { written, skipped: skipped + skippedByTable };
  }

  /**
   * Turns records into runs of operations, table by table in order.
   * Consecutive operations on one table go together, in order per key (see
   * `runsOf`), and so do a streak's operations on tables foreign keys link
   * (see `byDependency`). Tables are looked up (and evolved) first: the transaction
   * holds the only connection.
   */
  async #plan(
    records: readonly SluiceRecord[],
    failures: RecordFailure[],
    guard: "guarded" | "refresh" | "overwrite",
    onlyNew: boolean,
  ): Promise<{ runs: Run[]; skipped: number; marks: SnapshotMark[] }> {
    const runs: Run[] = [];
    const marks: SnapshotMark[] = [];
    let skipped = 0;
    const { segments, rank, selfReferencing } = await this.#segments(records, failures);
    const cascades = new Map<string, string | undefined>();
    for (const segment of segments) {
      // Corrections from the source of truth pass the version guard; a full
      // refresh passes it at an equal version.
      if (guard === "overwrite") segment.table = segment.table.withoutVersionGuard();
      else if (guard === "refresh") segment.table = segment.table.withEqualVersionsWritten();
      if (onlyNew) segment.table = segment.table.onlyNewRows();
      const operations: Operation[] = [];
      for (const record of segment.records) {
        const mark = snapshotMark(segment.table, record);
        if (mark) marks.push(mark);
        let operation = this.#projector.operationOf(segment.table, record);
        if (operation !== undefined && this.#keyChange(record, operation)) {
          const table = segment.table.name;
          if (!cascades.has(table)) {
            cascades.set(table, await cascadingKey(this.#sql, segment.table));
          }
          const cascade = cascades.get(table);
          if (cascade) operation = sinkFailure(record, keyChangeCascades(table, cascade));
        }
        if (operation === undefined) skipped++;
        else if (Array.isArray(operation)) operations.push(...operation);
        else if ("kind" in operation) operations.push(operation);
        else failures.push(operation);
      }
      const writable = await fillMovedRows(
        this.#sql,
        segment.table,
        this.#projector,
        operations,
        failures,
      );
      runs.push(...runsOf(segment.table, writable, selfReferencing.has(segment.table.name)));
    }
    return { runs: rank ? byDependency(runs, rank) : runs, skipped, marks };
  }

  /**
   * The records by table, after each table took their new fields: one
   * segment per table, each in the records' order, when no foreign key links
   * two of the batch's tables. Otherwise consecutive records of one table,
   * so that a parent row is written before the child rows that follow it,
   * with the tables' ranks (see {@linkcode byDependency}) unless their keys
   * form a cycle. Transactions that touch tables in turn (an application and
   * its documents) would otherwise cost a staging round trip per record.
   */
  async #segments(
    records: readonly SluiceRecord[],
    failures: RecordFailure[],
  ): Promise<{ segments: Segment[]; rank?: Map<string, number>; selfReferencing: Set<string> }> {
    let segments: Segment[] = [];
    const byTable = new Map<string, Segment>();
    for (const record of records) {
      const table = await this.#tables.get(record);
      const last = segments.at(-1);
      if (last && last.table.name === table.name) last.records.push(record);
      else segments.push({ table, records: [record] });
      const grouped = byTable.get(table.name);
      if (grouped) grouped.records.push(record);
      else byTable.set(table.name, { table, records: [record] });
    }
    // Foreign keys matter to the order of writes when tables alternate, or
    // when a table's deletes meet its upserts (see `runsOf`); not at all to
    // replica sessions, which do not check them.
    const interleaved = byTable.size < segments.length;
    const tables = [...byTable.values()].map((segment) => segment.table);
    const checked = this.#settings.replicationRole === "origin";
    const references = checked && (interleaved || records.some(deletes))
      ? await foreignKeys(this.#sql, tables)
      : [];
    const selfReferencing = new Set(
      references.filter(({ child, parent }) => child === parent).map(({ child }) => child),
    );
    const between = references.filter(({ child, parent }) => child !== parent);
    let rank: Map<string, number> | undefined;
    if (interleaved && between.length === 0) segments = [...byTable.values()];
    else if (between.length > 0) rank = dependencyRanks(tables.map((table) => table.name), between);
    for (const segment of segments) {
      const { table, refused } = await this.#tables.evolve(
        segment.table,
        segment.records,
        this.#projector,
      );
      segment.table = table;
      if (refused.length === 0) continue;
      const skip = new Set(refused.map((failure) => failure.record));
      failures.push(...refused);
      segment.records = segment.records.filter((record) => !skip.has(record));
    }
    // A table evolved by a later segment is the same table: use its latest shape.
    for (const segment of segments) segment.table = this.#tables.latest(segment.table);
    return { segments, rank, selfReferencing };
  }

  /**
   * Whether `operation` deletes a row because its key changed at the source
   * (a delete carrying the new key, or an update moving the row), where a
   * hard delete would run the target's ON DELETE actions on rows the source
   * kept. Replica sessions run none.
   */
  #keyChange(record: SluiceRecord, operation: Operation | Operation[] | RecordFailure): boolean {
    if (this.#settings.deleteMode !== "hard" || this.#settings.replicationRole === "replica") {
      return false;
    }
    if (Array.isArray(operation)) return operation.some((one) => one.kind === "delete");
    return "kind" in operation && operation.kind === "delete" &&
      record.headers?.[NEW_KEY_HEADER] !== undefined;
  }

  /**
   * Whether a table of a failure that an altered table may explain (see
   * {@linkcode SCHEMA_STATES}) differs now from its description; such
   * tables are added to `changed`.
   */
  async #alteredTables(
    tx: Queryable,
    failures: readonly RecordFailure[],
    changed: Set<string>,
  ): Promise<boolean> {
    const names = new Set<string>();
    for (const failure of failures) {
      const code = (failure.error as { code?: string }).code;
      if (code !== undefined && SCHEMA_STATES.has(code)) {
        names.add(this.#tables.nameFor(failure.record));
      }
    }
    for (const name of names) {
      const table = this.#tables.opened(name);
      if (table && await table.changed(tx)) changed.add(name);
    }
    return changed.size > 0;
  }

  /** A failure whose record shows json/jsonb values as JSON (for dead letters). */
  #presentable(failure: RecordFailure): RecordFailure {
    const record = failure.record;
    const table = [...this.#tables.values()].find((t) => t.name === this.#tables.nameFor(record));
    if (!table) return failure;
    const json = new Set<string>();
    const value = record.value;
    const row = isChangeEvent(value) ? value.after ?? value.before : value;
    if (!row || typeof row !== "object") return failure;
    for (const field of Object.keys(row)) {
      const column = this.#projector.columnOf(table, field);
      const type = column === null ? undefined : table.columns.get(column)?.type;
      if (type === "json" || type === "jsonb") json.add(field);
    }
    if (json.size === 0) return failure;
    const presented = isChangeEvent(value)
      ? {
        ...value,
        before: value.before && withJsonParsed(value.before, json),
        after: value.after && withJsonParsed(value.after, json),
      }
      : withJsonParsed(value as Record<string, unknown>, json);
    return { ...failure, record: { ...record, value: presented } };
  }

  /**
   * For a replay: whether each record's write is ordered against the target
   * row by a guard (source position or version on both sides), changes
   * nothing, meets no row, or cannot be ordered (see `ReplayCheck`).
   */
  async replayCheck(records: readonly SluiceRecord[]): Promise<ReplayCheck[]> {
    const checks: ReplayCheck[] = records.map(() => ({ verdict: "safe" }));
    // The rows to look up, by table: one query per table.
    const lookups = new Map<TargetTable, { index: number; operation: Operation }[]>();
    for (const [index, record] of records.entries()) {
      const table = await this.#tables.get(record);
      const operation = this.#projector.operationOf(table, record);
      // Changes nothing, or the sink refuses it again on write: nothing to guard.
      if (operation === undefined || !("kind" in operation)) continue;
      if (operation.kind === "truncate") {
        checks[index] = {
          verdict: "unproven",
          reason:
            `a replayed truncate would empty table "${table.name}" whatever was written after it`,
        };
      } else lookups.set(table, [...(lookups.get(table) ?? []), { index, operation }]);
    }
    for (const [table, items] of lookups) {
      const guards = [table.positionColumn, table.versionColumn].filter((c): c is string =>
        c !== undefined
      );
      const stored = await table.storedValues(
        this.#sql,
        items.map((item) => item.operation.row),
        [...table.primaryKey, ...guards],
      );
      items.forEach(({ index, operation }, i) => {
        checks[index] = orderedAgainst(table, operation, stored[i]);
      });
    }
    return checks;
  }

  /** The stored offset of a pipeline. */
  async readOffset(key: string): Promise<JsonValue | undefined> {
    return await this.#offsets.read(this.#sql, key);
  }

  /** Replaces a pipeline's stored offset (an operator's reset, with the pipeline stopped). */
  async writeOffset(key: string, value: JsonValue): Promise<void> {
    await this.#offsets.write(this.#sql, key, value);
  }

  /** Forgets a pipeline's stored offset. */
  async deleteOffset(key: string): Promise<void> {
    await this.#offsets.delete(this.#sql, key);
  }

  /** Post-run checks: bulk-load row counts and the key checksum. */
  async validate(): Promise<ValidationCheck[]> {
    const checks: ValidationCheck[] = [];
    // A table loaded only by bulk COPY: its row count must equal the rows copied
    // (COPY does not say how many rows triggers or rules let through).
    for (const table of this.#tables.values()) {
      if (!table.bulk || table.bulkRows === 0) continue;
      const count = await table.count(this.#sql);
      checks.push({
        name: "target row count",
        ok: count === table.bulkRows,
        detail: `${table.name} holds ${count} rows after a bulk load of ${table.bulkRows}`,
      });
    }
    if (this.#settings.validateChecksum) {
      const { givenChecksum, writtenChecksum } = this.#totals;
      checks.push({
        name: "target key checksum",
        ok: givenChecksum === writtenChecksum,
        detail: `checksum of keys given ${givenChecksum}, written ${writtenChecksum}`,
      });
    }
    return checks;
  }

  async close(): Promise<void> {
    await this.#sql.end({ timeout: 5 });
  }
}

/**
 * SQLSTATEs of record failures that a change of the target table may have
 * removed: no such column (also given to records with a field the table
 * has no column for), a value the column's type cannot take or would
 * round, a value too long.
 */
/** Whether a record deletes: a delete event, a tombstone or a truncate. */
function deletes(record: SluiceRecord): boolean {
  const value = record.value;
  return value === null || (isChangeEvent(value) && (value.op === "d" || value.op === "t"));
}

/** Records of one table, to be written together. */
interface Segment {
  table: TargetTable;
  records: SluiceRecord[];
}

const SCHEMA_STATES = new Set([
  "42703", // undefined_column
  "42804", // datatype_mismatch
  "22P02", // invalid_text_representation
  "22003", // numeric_value_out_of_range
  "22001", // string_data_right_truncation
  "22026", // string_data_length_mismatch (bit(n))
  "22007", // invalid_datetime_format
  "22008", // datetime_field_overflow
  "0A000", // feature_not_supported: "cached plan must not change result type"
]);

/** SQLSTATEs of a whole write that mean a table or column it named is gone or changed. */
const TABLE_CHANGED = new Set(["42P01", "42703", "0A000", "42804"]);

/** Thrown out of a write's transaction to roll it back when its tables changed. */
const TABLES_CHANGED = Symbol("tables changed");

/** An error with what failed in front; retriable when the connection was lost. */
export function wrap(error: unknown, what: string): Error {
  const message = `${what}: ${errorMessage(error)}`;
  return isConnectionError(error)
    ? new RetriableError(message, { cause: error })
    : new Error(message, { cause: error });
}

/** Whether two source positions (a bigint, a number, LSN or decimal text) are one. */
function samePosition(a: unknown, b: unknown): boolean {
  const value = (position: unknown): bigint | undefined => {
    const text = String(position);
    const lsn = /^([0-9A-F]{1,8})\/([0-9A-F]{1,8})$/i.exec(text);
    if (lsn) return (BigInt(`0x${lsn[1]}`) << 32n) + BigInt(`0x${lsn[2]}`);
    return /^\d+$/.test(text) ? BigInt(text) : undefined;
  };
  const left = value(a);
  return left !== undefined && left === value(b);
}

/**
 * Whether `operation` is ordered against the target's `stored` row (see
 * `ReplayCheck`): both carry a source position or a version that the
 * write's guard compares, or there is no row.
 */
function orderedAgainst(
  table: TargetTable,
  operation: Operation,
  stored: Row | undefined,
): ReplayCheck {
  if (stored === undefined) return { verdict: operation.kind === "delete" ? "safe" : "absent" };
  const position = table.positionColumn;
  const version = table.versionColumn;
  const has = (row: Row, column: string | undefined) =>
    column !== undefined && row[column] !== undefined && row[column] !== null;
  if (has(operation.row, position) && has(stored, position)) {
    // One source transaction wrote both (events of a transaction share its
    // commit position): which came last cannot be told, and a delete
    // replayed after the create that followed it would remove a live row.
    if (samePosition(operation.row[position!], stored[position!])) {
      const key = table.primaryKey.map((c) => `${c}=${String(operation.row[c])}`).join(", ");
      return {
        verdict: "tied",
        reason: `table "${table.name}" holds the row ${key} from the record's own source ` +
          `transaction (equal ${position}): whether the record came before or after that write ` +
          `cannot be told`,
      };
    }
    return { verdict: "safe" };
  }
  if (has(operation.row, version) && has(stored, version)) return { verdict: "safe" };
  const missing = (column: string | undefined, record: string) =>
    column === undefined
      ? undefined
      : has(operation.row, column)
      ? `the row has no ${column}`
      : `the record ${record} ${column}`;
  const why = position === undefined && version === undefined
    ? `table "${table.name}" has neither a source position column nor a version.column`
    : [
      missing(position, "carries no source position for"),
      missing(version, "has no"),
    ].filter(Boolean).join(" and ");
  const key = table.primaryKey.map((c) => `${c}=${String(operation.row[c])}`).join(", ");
  return {
    verdict: "unproven",
    reason: `table "${table.name}" holds the row ${key}, and nothing shows the record is ` +
      `newer than it: ${why}`,
  };
}
