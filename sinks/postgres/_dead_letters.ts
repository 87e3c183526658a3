/**
 * A dead-letter table in the sink's database, and the form a failed row
 * takes there: json and jsonb fields stay JSON (an object), not a JSON string.
 *
 * @module
 */
import type { DeadLetterWriter } from "../../api/plugin.ts";
import { deadLetterEntry } from "../../api/dead_letters.ts";
import { encodeJson } from "../../api/json.ts";
import { connect, createOnce, parseTableName, type Sql } from "../../drivers/postgres.ts";

/** A dead-letter table in the sink's database, created when missing. */
export function postgresDeadLetters(url: string, tableName: string): DeadLetterWriter {
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

/**
 * A copy of `row` in which the values of `jsonFields` that hold JSON text
 * are parsed, so a dead letter shows the document rather than a string.
 * Text that is not valid JSON is kept as it is.
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
      (copy ??= { ...row })[field] = JSON.parse(value);
    } catch {
      // Not JSON after all: the text is the most faithful form.
    }
  }
  return copy ?? row;
}
