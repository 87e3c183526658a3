/**
 * CDC benchmark (issue 3: PostgreSQL logical replication → Kafka → PostgreSQL).
 *
 * (a) Capture throughput PostgreSQL → Kafka: a `postgres_cdc` pipeline (default
 *     kafka sink, `snapshot.mode` never) creates its slot and publication and
 *     is stopped; a second slot (pgoutput) is created at the same point; N
 *     single-row INSERTs are committed as N separate transactions (a procedure
 *     with COMMIT per row), so the WAL holds the backlog. Then
 *     `pg_recvlogical` drains the second slot to /dev/null up to the end LSN
 *     (the ceiling), and `sluice run` drains the first until the topic's end
 *     offsets hold all N events.
 * (b) End-to-end latency warehouse commit → citizen visibility
 *     (postgres_cdc → Kafka → kafka source → postgres sink), p50 and p99, at a
 *     steady 1,000 and 5,000 changes/s: rows carry `clock_timestamp()` at the
 *     source; a trigger on the target stamps `synced_at` with
 *     `clock_timestamp()` when the sink writes the row (both databases on the
 *     same server, same clock).
 * (c) Peak RSS (VmHWM) of the Sluice process while the backlog of (a) drains.
 * (e) The reference: the real Debezium 3.6.1 (Kafka Connect 4.2 standalone,
 *     jars from Maven like the broker's; producer tuned with linger.ms 5 and
 *     batch.size 256 KB; JVM defaults) drains its own pgoutput slot, created
 *     at the same point, until its topic's end offsets hold all N events.
 *     For pg_recvlogical, Sluice and Debezium the table shows events/s, CPU
 *     seconds per 100k events (user + system of the process, all threads)
 *     and peak RSS, and Sluice's ratios against the targets of issue 12.
 *     `--no-debezium` skips it (it needs Java and Maven).
 *     pg_recvlogical's own CPU is mostly its output: two write() calls per
 *     pgoutput message, six per single-row transaction, even to /dev/null.
 *     Its rate is bound by its walsender, which decodes and, while the
 *     client keeps up, sends each message with its own send(): the run
 *     prints the walsender's CPU beside it. On a VM where syscalls and
 *     loopback wake-ups are dear both grow (seen: 0.9 CPU s per 100k for
 *     pg_recvlogical, 1.9 for its walsender, two thirds of it in the kernel).
 * (d) With `--schemas`: the same backlog drained again, from a third slot
 *     created at the same point, with JsonConverter schemas on keys and
 *     values (`{schema, payload}`, Debezium's envelope schema), and once more
 *     from a fourth slot as Avro through a schema registry (dev/registry.ts,
 *     started for the run), against (a)'s schemaless JSON in the same run.
 *
 * Targets: p99 < 1 s at 5,000 changes/s; peak RSS < 150 MB; capture
 * ≥ 2.0× Debezium's events/s and ≥ 0.7× pg_recvlogical's, CPU per event
 * ≤ 0.35× Debezium's.
 *
 * ```
 * deno run -A bench/cdc_bench.ts [--events 1000000] [--seconds 15] [--rates 1000,5000] [--schemas]
 *   [--no-latency] [--no-debezium] [--sluice-v8-flags=FLAGS] [--sluice-deno-flags="FLAGS"]
 * ```
 * Uses SLUICE_TEST_PG_URL and SLUICE_TEST_KAFKA_BROKERS when set, else starts a
 * private PostgreSQL and Kafka broker.
 *
 * @module
 */
import { SLUICE_DENO_FLAGS, SLUICE_V8_FLAGS } from "../cli/worker.ts";
import { parseArgs } from "node:util";
import postgres from "postgres";
import { Admin } from "@platformatic/kafka";
import { stopChild } from "../dev/_common.ts";
import { startPostgres } from "../dev/postgres.ts";
import { startKafka } from "../dev/kafka.ts";
import { startRegistry } from "../dev/registry.ts";
import { KafkaAdmin } from "../drivers/kafka.ts";
import { cpuSeconds, peakRssKb, startDebezium, timeCommand } from "./_processes.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    events: { type: "string", default: "1000000" },
    seconds: { type: "string", default: "15" },
    rates: { type: "string", default: "1000,5000" },
    writers: { type: "string", default: "2" },
    // Diagnostics: V8 flags for the Sluice child processes, e.g. --max-old-space-size=96.
    "sluice-v8-flags": { type: "string" },
    // Diagnostics: JSON merged into the capture pipeline's config, e.g. '{"max.batch.size":512}'.
    "sluice-config": { type: "string" },
    // Diagnostics: more Deno flags for the Sluice child processes, space-separated,
    // e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof".
    "sluice-deno-flags": { type: "string" },
    // Skip part (b).
    "no-latency": { type: "boolean", default: false },
    // Part (d): drain the backlog again with JsonConverter schemas.
    schemas: { type: "boolean", default: false },
    // Skip part (e), the real Debezium.
    "no-debezium": { type: "boolean", default: false },
  },
});
const events = Number(values.events);
const seconds = Number(values.seconds);
const rates = values.rates!.split(",").map(Number);
const writers = Math.max(1, Number(values.writers));
const root = new URL("..", import.meta.url).pathname;
// The settings `deno task run` starts with: its V8 flags unless given ("none":
// V8's own), and its other Deno flags (--no-code-cache: the code cache keeps
// ~4 MB more resident) before any given.
const chosenFlags = values["sluice-v8-flags"] ?? SLUICE_V8_FLAGS;
const v8Flags = chosenFlags === "none" ? [] : [`--v8-flags=${chosenFlags}`];
const denoFlags = [
  ...SLUICE_DENO_FLAGS.filter((flag) => !flag.startsWith("--v8-flags=")),
  ...values["sluice-deno-flags"]?.split(/\s+/).filter((flag) => flag !== "") ?? [],
];

