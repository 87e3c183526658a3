/**
 * Shared PostgreSQL plumbing for the postgres connectors and sink: the
 * connection options (Kafka Connect JDBC's `connection.url` or Debezium's
 * `database.*` keys), opening a postgres.js client, and quoting names.
 *
 * @module
 */
import net from "node:net";
import type { Writable } from "node:stream";
import postgres from "postgres";
import { getLogger } from "@logtape/logtape";
import { z } from "zod";
import { hostProblem, port } from "../api/options.ts";
import { redactSecrets } from "../api/redact.ts";

/** The postgres.js client type. */
export type Sql = postgres.Sql;

/** Connection options, accepted in both Kafka Connect JDBC and Debezium spelling. */
export const connectionOptions = {
  "connection.url": z.string().optional().describe(
    "PostgreSQL URL, e.g. postgres://user:password@host:5432/db (JDBC URLs jdbc:postgresql://… are accepted too); one host, a database, port 5432 when none is given. Alternative to the database.* keys.",
  ),
  "connection.user": z.string().optional().describe("User, when not in connection.url."),
  "connection.password": z.string().optional().describe(
    "Password, when not in connection.url.",
  ),
  "database.hostname": z.string().optional().describe(
    "Host name or IPv4 address (Debezium style).",
  ),
  "database.port": port().optional().describe("Port (Debezium style), 1 to 65535; default 5432."),
  "database.user": z.string().optional().describe("User (Debezium style)."),
  "database.password": z.string().optional().describe("Password (Debezium style)."),
  "database.dbname": z.string().optional().describe("Database name (Debezium style)."),
  "database.sslmode": z.enum(["disable", "prefer", "require"]).optional().describe(
    "TLS use; default prefer… as libpq.",
  ),
} as const;

/** Parsed connection options. */
export type ConnectionConfig = {
  [K in keyof typeof connectionOptions]?: z.output<(typeof connectionOptions)[K]>;
};

/**
 * Reports a missing, malformed or ambiguous connection; used in a zod
 * superRefine of each plugin's schema. A connection goes exactly where the
 * config says or nowhere: every destination is checked here, before
 * anything connects.
 */
export function checkConnection(config: ConnectionConfig, context: z.RefinementCtx): void {
  const issue = (path: string, message: string) =>
    context.addIssue({ code: "custom", path: [path], message, input: undefined });
  const url = config["connection.url"];
  const hostname = config["database.hostname"];
  if (!url && !hostname) {
    issue(
      "connection.url",
      "is required: give connection.url, or database.hostname with database.dbname",
    );
  }
  for (const key of ["database.hostname", "database.port", "database.dbname"] as const) {
    if (url && config[key] !== undefined) {
      issue(key, "cannot be combined with connection.url: give one destination, not two");
    }
  }
  if (url) {
    const problem = urlProblem(url);
    if (problem) issue("connection.url", problem);
  }
  if (hostname) {
    const problem = hostProblem(hostname);
    if (problem) issue("database.hostname", problem);
  }
  if (hostname && !config["database.dbname"] && !url) {
    issue("database.dbname", "is required with database.hostname");
  }
}

/** Parses a postgres or JDBC URL; throws an error that shows no password. */
function parseUrl(given: string): URL {
  try {
    return new URL(given.trim().replace(/^jdbc:postgresql:/, "postgres:"));
  } catch {
    const why = urlSyntaxProblem(given.trim());
    throw new TypeError(
      `is not a valid URL${why ? `: ${why}` : ""}: current value is ${redactSecrets(given)}`,
    );
  }
}

