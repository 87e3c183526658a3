/**
 * What a reconciliation compares, read from the checked pipeline's parts:
 * the `postgres_query` source (table or query, key, `where`, columns), its
 * transforms, and the `postgres` sink (table, `fields.mapping`,
 * `fields.exclude`, key, soft deletes). Both databases are described once
 * per run.
 *
 * @module
 */
import type { PipelineParts, PluginContext, Predicate, Transform } from "../../api/plugin.ts";
import type { Row, SluiceRecord } from "../../api/record.ts";
import {
  type ConnectionConfig,
  connectionUrl,
  describeTable,
  primaryKeyColumns,
  quoteIdent,
  type Sql,
} from "../../drivers/postgres.ts";
import { PgCodec } from "../../drivers/pg_codec.ts";
import type { Decoder } from "../../drivers/pg_text.ts";

/** The parsed `postgres_query` settings a reconciliation reads (see connectors/postgres_query.ts). */
interface QuerySettings {
  readonly url: string;
  readonly table?: { schema: string; table: string; quoted: string };
  readonly query?: string;
  readonly keyColumns?: readonly string[];
  readonly columns?: readonly string[];
  readonly where?: string;
  readonly timestampColumn: string;
  readonly topic?: string;
}

/** The parsed `postgres` sink settings a reconciliation reads (see sinks/postgres/_settings.ts). */
interface SinkSettings {
  readonly connection: ConnectionConfig;
  readonly table?: string;
  readonly primaryKeyFields?: readonly string[];
  readonly mapping: ReadonlyMap<string, string>;
  readonly excludedFields: ReadonlySet<string>;
  readonly deleteMode: "soft" | "hard" | "none";
  readonly softDeleteColumn: string;
}

/** Why a pipeline cannot be reconciled, or undefined when it can. */
export function subjectProblem(parts: PipelineParts): string | undefined {
  if (parts.source.plugin.name !== "postgres_query") {
    return `its source is "${parts.source.plugin.name}"; reconciliation reads postgres_query sources`;
  }
  if (parts.sink.plugin.name !== "postgres") {
    return `its sink is "${parts.sink.plugin.name}"; reconciliation compares with postgres sinks`;
  }
  if (!(parts.sink.config as SinkSettings).table) {
    return "its sink has no fixed table (sink.table); reconciliation needs one target table";
  }
  return undefined;
}

/** A column on the source side with its type name (format_type). */
export interface SourceColumn {
  readonly name: string;
  readonly type: string;
  readonly typeOid: number;
}

/** Everything a comparison needs about both sides. */
export interface Subject {
  readonly name: string;
  readonly sourceUrl: string;
  readonly targetUrl: string;
  /** `select <columns> from <table or query> where <condition>` on the source. */
  readonly sourceSelect: string;
  /**
   * What the pipeline reads of the source, when less than a whole table:
   * `where` (then `wholeTableSelect` reads the table without it) or `query`.
   * The target may then hold other writers' rows.
   */
  readonly subset?: "where" | "query";
  /** `select <columns> from <table>`, without the pipeline's `where`. */
  readonly wholeTableSelect?: string;
  readonly sourceColumns: readonly SourceColumn[];
  readonly sourceDecoders: readonly Decoder[];
  /** Topic of the records, as postgres_query names it. */
  readonly topic: string;
  /** Key fields of the source records. */
  readonly keyFields: readonly string[];
  /** Their source types, to cast target values to before hashing. */
  readonly keyTypes: readonly string[];
  /** The target table, quoted. */
  readonly targetTable: string;
  /** Target columns, by name, with their types. */
  readonly targetColumns: ReadonlyMap<string, { type: string; typeOid: number }>;
  /** The target's key columns (sink primary.key.fields or its primary key). */
  readonly targetKey: readonly string[];
  /** A condition on target rows that are live (not soft-deleted). */
  readonly targetLive: string;
  /** The sink's delete mode, for repairing extra rows. */
  readonly deleteMode: "soft" | "hard" | "none";
  /** Source field → target column (undefined when excluded or absent). */
  targetColumnOf(field: string): string | undefined;
}

