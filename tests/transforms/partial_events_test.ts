/**
 * Every built-in transform against the change events that carry less than a
 * whole row: a delete whose `before` holds only the key (the default replica
 * identity), an update whose `after` leaves an unchanged TOAST value out, a
 * truncate (no row) and a tombstone (null value). A field absent for these
 * reasons is not an error: the transform skips it, and the record goes on.
 */
import { assert, assertEquals, assertRejects, assertStrictEquals } from "../_assert.ts";
import type { Transform } from "../../api/plugin.ts";
import type { ChangeEvent, Row, SluiceRecord } from "../../api/record.ts";
import { cast } from "../../transforms/cast.ts";
import { dedup } from "../../transforms/dedup/mod.ts";
import { filter } from "../../transforms/filter.ts";
import { insertField } from "../../transforms/insert_field.ts";
import { fpeEncrypt, mask } from "../../transforms/mask/mod.ts";
import { replaceField } from "../../transforms/replace_field.ts";
import { route } from "../../transforms/route.ts";
import { timestampConverter } from "../../transforms/timestamp_converter.ts";
import { unwrap } from "../../transforms/unwrap.ts";
import { valueToKey } from "../../transforms/value_to_key.ts";
import { apply, changeRecord, images, make } from "../_transforms.ts";

const KEY = { citizen_id: 7 };
const source = { schema: "public", table: "profile_360", lsn: 500 };

/** A delete under REPLICA IDENTITY DEFAULT: `before` holds the key only. */
const keyOnlyDelete = (): SluiceRecord =>
  changeRecord("d", { before: { ...KEY } }, { key: { ...KEY }, source });
/**
 * An update of phone; address_line and national_id are TOASTed and unchanged, so not in
 * `after`, and the header names it (as postgres_cdc does).
 */
const toastUpdate = (): SluiceRecord =>
  changeRecord("u", {
    after: {
      citizen_id: 7,
      full_name: "Asha Rao",
      phone: "9876543210",
      status: "approved",
      updated_at: "2026-11-30T10:00:00.000Z",
    },
  }, {
    key: { ...KEY },
    source: { ...source, lsn: 600 },
    headers: { "__sluice.unavailable": '["address_line","national_id"]' },
  });
const truncate = (): SluiceRecord =>
  changeRecord("t", {}, { key: null, source: { ...source, lsn: 700 } });
const tombstone = (): SluiceRecord => ({
  topic: "warehouse.public.profiles",
  key: { ...KEY },
  value: null,
});

const after = (record: SluiceRecord | null): Row => images(record).after!;
const before = (record: SluiceRecord | null): Row => images(record).before!;

/** Runs the four partial events through a transform; none may fail. */
async function throughAll(transform: Transform) {
  return {
    delete: await apply(transform, keyOnlyDelete()),
    update: await apply(transform, toastUpdate()),
    truncate: await apply(transform, truncate()),
    tombstone: await apply(transform, tombstone()),
  };
}

Deno.test("mask skips fields a delete, a TOAST update, a truncate or a tombstone leaves out", async () => {
  const transform = await make(mask, {
    fields: "full_name,phone,address_line,national_id",
    "fields.full_name.strategy": "partial",
    "fields.full_name.keep.first": "1",
    "fields.phone.strategy": "partial",
    "fields.phone.keep.last": "4",
    "fields.address_line.strategy": "redact",
    "fields.national_id.strategy": "fpe",
    "fields.national_id.key": "2b7e151628aed2a6abf7158809cf4f3c",
  });
  const out = await throughAll(transform);
  assertEquals(out.delete, keyOnlyDelete());
  assertEquals(after(out.update), {
    citizen_id: 7,
    full_name: "A*******",
    phone: "******3210",
    status: "approved",
    updated_at: "2026-11-30T10:00:00.000Z",
  });
  assert(!("address_line" in after(out.update)), "an absent column must stay absent, not emptied");
  assertEquals(out.truncate, truncate());
  assertEquals(out.tombstone, tombstone());
});

