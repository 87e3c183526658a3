/**
 * The Kafka Connect schemas postgres_cdc attaches to its records (Debezium's
 * key and envelope schemas), rendered by the kafka sink's JsonConverter: the
 * column types, optional flags, semantic types by mode, sharing by
 * reference, and a new schema in the next message after a schema change.
 */
import postgres from "postgres";
import { assert, assertEquals, assertMatch } from "../../_assert.ts";
import { createTestDatabase } from "../../_services.ts";
import { openSource, uniqueSlot, waitForActiveSlot } from "../../_cdc.ts";
import type { ConnectSchema } from "../../../api/schema.ts";
import type { SluiceRecord } from "../../../api/record.ts";
import { recordToMessage } from "../../../sinks/kafka.ts";
import { withFittingSchemas } from "../../../api/record.ts";
import { mask } from "../../../transforms/mask/mod.ts";
import { unwrap } from "../../../transforms/unwrap.ts";
import { make } from "../../_transforms.ts";

// deno-lint-ignore no-explicit-any
type Json = any;
const idOf = (record: SluiceRecord) => (record.key as { id?: number } | null)?.id;

const text = (bytes: Uint8Array | null | undefined) =>
  bytes ? JSON.parse(new TextDecoder().decode(bytes)) : null;

/** The record as JsonConverter with schemas.enable=true writes it, parsed. */
function written(record: SluiceRecord): { key: Json; value: Json } {
  const message = recordToMessage(record, { keys: true, values: true });
  return { key: text(message.key), value: text(message.value) };
}

function afterFields(value: { schema: ConnectSchema }): Record<string, ConnectSchema> {
  const after = value.schema.fields!.find((f) => f.field === "after")!;
  return Object.fromEntries(after.fields!.map((f) => [f.field, f]));
}

/** A capture of publication `<name>_pub` through `slot`, streaming only. */
function captureSettings(url: string, name: string, slot: string): Record<string, string> {
  return {
    "connection.url": url,
    "topic.prefix": "w",
    "slot.name": slot,
    "publication.name": `${name}_pub`,
    "snapshot.mode": "never",
    "poll.interval.ms": "10",
  };
}

async function withTable(name: string, ddl: string, mode: Record<string, string>) {
  const db = await createTestDatabase(name);
  const sql = postgres(db.url, { max: 2, onnotice: () => {} });
  await sql.unsafe(ddl);
  const slot = uniqueSlot(name);
  const source = await openSource({ ...captureSettings(db.url, name, slot), ...mode });
  await waitForActiveSlot(sql, slot);
  return {
    sql,
    source,
    async [Symbol.asyncDispose]() {
      await source.close();
      await sql.end();
      await db.drop();
    },
  };
}

/**
 * A capture that lags: its slot exists from the start, but the source opens
 * only when `open` is called, after the test wrote its changes and ALTERs,
 * so the live catalog already holds the last shape when the first Relation
 * message is decoded. `ddl` creates the tables and `<name>_pub`.
 */
async function lagging(name: string, ddl: string) {
  const db = await createTestDatabase(name);
  const sql = postgres(db.url, { max: 2, onnotice: () => {} });
  await sql.unsafe(ddl);
  const slot = uniqueSlot(name);
  await sql`select pg_create_logical_replication_slot(${slot}, 'pgoutput')`;
  let source: Awaited<ReturnType<typeof openSource>> | undefined;
  return {
    sql,
    async open() {
      source = await openSource(captureSettings(db.url, name, slot));
      return source;
    },
    async [Symbol.asyncDispose]() {
      await source?.close();
      await sql.end();
      await db.drop();
    },
  };
}

