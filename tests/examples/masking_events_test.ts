/**
 * The example's event flows, end to end against the real PostgreSQL and
 * Kafka: the CDC connector masks personal columns before Kafka, so neither
 * the topics nor smart_citizen hold a clear personal value, and the
 * consumers apply deletes (key-only `before`) and updates that leave an
 * unchanged TOAST value out, without a single dead letter.
 */
import postgres from "postgres";
import { assert, assertEquals } from "../_assert.ts";
import { builtinRegistry } from "../../builtins.ts";
import { buildPipelines, loadPipelines, parseConnectors } from "../../core/config.ts";
import { MemoryOffsetStore } from "../../core/offsets.ts";
import { type JobReport, Runtime } from "../../core/runtime.ts";
import { workerEnvironment } from "../../cli/worker.ts";
import { partial } from "../../transforms/mask/_strategies.ts";
import {
  applySchema,
  generateWarehouse,
  touchProfiles,
} from "../../examples/warehouse_to_citizen/generate.ts";
import { createTestDatabase, testKafkaBrokers } from "../_services.ts";
import { waitUntil } from "../_wait.ts";
import { committedOffsets, readTopic, text } from "../_kafka.ts";
import { KafkaAdmin } from "../../drivers/kafka.ts";

const examples =
  new URL("../../examples/warehouse_to_citizen/pipelines/", import.meta.url).pathname;

/** Every personal value of the warehouse (names, IDs, phones, e-mails, addresses). */
async function personalValues(sql: postgres.Sql): Promise<Set<string>> {
  const rows = await sql.unsafe<{ value: string }[]>(`
    select unnest(array[full_name, national_id, phone, email]) as value from public.profile_360
    union select unnest(array[full_name, national_id, phone, email, address_line])
    from public.golden_records`);
  return new Set(rows.map((row) => row.value).filter((v): v is string => !!v && v.length >= 6));
}

/**
 * The example's event pipelines with names no other test uses: topics,
 * slots, publications, consumer groups and the database name.
 */
function uniqueEventConnectors(json: unknown, id: string, database: string): unknown {
  const rename = (value: string) =>
    value.replaceAll("warehouse-cdc", `${id}-warehouse-cdc`)
      .replaceAll("warehouse-to-citizen", `${id}-warehouse-to-citizen`)
      .replaceAll("dlq-", `${id}-dlq-`)
      .replace(/^(warehouse_\w+_(slot|publication))$/, `$1_${id}`)
      .replace(/^smart_warehouse$/, database);
  return (json as { name: string; config: Record<string, string> }[]).map((entry) => ({
    name: `${entry.name}-${id}`,
    config: Object.fromEntries(
      Object.entries(entry.config).map(([key, value]) => [key, rename(value)]),
    ),
  }));
}

/** Every message of `topic` that a consumer group has committed, as text. */
async function committedMessages(group: string, topic: string): Promise<string[]> {
  const admin = new KafkaAdmin({ bootstrapServers: testKafkaBrokers(), clientId: "sluice-tests" });
  let partitions: number;
  try {
    const description = (await admin.describeTopics([topic])).get(topic);
    assert(description, `topic ${topic} does not exist`);
    partitions = description.partitions;
  } finally {
    await admin.close();
  }
  const offsets = await committedOffsets(group, topic, partitions);
  const count = Object.values(offsets).reduce((sum, offset) => sum + Math.max(offset, 0), 0);
  const messages = await readTopic(topic, count);
  return messages.map((message) =>
    [text(message.key), text(message.value), JSON.stringify(message.headers ?? {})].join("\n")
  );
}

