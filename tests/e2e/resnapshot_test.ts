/**
 * A snapshot interrupted by SIGKILL is taken again on restart (the slot is
 * dropped and made anew). Rows the first attempt already wrote to the target
 * and that were deleted at the source before the second attempt appear in
 * neither the new snapshot nor the stream after it: the sink must remove
 * them when the new snapshot of their table ends, directly and through
 * Kafka.
 */
import postgres from "postgres";
import { assert, assertEquals } from "../_assert.ts";
import { createTestDatabase, testKafkaBrokers } from "../_services.ts";
import { waitUntil } from "../_wait.ts";
import { stderrTail } from "../_process.ts";
import { KafkaAdmin } from "../../drivers/kafka.ts";
import { createTopic } from "../_kafka.ts";

const CLI = new URL("../../cli/main.ts", import.meta.url).pathname;
const ROOT = new URL("../..", import.meta.url).pathname;
const DELETED = 22;

const unique = (prefix: string) =>
  `${prefix}_${Date.now().toString(36)}_${crypto.randomUUID().slice(0, 6)}`;

/** A `sluice run` child process; `done` resolves with its stderr once it ended. */
function startSluice(config: string, dir: string, brokers?: string) {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--unstable-cron",
      CLI,
      "run",
      config,
      "--listen",
      "127.0.0.1:0",
      "--offsets",
      `${dir}/offsets.json`,
      ...(brokers ? ["--bootstrap", brokers] : []),
      "--log-level",
      "info",
      "--log-format",
      "text",
    ],
    cwd: ROOT,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const stderr = stderrTail(child, 50_000);
  const done = Promise.all([child.status, stderr]).then(([, text]) => text);
  const kill = async (signal: Deno.Signal) => {
    try {
      child.kill(signal);
    } catch { /* already gone */ }
    return await done;
  };
  return { kill };
}

interface Case {
  name: string;
  kafka: boolean;
  /** Rows in the source table. */
  rows: number;
  /** Rows written when Sluice is killed: to the target (direct), to the topic (Kafka). */
  killAt: number;
}

