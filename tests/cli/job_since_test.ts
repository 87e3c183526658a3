/**
 * `sluice job run <configs> <job> --since <time>` (issue 10): an incremental
 * job re-syncs the rows stamped at or after the time, and leaves its stored
 * watermark where it was, so the next scheduled run neither re-reads
 * everything nor misses anything.
 */
import { assertEquals, assertMatch } from "../_assert.ts";
import { syncFixture } from "../_batch.ts";

const CLI = new URL("../../cli/main.ts", import.meta.url).pathname;
const ROOT = new URL("../..", import.meta.url).pathname;

async function sluice(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", CLI, ...args, "--log-level", "warning"],
    cwd: ROOT,
    stdin: "null",
  }).output();
  const decode = (data: Uint8Array) => new TextDecoder().decode(data);
  return { code: output.code, out: decode(output.stdout), err: decode(output.stderr) };
}

Deno.test("job run --since re-syncs a window of an incremental job and keeps its watermark", async () => {
  await using db = await syncFixture(
    "job_since",
    "create table public.items (id int primary key, name text, updated_at timestamptz not null)",
    "create table public.items (id int primary key, name text, updated_at timestamptz)",
  );
  await db.sourceSql`insert into items select g, 'n' || g,
    case when g <= 10 then timestamptz '2024-01-01' else timestamptz '2024-06-01' end + g * interval '1 minute'
    from generate_series(1, 20) g`;
  const folder = await Deno.makeTempDir({ prefix: "sluice-job-since-" });
  try {
    await Deno.writeTextFile(
      `${folder}/items.json`,
      JSON.stringify({
        name: "items_job",
        config: {
          "connector.class": "postgres_query",
          "connection.url": db.source.url,
          table: "public.items",
          mode: "incremental",
          "timestamp.column.name": "updated_at",
          "sink.class": "postgres",
          "sink.connection.url": db.target.url,
          "sink.table": "public.items",
          "sink.delete.mode": "none",
        },
      }),
    );
    const offsets = ["--offsets", `${folder}/.offsets.json`];
    const watermark = async () =>
      (await db.targetSql`select "offset" from public.sluice_offsets where pipeline = 'items_job'`)[
        0
      ]
        ?.offset;

    const first = await sluice("job", "run", folder, "items_job", ...offsets);
    assertEquals(first.code, 0, first.err);
    const before = await watermark();
    assertEquals(before.ts.startsWith("2024-06-01"), true, JSON.stringify(before));

    // The target drifted; re-sync what changed since March.
    await db.targetSql`update public.items set name = 'drift'`;
    const window = await sluice(
      "job",
      "run",
      folder,
      "items_job",
      "--since",
      "2024-03-01T00:00:00Z",
      ...offsets,
    );
    assertEquals(window.code, 0, window.err + window.out);
    const names = await db.targetSql<{ id: number; name: string }[]>`
      select id, name from public.items order by id`;
    assertEquals(names.filter((r) => r.name === "drift").map((r) => r.id), [
      1,
      2,
      3,
      4,
      5,
      6,
      7,
      8,
      9,
      10,
    ]);
    assertEquals(names.filter((r) => r.id > 10).every((r) => r.name === `n${r.id}`), true);
    assertEquals(await watermark(), before, "the stored watermark is not moved");

    // The next ordinary run goes on from the watermark: nothing new, nothing re-read.
    await db.targetSql`update public.items set name = 'drift2' where id = 20`;
    const next = await sluice("job", "run", "items_job", folder, ...offsets);
    assertEquals(next.code, 0, next.err);
    const [{ name }] = await db.targetSql`select name from public.items where id = 20`;
    assertEquals(name, "drift2");

    const both = await sluice(
      "job",
      "run",
      folder,
      "items_job",
      "--since",
      "2024-03-01",
      "--full-refresh",
      ...offsets,
    );
    assertEquals(both.code, 2);
    assertMatch(both.err, /--since/);
    const badTime = await sluice(
      "job",
      "run",
      folder,
      "items_job",
      "--since",
      "last tuesday",
      ...offsets,
    );
    assertEquals(badTime.code, 2);
    assertMatch(badTime.err, /ISO 8601/);
  } finally {
    await Deno.remove(folder, { recursive: true });
  }
});
