/**
 * The table where pipeline positions live in PostgreSQL (`pipeline` text
 * key, `offset` jsonb): written by the postgres sink in the same
 * transaction as a batch, and by the cluster's shared offset store for
 * pipelines whose sink keeps none. One definition, so both write one shape.
 *
 * @module
 */
import type { JsonValue } from "../api/record.ts";
import { createOnce, parseTableName, type Sql } from "./postgres.ts";

/** What the statements run on: a client or a transaction. */
type Queryable = Pick<Sql, "unsafe">;

/** A pipeline offsets table and its statements. */
export class OffsetsTable {
  /** The table name, quoted for SQL. */
  readonly quoted: string;

  /** `name` is `[schema.]table`, e.g. `public.sluice_offsets`. */
  constructor(name: string) {
    this.quoted = parseTableName(name).quoted;
  }

  /** Creates the table unless it exists (safe when several processes start at once). */
  async create(sql: Sql): Promise<void> {
    await createOnce(
      sql,
      `create table if not exists ${this.quoted} (
         pipeline text primary key, "offset" jsonb not null,
         updated_at timestamptz not null default now())`,
    );
  }

  /** The offset stored under `key`, or undefined. */
  async read(sql: Queryable, key: string): Promise<JsonValue | undefined> {
    const rows = await sql.unsafe<{ offset: JsonValue }[]>(
      `select "offset" from ${this.quoted} where pipeline = $1`,
      [key],
    );
    return rows[0]?.offset;
  }

  /** Stores `value` under `key`, replacing what was there. */
  async write(sql: Queryable, key: string, value: JsonValue): Promise<void> {
    await sql.unsafe(
      `insert into ${this.quoted} (pipeline, "offset") values ($1, $2::text::jsonb)
       on conflict (pipeline) do update set "offset" = excluded."offset", updated_at = now()`,
      [key, JSON.stringify(value)],
    );
  }

  /** Forgets the offset of `key`. */
  async delete(sql: Queryable, key: string): Promise<void> {
    await sql.unsafe(`delete from ${this.quoted} where pipeline = $1`, [key]);
  }
}