const externalPg = Deno.env.get("SLUICE_TEST_PG_URL");
const externalKafka = Deno.env.get("SLUICE_TEST_KAFKA_BROKERS");
const [pgServer, kafkaServer] = await Promise.all([
  externalPg ? undefined : startPostgres(),
  externalKafka ? undefined : startKafka(),
]);
const registryServer = values.schemas ? await startRegistry() : undefined;
const adminUrl = externalPg ?? pgServer!.url;
const brokers = externalKafka ?? kafkaServer!.brokers;
const urlFor = (db: string) => {
  const url = new URL(adminUrl);
  url.pathname = `/${db}`;
  return url.href;
};

const run = `${Date.now().toString(36)}`; // unique topics and groups on a shared broker
const prefix = `cdcbench_${run}`;
const WH = "cdc_bench_warehouse";
const CIT = "cdc_bench_citizen";
const SLOT_A = "cdc_bench_a";
const SLOT_CEILING = "cdc_bench_ceiling";
const SLOT_B = "cdc_bench_b";
const SLOT_SCHEMAS = "cdc_bench_schemas";
const SLOT_AVRO = "cdc_bench_avro";
const SLOT_DEBEZIUM = "cdc_bench_debezium";
const PUB_A = "cdc_bench_pub_a";
const PUB_B = "cdc_bench_pub_b";
const warehouse = urlFor(WH);
const citizen = urlFor(CIT);
const topicA = `${prefix}.public.bench_a`;
const topicB = `${prefix}.public.bench_lat`;

const quiet = { onnotice: () => {} };
const admin = postgres(adminUrl, { max: 1, ...quiet });
const scratch = await Deno.makeTempDir({ prefix: "sluice_cdc_bench_" });
const kAdmin = new KafkaAdmin({ bootstrapServers: brokers, clientId: "cdc-bench" });
const rawAdmin = new Admin({
  clientId: "cdc-bench-offsets",
  bootstrapBrokers: brokers.split(","),
  timeout: 30_000,
  requestTimeout: 30_000,
  connectTimeout: 10_000,
});
// Topic metadata without retries: while a topic does not exist yet, the
// client's retries hold each poll for about 3 s, and the first event on the
// topic was seen up to a second late (the rates "from first event" counted
// from that late point).
const probeAdmin = new Admin({
  clientId: "cdc-bench-probe",
  bootstrapBrokers: brokers.split(","),
  retries: 0,
  connectTimeout: 10_000,
});
const children = new Set<Deno.ChildProcess>();

