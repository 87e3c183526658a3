/**
 * An update that changes a row's key and leaves a TOASTed value unchanged.
 * PostgreSQL does not send that value; the change becomes a delete of the
 * old key and a create of the new one, and the create must not store NULL
 * in its place: the sink takes it from the row under the old key, the
 * source takes it from a REPLICA IDENTITY FULL old image, and when neither
 * can, the record fails loudly instead. Also through Kafka with typed JSON,
 * which writes a missing field as null on the wire.
 */
import { assert, assertEquals, assertMatch } from "../_assert.ts";
import { specsFrom, type SyncFixture, syncFixture, tableDigest } from "../_batch.ts";
import { startStream, uniqueSlot, waitForActiveSlot } from "../_cdc.ts";
import { kafkaSpecs, readTopic, text, uniqueName } from "../_kafka.ts";
import { createHmac } from "node:crypto";
import { waitUntil } from "../_wait.ts";

const SOURCE = `
  create table public.docs (
    tenant int, no int, title text, secret text, body text, nums int[],
    primary key (tenant, no));
  alter table public.docs alter column body set storage external;
  alter table public.docs alter column secret set storage external;
  alter table public.docs alter column nums set storage external;`;
const TARGET = `
  create table public.docs (
    tenant int, no int, title text, secret text, body text, nums int[], deleted_at timestamptz,
    primary key (tenant, no));`;

/** A row whose body, secret and nums are all stored out of line. */
const INSERT = (tenant: number, no: number) => `
  insert into docs values (${tenant}, ${no}, 'first',
    (select string_agg(md5(g::text), '') from generate_series(1, 400) g) || '@secret.example',
    (select string_agg(md5((g * 7)::text), '') from generate_series(1, 500) g),
    (select array_agg(g * 13) from generate_series(1, 3000) g))`;

/** The columns compared (secret is masked on the way, so compared apart). */
const LIVE =
  `select tenant, no, title, md5(body) as body, md5(nums::text) as nums from docs where %s order by 1, 2`;

function live(where: string): string {
  return LIVE.replace("%s", where);
}

async function cdcSpec(f: SyncFixture, slot: string, extra: Record<string, string> = {}) {
  const [spec] = await specsFrom({
    name: uniqueName("keychange"),
    config: {
      "connector.class": "postgres_cdc",
      "connection.url": f.source.url,
      "topic.prefix": "src",
      "slot.name": slot,
      "publication.name": slot,
      "snapshot.mode": "never",
      "poll.interval.ms": "20",
      transforms: "mask",
      "transforms.mask.type": "mask",
      "transforms.mask.fields": "secret",
      "transforms.mask.fields.secret.strategy": "redact",
      "transforms.mask.fields.secret.replacement": "[hidden]",
      "sink.class": "postgres",
      "sink.connection.url": f.target.url,
      "sink.table": "public.docs",
      ...extra,
    },
  });
  return spec;
}

for (const mode of ["soft", "hard"]) {
  Deno.test(`direct CDC: a key change keeps the unchanged TOAST values (${mode} deletes)`, async () => {
    await using f = await syncFixture(`keychange_${mode}`, SOURCE, TARGET);
    const slot = uniqueSlot(`keychange_${mode}`);
    const stream = startStream(await cdcSpec(f, slot, { "sink.delete.mode": mode }));
    try {
      await waitForActiveSlot(f.sourceSql, slot);
      await f.sourceSql.unsafe(INSERT(1, 10));
      await f.sourceSql.unsafe(INSERT(1, 11));
      await waitUntil("the rows", async () => (await f.targetSql`select 1 from docs`).length === 2);
      // One key change alone, one after an update of the same row in the same transaction.
      await f.sourceSql`update docs set no = 20 where tenant = 1 and no = 10`;
      await f.sourceSql.begin(async (tx) => {
        await tx`update docs set title = 'second' where tenant = 1 and no = 11`;
        await tx`update docs set no = 21, tenant = 2 where tenant = 1 and no = 11`;
      });
      // Moved twice in one transaction: the values come from the row under the first key.
      await f.sourceSql.unsafe(INSERT(1, 12));
      await waitUntil(
        "the third row",
        async () => (await f.targetSql`select 1 from docs where no = 12`).length === 1,
      );
      await f.sourceSql.begin(async (tx) => {
        await tx`update docs set no = 30 where tenant = 1 and no = 12`;
        await tx`update docs set no = 31 where tenant = 1 and no = 30`;
      });
      await waitUntil(
        "the moved rows",
        async () =>
          (await f.targetSql`select 1 from docs where deleted_at is null and no > 19`).length === 3,
      );
      const where = "deleted_at is null";
      assertEquals(
        await tableDigest(f.targetSql, live(where)),
        await tableDigest(f.sourceSql, live("true")),
      );
      const secrets = await f.targetSql`select no, secret from docs where ${
        f.targetSql.unsafe(where)
      }`;
      assertEquals(secrets.map((row) => row.secret), ["[hidden]", "[hidden]", "[hidden]"]);
      if (mode === "hard") {
        assertEquals((await f.targetSql`select count(*)::int as n from docs`)[0].n, 3);
      }
    } finally {
      const report = await stream.stop();
      assertEquals(report.error?.message, undefined);
    }
  });
}

