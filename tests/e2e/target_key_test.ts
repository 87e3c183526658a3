/**
 * A target keyed by other columns than the source's key
 * (`sink.primary.key.fields`, or a `value_to_key` re-key): an update that
 * changes them moves the row when the event carries the old row (REPLICA
 * IDENTITY FULL), and fails loudly when it cannot tell (trial 7, finding 6:
 * the old row stayed live beside the new one). Rows flattened by `unwrap`
 * never carry the old row: they fail from the first one.
 */
import { assert, assertEquals, assertMatch } from "../_assert.ts";
import { specsFrom, type SyncFixture, syncFixture } from "../_batch.ts";
import { startStream, uniqueSlot, waitForActiveSlot } from "../_cdc.ts";
import { waitUntil } from "../_wait.ts";

const TARGET = `create table public.people (email text primary key, id int, name text,
  deleted_at timestamptz, _source_lsn pg_lsn);`;

async function live(f: SyncFixture): Promise<string> {
  const rows = await f.targetSql<{ email: string; id: number }[]>`
    select email, id from people where deleted_at is null order by id, email`;
  return rows.map((r) => `${r.id}:${r.email}`).join(" ");
}

/** How the target comes to be keyed by email rather than by the source's id. */
const BY_EMAIL = {
  "primary.key.fields": { "sink.primary.key.fields": "email" },
  "value_to_key": {
    "transforms": "key",
    "transforms.key.type": "value_to_key",
    "transforms.key.fields": "email",
  },
  "unwrap": {
    "transforms": "unwrap",
    "transforms.unwrap.type": "unwrap",
    "sink.primary.key.fields": "email",
  },
};

async function run(identity: "default" | "full", keyedBy: keyof typeof BY_EMAIL) {
  await using f = await syncFixture(
    `target_key_${identity}`,
    `create table public.people (id int primary key, email text, name text);
     alter table people replica identity ${identity};
     insert into people values (1, 'a@x', 'A'), (2, 'b@x', 'B');`,
    TARGET,
  );
  const slot = uniqueSlot(`target_key_${identity}`);
  const dead = await Deno.makeTempFile({ prefix: "sluice-target-key-", suffix: ".jsonl" });
  const [spec] = await specsFrom({
    name: "by-email",
    config: {
      "connector.class": "postgres_cdc",
      "connection.url": f.source.url,
      "topic.prefix": "src",
      "slot.name": slot,
      "publication.name": `${slot}_pub`,
      "table.include.list": "public.people",
      "poll.interval.ms": "20",
      "sink.class": "postgres",
      "sink.connection.url": f.target.url,
      "sink.table": "public.people",
      ...BY_EMAIL[keyedBy],
      "errors.tolerance": "all",
      "errors.deadletterqueue.file.path": dead,
    },
  });
  const stream = startStream(spec);
  try {
    await waitForActiveSlot(f.sourceSql, slot);
    const letters = async () => (await Deno.readTextFile(dead)).split("\n").length - 1;
    // Flattened rows all fail, the snapshot's too: nothing reaches the target.
    if (keyedBy === "unwrap") {
      await waitUntil("the snapshot's dead letters", async () => await letters() === 2);
    } else await waitUntil("the snapshot", async () => await live(f) === "1:a@x 2:b@x");
    await f.sourceSql`update people set email = 'a2@x' where id = 1`;
    await f.sourceSql`update people set name = 'Bee' where id = 2`;
    await f.sourceSql`insert into people values (3, 'c@x', 'C')`;
    if (keyedBy === "unwrap") {
      await waitUntil("five dead letters", async () => await letters() === 5);
    } else await waitUntil("row 3", async () => (await live(f)).includes("3:c@x"));
    return { live: await live(f), dead: await Deno.readTextFile(dead) };
  } finally {
    const report = await stream.stop();
    assertEquals(report.status, "stopped", report.error?.message);
    await Deno.remove(dead);
  }
}

for (const keyedBy of ["primary.key.fields", "value_to_key"] as const) {
  Deno.test(`a target keyed by another column than the source's (${keyedBy}): an update that changes it moves the row with REPLICA IDENTITY FULL`, async () => {
    const { live, dead } = await run("full", keyedBy);
    assertEquals(live, "1:a2@x 2:b@x 3:c@x");
    assertEquals(dead, "");
  });

  Deno.test(`a target keyed by another column than the source's (${keyedBy}): an update without the old row fails loudly rather than leave the old row live`, async () => {
    const { live, dead } = await run("default", keyedBy);
    // Neither update can be placed: both are dead-lettered; the old rows stay as they were.
    assertEquals(live, "1:a@x 2:b@x 3:c@x");
    const letters = dead.trim().split("\n").map((line) => JSON.parse(line));
    assertEquals(letters.length, 2, dead);
    for (const letter of letters) {
      assertMatch(
        letter.error,
        /Cannot tell whether this update moved the row to another key of table public\.people: its key "email" is not the event's key.*REPLICA IDENTITY FULL/,
      );
    }
    assert(!live.includes("a2@x"), "no duplicate row for id 1");
  });
}

for (const identity of ["default", "full"] as const) {
  Deno.test(`rows flattened by unwrap into a target keyed by another column than the source's fail from the first one (replica identity ${identity})`, async () => {
    const { live, dead } = await run(identity, "unwrap");
    assertEquals(live, "");
    const letters = dead.trim().split("\n").map((line) => JSON.parse(line));
    assertEquals(letters.length, 5, dead);
    for (const letter of letters) {
      assertMatch(
        letter.error,
        /Cannot place a row flattened from a change event \(unwrap\) in table public\.people: its key "email" is not the event's key.*Leave unwrap out/,
      );
    }
  });
}
