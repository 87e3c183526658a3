import { Readable } from "node:stream";
import { assertEquals, assertRejects } from "../_assert.ts";
import {
  copyTextChunks,
  decodeCopyText,
  frameCopyLines,
  framedPieces,
} from "../../drivers/pg_copy_text.ts";

const utf8 = new TextEncoder();
const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

async function* pieces(...parts: string[]): AsyncGenerator<Uint8Array> {
  for (const part of parts) yield utf8.encode(part);
}

async function chunksOf(
  stream: Parameters<typeof copyTextChunks>[0],
  maxRows: number,
  maxBytes: number,
): Promise<{ text: string; count: number }[]> {
  const out: { text: string; count: number }[] = [];
  for await (const chunk of copyTextChunks(stream, maxRows, maxBytes)) {
    out.push({ text: text(chunk.text), count: chunk.count });
  }
  return out;
}

Deno.test("COPY text is cut at row boundaries, whatever the pieces the stream arrives in", async () => {
  const chunks = await chunksOf(pieces("1\ta\\tb\n2", "\tc\\n\n3\t", "\\N\n4\td\n"), 2, 1 << 20);
  assertEquals(chunks, [
    { text: "1\ta\\tb\n2\tc\\n\n", count: 2 },
    { text: "3\t\\N\n4\td\n", count: 2 },
  ]);
});

Deno.test("COPY text chunks end once they reach their byte bound", async () => {
  const rows = Array.from({ length: 10 }, (_, i) => `${i}\tvalue ${i}\n`);
  const chunks = await chunksOf(pieces(...rows), 1000, 30);
  assertEquals(chunks.map((chunk) => chunk.count), [3, 3, 3, 1]);
  assertEquals(chunks.map((chunk) => chunk.text).join(""), rows.join(""));
});

Deno.test("a pausable stream is cut into the same chunks, paused while chunks wait", async () => {
  const rows = Array.from({ length: 50 }, (_, i) => `${i}\tvalue ${i}\n`);
  let pauses = 0;
  const stream = new Readable({ read() {} });
  const pause = stream.pause.bind(stream);
  stream.pause = () => (pauses++, pause());
  for (const row of rows) stream.push(utf8.encode(row));
  stream.push(null);
  const chunks = [];
  for await (const chunk of copyTextChunks(stream, 1000, 30)) {
    chunks.push({ text: text(chunk.text), count: chunk.count });
    // A slow consumer: the stream runs ahead by at most a couple of chunks.
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  assertEquals(chunks.map((chunk) => chunk.text).join(""), rows.join(""));
  assertEquals(chunks.map((chunk) => chunk.count).reduce((a, b) => a + b), 50);
  assertEquals(pauses > 0, true);
});

Deno.test("a consumer that stops early destroys the pausable stream", async () => {
  const stream = new Readable({ read() {} });
  for (let i = 0; i < 10; i++) stream.push(utf8.encode(`${i}\tx\n`));
  for await (const _ of copyTextChunks(stream, 2, 1 << 20)) break;
  assertEquals(stream.destroyed, true);
});

Deno.test("a pausable stream that fails or closes before its end is an error, not a short read", async () => {
  const failing = new Readable({ read() {} });
  failing.push(utf8.encode("1\ta\n"));
  setTimeout(() => failing.destroy(new Error("connection lost")), 5);
  await assertRejects(() => chunksOf(failing, 10, 1 << 20), Error, "connection lost");
  const closing = new Readable({ read() {} });
  closing.push(utf8.encode("1\ta\n"));
  setTimeout(() => closing.destroy(), 5);
  await assertRejects(() => chunksOf(closing, 10, 1 << 20), Error, "closed before its end");
});

Deno.test("a COPY stream that ends inside a row is an error, not a lost row", async () => {
  await assertRejects(
    () => chunksOf(pieces("1\ta\n2\tb"), 10, 1 << 20),
    Error,
    "COPY stream ended in the middle of a row",
  );
});

Deno.test("COPY lines are framed with row numbers and a constant last field", () => {
  const bytes = utf8.encode("a\tb\n\\N\tc\\td\n");
  assertEquals(text(frameCopyLines(bytes, 2, { numbered: true })), "1\ta\tb\n2\t\\N\tc\\td\n");
  assertEquals(
    text(frameCopyLines(bytes, 2, { suffix: "x\ty" })),
    "a\tb\tx\\ty\n\\N\tc\\td\tx\\ty\n",
  );
  assertEquals(frameCopyLines(bytes, 2, {}), bytes);
});

Deno.test("a chunk of COPY text decodes into the rows it holds, NULLs and escapes included", () => {
  const rows = decodeCopyText(
    utf8.encode("1\ttab\\there\\nnew 🙂\n2\t\\N\n"),
    ["id", "name"],
    [Number, (value: string) => value],
  );
  assertEquals(rows, [{ id: 1, name: "tab\there\nnew 🙂" }, { id: 2, name: null }]);
});

Deno.test("COPY lines framed in pieces number on across pieces and cut only between rows", () => {
  const rows = Array.from({ length: 25 }, (_, i) => `${i}\tvalue\\t${i}\n`);
  const bytes = utf8.encode(rows.join(""));
  const numbered = [...framedPieces(bytes, { numbered: true }, 40)].map(text);
  assertEquals(numbered.length > 3, true);
  assertEquals(numbered.every((piece) => piece.endsWith("\n")), true);
  assertEquals(numbered.join(""), rows.map((row, i) => `${i + 1}\t${row}`).join(""));
  const suffixed = [...framedPieces(bytes, { suffix: "s" }, 1000)].map(text).join("");
  assertEquals(suffixed, rows.map((row) => row.replace("\n", "\ts\n")).join(""));
  // Without framing, the pieces are the text itself, in views.
  assertEquals([...framedPieces(bytes, {}, 1 << 20)], [bytes]);
});
