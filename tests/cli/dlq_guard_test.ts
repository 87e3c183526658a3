/**
 * `sluice dlq replay` never writes wrong data (trial 2, items 4–6): a
 * dead letter made before a mask was added is refused, not written in
 * clear; a record older than the target's row is refused when nothing
 * orders them; a row the source deleted since is not brought back; what
 * is refused stays in the dead letters, and the command exits 1 naming why.
 */
import { getLogger } from "@logtape/logtape";
import { assert, assertEquals, assertMatch } from "../_assert.ts";
import { specsFrom, syncFixture } from "../_batch.ts";
import { startStream, uniqueSlot, waitForActiveSlot } from "../_cdc.ts";
import { waitUntil } from "../_wait.ts";
import { MemoryOffsetStore } from "../../core/offsets.ts";
import { runPipeline } from "../../core/pipeline.ts";
import { fileDeadLetterStore } from "../../core/_dead_letters.ts";
import { bytes, createTopic, produce, runUntil, uniqueName } from "../_kafka.ts";
import { testKafkaBrokers } from "../_services.ts";
import { kafkaDeadLetterStore } from "../../connectors/kafka_dead_letters.ts";
import { workerEnvironment } from "../../cli/worker.ts";

const CLI = new URL("../../cli/main.ts", import.meta.url).pathname;
const ROOT = new URL("../..", import.meta.url).pathname;

async function sluiceDlq(args: string[]): Promise<{ code: number; out: string }> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", CLI, "dlq", ...args],
    cwd: ROOT,
    stdin: "null",
  }).output();
  const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  return { code: output.code, out: decode(output.stdout) + decode(output.stderr) };
}

const TARGET = `create table items (id int primary key, v text,
  constraint no_bad check (v not like 'bad%'))`;

/** Writes the connector JSON and returns its path and spec. */
async function connector(dir: string, name: string, config: Record<string, string>) {
  const path = `${dir}/${name}.json`;
  const json = { name: "items_sync", config };
  await Deno.writeTextFile(path, JSON.stringify(json));
  const [spec] = await specsFrom(json);
  return { path, spec };
}

Deno.test("dlq replay refuses a sink dead letter made before a mask was added, and one without a recorded chain", async () => {
  await using db = await syncFixture(
    "dlq_chain",
    "create table items (id int primary key, v text); insert into items values (1, 'bad-SECRET-alice'), (2, 'ok')",
    TARGET,
  );
  const dir = await Deno.makeTempDir({ prefix: "sluice-dlq-guard-" });
  const base = {
    "connector.class": "postgres_query",
    "connection.url": db.source.url,
    "table": "public.items",
    "sink.class": "postgres",
    "sink.connection.url": db.target.url,
    "sink.table": "public.items",
    "errors.tolerance": "all",
    "errors.deadletterqueue.file.path": `${dir}/dead.jsonl`,
    "transforms": "trim",
    "transforms.trim.type": "replace_field",
    "transforms.trim.exclude": "nothing",
  };
  const first = await connector(dir, "before", base);
  const report = await runPipeline(first.spec, { offsets: new MemoryOffsetStore() });
  assertEquals(report.stats.deadLettered, 1);
  await db.targetSql`alter table items drop constraint no_bad`;

  // The mask is added; the dead letter went through "trim" only.
  const masked = await connector(dir, "after", {
    ...base,
    "transforms": "trim,hide",
    "transforms.hide.type": "mask",
    "transforms.hide.fields": "v",
    "transforms.hide.strategy": "hash",
    "transforms.hide.salt": "pepper",
  });
  const refused = await sluiceDlq(["replay", masked.path, "items_sync"]);
  assertEquals(refused.code, 1, refused.out);
  assertMatch(refused.out, /0 replayed, 0 failed again, 1 refused/);
  assertMatch(refused.out, /did not go through "hide" \(mask\), added to the chain since/);
  assertEquals((await db.targetSql`select id from items where v like '%SECRET%'`).length, 0);
  const store = fileDeadLetterStore(`${dir}/dead.jsonl`);
  assertEquals(await store.count("items_sync"), 1);

  // Under the config it was made with, it replays.
  const same = await sluiceDlq(["replay", first.path, "items_sync"]);
  assertEquals(same.code, 0, same.out);
  assertMatch(same.out, /1 replayed/);
  await db.targetSql`delete from items where id = 1`;

  // A dead letter of an older version (no chain recorded) is refused unless told otherwise.
  await db.targetSql`alter table items add constraint no_bad check (v not like 'bad%')`;
  await runPipeline(first.spec, { offsets: new MemoryOffsetStore() });
  await db.targetSql`alter table items drop constraint no_bad`;
  const lines = (await Deno.readTextFile(`${dir}/dead.jsonl`)).trim().split("\n");
  assertEquals(lines.length, 1);
  const entry = JSON.parse(lines[0]);
  assert(entry.headers["__sluice.errors.chain"] !== undefined, "no chain recorded");
  delete entry.headers["__sluice.errors.chain"];
  await Deno.writeTextFile(`${dir}/dead.jsonl`, JSON.stringify(entry) + "\n");
  const old = await sluiceDlq(["replay", first.path, "items_sync"]);
  assertEquals(old.code, 1, old.out);
  assertMatch(old.out, /before Sluice recorded which transform steps/);
  const forced = await sluiceDlq(["replay", first.path, "items_sync", "--assume-transformed"]);
  assertEquals(forced.code, 0, forced.out);
  assertEquals((await db.targetSql`select v from items where id = 1`)[0].v, "bad-SECRET-alice");
  await Deno.remove(dir, { recursive: true });
});

