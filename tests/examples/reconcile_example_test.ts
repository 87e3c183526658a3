/**
 * The example's daily reconciliation of `profile_summary` against generated
 * warehouse data: in sync after the full sync in both modes (the masking is
 * deterministic, and deep mode compares masked dates and income buckets as
 * the sink stored them), and it finds rows changed in smart_citizen.
 */
import { assertEquals } from "../_assert.ts";
import { builtinRegistry } from "../../builtins.ts";
import { loadPipelines } from "../../core/config.ts";
import { MemoryOffsetStore } from "../../core/offsets.ts";
import { Runtime } from "../../core/runtime.ts";
import { applySchema, generateWarehouse } from "../../examples/warehouse_to_citizen/generate.ts";
import { createTestDatabase } from "../_services.ts";
import postgres from "postgres";

const folder = new URL("../../examples/warehouse_to_citizen/pipelines/", import.meta.url).pathname;

Deno.test("the example's daily reconciliation finds profile_summary in sync, then the rows changed in it", async () => {
  const warehouse = await createTestDatabase("rc_warehouse");
  const citizen = await createTestDatabase("rc_citizen");
  const deadLetters = await Deno.makeTempDir();
  const sql = postgres(citizen.url, { max: 1, onnotice: () => {} });
  try {
    await applySchema(warehouse.url, "warehouse.sql");
    await applySchema(citizen.url, "citizen.sql");
    await generateWarehouse(warehouse.url, { rows: 500, seed: 11, asOf: "2026-11-01T00:00:00Z" });
    const env: Record<string, string> = {
      WAREHOUSE_URL: warehouse.url,
      CITIZEN_URL: citizen.url,
      SLUICE_MASK_KEY: "test-hmac-key-that-is-long-enough-123",
      SLUICE_FPE_KEY: "2b7e151628aed2a6abf7158809cf4f3c",
      SLUICE_DEAD_LETTER_DIR: deadLetters,
    };
    const specs = await loadPipelines([`${folder}batch`, `${folder}reconcile`], {
      registry: builtinRegistry(),
      providers: { env: (name) => env[name], readText: Deno.readTextFileSync },
    });
    const reconcile = specs.find((spec) => spec.name === "profile_summary_reconcile")!;
    assertEquals(reconcile.options["job.schedule"], "0 3 * * *");
    const deep = {
      ...reconcile,
      name: "deep",
      source: {
        ...reconcile.source,
        config: {
          ...(reconcile.source.config as Record<string, unknown>),
          mode: "deep",
        },
      },
    };
    await using runtime = new Runtime([
      ...specs.filter((s) => s.source.plugin.mode === "batch"),
      deep,
    ], {
      offsets: new MemoryOffsetStore(),
    });
    for (const name of ["scheme_sync", "profile_sync"]) {
      const report = await runtime.runJob(name, { noRetries: true });
      assertEquals(report.status, "succeeded", report.error?.message);
    }
    for (const name of ["profile_summary_reconcile", "deep"]) {
      const report = await runtime.runJob(name, { noRetries: true });
      assertEquals(report.status, "succeeded", `${name}: ${report.error?.message}`);
    }
    await sql`update profile_summary set source_updated_at = now()
              where citizen_id = (select min(citizen_id) from profile_summary)`;
    await sql`delete from profile_summary
              where citizen_id = (select max(citizen_id) from profile_summary)`;
    for (const name of ["profile_summary_reconcile", "deep"]) {
      const report = await runtime.runJob(name, { noRetries: true });
      assertEquals(report.status, "failed");
      const found = report.validation.find((check) => check.reconciliation)!.reconciliation!;
      assertEquals([found.missing, found.extra, found.different], [1, 0, 1], name);
    }
  } finally {
    await sql.end();
    await Deno.remove(deadLetters, { recursive: true });
    await warehouse.drop();
    await citizen.drop();
  }
});
