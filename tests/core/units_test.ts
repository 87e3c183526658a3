import { Cron } from "croner";
import { nextRunTime, tickTime } from "../../core/_schedule.ts";
import { assertEquals, assertRejects } from "../_assert.ts";
import { settle, waitUntil } from "../_wait.ts";
import { FileOffsetStore } from "../../core/offsets.ts";
import { BoundedQueue } from "../../core/_queue.ts";
import {
  decodeBytea,
  encodeArray,
  escapeCopy,
  parseArray,
  unescapeCopy,
} from "../../drivers/pg_text.ts";
import { parseProperties, resolvePlaceholders } from "../../core/providers.ts";

Deno.test("the file offset store survives a reopen and never leaves a torn file", async () => {
  const folder = await Deno.makeTempDir();
  try {
    const path = `${folder}/nested/offsets.json`;
    const store = new FileOffsetStore(path);
    await Promise.all([
      store.write("a", { lsn: "0/16B3748" }),
      store.write("b", 42),
      store.write("a", { lsn: "0/16B3750" }),
    ]);
    const reopened = new FileOffsetStore(path);
    assertEquals(await reopened.read("a"), { lsn: "0/16B3750" });
    assertEquals(await reopened.read("b"), 42);
    await reopened.delete("b");
    assertEquals(await new FileOffsetStore(path).read("b"), undefined);
    const leftovers = [...Deno.readDirSync(`${folder}/nested`)].map((e) => e.name);
    assertEquals(leftovers, ["offsets.json"]);
  } finally {
    await Deno.remove(folder, { recursive: true });
  }
});

Deno.test("offsets written while the file is being written land together, in call order", async () => {
  const folder = await Deno.makeTempDir();
  try {
    const path = `${folder}/offsets.json`;
    const store = new FileOffsetStore(path);
    const writes: Promise<void>[] = [];
    for (let round = 0; round < 5; round++) {
      for (let pipeline = 0; pipeline < 20; pipeline++) {
        writes.push(store.write(`p${pipeline}`, { round }));
      }
    }
    writes.push(store.delete("p7"));
    await Promise.all(writes);
    const stored = JSON.parse(await Deno.readTextFile(path));
    assertEquals(Object.keys(stored).length, 19);
    assertEquals(stored.p7, undefined);
    assertEquals(stored.p19, { round: 4 });

    // A write that fails rejects every change of its group; the next ones still land.
    const blocked = new FileOffsetStore(`${folder}/blocker/offsets.json`);
    await Deno.writeTextFile(`${folder}/blocker`, "a file where the folder should be");
    const failed = await Promise.allSettled([blocked.write("x", 1), blocked.write("y", 2)]);
    assertEquals(failed.map((result) => result.status), ["rejected", "rejected"]);
    await Deno.remove(`${folder}/blocker`);
    await blocked.write("z", 3);
    const after = JSON.parse(await Deno.readTextFile(`${folder}/blocker/offsets.json`));
    assertEquals(after.z, 3);
  } finally {
    await Deno.remove(folder, { recursive: true });
  }
});

Deno.test("a corrupt offsets file is an error that names the file, not a silent restart", async () => {
  const folder = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${folder}/offsets.json`, "{ not json");
    const error = await assertRejects(() =>
      new FileOffsetStore(`${folder}/offsets.json`).read("x")
    );
    assertEquals(
      error.message.startsWith(`Cannot read offsets file "${folder}/offsets.json"`),
      true,
    );
  } finally {
    await Deno.remove(folder, { recursive: true });
  }
});

Deno.test("the bounded queue makes a fast producer wait for a slow consumer", async () => {
  const queue = new BoundedQueue<number>(2);
  let pushed = 0;
  const producer = (async () => {
    for (let i = 0; i < 10; i++) {
      await queue.push(i);
      pushed++;
    }
    queue.close();
  })();
  await waitUntil("the producer to fill the queue", () => pushed === 2);
  // In-memory code: after one more turn of the event loop, a producer that
  // was not held back would have pushed a third item.
  await settle();
  assertEquals(pushed, 2, "only `capacity` items may wait");
  const seen: number[] = [];
  for await (const item of queue) seen.push(item);
  await producer;
  assertEquals(seen, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
});

Deno.test("PostgreSQL array literals parse with NULLs, quotes, escapes and nesting", () => {
  assertEquals(parseArray('{a,NULL,"b\\"c","NULL","x,y"}', (t) => t), [
    "a",
    null,
    'b"c',
    "NULL",
    "x,y",
  ]);
  assertEquals(parseArray("{{1,2},{3,NULL}}", Number), [[1, 2], [3, null]]);
  assertEquals(parseArray("{}", Number), []);
  assertEquals(parseArray("[0:1]={7,8}", Number), [7, 8]);
  assertEquals(
    encodeArray(["a", null, 'b"c', "back\\slash"]),
    '{"a",NULL,"b\\"c","back\\\\slash"}',
  );
});

Deno.test("COPY text escaping round-trips tabs, newlines and backslashes", () => {
  const text = "tab\there\nnew\\line\rend";
  assertEquals(unescapeCopy(escapeCopy(text)), text);
  assertEquals(escapeCopy("plain"), "plain");
  assertEquals([...decodeBytea("\\x00ff10")], [0, 255, 16]);
});

Deno.test("providers resolve env, file and directory placeholders and report what is missing", () => {
  const problems: string[] = [];
  const sources = {
    env: (name: string) => (name === "HOST" ? "db.local" : undefined),
    readText: (path: string) => {
      if (path === "/run/secrets/db.properties") return "password = p@ss\n";
      if (path === "/run/secrets/token") return "t0ken\n";
      throw new Error("not found");
    },
  };
  const resolved = resolvePlaceholders(
    "postgres://u:${file:db.properties:password}@${env:HOST}/x?t=${directory:/run/secrets:token}&${env:NOPE}",
    "/run/secrets",
    (message) => problems.push(message),
    sources,
  );
  assertEquals(resolved, "postgres://u:p@ss@db.local/x?t=t0ken&${env:NOPE}");
  assertEquals(problems, ['environment variable "NOPE" is not set']);
  assertEquals(parseProperties("# c\na=1\nb : two\n! x\n"), { a: "1", b: "two" });
});

Deno.test("a schedule's next run is computed in UTC, for the log at start and GET /jobs", () => {
  const from = new Date("2026-11-30T19:34:21Z");
  assertEquals(nextRunTime("0 * * * *", from), "2026-11-30T20:00:00.000Z");
  assertEquals(nextRunTime("30 2 * * *", from), "2026-12-01T02:30:00.000Z");
  assertEquals(nextRunTime(undefined, from), null);
});

Deno.test("a tick is named by its own scheduled time, fired a little early or late", () => {
  const seconds = new Cron("*/10 * * * * *", { timezone: "UTC", paused: true });
  const minutes = new Cron("* * * * *", { timezone: "UTC", paused: true });
  const at = (iso: string, offset: number) => tickTime(seconds, Date.parse(iso) + offset);
  for (const offset of [-300, 0, 1, 5, 400, 999, 1_400, 4_000]) {
    assertEquals(at("2026-01-01T04:17:40Z", offset).toISOString(), "2026-01-01T04:17:40.000Z");
  }
  const minute = Date.parse("2026-01-01T04:21:00Z");
  for (const offset of [-200, 6, 900, 30_000]) {
    assertEquals(tickTime(minutes, minute + offset).toISOString(), "2026-01-01T04:21:00.000Z");
  }
});
