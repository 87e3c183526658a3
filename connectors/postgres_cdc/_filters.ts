/**
 * Which tables and columns are captured, with Debezium's semantics: each
 * list holds regular expressions matched against the whole identifier
 * (`schema`, `schema.table`, `schema.table.column`), case-insensitively; an
 * include list captures only what it matches, an exclude list everything but
 * what it matches.
 *
 * @module
 */

/** The filter options, as parsed from the config. */
export interface FilterLists {
  readonly "schema.include.list"?: readonly string[];
  readonly "schema.exclude.list"?: readonly string[];
  readonly "table.include.list"?: readonly string[];
  readonly "table.exclude.list"?: readonly string[];
  readonly "column.include.list"?: readonly string[];
  readonly "column.exclude.list"?: readonly string[];
}

/** Decides which tables and columns are captured. */
export class CaptureFilter {
  readonly #schemas: (name: string) => boolean;
  readonly #tables: (name: string) => boolean;
  readonly #columns: (name: string) => boolean;
  /** Whether any table or schema list narrows the capture. */
  readonly narrowsTables: boolean;
  readonly #includes: { list: string; patterns: readonly string[] }[];

  constructor(lists: FilterLists) {
    this.#includes = (["table.include.list", "schema.include.list"] as const)
      .map((list) => ({ list, patterns: lists[list] ?? [] }));
    this.#schemas = predicate(lists["schema.include.list"], lists["schema.exclude.list"]);
    this.#tables = predicate(lists["table.include.list"], lists["table.exclude.list"]);
    this.#columns = predicate(lists["column.include.list"], lists["column.exclude.list"]);
    this.narrowsTables = [
      lists["schema.include.list"],
      lists["schema.exclude.list"],
      lists["table.include.list"],
      lists["table.exclude.list"],
    ].some((list) => list !== undefined && list.length > 0);
  }

  /** Whether changes of `schema.table` are captured. */
  table(schema: string, table: string): boolean {
    return this.#schemas(schema) && this.#tables(`${schema}.${table}`);
  }

  /**
   * The include-list entries that match none of `tables` (`schema.table`
   * for table.include.list, the schema for schema.include.list): most often
   * a typo, which would capture nothing of the table meant, in silence.
   */
  unmatchedIncludes(
    tables: readonly { schema: string; table: string }[],
  ): { list: string; entry: string; names: string[] }[] {
    const unmatched = [];
    for (const { list, patterns } of this.#includes) {
      const names = list === "schema.include.list"
        ? [...new Set(tables.map((t) => t.schema))]
        : tables.map((t) => `${t.schema}.${t.table}`);
      for (const entry of patterns) {
        const [pattern] = compilePatterns([entry]);
        if (!names.some((name) => pattern.test(name))) unmatched.push({ list, entry, names });
      }
    }
    return unmatched;
  }

  /** Whether `column` of `schema.table` appears in events. */
  column(schema: string, table: string, column: string): boolean {
    return this.#columns(`${schema}.${table}.${column}`);
  }
}

/** Compiles each pattern, anchored; throws naming a pattern that does not compile. */
export function compilePatterns(patterns: readonly string[]): RegExp[] {
  return patterns.map((pattern) => new RegExp(`^(?:${pattern})$`, "i"));
}

function predicate(
  include: readonly string[] | undefined,
  exclude: readonly string[] | undefined,
): (name: string) => boolean {
  if (include && include.length > 0) {
    const patterns = compilePatterns(include);
    return (name) => patterns.some((pattern) => pattern.test(name));
  }
  if (exclude && exclude.length > 0) {
    const patterns = compilePatterns(exclude);
    return (name) => !patterns.some((pattern) => pattern.test(name));
  }
  return () => true;
}