try {
  await dropSlots();
  for (const db of [WH, CIT]) {
    await admin.unsafe(`drop database if exists ${db} with (force)`);
    await admin.unsafe(`create database ${db}`);
  }
  const w = postgres(warehouse, { max: writers + 1, ...quiet });
  const c = postgres(citizen, { max: 2, ...quiet });
  await w.unsafe(`
    create table public.bench_a (id bigserial primary key, payload text not null);
    create table public.bench_lat (
      id bigserial primary key, phase int not null, payload text not null,
      committed_at timestamptz not null default clock_timestamp());
    create procedure public.gen_a(n int) language plpgsql as $$
    begin
      for i in 1..n loop
        insert into public.bench_a (payload) values ('event payload ' || i);
        commit;
      end loop;
    end $$;
    create procedure public.gen_lat(p int, n int) language plpgsql as $$
    begin
      for i in 1..n loop
        insert into public.bench_lat (phase, payload) values (p, 'event payload ' || i);
        commit;
      end loop;
    end $$;`);
  await c.unsafe(`
    create table public.bench_lat (
      id bigint primary key, phase int not null, payload text not null,
      committed_at timestamptz not null, synced_at timestamptz, deleted_at timestamptz,
      _source_lsn pg_lsn);
    create function public.stamp_synced() returns trigger language plpgsql as $$
    begin new.synced_at := clock_timestamp(); return new; end $$;
    create trigger stamp_synced before insert or update on public.bench_lat
      for each row execute function public.stamp_synced();`);

  // ---------------------------------------------------------------- (a) + (c)
  const cdcA = {
    name: `cdc_bench_capture_${run}`,
    config: {
      "connector.class": "postgres_cdc",
      "connection.url": warehouse,
      "topic.prefix": prefix,
      "table.include.list": "public.bench_a",
      "slot.name": SLOT_A,
      "publication.name": PUB_A,
      "publication.autocreate.mode": "filtered",
      "snapshot.mode": "never",
      ...JSON.parse(values["sluice-config"] ?? "{}"),
    },
  };
  const dirA = `${scratch}/capture`;
  await Deno.mkdir(dirA);
  await Deno.writeTextFile(`${dirA}/capture.json`, JSON.stringify([cdcA], null, 2));
  const sluiceArgs = (dir: string, offsets: string) => [
    "run",
    "-A",
    "--unstable-cron",
    ...v8Flags,
    ...denoFlags,
    `${root}cli/main.ts`,
    "run",
    dir,
    "--listen",
    "127.0.0.1:0",
    "--bootstrap",
    brokers,
    "--offsets",
    offsets,
    "--log-level",
    "warning",
    "--log-format",
    "text",
  ];

  let setupPeakKb = 0;
  console.log("Creating the capture slot and publication through Sluice…");
  {
    const setup = spawn(Deno.execPath(), sluiceArgs(dirA, `${scratch}/offsets_a.json`));
    await waitFor(async () => await slotExists(SLOT_A), 60_000, "slot " + SLOT_A, setup.child);
    await delay(1000);
    setupPeakKb = setup.peakKb();
    await stopChild(setup.child);
  }
  const [{ lsn: startLsn }] = await admin`select pg_current_wal_lsn()::text as lsn`;
  await w`select pg_create_logical_replication_slot(${SLOT_CEILING}, 'pgoutput')`;
  const withDebezium = !values["no-debezium"];
  if (withDebezium) {
    await w`select pg_create_logical_replication_slot(${SLOT_DEBEZIUM}, 'pgoutput')`;
  }
  if (values.schemas) {
    await w`select pg_create_logical_replication_slot(${SLOT_SCHEMAS}, 'pgoutput')`;
    await w`select pg_create_logical_replication_slot(${SLOT_AVRO}, 'pgoutput')`;
  }

  console.log(
    `Committing ${
      events.toLocaleString("en")
    } single-row INSERTs (one transaction each, ${writers} connections)…`,
  );
  const genStart = performance.now();
  await Promise.all(
    split(events, writers).map((n) => w`call public.gen_a(${n})`),
  );
  const genMs = performance.now() - genStart;
  const [{ lsn: endLsn }] = await w`select pg_current_wal_lsn()::text as lsn`;
  const [{ wal }] = await w`
    select pg_size_pretty(pg_wal_lsn_diff(${endLsn}::pg_lsn, ${startLsn}::pg_lsn)) as wal`;
  console.log(
    `  ${fmt(genMs)} (${rate(events, genMs)} tx/s), ${wal} of WAL, end LSN ${endLsn}`,
  );

  console.log("Ceiling: pg_recvlogical draining the second slot to /dev/null…");
  const walsender = watchWalsender("pg_recvlogical");
  const recv = await timeCommand(await recvlogicalPath(), [
    "-d",
    warehouse,
    "--slot",
    SLOT_CEILING,
    "--start",
    "--no-loop",
    "-o",
    "proto_version=1",
    "-o",
    `publication_names=${PUB_A}`,
    "-f",
    "/dev/null",
    "--endpos",
    endLsn,
  ]);
  const senderCpu = await walsender.stop();
  console.log(
    `  ${fmt(recv.ms)}${recv.cpu === undefined ? "" : `, ${recv.cpu.toFixed(2)} CPU s`}` +
      (senderCpu > 0 ? `; its walsender ${senderCpu.toFixed(2)} CPU s` : ""),
  );

  console.log("Sluice: postgres_cdc → kafka draining the backlog…");
  const sluiceA = spawn(Deno.execPath(), sluiceArgs(dirA, `${scratch}/offsets_a.json`));
  let firstEventMs = 0;
  let firstEventCpu = 0;
  let lastCount = -1;
  let lastProgress = performance.now();
  await waitFor(
    async () => {
      const n = await topicCount(topicA);
      const now = performance.now();
      if (n > 0 && !firstEventMs) {
        firstEventMs = now - sluiceA.started;
        firstEventCpu = await cpuSeconds(sluiceA.child.pid);
      }
      if (n !== lastCount) {
        lastCount = n;
        lastProgress = now;
      } else if (now - lastProgress > 60_000) {
        throw new Error(`no progress for 60 s at ${n} of ${events} events on ${topicA}`);
      }
      return n >= events;
    },
    3_600_000,
    `${events} events on ${topicA}`,
    sluiceA.child,
    100,
  );
  const sluiceMs = performance.now() - sluiceA.started;
  const sluiceCpu = await cpuSeconds(sluiceA.child.pid);
  const peakA = Math.max(sluiceA.peakKb(), await peakRssKb(sluiceA.child.pid));
  await stopChild(sluiceA.child);
  const onTopic = await topicCount(topicA);
  const [{ confirmed, caughtUp }] = await admin`
    select confirmed_flush_lsn::text as confirmed,
           confirmed_flush_lsn >= ${endLsn}::pg_lsn as "caughtUp"
    from pg_replication_slots where slot_name = ${SLOT_A}`;
  console.log(
    `  ${fmt(sluiceMs)} from process start (first event after ${fmt(firstEventMs)}), ` +
      `${onTopic.toLocaleString("en")} messages on the topic, peak RSS ${mb(peakA)}, ` +
      `${sluiceCpu.toFixed(2)} CPU s`,
  );

  // ---------------------------------------------------------------------- (e)
  let debezium: Drain | undefined;
  if (withDebezium) {
    debezium = await drainWithDebezium(endLsn);
  }

  // ---------------------------------------------------------------------- (d)
  // Drains the backlog again from `slot` with other converter keys.
  const drainAgain = async (kind: string, slot: string, converters: Record<string, string>) => {
    const dir = `${scratch}/${kind}`;
    await Deno.mkdir(dir);
    const topic = `${prefix}_${kind}.public.bench_a`;
    await Deno.writeTextFile(
      `${dir}/${kind}.json`,
      JSON.stringify([{
        name: `${cdcA.name}_${kind}`,
        config: {
          ...cdcA.config,
          "topic.prefix": `${prefix}_${kind}`,
          "slot.name": slot,
          ...converters,
        },
      }]),
    );
    const child = spawn(Deno.execPath(), sluiceArgs(dir, `${scratch}/offsets_${kind}.json`));
    let firstMs = 0;
    await waitFor(
      async () => {
        const n = await topicCount(topic);
        if (n > 0 && !firstMs) firstMs = performance.now() - child.started;
        return n >= events;
      },
      3_600_000,
      `${events} events on ${topic}`,
      child.child,
      100,
    );
    const ms = performance.now() - child.started;
    await stopChild(child.child);
    console.log(`  ${fmt(ms)} from process start`);
    return { ms, firstMs };
  };
  let schemasMs = 0;
  let schemasFirstMs = 0;
  let avroMs = 0;
  let avroFirstMs = 0;
  if (values.schemas) {
    console.log("Sluice: postgres_cdc → kafka with JsonConverter schemas, same backlog…");
    ({ ms: schemasMs, firstMs: schemasFirstMs } = await drainAgain("s", SLOT_SCHEMAS, {
      "key.converter.schemas.enable": "true",
      "value.converter.schemas.enable": "true",
    }));
    console.log("Sluice: postgres_cdc → kafka as Avro through the schema registry, same backlog…");
    const avro = "io.confluent.connect.avro.AvroConverter";
    ({ ms: avroMs, firstMs: avroFirstMs } = await drainAgain("avro", SLOT_AVRO, {
      "key.converter": avro,
      "key.converter.schema.registry.url": registryServer!.url,
      "value.converter": avro,
      "value.converter.schema.registry.url": registryServer!.url,
    }));
  }

  // ---------------------------------------------------------------------- (b)
  const latency: {
    rate: number;
    achieved: number;
    rows: number;
    p50: number;
    p99: number;
    max: number;
  }[] = [];
  let peakB = 0;
  if (!values["no-latency"]) {
    const dirB = `${scratch}/latency`;
    await Deno.mkdir(dirB);
    await kAdmin.createTopic(topicB, { partitions: 1, replicationFactor: -1 });
    await Deno.writeTextFile(
      `${dirB}/latency.json`,
      JSON.stringify(
        [
          {
            name: `cdc_bench_connector_${run}`,
            config: {
              "connector.class": "postgres_cdc",
              "connection.url": warehouse,
              "topic.prefix": prefix,
              "table.include.list": "public.bench_lat",
              "slot.name": SLOT_B,
              "publication.name": PUB_B,
              "publication.autocreate.mode": "filtered",
              "snapshot.mode": "never",
            },
          },
          {
            name: `cdc_bench_consumer_${run}`,
            config: {
              "connector.class": "postgres",
              "topics": topicB,
              "connection.url": citizen,
              "table": "public.bench_lat",
            },
          },
        ],
        null,
        2,
      ),
    );
    console.log("Latency: starting the CDC and consumer pipelines in one process…");
    const sluiceB = spawn(Deno.execPath(), sluiceArgs(dirB, `${scratch}/offsets_b.json`));
    await waitFor(
      async () => await slotExists(SLOT_B, true),
      60_000,
      "slot " + SLOT_B,
      sluiceB.child,
    );
    // Warm-up: phase 0 rows until they show up in the citizen database.
    let warm = 0;
    await waitFor(
      async () => {
        await w`call public.gen_lat(0, 10)`;
        warm += 10;
        const [{ n }] = await c`select count(*)::int as n from public.bench_lat where phase = 0`;
        return n > 0;
      },
      120_000,
      "warm-up rows in the citizen database",
      sluiceB.child,
      500,
    );
    await waitFor(
      async () => {
        const [{ n }] = await c`select count(*)::int as n from public.bench_lat where phase = 0`;
        return n >= warm;
      },
      60_000,
      "warm-up drained",
      sluiceB.child,
      200,
    );

    for (const [index, target] of rates.entries()) {
      const phase = index + 1;
      console.log(`  ${target.toLocaleString("en")} changes/s for ${seconds} s…`);
      const started = performance.now();
      let sent = 0;
      const inflight = new Set<Promise<unknown>>();
      while (performance.now() - started < seconds * 1000) {
        const due = Math.floor(((performance.now() - started) / 1000) * target) - sent;
        if (due > 0 && inflight.size < writers) {
          const p: Promise<unknown> = w`call public.gen_lat(${phase}, ${due})`.then(() =>
            inflight.delete(p)
          );
          inflight.add(p);
          sent += due;
        }
        await delay(10);
      }
      await Promise.all(inflight);
      const achieved = sent / ((performance.now() - started) / 1000);
      await waitFor(
        async () => {
          const [{ n }] =
            await c`select count(*)::int as n from public.bench_lat where phase = ${phase}`;
          return n >= sent;
        },
        300_000,
        `phase ${phase} drained`,
        sluiceB.child,
        200,
      );
      const [r] = await c`
      select count(*)::int as rows,
             percentile_cont(0.5) within group (order by extract(epoch from synced_at - committed_at)) as p50,
             percentile_cont(0.99) within group (order by extract(epoch from synced_at - committed_at)) as p99,
             max(extract(epoch from synced_at - committed_at)) as max
      from public.bench_lat where phase = ${phase}`;
      latency.push({
        rate: target,
        achieved,
        rows: r.rows,
        p50: Number(r.p50) * 1000,
        p99: Number(r.p99) * 1000,
        max: Number(r.max) * 1000,
      });
      console.log(
        `    ${r.rows} rows, p50 ${ms(Number(r.p50) * 1000)}, p99 ${ms(Number(r.p99) * 1000)}`,
      );
    }
    peakB = sluiceB.peakKb();
    await stopChild(sluiceB.child);
  } // part (b)
  await w.end();
  await c.end();

  // ------------------------------------------------------------------ report
  const sluiceRate = events / (sluiceMs / 1000);
  const drainRate = events / ((sluiceMs - firstEventMs) / 1000);
  const recvRate = events / (recv.ms / 1000);
  console.log(`\nCDC benchmark, ${events.toLocaleString("en")} single-row transactions\n`);
  console.log("| measure | figure | target | result |");
  console.log("| --- | ---: | ---: | --- |");
  console.log(
    `| generate backlog (${writers} connections) | ${fmt(genMs)}, ${
      rate(events, genMs)
    } tx/s, ${wal} WAL | - | - |`,
  );
  console.log(
    `| (a) pg_recvlogical pgoutput → /dev/null (ceiling) | ${fmt(recv.ms)}, ${
      Math.round(recvRate).toLocaleString("en")
    } events/s | - | - |`,
  );
  console.log(
    `| (a) Sluice postgres_cdc → Kafka, from process start | ${fmt(sluiceMs)}, ${
      Math.round(sluiceRate).toLocaleString("en")
    } events/s | - | - |`,
  );
  console.log(
    `| (a) Sluice, from first event on the topic | ${fmt(sluiceMs - firstEventMs)}, ${
      Math.round(drainRate).toLocaleString("en")
    } events/s | - | - |`,
  );
  console.log(
    `| (a) Sluice / pg_recvlogical events/s | ${(sluiceRate / recvRate).toFixed(2)} (${
      (drainRate / recvRate).toFixed(2)
    } from first event) | - | - |`,
  );
  console.log(
    `| (a) Sluice slot confirmed_flush_lsn after stop | ${confirmed} (end ${endLsn}) | ≥ end LSN | ${
      caughtUp ? "PASS" : "FAIL"
    } |`,
  );
  if (debezium) {
    reportReferences({
      recvMs: recv.ms,
      recvCpu: recv.cpu,
      recvPeakKb: recv.peakKb,
      sluice: {
        ms: sluiceMs,
        firstMs: firstEventMs,
        cpu: sluiceCpu,
        firstCpu: firstEventCpu,
        peakKb: peakA,
      },
      debezium,
    });
  }
  if (values.schemas) {
    const schemasRate = events / (schemasMs / 1000);
    console.log(
      `| (d) Sluice → Kafka with JsonConverter schemas, from process start | ${fmt(schemasMs)}, ${
        Math.round(schemasRate).toLocaleString("en")
      } events/s | - | - |`,
    );
    const schemasDrain = events / ((schemasMs - schemasFirstMs) / 1000);
    console.log(
      `| (d) Sluice with schemas, from first event on the topic | ${
        fmt(schemasMs - schemasFirstMs)
      }, ${Math.round(schemasDrain).toLocaleString("en")} events/s | - | - |`,
    );
    console.log(
      `| (d) with schemas / schemaless events/s | ${(schemasRate / sluiceRate).toFixed(2)} (${
        (schemasDrain / drainRate).toFixed(2)
      } from first event) | - | - |`,
    );
    const avroRate = events / (avroMs / 1000);
    const avroDrain = events / ((avroMs - avroFirstMs) / 1000);
    console.log(
      `| (d) Sluice → Kafka as Avro (schema registry), from process start | ${fmt(avroMs)}, ${
        Math.round(avroRate).toLocaleString("en")
      } events/s | - | - |`,
    );
    console.log(
      `| (d) Avro / schemaless events/s | ${(avroRate / sluiceRate).toFixed(2)} (${
        (avroDrain / drainRate).toFixed(2)
      } from first event) | - | - |`,
    );
  }
  const peakMb = peakA / 1024;
  console.log(
    `| (c) Sluice peak RSS draining the backlog | ${peakMb.toFixed(0)} MB | < 150 MB | ${
      peakMb < 150 ? "PASS" : "FAIL"
    } |`,
  );
  console.log(
    `| (c) for comparison: peak RSS of the idle setup run (no backlog) | ${
      (setupPeakKb / 1024).toFixed(0)
    } MB | - | - |`,
  );
  for (const l of latency) {
    const gated = l.rate >= 5000;
    console.log(
      `| (b) latency at ${l.rate.toLocaleString("en")}/s (achieved ${
        Math.round(l.achieved).toLocaleString("en")
      }/s, ${l.rows.toLocaleString("en")} rows) | p50 ${ms(l.p50)}, p99 ${ms(l.p99)}, max ${
        ms(l.max)
      } | ${gated ? "p99 < 1 s" : "-"} | ${gated ? (l.p99 < 1000 ? "PASS" : "FAIL") : "-"} |`,
    );
  }
  if (!values["no-latency"]) {
    console.log(
      `| (b) Sluice peak RSS (CDC + consumer process) | ${
        (peakB / 1024).toFixed(0)
      } MB | < 200 MB | ${peakB / 1024 < 200 ? "PASS" : "FAIL"} |`,
    );
  }
} finally {
  for (const child of children) await stopChild(child).catch(() => {});
  await dropSlots().catch((e) => console.error(`dropping slots: ${e}`));
  for (const db of [WH, CIT]) {
    await admin.unsafe(`drop database if exists ${db} with (force)`).catch(() => {});
  }
  await admin.end();
  await kAdmin.close().catch(() => {});
  await rawAdmin.close().catch(() => {});
  await probeAdmin.close().catch(() => {});
  await Deno.remove(scratch, { recursive: true }).catch(() => {});
  await Promise.all([pgServer?.stop(), kafkaServer?.stop(), registryServer?.stop()]);
}

