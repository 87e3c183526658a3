/**
 * `--full-refresh` with the postgres sink's version guard (TRIAL2 item 12),
 * postgres_query → postgres against the real PostgreSQL: a target row left
 * stale at the source's version is repaired by a full refresh, and an older
 * version still never replaces a newer one.
 */
import { assertEquals } from "../_assert.ts";
import { specsFrom, syncFixture } from "../_batch.ts";
import { MemoryOffsetStore } from "../../core/offsets.ts";
import { runPipeline } from "../../core/pipeline.ts";

const SOURCE_DDL = `
  create table public.items (id int primary key, v text not null,
    updated_at timestamptz not null default now());
  insert into public.items (id, v) select g, 'v' || g from generate_series(1, 500) g;`;

const TARGET_DDL = `
  create table public.items_copy (id int primary key, v text not null, updated_at timestamptz,
    deleted_at timestamptz)`;

function connector(sourceUrl: string, targetUrl: string, extra: Record<string, string>) {
  return {
    name: "items_job",
    config: {
      "connector.class": "postgres_query",
      "connection.url": sourceUrl,
      table: "public.items",
      mode: "incremental",
      "chunk.size": "100",
      "sink.class": "postgres",
      "sink.connection.url": targetUrl,
      "sink.table": "public.items_copy",
      "sink.version.column": "updated_at",
      ...extra,
    },
  };
}

const variants: Record<string, Record<string, string>> = {
  // No transform: the rows go to the sink as COPY text.
  "COPY text": {},
  // A transform: the rows go as records.
  records: {
    transforms: "upper",
    "transforms.upper.type": "org.apache.kafka.connect.transforms.ReplaceField$Value",
    "transforms.upper.renames": "v:v",
  },
  "chunks (copy=false)": { copy: "false" },
};

for (const [name, extra] of Object.entries(variants)) {
  Deno.test(`a full refresh repairs a row left stale at the source's version (${name})`, async () => {
    await using db = await syncFixture("refresh_equal", SOURCE_DDL, TARGET_DDL);
    const [spec] = await specsFrom(connector(db.source.url, db.target.url, extra));
    const offsets = new MemoryOffsetStore();
    const first = await runPipeline(spec, { offsets });
    assertEquals(first.status, "succeeded", first.error?.message);
    assertEquals(first.stats.written, 500);
    // An update that left updated_at alone (as a CDC event did in the trial),
    // and a target row newer than the source's.
    await db.sourceSql.unsafe("update public.items set v = 'fixed' where id = 7");
    await db.targetSql.unsafe(
      "update public.items_copy set v = 'newer', updated_at = updated_at + interval '1 hour' where id = 8",
    );
    const again = await runPipeline(spec, { offsets });
    assertEquals(again.status, "succeeded", again.error?.message);
    const stale = await db.targetSql`select v from public.items_copy where id = 7`;
    assertEquals(stale[0].v, "v7", "an ordinary run leaves the equal version alone");

    const refresh = await runPipeline(spec, { offsets }, { fullRefresh: true });
    assertEquals(refresh.status, "succeeded", refresh.error?.message);
    assertEquals(refresh.stats.read, 500);
    assertEquals([refresh.stats.written, refresh.stats.skipped], [499, 1]);
    assertEquals(
      refresh.validation.every((check) => check.ok),
      true,
      JSON.stringify(refresh.validation),
    );
    const rows = await db
      .targetSql`select id, v from public.items_copy where id in (7, 8) order by id`;
    assertEquals(rows.map((r) => [r.id, r.v]), [[7, "fixed"], [8, "newer"]]);
  });
}