/** Why `URL` refused a URL, where it can be told: the parser itself only says "invalid". */
function urlSyntaxProblem(given: string): string | undefined {
  const authority = /^[a-z][a-z0-9+.:-]*:\/\/([^/?#]*)/i.exec(given)?.[1];
  if (authority === undefined) return undefined;
  // The host part comes after the last "@" (user and password come before it).
  const hostPort = authority.slice(authority.lastIndexOf("@") + 1);
  if (hostPort.includes(",")) return "several hosts are not supported, give one";
  const port = /:([^:\]]*)$/.exec(hostPort)?.[1];
  if (port !== undefined && port !== "") {
    if (!/^\d+$/.test(port)) return `the port "${port}" is not a number`;
    if (Number(port) > 65535) return `the port ${port} is not a port number from 1 to 65535`;
  }
  const host = port === undefined ? hostPort : hostPort.slice(0, -port.length - 1);
  if (/\s/.test(host)) return "the host contains a space";
  return undefined;
}

/** Why a `connection.url` cannot be connected to as written, or undefined. */
function urlProblem(given: string): string | undefined {
  let url: URL;
  try {
    url = parseUrl(given);
  } catch (error) {
    return (error as Error).message;
  }
  const shown = redactSecrets(given);
  if (url.protocol !== "postgres:" && url.protocol !== "postgresql:") {
    return `must start with postgres://, postgresql:// or jdbc:postgresql://: current value is ${shown}`;
  }
  const host = url.hostname;
  if (host === "") return `names no host: current value is ${shown}`;
  const hostIssue = hostProblem(host);
  if (hostIssue) return `has an unusable host: the host ${hostIssue}`;
  if (url.port === "0") return `must have a port from 1 to 65535: current value is ${shown}`;
  const database = decodeURIComponent(url.pathname.replace(/^\//, ""));
  if (database === "") return `names no database (…/dbname): current value is ${shown}`;
  if (database.includes("/")) return `must name one database: current value is ${shown}`;
  return undefined;
}

/**
 * A postgres URL built from the connection options, with host, port (5432
 * when none is given) and database always written out, so neither the
 * PGHOST/PGPORT/PGDATABASE environment nor a driver default can send the
 * connection elsewhere.
 */
export function connectionUrl(config: ConnectionConfig): string {
  const given = config["connection.url"];
  if (given) {
    const url = parseUrl(given);
    if (url.protocol === "postgresql:") url.href = url.href.replace(/^postgresql:/, "postgres:");
    const user = config["connection.user"] ?? url.searchParams.get("user");
    const password = config["connection.password"] ?? url.searchParams.get("password");
    url.searchParams.delete("user");
    url.searchParams.delete("password");
    if (user) url.username = encodeURIComponent(user);
    if (password) url.password = encodeURIComponent(password);
    if (url.port === "") url.port = "5432";
    return url.href;
  }
  const url = new URL("postgres://localhost");
  url.hostname = config["database.hostname"]!;
  const port = String(config["database.port"] ?? 5432);
  url.port = port;
  // The URL setters ignore what they cannot parse; never connect elsewhere.
  const wanted = config["database.hostname"]!.toLowerCase();
  if (url.hostname.toLowerCase() !== wanted || url.port !== port) {
    throw new TypeError(
      `Cannot build a URL from database.hostname ${
        JSON.stringify(config["database.hostname"])
      } and database.port ${port}`,
    );
  }
  url.pathname = `/${encodeURIComponent(config["database.dbname"] ?? "postgres")}`;
  if (config["database.user"]) url.username = encodeURIComponent(config["database.user"]);
  if (config["database.password"]) url.password = encodeURIComponent(config["database.password"]);
  if (config["database.sslmode"]) url.searchParams.set("sslmode", config["database.sslmode"]);
  return url.href;
}

/**
 * Where a URL points, for messages that must say which database failed:
 * `host:port/database`, never the credentials.
 */
export function databaseLabel(url: string): string {
  try {
    const { host, port, database } = destinationOf(url);
    return `${host[0]}:${port[0]}/${database}`;
  } catch {
    return "(a connection URL that does not parse)";
  }
}

/** The host, port and database a URL names, as postgres.js must use them. */
function destinationOf(url: string): { host: string[]; port: number[]; database: string } {
  const parsed = parseUrl(url);
  return {
    host: [parsed.hostname],
    port: [Number(parsed.port || 5432)],
    database: decodeURIComponent(parsed.pathname.replace(/^\//, "")),
  };
}

/** Options for {@linkcode connect}. */
export interface ConnectOptions {
  /** Pool size. */
  max?: number;
  /** A name shown in pg_stat_activity. */
  applicationName?: string;
  /** postgres.js connection parameters (for example `replication`). */
  connection?: Record<string, string>;
}

/**
 * Session settings of every connection whose text output becomes values or
 * whose input reads them: sent at start-up, they win over what a database
 * or role sets (`ALTER DATABASE … SET DateStyle = 'SQL, DMY'` would print
 * 01/02/2024 for a date another session reads as January 2; a zero
 * extra_float_digits rounds floats; escape bytea output is another text).
 */
export const TEXT_SETTINGS: Readonly<Record<string, string>> = {
  TimeZone: "UTC",
  DateStyle: "ISO, MDY",
  IntervalStyle: "postgres",
  extra_float_digits: "3",
  bytea_output: "hex",
};

/**
 * Opens a postgres.js client. Timestamps, dates and numerics are returned as
 * PostgreSQL's own text (lossless), in the {@linkcode TEXT_SETTINGS}. Close
 * it with `sql.end()`, or let `await using` end it.
 */
export function connect(url: string, options: ConnectOptions = {}): Sql & AsyncDisposable {
  guardClosedSocketWrites();
  const settings = {
    // Given explicitly: postgres.js would otherwise fall back on PGHOST,
    // PGPORT or PGDATABASE for what the URL leaves out.
    ...destinationOf(url),
    max: options.max ?? 4,
    onnotice: () => {},
    // Not in postgres.js's type declarations, but a documented option.
    socket: connectNoDelay,
    connection: {
      application_name: options.applicationName ?? "sluice",
      ...TEXT_SETTINGS,
      ...options.connection,
    },
    types: {
      // Keep date/time values as PostgreSQL text: a JS Date loses microseconds.
      textTimes: {
        to: 25,
        from: [1082, 1083, 1114, 1184, 1266],
        serialize: (value: unknown) => String(value),
        parse: (value: string) => value,
      },
    },
  };
  // host and port as arrays (postgres.js's parsed form) keep an address whole.
  const sql = postgres(
    url,
    settings as unknown as postgres.Options<Record<string, postgres.PostgresType>>,
  );
  return Object.assign(sql, { [Symbol.asyncDispose]: () => sql.end() });
}

let guarded = false;

/**
 * postgres.js 3.4.9 can schedule a write on a connection that has just
 * closed (its `closed()` clears the write timer but does not forget it); the
 * write then throws "Cannot read properties of null (reading 'write')" from a
 * timer, outside any promise, which would end the process. The query that
 * lost its connection has already been rejected with CONNECTION_CLOSED, and
 * the pipeline retries it, so this one error is swallowed with a warning.
 */
function guardClosedSocketWrites(): void {
  if (guarded) return;
  guarded = true;
  globalThis.addEventListener("error", (event) => {
    const error = event.error;
    if (
      error instanceof TypeError && error.message.includes("reading 'write'") &&
      /postgres[\/@]3\.4\.9[\s\S]*nextWrite|nextWrite[\s\S]*postgres[\/@]3\.4\.9/.test(
        error.stack ?? "",
      )
    ) {
      event.preventDefault();
      getLogger(["sluice", "postgres"]).warn(
        "Ignored a write on a closed connection (a postgres.js 3.4.9 bug); the connection reconnects",
      );
    }
  });
}

/**
 * Opens the client's TCP socket with Nagle's algorithm off. postgres.js
 * leaves it on, and then a small message right after a COPY waits for the
 * server's delayed ACK: 40 ms per batch.
 */
function connectNoDelay(
  options: { host: string[]; port: number[]; path?: string },
): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = options.path
      ? net.connect({ path: options.path })
      : net.connect({ host: options.host[0], port: options.port[0], noDelay: true });
    socket.once("connect", () => {
      socket.setNoDelay(true);
      socket.off("error", reject);
      resolve(socket);
    });
    socket.once("error", reject);
  });
}

/** Double-quotes an identifier. */
export function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/** A table name `schema.table` (or `table`, meaning public) split and quoted. */
export function parseTableName(name: string): { schema: string; table: string; quoted: string } {
  const match = /^(?:("(?:[^"]|"")+"|[^".]+)\.)?("(?:[^"]|"")+"|[^".]+)$/.exec(name.trim());
  if (!match) throw new Error(`"${name}" is not a table name of the form schema.table`);
  const unquote = (part: string) =>
    part.startsWith('"') ? part.slice(1, -1).replaceAll('""', '"') : part;
  const schema = match[1] ? unquote(match[1]) : "public";
  const table = unquote(match[2]);
  return { schema, table, quoted: `${quoteIdent(schema)}.${quoteIdent(table)}` };
}