// --------------------------------------------------- (e) the real Debezium

/** One capture's drain of the backlog: wall times and CPU from its process start. */
interface Drain {
  ms: number;
  firstMs: number;
  cpu: number;
  firstCpu: number;
  peakKb: number;
}

/** Debezium drains its own slot until its topic holds every event. */
async function drainWithDebezium(endLsn: string): Promise<Drain> {
  const topic = `${prefix}_dbz.public.bench_a`;
  console.log("Debezium 3.6.1 (Kafka Connect standalone, tuned producer) draining its slot…");
  const started = performance.now();
  await using worker = await startDebezium({
    url: warehouse,
    brokers,
    prefix: `${prefix}_dbz`,
    slot: SLOT_DEBEZIUM,
    publication: PUB_A,
    table: "public.bench_a",
  });
  let firstMs = 0;
  let firstCpu = 0;
  let peakKb = 0;
  let lastCount = -1;
  let lastProgress = performance.now();
  await waitFor(
    async () => {
      const n = await topicCount(topic);
      const now = performance.now();
      peakKb = Math.max(peakKb, await peakRssKb(worker.pid));
      if (n > 0 && !firstMs) {
        firstMs = now - started;
        firstCpu = await cpuSeconds(worker.pid);
      }
      if (n !== lastCount) {
        lastCount = n;
        lastProgress = now;
      } else if (now - lastProgress > 120_000) {
        const status = await worker.status(`${prefix}_dbz-debezium`);
        throw new Error(
          `Debezium made no progress for 120 s at ${n} of ${events} events on ${topic}: ${
            JSON.stringify(status)
          }`,
        );
      }
      return n >= events;
    },
    3_600_000,
    `${events} events on ${topic}`,
    undefined,
    100,
  );
  const ms = performance.now() - started;
  const cpu = await cpuSeconds(worker.pid);
  peakKb = Math.max(peakKb, await peakRssKb(worker.pid));
  const onTopic = await topicCount(topic);
  console.log(
    `  ${fmt(ms)} from process start (first event after ${fmt(firstMs)}), ` +
      `${onTopic.toLocaleString("en")} messages on the topic (slot end ${endLsn}), ` +
      `peak RSS ${mb(peakKb)}, ${cpu.toFixed(2)} CPU s`,
  );
  if (onTopic !== events) {
    console.log(`  note: ${onTopic} messages for ${events} transactions`);
  }
  return { ms, firstMs, cpu, firstCpu, peakKb };
}