Deno.test("direct CDC: with REPLICA IDENTITY FULL a key change carries the values itself", async () => {
  await using f = await syncFixture(
    "keychange_full",
    SOURCE + "alter table public.docs replica identity full;",
    TARGET,
  );
  const slot = uniqueSlot("keychange_full");
  const stream = startStream(await cdcSpec(f, slot, { "sink.delete.mode": "hard" }));
  try {
    await waitForActiveSlot(f.sourceSql, slot);
    await f.sourceSql.unsafe(INSERT(1, 10));
    await waitUntil("the row", async () => (await f.targetSql`select 1 from docs`).length === 1);
    // The target lost the row: only the event can give the values now.
    await f.targetSql`delete from docs`;
    await f.sourceSql`update docs set no = 20 where tenant = 1 and no = 10`;
    await waitUntil(
      "the moved row",
      async () => (await f.targetSql`select 1 from docs`).length === 1,
    );
    assertEquals(
      await tableDigest(f.targetSql, live("true")),
      await tableDigest(f.sourceSql, live("true")),
    );
    assertEquals((await f.targetSql`select secret from docs`)[0].secret, "[hidden]");
  } finally {
    const report = await stream.stop();
    assertEquals(report.error?.message, undefined);
  }
});

Deno.test("direct CDC: a key change whose values nobody holds stops loudly, never writes NULLs", async () => {
  await using f = await syncFixture("keychange_lost", SOURCE, TARGET);
  const slot = uniqueSlot("keychange_lost");
  const stream = startStream(await cdcSpec(f, slot, { "sink.delete.mode": "hard" }));
  await waitForActiveSlot(f.sourceSql, slot);
  await f.sourceSql.unsafe(INSERT(1, 10));
  await waitUntil("the row", async () => (await f.targetSql`select 1 from docs`).length === 1);
  await f.targetSql`delete from docs`;
  await f.sourceSql`update docs set no = 20 where tenant = 1 and no = 10`;
  const report = await stream.done;
  assertMatch(report.error?.message ?? "", /unchanged TOAST value of .*REPLICA IDENTITY FULL/s);
  assertEquals((await f.targetSql`select no from docs`).length, 0);
});

Deno.test({
  name: "CDC over Kafka with JSON schemas: unchanged TOAST values survive updates and key changes",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    // Read from Kafka, the row under the old key is taken only when its position shows it
    // older than the move (a new row reusing the key may have come first): _source_lsn.
    const positioned = TARGET.replace(
      "deleted_at timestamptz,",
      "deleted_at timestamptz, _source_lsn pg_lsn,",
    );
    await using f = await syncFixture("keychange_kafka", SOURCE, positioned);
    const slot = uniqueSlot("keychange_kafka");
    const prefix = uniqueName("keychange");
    const [capture, consume] = await kafkaSpecs([
      {
        name: uniqueName("keychange-capture"),
        config: {
          "connector.class": "postgres_cdc",
          "connection.url": f.source.url,
          "topic.prefix": prefix,
          "slot.name": slot,
          "publication.name": slot,
          "snapshot.mode": "never",
          "poll.interval.ms": "20",
          "value.converter": "org.apache.kafka.connect.json.JsonConverter",
          "value.converter.schemas.enable": "true",
          transforms: "mask",
          "transforms.mask.type": "mask",
          "transforms.mask.fields": "secret",
          "transforms.mask.fields.secret.strategy": "redact",
          "transforms.mask.fields.secret.replacement": "[hidden]",
        },
      },
      {
        name: uniqueName("keychange-consume"),
        config: {
          "connector.class": "kafka",
          topics: `${prefix}.public.docs`,
          "fetch.max.wait.ms": "50",
          "value.converter": "org.apache.kafka.connect.json.JsonConverter",
          "value.converter.schemas.enable": "true",
          "sink.class": "postgres",
          "sink.connection.url": f.target.url,
          "sink.table": "public.docs",
        },
      },
    ]);
    const producer = startStream(capture);
    const consumer = startStream(consume);
    try {
      await waitForActiveSlot(f.sourceSql, slot);
      await f.sourceSql.unsafe(INSERT(1, 10));
      await waitUntil("the row", async () => (await f.targetSql`select 1 from docs`).length === 1);
      await f.sourceSql`update docs set title = 'second' where tenant = 1 and no = 10`;
      await waitUntil(
        "the update",
        async () => (await f.targetSql`select 1 from docs where title = 'second'`).length === 1,
      );
      await f.sourceSql`update docs set no = 20 where tenant = 1 and no = 10`;
      await waitUntil(
        "the moved row",
        async () => (await f.targetSql`select 1 from docs where no = 20`).length === 1,
      );
      const where = "deleted_at is null";
      assertEquals(
        await tableDigest(f.targetSql, live(where)),
        await tableDigest(f.sourceSql, live("true")),
      );
      const [row] = await f.targetSql`select secret from docs where no = 20`;
      assert(row.secret === "[hidden]", `secret is ${String(row.secret).slice(0, 40)}`);
    } finally {
      const reports = [await producer.stop(), await consumer.stop()];
      assertEquals(reports.map((r) => r.error?.message), [undefined, undefined]);
    }
  },
});

