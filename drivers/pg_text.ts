/**
 * PostgreSQL's text formats, both ways: array literals, bytea (hex and
 * escape output, and the base64 JSON carries bytes as), COPY's text-format
 * escaping, and a type-blind encoder of Sluice values as input text. Which
 * value a column of a given type becomes is decided in `pg_codec.ts`.
 *
 * @module
 */

/** Decodes one value's text given its type; arrays need their element type. */
export type Decoder = (text: string) => unknown;

/** Encodes one value as PostgreSQL input text for a given column type; null stays null. */
export type Encoder = (value: unknown) => string | null;

/** Parses bytea's hex output (`\x0a0b`) or escape output into bytes. */
export function decodeBytea(text: string): Uint8Array {
  if (text.startsWith("\\x")) return Uint8Array.fromHex(text.slice(2));
  return decodeByteaEscape(text);
}

/** bytea's escape format: `\\` is a backslash, `\ooo` an octal byte, the rest is Latin-1. */
function decodeByteaEscape(text: string): Uint8Array {
  const out = new Uint8Array(text.length);
  let size = 0;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code !== 92) {
      out[size++] = code;
    } else if (text.charCodeAt(i + 1) === 92) {
      out[size++] = 92;
      i++;
    } else {
      const digit = (at: number) => text.charCodeAt(at) - 48;
      out[size++] = digit(i + 1) * 64 + digit(i + 2) * 8 + digit(i + 3);
      i += 3;
    }
  }
  return out.subarray(0, size);
}

/** bytea's hex input text (`\x0a0b`) of a byte array. */
export function encodeBytea(bytes: Uint8Array): string {
  return `\\x${bytes.toHex()}`;
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
const BASE64_URL = /^[A-Za-z0-9_-]*={0,2}$/;

/**
 * Bytes from the base64 text JSON carries them as (Debezium's
 * `binary.handling.mode` bytes, base64 and base64-url-safe). Throws a
 * sentence quoting the text when it is not base64.
 */
export function decodeBase64(text: string): Uint8Array {
  if (text.length % 4 === 0 && BASE64.test(text)) return Uint8Array.fromBase64(text);
  if (BASE64_URL.test(text)) {
    return Uint8Array.fromBase64(text, { alphabet: "base64url" });
  }
  throw new Error(
    `"${text.slice(0, 40)}${
      text.length > 40 ? "…" : ""
    }" is neither base64 nor bytea hex text (\\x…)`,
  );
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
      // String(-0) is "0": keep the sign PostgreSQL's floats keep.
      return value === 0 && 1 / value < 0 ? "-0" : String(value);
    case "bigint":
      return String(value);
    case "boolean":
      return value ? "t" : "f";
  }
  if (value instanceof Uint8Array) return encodeBytea(value);
  if (value instanceof Date) return value.toISOString();
  if (Array.isArray(value)) return encodeArray(value);
  return JSON.stringify(value);
}

/**
 * Encodes an array as a PostgreSQL array literal, quoting every non-null
 * element; `element` encodes the elements (by the element type).
 */
export function encodeArray(
  values: readonly unknown[],
  element: Encoder = encodeText,
): string {
  const parts = values.map((item) => {
    if (item === null || item === undefined) return "NULL";
    if (Array.isArray(item)) return encodeArray(item, element);
    const text = element(item);
    if (text === null) return "NULL";
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