/**
 * pg_recvlogical, Sluice and Debezium side by side, and Sluice's ratios
 * against the targets. Rates "from first event" leave out process start-up
 * (the JVM's is seconds); CPU per 100k events is counted over the same span.
 */
function reportReferences(r: {
  recvMs: number;
  recvCpu?: number;
  recvPeakKb?: number;
  sluice: Drain;
  debezium: Drain;
}): void {
  const per100k = (cpu: number) => cpu / events * 100_000;
  const fromStart = (d: Drain) => events / (d.ms / 1000);
  const drained = (d: Drain) => events / ((d.ms - d.firstMs) / 1000);
  const drainCpu = (d: Drain) => per100k(d.cpu - d.firstCpu);
  const n = (x: number) => Math.round(x).toLocaleString("en");
  const recvRate = events / (r.recvMs / 1000);
  const recvCpu = r.recvCpu === undefined ? "-" : per100k(r.recvCpu).toFixed(2);
  const recvPeak = r.recvPeakKb === undefined ? "-" : mb(r.recvPeakKb);
  console.log(`\nCapture PostgreSQL → Kafka, side by side (load average ${loadAverage()})\n`);
  console.log(
    "| capture | events/s from process start | events/s from first event | " +
      "CPU s per 100k events (drain) | CPU s per 100k (whole run) | peak RSS |",
  );
  console.log("| --- | ---: | ---: | ---: | ---: | ---: |");
  console.log(`| pg_recvlogical → /dev/null | ${n(recvRate)} | - | - | ${recvCpu} | ${recvPeak} |`);
  for (const [name, d] of [["Sluice", r.sluice], ["Debezium tuned", r.debezium]] as const) {
    console.log(
      `| ${name} | ${n(fromStart(d))} | ${n(drained(d))} | ${drainCpu(d).toFixed(2)} | ${
        per100k(d.cpu).toFixed(2)
      } | ${mb(d.peakKb)} |`,
    );
  }
  const vsDebezium = drained(r.sluice) / drained(r.debezium);
  const vsRecv = fromStart(r.sluice) / recvRate;
  const cpuRatio = drainCpu(r.sluice) / drainCpu(r.debezium);
  const line = (what: string, value: number, target: string, ok?: boolean) =>
    console.log(
      `| ${what} | ${value.toFixed(2)} | ${target} | ${
        ok === undefined ? "-" : ok ? "PASS" : "FAIL"
      } |`,
    );
  console.log("\n| ratio | figure | target | result |");
  console.log("| --- | ---: | ---: | --- |");
  line("Sluice / Debezium events/s (from first event)", vsDebezium, "≥ 2.0", vsDebezium >= 2);
  line(
    "Sluice / Debezium events/s (from process start)",
    fromStart(r.sluice) / fromStart(r.debezium),
    "-",
  );
  line("Sluice (from process start) / pg_recvlogical events/s", vsRecv, "≥ 0.7", vsRecv >= 0.7);
  line("Sluice / Debezium CPU per event (drain)", cpuRatio, "≤ 0.35", cpuRatio <= 0.35);
  line(
    "Sluice / Debezium peak RSS",
    r.sluice.peakKb / r.debezium.peakKb,
    "-",
  );
}

