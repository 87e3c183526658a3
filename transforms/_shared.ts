/**
 * Helpers shared by the built-in transforms: Java regex and replacement
 * semantics (Kafka's transforms are configured with Java patterns), table
 * metadata of a record, key mapping and config issue helpers.
 *
 * @module
 */
import type { z } from "zod";
import { encodeJson, parseJsonExact } from "../api/json.ts";
import {
  isChangeEvent,
  NEW_KEY_HEADER,
  OLD_KEY_HEADER,
  type Row,
  type SluiceRecord,
  unavailableFields,
} from "../api/record.ts";

/** Adds a custom issue whose message never quotes the whole config (secrets may be in it). */
export function addIssue(
  ctx: { addIssue(issue: z.core.$ZodRawIssue | string): void },
  path: string,
  message: string,
  input?: unknown,
): void {
  ctx.addIssue({ code: "custom", message, path: [path], input });
}

const INLINE_FLAGS: Record<string, string> = { i: "i", s: "s", m: "m" };

/**
 * Compiles a Java regular expression into a JavaScript one that, like
 * `Matcher.matches()`, only matches the whole input. Leading inline flags
 * `(?i)`, `(?s)`, `(?m)` and `\Q…\E` quoting are translated; Java-only
 * constructs with no JavaScript equivalent are refused rather than silently
 * misread.
 */
