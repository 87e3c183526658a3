/**
 * Topic names of captured tables: `<topic.prefix>.<schema>.<table>`, with
 * every character Kafka does not allow in a topic name replaced by `_`, as
 * Debezium's topic naming does (a table `"order items"` goes to
 * `w.public.order_items`). The event's `source` block keeps the real names.
 * Two tables whose names differ only in such characters would share a
 * topic, and a consumer could not tell their rows apart, so that is refused
 * loudly: at validation when the include list names the tables, otherwise
 * when the capture first meets them.
 *
 * @module
 */
import type { Sql } from "../../drivers/postgres.ts";
import type { CaptureFilter } from "./_filters.ts";

/** Kafka's limit on the length of a topic name. */
const MAX_TOPIC_LENGTH = 249;

/**
 * The topic of a table: characters outside `[A-Za-z0-9._-]` become `_`.
 *
 * @example
 * ```ts
 * import { topicName } from "./_topics.ts";
 *
 * console.assert(topicName("w", "public", "order items") === "w.public.order_items");
 * ```
 */
export function topicName(prefix: string, schema: string, table: string): string {
  return `${prefix}.${schema}.${table}`.replace(/[^A-Za-z0-9._-]/g, "_");
}

/** A table named by schema and table. */
export interface TableName {
  readonly schema: string;
  readonly table: string;
}

function show(table: TableName): string {
  return `"${table.schema}"."${table.table}"`;
}

/**
 * Problems with the topics of `tables`: two tables mapped to one topic, or a
 * name longer than Kafka allows. One sentence each; empty when all is well.
 */
export function topicProblems(prefix: string, tables: readonly TableName[]): string[] {
  const owners = new Map<string, TableName>();
  const problems: string[] = [];
  for (const table of tables) {
    const topic = topicName(prefix, table.schema, table.table);
    const owner = owners.get(topic);
    if (owner && (owner.schema !== table.schema || owner.table !== table.table)) {
      problems.push(collision(owner, table, topic));
    }
    if (topic.length > MAX_TOPIC_LENGTH) {
      problems.push(
        `the topic of ${
          show(table)
        } would be ${topic.length} characters long; Kafka allows ${MAX_TOPIC_LENGTH}`,
      );
    }
    owners.set(topic, owner ?? table);
  }
  return problems;
}

function collision(first: TableName, second: TableName, topic: string): string {
  return `${show(first)} and ${
    show(second)
  } would share the topic "${topic}" once characters Kafka does not allow are replaced with "_"; capture only one of them (table.exclude.list) or rename one`;
}

/**
 * The tables an include list names literally (`schema.table`, the dot
 * written as `.` or `\.`, no other regular-expression syntax), which are
 * known without connecting.
 */
export function literalTables(patterns: readonly string[]): TableName[] {
  const literal = /^([^.\\^$*+?()[\]{}|]+)\\?\.([^.\\^$*+?()[\]{}|]+)$/;
  return patterns.flatMap((pattern) => {
    const match = literal.exec(pattern.trim());
    return match ? [{ schema: match[1], table: match[2] }] : [];
  });
}

/**
 * Hands out topics to the relations a capture meets. On first use it checks
 * every table of the database the filter captures, so a collision stops the
 * pipeline at start rather than when the second table first changes.
 */
export class TopicNames {
  readonly #prefix: string;
  readonly #owners = new Map<string, TableName>();
  #checked: Promise<void> | undefined;

  constructor(prefix: string) {
    this.#prefix = prefix;
  }

  /** The topic of a captured table; throws when another table already has it. */
  async claim(sql: Sql, filter: CaptureFilter, table: TableName): Promise<string> {
    this.#checked ??= this.#checkDatabase(sql, filter);
    await this.#checked;
    const topic = topicName(this.#prefix, table.schema, table.table);
    const owner = this.#owners.get(topic);
    if (owner && (owner.schema !== table.schema || owner.table !== table.table)) {
      throw new Error(`Cannot capture ${show(table)}: ${collision(owner, table, topic)}`);
    }
    this.#owners.set(topic, table);
    return topic;
  }

  async #checkDatabase(sql: Sql, filter: CaptureFilter): Promise<void> {
    const rows = await sql<TableName[]>`
      select n.nspname as schema, c.relname as table
      from pg_class c join pg_namespace n on n.oid = c.relnamespace
      where c.relkind in ('r', 'p')
        and n.nspname not in ('pg_catalog', 'information_schema')
        and n.nspname not like 'pg\\_toast%' and n.nspname not like 'pg\\_temp%'
      order by 1, 2`;
    const captured = rows.filter((row) => filter.table(row.schema, row.table));
    const problems = topicProblems(this.#prefix, captured);
    if (problems.length > 0) {
      throw new Error(`Cannot start the capture: ${problems.join("; ")}`);
    }
  }
}
