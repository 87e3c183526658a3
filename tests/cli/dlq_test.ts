/**
 * `sluice dlq` against the real services (issue 10 item 4, issue 9's
 * dead-letter gauge), for each destination kind (table, file, topic): a
 * batch job dead-letters rows the target's CHECK constraint refuses and a
 * row a transform cannot cast; `list` and `show` describe them; `replay`
 * before the fix fails again (attempts 2), after the fix lands exactly the
 * selected ones, never transforms a sink-stage record twice, and they leave
 * the destination; `purge` is a dry run without `--yes`; the gauge follows.
 */
import { assert, assertEquals, assertMatch } from "../_assert.ts";
import { specsFrom, syncFixture } from "../_batch.ts";
import { testKafkaBrokers } from "../_services.ts";
import { bytes, createTopic, produce, uniqueName } from "../_kafka.ts";
import { MemoryOffsetStore } from "../../core/offsets.ts";
import { runPipeline } from "../../core/pipeline.ts";
import { SluiceMetrics } from "../../core/metrics.ts";
import { watchDeadLetterSizes } from "../../core/dead_letter_queue.ts";
import { kafkaDeadLetterTopics } from "../../sinks/kafka.ts";
import { kafkaDeadLetterStores } from "../../connectors/kafka_dead_letters.ts";
import { fileDeadLetters, fileDeadLetterStore } from "../../core/_dead_letters.ts";
import { writeAtomically } from "../../api/files.ts";
import type { StoredDeadLetter } from "../../api/dead_letters.ts";
import { waitUntil } from "../_wait.ts";
import { uniqueSlot, waitForActiveSlot } from "../_cdc.ts";

const CLI = new URL("../../cli/main.ts", import.meta.url).pathname;
const ROOT = new URL("../..", import.meta.url).pathname;

const SOURCE_DDL = `
  create table items (id int primary key, amount int not null, note text, code text);
  insert into items values
    (1, 10, 'same note', '1'), (2, -1, 'same note', '2'), (3, 30, 'c', '3'),
    (4, -2, 'd', '4'), (5, 50, 'e', '5'), (6, 60, 'f', 'x');`;
const TARGET_DDL = `
  create table items (id int primary key, amount int not null constraint amount_positive
    check (amount >= 0), note text, code int);`;

type Kind = "table" | "file" | "topic";

/** Runs `sluice dlq …`; returns the exit code and what it printed. */
async function sluiceDlq(
  args: string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", CLI, "dlq", ...args, "--bootstrap", testKafkaBrokers()],
    cwd: ROOT,
    stdin: "null",
  }).output();
  const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  return { code: output.code, stdout: decode(output.stdout), stderr: decode(output.stderr) };
}

async function listJson(config: string, ...selection: string[]): Promise<StoredDeadLetter[]> {
  const result = await sluiceDlq(["list", config, "items_sync", "--json", ...selection]);
  assertEquals(result.code, 0, result.stderr);
  return JSON.parse(result.stdout);
}

/**
 * Scrapes until the gauge shows `expected`: a destination read slower than a
 * scrape waits for (a topic) lands on a later scrape.
 */
async function gaugeShows(metrics: SluiceMetrics, expected: number): Promise<void> {
  await waitUntil(`sluice_dead_letters = ${expected}`, async () => {
    const value = gaugeValue(await metrics.render());
    if (value !== expected) throw new Error(`sluice_dead_letters is ${value}`);
    return true;
  }, { timeoutMs: 30_000 });
}

/** The `sluice_dead_letters` value of the exposition text, or undefined. */
function gaugeValue(text: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith("sluice_dead_letters{"));
  return line === undefined ? undefined : Number(line.split(" ").at(-1));
}