/** A column of a table, as the catalog describes it. */
export interface ColumnInfo {
  name: string;
  /** The type as `format_type` prints it, e.g. `numeric(12,2)` or `text[]`. */
  type: string;
  typeOid: number;
  /** The base type of a domain (one level), else `typeOid`: what a query's result reports. */
  baseTypeOid: number;
  /**
   * The type with its modifier as `format_type` prints it, of the domain's
   * base type for a domain column (`numeric(6,2)` under a domain over it).
   */
  baseType: string;
  notNull: boolean;
  /** A generated column (`generated always as (…) stored`): computed by the table, never written. */
  generated: boolean;
}

/** The columns (in order) and primary key of a table; undefined when it does not exist. */
export async function describeTable(
  sql: Sql,
  tableName: string,
): Promise<{ columns: ColumnInfo[]; primaryKey: string[] } | undefined> {
  const { quoted } = parseTableName(tableName);
  const exists = await sql<{ oid: number | null }[]>`select to_regclass(${quoted})::oid as oid`;
  const oid = exists[0]?.oid;
  if (!oid) return undefined;
  const columns = await sql<ColumnInfo[]>`
    select a.attname as name, format_type(a.atttypid, a.atttypmod) as type,
           a.atttypid::int as "typeOid",
           (case when t.typtype = 'd' then t.typbasetype else a.atttypid end)::int as "baseTypeOid",
           (case when t.typtype = 'd' then format_type(t.typbasetype, t.typtypmod)
                 else format_type(a.atttypid, a.atttypmod) end) as "baseType",
           a.attnotnull as "notNull", a.attgenerated <> '' as generated
    from pg_attribute a join pg_type t on t.oid = a.atttypid
    where a.attrelid = ${oid} and a.attnum > 0 and not a.attisdropped
    order by a.attnum`;
  return { columns: [...columns], primaryKey: await primaryKeyColumns(sql, quoted) };
}