Deno.test("postgres_cdc attaches Debezium's schemas and JsonConverter writes them with the payload", async () => {
  await using t = await withTable(
    "cdc_schemas",
    `create table public.t (id int primary key, amount numeric(10,2) not null, n numeric,
       born date, seen timestamp(3), at timestamptz, doc jsonb, tag uuid, flags bit(4),
       big bigint);`,
    { "time.precision.mode": "adaptive" },
  );
  await t.sql`insert into t values (1, 12.50, -0.001, '2024-02-29', '2024-02-29 10:11:12.5',
    '2024-02-29 10:11:12+05', '{"a":1}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', B'1010',
    9223372036854775807), (2, 1, 1, null, null, null, null, null, null, null)`;
  const [one, two] = await t.source.readUntil("two rows", (r) => idOf(r) === 2);
  assert(one.schemas !== undefined && one.schemas === two.schemas, "one schema object per table");
  const { key, value } = written(one);
  assertEquals(key, {
    schema: {
      type: "struct",
      fields: [{ type: "int32", optional: false, field: "id" }],
      optional: false,
      name: "w.public.t.Key",
    },
    payload: { id: 1 },
  });
  assertEquals(value.schema.name, "w.public.t.Envelope");
  assertEquals(value.schema.fields.map((f: ConnectSchema) => f.field), [
    "before",
    "after",
    "source",
    "transaction",
    "op",
    "ts_ms",
    "ts_us",
    "ts_ns",
  ]);
  const fields = afterFields(value);
  assertEquals(fields.id, { type: "int32", optional: false, field: "id" });
  assertEquals(fields.amount, {
    type: "bytes",
    optional: false,
    name: "org.apache.kafka.connect.data.Decimal",
    version: 1,
    parameters: { scale: "2", "connect.decimal.precision": "10" },
    field: "amount",
  });
  assertEquals(fields.n.name, "io.debezium.data.VariableScaleDecimal");
  assertEquals(fields.born.name, "io.debezium.time.Date");
  assertEquals([fields.seen.type, fields.seen.name], ["int64", "io.debezium.time.Timestamp"]);
  assertEquals(fields.at.name, "io.debezium.time.ZonedTimestamp");
  assertEquals(fields.doc.name, "io.debezium.data.Json");
  assertEquals(fields.tag.name, "io.debezium.data.Uuid");
  assertEquals(fields.flags.parameters, { length: "4" });
  const after = value.payload.after;
  assertEquals(after.amount, "BOI=", "1250 as two's-complement bytes");
  assertEquals(after.n, { scale: 3, value: "/w==" });
  assertEquals(after.born, 19782);
  assertEquals(after.seen, 1709201472500);
  assertEquals(after.at, "2024-02-29T05:11:12.000000Z");
  assertEquals(after.flags, "Cg==");
  assert(
    new TextDecoder().decode(recordToMessage(one, { keys: true, values: true }).value!)
      .includes('"big":9223372036854775807'),
    "an int64 beyond 2^53 is written as a bare number",
  );
  assertEquals(value.payload.op, "c");
  assertEquals(value.payload.transaction, null);
});

Deno.test("a column added or a type widened gives the next message a new schema", async () => {
  await using t = await withTable(
    "cdc_schema_change",
    `create table public.t (id int primary key, v int);`,
    {},
  );
  await t.sql`insert into t values (1, 1)`;
  await t.source.readUntil("row 1", (r) => idOf(r) === 1);
  await t.sql.unsafe(`alter table t add column note text not null default 'x'`);
  await t.sql`insert into t values (2, 2, 'two')`;
  await t.source.readUntil("row 2", (r) => idOf(r) === 2);
  await t.sql.unsafe(`alter table t alter column v type bigint`);
  await t.sql`insert into t values (3, 3000000000, 'three')`;
  await t.source.readUntil("row 3", (r) => idOf(r) === 3);
  const [one, two, three] = t.source.records.map((r) => written(r).value);
  assertEquals(Object.keys(afterFields(one)), ["id", "v"]);
  assertEquals(Object.keys(afterFields(two)), ["id", "v", "note"]);
  assertEquals(afterFields(two).note, { type: "string", optional: false, field: "note" });
  assertEquals(afterFields(two).v.type, "int32");
  assertEquals(afterFields(three).v.type, "int64");
  assertEquals(three.payload.after, { id: 3, v: 3000000000, note: "three" });
});

