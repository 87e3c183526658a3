/**
 * The message of a row PostgreSQL refused, with the context its own message
 * lacks: a value PostgreSQL cannot convert (`invalid input syntax for type
 * numeric: "high"`) names neither the table, nor the column, nor the row.
 * Staged values are text cast in the merge statement, so the server cannot
 * say which column failed; the column is found here from the message and
 * the row's values.
 *
 * @module
 */
import { encodeJson } from "../../api/json.ts";
import type { Row } from "../../api/record.ts";
import type { ColumnInfo } from "../../drivers/postgres.ts";

/** What a rejected row is described with. */
export interface RejectedContext {
  /** The target table, as the config names it. */
  readonly name: string;
  readonly columns: ReadonlyMap<string, ColumnInfo>;
  readonly primaryKey: readonly string[];
}

/**
 * `Cannot write to table "t" (column "c", key {"id":2}): <PostgreSQL's message>`;
 * the column when given, else only when the message and the row's values
 * point at one.
 */
export function rejectedMessage(
  target: RejectedContext,
  row: Row,
  message: string,
  column?: string,
): string {
  const parts: string[] = [];
  const columns = column === undefined ? failingColumns(target, row, message) : [column];
  if (columns.length > 0 && columns.length <= 3) {
    parts.push(`column${columns.length > 1 ? "s" : ""} ${columns.map(quote).join(" or ")}`);
  }
  const key = keyText(target.primaryKey, row);
  if (key) parts.push(`key ${key}`);
  const context = parts.length > 0 ? ` (${parts.join(", ")})` : "";
  return `Cannot write to table ${quote(target.name)}${context}: ${message}`;
}

/** A message that names its column itself (a not-null violation) needs no guess. */
const NAMES_COLUMN = /\bcolumn "/;
/** `invalid input syntax for type numeric: "high"`, `… is out of range for type integer` … */
const QUOTED_VALUE =
  /(?:for type ([^:]+): |^value |^date\/time field value out of range: )"((?:[^"]|"")*)"/;
/** `value too long for type character varying(5)` */
const TOO_LONG = /^value too long for type (.+)$/;

function failingColumns(target: RejectedContext, row: Row, message: string): string[] {
  if (NAMES_COLUMN.test(message)) return [];
  const quoted = QUOTED_VALUE.exec(message);
  if (quoted) {
    const [, type, value] = quoted;
    const matches = Object.keys(row).filter((name) =>
      target.columns.has(name) && textOf(row[name]) === value
    );
    const typed = type === undefined
      ? matches
      : matches.filter((name) => sameType(target.columns.get(name)!.type, type));
    return typed.length > 0 ? typed : matches;
  }
  const tooLong = TOO_LONG.exec(message);
  if (tooLong) {
    const limit = /\((\d+)\)$/.exec(tooLong[1]);
    return Object.keys(row).filter((name) => {
      const column = target.columns.get(name);
      const value = row[name];
      return column !== undefined && column.type === tooLong[1] && typeof value === "string" &&
        (limit === null || [...value].length > Number(limit[1]));
    });
  }
  return [];
}

/** `numeric(12,2)` is of type `numeric`; `character varying(5)` of `character varying`. */
function sameType(columnType: string, messageType: string): boolean {
  const base = (type: string) => type.replace(/\(.*\)$/, "").trim();
  return base(columnType) === base(messageType);
}

function textOf(value: unknown): string | undefined {
  if (typeof value === "string") return value;
  if (typeof value === "number" || typeof value === "bigint" || typeof value === "boolean") {
    return String(value);
  }
  return undefined;
}

function keyText(primaryKey: readonly string[], row: Row): string | undefined {
  if (primaryKey.length === 0 || primaryKey.some((name) => !(name in row))) return undefined;
  const key: Row = {};
  for (const name of primaryKey) key[name] = row[name];
  const text = encodeJson(key);
  return text.length > 200 ? `${text.slice(0, 199)}…` : text;
}

function quote(name: string): string {
  return `"${name}"`;
}
