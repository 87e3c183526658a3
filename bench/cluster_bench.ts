/**
 * Scale-out benchmark (issue 11): several `sluice run` processes on one plan.
 *
 * (a) Consumer throughput with 1, 2 and 3 processes sharing a 6-partition
 *     topic through their consumer group (kafka source → postgres sink): each
 *     round's members form their group on an empty topic of their own and are
 *     paused (REST API); M keyed messages are produced; all members resume at
 *     once, and the rate is M over the span between the first and the last
 *     row written (steady state, start-up and joins left out). The reference is the
 *     1-process figure of the same run: the ratios say how the group scales
 *     (on a 2-core machine that also hosts PostgreSQL and Kafka, it cannot
 *     scale far).
 * (b) Slot takeover time: three processes run one `postgres_cdc` pipeline
 *     (one owns the slot, two stand by, `slot.standby.retry.ms` as given)
 *     under a light insert load; the owner is SIGKILLed N times (a new member
 *     replaces it each time) and the time from the kill to "Streaming from
 *     slot" in another member's log is taken. At the end the target must equal
 *     the source.
 *
 * ```
 * deno run -A bench/cluster_bench.ts [--messages 60000] [--kills 10] [--retry-ms 2000]
 * ```
 * Uses SLUICE_TEST_PG_URL and SLUICE_TEST_KAFKA_BROKERS when set, else starts a
 * private PostgreSQL and Kafka broker. The machine's load average is printed
 * with the figures.
 *
 * @module
 */
import { parseArgs } from "node:util";
import postgres from "postgres";
import { startPostgres, stopPostgres } from "../dev/postgres.ts";
import { startKafka } from "../dev/kafka.ts";
import { KafkaAdmin, KafkaProducer } from "../drivers/kafka.ts";
import { killMember, logged, type Member, startMember, stopMember } from "../tests/e2e/_members.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    messages: { type: "string", default: "60000" },
    kills: { type: "string", default: "10" },
    "retry-ms": { type: "string", default: "2000" },
    processes: { type: "string", default: "1,2,3" },
  },
});
const messages = Number(values.messages);
const kills = Number(values.kills);
const retryMs = Number(values["retry-ms"]);
const counts = values.processes!.split(",").map(Number);

const externalPg = Deno.env.get("SLUICE_TEST_PG_URL");
const externalKafka = Deno.env.get("SLUICE_TEST_KAFKA_BROKERS");
const [pgServer, kafkaServer] = await Promise.all([
  externalPg ? undefined : startPostgres(),
  externalKafka ? undefined : startKafka(),
]);
const adminUrl = externalPg ?? pgServer!.url;
const brokers = externalKafka ?? kafkaServer!.brokers;
const urlFor = (db: string) => {
  const url = new URL(adminUrl);
  url.pathname = `/${db}`;
  return url.href;
};
const run = Date.now().toString(36);
const quiet = { onnotice: () => {} };
const admin = postgres(adminUrl, { max: 1, ...quiet });
const scratch = await Deno.makeTempDir({ prefix: "sluice_cluster_bench_" });
const members: Member[] = [];
const loadAverage = async () =>
  (await Deno.readTextFile("/proc/loadavg")).split(" ").slice(0, 3).join(" ");
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function waitFor(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 300_000) {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`Timed out waiting for ${what}`);
    await sleep(20);
  }
}

async function writeConfig(name: string, pipelines: unknown[]): Promise<string> {
  const path = `${scratch}/${name}.json`;
  await Deno.writeTextFile(path, JSON.stringify(pipelines));
  return path;
}

/** Produces `messages` keyed messages to `topic` as fast as the producer goes. */
async function produceBacklog(topic: string): Promise<number> {
  const producer = new KafkaProducer({ bootstrapServers: brokers, clientId: "cluster-bench" });
  const started = performance.now();
  const chunk = 5000;
  for (let from = 0; from < messages; from += chunk) {
    const batch = [];
    for (let id = from; id < Math.min(messages, from + chunk); id++) {
      batch.push({
        topic,
        key: new TextEncoder().encode(JSON.stringify({ id })),
        value: new TextEncoder().encode(
          JSON.stringify({ id, k: id % 1000, payload: `payload of message ${id}` }),
        ),
      });
    }
    await producer.send(batch);
  }
  await producer.close();
  return (performance.now() - started) / 1000;
}