async function scenario(kind: Kind) {
  await using db = await syncFixture(`dlq_${kind}`, SOURCE_DDL, TARGET_DDL);
  const dir = await Deno.makeTempDir({ prefix: "sluice-dlq-" });
  const destination: Record<Kind, Record<string, string>> = {
    table: { "errors.deadletterqueue.table.name": "public.dead_letters" },
    file: { "errors.deadletterqueue.file.path": `${dir}/dead.jsonl` },
    topic: { "errors.deadletterqueue.topic.name": uniqueName("dlq-items") },
  };
  const connector = {
    name: "items_sync",
    config: {
      "connector.class": "postgres_query",
      "connection.url": db.source.url,
      "table": "public.items",
      "transforms": "hide,types",
      // A hash of a hash differs from the hash: a record masked twice would show.
      "transforms.hide.type": "mask",
      "transforms.hide.fields": "note",
      "transforms.hide.strategy": "hash",
      "transforms.hide.salt": "pepper",
      "transforms.types.type": "cast",
      "transforms.types.spec": "code:int32",
      "sink.class": "postgres",
      "sink.connection.url": db.target.url,
      "sink.table": "public.items",
      "errors.tolerance": "all",
      ...destination[kind],
    },
  };
  const config = `${dir}/items.json`;
  await Deno.writeTextFile(config, JSON.stringify(connector));
  const [spec] = await specsFrom(connector);
  // Watched from before the destination exists: the first dead letter creates it.
  const metrics = new SluiceMetrics([spec], { defaultMetrics: false, deadLetterRefreshMs: 0 });
  await using _watch = watchDeadLetterSizes(metrics, [spec], {
    deadLetterTopicStore: kafkaDeadLetterStores(testKafkaBrokers()),
  });
  await gaugeShows(metrics, 0);
  const report = await runPipeline(spec, {
    offsets: new MemoryOffsetStore(),
    deadLetterTopic: kafkaDeadLetterTopics(testKafkaBrokers()),
  });
  assertEquals(report.status, "succeeded", report.error?.message);
  assertEquals(report.stats.deadLettered, 3);
  await gaugeShows(metrics, 3);

  // list and show
  const all = await listJson(config);
  // In the order they were dead-lettered: the transform's failure before the sink's.
  assertEquals(all.map((l) => [l.record.key, l.stage, l.attempts]), [
    [{ id: 6 }, "types", 1],
    [{ id: 2 }, "sink", 1],
    [{ id: 4 }, "sink", 1],
  ]);
  const sinkLetter = all[1];
  assertEquals(sinkLetter.errorCode, "23514");
  assertMatch(sinkLetter.error, /amount_positive/);
  const table = await sluiceDlq(["list", config, "items_sync"]);
  assertMatch(table.stdout, /ID +TIME +STAGE +ERROR +ATTEMPTS/);
  assertMatch(table.stdout, /3 dead letter\(s\)/);
  const shown = await sluiceDlq(["show", config, "items_sync", sinkLetter.id]);
  assertEquals(shown.code, 0, shown.stderr);
  assertMatch(shown.stdout, /SQLSTATE: +23514/);
  assertMatch(shown.stdout, /trace:/);
  assertEquals((await listJson(config, "--stage", "types")).length, 1);
  assertEquals((await listJson(config, "--since", "1h")).length, 3);
  assertEquals((await listJson(config, "--until", "1h")).length, 0);
  assertEquals((await listJson(config, "--id", `${all[0].id},${all[2].id}`)).length, 2);

  // Before the fix: the sink refuses them again; they stay, attempts 2, the new error kept.
  const early = await sluiceDlq(["replay", config, "items_sync", "--stage", "sink"]);
  assertEquals(early.code, 1, early.stdout + early.stderr);
  assertMatch(early.stdout, /0 replayed, 2 failed again/);
  const again = await listJson(config, "--stage", "sink");
  assertEquals(again.map((l) => [l.record.key, l.attempts]), [[{ id: 2 }, 2], [{ id: 4 }, 2]]);
  assertEquals(again[0].errorCode, "23514");

  // The fix; then replay by id lands exactly that one.
  await db.targetSql.unsafe("alter table items drop constraint amount_positive");
  const two = again.find((l) => l.record.key?.id === 2)!;
  const one = await sluiceDlq(["replay", config, "items_sync", "--id", two.id]);
  assertEquals(one.code, 0, one.stdout + one.stderr);
  assertMatch(one.stdout, /1 replayed, 0 failed again/);
  let rows = await db.targetSql`select id, note from items order by id`;
  assertEquals(rows.map((r) => r.id), [1, 2, 3, 5]);
  // Masked once: row 2 has the note of row 1 (same clear text), not a hash of the hash.
  assertEquals(rows[1].note, rows[0].note);
  await gaugeShows(metrics, 2);

  // Replay all: row 4 lands, row 6 fails in the cast again and stays with attempts 2.
  const rest = await sluiceDlq(["replay", config, "items_sync"]);
  assertEquals(rest.code, 1, rest.stdout + rest.stderr);
  assertMatch(rest.stdout, /1 replayed, 1 failed again/);
  rows = await db.targetSql`select id from items order by id`;
  assertEquals(rows.map((r) => r.id), [1, 2, 3, 4, 5]);
  const left = await listJson(config);
  assertEquals(left.map((l) => [l.record.key, l.stage, l.attempts]), [[{ id: 6 }, "types", 2]]);
  await gaugeShows(metrics, 1);

  // purge: a dry run by default, then for real.
  const dry = await sluiceDlq(["purge", config, "items_sync"]);
  assertEquals(dry.code, 0, dry.stderr);
  assertMatch(dry.stdout, /Dry run: 1 dead letter\(s\) would be deleted/);
  assertEquals((await listJson(config)).length, 1);
  const purged = await sluiceDlq(["purge", config, "items_sync", "--yes"]);
  assertEquals(purged.code, 0, purged.stderr);
  assertEquals((await listJson(config)).length, 0);
  await gaugeShows(metrics, 0);
  await Deno.remove(dir, { recursive: true });
}

