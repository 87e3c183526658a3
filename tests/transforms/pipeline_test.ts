/**
 * The transforms as the runtime sees them: configured from Debezium-style
 * JSON through the config loader, run by the pipeline runner between an
 * in-memory source and sink.
 */
import { assert, assertEquals, assertRejects, assertStrictEquals } from "../_assert.ts";
import { z } from "zod";
import { buildPipelines } from "../../core/config.ts";
import { ConfigError } from "../../api/errors.ts";
import { MemoryOffsetStore } from "../../core/offsets.ts";
import { describeOptions } from "../../api/options.ts";
import { runPipeline } from "../../core/pipeline.ts";
import { defineSink, defineSource } from "../../api/plugin.ts";
import type { SluiceRecord } from "../../api/record.ts";
import { Registry } from "../../core/registry.ts";
import { predicates, transforms } from "../../transforms/mod.ts";
import { changeRecord } from "../_transforms.ts";

const MASK_KEY = "0123456789abcdef0123456789abcdef"; // 32 bytes, and hex for fpe
const providers = {
  env: (name: string) =>
    ({ MASK_KEY, SHORT_KEY: "too-short-secret" } as Record<string, string>)[name],
  readText: () => "",
};

const PEOPLE = [
  {
    id: 1,
    full_name: "Anna Berg",
    phone: "+46701234567",
    national_id: "850614-1234",
    status: "final",
  },
  {
    id: 2,
    full_name: "Björn Ek",
    phone: "+46709876543",
    national_id: "910203-5678",
    status: "draft",
  },
  {
    id: 3,
    full_name: "Cecilia Ny",
    phone: "+46705550000",
    national_id: "770101-0001",
    status: "final",
  },
];

function events(): SluiceRecord[] {
  const [anna, bjorn, cecilia] = PEOPLE;
  const at = (lsn: number, record: SluiceRecord) => ({ ...record, key: { id: lsn % 10 } });
  return [
    at(11, changeRecord("c", { after: anna }, { source: { lsn: 11 } })),
    at(11, changeRecord("c", { after: anna }, { source: { lsn: 11 } })), // redelivered
    at(12, changeRecord("c", { after: bjorn }, { source: { lsn: 12 } })), // draft: filtered
    at(13, changeRecord("c", { after: cecilia }, { source: { lsn: 13 } })),
    at(13, changeRecord("d", { before: cecilia }, { source: { lsn: 14 } })),
    { topic: "warehouse.public.profiles", key: { id: 3 }, value: null }, // tombstone
  ];
}

const written: SluiceRecord[] = [];
const testSource = defineSource({
  name: "test_source",
  mode: "batch",
  summary: "Yields the test events.",
  config: z.strictObject({}),
  create: () => ({
    async *read() {
      yield { records: events(), offset: 1 };
    },
    async close() {},
  }),
});
const testSink = defineSink({
  name: "test_sink",
  summary: "Keeps what it is given.",
  config: z.strictObject({}),
  create: () => ({
    write(batch) {
      written.push(...batch.records);
      return Promise.resolve({ written: batch.records.length });
    },
    async close() {},
  }),
});

const registry = () => new Registry([...transforms, ...predicates, testSource, testSink]);

const CONFIG = {
  "connector.class": "test_source",
  "sink.class": "test_sink",
  "transforms": "mask,onlyFinal,dedup,route,unwrap",
  "transforms.mask.type": "mask",
  "transforms.mask.predicate": "isTombstone",
  "transforms.mask.negate": "true",
  "transforms.mask.fields": "full_name,phone,national_id",
  "transforms.mask.strategy": "hmac",
  "transforms.mask.key": "${env:MASK_KEY}",
  "transforms.mask.fields.phone.strategy": "partial",
  "transforms.mask.fields.phone.keep.last": "2",
  "transforms.mask.fields.national_id.strategy": "fpe",
  "transforms.onlyFinal.type": "filter",
  "transforms.onlyFinal.condition": "value.status == 'final'",
  "transforms.dedup.type": "dedup",
  "transforms.route.type": "org.apache.kafka.connect.transforms.RegexRouter",
  "transforms.route.regex": "warehouse\\.(.*)",
  "transforms.route.replacement": "citizen.$1",
  "transforms.unwrap.type": "io.debezium.transforms.ExtractNewRecordState",
  "transforms.unwrap.delete.tombstone.handling.mode": "rewrite",
  "transforms.unwrap.add.fields": "op,table",
  "predicates": "isTombstone",
  "predicates.isTombstone.type": "org.apache.kafka.connect.transforms.predicates.RecordIsTombstone",
};