/** PUT /connectors/{name}/{action} on every member's endpoint. */
async function lifecycle(ports: number[], name: string, action: "pause" | "resume") {
  await Promise.all(ports.map(async (port) => {
    const response = await fetch(`http://127.0.0.1:${port}/connectors/${name}/${action}`, {
      method: "PUT",
    });
    await response.body?.cancel();
    if (response.status !== 202) throw new Error(`${action} on :${port}: ${response.status}`);
  }));
}

/**
 * (a) Rows per second into the target with `n` members sharing a topic of
 * its own: the members start and form their group on the empty topic and are
 * paused (REST API); the backlog is produced; all are resumed at once, and
 * the rate is the rows over the span between the first and the last row's
 * write time (clock_timestamp() at insert).
 */
async function consumerRound(db: string, n: number): Promise<number> {
  const topic = `cluster_bench_${run}_${n}`;
  const kAdmin = new KafkaAdmin({ bootstrapServers: brokers, clientId: "cluster-bench" });
  await kAdmin.createTopic(topic, { partitions: 6, replicationFactor: 1 });
  await kAdmin.close();
  const table = `t${n}`;
  const sql = postgres(urlFor(db), { max: 1, ...quiet });
  await sql.unsafe(`create table ${table} (
    id bigint primary key, k int not null, payload text not null, deleted_at timestamptz,
    written_at timestamptz not null default clock_timestamp())`);
  const name = `bench_consume_${run}_${n}`;
  const config = await writeConfig(`consume_${n}`, [{
    name,
    config: {
      "connector.class": "postgres",
      topics: topic,
      "connection.url": urlFor(db),
      table: `public.${table}`,
      "max.poll.records": "2000",
      "session.timeout.ms": "10000",
      "heartbeat.interval.ms": "1000",
    },
  }]);
  const round: Member[] = [];
  const ports: number[] = [];
  for (let i = 0; i < n; i++) {
    const port = 18_300 + Math.floor(Math.random() * 1000) * 3 + i;
    ports.push(port);
    const member = startMember(`m${n}_${i}`, config, scratch, [
      "--bootstrap",
      brokers,
      "--listen",
      `127.0.0.1:${port}`,
    ]);
    round.push(member);
    members.push(member);
  }
  // A settled group: every member has partitions and none changed for 3 s.
  await waitFor("every member assigned", () => {
    const last = round.map((member) => logged(member, /assignment/).at(-1)?.at);
    return last.every((at) => at !== undefined && Date.now() - at > 3000);
  });
  await lifecycle(ports, name, "pause");
  const produced = await produceBacklog(topic);
  await lifecycle(ports, name, "resume");
  await waitFor("every row written", async () => {
    const [{ rows }] = await sql.unsafe(`select count(*)::int as rows from ${table}`);
    return rows >= messages;
  });
  const [{ span }] = await sql.unsafe(
    `select extract(epoch from max(written_at) - min(written_at))::float8 as span from ${table}`,
  );
  console.log(
    `  ${n} process(es): ${messages} rows written over ${span.toFixed(2)} s ` +
      `(${Math.round(messages / span)} rows/s; backlog produced in ${produced.toFixed(2)} s)`,
  );
  for (const member of round) await stopMember(member);
  await sql.end();
  return messages / span;
}