Deno.test({
  name:
    "the example's CDC connector keeps personal values off Kafka, and its consumers apply deletes and TOAST-unchanged updates without dead letters",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const warehouse = await createTestDatabase("mask_events_warehouse");
    const citizen = await createTestDatabase("mask_events_citizen");
    const scratch = await Deno.makeTempDir({ prefix: "sluice-mask-events-" });
    const id = `t${crypto.randomUUID().slice(0, 8)}`;
    const source = postgres(warehouse.url, { max: 1, onnotice: () => {} });
    const target = postgres(citizen.url, { max: 1, onnotice: () => {} });
    try {
      await applySchema(warehouse.url, "warehouse.sql");
      await applySchema(citizen.url, "citizen.sql");
      await generateWarehouse(warehouse.url, { rows: 200, seed: 11, asOf: "2026-11-01T00:00:00Z" });
      // A TOASTed address: 16 kB of hex stays out of line even compressed.
      const toasted = 17;
      await source.unsafe(`update public.golden_records
        set address_line = (select string_agg(md5(g::text), '') from generate_series(1, 500) g)
        where citizen_id = ${toasted}`);
      const url = new URL(warehouse.url);
      const env: Record<string, string> = {
        WAREHOUSE_URL: warehouse.url,
        CITIZEN_URL: citizen.url,
        WAREHOUSE_HOST: url.hostname,
        WAREHOUSE_PORT: url.port || "5432",
        WAREHOUSE_USER: decodeURIComponent(url.username) || "postgres",
        WAREHOUSE_PASSWORD: decodeURIComponent(url.password),
        SLUICE_MASK_KEY: "test-hmac-key-that-is-long-enough-123",
        SLUICE_FPE_KEY: "2b7e151628aed2a6abf7158809cf4f3c",
        SLUICE_DEAD_LETTER_DIR: scratch,
        SLUICE_STATE_DIR: scratch,
      };
      const providers = { env: (name: string) => env[name], readText: Deno.readTextFileSync };
      const registry = builtinRegistry();

      // The batch jobs fill smart_citizen first, as in the demo.
      const batch = await loadPipelines([`${examples}batch`], { registry, providers });
      const jobs = new Runtime(batch, { offsets: new MemoryOffsetStore() });
      for (const spec of batch) {
        const report = await jobs.runJob(spec.name, { noRetries: true });
        assertEquals(report.status, "succeeded", `${spec.name}: ${report.error?.message}`);
      }
      await jobs.stop();

      const json = JSON.parse(await Deno.readTextFile(`${examples}events/events.json`));
      const specs = await buildPipelines(
        parseConnectors(uniqueEventConnectors(json, id, warehouse.name)),
        {
          registry,
          providers,
          pluginDefaults: { "bootstrap.servers": testKafkaBrokers() },
          sinkConnectorSource: "kafka",
          defaultSink: "kafka",
        },
      );
      const streams = new Runtime(
        specs,
        workerEnvironment({
          offsetsFile: `${scratch}/offsets.json`,
          bootstrapServers: testKafkaBrokers(),
        }),
      );
      const reports: JobReport[] = [];
      streams.onReport((report) => reports.push(report));
      streams.start();
      const secrets = await personalValues(source);
      try {
        await waitUntil("both CDC slots streaming", async () => {
          const [{ n }] = await source`select count(*)::int as n from pg_replication_slots
            where active and slot_name like ${`%_${id}`}`;
          return n === 2;
        }, { timeoutMs: 60_000 });

        const deleted = 23;
        const [{ phone: oldPhone }] =
          await source`select phone from public.golden_records where citizen_id = ${toasted}`;
        // Changes that put whole clear rows into change events.
        const touched = await touchProfiles(warehouse.url, 0.1, 5);
        await source`update public.golden_records set email = 'new.' || email
          where citizen_id between 1 and 15`;
        await source`insert into public.profile_360 (citizen_id, full_name, national_id, phone, email)
          values (9001, 'Ishaan Verghese', '4821 7730 1956', '+91 98450 11223', 'ishaan.v@example.in')`;
        // The two cases of the issue: a TOAST-unchanged update and key-only deletes.
        const newPhone = "+91 99999 00017";
        await source`update public.golden_records set phone = ${newPhone}
          where citizen_id = ${toasted}`;
        await source`delete from public.profile_360 where citizen_id = ${deleted}`;
        await source`delete from public.golden_records where citizen_id = ${deleted}`;
        for (const value of await personalValues(source)) secrets.add(value);
        assert(touched >= 10, `only ${touched} profiles touched`);

        const oldMasked = partial(oldPhone, 0, 4, "*");
        const row = await waitUntil("the changes in smart_citizen", async () => {
          const [row] = await target`select
              (select phone from profile_data where citizen_id = ${toasted}) as phone,
              (select address_line from profile_data where citizen_id = ${toasted}) as address,
              (select deleted_at is not null from profile_data where citizen_id = ${deleted}) as golden_gone,
              (select deleted_at is not null from profile_summary where citizen_id = ${deleted}) as profile_gone,
              (select display_name from profile_summary where citizen_id = 9001) as new_name`;
          const arrived = row.phone !== oldMasked && row.golden_gone && row.profile_gone &&
            row.new_name !== null;
          return arrived && row;
        }, { timeoutMs: 60_000 });
        assertEquals(row.phone, partial(newPhone, 0, 4, "*"));
        assertEquals(row.address, "[redacted]", "the TOASTed column keeps its stored value");
        // The example hides the length of names too (mask.length 5).
        assertEquals(row.new_name, partial("Ishaan Verghese", 1, 0, "*", 5));
      } finally {
        await streams.stop();
      }

      const deadLettered = reports.map((r) => `${r.pipeline}: ${r.stats.deadLettered}`);
      assertEquals(reports.every((r) => r.stats.deadLettered === 0), true, deadLettered.join(", "));
      const files = [...Deno.readDirSync(scratch)].map((entry) => entry.name);
      assertEquals(files.filter((name) => name.endsWith(".jsonl")), [], "no dead-letter files");

      // Every message on the two topics that carry identity data, scanned for clear values.
      const leaks: string[] = [];
      let scanned = 0;
      for (
        const [consumer, topic] of [
          ["profile-updates", "warehouse-to-citizen.profile_360"],
          ["golden-record-updates", "warehouse-to-citizen.golden_records"],
        ]
      ) {
        const messages = await committedMessages(`sluice-${consumer}-${id}`, `${id}-${topic}`);
        scanned += messages.length;
        for (const message of messages) {
          for (const secret of secrets) {
            if (message.includes(secret)) leaks.push(`${topic}: ${secret}`);
          }
        }
      }
      assert(scanned >= 10 + 15 + 1 + 1 + 2, `only ${scanned} messages scanned`);
      assertEquals(leaks, []);
    } finally {
      await source.end();
      await target.end();
      await warehouse.drop();
      await citizen.drop();
      await Deno.remove(scratch, { recursive: true });
    }
  },
});