Deno.test("transforms configured from Debezium-style JSON mask, filter, dedup, route and unwrap in a pipeline", async () => {
  written.length = 0;
  const [spec] = await buildPipelines([{ name: "profiles", config: CONFIG, baseDir: "." }], {
    registry: registry(),
    providers,
  });
  assertEquals(spec.transforms.map((t) => t.plugin.name), [
    "mask",
    "filter",
    "dedup",
    "route",
    "unwrap",
  ]);
  const report = await runPipeline(spec, { offsets: new MemoryOffsetStore() });
  assertStrictEquals(report.status, "succeeded", report.error?.message);
  assertEquals(report.stats.filtered, 3); // the duplicate, the draft, the tombstone (rewrite mode)
  assertEquals(written.map((r) => [r.topic, (r.value as Record<string, unknown>).__op]), [
    ["citizen.public.profiles", "c"],
    ["citizen.public.profiles", "c"],
    ["citizen.public.profiles", "d"],
  ]);
  const first = written[0].value as Record<string, unknown>;
  assertStrictEquals(first.phone, "**********67");
  assertStrictEquals((first.national_id as string)[6], "-");
  assertStrictEquals(first.__table, "profiles");
  assertStrictEquals((written[2].value as Record<string, unknown>).__deleted, "true");
  const text = JSON.stringify(written);
  for (const person of PEOPLE) {
    for (const clear of [person.full_name, person.phone, person.national_id]) {
      assert(!text.includes(clear), `${clear} reached the sink in clear`);
    }
  }
});

Deno.test("transform config problems are reported at load time with their paths, without secrets", async () => {
  const config = {
    ...CONFIG,
    "transforms.mask.key": "${env:SHORT_KEY}",
    "transforms.mask.fields.phone.keep.lst": "2",
    "transforms.onlyFinal.condition": "value.status = 'final'",
    "transforms.route.replacement": "citizen.$2",
    "transforms.unwrap.delete.tombstone.handling.mode": "none",
  };
  const error = await assertRejects(
    buildPipelines([{ name: "profiles", config, baseDir: "." }], {
      registry: registry(),
      providers,
    }),
    ConfigError,
  );
  assert(error instanceof ConfigError);
  const paths = error.issues.map((issue) => issue.path);
  for (
    const path of [
      "profiles: config.transforms.mask.key",
      "profiles: config.transforms.mask.fields.phone.keep.lst",
      "profiles: config.transforms.onlyFinal.condition",
      "profiles: config.transforms.route.replacement",
      "profiles: config.transforms.unwrap.delete.tombstone.handling.mode",
    ]
  ) assert(paths.includes(path), `missing ${path} in ${JSON.stringify(error.issues, null, 1)}`);
  assert(!error.message.includes("too-short-secret"), error.message);
});

Deno.test("every transform and predicate documents each option and registers without clashes", () => {
  const all = [...transforms, ...predicates];
  new Registry(all);
  for (const plugin of all) {
    assert(/^[a-z_]+$/.test(plugin.name), plugin.name);
    assert(plugin.summary.length > 0, plugin.name);
    for (const option of describeOptions(plugin.config)) {
      assert(option.description.length > 0, `${plugin.name}.${option.key} has no description`);
    }
  }
});
