/**
 * The plugins that ship with Sluice, registered explicitly (importing a
 * plugin module registers nothing by itself). This module loads every
 * built-in plugin and the PostgreSQL driver; `@sluice/sluice` alone does
 * not. (The `sluice` command loads only the plugins its configs name.)
 *
 * @example Validating a config against the built-in plugins
 * ```ts
 * import { buildPipelines } from "@sluice/sluice";
 * import { builtinRegistry } from "@sluice/sluice/builtins";
 * import assert from "node:assert/strict";
 *
 * const [spec] = await buildPipelines([{
 *   name: "warehouse-to-citizen-connector",
 *   config: {
 *     "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
 *     "database.hostname": "localhost",
 *     "database.user": "postgres",
 *     "database.dbname": "smart_warehouse",
 *     "topic.prefix": "warehouse",
 *   },
 *   baseDir: ".",
 * }], {
 *   registry: builtinRegistry(),
 *   defaultSink: "kafka",
 *   pluginDefaults: { "bootstrap.servers": "localhost:9092" },
 * });
 * assert.equal(spec.source.plugin.name, "postgres_cdc");
 * ```
 *
 * @module
 */
import type { Plugin } from "./api/plugin.ts";
import { Registry } from "./core/registry.ts";
import { builtinCatalog } from "./_builtin_catalog.ts";

/**
 * Every built-in plugin: sources, sinks, transforms and predicates.
 *
 * @example Listing the built-in transforms
 * ```ts
 * import { builtinPlugins } from "@sluice/sluice/builtins";
 * import assert from "node:assert/strict";
 *
 * const transforms = builtinPlugins.filter((plugin) => plugin.kind === "transform").map((plugin) => plugin.name);
 * assert.ok(transforms.includes("mask") && transforms.includes("route"));
 * ```
 */
export const builtinPlugins: readonly Plugin[] = await Promise.all(
  builtinCatalog.map((entry) => entry.load()),
);

/**
 * A new registry holding the built-in plugins; add your own with `register`.
 *
 * @example Adding a plugin of your own next to the built-ins
 * ```ts
 * import { defineTransform } from "@sluice/sluice";
 * import { builtinRegistry } from "@sluice/sluice/builtins";
 * import { z } from "zod";
 * import assert from "node:assert/strict";
 *
 * const registry = builtinRegistry().register(defineTransform({
 *   name: "stamp",
 *   summary: "Adds a header naming this worker.",
 *   config: z.strictObject({}),
 *   create: () => ({ apply: (record) => ({ ...record, headers: { ...record.headers, worker: "w1" } }) }),
 * }));
 * assert.equal(registry.find("transform", "stamp")?.name, "stamp");
 * assert.equal(registry.find("sink", "postgres")?.name, "postgres");
 * ```
 */
export function builtinRegistry(): Registry {
  return new Registry(builtinPlugins);
}
