/**
 * The plugins that ship with Sluice, registered explicitly (importing a
 * plugin module registers nothing by itself).
 *
 * @module
 */
import type { Plugin } from "./api/plugin.ts";
import { Registry } from "./core/registry.ts";
import { sources } from "./connectors/mod.ts";
import { sinks } from "./sinks/mod.ts";
import { predicates, transforms } from "./transforms/mod.ts";

/** Every built-in plugin. */
export const builtinPlugins: readonly Plugin[] = [
  ...sources,
  ...sinks,
  ...transforms,
  ...predicates,
];

/** A registry holding the built-in plugins; add your own with `register`. */
export function builtinRegistry(): Registry {
  return new Registry(builtinPlugins);
}
