/**
 * A dead-letter table in the sink's database, and the form a failed row
 * takes there: json and jsonb fields stay JSON (an object), not a JSON string.
 *
 * @module
 */
import type { DeadLetterWriter } from "../../api/plugin.ts";
import {
  ATTEMPTS_HEADER,
  CHAIN_HEADER,
  deadLetterEntry,
  type DeadLetterSelection,
  type DeadLetterStore,
  type StoredDeadLetter,
} from "../../api/dead_letters.ts";
import { encodeJson } from "../../api/json.ts";
import { connect, createOnce, parseTableName, type Sql } from "../../drivers/postgres.ts";

/** Creates the table, and adds the columns later versions need to an older one. */
function prepare(sql: Sql, table: string): Promise<void> {
  return createOnce(
    sql,
    `create table if not exists ${table} (
       id bigserial primary key, pipeline text not null, stage text not null,
       error text not null, error_class text, topic text,
       record_key jsonb, record_value jsonb, headers jsonb,
       failed_at timestamptz not null default now(),
       error_code text, attempts integer not null default 1);
     alter table ${table} add column if not exists error_code text,
       add column if not exists attempts integer not null default 1`,
  );
}

/** A dead-letter table in the sink's database, created when missing. */
export function postgresDeadLetters(url: string, tableName: string): DeadLetterWriter {
  const table = parseTableName(tableName).quoted;
  let sql: Sql | undefined;
  let ready: Promise<unknown> | undefined;
  return {
    description: `table ${tableName}`,
    async write(failures, pipeline) {
      sql ??= connect(url, { max: 1, applicationName: `sluice:${pipeline}:dead-letters` });
      ready ??= prepare(sql, table);
      await ready;
      const entries = failures.map((failure) => deadLetterEntry(failure, pipeline));
      await sql.unsafe(
        `insert into ${table} (pipeline, stage, error, error_class, error_code, topic,
                               record_key, record_value, headers)
         select e->>'pipeline', e->>'stage', e->>'error', e->>'errorClass', e->>'errorCode',
                e->>'topic', e->'key', e->'value', e->'headers'
         from jsonb_array_elements($1::text::jsonb) as e`,
        [encodeJson(entries)],
      );
    },
    async close() {
      await sql?.end({ timeout: 5 });
    },
  };
}

interface Row {
  id: string;
  pipeline: string;
  stage: string;
  error: string;
  error_class: string | null;
  error_code: string | null;
  topic: string | null;
  record_key: unknown;
  record_value: unknown;
  headers: Record<string, string> | null;
  failed_at: string;
  attempts: number;
}

/** Headers without the error context (`__connect.errors.*`, `__sluice.errors.*`). */
function recordHeaders(headers: Record<string, string> | null): Record<string, string> {
  return Object.fromEntries(
    Object.entries(headers ?? {}).filter(([name]) =>
      !name.startsWith("__connect.errors.") && !name.startsWith("__sluice.errors.")
    ),
  );
}

function letterOf(row: Row): StoredDeadLetter {
  const trace = row.headers?.["__connect.errors.exception.stacktrace"];
  return {
    id: String(row.id),
    pipeline: row.pipeline,
    stage: row.stage,
    error: row.error,
    errorClass: row.error_class ?? "Error",
    ...(row.error_code ? { errorCode: row.error_code } : {}),
    ...(trace ? { trace } : {}),
    failedAt: new Date(row.failed_at).toISOString(),
    attempts: row.attempts,
    record: {
      topic: row.topic ?? "",
      key: (row.record_key ?? null) as never,
      value: (row.record_value ?? null) as never,
      headers: recordHeaders(row.headers),
    },
    ...(row.headers?.[CHAIN_HEADER] !== undefined ? { chain: row.headers[CHAIN_HEADER] } : {}),
  };
}

/**
 * The dead-letter table read and worked off by `sluice dlq`. Rows are
 * deleted and updated by id, so a running pipeline inserting new dead
 * letters at the same time is no concern (row-level MVCC).
 */