/**
 * A text that changes whenever what {@linkcode describeTable} answers
 * changes (columns, their types and modifiers, the primary key); undefined
 * when the table (`schema.table`, quoted) does not exist. One catalog query,
 * cheap enough to ask inside a transaction that wonders whether its table
 * changed under it.
 */
export async function tableShape(
  sql: Pick<Sql, "unsafe">,
  quotedTable: string,
): Promise<string | undefined> {
  const [row] = await sql.unsafe<{ shape: string | null }[]>(
    `select (select string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod) || ' ' ||
                 coalesce(format_type(t.typbasetype, t.typtypmod), ''), ', ' order by a.attnum)
               from pg_attribute a join pg_type t on t.oid = a.atttypid
              where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped)
            || ' | ' || coalesce((select i.indkey::text from pg_index i
                                   where i.indrelid = c.oid and i.indisprimary), '') as shape
       from (select to_regclass($1)::oid as oid) c where c.oid is not null`,
    [quotedTable],
  );
  return row?.shape ?? undefined;
}

/** The primary-key columns of a table (`schema.table`, quoted), in key order. */
export async function primaryKeyColumns(
  sql: Pick<Sql, "unsafe">,
  quotedTable: string,
): Promise<string[]> {
  const rows = await sql.unsafe<{ name: string }[]>(
    `select a.attname as name
     from pg_index i
     join lateral unnest(i.indkey) with ordinality as k(attnum, position) on true
     join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum
     where i.indrelid = $1::regclass and i.indisprimary
     order by k.position`,
    [quotedTable],
  );
  return rows.map((row) => row.name);
}

/**
 * Whether a unique index of a table (no predicate, no expressions) is on
 * exactly `columns`, in any order: what `INSERT … ON CONFLICT (columns)`
 * needs.
 */
export async function hasUniqueIndexOn(
  sql: Pick<Sql, "unsafe">,
  quotedTable: string,
  columns: readonly string[],
): Promise<boolean> {
  const [{ found }] = await sql.unsafe<{ found: boolean }[]>(
    `select exists (
       select 1 from pg_index i
       where i.indrelid = $1::regclass and i.indisunique and i.indpred is null
         and i.indexprs is null
         and (select array_agg(a.attname::text order by a.attname) from pg_attribute a
              where a.attrelid = i.indrelid and a.attnum = any(i.indkey::int2[]))
             = (select array_agg(c order by c) from unnest($2::text[]) c)) as found`,
    [quotedTable, [...columns]] as never[],
  );
  return found;
}

