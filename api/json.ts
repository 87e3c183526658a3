/**
 * JSON encoding for values that plain `JSON.stringify` cannot take: byte
 * arrays become base64 strings (as Debezium writes bytes) and bigints become
 * decimal strings.
 *
 * @module
 */

/**
 * `JSON.stringify` with support for Uint8Array and bigint values.
 *
 * @example Bytes become base64, bigints decimal strings
 * ```ts
 * import { encodeJson } from "@sluice/sluice";
 * import assert from "node:assert/strict";
 *
 * const text = encodeJson({ photo: new Uint8Array([104, 105]), lsn: 24023128n });
 * assert.equal(text, '{"photo":"aGk=","lsn":"24023128"}');
 * ```
 */
export function encodeJson(value: unknown, indent?: number): string {
  // A replacer makes V8 leave its fast serializer (it costs about a third of
  // a change event's CPU): only values that hold bytes or bigints need it.
  return needsReplacer(value, 0)
    ? JSON.stringify(value, replacer, indent)
    : JSON.stringify(value, null, indent);
}

/** Whether `value` holds a bigint, a byte array or a serialized Buffer (or nests too deep to tell cheaply). */
function needsReplacer(value: unknown, depth: number): boolean {
  if (typeof value === "bigint") return true;
  if (typeof value !== "object" || value === null) return false;
  return objectNeedsReplacer(value, depth);
}

/**
 * {@linkcode needsReplacer} for an object. Members are tested inline and
 * only objects recurse: a change event is mostly strings and numbers, and a
 * call per member was most of this walk's time.
 */
function objectNeedsReplacer(value: object, depth: number): boolean {
  if (
    depth > 16 || ArrayBuffer.isView(value) ||
    typeof (value as { toJSON?: unknown }).toJSON === "function"
  ) {
    return true;
  }
  if (Array.isArray(value)) {
    for (const item of value) {
      if (typeof item === "bigint") return true;
      if (typeof item === "object" && item !== null && objectNeedsReplacer(item, depth + 1)) {
        return true;
      }
    }
    return false;
  }
  if ((value as { type?: unknown }).type === "Buffer") return true;
  for (const key in value) {
    const member = (value as Record<string, unknown>)[key];
    if (typeof member === "bigint") return true;
    if (typeof member === "object" && member !== null && objectNeedsReplacer(member, depth + 1)) {
      return true;
    }
  }
  return false;
}

function replacer(this: unknown, _key: string, value: unknown): unknown {
  if (typeof value === "bigint") return value.toString();
  if (value instanceof Uint8Array) return bytesToBase64(value);
  if (
    value && typeof value === "object" && (value as { type?: unknown }).type === "Buffer" &&
    Array.isArray((value as { data?: unknown }).data)
  ) {
    return bytesToBase64(Uint8Array.from((value as { data: number[] }).data));
  }
  return value;
}

/**
 * Base64 of a byte array.
 *
 * @example Two bytes
 * ```ts
 * import { bytesToBase64 } from "./json.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(bytesToBase64(new Uint8Array([104, 105])), "aGk=");
 * ```
 */
export function bytesToBase64(bytes: Uint8Array): string {
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

/**
 * `JSON.parse` that keeps integers beyond 2^53 exact, as decimal strings
 * (Sluice's form of an int64 a double cannot hold), where plain parsing
 * would round them to a neighbouring value.
 *
 * @example An int64 key from another producer
 * ```ts
 * import { parseJsonExact } from "./json.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(parseJsonExact('{"id":9007199254740993,"n":2}'), { id: "9007199254740993", n: 2 });
 * ```
 */
export function parseJsonExact(text: string): unknown {
  // Only a run of 16 digits can be an unsafe integer: the reviver is skipped otherwise.
  return /\d{16}/.test(text) ? JSON.parse(text, keepLargeIntegers) : JSON.parse(text);
}

function keepLargeIntegers(
  this: unknown,
  _key: string,
  value: unknown,
  context?: { source?: string },
): unknown {
  if (
    typeof value === "number" && !Number.isSafeInteger(value) && context?.source &&
    /^-?\d+$/.test(context.source)
  ) {
    return context.source;
  }
  return value;
}