async function interruptedSnapshot({ name, kafka, rows: ROWS, killAt }: Case): Promise<void> {
  const brokers = kafka ? testKafkaBrokers() : undefined;
  const sourceDb = await createTestDatabase(`resnap_src_${name}`);
  const targetDb = await createTestDatabase(`resnap_dst_${name}`);
  const source = postgres(sourceDb.url, { max: 2, onnotice: () => {} });
  const target = postgres(targetDb.url, { max: 2, onnotice: () => {} });
  const dir = await Deno.makeTempDir({ prefix: "sluice-resnap-" });
  const slot = unique("resnap");
  const prefix = unique("resnap");
  const logs: string[] = [];
  let running: ReturnType<typeof startSluice> | undefined;
  try {
    await source`create table items (id bigint primary key, payload text)`;
    await source`insert into items select g, 'row ' || g from generate_series(1, ${ROWS}) g`;
    await target`create table items (id bigint primary key, payload text,
                                     deleted_at timestamptz, _source_lsn pg_lsn)`;
    const capture = {
      "connector.class": "postgres_cdc",
      "connection.url": sourceDb.url,
      "topic.prefix": prefix,
      "table.include.list": "public.items",
      "slot.name": slot,
      "publication.name": `${slot}_pub`,
      "poll.interval.ms": "20",
    };
    const sink = { "connection.url": targetDb.url, "table": "public.items" };
    const pipelines = kafka
      ? [
        {
          name: `${name}-capture`,
          // Small batches: a whole snapshot sent to the broker in under a
          // second left no moment to kill the capture in the middle of it.
          config: { ...capture, "sink.class": "kafka", "max.batch.size": "50" },
        },
        {
          name: `${name}-consume`,
          config: { "connector.class": "postgres", "topics": `${prefix}.public.items`, ...sink },
        },
      ]
      : [{
        name,
        config: {
          ...capture,
          "sink.class": "postgres",
          ...Object.fromEntries(Object.entries(sink).map(([k, v]) => [`sink.${k}`, v])),
        },
      }];
    const config = `${dir}/pipelines.json`;
    await Deno.writeTextFile(config, JSON.stringify(pipelines));
    const count = async () => (await target`select count(*)::int as n from items`)[0].n as number;

    // Through Kafka, the capture runs far ahead of the consumer (it may send
    // the whole snapshot before the consumer has joined its group): the kill
    // is timed by the topic, so that it interrupts the capture's snapshot.
    const topic = `${prefix}.public.items`;
    const admin = kafka
      ? new KafkaAdmin({ bootstrapServers: brokers!, clientId: "resnapshot-test" })
      : undefined;
    const sent = async () => {
      const ends = await admin!.listOffsets([topic], "latest").catch(() => new Map());
      return Number([...ends.values()].reduce((sum, end) => sum + end, 0n));
    };
    // The topic exists before the capture starts: an admin client asked
    // about a topic not created yet kept failing until well into the
    // snapshot, which was then over before the first count came back.
    if (kafka) await createTopic(topic, 1, brokers);
    running = startSluice(config, dir, brokers);
    const seen = await waitUntil("the snapshot to be under way", async () => {
      const n = admin ? await sent() : await count();
      return n >= killAt ? n : 0;
    }, { timeoutMs: 120_000, intervalMs: 20 });
    logs.push(await running.kill("SIGKILL"));
    running = undefined;
    const atKill = admin ? await sent() : await count();
    await admin?.close();
    assert(atKill < ROWS, `killed during the snapshot (${seen} then ${atKill} of ${ROWS} rows)`);

    // Rows the first attempt sent, deleted at the source while Sluice is down:
    // those it wrote to the target, or (through Kafka, where the consumer
    // writes them after the restart) the first the snapshot sent, which
    // reads the freshly filled table in id order.
    const doomed = admin
      ? Array.from({ length: DELETED }, (_, i) => i + 1)
      : (await target`select id::int from items order by id limit ${DELETED}`)
        .map((r) => r.id as number);
    await source`delete from items where id = any(${doomed}::bigint[])`;

    running = startSluice(config, dir, brokers);
    await source`insert into items values (${ROWS + 1}, 'after the restart')`;
    const converged = async () => {
      const [{ n }] = await target`select count(*)::int as n from items
                                   where deleted_at is null`;
      const [{ marker }] = await target`select count(*)::int as marker from items
                                        where id = ${ROWS + 1}`;
      const [{ live }] = await target`select count(*)::int as live from items
        where deleted_at is null and id = any(${doomed}::bigint[])`;
      if (marker === 1 && n === ROWS - DELETED + 1 && live === 0) return true;
      throw new Error(`${n} live rows, marker ${marker}, ${live} deleted rows still live`);
    };
    await waitUntil("the target to equal the source", converged, {
      timeoutMs: 240_000,
      intervalMs: 250,
    });
    const live = await target`select id::int from items
      where deleted_at is null and id = any(${doomed}::bigint[])`;
    assertEquals(live.map((r) => r.id), [], "rows deleted at the source are not live");
    logs.push(await running.kill("SIGTERM"));
    running = undefined;
    const log = logs.join("\n");
    assert(
      log.includes("to take a consistent snapshot"),
      "the second start took the snapshot again",
    );
    assert(log.includes(`ended: ${DELETED} rows it did not hold`), "the sink says what it swept");
  } catch (error) {
    if (running) logs.push(await running.kill("SIGKILL"));
    console.error(logs.join("\n----\n").slice(-8_000));
    throw error;
  } finally {
    await source.end();
    await target.end();
    await sourceDb.drop();
    await targetDb.drop();
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("a snapshot redone after SIGKILL removes rows deleted at the source meanwhile (direct)", () =>
  interruptedSnapshot({ name: "direct", kafka: false, rows: 200_000, killAt: 2_000 }));

Deno.test("a snapshot redone after SIGKILL removes rows deleted at the source meanwhile (through Kafka)", () =>
  interruptedSnapshot({ name: "kafka", kafka: true, rows: 200_000, killAt: 500 }));