Deno.test("mask masks what a full before image holds, and a key column of a delete and its tombstone alike", async () => {
  const transform = await make(mask, {
    fields: "national_id,phone",
    "fields.national_id.strategy": "fpe",
    "fields.national_id.key": "2b7e151628aed2a6abf7158809cf4f3c",
    "fields.phone.strategy": "null",
  });
  const id = "1234 5678 9012";
  const masked = fpeEncrypt(id, { key: "2b7e151628aed2a6abf7158809cf4f3c", alphabet: "digits" });
  const deleted = await apply(
    transform,
    changeRecord("d", { before: { national_id: id } }, { key: { national_id: id } }),
  );
  assertEquals(before(deleted), { national_id: masked });
  assertEquals(deleted!.key, { national_id: masked });
  const gone = await apply(transform, { topic: "t", key: { national_id: id }, value: null });
  assertEquals(gone!.key, { national_id: masked });
  // REPLICA IDENTITY FULL: before has the TOASTed column after lacks.
  const full = await apply(
    transform,
    changeRecord("u", {
      before: { national_id: id, phone: "9876543210" },
      after: { national_id: id },
    }, { headers: { "__sluice.unavailable": '["phone"]' } }),
  );
  assertEquals(images(full), {
    before: { national_id: masked, phone: null },
    after: { national_id: masked },
  });
});

Deno.test("mask fails an update or a full delete that lacks a masked column the source did not leave out (renamed)", async () => {
  const transform = await make(mask, {
    fields: "email,phone",
    strategy: "hmac",
    key: "k".repeat(32),
  });
  // `email` was renamed `email_address` at the source: the clear value is under the new name.
  const renamed = { citizen_id: 7, email_address: "asha@example.in", phone: "9876543210" };
  const update = changeRecord("u", { after: renamed }, { key: { ...KEY } });
  const error = await assertRejects(() => apply(transform, update));
  assert(
    /field "email" is not in a record .*renamed at the source/.test(error.message),
    error.message,
  );
  // REPLICA IDENTITY FULL: the delete's before is a whole row, not the key.
  const fullDelete = changeRecord("d", { before: renamed }, { key: { ...KEY } });
  await assertRejects(() => apply(transform, fullDelete));
  // Named as not sent (unchanged TOAST), the same update passes with the rest masked.
  const toast = changeRecord("u", { after: { citizen_id: 7, phone: "9876543210" } }, {
    key: { ...KEY },
    headers: { "__sluice.unavailable": '["email"]' },
  });
  assert(after(await apply(transform, toast)).phone !== "9876543210");
});

Deno.test("mask skips fields of a row unwrap rewrote from a delete, and Debezium's unavailable-value placeholder", async () => {
  const transform = await make(mask, { fields: "phone,email", strategy: "partial" });
  const row = { citizen_id: 7, __deleted: "true" };
  assertEquals((await apply(transform, { topic: "t", key: KEY, value: row }))!.value, row);
  const placeholder = changeRecord("u", {
    after: { phone: "__debezium_unavailable_value", email: "a@b.example" },
  });
  assertStrictEquals(
    after(await apply(transform, placeholder)).phone,
    "__debezium_unavailable_value",
  );
  await assertRejects(
    async () => await apply(transform, { topic: "t", key: KEY, value: { citizen_id: 7 } }),
    /field "phone" is not in a record on "t"/,
  );
});

Deno.test("replace_field leaves absent fields absent and renames what is there", async () => {
  const transform = await make(replaceField, {
    exclude: "status",
    renames: "full_name:display_name,citizen_id:id",
  });
  const out = await throughAll(transform);
  assertEquals(before(out.delete), { id: 7 });
  assertEquals(out.delete!.key, { id: 7 });
  assertEquals(Object.keys(after(out.update)).sort(), [
    "display_name",
    "id",
    "phone",
    "updated_at",
  ]);
  assertEquals(out.truncate, truncate());
  assertEquals(out.tombstone!.value, null);
  assertEquals(out.tombstone!.key, { id: 7 });
});