Deno.test("dlq replay of a batch row does not overwrite the newer row synced since, unless a version orders them", async () => {
  await using db = await syncFixture(
    "dlq_newer",
    `create table items (id int primary key, v text, updated_at timestamptz not null default now());
     insert into items values (1, 'bad-1', '2026-01-01T00:00:00Z'), (2, 'ok', '2026-01-01T00:00:00Z')`,
    `create table items (id int primary key, v text, updated_at timestamptz,
       constraint no_bad check (v not like 'bad%'))`,
  );
  const dir = await Deno.makeTempDir({ prefix: "sluice-dlq-guard-" });
  const base = {
    "connector.class": "postgres_query",
    "connection.url": db.source.url,
    "table": "public.items",
    "sink.class": "postgres",
    "sink.connection.url": db.target.url,
    "sink.table": "public.items",
    "errors.tolerance": "all",
    "errors.deadletterqueue.file.path": `${dir}/dead.jsonl`,
  };
  const plain = await connector(dir, "plain", base);
  await runPipeline(plain.spec, { offsets: new MemoryOffsetStore() });
  await db
    .sourceSql`update items set v = 'good-2', updated_at = '2026-01-02T00:00:00Z' where id = 1`;
  await runPipeline(plain.spec, { offsets: new MemoryOffsetStore() });
  await db.targetSql`alter table items drop constraint no_bad`;

  const refused = await sluiceDlq(["replay", plain.path, "items_sync"]);
  assertEquals(refused.code, 1, refused.out);
  assertMatch(refused.out, /1 refused/);
  assertMatch(refused.out, /holds the row id=1, and nothing shows the record is newer/);
  assertEquals((await db.targetSql`select v from items where id = 1`)[0].v, "good-2");
  assertEquals(await fileDeadLetterStore(`${dir}/dead.jsonl`).count("items_sync"), 1);

  // With a version column the sink's guard orders them: the older record is skipped and leaves.
  const versioned = await connector(dir, "versioned", {
    ...base,
    "sink.version.column": "updated_at",
  });
  const guarded = await sluiceDlq(["replay", versioned.path, "items_sync"]);
  assertEquals(guarded.code, 0, guarded.out);
  assertEquals((await db.targetSql`select v from items where id = 1`)[0].v, "good-2");
  assertEquals(await fileDeadLetterStore(`${dir}/dead.jsonl`).count("items_sync"), 0);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("dlq replay of change events: a row deleted at the source since is not brought back, an unpositioned record is not written over the row", async () => {
  await using db = await syncFixture(
    "dlq_deleted",
    "create table items (id int primary key, v text)",
    TARGET,
  );
  const dir = await Deno.makeTempDir({ prefix: "sluice-dlq-guard-" });
  const slot = uniqueSlot("dlq_deleted");
  const base = {
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
  };
  const cdc = await connector(dir, "cdc", base);
  const store = fileDeadLetterStore(`${dir}/dead.jsonl`);
  const stream = startStream(cdc.spec);
  try {
    await waitForActiveSlot(db.sourceSql, slot);
    await db.sourceSql`insert into items values (301, 'bad-301'), (302, 'bad-302'), (303, 'ok')`;
    await waitUntil("two dead letters", async () => (await store.count("items_sync")) === 2);
    await db.sourceSql`delete from items where id = 301`;
    await db.sourceSql`update items set v = 'good-302' where id = 302`;
    await waitUntil(
      "302 synced",
      async () => (await db.targetSql`select v from items where id = 302`)[0]?.v === "good-302",
    );
  } finally {
    await stream.stop();
  }
  await db.targetSql`alter table items drop constraint no_bad`;
  const replay = await sluiceDlq(["replay", cdc.path, "items_sync"]);
  assertEquals(replay.code, 1, replay.out);
  assertMatch(replay.out, /2 refused/);
  assertMatch(replay.out, /no row for key \{"id":301\} and the source no longer has it/);
  assertMatch(replay.out, /holds the row id=302/);
  const forced = await sluiceDlq(["replay", cdc.path, "items_sync", "--write-unverified"]);
  assertEquals(forced.code, 1, forced.out);
  assertMatch(forced.out, /1 replayed, 0 failed again, 1 refused/);
  // 301 stays deleted whatever the flags; 302 was written because the operator asked.
  assertEquals(
    (await db.targetSql`select id, v from items order by id`).map((r) => [r.id, r.v]),
    [[302, "bad-302"], [303, "ok"]],
  );
  assertEquals(await store.count("items_sync"), 1);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("dlq replay of change events with a source position: an older event is skipped by the LSN guard, a row truncated at the source is not brought back", async () => {
  await using db = await syncFixture(
    "dlq_lsn",
    "create table items (id int primary key, v text)",
    `create table items (id int primary key, v text, _source_lsn pg_lsn,
       constraint no_bad check (v not like 'bad%'))`,
  );
  const dir = await Deno.makeTempDir({ prefix: "sluice-dlq-guard-" });
  const slot = uniqueSlot("dlq_lsn");
  const cdc = await connector(dir, "cdc", {
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
  });
  const store = fileDeadLetterStore(`${dir}/dead.jsonl`);
  const stream = startStream(cdc.spec);
  try {
    await waitForActiveSlot(db.sourceSql, slot);
    await db.sourceSql`insert into items values (401, 'bad-401')`;
    await waitUntil("401 dead-lettered", async () => (await store.count("items_sync")) === 1);
    await db.sourceSql`update items set v = 'good-401' where id = 401`;
    await waitUntil(
      "401 synced",
      async () => (await db.targetSql`select v from items where id = 401`)[0]?.v === "good-401",
    );
    assertEquals(await store.count("items_sync"), 1);
    await db.targetSql`alter table items drop constraint no_bad`;
    const guarded = await sluiceDlq(["replay", cdc.path, "items_sync"]);
    assertEquals(guarded.code, 0, guarded.out);
    assertEquals((await db.targetSql`select v from items where id = 401`)[0].v, "good-401");
    assertEquals(await store.count("items_sync"), 0);

    await db.targetSql`alter table items add constraint no_bad check (v not like 'bad%')`;
    await db.sourceSql`insert into items values (402, 'bad-402')`;
    await waitUntil("402 dead-lettered", async () => (await store.count("items_sync")) === 1);
    await db.sourceSql`truncate items`;
    await waitUntil(
      "the truncate applied",
      async () => (await db.targetSql`select count(*)::int as n from items`)[0].n === 0,
    );
  } finally {
    await stream.stop();
  }
  await db.targetSql`alter table items drop constraint no_bad`;
  for (const flags of [[], ["--write-unverified"]]) {
    const refused = await sluiceDlq(["replay", cdc.path, "items_sync", ...flags]);
    assertEquals(refused.code, 1, refused.out);
    assertMatch(refused.out, /no row for key \{"id":402\} and the source no longer has it/);
  }
  assertEquals((await db.targetSql`select count(*)::int as n from items`)[0].n, 0);
  assertEquals(await store.count("items_sync"), 1);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("dlq replay from a Kafka dead-letter topic of events flattened by unwrap: refused over a newer row and where nothing can look the row up", async () => {
  await using db = await syncFixture(
    "dlq_unwrap",
    "select 1",
    `create table items (id int primary key, v text, _source_lsn pg_lsn,
       constraint no_bad check (v not like 'bad%'))`,
  );
  const dir = await Deno.makeTempDir({ prefix: "sluice-dlq-guard-" });
  const topic = uniqueName("dlq-unwrap-src");
  const dead = uniqueName("dlq-unwrap-dead");
  await createTopic(topic, 1);
  const event = (id: number, v: string, lsn: number) => ({
    topic,
    key: bytes(JSON.stringify({ id })),
    value: bytes(JSON.stringify({
      before: null,
      after: { id, v },
      source: { connector: "postgresql", schema: "public", table: "items", lsn, ts_ms: 0 },
      op: "c",
      ts_ms: 0,
    })),
  });
  const k2pg = await connector(dir, "k2pg", {
    "connector.class": "kafka",
    "bootstrap.servers": testKafkaBrokers(),
    "topics": topic,
    "group.id": uniqueName("dlq-unwrap-group"),
    "transforms": "unwrap",
    "transforms.unwrap.type": "io.debezium.transforms.ExtractNewRecordState",
    "sink.class": "postgres",
    "sink.connection.url": db.target.url,
    "sink.table": "public.items",
    "sink.delete.mode": "hard",
    "errors.tolerance": "all",
    "errors.deadletterqueue.topic.name": dead,
  });
  const environment = workerEnvironment({
    offsetsFile: `${dir}/offsets.json`,
    bootstrapServers: testKafkaBrokers(),
  });
  const store = kafkaDeadLetterStore(testKafkaBrokers(), dead);
  try {
    await produce([event(1, "bad-1", 100), event(2, "bad-2", 110)]);
    await runUntil(
      k2pg.spec,
      waitUntil("two dead letters", async () => (await store.count("items_sync")) === 2),
      { environment },
    );
    await produce([event(1, "good-2", 200)]);
    await runUntil(
      k2pg.spec,
      waitUntil(
        "good-2 synced",
        async () => (await db.targetSql`select v from items where id = 1`)[0]?.v === "good-2",
      ),
      { environment },
    );
    await db.targetSql`alter table items drop constraint no_bad`;
    const replay = await sluiceDlq([
      "replay",
      k2pg.path,
      "items_sync",
      "--bootstrap",
      testKafkaBrokers(),
    ]);
    assertEquals(replay.code, 1, replay.out);
    assertMatch(replay.out, /0 replayed, 0 failed again, 2 refused/);
    assertMatch(replay.out, /holds the row id=1.*no source position for _source_lsn/);
    assertMatch(replay.out, /no row for key \{"id":2\}, and source "kafka" cannot look it up/);
    assertEquals(
      (await db.targetSql`select id, v from items order by id`).map((r) => [r.id, r.v]),
      [[1, "good-2"]],
    );
    assertEquals(await store.count("items_sync"), 2);
  } finally {
    await store.close();
  }
  await Deno.remove(dir, { recursive: true });
});

Deno.test("a replay write of a record that met no target row leaves a row written since alone (onlyNew)", async () => {
  await using db = await syncFixture("dlq_only_new", "select 1", TARGET);
  const [spec] = await specsFrom({
    name: "items_sync",
    config: {
      "connector.class": "postgres_query",
      "connection.url": db.source.url,
      "table": "public.items",
      "sink.class": "postgres",
      "sink.connection.url": db.target.url,
      "sink.table": "public.items",
    },
  });
  const sink = await spec.sink.plugin.create(spec.sink.config, {
    pipeline: "items_sync",
    logger: getLogger(["sluice", "test"]),
    signal: new AbortController().signal,
    sourceMode: "batch",
  });
  try {
    const record = (id: number, v: string) => ({ topic: "items", key: { id }, value: { id, v } });
    // Checked while absent; the pipeline writes the row before the replay's write.
    const checks = await sink.replayCheck!([record(1, "old")]);
    assertEquals(checks, [{ verdict: "absent" }]);
    await db.targetSql`insert into items values (1, 'newer')`;
    const result = await sink.write({
      records: [record(1, "old"), record(2, "new-2")],
      onlyNew: true,
      reject: () => Promise.resolve(),
    });
    assertEquals([result.written, result.skipped], [1, 1]);
    assertEquals(
      (await db.targetSql`select id, v from items order by id`).map((r) => [r.id, r.v]),
      [[1, "newer"], [2, "new-2"]],
    );
  } finally {
    await sink.close();
  }
});

Deno.test("dlq replay of two dead letters of one key lands the newer and keeps the older, naming it", async () => {
  await using db = await syncFixture(
    "dlq_two",
    `create table items (id int primary key, v text);
     insert into items values (1, 'bad-1'), (2, 'ok')`,
    TARGET,
  );
  const dir = await Deno.makeTempDir({ prefix: "sluice-dlq-guard-" });
  const { path, spec } = await connector(dir, "two", {
    "connector.class": "postgres_query",
    "connection.url": db.source.url,
    "table": "public.items",
    "sink.class": "postgres",
    "sink.connection.url": db.target.url,
    "sink.table": "public.items",
    "errors.tolerance": "all",
    "errors.deadletterqueue.file.path": `${dir}/dead.jsonl`,
  });
  await runPipeline(spec, { offsets: new MemoryOffsetStore() });
  await db.sourceSql`update items set v = 'bad-2' where id = 1`;
  await runPipeline(spec, { offsets: new MemoryOffsetStore() });
  await db.targetSql`alter table items drop constraint no_bad`;
  const replayed = await sluiceDlq(["replay", path, "items_sync"]);
  assertEquals(replayed.code, 1, replayed.out);
  assertMatch(replayed.out, /1 replayed/);
  assertMatch(replayed.out, /holds a newer record of the same key/);
  assertEquals((await db.targetSql`select v from items where id = 1`)[0].v, "bad-2");
  const [left] = await fileDeadLetterStore(`${dir}/dead.jsonl`).list("items_sync", {});
  assertEquals((left.record.value as { v: string }).v, "bad-1");
  await Deno.remove(dir, { recursive: true });
});

Deno.test("dlq replay of a record whose key a mask changed cannot look the source up, and --write-unverified writes it", async () => {
  await using db = await syncFixture(
    "dlq_masked_key",
    `create table items (id text primary key, v text); insert into items values ('A-1', 'bad-1')`,
    `create table items (id text primary key, v text, constraint no_bad check (v not like 'bad%'))`,
  );
  const dir = await Deno.makeTempDir({ prefix: "sluice-dlq-guard-" });
  const { path, spec } = await connector(dir, "masked", {
    "connector.class": "postgres_query",
    "connection.url": db.source.url,
    "table": "public.items",
    transforms: "hide",
    "transforms.hide.type": "mask",
    "transforms.hide.fields": "id",
    "transforms.hide.strategy": "hash",
    "transforms.hide.salt": "pepper",
    "sink.class": "postgres",
    "sink.connection.url": db.target.url,
    "sink.table": "public.items",
    "sink.delete.mode": "hard",
    "errors.tolerance": "all",
    "errors.deadletterqueue.file.path": `${dir}/dead.jsonl`,
  });
  await runPipeline(spec, { offsets: new MemoryOffsetStore() });
  await db.targetSql`alter table items drop constraint no_bad`;
  const refused = await sluiceDlq(["replay", path, "items_sync"]);
  assertEquals(refused.code, 1, refused.out);
  assertMatch(refused.out, /the key may be one that hide masked/);
  const written = await sluiceDlq(["replay", path, "items_sync", "--write-unverified"]);
  assertEquals(written.code, 0, written.out);
  assertEquals((await db.targetSql`select v from items`)[0].v, "bad-1");
  await Deno.remove(dir, { recursive: true });
});

Deno.test("dlq replay refuses, whatever the flags, a delete whose own source transaction wrote the target's row while the source still holds it, and replays it once the source does not", async () => {
  await using db = await syncFixture(
    "dlq_same_tx",
    "create table items (id int primary key, v text); insert into items values (501, 'first')",
    `create table items (id int primary key, v text, _source_lsn pg_lsn);
     insert into items values (501, 'first', '0/1');
     create function refuse_delete() returns trigger language plpgsql as
       $$ begin raise exception 'deletes refused for now'; end $$;
     create trigger refuse_delete before delete on items for each row execute function refuse_delete();`,
  );
  const dir = await Deno.makeTempDir({ prefix: "sluice-dlq-guard-" });
  const slot = uniqueSlot("dlq_same_tx");
  const cdc = await connector(dir, "cdc", {
    "connector.class": "postgres_cdc",
    "connection.url": db.source.url,
    "topic.prefix": "src",
    "slot.name": slot,
    "slot.drop.on.stop": "true",
    "snapshot.mode": "never",
    "table.include.list": "public.items",
    "sink.class": "postgres",
    "sink.connection.url": db.target.url,
    "sink.table": "public.items",
    "sink.delete.mode": "hard",
    "errors.tolerance": "all",
    "errors.deadletterqueue.file.path": `${dir}/dead.jsonl`,
  });
  const store = fileDeadLetterStore(`${dir}/dead.jsonl`);
  const stream = startStream(cdc.spec);
  try {
    await waitForActiveSlot(db.sourceSql, slot);
    // The "replace" pattern: the delete is dead-lettered, the create lands.
    await db.sourceSql.begin(async (tx) => {
      await tx`delete from items where id = 501`;
      await tx`insert into items values (501, 'back')`;
    });
    await waitUntil(
      "the create applied",
      async () => (await db.targetSql`select v from items where id = 501`)[0]?.v === "back",
    );
    assertEquals(await store.count("items_sync"), 1);
  } finally {
    await stream.stop();
  }
  await db.targetSql`drop trigger refuse_delete on items`;
  // The source still holds the row: refused whatever the flags say.
  for (const flags of [[], ["--write-unverified"]]) {
    const refused = await sluiceDlq(["replay", cdc.path, "items_sync", ...flags]);
    assertEquals(refused.code, 1, refused.out);
    assertMatch(
      refused.out,
      /from the record's own source transaction \(equal _source_lsn\).*; the source still holds the row, so replaying the delete would remove a live row/,
    );
  }
  assertEquals((await db.targetSql`select v from items where id = 501`)[0]?.v, "back");
  assertEquals(await store.count("items_sync"), 1);
  // Once the source no longer holds the row, the delete is right: it is replayed.
  await db.sourceSql`delete from items where id = 501`;
  const replayed = await sluiceDlq(["replay", cdc.path, "items_sync"]);
  assertEquals(replayed.code, 0, replayed.out);
  assertEquals((await db.targetSql`select v from items where id = 501`).length, 0);
  assertEquals(await store.count("items_sync"), 0);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("dlq replay names the first 20 refused dead letters and counts the rest", async () => {
  await using db = await syncFixture(
    "dlq_many_refused",
    `create table items (id int primary key, v text, updated_at timestamptz not null default now());
     insert into items select g, 'bad-' || g, '2026-01-01T00:00:00Z' from generate_series(1, 25) g`,
    `create table items (id int primary key, v text, updated_at timestamptz,
       constraint no_bad check (v not like 'bad%'))`,
  );
  const dir = await Deno.makeTempDir({ prefix: "sluice-dlq-many-" });
  const plain = await connector(dir, "plain", {
    "connector.class": "postgres_query",
    "connection.url": db.source.url,
    "table": "public.items",
    "sink.class": "postgres",
    "sink.connection.url": db.target.url,
    "sink.table": "public.items",
    "errors.tolerance": "all",
    "errors.deadletterqueue.file.path": `${dir}/dead.jsonl`,
  });
  await runPipeline(plain.spec, { offsets: new MemoryOffsetStore() });
  await db.sourceSql`update items set v = 'good', updated_at = '2026-01-02T00:00:00Z'`;
  await runPipeline(plain.spec, { offsets: new MemoryOffsetStore() });
  await db.targetSql`alter table items drop constraint no_bad`;

  const refused = await sluiceDlq(["replay", plain.path, "items_sync"]);
  assertEquals(refused.code, 1, refused.out);
  assertMatch(refused.out, /25 refused/);
  const lines = refused.out.split("\n");
  // The outcome printed, and the log: 20 letters each, then the rest counted.
  const printed = lines.filter((line) => /^ {2}[0-9a-f]+ sink: .*holds the row id=\d+/.test(line));
  assertEquals(printed.length, 20, refused.out);
  assertMatch(refused.out, /^ {2}… and 5 more$/m);
  const logged = lines.filter((line) => /"Dead letter [0-9a-f]+ not replayed: /.test(line));
  assertEquals(logged.length, 20, refused.out);
  assertMatch(refused.out, /"5 more dead letters not replayed, kept as they are/);
  assertEquals(await fileDeadLetterStore(`${dir}/dead.jsonl`).count("items_sync"), 25);
  await Deno.remove(dir, { recursive: true });
});
