/**
 * The sink's target tables: looked up (or created, with auto.create) on
 * first use, checked against the settings before anything is written to
 * them, evolved when records bring new fields or wider values, and
 * described again when records fail for a reason an altered table may
 * have removed (see `PostgresWriter`).
 *
 * @module
 */
import type { Logger } from "@logtape/logtape";
import type { RecordFailure, SourceMode } from "../../api/plugin.ts";
import type { SluiceRecord } from "../../api/record.ts";
import type { Sql } from "../../drivers/postgres.ts";
import type { Projector } from "./_operations.ts";
import { applyEvolution, createTable, planEvolution } from "./_schema.ts";
import type { Settings } from "./_settings.ts";
import { type TableOptions, TargetTable } from "./_table.ts";

/** What the directory needs of the running sink. */
export interface DirectoryContext {
  readonly pipeline: string;
  readonly logger: Logger;
  /** The pipeline's source mode, when known: a stream's tables must apply deletes. */
  readonly sourceMode?: SourceMode;
}

/** The target tables of one sink, by name. */
export class TableDirectory {
  readonly #sql: () => Sql;
  readonly #settings: Settings;
  readonly #context: DirectoryContext;
  readonly #tables = new Map<string, TargetTable>();

  constructor(sql: () => Sql, settings: Settings, context: DirectoryContext) {
    this.#sql = sql;
    this.#settings = settings;
    this.#context = context;
  }

  /** The tables opened so far. */
  values(): IterableIterator<TargetTable> {
    return this.#tables.values();
  }

  /** The current shape of `table` (it may have been evolved since). */
  latest(table: TargetTable): TargetTable {
    return this.#tables.get(table.name) ?? table;
  }

  /** The table a record goes to. */
  nameFor(record: SluiceRecord): string {
    return this.#settings.table ??
      this.#settings.tableNameFormat.replaceAll("${topic}", record.topic);
  }

  /**
   * Checks the fixed target table (`table`) before anything is read. A
   * missing table is fine only with auto.create (it is made from the first
   * record).
   */
  async prepare(): Promise<void> {
    const name = this.#settings.table;
    if (name === undefined) return;
    const table = await this.#open(name);
    if (!table && !this.#settings.autoCreate) {
      throw new Error(
        `Target table "${name}" does not exist: create it, or set auto.create to true`,
      );
    }
  }

  /** The table named `name`, opened on first use; undefined when it does not exist (yet). */
  async existing(name: string): Promise<TargetTable | undefined> {
    return this.#tables.get(name) ?? await this.#open(name);
  }

  /** The table for `record`, opened (or created) and checked on first use. */
  async get(record: SluiceRecord): Promise<TargetTable> {
    const name = this.nameFor(record);
    const known = this.#tables.get(name);
    if (known) return known;
    let table = await this.#open(name);
    if (!table && this.#settings.autoCreate) {
      await createTable(this.#sql(), name, record, this.#settings);
      this.#context.logger.info("Created target table {table} (auto.create)", { table: name });
      table = await this.#open(name);
    }
    if (!table) {
      throw new Error(
        `Target table "${name}" does not exist: create it, or set auto.create to true`,
      );
    }
    return table;
  }

  async #open(name: string): Promise<TargetTable | undefined> {
    const table = await TargetTable.open(this.#sql(), name, this.#options());
    if (!table) return undefined;
    // A stream may carry deletes at any time: a table that cannot apply them
    // stops the pipeline now, before an event is read or written.
    if (table.deleteProblem && this.#context.sourceMode === "stream") {
      throw new Error(`Cannot start pipeline "${this.#context.pipeline}": ${table.deleteProblem}`);
    }
    this.#tables.set(name, table);
    return table;
  }

  /**
   * Describes `names` again (their columns, types or key changed since they
   * were opened), so that the next write sees the fixed target.
   */
  async refresh(names: Iterable<string>): Promise<void> {
    for (const name of names) {
      const known = this.#tables.get(name);
      if (!known) continue;
      const table = await TargetTable.open(this.#sql(), name, this.#options());
      if (!table) {
        this.#tables.delete(name);
        continue;
      }
      table.bulk = known.bulk;
      table.bulkRows = known.bulkRows;
      this.#tables.set(name, table);
      this.#context.logger.info("Target table {table} changed: described again", { table: name });
    }
  }

  /** The table named `name` if it was opened already (never queries: safe inside a transaction). */
  opened(name: string): TargetTable | undefined {
    return this.#tables.get(name);
  }

  /** The names of the tables opened so far. */
  names(): string[] {
    return [...this.#tables.keys()];
  }

  #options(): TableOptions {
    const settings = this.#settings;
    return {
      insertMode: settings.insertMode,
      deleteMode: settings.deleteMode,
      softDeleteColumn: settings.softDeleteColumn,
      writeTimestampColumn: settings.writeTimestampColumn,
      primaryKey: settings.primaryKeyFields,
      positionColumn: settings.positionColumn,
      versionColumn: settings.versionColumn,
    };
  }

  /**
   * With schema.evolution basic: adds the columns and widens the columns the
   * records of `table` need, before they are written. Returns the records
   * the table cannot take (a value that would need a narrowing).
   */
  async evolve(
    table: TargetTable,
    records: readonly SluiceRecord[],
    projector: Projector,
  ): Promise<{ table: TargetTable; refused: RecordFailure[] }> {
    if (this.#settings.schemaEvolution !== "basic") return { table, refused: [] };
    const evolution = planEvolution(table, records, projector);
    const changes = await applyEvolution(this.#sql(), table, evolution, this.#settings);
    if (changes.length === 0) return { table, refused: evolution.refused };
    this.#context.logger.info("Evolved {table}: {changes}", {
      table: table.name,
      changes: changes.join(", "),
    });
    const reloaded = await table.reload(this.#sql(), this.#options());
    this.#tables.set(table.name, reloaded);
    return { table: reloaded, refused: evolution.refused };
  }
}