/** A table whose key column is masked, with a value stored out of line. */
const CARDS = `
  create table public.cards (code text primary key, body text);
  alter table public.cards alter column body set storage external;`;
const CARDS_TARGET =
  `create table public.cards (code text primary key, body text, deleted_at timestamptz);`;
const CARD = (code: string) =>
  `insert into cards values ('${code}', (select string_agg(md5(g::text), '') from generate_series(1, 200) g))`;
const MASK_KEY = "a mask key of at least 32 bytes.";
const maskedCode = (code: string) => createHmac("sha256", MASK_KEY).update(code).digest("hex");
const MASK_CODE = {
  transforms: "mask",
  "transforms.mask.type": "mask",
  "transforms.mask.fields": "code",
  "transforms.mask.strategy": "hmac",
  "transforms.mask.key": MASK_KEY,
};

Deno.test("direct CDC: a key change of a masked key column keeps the unchanged TOAST values", async () => {
  await using f = await syncFixture("keychange_masked", CARDS, CARDS_TARGET);
  const slot = uniqueSlot("keychange_masked");
  const [spec] = await specsFrom({
    name: uniqueName("keychange-masked"),
    config: {
      "connector.class": "postgres_cdc",
      "connection.url": f.source.url,
      "topic.prefix": "src",
      "slot.name": slot,
      "publication.name": slot,
      "snapshot.mode": "never",
      "poll.interval.ms": "20",
      ...MASK_CODE,
      "sink.class": "postgres",
      "sink.connection.url": f.target.url,
      "sink.table": "public.cards",
    },
  });
  const stream = startStream(spec);
  try {
    await waitForActiveSlot(f.sourceSql, slot);
    await f.sourceSql.unsafe(CARD("CODE-1"));
    await waitUntil("the row", async () => (await f.targetSql`select 1 from cards`).length === 1);
    // The create of the new key names the old one in a header: masked as
    // the target stored it, or the body could not be found under it.
    await f.sourceSql`update cards set code = 'CODE-2' where code = 'CODE-1'`;
    await waitUntil(
      "the moved row",
      async () =>
        (await f.targetSql`select 1 from cards where code = ${maskedCode("CODE-2")}`).length === 1,
    );
    assertEquals(
      await tableDigest(f.targetSql, `select md5(body) from cards where deleted_at is null`),
      await tableDigest(f.sourceSql, `select md5(body) from cards`),
    );
    const clear = await f.targetSql`select code from cards where cards::text like '%CODE-%'`;
    assertEquals(clear.length, 0);
  } finally {
    const report = await stream.stop();
    assertEquals(report.error?.message, undefined);
  }
});

Deno.test({
  name: "CDC to Kafka: a key change of a masked key column writes its key headers masked",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await using f = await syncFixture("keychange_masked_kafka", CARDS, CARDS_TARGET);
    const slot = uniqueSlot("keychange_masked_kafka");
    const prefix = uniqueName("keychange-masked");
    const [capture] = await kafkaSpecs({
      name: uniqueName("keychange-masked-capture"),
      config: {
        "connector.class": "postgres_cdc",
        "connection.url": f.source.url,
        "topic.prefix": prefix,
        "slot.name": slot,
        "publication.name": slot,
        "snapshot.mode": "never",
        "poll.interval.ms": "20",
        ...MASK_CODE,
      },
    });
    const stream = startStream(capture);
    try {
      await waitForActiveSlot(f.sourceSql, slot);
      await f.sourceSql.unsafe(CARD("CODE-1"));
      await f.sourceSql`update cards set code = 'CODE-2' where code = 'CODE-1'`;
      // The create, the delete of the old key (and its tombstone), the create of the new one.
      const messages = await readTopic(`${prefix}.public.cards`, 4);
      const headers = messages.map((message) =>
        Object.fromEntries(message.headers.map(([name, value]) => [name, text(value)]))
      );
      assertEquals(headers.map((h) => h["__debezium.newkey"]).filter(Boolean), [
        JSON.stringify({ code: maskedCode("CODE-2") }),
      ]);
      assertEquals(headers.map((h) => h["__debezium.oldkey"]).filter(Boolean), [
        JSON.stringify({ code: maskedCode("CODE-1") }),
      ]);
      for (const message of messages) {
        const whole = [text(message.key), text(message.value), JSON.stringify(headers)].join();
        assert(!whole.includes("CODE-"), `a clear code on the topic: ${whole.slice(0, 200)}`);
      }
    } finally {
      const report = await stream.stop();
      assertEquals(report.error?.message, undefined);
    }
  },
});
