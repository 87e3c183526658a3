/**
 * Every built-in transform runs the transform contract. A new transform
 * gets it by adding one line to the table (the last test fails until it has
 * one).
 */
import { cast } from "../../transforms/cast.ts";
import { dedup } from "../../transforms/dedup/mod.ts";
import { filter } from "../../transforms/filter.ts";
import { insertField } from "../../transforms/insert_field.ts";
import { mask } from "../../transforms/mask/mod.ts";
import { transforms } from "../../transforms/mod.ts";
import { replaceField } from "../../transforms/replace_field.ts";
import { route } from "../../transforms/route.ts";
import { timestampConverter } from "../../transforms/timestamp_converter.ts";
import { unwrap } from "../../transforms/unwrap.ts";
import { valueToKey } from "../../transforms/value_to_key.ts";
import { assertEquals } from "../_assert.ts";
import { type TransformCase, transformContract } from "./transform_contract.ts";

const TABLE: TransformCase[] = [
  {
    plugin: mask,
    config: { fields: "email,name", strategy: "redact" },
  },
  { plugin: filter, config: { condition: "op != 'x'" } },
  // id.mode fields identifies rows and change events alike (id.mode cdc
  // refuses batch rows loudly, by design).
  {
    plugin: dedup,
    config: { "id.mode": "fields", "id.fields": "id" },
  },
  { plugin: route, config: { regex: "(.*)", replacement: "copy.$1" } },
  { plugin: unwrap, config: {} },
  { plugin: replaceField, config: { exclude: "email", renames: "name:full_name" } },
  { plugin: insertField, config: { "static.field": "origin", "static.value": "warehouse" } },
  { plugin: cast, config: { spec: "n:int32" } },
  { plugin: timestampConverter, config: { field: "ts", "target.type": "unix" } },
  { plugin: valueToKey, config: { fields: "id" } },
];

for (const entry of TABLE) transformContract(entry);

// The table's `ignore` entries are known bugs; a new ignore needs an issue item beside it.

Deno.test("every built-in transform is in the contract table", () => {
  const covered = TABLE.map((entry) => entry.plugin.name).sort();
  assertEquals(covered, transforms.map((plugin) => plugin.name).sort());
});