export function javaPattern(pattern: string): RegExp {
  let source = pattern;
  let flags = "";
  const inline = /^\(\?([a-zA-Z]+)\)/.exec(source);
  if (inline) {
    for (const flag of inline[1]) {
      const js = INLINE_FLAGS[flag];
      if (!js) throw new Error(`the inline flag (?${flag}) is not supported`);
      if (!flags.includes(js)) flags += js;
    }
    source = source.slice(inline[0].length);
  }
  source = source.replace(/\\Q([\s\S]*?)(?:\\E|$)/g, (_, literal: string) => escapeRegex(literal));
  const unsupported: [RegExp, string][] = [
    [/[*+?}]\+/, "possessive quantifiers (*+, ++, ?+)"],
    [/\(\?>/, "atomic groups (?>…)"],
    [/&&\[/, "character class intersections (&&)"],
    [/\\[AzZGp]|\\P/, "the escapes \\A, \\z, \\Z, \\G, \\p and \\P"],
  ];
  // Escaped punctuation (`\+`) is not a quantifier; blank it out before looking.
  const bare = source.replace(/\\[^A-Za-z]/g, "_");
  for (const [construct, name] of unsupported) {
    const text = construct.source.startsWith("\\\\") ? source : bare;
    if (construct.test(text)) throw new Error(`${name} are not supported`);
  }
  try {
    return new RegExp(`^(?:${source})$`, flags);
  } catch (error) {
    const message = (error as Error).message;
    throw new Error(message.replace(/^Invalid regular expression: \/.*\/[a-z]*: /s, ""));
  }
}

/** The number of capturing groups of a compiled pattern. */
export function groupCount(pattern: RegExp): number {
  return new RegExp(`${pattern.source}|`, pattern.flags).exec("")!.length - 1;
}

function escapeRegex(text: string): string {
  return text.replace(/[\\^$.*+?()[\]{}|/-]/g, "\\$&");
}

type ReplacementPart = string | number | { readonly name: string };

/**
 * Compiles a replacement string with the semantics of Java's
 * `Matcher.replaceFirst`: `$n` and `${name}` refer to groups (a multi-digit
 * reference stops before the digit that would name a missing group), `\`
 * escapes the next character. Throws on references to missing groups.
 */
export function javaReplacement(
  replacement: string,
  pattern: RegExp,
): (match: RegExpExecArray) => string {
  const groups = groupCount(pattern);
  const names = new Set(
    [...pattern.source.matchAll(/\(\?<([a-zA-Z][a-zA-Z0-9]*)>/g)].map((m) => m[1]),
  );
  const parts: ReplacementPart[] = [];
  let literal = "";
  for (let i = 0; i < replacement.length; i++) {
    const char = replacement[i];
    if (char === "\\") {
      if (i + 1 >= replacement.length) throw new Error("a trailing \\ escapes nothing");
      literal += replacement[++i];
    } else if (char === "$") {
      if (i + 1 >= replacement.length) throw new Error("a trailing $ names no group");
      if (replacement[i + 1] === "{") {
        const end = replacement.indexOf("}", i + 2);
        const name = end < 0 ? "" : replacement.slice(i + 2, end);
        if (!/^[a-zA-Z][a-zA-Z0-9]*$/.test(name)) {
          throw new Error(`\${…} must name a group: ${replacement.slice(i)}`);
        }
        if (!names.has(name)) throw new Error(`the pattern has no group named "${name}"`);
        if (literal) parts.push(literal), literal = "";
        parts.push({ name });
        i = end;
        continue;
      }
      const first = replacement.charCodeAt(i + 1) - 48;
      if (first < 0 || first > 9) {
        throw new Error(`"$" must be followed by a group number or {name}: ${replacement}`);
      }
      let reference = first;
      i++;
      while (i + 1 < replacement.length) {
        const digit = replacement.charCodeAt(i + 1) - 48;
        if (digit < 0 || digit > 9 || reference * 10 + digit > groups) break;
        reference = reference * 10 + digit;
        i++;
      }
      if (reference > groups) {
        throw new Error(`the pattern has no group ${reference} (it has ${groups})`);
      }
      if (literal) parts.push(literal), literal = "";
      parts.push(reference);
    } else {
      literal += char;
    }
  }
  if (literal) parts.push(literal);
  return (match) => {
    let out = "";
    for (const part of parts) {
      if (typeof part === "string") out += part;
      else if (typeof part === "number") out += match[part] ?? "";
      else out += match.groups?.[part.name] ?? "";
    }
    return out;
  };
}

/** Database, schema and table a record belongs to, as far as it tells. */
export interface TableRef {
  readonly db: string;
  readonly schema: string;
  readonly table: string;
}

/**
 * The table of a record: the `source` block of a change event; otherwise
 * `origin.schema`/`origin.table` when the source set them; otherwise the
 * topic read as `schema.table` (or just `table`).
 */
export function tableOf(record: SluiceRecord): TableRef {
  const value = record.value;
  if (isChangeEvent(value)) {
    const source = value.source ?? {};
    return {
      db: String(source.db ?? ""),
      schema: String(source.schema ?? ""),
      table: String(source.table ?? ""),
    };
  }
  const origin = record.origin ?? {};
  if (typeof origin.table === "string") {
    return {
      db: typeof origin.db === "string" ? origin.db : "",
      schema: typeof origin.schema === "string" ? origin.schema : "",
      table: origin.table,
    };
  }
  const dot = record.topic.lastIndexOf(".");
  const schemaPart = dot < 0 ? "" : record.topic.slice(0, dot);
  return {
    db: "",
    schema: schemaPart.slice(schemaPart.lastIndexOf(".") + 1),
    table: record.topic.slice(dot + 1),
  };
}

/**
 * Applies `mapRow` to the key as well when it is a row (key columns are row
 * columns), and to the keys a key change carries in its headers
 * (`__debezium.oldkey` and `__debezium.newkey`): they name the same row as
 * the key does, so a sink finds the row under the old key as it was written,
 * and a masked key column is masked there too.
 */
export function mapKey(record: SluiceRecord, mapRow: (row: Row) => Row): SluiceRecord {
  const headers = record.headers && mapKeyHeaders(record, record.headers, mapRow);
  const key = record.key ? mapRow(record.key) : record.key;
  // An untouched key needs no new record: one copy less per record in a chain.
  if (key === record.key && !headers) return record;
  return headers ? { ...record, key, headers } : { ...record, key };
}

/** The headers with their old and new keys mapped; undefined when neither changed. */
function mapKeyHeaders(
  record: SluiceRecord,
  headers: Readonly<Record<string, string>>,
  mapRow: (row: Row) => Row,
): Record<string, string> | undefined {
  let mapped: Record<string, string> | undefined;
  for (const name of [OLD_KEY_HEADER, NEW_KEY_HEADER]) {
    const text = headers[name];
    if (text === undefined) continue;
    let row: unknown;
    try {
      row = parseJsonExact(text);
    } catch {
      row = undefined;
    }
    // Left as it is, a key the transform cannot read could pass a masked column in clear.
    if (!isRow(row)) {
      throw new Error(
        `the ${name} header of a record on "${record.topic}" is not a JSON object of key columns, so the key it holds cannot be transformed like the record's key`,
      );
    }
    const key = mapRow(row);
    // Rewritten only when changed: an int64 beyond 2^53 written as a number
    // by another producer would come back as a string.
    if (!sameRow(key, row)) (mapped ??= { ...headers })[name] = encodeJson(key);
  }
  return mapped;
}

/** Whether two rows have the same columns with the same values (compared with Object.is). */
function sameRow(a: Row, b: Row): boolean {
  if (a === b) return true;
  const names = Object.keys(a);
  if (names.length !== Object.keys(b).length) return false;
  return names.every((name) => Object.hasOwn(b, name) && Object.is(a[name], b[name]));
}

/** True when `value` is a plain row object (not null, an array, a Date or bytes). */
export function isRow(value: unknown): value is Row {
  return typeof value === "object" && value !== null && !Array.isArray(value) &&
    !(value instanceof Date) && !ArrayBuffer.isView(value);
}

/** Parses `old:new,…` pairs; returns an error sentence for a malformed entry. */
export function parsePairs(items: readonly string[]): Map<string, string> | string {
  const pairs = new Map<string, string>();
  for (const item of items) {
    const parts = item.split(":").map((part) => part.trim());
    if (parts.length !== 2 || !parts[0] || !parts[1]) {
      return `each entry must be "old:new": current entry is ${JSON.stringify(item)}`;
    }
    pairs.set(parts[0], parts[1]);
  }
  return pairs;
}

/** JSON text with sorted object keys, bigint, Date and bytes made stable; for identities. */
export function stableStringify(value: unknown): string {
  if (value === null || value === undefined) return "null";
  if (typeof value === "bigint") return `${value}n`;
  if (typeof value !== "object") return JSON.stringify(value);
  if (value instanceof Date) return JSON.stringify(value.toISOString());
  if (ArrayBuffer.isView(value)) {
    const bytes = new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
    return `"0x${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}"`;
  }
  if (Array.isArray(value)) return `[${value.map(stableStringify).join(",")}]`;
  // A loop rather than map/join: dedup builds one of these per record.
  const keys = Object.keys(value);
  if (keys.length > 1) keys.sort();
  let out = "{";
  for (let i = 0; i < keys.length; i++) {
    if (i > 0) out += ",";
    out += `${JSON.stringify(keys[i])}:${
      stableStringify((value as Record<string, unknown>)[keys[i]])
    }`;
  }
  return `${out}}`;
}

/** A short description of a value's type for error messages (never the value itself). */
export function typeName(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  if (value instanceof Date) return "Date";
  if (ArrayBuffer.isView(value)) return "bytes";
  return typeof value;
}

/** Debezium's `unavailable.value.placeholder` default: an unchanged TOAST value it did not read. */
export const UNAVAILABLE_VALUE = "__debezium_unavailable_value";

/**
 * Which fields an image of a record may lack without anything being wrong,
 * because the kind of event leaves them out:
 *
 * - `before` holding only the record key's fields: a delete's (or a key
 *   change's) old image under the default replica identity;
 * - fields the `__sluice.unavailable` header names: values the source did
 *   not send (an update's unchanged TOAST values, in `after` and in the
 *   create of an update that changed the key);
 * - a row that `unwrap` rewrote from a delete (`__deleted: "true"`): the
 *   key-only `before` image.
 *
 * Anything else lacks a column by mistake: a typo, a wrong source, or a
 * column renamed at the source, whose values would otherwise pass a mask
 * in clear under their new name. Inserts (`c`), snapshot reads (`r`) and
 * batch rows always carry every column; Debezium writes an unchanged TOAST
 * value as a placeholder, never leaves it out.
 */
export function mayLack(
  record: SluiceRecord,
  image: "before" | "after" | "row",
  row: Row,
): (field: string) => boolean {
  const unsent = new Set(unavailableFields(record));
  if (image === "before") {
    const key = record.key;
    const identity = key !== null && typeof key === "object" && !Array.isArray(key) &&
      Object.keys(row).every((field) => field in key);
    if (identity) return () => true;
  }
  const value = record.value;
  if (image === "row" && isRow(value) && !isChangeEvent(value) && value.__deleted === "true") {
    return () => true;
  }
  return (field) => unsent.has(field);
}

/**
 * A field of a change event's row, looked up where the event kind puts it:
 * `after` (or, for a delete, `before`), then the other image, then the key.
 * Undefined when none holds it (a delete under the default replica
 * identity, an unchanged TOAST value, a truncate).
 */
export function eventField(record: SluiceRecord, field: string): unknown {
  const value = record.value;
  const images: (Row | null | undefined)[] = isChangeEvent(value)
    ? (value.op === "d" ? [value.before] : [value.after, value.before])
    : [isRow(value) ? value : null];
  for (const image of [...images, record.key]) {
    if (image && field in image) return image[field];
  }
  return undefined;
}

/** Why a field may be missing from a record, as advice for error messages. */
export function whyMissing(record: SluiceRecord): string {
  const value = record.value;
  if (value === null || value === undefined) return "it is a tombstone (null value)";
  if (!isChangeEvent(value)) return "the row does not have it";
  switch (value.op) {
    case "d":
      return "a delete carries only the replica identity (the key) unless the source table has REPLICA IDENTITY FULL";
    case "u":
      return "an update leaves unchanged TOAST values out unless the source table has REPLICA IDENTITY FULL";
    case "t":
      return "a truncate carries no row";
    default:
      return "the row does not have it";
  }
}