/** (b) Kill the slot owner `kills` times; the takeover times in ms. */
async function takeovers(source: string, target: string): Promise<number[]> {
  const s = postgres(urlFor(source), { max: 2, ...quiet });
  const t = postgres(urlFor(target), { max: 1, ...quiet });
  await s`create table items (id serial primary key, payload text not null)`;
  await t`create table items (id int primary key, payload text not null,
           deleted_at timestamptz, _source_lsn pg_lsn)`;
  const slot = `cluster_bench_${run}`;
  const config = await writeConfig("stream", [{
    name: "bench_stream",
    config: {
      "connector.class": "postgres_cdc",
      "connection.url": urlFor(source),
      "topic.prefix": "bench",
      "table.include.list": "public.items",
      "slot.name": slot,
      "publication.name": `pub_${slot}`,
      "slot.standby.retry.ms": String(retryMs),
      "poll.interval.ms": "20",
      "errors.retry.timeout": "300000",
      "errors.retry.delay.max.ms": "1000",
      "sink.class": "postgres",
      "sink.connection.url": urlFor(target),
      "sink.table": "public.items",
    },
  }]);
  const alive: Member[] = [];
  let next = 0;
  const add = () => {
    const member = startMember(`s${next++}`, config, scratch);
    alive.push(member);
    members.push(member);
  };
  for (let i = 0; i < 3; i++) add();
  const streaming = /Streaming from slot/;
  await waitFor("an owner", () => alive.some((member) => logged(member, streaming).length > 0));
  let stop = false;
  const load = (async () => {
    while (!stop) {
      await s`insert into items (payload) select 'row ' || g from generate_series(1, 50) g`;
      await sleep(10);
    }
  })();
  const times: number[] = [];
  for (let i = 0; i < kills; i++) {
    // The owner: the member that logged "Streaming from slot" last.
    const owner = alive.map((member) => ({ member, at: logged(member, streaming).at(-1)?.at ?? 0 }))
      .sort((a, b) => b.at - a.at)[0].member;
    await waitFor(
      "standbys ready",
      () =>
        alive.filter((member) => member !== owner && logged(member, /is on standby/).length > 0)
          .length >= 2,
      120_000,
    );
    const killedAt = Date.now();
    await killMember(owner);
    alive.splice(alive.indexOf(owner), 1);
    await waitFor(
      "a takeover",
      () => alive.some((member) => logged(member, streaming, killedAt).length > 0),
      120_000,
    );
    times.push(Date.now() - killedAt);
    add();
    await sleep(1500);
  }
  stop = true;
  await load;
  const digest = async (sql: postgres.Sql, where = "") => {
    const [row] = await sql.unsafe(
      `select md5(string_agg((id, payload)::text, '|' order by id)) as d from items ${where}`,
    );
    return row.d as string;
  };
  const want = await digest(s);
  await waitFor(
    "target equals source",
    async () => (await digest(t, "where deleted_at is null")) === want,
    120_000,
  );
  console.log("  target equals source by checksum after the kills");
  for (const member of alive) await stopMember(member);
  await s`select pg_drop_replication_slot(${slot})`.catch(() => {});
  await s.end();
  await t.end();
  return times;
}

try {
  console.log(`load average before: ${await loadAverage()} (the machine is shared)`);
  const consumeDb = `cluster_bench_consume_${run}`;
  await admin.unsafe(`create database ${consumeDb}`);
  console.log(`(a) consumer throughput, 6 partitions, ${messages} messages`);
  const rates = new Map<number, number>();
  for (const n of counts) rates.set(n, await consumerRound(consumeDb, n));
  const base = rates.get(counts[0])!;
  console.log(
    `  curve: ${
      [...rates].map(([n, rate]) => `${n}p ${Math.round(rate)}/s (${(rate / base).toFixed(2)}×)`)
        .join(", ")
    }; load average ${await loadAverage()}`,
  );
  await admin.unsafe(`drop database ${consumeDb} with (force)`);

  if (kills > 0) {
    const source = `cluster_bench_src_${run}`, target = `cluster_bench_dst_${run}`;
    await admin.unsafe(`create database ${source}`);
    await admin.unsafe(`create database ${target}`);
    console.log(
      `(b) slot takeover, ${kills} SIGKILLs of the owner, slot.standby.retry.ms ${retryMs}`,
    );
    const times = await takeovers(source, target);
    const sorted = [...times].sort((a, b) => a - b);
    const median = sorted[Math.floor(sorted.length / 2)];
    console.log(
      `  takeover ms: ${times.join(", ")}; median ${median}, max ${sorted.at(-1)}; ` +
        `load average ${await loadAverage()}`,
    );
    await admin.unsafe(`drop database ${source} with (force)`);
    await admin.unsafe(`drop database ${target} with (force)`);
  }
} finally {
  for (const member of members) await killMember(member);
  await admin.end();
  await Deno.remove(scratch, { recursive: true });
  if (pgServer) await stopPostgres(pgServer);
  if (kafkaServer) await kafkaServer.stop();
}