function loadAverage(): string {
  try {
    return Deno.readTextFileSync("/proc/loadavg").split(" ").slice(0, 3).join(" ");
  } catch {
    return "unknown";
  }
}

// ---------------------------------------------------------------------------

function split(n: number, parts: number): number[] {
  const base = Math.floor(n / parts);
  return Array.from({ length: parts }, (_, i) => base + (i < n % parts ? 1 : 0)).filter((x) =>
    x > 0
  );
}

async function slotExists(slot: string, active = false): Promise<boolean> {
  const rows = await admin`
    select active from pg_replication_slots where slot_name = ${slot}`;
  return rows.length > 0 && (!active || rows[0].active);
}

async function dropSlots(): Promise<void> {
  for (const slot of [SLOT_A, SLOT_CEILING, SLOT_B, SLOT_SCHEMAS, SLOT_AVRO, SLOT_DEBEZIUM]) {
    await admin`
      select pg_drop_replication_slot(slot_name) from pg_replication_slots
      where slot_name = ${slot} and not active`;
  }
}

/** Sum of the end offsets of every partition of `topic` (0 when missing). */
async function topicCount(topic: string): Promise<number> {
  const metadata = await probeAdmin.metadata({ topics: [topic], forceUpdate: true })
    .catch(() => undefined);
  const partitions = metadata?.topics.get(topic)?.partitionsCount ?? 0;
  if (partitions === 0) return 0;
  const listed = await rawAdmin.listOffsets({
    topics: [{
      name: topic,
      partitions: Array.from({ length: partitions }, (_, i) => ({
        partitionIndex: i,
        timestamp: -1n,
      })),
    }],
  });
  let total = 0;
  for (const t of listed) for (const p of t.partitions) total += Number(p.offset);
  return total;
}

