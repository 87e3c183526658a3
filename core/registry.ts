/**
 * The plugin registry: built-in plugins are registered explicitly, and a
 * config may also name a plugin module by path (`"connector.class":
 * "./my_source.ts"`).
 *
 * @module
 */
import { isAbsolute, resolve, toFileUrl } from "./_path.ts";
import type { Plugin } from "../api/plugin.ts";

/**
 * The kinds of plugin.
 *
 * @example Every kind a name is registered under
 * ```ts
 * import type { PluginKind } from "@sluice/sluice";
 * import { builtinRegistry } from "@sluice/sluice/builtins";
 * import assert from "node:assert/strict";
 *
 * const kinds: PluginKind[] = builtinRegistry().kindsOf("kafka");
 * assert.deepEqual(kinds, ["source", "sink"]);
 * ```
 */
export type PluginKind = Plugin["kind"];

/**
 * Looks plugins up by name or alias. Nothing registers itself on import:
 * a registry holds exactly the plugins it was given.
 *
 * @example A registry of the built-ins plus one plugin of your own
 * ```ts
 * import { defineTransform, Registry } from "@sluice/sluice";
 * import { builtinPlugins } from "@sluice/sluice/builtins";
 * import { z } from "zod";
 * import assert from "node:assert/strict";
 *
 * const noop = defineTransform({
 *   name: "noop",
 *   summary: "Passes records through.",
 *   config: z.strictObject({}),
 *   create: () => ({ apply: (record) => record }),
 * });
 * const registry = new Registry(builtinPlugins).register(noop);
 * assert.equal(registry.find("transform", "noop"), noop);
 * assert.equal(registry.find("source", "noop"), undefined);
 * ```
 */
export class Registry {
  readonly #plugins: Plugin[] = [];
  readonly #byName = new Map<string, Plugin>();

  /** Registers `plugins` in order; throws when two share a name or alias of one kind. */
  constructor(plugins: Iterable<Plugin> = []) {
    for (const plugin of plugins) this.register(plugin);
  }

  /**
   * Adds a plugin. Names and aliases must be unique per kind.
   *
   * @example A name taken twice
   * ```ts
   * import { defineTransform, Registry } from "@sluice/sluice";
   * import { z } from "zod";
   * import assert from "node:assert/strict";
   *
   * const make = (name: string) =>
   *   defineTransform({ name, summary: "x", config: z.object({}), create: () => ({ apply: (r) => r }) });
   * const registry = new Registry([make("a")]);
   * assert.throws(() => registry.register(make("a")), /Cannot register transform "a": "a" is taken/);
   * ```
   */
  register(plugin: Plugin): this {
    for (const name of [plugin.name, ...(plugin.aliases ?? [])]) {
      const id = `${plugin.kind}:${name}`;
      if (this.#byName.has(id)) {
        throw new Error(`Cannot register ${plugin.kind} "${plugin.name}": "${name}" is taken`);
      }
      this.#byName.set(id, plugin);
    }
    this.#plugins.push(plugin);
    return this;
  }

  /**
   * Every registered plugin, optionally of one kind, sorted by name.
   *
   * @example The names of the built-in sources
   * ```ts
   * import { builtinRegistry } from "@sluice/sluice/builtins";
   * import assert from "node:assert/strict";
   *
   * const names = builtinRegistry().list("source").map((plugin) => plugin.name);
   * assert.ok(names.includes("postgres_cdc") && names.includes("postgres_query"));
   * ```
   */
  list(kind?: PluginKind): Plugin[] {
    return this.#plugins.filter((plugin) => !kind || plugin.kind === kind)
      .sort((a, b) => a.name.localeCompare(b.name));
  }

  /**
   * The plugin of `kind` named `name` (or with that alias), if registered.
   *
   * @example A Debezium class name is an alias
   * ```ts
   * import { builtinRegistry } from "@sluice/sluice/builtins";
   * import assert from "node:assert/strict";
   *
   * const plugin = builtinRegistry().find("source", "io.debezium.connector.postgresql.PostgresConnector");
   * assert.equal(plugin?.name, "postgres_cdc");
   * ```
   */
  find<K extends PluginKind>(kind: K, name: string): Extract<Plugin, { kind: K }> | undefined {
    return this.#byName.get(`${kind}:${name}`) as Extract<Plugin, { kind: K }> | undefined;
  }

  /**
   * Which kinds have a plugin of this name.
   *
   * @example A name that is both a source and a sink
   * ```ts
   * import { builtinRegistry } from "@sluice/sluice/builtins";
   * import assert from "node:assert/strict";
   *
   * assert.deepEqual(builtinRegistry().kindsOf("postgres"), ["sink"]);
   * ```
   */
  kindsOf(name: string): PluginKind[] {
    const kinds: PluginKind[] = ["source", "sink", "transform", "predicate"];
    return kinds.filter((kind) => this.#byName.has(`${kind}:${name}`));
  }

  /**
   * Finds a plugin by name, or imports it when `name` is a module path
   * (relative paths resolve against `baseDir`, the config file's folder).
   * Returns a sentence explaining the failure instead of throwing.
   *
   * @example An unknown name lists the valid ones
   * ```ts
   * import { builtinRegistry } from "@sluice/sluice/builtins";
   * import assert from "node:assert/strict";
   *
   * const found = await builtinRegistry().resolve("sink", "postgress", ".");
   * assert.equal(typeof found, "string");
   * assert.match(found as string, /^unknown sink "postgress"; valid sinks are: .*postgres/);
   * ```
   */
  async resolve<K extends PluginKind>(
    kind: K,
    name: string,
    baseDir: string,
  ): Promise<Extract<Plugin, { kind: K }> | string> {
    if (!isModulePath(name)) {
      const plugin = this.find(kind, name);
      if (plugin) return plugin;
      const valid = this.list(kind).map((p) => p.name).join(", ");
      return `unknown ${kind} "${name}"; valid ${kind}s are: ${valid}`;
    }
    const url = name.startsWith("file:")
      ? name
      : toFileUrl(isAbsolute(name) ? name : resolve(baseDir, name)).href;
    let module: Record<string, unknown>;
    try {
      module = await import(url);
    } catch (error) {
      return `cannot load plugin module "${name}": ${(error as Error).message}`;
    }
    const candidates = Object.values(module).filter((value): value is Plugin =>
      isPlugin(value) && value.kind === kind
    );
    const chosen = isPlugin(module.default) && module.default.kind === kind
      ? module.default
      : candidates.length === 1
      ? candidates[0]
      : undefined;
    if (!chosen) {
      return `module "${name}" must export one ${kind} plugin (made with define${
        kind[0].toUpperCase() + kind.slice(1)
      }), as its default export or its only export of that kind`;
    }
    return chosen as Extract<Plugin, { kind: K }>;
  }
}

function isModulePath(name: string): boolean {
  return name.startsWith("./") || name.startsWith("../") || name.startsWith("/") ||
    name.startsWith("file:") || /\.(ts|js|mjs|mts)$/.test(name);
}

function isPlugin(value: unknown): value is Plugin {
  return typeof value === "object" && value !== null && "kind" in value &&
    "create" in value && "config" in value && "name" in value;
}