Deno.test("events decoded after a later ALTER keep the column types and nulls they were written with", async () => {
  await using t = await lagging(
    "cdc_schema_lag",
    `create table public.t (id int primary key, v text, gone int, n int);
     create publication cdc_schema_lag_pub for table public.t`,
  );
  const sql = t.sql;
  await sql`insert into t values (1, '42', 7, null)`;
  await sql`update t set n = 0`;
  await sql.unsafe(`alter table t drop column gone`);
  await sql.unsafe(`alter table t alter column v type int using v::int`);
  await sql.unsafe(`alter table t alter column n set not null`);
  await sql`insert into t values (2, 43, 5)`;
  const source = await t.open();
  await source.readUntil("row 2", (r) => idOf(r) === 2);
  const [one, update, two] = source.records.map((r) => written(r).value);
  assertEquals(afterFields(one).v.type, "string", "row 1 was written while v was text");
  assertEquals(afterFields(one).gone.type, "int32", "a dropped column keeps its type");
  assertEquals(one.payload.after, { id: 1, v: "42", gone: 7, n: null });
  assertEquals(
    afterFields(one).n,
    { type: "int32", optional: true, field: "n" },
    "a null written before SET NOT NULL makes the column optional again",
  );
  assertEquals(afterFields(update).n.optional, true);
  assertEquals(update.payload.after, { id: 1, v: "42", gone: 7, n: 0 });
  assertEquals(afterFields(two).v.type, "int32");
  assertEquals(afterFields(two).n, { type: "int32", optional: false, field: "n" });
  assertEquals(two.payload.after, { id: 2, v: 43, n: 5 });
});

Deno.test("a primary key altered while the capture lags does not re-key the events written before it", async () => {
  await using t = await lagging(
    "cdc_key_lag",
    `create table public.t (id int primary key, region text not null, v text);
     create publication cdc_key_lag_pub for table public.t`,
  );
  const sql = t.sql;
  await sql`insert into t values (1, 'se', 'a'), (3, 'dk', 'c')`;
  await sql`delete from t where id = 3`;
  await sql.unsafe(`alter table t drop constraint t_pkey, add primary key (region, id)`);
  await sql`insert into t values (2, 'no', 'b')`;
  const source = await t.open();
  await source.readUntil("row 2", (r) => idOf(r) === 2);
  const [one, three, deleted, tombstone, two] = source.records;
  assertEquals(tombstone.value, null);
  assertEquals(tombstone.key, { id: 3 });
  assertEquals(one.key, { id: 1 }, "row 1 was written while the key was (id)");
  assertEquals(three.key, { id: 3 });
  assertEquals(deleted.key, { id: 3 });
  assertEquals((deleted.value as Json).before, { id: 3 });
  assertEquals(
    written(one).key.schema.fields.map((f: ConnectSchema) => f.field),
    ["id"],
  );
  // The new key, in the primary key's order (not the table's).
  assertEquals(Object.keys(two.key as object), ["region", "id"]);
  assertEquals(two.key, { region: "no", id: 2 });
  assertEquals(
    written(two).key.schema.fields.map((f: ConnectSchema) => f.field),
    ["region", "id"],
  );
});