Deno.test("sluice dlq lists, replays and purges dead letters kept in a table", async () => {
  await scenario("table");
});

Deno.test("sluice dlq lists, replays and purges dead letters kept in a JSON-lines file", async () => {
  await scenario("file");
});

Deno.test("sluice dlq lists, replays and purges dead letters kept in a Kafka topic, through its replay ledger", async () => {
  await scenario("topic");
});

Deno.test("sluice dlq exits 2 on bad usage", async () => {
  const dir = await Deno.makeTempDir({ prefix: "sluice-dlq-" });
  const config = `${dir}/c.json`;
  await Deno.writeTextFile(
    config,
    JSON.stringify({
      name: "p",
      config: {
        "connector.class": "postgres_query",
        "connection.url": "postgres://u@127.0.0.1:1/db",
        "table": "public.t",
        "sink.class": "postgres",
        "sink.connection.url": "postgres://u@127.0.0.1:1/db",
        "sink.table": "public.t",
      },
    }),
  );
  for (
    const args of [
      ["frobnicate", config, "p"],
      ["list", "p"],
      ["list", config, "nope"],
      ["list", config, "p"], // keeps no dead letters
      ["list", config, "p", "--since", "yesterday-ish"],
      ["list", config, "p", "--bogus"],
    ]
  ) {
    const result = await sluiceDlq(args);
    assertEquals(result.code, 2, `${args.join(" ")}: ${result.stdout}${result.stderr}`);
  }
  await Deno.remove(dir, { recursive: true });
});

