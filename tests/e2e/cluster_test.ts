/**
 * Three real `sluice run` processes on one plan (issue 11): scheduled ticks
 * run once in the group while members are killed and restarted; a killed
 * slot owner is replaced by a standby and nothing is lost; a killed Kafka
 * consumer's partitions move to the others and nothing is lost or rolled back.
 */
import postgres from "postgres";
import { assert, assertEquals } from "../_assert.ts";
import { syncFixture } from "../_batch.ts";
import { uniqueSlot } from "../_cdc.ts";
import { committedOffsets, createTopic, produce, uniqueName } from "../_kafka.ts";
import { createTestDatabase, testKafkaBrokers } from "../_services.ts";
import { waitUntil } from "../_wait.ts";
import { killMember, logged, logsOf, type Member, startMember, stopMember } from "./_members.ts";

async function withConfig<T>(
  pipelines: unknown[],
  body: (config: string, dir: string) => Promise<T>,
): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "sluice_cluster_" });
  try {
    await Deno.writeTextFile(`${dir}/pipelines.json`, JSON.stringify(pipelines));
    return await body(`${dir}/pipelines.json`, dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Which rows differ between source and target, for a failed convergence. */
async function differences(source: postgres.Sql, target: postgres.Sql): Promise<string> {
  const s = await source<{ id: number; v: number }[]>`select id, v from items`;
  const t = await target<{ id: number; v: number; deleted: boolean }[]>`
    select id, v, deleted_at is not null as deleted from items`;
  const byId = new Map(t.map((row) => [row.id, row]));
  const missing = s.filter((row) => !byId.has(row.id)).map((row) => row.id);
  const stale = s.filter((row) => byId.has(row.id) && byId.get(row.id)!.v !== row.v)
    .map((row) => `${row.id}: ${byId.get(row.id)!.v} not ${row.v}`);
  return `source ${s.length} rows, target ${t.length}; missing ${missing.length} ` +
    `[${missing.slice(0, 20)}]; stale ${stale.length} [${stale.slice(0, 10)}]`;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

Deno.test("each tick of a scheduled job runs once across three processes killed and restarted", async () => {
  const db = await createTestDatabase("cluster_jobs");
  const sql = postgres(db.url, { max: 1, onnotice: () => {} });
  const members: Member[] = [];
  try {
    await sql.unsafe(`
      create table runs (run_id text primary key, at timestamptz not null);
      create table after_runs (run_id text primary key, at timestamptz not null);`);
    // Every run writes one new row: the target counts the runs.
    const job = (name: string, table: string, extra: Record<string, string>) => ({
      name,
      config: {
        "connector.class": "postgres_query",
        "connection.url": db.url,
        query: "select gen_random_uuid()::text as run_id, clock_timestamp() as at",
        "key.columns": "run_id",
        "job.validate": "false",
        "job.retries": "0",
        "sink.class": "postgres",
        "sink.connection.url": db.url,
        "sink.table": `public.${table}`,
        ...extra,
      },
    });
    const pipelines = [
      job("ticked", "runs", { "job.schedule": "*/3 * * * * *" }),
      job("after_ticked", "after_runs", { "job.depends.on": "ticked" }),
    ];
    await withConfig(pipelines, async (config, dir) => {
      for (const id of ["a", "b", "c"]) members.push(startMember(id, config, dir));
      await waitUntil("a first run", async () => {
        const [{ n }] = await sql`select count(*)::int as n from runs`;
        return n > 0;
      }, { timeoutMs: 60_000, intervalMs: 200 });
      await sleep(4000);
      await killMember(members[0]); // mid-anything: no shutdown at all
      await sleep(3000);
      members.push(startMember("a2", config, dir));
      await sleep(3000);
      assertEquals(await stopMember(members[1]), 0, logsOf(members));
      await sleep(2000);
      members.push(startMember("b2", config, dir));
      await sleep(6000);
      for (const member of members.slice(2)) await stopMember(member);
    });
    // What the group recorded: one row per claimed tick (its primary key makes it once).
    const claimed = await sql<{ tick: string; status: string }[]>`
      select tick, status from sluice_job_ticks where job = 'ticked' order by tick`;
    const [{ written }] = await sql`select count(*)::int as written from runs`;
    const succeeded = claimed.filter((run) => run.status === "succeeded").length;
    console.log(
      `${written} rows written by ${claimed.length} claimed ticks (${succeeded} succeeded)`,
    );
    // Each run writes one row: more rows than claims means a tick ran twice.
    assert(
      written >= succeeded && written <= claimed.length,
      `${written} rows for ${claimed.length} claimed ticks:\n${logsOf(members)}`,
    );
    assert(succeeded >= 5, `only ${succeeded} runs succeeded`);
    // Every tick from the first to the last was claimed, or skipped because the
    // previous run still held the lock (a slow run under load); the one killed
    // member may also take a tick's cron firing down with it.
    const first = Date.parse(claimed[0].tick), last = Date.parse(claimed.at(-1)!.tick);
    const accounted = new Set(claimed.map((run) => Date.parse(run.tick)));
    for (const member of members) {
      for (const line of logged(member, /Skipping ticked \(.*\): still running/)) {
        accounted.add(Date.parse(line.message.match(/\((.*)\)/)![1]));
      }
    }
    const lost = [];
    for (let at = first; at <= last; at += 3000) {
      if (!accounted.has(at)) lost.push(new Date(at).toISOString());
    }
    assert(lost.length <= 1, `ticks neither run nor skipped: ${lost}\n${logsOf(members)}`);
    const skips = members.flatMap((member) => logged(member, /Skipping ticked/));
    assert(
      skips.length >= claimed.length - 1,
      `${skips.length} skips logged for ${claimed.length} runs`,
    );
    // depends.on: the downstream ran after the upstream runs, at most once each.
    const [{ after }] = await sql`select count(*)::int as after from after_runs`;
    assert(after <= claimed.length && after >= succeeded - 3, `${after} downstream runs`);
    const ticksTable = await sql<{ worker: string }[]>`
      select distinct worker from sluice_job_ticks where job = 'ticked'`;
    assert(ticksTable.length >= 2, `runs spread over ${ticksTable.map((t) => t.worker)}`);
  } finally {
    for (const member of members) await killMember(member);
    await sql.end();
    await db.drop();
  }
});

Deno.test("a SIGKILLed slot owner is replaced by a standby under load, and nothing is lost", async () => {
  await using f = await syncFixture(
    "cluster_cdc",
    "create table items (id int primary key, v int not null, note text)",
    `create table items (id int primary key, v int not null, note text,
       deleted_at timestamptz, _source_lsn pg_lsn)`,
  );
  const slot = uniqueSlot("cluster");
  const members: Member[] = [];
  const pipelines = [{
    name: "items_stream",
    config: {
      "connector.class": "postgres_cdc",
      "connection.url": f.source.url,
      "topic.prefix": "src",
      "table.include.list": "public.items",
      "slot.name": slot,
      "publication.name": `pub_${slot}`,
      "slot.standby.retry.ms": "500",
      "poll.interval.ms": "20",
      "status.update.interval.ms": "1000",
      "errors.retry.timeout": "120000",
      "errors.retry.delay.max.ms": "1000",
      "sink.class": "postgres",
      "sink.connection.url": f.target.url,
      "sink.table": "public.items",
    },
  }];
  try {
    await withConfig(pipelines, async (config, dir) => {
      for (const id of ["a", "b", "c"]) members.push(startMember(id, config, dir));
      const streaming = /Streaming from slot/;
      await waitUntil("one member streaming", () => {
        return members.some((member) => logged(member, streaming).length > 0);
      }, { timeoutMs: 60_000, intervalMs: 100 });
      await waitUntil("the others on standby", () => {
        return members.filter((member) => logged(member, /is on standby/).length > 0).length === 2;
      }, { timeoutMs: 30_000, intervalMs: 100 });
      const owner = members.find((member) => logged(member, streaming).length > 0)!;

      // Load: new rows and updates of existing ones, in small transactions.
      let stop = false;
      let next = 1;
      const load = (async () => {
        while (!stop) {
          await f.sourceSql.begin(async (tx) => {
            for (let i = 0; i < 20; i++) {
              await tx`insert into items values (${next}, 0, ${"row " + next})`;
              next++;
            }
            await tx`update items set v = v + 1 where id % 7 = ${next % 7}`;
          });
        }
      })();
      await sleep(2000);
      const killedAt = Date.now();
      await killMember(owner);
      await waitUntil("a standby takes over", () => {
        return members.some((member) =>
          member !== owner && logged(member, streaming, killedAt).length > 0
        );
      }, { timeoutMs: 60_000, intervalMs: 50 });
      const takeoverMs = Date.now() - killedAt;
      console.log(`slot takeover after SIGKILL: ${takeoverMs} ms`);
      await sleep(2000);
      stop = true;
      await load;
      const digest = (sql: postgres.Sql, where = "") =>
        sql.unsafe(
          `select md5(coalesce(string_agg((id, v, note)::text, '|' order by id), '')) as d,
                  count(*)::int as n from items ${where}`,
        );
      const [source] = await digest(f.sourceSql);
      await waitUntil("target equals source", async () => {
        const [target] = await digest(f.targetSql, "where deleted_at is null");
        return target.d === source.d ? true : undefined;
      }, { timeoutMs: 60_000, intervalMs: 250 });
      assert(source.n > 100, `only ${source.n} rows written under load`);
      for (const member of members) if (member !== owner) await stopMember(member);
    });
  } finally {
    for (const member of members) await killMember(member);
    await f.sourceSql`select pg_drop_replication_slot(slot_name) from pg_replication_slots
                      where slot_name = ${slot} and not active`.catch(() => {});
  }
});

Deno.test("a killed Kafka consumer's partitions move to the others: nothing lost, per-key order kept", async () => {
  const db = await createTestDatabase("cluster_kafka");
  const sql = postgres(db.url, { max: 1, onnotice: () => {} });
  const topic = uniqueName("cluster-latest");
  const eventsTopic = uniqueName("cluster-events");
  const members: Member[] = [];
  const keys = 300, total = 12_000;
  try {
    await createTopic(topic, 6);
    await createTopic(eventsTopic, 6);
    await sql.unsafe(`
      create table latest (k int primary key, seq int not null, deleted_at timestamptz);
      create table events (seq int primary key, k int not null, deleted_at timestamptz);`);
    // latest: one row per key, updated in per-key order; events: one row per record.
    const sink = (name: string, from: string, table: string) => ({
      name,
      config: {
        "connector.class": "postgres",
        topics: from,
        "connection.url": db.url,
        table,
        "session.timeout.ms": "6000",
        "heartbeat.interval.ms": "1000",
        "max.poll.records": "200",
        "errors.retry.timeout": "120000",
        "errors.retry.delay.max.ms": "1000",
      },
    });
    const pipelines = [
      sink("latest_sink", topic, "public.latest"),
      sink("events_sink", eventsTopic, "public.events"),
    ];
    const wave = (from: number, to: number) => {
      const messages = [];
      for (let seq = from; seq < to; seq++) {
        const k = seq % keys;
        const value = new TextEncoder().encode(JSON.stringify({ k, seq }));
        messages.push({ topic, key: new TextEncoder().encode(JSON.stringify({ k })), value });
        messages.push({
          topic: eventsTopic,
          key: new TextEncoder().encode(JSON.stringify({ seq })),
          value,
        });
      }
      return produce(messages);
    };
    await withConfig(pipelines, async (config, dir) => {
      const extra = ["--bootstrap", testKafkaBrokers()];
      for (const id of ["a", "b", "c"]) members.push(startMember(id, config, dir, extra));
      await waitUntil("three members in the group", () => {
        const assigned = members.filter((member) => logged(member, /assignment/).length >= 2);
        return assigned.length === 3;
      }, { timeoutMs: 60_000, intervalMs: 200 });
      await wave(0, total / 2);
      await waitUntil("some rows written", async () => {
        const [{ n }] = await sql`select count(*)::int as n from latest`;
        return n > keys / 2;
      }, { timeoutMs: 60_000, intervalMs: 50 });
      const killedAt = Date.now();
      await killMember(members[1]);
      await wave(total / 2, total);
      await waitUntil("every key at its last value", async () => {
        const [{ done }] = await sql`
          select count(*)::int as done from latest where seq >= ${total - keys}`;
        const [{ events }] = await sql`select count(*)::int as events from events`;
        return done === keys && events === total;
      }, { timeoutMs: 90_000, intervalMs: 250 });
      const moved = [members[0], members[2]].some((member) =>
        logged(member, /assignment/, killedAt).length > 0
      );
      assert(moved, `no reassignment after the kill:\n${logsOf(members)}`);
      const rows = await sql<{ k: number; seq: number }[]>`select k, seq from latest order by k`;
      assertEquals(rows.length, keys);
      for (const row of rows) assertEquals(row.seq, total - keys + row.k, `key ${row.k}`);
      await stopMember(members[0]);
      await stopMember(members[2]);
      for (
        const [group, from] of [["sluice-latest_sink", topic], ["sluice-events_sink", eventsTopic]]
      ) {
        const committed = await committedOffsets(group, from, 6);
        const sum = Object.values(committed).reduce((a, b) => a + b, 0);
        assertEquals(sum, total, `${group}: ${JSON.stringify(committed)}`);
      }
    });
  } finally {
    for (const member of members) await killMember(member);
    await sql.end();
    await db.drop();
  }
});

Deno.test("a rolling restart of all three under load (CDC → Kafka → PostgreSQL, offsets in the cluster database) loses nothing", async () => {
  await using f = await syncFixture(
    "cluster_roll",
    "create table items (id int primary key, v int not null, note text)",
    `create table items (id int primary key, v int not null, note text,
       deleted_at timestamptz, _source_lsn pg_lsn)`,
  );
  const cluster = await createTestDatabase("cluster_roll_meta");
  const slot = uniqueSlot("roll");
  const prefix = uniqueName("roll").replaceAll("-", "_");
  const retry = { "errors.retry.timeout": "120000", "errors.retry.delay.max.ms": "1000" };
  const pipelines = [{
    name: "roll_capture",
    config: {
      "connector.class": "postgres_cdc",
      "connection.url": f.source.url,
      "topic.prefix": prefix,
      "table.include.list": "public.items",
      "slot.name": slot,
      "publication.name": `pub_${slot}`,
      "slot.standby.retry.ms": "500",
      "poll.interval.ms": "20",
      "status.update.interval.ms": "1000",
      "sink.topic.creation.default.partitions": "6",
      ...retry,
    },
  }, {
    name: "roll_consume",
    config: {
      "connector.class": "postgres",
      topics: `${prefix}.public.items`,
      "connection.url": f.target.url,
      table: "public.items",
      "session.timeout.ms": "6000",
      "heartbeat.interval.ms": "1000",
      "max.poll.records": "500",
      ...retry,
    },
  }];
  const members: Member[] = [];
  let stop = false;
  let load: Promise<void> | undefined;
  try {
    await withConfig(pipelines, async (config, dir) => {
      const extra = ["--bootstrap", testKafkaBrokers(), "--cluster-url", cluster.url];
      for (const id of ["a", "b", "c"]) members.push(startMember(id, config, dir, extra));
      await waitUntil("one member streaming", () => {
        return members.some((member) => logged(member, /Streaming from slot/).length > 0);
      }, { timeoutMs: 60_000, intervalMs: 100 });
      let next = 1;
      load = (async () => {
        while (!stop) {
          await f.sourceSql.begin(async (tx) => {
            for (let i = 0; i < 5; i++) {
              await tx`insert into items values (${next}, 0, ${"row " + next})`;
              next++;
            }
            await tx`update items set v = v + 1 where id % 5 = ${next % 5}`;
          });
          await sleep(20);
        }
      })();
      for (const [i, id] of ["a", "b", "c"].entries()) {
        await sleep(2000);
        const t0 = Date.now();
        const code = await stopMember(members[i]);
        console.log(`${id} stopped in ${Date.now() - t0} ms`);
        assertEquals(code, 0, `${id} did not stop cleanly:\n${logsOf([members[i]])}`);
        const replacement = startMember(`${id}2`, config, dir, extra);
        members.push(replacement);
        await waitUntil(`${id}2 in the group`, () => {
          return logged(replacement, /assignment|is on standby|Streaming from slot/).length > 0;
        }, { timeoutMs: 60_000, intervalMs: 100 });
        console.log(`${id}2 joined after ${Date.now() - t0} ms`);
      }
      await sleep(2000);
      stop = true;
      await load;
      const digest = (sql: postgres.Sql, where = "") =>
        sql.unsafe(
          `select md5(coalesce(string_agg((id, v, note)::text, '|' order by id), '')) as d,
                  count(*)::int as n from items ${where}`,
        );
      const [source] = await digest(f.sourceSql);
      const t1 = Date.now();
      await waitUntil("target equals source", async () => {
        const [target] = await digest(f.targetSql, "where deleted_at is null");
        return target.d === source.d ? true : undefined;
      }, { timeoutMs: 90_000, intervalMs: 250 }).catch(async (error) => {
        throw new Error(
          `${error.message}\n${await differences(f.sourceSql, f.targetSql)}\n${
            logsOf(members, 25)
          }`,
        );
      });
      console.log(`converged after ${Date.now() - t1} ms`);
      assert(source.n > 100, `only ${source.n} rows written under load`);
      // The capture's position is shared in the cluster database, not in one process's file.
      const meta = postgres(cluster.url, { max: 1, onnotice: () => {} });
      try {
        const rows =
          await meta`select pipeline from sluice_offsets where pipeline = 'roll_capture'`;
        assertEquals(rows.length, 1);
      } finally {
        await meta.end();
      }
      for (const member of members.slice(3)) await stopMember(member);
    });
  } finally {
    stop = true;
    await load?.catch(() => {});
    for (const member of members) await killMember(member);
    await f.sourceSql`select pg_drop_replication_slot(slot_name) from pg_replication_slots
                      where slot_name = ${slot} and not active`.catch(() => {});
    await cluster.drop();
  }
});