Deno.test("masked fields get schemas that fit what the masks wrote, and the payload fits them", async () => {
  await using t = await withTable(
    "cdc_schema_mask",
    `create type mood as enum ('calm', 'cross');
     create table public.people (
       ref uuid primary key, national_id bigint not null, note text not null,
       feeling mood, born date, city text, income numeric(10,2), age int);
     create publication cdc_schema_mask_pub for table public.people`,
    {},
  );
  const ref = "6f1c2a3e-0d4b-4c55-9e77-0123456789ab";
  await t.sql`insert into public.people values
    (${ref}, 199001011234, 'private', 'calm', '1990-06-14', 'Lund', 1234.5, 36)`;
  await t.sql`delete from public.people`;
  await t.source.readUntil("the tombstone", (r) => r.value === null);
  const masker = await make(mask, {
    fields: "ref,national_id,note,feeling,born,income,age",
    strategy: "hmac",
    key: "k".repeat(32),
    "fields.note.strategy": "null",
    "fields.born.strategy": "date",
    "fields.income.strategy": "redact",
    "fields.age.strategy": "redact",
  });
  // As the runtime applies a step: its output keeps the schemas that still fit.
  const masked = await Promise.all(
    t.source.records.map(async (r) =>
      withFittingSchemas(r, (await masker.apply(r)) as SluiceRecord)
    ),
  );
  const [insert, deleted, tombstone] = masked.map(written);
  const after = afterFields(insert.value);
  assertEquals(after.ref, { type: "string", optional: false, field: "ref" }, "no longer a Uuid");
  assertEquals(after.national_id, { type: "string", optional: false, field: "national_id" });
  assertEquals(after.feeling, { type: "string", optional: true, field: "feeling" }, "no enum");
  assertEquals(after.note, { type: "string", optional: true, field: "note" }, "null: optional");
  assertEquals(after.born.name, "io.debezium.time.IsoDate", "date keeps its type");
  assertEquals(after.city, { type: "string", optional: true, field: "city" });
  assertEquals(
    after.income,
    { type: "string", optional: true, field: "income" },
    "'' is no Decimal",
  );
  assertEquals(after.age, { type: "int32", optional: true, field: "age" });
  const payload = insert.value.payload.after;
  assertMatch(payload.ref, /^[0-9a-f]{64}$/);
  assertMatch(payload.national_id, /^[0-9a-f]{64}$/);
  assertEquals(
    [payload.note, payload.born, payload.city, payload.income, payload.age],
    [null, "1990-06-01", "Lund", "", 0],
  );
  // The key (a masked column) is a string in the insert, the delete and the tombstone alike.
  for (const message of [insert, deleted, tombstone]) {
    assertEquals(message.key.schema.fields, [{ type: "string", optional: false, field: "ref" }]);
    assertEquals(message.key.payload.ref, payload.ref);
  }
  assertEquals(deleted.value.payload.before.ref, payload.ref);
  assertEquals(tombstone.value, null);
  // Records of the same shape share their masked schemas.
  assert(masked[0].schemas!.value === masked[1].schemas!.value);
});

Deno.test("unwrap gives rows Debezium's row schema, with the added fields and __deleted", async () => {
  await using t = await withTable(
    "cdc_schema_unwrap",
    `create table public.items (id int primary key, name text not null, qty int);
     create publication cdc_schema_unwrap_pub for table public.items`,
    {},
  );
  await t.sql`insert into public.items values (1, 'one', 5)`;
  await t.sql`delete from public.items`;
  await t.source.readUntil("the tombstone", (r) => r.value === null);
  const flatten = await make(unwrap, {
    "delete.tombstone.handling.mode": "rewrite",
    "add.fields": "op,table,lsn,source.ts_ms,nosuchfield",
  });
  const rows = (await Promise.all(
    t.source.records.map(async (r) => {
      const out = await flatten.apply(r) as SluiceRecord | null;
      return out && withFittingSchemas(r, out);
    }),
  )).filter((r) => r !== null).map(written);
  assertEquals(rows.length, 2, "the insert and the rewritten delete (the tombstone is dropped)");
  const [insert, deleted] = rows;
  assertEquals(insert.value.schema.name, "w.public.items.Value");
  assertEquals(insert.value.schema.fields, [
    { type: "int32", optional: false, field: "id" },
    { type: "string", optional: false, field: "name" },
    { type: "int32", optional: true, field: "qty" },
    { type: "string", optional: true, field: "__op" },
    { type: "string", optional: true, field: "__table" },
    { type: "int64", optional: true, field: "__lsn" },
    { type: "int64", optional: true, field: "__source_ts_ms" },
    { type: "string", optional: true, field: "__deleted" },
  ]);
  assertEquals(insert.value.payload.id, 1);
  assertEquals(insert.value.payload.__op, "c");
  assertEquals(insert.value.payload.__deleted, "false");
  assert(Number.isInteger(insert.value.payload.__lsn));
  assertEquals(deleted.value.schema, insert.value.schema);
  assertEquals([deleted.value.payload.id, deleted.value.payload.__deleted], [1, "true"]);
  assertEquals(deleted.key.schema.fields, [{ type: "int32", optional: false, field: "id" }]);
});