/**
 * Follows the CPU time of the walsender serving `application`, for the
 * report: pg_recvlogical's rate is bound by its walsender (decoding, and a
 * send() per message while the client keeps up), not by pg_recvlogical
 * itself. 0 when the server's processes cannot be read (another host).
 */
function watchWalsender(application: string): { stop(): Promise<number> } {
  let pid = 0;
  let cpu = 0;
  let busy = false;
  const sample = async () => {
    if (busy) return;
    busy = true;
    try {
      if (!pid) {
        const rows = await admin`
          select pid from pg_stat_replication where application_name = ${application}`;
        pid = rows[0]?.pid ?? 0;
      }
      if (pid) cpu = Math.max(cpu, await cpuSeconds(pid));
    } finally {
      busy = false;
    }
  };
  const timer = setInterval(() => void sample().catch(() => {}), 100);
  return {
    stop() {
      clearInterval(timer);
      return Promise.resolve(cpu);
    },
  };
}

async function recvlogicalPath(): Promise<string> {
  const dirs: string[] = [];
  try {
    for (const entry of Deno.readDirSync("/usr/lib/postgresql")) {
      dirs.push(`/usr/lib/postgresql/${entry.name}/bin/pg_recvlogical`);
    }
  } catch { /* not Debian's layout */ }
  dirs.sort((a, b) => b.localeCompare(a, "en", { numeric: true }));
  for (const path of dirs) {
    try {
      await Deno.stat(path);
      return path;
    } catch { /* next */ }
  }
  return "pg_recvlogical";
}