Deno.test("a dead-letter file rewritten by sluice dlq while a pipeline appends to it loses no line", async () => {
  const dir = await Deno.makeTempDir({ prefix: "sluice-dlq-" });
  const path = `${dir}/dead.jsonl`;
  const writer = fileDeadLetters(path);
  const store = fileDeadLetterStore(path);
  const failure = (n: number) => ({
    record: { topic: "t", key: { n }, value: { n } },
    error: new Error(`bad ${n}`),
    stage: "sink",
  });
  let removed = 0;
  const appending = (async () => {
    for (let n = 0; n < 200; n++) await writer.write([failure(n)], "p");
  })();
  // Remove whatever is there, again and again, while the writer appends.
  let done = false;
  appending.finally(() => done = true);
  while (!done) {
    const letters = await store.list("p", {});
    removed += await store.remove(letters.slice(0, 3).map((l) => l.id));
  }
  await appending;
  await writer.close();
  const remaining = await store.count("p");
  assert(removed > 0, "the test removed nothing while appending");
  assertEquals(remaining + removed, 200);
  // Dead letters may hold personal data in clear: the owner alone reads the file,
  // appended to or rewritten.
  assertEquals((await Deno.stat(path)).mode! & 0o777, 0o600);
  const offsets = `${dir}/state/offsets.json`;
  await writeAtomically(offsets, "{}");
  assertEquals((await Deno.stat(offsets)).mode! & 0o777, 0o600);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("sluice dlq replays from a dead-letter file while sluice run appends to it, and loses no dead letter", async () => {
  await using db = await syncFixture(
    "dlq_running",
    "create table items (id int primary key, amount int not null)",
    "create table items (id int primary key, amount int not null constraint amount_positive check (amount >= 0))",
  );
  const dir = await Deno.makeTempDir({ prefix: "sluice-dlq-" });
  const slot = uniqueSlot("dlq_running");
  const config = `${dir}/stream.json`;
  await Deno.writeTextFile(
    config,
    JSON.stringify({
      name: "items_sync",
      config: {
        "connector.class": "postgres_cdc",
        "connection.url": db.source.url,
        "topic.prefix": "src",
        "slot.name": slot,
        "slot.drop.on.stop": "true",
        "table.include.list": "public.items",
        "sink.class": "postgres",
        "sink.connection.url": db.target.url,
        "sink.table": "public.items",
        "sink.delete.mode": "hard",
        "errors.tolerance": "all",
        "errors.deadletterqueue.file.path": `${dir}/dead.jsonl`,
      },
    }),
  );
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", CLI, "run", config, "--offsets", `${dir}/offsets.json`, "--listen", "off"],
    cwd: ROOT,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const log = new Response(child.stderr).text();
  let exited = false;
  child.status.then(() => exited = true);
  try {
    await waitForActiveSlot(db.sourceSql, slot);
    // 20 transactions of 10 rows, every 5th row refused by the target's CHECK.
    const inserting = (async () => {
      for (let tx = 0; tx < 20; tx++) {
        await db.sourceSql.unsafe(
          `insert into items select g, case when g % 5 = 0 then -1 else g end
           from generate_series(${tx * 10 + 1}, ${tx * 10 + 10}) g`,
        );
        // Paced like a live workload, so that replays below overlap the appends.
        await new Promise((resolve) => setTimeout(resolve, 300));
      }
    })();
    let inserted = false;
    inserting.finally(() => inserted = true);
    let replays = 0;
    while (!inserted || replays < 2) {
      // The constraint is still there: each replay fails again and rewrites the file.
      const result = await sluiceDlq(["replay", config, "items_sync"]);
      assert(result.code === 0 || result.code === 1, result.stdout + result.stderr);
      replays++;
    }
    await inserting;
    const store = fileDeadLetterStore(`${dir}/dead.jsonl`);
    await waitUntil("40 dead letters", async () => (await store.count("items_sync")) === 40, {
      timeoutMs: 60_000,
    });
    const letters = await store.list("items_sync", {});
    const ids = new Set(letters.map((l) => (l.record.value as { after: { id: number } }).after.id));
    assertEquals(ids.size, 40);
    assert(letters.some((l) => l.attempts >= 2), "no replay overlapped the stream");

    await db.targetSql.unsafe("alter table items drop constraint amount_positive");
    const fixed = await sluiceDlq(["replay", config, "items_sync"]);
    assertEquals(fixed.code, 0, fixed.stdout + fixed.stderr);
    const [{ count }] = await db.targetSql`select count(*)::int as count from items`;
    assertEquals(count, 200);
    assertEquals(await store.count("items_sync"), 0);
  } catch (error) {
    if (exited) throw new Error(`sluice run ended early:\n${await log}`, { cause: error });
    throw error;
  } finally {
    if (!exited) child.kill("SIGTERM");
    await child.status;
    await log;
  }
  await Deno.remove(dir, { recursive: true });
});

Deno.test("sluice dlq lists and shows a dead letter on a Kafka topic whose record holds an integer past 2^53", async () => {
  const topic = uniqueName("dlq-bigint");
  await createTopic(topic, 1);
  // A change event of an int8 column: the kafka decoder keeps the unsafe integer as a bigint.
  await produce([{
    topic,
    key: bytes('{"id":9007199254740993}'),
    value: bytes('{"after":{"id":9007199254740993,"n":1},"op":"c"}'),
    headers: [
      ["__connect.errors.connector.name", "big_sync"],
      ["__connect.errors.stage", "sink"],
      ["__connect.errors.exception.message", "refused"],
      ["__sluice.errors.record.topic", "src.public.big"],
    ].map(([name, value]) => [name, bytes(value)] as const),
  }]);
  const dir = await Deno.makeTempDir({ prefix: "sluice-dlq-" });
  const config = `${dir}/big.json`;
  await Deno.writeTextFile(
    config,
    JSON.stringify({
      name: "big_sync",
      config: {
        "connector.class": "kafka",
        "bootstrap.servers": testKafkaBrokers(),
        "topics": "src.public.big",
        "sink.class": "postgres",
        "sink.connection.url": "postgres://u@127.0.0.1:1/db",
        "sink.table": "public.big",
        "errors.tolerance": "all",
        "errors.deadletterqueue.topic.name": topic,
      },
    }),
  );
  const listed = await sluiceDlq(["list", config, "big_sync", "--json"]);
  assertEquals(listed.code, 0, listed.stdout + listed.stderr);
  const [letter] = JSON.parse(listed.stdout);
  assertEquals(letter.record.key, { id: "9007199254740993" });
  assertEquals(letter.id, "0:0");
  const shown = await sluiceDlq(["show", config, "big_sync", "0:0"]);
  assertEquals(shown.code, 0, shown.stdout + shown.stderr);
  assertMatch(shown.stdout, /9007199254740993/);
  const json = await sluiceDlq(["show", config, "big_sync", "0:0", "--json"]);
  assertEquals(json.code, 0, json.stdout + json.stderr);
  await Deno.remove(dir, { recursive: true });
});