Deno.test("cast and timestamp_converter leave fields a partial event lacks alone", async () => {
  const casts = await throughAll(
    await make(cast, { spec: "citizen_id:string,address_line:string" }),
  );
  assertEquals(before(casts.delete), { citizen_id: "7" });
  assertEquals(casts.delete!.key, { citizen_id: "7" });
  assert(!("address_line" in after(casts.update)));
  assertEquals(casts.truncate, truncate());
  assertEquals(casts.tombstone!.key, { citizen_id: "7" });

  const times = await throughAll(
    await make(timestampConverter, { field: "updated_at", "target.type": "unix" }),
  );
  assertEquals(times.delete, keyOnlyDelete());
  assertStrictEquals(after(times.update).updated_at, Date.parse("2026-11-30T10:00:00.000Z"));
  assertEquals(times.truncate, truncate());
  assertEquals(times.tombstone, tombstone());
});

Deno.test("insert_field adds metadata to the images a partial event has and passes the rest", async () => {
  const out = await throughAll(
    await make(insertField, { "static.field": "origin", "static.value": "warehouse" }),
  );
  assertEquals(before(out.delete), { citizen_id: 7, origin: "warehouse" });
  assertStrictEquals(after(out.update).origin, "warehouse");
  assertEquals(out.truncate, truncate());
  assertEquals(out.tombstone, tombstone());
});

Deno.test("value_to_key takes a field from before, then the key, and names the replica identity when neither has it", async () => {
  const byCitizen = await make(valueToKey, { fields: "citizen_id" });
  const out = await throughAll(byCitizen);
  assertEquals(out.delete!.key, KEY);
  assertEquals(out.update!.key, KEY);
  assertEquals(out.truncate, truncate());
  assertEquals(out.tombstone, tombstone());
  // The field is a key column but the delete's before image is empty.
  const emptyBefore = changeRecord("d", { before: {} }, { key: { ...KEY } });
  assertEquals((await apply(byCitizen, emptyBefore))!.key, KEY);
  // An update whose after left the TOASTed field out takes it from a full before.
  const byAddress = await make(valueToKey, { fields: "address_line" });
  const full = changeRecord("u", {
    before: { citizen_id: 7, address_line: "12 MG Road" },
    after: { citizen_id: 7 },
  });
  assertEquals((await apply(byAddress, full))!.key, { address_line: "12 MG Road" });
  await assertRejects(
    async () => await apply(byAddress, keyOnlyDelete()),
    /field "address_line" is not in the row .*: a delete carries only the replica identity .*REPLICA IDENTITY FULL/,
  );
});

Deno.test("filter keeps deletes and truncates it cannot judge, whatever the action, and fails such updates", async () => {
  const keepFinal = await make(filter, { condition: "value.status != 'draft'" });
  const kept = await throughAll(keepFinal);
  assertEquals(kept.delete, keyOnlyDelete());
  assertEquals(kept.truncate, truncate());
  assertEquals(kept.tombstone, tombstone());
  // An update that left the column out: kept it could leak, dropped it could lose a change.
  const trimmed = changeRecord("u", { after: { citizen_id: 7 } }, { key: KEY });
  await assertRejects(async () => await apply(keepFinal, trimmed), /cannot judge an update/);
  const dropDraftDeletes = await make(filter, {
    condition: "op == 'd' && value.status == 'draft'",
    action: "drop",
  });
  assertEquals(await apply(dropDraftDeletes, keyOnlyDelete()), keyOnlyDelete());
  // A delete of a row the condition excludes still passes (the target may hold
  // it from before); a column an insert lacks is still an error.
  const fullDelete = changeRecord("d", { before: { status: "draft" } });
  assertStrictEquals(await apply(keepFinal, fullDelete), fullDelete);
  assertStrictEquals(
    await apply(await make(filter, { condition: "op != 't'" }), truncate()),
    null,
  );
  await assertRejects(
    async () => await apply(keepFinal, changeRecord("c", { after: { citizen_id: 7 } })),
    /cannot evaluate the condition .*No such key: status/,
  );
});