interface Spawned {
  child: Deno.ChildProcess;
  started: number;
  peakKb(): number;
}

/** Starts a process and samples its peak RSS (VmHWM) until it exits. */
function spawn(command: string, args: string[]): Spawned {
  const started = performance.now();
  const child = new Deno.Command(command, { args, stdout: "inherit", stderr: "inherit" }).spawn();
  children.add(child);
  let peakKb = 0;
  const sample = async () => {
    try {
      const status = await Deno.readTextFile(`/proc/${child.pid}/status`);
      const match = /VmHWM:\s+(\d+)/.exec(status);
      if (match) peakKb = Math.max(peakKb, Number(match[1]));
    } catch { /* exited */ }
  };
  const sampler = setInterval(sample, 50);
  child.status.finally(() => {
    clearInterval(sampler);
    children.delete(child);
  });
  return { child, started, peakKb: () => peakKb };
}

async function waitFor(
  check: () => Promise<boolean>,
  timeoutMs: number,
  what: string,
  child?: Deno.ChildProcess,
  everyMs = 250,
): Promise<void> {
  let exited = false;
  child?.status.then(() => exited = true);
  const deadline = performance.now() + timeoutMs;
  while (!(await check())) {
    if (exited) throw new Error(`the Sluice process exited while waiting for ${what}`);
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await delay(everyMs);
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function rate(n: number, ms: number): string {
  return Math.round(n / (ms / 1000)).toLocaleString("en");
}

function fmt(ms: number): string {
  return `${(ms / 1000).toFixed(2)} s`;
}

function ms(value: number): string {
  return `${value.toFixed(0)} ms`;
}

function mb(kb: number): string {
  return `${(kb / 1024).toFixed(0)} MB`;
}