export function postgresDeadLetterStore(url: string, tableName: string): DeadLetterStore {
  const table = parseTableName(tableName).quoted;
  let sql: Sql | undefined;
  let ready: Promise<boolean> | undefined;
  /**
   * Whether the table exists (nothing is created just to be read). Only a
   * found table is remembered: the pipeline creates it at its first dead
   * letter, and a gauge that cached "absent" would read 0 from then on.
   */
  const open = (): Promise<boolean> => {
    sql ??= connect(url, { max: 1, applicationName: "sluice:dead-letters" });
    ready ??= sql.unsafe("select to_regclass($1) is not null as found", [table])
      .then(async ([row]) => {
        if (!row.found) {
          ready = undefined;
          return false;
        }
        await prepare(sql!, table);
        return true;
      }, (error) => {
        ready = undefined;
        throw error;
      });
    return ready;
  };
  return {
    description: `table ${tableName}`,
    async list(pipeline: string, selection: DeadLetterSelection) {
      if (!(await open())) return [];
      const rows = await sql!.unsafe<Row[]>(
        `select id::text as id, pipeline, stage, error, error_class, error_code, topic,
                record_key, record_value, headers, to_json(failed_at) #>> '{}' as failed_at, attempts
         from ${table} as letter
         where pipeline = $1
           and ($2::text[] is null or letter.id::text = any($2::text[]))
           and ($3::text[] is null or stage = any($3::text[]))
           and ($4::timestamptz is null or failed_at >= $4)
           and ($5::timestamptz is null or failed_at < $5)
         order by letter.id`, // the number, not the text of the output column (10 after 9)
        [
          pipeline,
          selection.ids ? [...selection.ids] : null,
          selection.stages ? [...selection.stages] : null,
          selection.since?.toISOString() ?? null,
          selection.until?.toISOString() ?? null,
        ] as never[],
      );
      return rows.map(letterOf);
    },
    async count(pipeline: string) {
      if (!(await open())) return 0;
      const [row] = await sql!.unsafe(
        `select count(*)::int as count from ${table} where pipeline = $1`,
        [pipeline],
      );
      return row.count as number;
    },
    async remove(ids: readonly string[]) {
      if (ids.length === 0 || !(await open())) return 0;
      const rows = await sql!.unsafe(
        `delete from ${table} where id::text = any($1::text[]) returning id`,
        [[...ids]] as never[],
      );
      return rows.length;
    },
    async failedAgain(again) {
      if (again.length === 0 || !(await open())) return;
      const updates = again.map(({ letter, failure }) => {
        const entry = deadLetterEntry(failure, letter.pipeline);
        const attempts = letter.attempts + 1;
        return {
          ...entry,
          id: letter.id,
          attempts,
          headers: { ...entry.headers, [ATTEMPTS_HEADER]: String(attempts) },
        };
      });
      await sql!.unsafe(
        `update ${table} t set stage = e->>'stage', error = e->>'error',
                error_class = e->>'errorClass', error_code = e->>'errorCode',
                topic = e->>'topic', record_key = e->'key', record_value = e->'value',
                headers = e->'headers', attempts = (e->>'attempts')::int
         from jsonb_array_elements($1::text::jsonb) as e
         where t.id::text = e->>'id'`,
        [encodeJson(updates)],
      );
    },
    async close() {
      await sql?.end({ timeout: 5 });
    },
  };
}

/**
 * A copy of `row` in which the values of `jsonFields` that hold JSON text
 * are parsed, so a dead letter shows the document rather than a string.
 * Text that is not valid JSON is kept as it is, and so is a document with a
 * number a double cannot hold as written (an int64 beyond 2^53, a long
 * decimal): a replay writes the dead letter back, and must write what came.
 */
export function withJsonParsed(
  row: Record<string, unknown>,
  jsonFields: ReadonlySet<string>,
): Record<string, unknown> {
  let copy: Record<string, unknown> | undefined;
  for (const field of jsonFields) {
    const value = row[field];
    if (typeof value !== "string") continue;
    try {
      (copy ??= { ...row })[field] = JSON.parse(value, exactNumbersOnly);
    } catch {
      // Not JSON after all, or not exactly: the text is the most faithful form.
    }
  }
  return copy ?? row;
}

/** A reviver that refuses a number whose text parsing would change. */
function exactNumbersOnly(
  this: unknown,
  _key: string,
  value: unknown,
  context?: { source?: string },
): unknown {
  if (
    typeof value === "number" && context?.source !== undefined && String(value) !== context.source
  ) {
    throw new RangeError(`${context.source} is not exact as a double`);
  }
  return value;
}
