import { assertEquals } from "../_assert.ts";
import fc from "fast-check";
import { Buffer } from "node:buffer";
import { bytesToBase64, encodeJson } from "../../api/json.ts";

/** What encodeJson must write: JSON.stringify with the replacer on every value. */
function reference(value: unknown): string {
  return JSON.stringify(value, function (_key, member) {
    if (typeof member === "bigint") return member.toString();
    if (member instanceof Uint8Array) return bytesToBase64(member);
    if (member?.type === "Buffer" && Array.isArray(member.data)) {
      return bytesToBase64(Uint8Array.from(member.data));
    }
    return member;
  });
}

// encodeJson skips the replacer when a walk finds nothing that needs it; the
// walk must find a bigint or bytes wherever they are (object member, array
// item, nested, first or last), or the output silently changes.
Deno.test("encodeJson writes bigints and bytes at any depth as the replacer would", () => {
  const leaf = fc.oneof(
    fc.string(),
    fc.integer(),
    fc.double({ noNaN: true, noDefaultInfinity: true }),
    fc.boolean(),
    fc.constant(null),
    fc.bigInt(),
    fc.uint8Array({ maxLength: 8 }),
    fc.uint8Array({ maxLength: 8 }).map((bytes) => Buffer.from(bytes)),
  );
  const tree = fc.letrec((tie) => ({
    node: fc.oneof({ depthSize: "small" }, leaf, tie("array"), tie("object")),
    array: fc.array(tie("node"), { maxLength: 4 }),
    object: fc.dictionary(fc.string({ maxLength: 6 }), tie("node"), { maxKeys: 4 }),
  })).node;
  fc.assert(
    fc.property(tree, (value) => assertEquals(encodeJson(value), reference(value))),
    { numRuns: 2000 },
  );
});

Deno.test("encodeJson: a bigint deep in an array of objects, and a Buffer as the last member", () => {
  const value = { a: [{ b: 1 }, { c: [1, 2, 3n] }], d: "x", e: Buffer.from("hi") };
  assertEquals(encodeJson(value), '{"a":[{"b":1},{"c":[1,2,"3"]}],"d":"x","e":"aGk="}');
  assertEquals(
    encodeJson({ plain: [1, "two", null, { three: true }] }),
    reference({
      plain: [1, "two", null, { three: true }],
    }),
  );
});
