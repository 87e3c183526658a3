/**
 * PostgreSQL's text representation of values, both ways.
 *
 * Sources decode text (from COPY, raw query results or pgoutput) into Sluice
 * values; sinks encode values back into text for COPY. The mapping is
 * lossless from PostgreSQL to PostgreSQL:
 *
 * | PostgreSQL                      | Sluice value                                  |
 * | ------------------------------- | --------------------------------------------- |
 * | boolean                         | boolean                                       |
 * | smallint, integer, oid          | number                                        |
 * | bigint                          | number when exact in a double, else string    |
 * | real, double precision          | number (NaN and ±Infinity as strings)         |
 * | bytea                           | Uint8Array                                    |
 * | arrays                          | arrays of the element values (null elements)  |
 * | everything else                 | PostgreSQL's text: numeric, dates, json, uuid |
 *
 * @module
 */

/** Decodes one value's text given its type; arrays need their element type. */
export type Decoder = (text: string) => unknown;

const BOOL = 16, BYTEA = 17, INT8 = 20, INT2 = 21, INT4 = 23, OID = 26, FLOAT4 = 700, FLOAT8 = 701;

/** The decoder for a scalar type OID. */
export function scalarDecoder(typeOid: number): Decoder {
  switch (typeOid) {
    case BOOL:
      return (text) => text === "t" || text === "true";
    case INT2:
    case INT4:
    case OID:
      return Number;
    case INT8:
      return (text) => {
        const value = Number(text);
        return Number.isSafeInteger(value) ? value : text;
      };
    case FLOAT4:
    case FLOAT8:
      return (text) => {
        const value = Number(text);
        return Number.isFinite(value) ? value : text;
      };
    case BYTEA:
      return decodeBytea;
    default:
      return (text) => text;
  }
}

/** A decoder for an array type whose elements decode with `element`. */
export function arrayDecoder(element: Decoder, delimiter = ","): Decoder {
  return (text) => parseArray(text, element, delimiter);
}

/** Parses bytea's hex output (`\x0a0b`) or escape output into bytes. */
export function decodeBytea(text: string): Uint8Array {
  if (text.startsWith("\\x")) {
    const bytes = new Uint8Array((text.length - 2) / 2);
    for (let i = 0; i < bytes.length; i++) {
      bytes[i] = parseInt(text.substr(2 + i * 2, 2), 16);
    }
    return bytes;
  }
  const out: number[] = [];
  for (let i = 0; i < text.length; i++) {
    if (text[i] === "\\") {
      if (text[i + 1] === "\\") {
        out.push(92);
        i++;
      } else {
        out.push(parseInt(text.substr(i + 1, 3), 8));
        i += 3;
      }
    } else out.push(text.charCodeAt(i));
  }
  return Uint8Array.from(out);
}

/** Parses an array literal such as `{1,NULL,"a b"}` or `{{1,2},{3,4}}`. */
export function parseArray(text: string, element: Decoder, delimiter = ","): unknown[] {
  let position = 0;
  // Arrays with explicit bounds look like "[0:1]={1,2}"; the bounds are dropped.
  if (text[0] === "[") position = text.indexOf("=") + 1;
  const parseLevel = (): unknown[] => {
    const items: unknown[] = [];
    position++; // the opening brace
    if (text[position] === "}") {
      position++;
      return items;
    }
    for (;;) {
      const char = text[position];
      if (char === "{") {
        items.push(parseLevel());
      } else if (char === '"') {
        let value = "";
        position++;
        while (text[position] !== '"') {
          if (text[position] === "\\") position++;
          value += text[position++];
        }
        position++;
        items.push(element(value));
      } else {
        let end = position;
        while (text[end] !== delimiter && text[end] !== "}") end++;
        const raw = text.slice(position, end);
        position = end;
        items.push(raw === "NULL" ? null : element(raw));
      }
      if (text[position] === delimiter) position++;
      else if (text[position] === "}") {
        position++;
        return items;
      }
    }
  };
  return parseLevel();
}

/** Encodes a Sluice value as PostgreSQL input text; null stays null. */
export function encodeText(value: unknown): string | null {
  if (value === null || value === undefined) return null;
  switch (typeof value) {
    case "string":
      return value;
    case "number":
    case "bigint":
      return String(value);
    case "boolean":
      return value ? "t" : "f";
  }
  if (value instanceof Uint8Array) return encodeByteaHex(value);
  if (value instanceof Date) return value.toISOString();
  if (Array.isArray(value)) return encodeArray(value);
  return JSON.stringify(value);
}

function encodeByteaHex(bytes: Uint8Array): string {
  let hex = "\\x";
  for (const byte of bytes) hex += (byte < 16 ? "0" : "") + byte.toString(16);
  return hex;
}

/** Encodes an array as a PostgreSQL array literal, quoting every non-null element. */
export function encodeArray(values: readonly unknown[]): string {
  const parts = values.map((item) => {
    if (item === null || item === undefined) return "NULL";
    if (Array.isArray(item)) return encodeArray(item);
    const text = encodeText(item)!;
    return `"${text.replaceAll("\\", "\\\\").replaceAll('"', '\\"')}"`;
  });
  return `{${parts.join(",")}}`;
}

/** Escapes one field for COPY's text format (`\N` for null). */
export function copyField(value: unknown): string {
  const text = encodeText(value);
  if (text === null) return "\\N";
  return escapeCopy(text);
}

const COPY_SPECIAL = /[\\\t\n\r]/;

/** Escapes backslash, tab, newline and carriage return for COPY's text format. */
export function escapeCopy(text: string): string {
  if (!COPY_SPECIAL.test(text)) return text;
  let out = "";
  for (const char of text) {
    if (char === "\\") out += "\\\\";
    else if (char === "\t") out += "\\t";
    else if (char === "\n") out += "\\n";
    else if (char === "\r") out += "\\r";
    else out += char;
  }
  return out;
}

/** Undoes COPY's text-format escaping of one field (`\N` must be checked before). */
export function unescapeCopy(text: string): string {
  if (!text.includes("\\")) return text;
  let out = "";
  for (let i = 0; i < text.length; i++) {
    const char = text[i];
    if (char !== "\\") {
      out += char;
      continue;
    }
    const next = text[++i];
    switch (next) {
      case "t":
        out += "\t";
        break;
      case "n":
        out += "\n";
        break;
      case "r":
        out += "\r";
        break;
      case "b":
        out += "\b";
        break;
      case "f":
        out += "\f";
        break;
      case "v":
        out += "\v";
        break;
      default:
        out += next;
    }
  }
  return out;
}
