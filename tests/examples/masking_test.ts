import postgres from "postgres";
import { assert, assertEquals } from "../_assert.ts";
import { builtinRegistry } from "../../builtins.ts";
import { buildPipelines, loadPipelines, parseConnectors } from "../../core/config.ts";
import { MemoryOffsetStore } from "../../core/offsets.ts";
import { Runtime } from "../../core/runtime.ts";
import { applySchema, generateWarehouse } from "../../examples/warehouse_to_citizen/generate.ts";
import { createTestDatabase } from "../_services.ts";

const pipelines =
  new URL("../../examples/warehouse_to_citizen/pipelines/batch/", import.meta.url).pathname;

/** Every personal value of the warehouse that the citizen database must not hold in clear. */
async function personalValues(sql: postgres.Sql): Promise<string[]> {
  const rows = await sql.unsafe<{ value: string }[]>(`
    select unnest(array[full_name, national_id, phone, email]) as value from public.profile_360
    union select unnest(array[full_name, national_id, phone, email, address_line]) from public.golden_records`);
  return [
    ...new Set(rows.map((row) => row.value).filter((v): v is string => !!v && v.length >= 6)),
  ];
}

/** The text of every row of every table in the database, one string per table. */
async function everyTable(sql: postgres.Sql): Promise<Map<string, string>> {
  const tables = await sql<{ name: string }[]>`
    select format('%I.%I', table_schema, table_name) as name from information_schema.tables
    where table_schema not in ('pg_catalog', 'information_schema') and table_type = 'BASE TABLE'`;
  const texts = new Map<string, string>();
  for (const { name } of tables) {
    const [{ text }] = await sql.unsafe<{ text: string | null }[]>(
      `select string_agg(t::text, E'\\n') as text from ${name} t`,
    );
    texts.set(name, text ?? "");
  }
  return texts;
}

Deno.test("personal values of smart_warehouse never appear in clear in smart_citizen after the batch jobs", async () => {
  const warehouse = await createTestDatabase("mask_warehouse");
  const citizen = await createTestDatabase("mask_citizen");
  const deadLetters = await Deno.makeTempDir();
  try {
    await applySchema(warehouse.url, "warehouse.sql");
    await applySchema(citizen.url, "citizen.sql");
    await generateWarehouse(warehouse.url, { rows: 300, seed: 7, asOf: "2026-11-01T00:00:00Z" });
    const env = {
      WAREHOUSE_URL: warehouse.url,
      CITIZEN_URL: citizen.url,
      SLUICE_MASK_KEY: "test-hmac-key-that-is-long-enough-123",
      SLUICE_FPE_KEY: "2b7e151628aed2a6abf7158809cf4f3c",
      SLUICE_DEAD_LETTER_DIR: deadLetters,
    };
    const specs = await loadPipelines([pipelines], {
      registry: builtinRegistry(),
      providers: { env: (name) => env[name as keyof typeof env], readText: Deno.readTextFileSync },
    });
    const batch = specs.filter((spec) => spec.source.plugin.mode === "batch");
    const runtime = new Runtime(batch, { offsets: new MemoryOffsetStore() });
    for (const spec of batch) {
      const report = await runtime.runJob(spec.name, { noRetries: true });
      assertEquals(report.status, "succeeded", `${spec.name}: ${report.error?.message}`);
    }
    await runtime.stop();

    const source = postgres(warehouse.url, { max: 1 });
    const target = postgres(citizen.url, { max: 1 });
    try {
      const secrets = await personalValues(source);
      assert(secrets.length > 1000, `only ${secrets.length} personal values to look for`);
      const tables = await everyTable(target);
      const [{ count }] = await target`select count(*)::int as count from profile_summary`;
      assertEquals(count, 300);
      const leaks: string[] = [];
      for (const [table, text] of tables) {
        for (const secret of secrets) {
          if (text.includes(secret)) leaks.push(`${table}: ${secret}`);
        }
      }
      assertEquals(leaks, []);
      // Masked, not emptied: national IDs keep their format.
      const [{ id }] =
        await target`select national_id as id from profile_summary where national_id is not null limit 1`;
      assert(/^\d{4} \d{4} \d{4}$/.test(id), `national_id ${id} lost its format`);
    } finally {
      await source.end();
      await target.end();
    }
  } finally {
    await warehouse.drop();
    await citizen.drop();
    await Deno.remove(deadLetters, { recursive: true });
  }
});

Deno.test("a record that fails after the mask step is dead-lettered masked, never in clear", async () => {
  const warehouse = await createTestDatabase("mask_dlq_warehouse");
  const citizen = await createTestDatabase("mask_dlq_citizen");
  const deadLetters = await Deno.makeTempDir();
  try {
    await applySchema(warehouse.url, "warehouse.sql");
    await applySchema(citizen.url, "citizen.sql");
    await generateWarehouse(warehouse.url, { rows: 50, seed: 3, asOf: "2026-11-01T00:00:00Z" });
    const env: Record<string, string> = {
      WAREHOUSE_URL: warehouse.url,
      CITIZEN_URL: citizen.url,
      SLUICE_MASK_KEY: "test-hmac-key-that-is-long-enough-123",
      SLUICE_FPE_KEY: "2b7e151628aed2a6abf7158809cf4f3c",
      SLUICE_DEAD_LETTER_DIR: deadLetters,
    };
    const daily = JSON.parse(await Deno.readTextFile(`${pipelines}daily.json`));
    const profileSync = daily.find((entry: { name: string }) => entry.name === "profile_sync");
    // A step after the mask that fails every row: gender is text, not a number.
    profileSync.config.transforms = "mask,breaks";
    profileSync.config["transforms.breaks.type"] = "cast";
    profileSync.config["transforms.breaks.spec"] = "gender:int8";
    delete profileSync.config["job.depends.on"];
    const [spec] = await buildPipelines(parseConnectors(profileSync), {
      registry: builtinRegistry(),
      providers: { env: (name) => env[name], readText: Deno.readTextFileSync },
    });
    const runtime = new Runtime([spec], { offsets: new MemoryOffsetStore() });
    const report = await runtime.runJob(spec.name, { noRetries: true });
    await runtime.stop();
    // Every row with a gender fails (the few without one pass).
    assert(report.stats.deadLettered >= 40, `${report.stats.deadLettered} dead-lettered`);

    const lines = (await Deno.readTextFile(`${deadLetters}/batch.jsonl`)).trim().split("\n");
    assertEquals(lines.length, report.stats.deadLettered);
    assertEquals(JSON.parse(lines[0]).stage, "breaks");
    const source = postgres(warehouse.url, { max: 1 });
    try {
      const [{ values }] = await source<{ values: string[] }[]>`select array_agg(v) as values
        from profile_360, unnest(array[full_name, national_id, phone, email]) v where v is not null`;
      const text = lines.join("\n");
      assertEquals(values.filter((value) => text.includes(value)), []);
    } finally {
      await source.end();
    }
  } finally {
    await warehouse.drop();
    await citizen.drop();
    await Deno.remove(deadLetters, { recursive: true });
  }
});
