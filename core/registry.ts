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
 * A plugin known by its names before its module is loaded: a registry
 * imports it (`load`) only when a config names it, so a process pays the
 * start-up time and memory of the plugins it runs, not of every plugin that
 * ships. `load` must resolve to a plugin of this kind and name.
 *
 * @example A plugin loaded on first use
 * ```ts
 * import { defineTransform, Registry } from "@sluice/sluice";
 * import { z } from "zod";
 * import assert from "node:assert/strict";
 *
 * let loads = 0;
 * const registry = new Registry([{
 *   kind: "transform",
 *   name: "noop",
 *   load: async () => {
 *     loads++;
 *     return defineTransform({
 *       name: "noop",
 *       summary: "Passes records through.",
 *       config: z.strictObject({}),
 *       create: () => ({ apply: (record) => record }),
 *     });
 *   },
 * }]);
 * assert.equal(loads, 0);
 * assert.equal((await registry.load("transform", "noop"))?.name, "noop");
 * assert.equal(registry.find("transform", "noop")?.name, "noop");
 * assert.equal(loads, 1);
 * ```
 */
export interface LazyPlugin {
  /** The plugin's kind. */
  readonly kind: PluginKind;
  /** Its name. */
  readonly name: string;
  /** Its other accepted names. */
  readonly aliases?: readonly string[];
  /** Imports the module and returns the plugin. */
  load(): Promise<Plugin>;
}

interface Entry {
  readonly kind: PluginKind;
  readonly name: string;
  readonly aliases: readonly string[];
  plugin?: Plugin;
  lazy?: LazyPlugin;
  loading?: Promise<Plugin>;
}

