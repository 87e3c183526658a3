/**
 * `sluice offsets reset` and `show` on a Kafka → postgres pipeline whose
 * offsets the postgres sink keeps in the target database (issue 10):
 * `--to-earliest` replays the topic and the converged target is unchanged;
 * `--to-timestamp` picks, per partition, the first record stamped at or
 * after the time. No process runs the pipeline, so the CLI edits the
 * consumer group and the sink's offsets table directly.
 */
import postgres from "postgres";
import { assert, assertEquals, assertMatch } from "../_assert.ts";
import { syncFixture, tableDigest } from "../_batch.ts";
import { uniqueSlot, waitForActiveSlot } from "../_cdc.ts";
import {
  bytes,
  committedOffsets,
  createTopic,
  kafkaSpecs,
  produce,
  readTopic,
  runUntil,
  uniqueName,
} from "../_kafka.ts";
import { createTestDatabase, testKafkaBrokers } from "../_services.ts";
import { waitUntil } from "../_wait.ts";
import { advisoryLockKey } from "../../drivers/pg_cluster.ts";
import { MemoryOffsetStore } from "../../core/offsets.ts";

const CLI = new URL("../../cli/main.ts", import.meta.url).pathname;
const ROOT = new URL("../..", import.meta.url).pathname;

/** Runs the CLI to its end; `--listen` points at a port nothing listens on. */
async function sluice(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", CLI, ...args, "--listen", "127.0.0.1:9", "--log-level", "warning"],
    cwd: ROOT,
    stdin: "null",
  }).output();
  const decode = (data: Uint8Array) => new TextDecoder().decode(data);
  return { code: output.code, out: decode(output.stdout), err: decode(output.stderr) };
}

/** The next offset per partition stored by the sink, "0" → n. */
async function storedNext(sql: postgres.Sql, pipeline: string, topic: string) {
  const [row] = await sql<{ offset: Record<string, { next: Record<string, number> }> }[]>`
    select "offset" from public.sluice_offsets where pipeline = ${pipeline}`;
  return row?.offset[topic]?.next ?? {};
}

