/**
 * The kafka sink's UTF-8 arena: a buffer is written again only after every
 * batch that wrote into it was released, never after a failed batch, and
 * views handed out keep their bytes while their batch is open.
 */
import { Utf8Arena } from "../../../sinks/_utf8_arena.ts";
import { messageSize } from "../../../drivers/kafka.ts";
import { assert, assertEquals } from "../../_assert.ts";

const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
/** A text of `n` bytes in UTF-8 that the arena sizes as `3n` bytes of room. */
const text = (n: number, char = "a") => char.repeat(n);
/** Texts that fill one buffer's room check exactly: a third of a chunk each. */
const THIRD = Math.floor(Utf8Arena.CHUNK / 3);

Deno.test("views keep their bytes, including multi-byte characters", () => {
  const arena = new Utf8Arena();
  const lease = arena.lease();
  const a = lease.encode("Malmö – 東京");
  const b = lease.encode("{}");
  assertEquals(decode(a), "Malmö – 東京");
  assertEquals(decode(b), "{}");
  lease.release();
});

Deno.test("a message's key and value are ranges of one buffer; null stays null", () => {
  const arena = new Utf8Arena();
  const lease = arena.lease();
  const keyed = lease.message(
    "t",
    '{"id":"東京"}',
    '{"name":"Malmö"}',
    [["h", "v"]],
    1_700_000_000_000,
  );
  const tombstone = lease.message("t", '{"id":2}', null);
  const keyless = lease.message("t", null, "{}");
  assertEquals(keyed.bytes, tombstone.bytes, "one buffer");
  assertEquals(decode(keyed.key!), '{"id":"東京"}');
  assertEquals(decode(keyed.value!), '{"name":"Malmö"}');
  assertEquals(keyed.valueStart, keyed.keyEnd, "the value follows the key");
  assertEquals([keyed.topic, keyed.headers, keyed.timestamp], [
    "t",
    [["h", "v"]],
    1_700_000_000_000,
  ]);
  assertEquals([decode(tombstone.key!), tombstone.value], ['{"id":2}', null]);
  assertEquals([keyless.key, decode(keyless.value!)], [null, "{}"]);
  lease.release();
});

Deno.test("a range message's size counts a null key or value as nothing, wherever it lies", () => {
  const arena = new Utf8Arena();
  const lease = arena.lease();
  lease.encode(text(THIRD, "p")); // the next message starts far into the buffer
  const tombstone = lease.message("t", '{"id":2}', null);
  const keyless = lease.message("t", null, "{}");
  assert(tombstone.keyStart > 300_000);
  const plain = (key: string | null, value: string | null) =>
    messageSize({
      topic: "t",
      key: key === null ? null : new TextEncoder().encode(key),
      value: value === null ? null : new TextEncoder().encode(value),
    });
  assertEquals(messageSize(tombstone), plain('{"id":2}', null));
  assertEquals(messageSize(keyless), plain(null, "{}"));
  lease.release();
});

Deno.test("a buffer is used again only once every batch in it was released", () => {
  const arena = new Utf8Arena();
  const first = arena.lease();
  const kept = first.encode(text(THIRD - 10, "x"));
  // A second batch shares the first buffer, then moves on to a new one.
  const second = arena.lease();
  second.encode(text(10, "y"));
  second.encode(text(THIRD, "z")); // no room left: a new buffer
  first.release();
  assertEquals(arena.spare, 0, "the second batch still holds the first buffer");
  assertEquals(decode(kept), text(THIRD - 10, "x"));
  second.release();
  assertEquals(arena.spare, 1);

  // The current buffer has no room for another third: the spare one is
  // handed out again and written from its start.
  const third = arena.lease();
  third.encode(text(THIRD, "w"));
  assertEquals(arena.spare, 1, "the buffer it left, which no open batch holds, is spare now");
  assertEquals(decode(kept).slice(0, 3), "www", "the released buffer was written again");
  third.release();
});

Deno.test("a failed batch's buffers are never written again", () => {
  const arena = new Utf8Arena();
  const failed = arena.lease();
  const view = failed.message("t", null, text(THIRD, "f")).value!;
  failed.abandon();
  const next = arena.lease();
  for (let i = 0; i < 6; i++) next.encode(text(THIRD, "n"));
  next.release();
  assertEquals(decode(view), text(THIRD, "f"));
  // Settling twice changes nothing.
  failed.release();
  assertEquals(decode(view), text(THIRD, "f"));
  assert(arena.spare <= Utf8Arena.SPARE);
});

Deno.test("a text larger than a buffer gets one of its own, never kept for reuse", () => {
  const arena = new Utf8Arena();
  const lease = arena.lease();
  const big = lease.encode(text(Utf8Arena.CHUNK, "b"));
  assertEquals(big.length, Utf8Arena.CHUNK);
  lease.encode(text(Utf8Arena.CHUNK / 2, "c")); // no room left: moves on from the large buffer
  lease.release();
  // Only the first, unused 1 MiB buffer is kept.
  assertEquals(arena.spare, 1);
  assertEquals(decode(big), text(Utf8Arena.CHUNK, "b"));
});
