/**
 * A `filter` over change events keeps the target to the rows that pass
 * (trial 7, finding 2): a row an update takes out of the condition is
 * deleted at the target, one an update brings back returns, and a delete
 * passes whatever its row, also under REPLICA IDENTITY FULL.
 */
import { assertEquals } from "../_assert.ts";
import { specsFrom, type SyncFixture, syncFixture } from "../_batch.ts";
import { startStream, uniqueSlot, waitForActiveSlot } from "../_cdc.ts";
import { waitUntil } from "../_wait.ts";

const SOURCE = `create table public.apps (id int primary key, status text);
  alter table apps replica identity full;
  insert into apps values (1, 'active'), (2, 'active'), (3, 'draft');`;
const TARGET = `create table public.apps (id int primary key, status text,
  deleted_at timestamptz, _source_lsn pg_lsn);`;

async function live(f: SyncFixture): Promise<string> {
  const rows = await f.targetSql<{ id: number; status: string }[]>`
    select id, status from apps where deleted_at is null order by id`;
  return rows.map((r) => `${r.id}:${r.status}`).join(" ");
}

Deno.test("a filter keeps the target to the rows that pass: a row that leaves the condition is deleted there, and comes back with it", async () => {
  await using f = await syncFixture("filter_rows", SOURCE, TARGET);
  const slot = uniqueSlot("filter_rows");
  const [spec] = await specsFrom({
    name: "filter-rows",
    config: {
      "connector.class": "postgres_cdc",
      "connection.url": f.source.url,
      "topic.prefix": "src",
      "slot.name": slot,
      "publication.name": `${slot}_pub`,
      "table.include.list": "public.apps",
      "poll.interval.ms": "20",
      transforms: "noDrafts",
      "transforms.noDrafts.type": "filter",
      "transforms.noDrafts.condition": "value.status != 'draft'",
      "sink.class": "postgres",
      "sink.connection.url": f.target.url,
      "sink.table": "public.apps",
    },
  });
  const stream = startStream(spec);
  try {
    await waitForActiveSlot(f.sourceSql, slot);
    await waitUntil("the snapshot", async () => await live(f) === "1:active 2:active");
    await f.sourceSql`update apps set status = 'draft' where id = 1`;
    await f.sourceSql`update apps set status = 'draft' where id = 2`;
    await f.sourceSql`delete from apps where id = 2`;
    await f.sourceSql`update apps set status = 'active' where id = 3`;
    await waitUntil("rows 1 and 2 gone, row 3 in", async () => await live(f) === "3:active");
    await f.sourceSql`update apps set status = 'active' where id = 1`;
    await waitUntil("row 1 back", async () => await live(f) === "1:active 3:active");
  } finally {
    const report = await stream.stop();
    assertEquals(report.status, "stopped", report.error?.message);
  }
});