/** Describes both databases of `parts`. */
export async function describeSubject(
  parts: PipelineParts,
  source: Sql,
  target: Sql,
): Promise<Subject> {
  const query = parts.source.config as QuerySettings;
  const sink = parts.sink.config as SinkSettings;
  const from = query.table ? query.table.quoted : `(${query.query}) as sluice_query`;
  const columnList = query.columns?.map(quoteIdent).join(", ") ?? "*";
  const sourceSelect = `select ${columnList} from ${from} where ${
    query.where ? `(${query.where})` : "true"
  }`;
  const probe = await source.unsafe(`${sourceSelect} limit 0`).describe();
  const oids = probe.columns.map((column) => column.type);
  const types = await source.unsafe<{ type: string }[]>(
    "select format_type(oid, null) as type from unnest($1::oid[]) with ordinality as u(oid, n) order by n",
    [oids],
  );
  const sourceColumns = probe.columns.map((column, i) => ({
    name: column.name,
    type: types[i].type,
    typeOid: column.type,
  }));
  const sourceDecoders = await new PgCodec(source).decoders(
    sourceColumns.map((c) => ({ typeOid: c.typeOid })),
  );
  const keyFields = query.keyColumns ??
    (query.table ? await primaryKeyColumns(source, query.table.quoted) : []);
  if (keyFields.length === 0) {
    throw new Error(`Cannot reconcile "${parts.name}": its source has no key; set key.columns`);
  }
  const typeOf = new Map(sourceColumns.map((c) => [c.name, c.type]));
  for (const field of keyFields) {
    if (!typeOf.has(field)) {
      throw new Error(`Cannot reconcile "${parts.name}": key column "${field}" is not read`);
    }
  }
  const described = await describeTable(target, sink.table!);
  if (!described) {
    throw new Error(`Cannot reconcile "${parts.name}": target table ${sink.table} does not exist`);
  }
  const targetColumns = new Map(
    described.columns.map((c) => [c.name, { type: c.type, typeOid: c.typeOid }]),
  );
  const targetColumnOf = (field: string): string | undefined => {
    if (sink.excludedFields.has(field)) return undefined;
    const column = sink.mapping.get(field) ?? field;
    return targetColumns.has(column) ? column : undefined;
  };
  const targetKey = sink.primaryKeyFields ?? described.primaryKey;
  if (targetKey.length === 0) {
    throw new Error(`Cannot reconcile "${parts.name}": ${sink.table} has no primary key`);
  }
  const soft = sink.deleteMode === "soft" && targetColumns.has(sink.softDeleteColumn);
  const quotedTarget = (await target.unsafe<{ name: string }[]>(
    "select $1::regclass::text as name",
    [sink.table!],
  ))[0].name;
  return {
    name: parts.name,
    sourceUrl: query.url,
    targetUrl: connectionUrl(sink.connection),
    sourceSelect,
    subset: query.query ? "query" : query.where ? "where" : undefined,
    wholeTableSelect: query.table && query.where
      ? `select ${columnList} from ${query.table.quoted}`
      : undefined,
    sourceColumns,
    sourceDecoders,
    topic: query.topic ??
      (query.table ? `${query.table.schema}.${query.table.table}` : parts.name),
    keyFields,
    keyTypes: keyFields.map((field) => typeOf.get(field)!),
    targetTable: quotedTarget,
    targetColumns,
    targetKey,
    targetLive: soft ? `${quoteIdent(sink.softDeleteColumn)} is null` : "true",
    deleteMode: sink.deleteMode,
    targetColumnOf,
  };
}

/** The version column of the subject's source (timestamp.column.name), for fast mode. */
export function defaultVersionField(parts: PipelineParts): string {
  return (parts.source.config as QuerySettings).timestampColumn;
}

/** The record postgres_query makes of a row. */
export function recordOf(subject: Subject, row: Row): SluiceRecord {
  const key: Row = {};
  for (const field of subject.keyFields) key[field] = row[field];
  return { topic: subject.topic, key, value: row };
}

/** The subject's transforms, applied as the pipeline applies them. */
export class TransformChain {
  readonly #steps: { transform: Transform; predicate?: Predicate; negate: boolean }[];

  private constructor(
    steps: { transform: Transform; predicate?: Predicate; negate: boolean }[],
  ) {
    this.#steps = steps;
  }

  /** Builds the transforms of `parts` with `context`. */
  static async open(parts: PipelineParts, context: PluginContext): Promise<TransformChain> {
    const steps = [];
    for (const step of parts.transforms) {
      const child = { ...context, logger: context.logger.getChild(step.alias) };
      const transform = await step.plugin.create(step.config, child);
      const predicate = step.predicate
        ? step.predicate.plugin.create(step.predicate.config, child)
        : undefined;
      steps.push({ transform, predicate, negate: step.negate });
    }
    return new TransformChain(steps);
  }

  /** True when there is nothing to apply. */
  get empty(): boolean {
    return this.#steps.length === 0;
  }

  /** The record after every step, or null when a step dropped it. */
  async apply(record: SluiceRecord): Promise<SluiceRecord | null> {
    let current: SluiceRecord | null = record;
    for (const step of this.#steps) {
      if (step.predicate && step.predicate(current) === step.negate) continue;
      const result: SluiceRecord | null | Promise<SluiceRecord | null> = step.transform.apply(
        current,
      );
      current = result instanceof Promise ? await result : result;
      if (current === null) return null;
    }
    return current;
  }

  /** Releases what the transforms hold. */
  async close(): Promise<void> {
    for (const step of this.#steps) await step.transform.close?.();
  }
}