Deno.test("offsets reset --to-earliest replays the topic into an unchanged target; --to-timestamp picks the first record at that time", async () => {
  await using dir = await tempDir();
  const target = await createTestDatabase("offsets_cli");
  const sql = postgres(target.url, { max: 1, onnotice: () => {} });
  try {
    await sql`create table public.items (id int primary key, name text)`;
    const topic = uniqueName("offsets-cli");
    await createTopic(topic, 2);
    const early = Date.parse("2024-01-01T00:00:00Z");
    const late = Date.parse("2024-06-01T00:00:00Z");
    await produce(Array.from({ length: 20 }, (_, i) => ({
      topic,
      key: bytes(JSON.stringify({ id: i })),
      value: bytes(JSON.stringify({ id: i, name: `n${i}` })),
      timestamp: (i < 10 ? early : late) + i * 1000,
    })));
    const pipeline = "k2pg";
    const group = uniqueName("offsets-cli-group");
    const config = {
      "connector.class": "kafka",
      "bootstrap.servers": testKafkaBrokers(),
      topics: topic,
      "group.id": group,
      "sink.class": "postgres",
      "sink.connection.url": target.url,
      "sink.table": "public.items",
      "sink.delete.mode": "hard",
    };
    const file = `${dir.path}/k2pg.json`;
    await Deno.writeTextFile(file, JSON.stringify({ name: pipeline, config }));
    const offsetsFile = `${dir.path}/offsets.json`;
    const [spec] = await kafkaSpecs({ name: pipeline, config });

    const synced = waitUntil("20 rows stored", async () => {
      const next = await storedNext(sql, pipeline, topic);
      return Object.values(next).reduce((a, b) => a + b, 0) === 20;
    }, { timeoutMs: 30_000 });
    const first = await runUntil(spec, synced, {
      environment: { offsets: new MemoryOffsetStore() },
    });
    assertEquals(first.stats.written, 20);
    const digest = await tableDigest(sql, "select * from public.items order by id");

    const reset = await sluice(
      "offsets",
      "reset",
      file,
      pipeline,
      "--to-earliest",
      "--offsets",
      offsetsFile,
    );
    assertEquals(reset.code, 0, reset.err);
    assertMatch(reset.out, /changed directly/);
    assertEquals(await committedOffsets(group, topic, 2), { "0": 0, "1": 0 });
    assertEquals(await storedNext(sql, pipeline, topic), { "0": 0, "1": 0 });

    const replayed = waitUntil("the replay", async () => {
      const next = await storedNext(sql, pipeline, topic);
      return Object.values(next).reduce((a, b) => a + b, 0) === 20;
    }, { timeoutMs: 30_000 });
    const replay = await runUntil(spec, replayed, {
      environment: { offsets: new MemoryOffsetStore() },
    });
    assertEquals(replay.stats.written, 20, "every record is written again");
    assertEquals(replay.stats.skipped, 0);
    assertEquals(await tableDigest(sql, "select * from public.items order by id"), digest);

    // --to-timestamp: per partition, the first record stamped at or after the time.
    const at = "2024-03-01T00:00:00Z";
    const expected: Record<string, number> = {};
    for (const message of await readTopic(topic, 20)) {
      const partition = String(message.partition);
      const offset = Number(message.offset);
      if (message.timestamp >= Date.parse(at) && offset < (expected[partition] ?? Infinity)) {
        expected[partition] = offset;
      }
    }
    const byTime = await sluice(
      "offsets",
      "reset",
      file,
      pipeline,
      "--to-timestamp",
      at,
      "--offsets",
      offsetsFile,
    );
    assertEquals(byTime.code, 0, byTime.err);
    assertEquals(await committedOffsets(group, topic, 2), expected);
    assertEquals(await storedNext(sql, pipeline, topic), expected);
    const shown = await sluice("offsets", "show", file, pipeline, "--offsets", offsetsFile);
    assertEquals(shown.code, 0, shown.err);
    for (const [partition, offset] of Object.entries(expected)) {
      assert(
        shown.out.includes(`{"kafka_topic":"${topic}","kafka_partition":${partition}}`) &&
          shown.out.includes(`{"kafka_offset":${offset}}`),
        shown.out,
      );
    }

    // Explicit positions, and what a Kafka source cannot do.
    const explicit = await sluice(
      "offsets",
      "reset",
      file,
      pipeline,
      "--to-offset",
      "0:1,1:2",
      "--offsets",
      offsetsFile,
    );
    assertEquals(explicit.code, 0, explicit.err);
    assertEquals(await committedOffsets(group, topic, 2), { "0": 1, "1": 2 });
    const latest = await sluice(
      "offsets",
      "reset",
      file,
      pipeline,
      "--to-latest",
      "--offsets",
      offsetsFile,
    );
    assertEquals(latest.code, 0, latest.err);
    const ends = await committedOffsets(group, topic, 2);
    assertEquals(ends["0"] + ends["1"], 20, "each partition's end");
    assertEquals(await storedNext(sql, pipeline, topic), ends);
    const two = await sluice(
      "offsets",
      "reset",
      file,
      pipeline,
      "--to-earliest",
      "--to-latest",
      "--offsets",
      offsetsFile,
    );
    assertEquals(two.code, 2);
    assertMatch(two.err, /exactly one of --to-earliest/);
  } finally {
    await sql.end();
    await target.drop();
  }
});

async function tempDir() {
  const path = await Deno.makeTempDir({ prefix: "sluice-offsets-cli-" });
  return { path, [Symbol.asyncDispose]: () => Deno.remove(path, { recursive: true }) };
}