Deno.test("dedup passes partial events it cannot identify instead of dropping or failing them", async () => {
  const byEventId = await make(dedup, { "id.mode": "fields", "id.fields": "event_id" });
  for (let round = 0; round < 2; round++) {
    const out = await throughAll(byEventId);
    assertEquals(out.delete, keyOnlyDelete(), `round ${round}`);
    assertEquals(out.update, toastUpdate(), `round ${round}`);
    assertEquals(out.truncate, truncate(), `round ${round}`);
    assertEquals(out.tombstone, tombstone(), `round ${round}`);
  }
  await assertRejects(
    async () => await apply(byEventId, changeRecord("c", { after: { citizen_id: 7 } })),
    /field "event_id" is not in the row/,
  );
  // A key column identifies a key-only delete.
  const byKey = await make(dedup, { "id.mode": "fields", "id.fields": "citizen_id" });
  assert(await apply(byKey, keyOnlyDelete()));
  assertStrictEquals(await apply(byKey, keyOnlyDelete()), null);
  // cdc mode identifies every change event by LSN, table and key.
  const byLsn = await make(dedup, {});
  const first = await throughAll(byLsn);
  assert(first.delete && first.update && first.truncate && first.tombstone);
  const again = await throughAll(byLsn);
  assertEquals([again.delete, again.update, again.truncate], [null, null, null]);
  assertEquals(again.tombstone, tombstone());
});

Deno.test("unwrap keeps a TOAST update's row partial, rewrites key-only deletes and routes them by the key", async () => {
  const rewrite = await make(unwrap, {
    "delete.tombstone.handling.mode": "rewrite",
    "route.by.field": "citizen_id",
  });
  const out = await throughAll(rewrite);
  assertEquals(out.delete!.value, { citizen_id: 7, __deleted: "true" });
  assertStrictEquals(out.delete!.topic, "7");
  assert(!("address_line" in (out.update!.value as Row)));
  assertStrictEquals(out.update!.topic, "7");
  assertStrictEquals(out.truncate, null);
  assertStrictEquals(out.tombstone, null);
  const routeByField = await make(unwrap, { "route.by.field": "status" });
  await assertRejects(
    async () => await apply(routeByField, keyOnlyDelete()),
    /by field "status": it is missing: a delete carries only the replica identity/,
  );
  const keepTruncates = await make(unwrap, {
    "delete.tombstone.handling.mode": "rewrite-with-tombstone",
  });
  assertEquals(await apply(keepTruncates, truncate()), truncate());
});

Deno.test("route by field reads a full before image for TOAST updates and the key for deletes, and explains what it cannot route", async () => {
  const byCitizen = await make(route, { "topic.format": "citizen.${field}", field: "citizen_id" });
  assertStrictEquals((await apply(byCitizen, keyOnlyDelete()))!.topic, "citizen.7");
  assertStrictEquals((await apply(byCitizen, toastUpdate()))!.topic, "citizen.7");
  assertStrictEquals((await apply(byCitizen, tombstone()))!.topic, "citizen.7");
  await assertRejects(
    async () => await apply(byCitizen, truncate()),
    /cannot route a record on ".*" by field "citizen_id": it is missing: a truncate carries no row/,
  );
  const byRegion = await make(route, { field: "region" });
  const full = changeRecord("u", { before: { region: "north" }, after: { citizen_id: 7 } });
  assertStrictEquals((await apply(byRegion, full))!.topic, "north");
  await assertRejects(
    async () => await apply(byRegion, keyOnlyDelete()),
    /REPLICA IDENTITY FULL/,
  );
  // Table routing needs no row at all.
  const byTable = await make(route, { "topic.format": "citizen.${table}" });
  assertStrictEquals((await apply(byTable, truncate()))!.topic, "citizen.profile_360");
});

Deno.test("a chain of the example's transforms turns partial events into partial events, never errors", async () => {
  const chain = [
    await make(dedup, {}),
    await make(filter, { condition: "value.status != 'draft'" }),
    await make(mask, {
      fields: "full_name,phone,address_line",
      "fields.full_name.strategy": "hmac",
      "fields.full_name.key": "a-test-key-that-is-long-enough-32bytes!",
      "fields.phone.strategy": "partial",
      "fields.phone.keep.last": "4",
    }),
  ];
  for (const record of [keyOnlyDelete(), toastUpdate(), truncate(), tombstone()]) {
    let current: SluiceRecord | null = record;
    for (const transform of chain) current = current && await apply(transform, current);
    assert(current, `${(record.value as ChangeEvent | null)?.op ?? "tombstone"} was dropped`);
  }
});