/**
 * Looks plugins up by name or alias. Nothing registers itself on import:
 * a registry holds exactly the plugins it was given, loaded ones or
 * {@linkcode LazyPlugin}s that are imported when first asked for
 * ({@linkcode Registry.load}, {@linkcode Registry.resolve},
 * {@linkcode Registry.loadNamed}, {@linkcode Registry.loadAll}).
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
  readonly #entries: Entry[] = [];
  readonly #byName = new Map<string, Entry>();

  /** Registers `plugins` in order; throws when two share a name or alias of one kind. */
  constructor(plugins: Iterable<Plugin | LazyPlugin> = []) {
    for (const plugin of plugins) this.register(plugin);
  }

  /**
   * Adds a plugin, or a lazy one. Names and aliases must be unique per kind.
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
  register(plugin: Plugin | LazyPlugin): this {
    const lazy = isPlugin(plugin) ? undefined : plugin as LazyPlugin;
    const aliases = plugin.aliases ?? [];
    const entry: Entry = lazy
      ? { kind: lazy.kind, name: lazy.name, aliases, lazy }
      : { kind: plugin.kind, name: plugin.name, aliases, plugin: plugin as Plugin };
    for (const name of [plugin.name, ...aliases]) {
      const id = `${plugin.kind}:${name}`;
      if (this.#byName.has(id)) {
        throw new Error(`Cannot register ${plugin.kind} "${plugin.name}": "${name}" is taken`);
      }
      this.#byName.set(id, entry);
    }
    this.#entries.push(entry);
    return this;
  }

  /**
   * Every registered plugin, optionally of one kind, sorted by name. Lazy
   * plugins must be loaded first ({@linkcode Registry.loadAll}); their
   * names alone are in {@linkcode Registry.names}.
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
    return this.#of(kind).map((entry) => this.#loaded(entry))
      .sort((a, b) => a.name.localeCompare(b.name));
  }

  /**
   * The names of the registered plugins, optionally of one kind, sorted,
   * without loading any.
   *
   * @example Names of plugins not loaded yet
   * ```ts
   * import { Registry } from "@sluice/sluice";
   * import assert from "node:assert/strict";
   *
   * const registry = new Registry([{ kind: "sink", name: "nowhere", load: () => Promise.reject(new Error("unused")) }]);
   * assert.deepEqual(registry.names("sink"), ["nowhere"]);
   * ```
   */
  names(kind?: PluginKind): string[] {
    return this.#of(kind).map((entry) => entry.name).sort((a, b) => a.localeCompare(b));
  }

  /**
   * The names and aliases of the registered plugins of `kind` (by name,
   * each name followed by its aliases), without loading any.
   *
   * @example A Debezium class name is an alias
   * ```ts
   * import { builtinRegistry } from "@sluice/sluice/builtins";
   * import assert from "node:assert/strict";
   *
   * assert.ok(builtinRegistry().namesAndAliases("source").includes("io.debezium.connector.postgresql.PostgresConnector"));
   * ```
   */
  namesAndAliases(kind: PluginKind): string[] {
    return this.#of(kind).sort((a, b) => a.name.localeCompare(b.name))
      .flatMap((entry) => [entry.name, ...entry.aliases]);
  }

  /**
   * The plugin of `kind` named `name` (or with that alias), if registered.
   * A lazy plugin must have been loaded: this throws for one that was not.
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
    const entry = this.#byName.get(`${kind}:${name}`);
    return entry && this.#loaded(entry) as Extract<Plugin, { kind: K }>;
  }

  /**
   * Whether a plugin of `kind` is registered under `name`, loaded or not.
   *
   * @example
   * ```ts
   * import { builtinRegistry } from "@sluice/sluice/builtins";
   * import assert from "node:assert/strict";
   *
   * assert.ok(builtinRegistry().has("sink", "kafka"));
   * assert.ok(!builtinRegistry().has("sink", "postgress"));
   * ```
   */
  has(kind: PluginKind, name: string): boolean {
    return this.#byName.has(`${kind}:${name}`);
  }

  /**
   * The plugin of `kind` named `name` (or with that alias), imported first
   * when it is lazy; undefined when none is registered under that name.
   *
   * @example
   * ```ts
   * import { builtinRegistry } from "@sluice/sluice/builtins";
   * import assert from "node:assert/strict";
   *
   * assert.equal((await builtinRegistry().load("sink", "postgres"))?.kind, "sink");
   * ```
   */
  async load<K extends PluginKind>(
    kind: K,
    name: string,
  ): Promise<Extract<Plugin, { kind: K }> | undefined> {
    const entry = this.#byName.get(`${kind}:${name}`);
    if (!entry) return undefined;
    return await this.#load(entry) as Extract<Plugin, { kind: K }>;
  }

  /**
   * Loads every lazy plugin, of any kind, whose name or alias is one of
   * `names` (other strings are ignored): what a config names, before
   * {@linkcode Registry.find} is asked about it.
   *
   * @example
   * ```ts
   * import { builtinRegistry } from "@sluice/sluice/builtins";
   * import assert from "node:assert/strict";
   *
   * const registry = builtinRegistry();
   * await registry.loadNamed(["route", "no such plugin"]);
   * assert.equal(registry.find("transform", "route")?.name, "route");
   * ```
   */
  async loadNamed(names: Iterable<unknown>): Promise<void> {
    const wanted = new Set<Entry>();
    for (const name of names) {
      if (typeof name !== "string") continue;
      for (const kind of KINDS) {
        const entry = this.#byName.get(`${kind}:${name}`);
        if (entry?.lazy && !entry.plugin) wanted.add(entry);
      }
    }
    await Promise.all([...wanted].map((entry) => this.#load(entry)));
  }

  /**
   * Loads every lazy plugin (for listings such as `sluice plugins`).
   *
   * @example
   * ```ts
   * import { builtinRegistry } from "@sluice/sluice/builtins";
   * import assert from "node:assert/strict";
   *
   * const registry = await builtinRegistry().loadAll();
   * assert.ok(registry.list("transform").length > 5);
   * ```
   */
  async loadAll(): Promise<this> {
    await Promise.all(this.#entries.map((entry) => this.#load(entry)));
    return this;
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
    return KINDS.filter((kind) => this.#byName.has(`${kind}:${name}`));
  }

  /**
   * Finds a plugin by name (importing it when it is lazy), or imports it
   * when `name` is a module path (relative paths resolve against `baseDir`,
   * the config file's folder). Returns a sentence explaining the failure
   * instead of throwing.
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
      const plugin = await this.load(kind, name);
      if (plugin) return plugin;
      const valid = this.names(kind).join(", ");
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

  #of(kind?: PluginKind): Entry[] {
    return this.#entries.filter((entry) => !kind || entry.kind === kind);
  }

  #loaded(entry: Entry): Plugin {
    if (entry.plugin) return entry.plugin;
    throw new Error(
      `The ${entry.kind} "${entry.name}" is registered lazily and not loaded yet: ` +
        `await registry.load("${entry.kind}", "${entry.name}") (or loadNamed, loadAll) first`,
    );
  }

  #load(entry: Entry): Promise<Plugin> {
    if (entry.plugin) return Promise.resolve(entry.plugin);
    entry.loading ??= entry.lazy!.load().then((plugin) => {
      if (!isPlugin(plugin) || plugin.kind !== entry.kind || plugin.name !== entry.name) {
        throw new Error(
          `The lazy ${entry.kind} "${entry.name}" loaded something else: ${
            isPlugin(plugin) ? `the ${plugin.kind} "${plugin.name}"` : "not a plugin"
          }`,
        );
      }
      entry.plugin = plugin;
      return plugin;
    }, (error) => {
      // A failed import may succeed later (a file being written): do not keep the failure.
      entry.loading = undefined;
      throw error;
    });
    return entry.loading;
  }
}

const KINDS: readonly PluginKind[] = ["source", "sink", "transform", "predicate"];

function isModulePath(name: string): boolean {
  return name.startsWith("./") || name.startsWith("../") || name.startsWith("/") ||
    name.startsWith("file:") || /\.(ts|js|mjs|mts)$/.test(name);
}

function isPlugin(value: unknown): value is Plugin {
  return typeof value === "object" && value !== null && "kind" in value &&
    "create" in value && "config" in value && "name" in value;
}