/**
 * What keeps `columns` of a table from identifying its rows, or undefined
 * when they do: some of them may be NULL, or no unique index (without a
 * predicate or expressions) is on them alone. Other relations (views) are
 * not checked: their catalog cannot tell.
 */
export async function keyColumnsProblem(
  sql: Pick<Sql, "unsafe">,
  quotedTable: string,
  columns: readonly string[],
): Promise<string | undefined> {
  const [row] = await sql.unsafe<{ kind: string; nullable: string[] | null; unique: boolean }[]>(
    `select c.relkind::text as kind,
            (select array_agg(a.attname::text order by a.attnum) from pg_attribute a
             where a.attrelid = c.oid and a.attname = any($2::text[]) and not a.attnotnull)
              as nullable,
            exists (select 1 from pg_index i
                    where i.indrelid = c.oid and i.indisunique and i.indpred is null
                      and i.indexprs is null
                      and (select bool_and(a.attname = any($2::text[])) from pg_attribute a
                           where a.attrelid = c.oid and a.attnum = any(i.indkey::int2[])))
              as unique
     from pg_class c where c.oid = $1::regclass`,
    [quotedTable, [...columns]] as never[],
  );
  if (!row || !["r", "p"].includes(row.kind)) return undefined;
  if (row.nullable?.length) {
    return `${row.nullable.map((c) => `"${c}"`).join(", ")} may be NULL, and reading in key ` +
      `order never reaches a row where a key column is`;
  }
  if (!row.unique) {
    return "no primary key or unique index of the table is on these columns alone, so rows " +
      "with equal keys can fall between two chunks and be skipped";
  }
  return undefined;
}

/**
 * Whether the server refused the login itself (no such role, a wrong
 * password, no such database, not allowed to connect): nothing to retry,
 * and the message should say which database refused it.
 */
export function isLoginError(error: unknown): boolean {
  const code = (error as { code?: string })?.code ?? "";
  return code === "28000" || code === "28P01" || code === "3D000";
}

/**
 * Whether an error from postgres.js means the server could not be reached or
 * the connection broke (worth retrying), rather than a problem with the data.
 */
export function isConnectionError(error: unknown): boolean {
  const code = (error as { code?: string })?.code ?? "";
  return [
    "ECONNREFUSED",
    "ECONNRESET",
    "EPIPE",
    "ETIMEDOUT",
    "CONNECTION_CLOSED",
    "CONNECTION_ENDED",
    "CONNECTION_DESTROYED",
    "CONNECT_TIMEOUT",
    "57P01", // admin_shutdown
    "57P02", // crash_shutdown
    "57P03", // cannot_connect_now
    "08000",
    "08003",
    "08006",
    "08001",
    "08004",
  ].includes(code) || error instanceof Deno.errors.ConnectionRefused ||
    error instanceof Deno.errors.ConnectionReset;
}

/**
 * Runs a `create … if not exists` statement under an advisory lock, because
 * concurrent `if not exists` creations of one table can still collide.
 */
export async function createOnce(sql: Sql, statement: string): Promise<void> {
  await sql.begin(async (tx) => {
    await tx.unsafe("select pg_advisory_xact_lock(hashtext($1))", [statement]);
    await tx.unsafe(statement);
  });
}

/**
 * Runs `copy … from stdin` and hands the stream to `write`, which must end
 * it. Rejects with the server's error when the COPY fails.
 *
 * postgres.js 3.4.9 reports an error that arrives after the stream ended
 * (the usual case: the server checks rows as they come and answers at the
 * end) only to the query promise, which resolved with the stream long before,
 * so the stream's "finish" never comes. The query's `reject` is replaced here
 * to hear about it.
 */
export async function copyFrom(
  sql: Pick<Sql, "unsafe">,
  statement: string,
  write: (stream: Writable) => Promise<void>,
): Promise<void> {
  const query = sql.unsafe(statement);
  const stream = await query.writable();
  const failed = new Promise<never>((_, reject) => {
    (query as unknown as { reject: (error: unknown) => void }).reject = reject;
    stream.once("error", reject);
  });
  await Promise.race([write(stream), failed]);
}