Deno.test("offsets reset refuses while another process streams the pipeline from its replication slot", async () => {
  await using dir = await tempDir();
  await using db = await syncFixture(
    "offsets_running",
    "create table items (id int primary key, n int)",
    "create table items (id int primary key, n int)",
  );
  const slot = uniqueSlot("offsets_running");
  const file = `${dir.path}/cdc.json`;
  await Deno.writeTextFile(
    file,
    JSON.stringify({
      name: "cdc4",
      config: {
        "connector.class": "postgres_cdc",
        "connection.url": db.source.url,
        "topic.prefix": "src",
        "slot.name": slot,
        "slot.drop.on.stop": "false",
        "table.include.list": "public.items",
        "sink.class": "postgres",
        "sink.connection.url": db.target.url,
        "sink.table": "public.items",
        "sink.delete.mode": "hard",
      },
    }),
  );
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", CLI, "run", file, "--offsets", `${dir.path}/o.json`, "--listen", "off"],
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
    await db.sourceSql`insert into items values (1, 1)`;
    await waitUntil(
      "row 1 synced",
      async () => (await db.targetSql`select 1 from items`).length > 0,
    );
    const before = await db
      .targetSql`select "offset" from public.sluice_offsets where pipeline = 'cdc4'`;
    const refused = await sluice("offsets", "reset", file, "cdc4", "--to-earliest");
    assert(refused.code !== 0, refused.out + refused.err);
    assertMatch(refused.err, /replication slot ".*" is active/);
    assertMatch(refused.err, /Stop it first/);
    assert(!/changed directly/.test(refused.out), refused.out);
    const after = await db
      .targetSql`select "offset" from public.sluice_offsets where pipeline = 'cdc4'`;
    assertEquals(after, before);
  } catch (error) {
    if (exited) throw new Error(`sluice run ended early:\n${await log}`, { cause: error });
    throw error;
  } finally {
    if (!exited) child.kill("SIGTERM");
    await child.status;
    await log;
  }
  // Stopped: the same reset goes through.
  const reset = await sluice("offsets", "reset", file, "cdc4", "--to-earliest");
  assertEquals(reset.code, 0, reset.out + reset.err);
  assertMatch(reset.out, /changed directly|no stored offset/);
  await db.sourceSql`select pg_drop_replication_slot(${slot})`;
});

Deno.test("offsets reset refuses while a worker of the group runs the batch job (it holds the job's lock)", async () => {
  await using dir = await tempDir();
  await using db = await syncFixture(
    "offsets_job",
    "create table items (id int primary key, updated_at timestamptz not null default now())",
    "create table items (id int primary key, updated_at timestamptz)",
  );
  const file = `${dir.path}/job.json`;
  await Deno.writeTextFile(
    file,
    JSON.stringify({
      name: "items_job",
      config: {
        "connector.class": "postgres_query",
        "connection.url": db.source.url,
        "table": "public.items",
        "mode": "incremental",
        "timestamp.column.name": "updated_at",
        "sink.class": "postgres",
        "sink.connection.url": db.target.url,
        "sink.table": "public.items",
        "sink.delete.mode": "none",
      },
    }),
  );
  // A run in progress elsewhere: the job's lock held by another worker's session.
  const other = postgres(db.target.url, {
    max: 1,
    onnotice: () => {},
    connection: { application_name: "sluice-worker host-b-4242" },
  });
  try {
    const key = await advisoryLockKey("sluice job items_job");
    await other`select pg_advisory_lock(${key}::bigint)`;
    const refused = await sluice("offsets", "reset", file, "items_job", "--to-earliest");
    assertEquals(refused.code, 2, refused.out + refused.err);
    assertMatch(refused.err, /worker host-b-4242 is running the job now/);
    await other`select pg_advisory_unlock(${key}::bigint)`;
  } finally {
    await other.end();
  }
  const reset = await sluice("offsets", "reset", file, "items_job", "--to-earliest");
  assertEquals(reset.code, 0, reset.out + reset.err);
});
