/**
 * The pipelines' configs as written, and their persistence for the REST API
 * (`POST /connectors`, `PUT /connectors/{name}/config`,
 * `DELETE /connectors/{name}`).
 *
 * Every change is written atomically (a temporary file in the same folder,
 * synced, renamed), so a crash leaves the old or the new file, whole. An
 * update rewrites the file the pipeline came from and keeps the other
 * pipelines in it; a new pipeline gets its own file `<name>.json` in the
 * first folder the process was started on. A process started on files only
 * has no such folder: it refuses to create pipelines, and updates and
 * deletes still rewrite their files. Configs are kept as written: provider
 * references (`${env:…}`, `${file:…}`) stay references.
 *
 * @module
 */
import { writeAtomically } from "../api/files.ts";
import { join, resolve } from "./_path.ts";
import { parseConnectors, type RawConnector, readConnectorFiles } from "./config.ts";

/** Why a change cannot be saved (the API answers 409). */
export class ConfigStoreConflict extends Error {
  /** Builds the error with a sentence that says why and what to do. */
  constructor(message: string) {
    super(message);
    this.name = "ConfigStoreConflict";
  }
}

/** The configs a process runs, and where each one is written. */
export class ConfigStore {
  readonly #entries: Map<string, RawConnector>;
  /** Where new pipelines are written; undefined when started on files only. */
  readonly folder?: string;
  /** Files named on the command line (not found in a folder). */
  readonly #named: Set<string>;
  #tail: Promise<unknown> = Promise.resolve();
  /** Each pipeline's config as written, by name (kept current by every change). */
  readonly configs: Map<string, Readonly<Record<string, unknown>>>;

  private constructor(entries: RawConnector[], folder: string | undefined, named: Set<string>) {
    this.#entries = new Map(entries.map((entry) => [entry.name, entry]));
    this.configs = new Map(entries.map((entry) => [entry.name, entry.config]));
    this.folder = folder;
    this.#named = named;
  }

  /** Reads the configs under `paths` (files and folders, as `sluice run` takes them). */
  static async open(paths: readonly string[]): Promise<ConfigStore> {
    const entries = await readConnectorFiles(paths);
    let folder: string | undefined;
    const named = new Set<string>();
    for (const path of paths) {
      if ((await Deno.stat(path)).isDirectory) folder ??= resolve(path);
      else named.add(resolve(path));
    }
    return new ConfigStore(entries, folder, named);
  }

  /** The entries as they are now, for validating a change against all of them. */
  entries(): RawConnector[] {
    return [...this.#entries.values()];
  }

  /** The entry a new or changed config would make (not saved). */
  draft(name: string, config: Record<string, unknown>): RawConnector {
    const existing = this.#entries.get(name);
    if (existing) return { ...existing, config };
    if (!this.folder) {
      throw new ConfigStoreConflict(
        `This process was started on config files, not a folder, so a new connector has nowhere to be saved: start sluice run on a folder to create connectors over REST (updates and deletes of the pipelines in those files still work)`,
      );
    }
    return { name, config, baseDir: this.folder, file: this.#newFile(name) };
  }

  /** Saves a new or changed config; resolves once it is on disk. */
  save(entry: RawConnector): Promise<void> {
    return this.#serialized(async () => {
      const file = entry.file!;
      const others = await this.#readFile(file).catch((error) => {
        if (error instanceof Deno.errors.NotFound) return undefined;
        throw error;
      });
      const written = { name: entry.name, config: entry.config };
      let content: unknown;
      if (others === undefined) content = written;
      else if (Array.isArray(others.json)) {
        const list = others.json as { name: string }[];
        const at = list.findIndex((item) => item.name === entry.name);
        content = at < 0 ? [...list, written] : list.map((item, i) => i === at ? written : item);
      } else if ((others.json as { name?: string }).name === entry.name) content = written;
      else content = [others.json, written];
      await writeAtomically(file, JSON.stringify(content, null, 2) + "\n");
      this.#entries.set(entry.name, entry);
      this.configs.set(entry.name, entry.config);
    });
  }

  /**
   * Checks that `name` can be removed: a process needs one pipeline, and a
   * file named on the command line must keep one (both would stop the next
   * start).
   */
  checkRemovable(name: string): void {
    const entry = this.#entries.get(name);
    if (!entry) return;
    if (this.#entries.size === 1) {
      throw new ConfigStoreConflict(
        `${name} is the last pipeline of this process, which could not start again without one: stop the process instead`,
      );
    }
    const file = entry.file ? resolve(entry.file) : undefined;
    if (file && this.#named.has(file) && this.#inFile(file).length === 1) {
      throw new ConfigStoreConflict(
        `${name} is the only pipeline of ${entry.file}, which was named on the command line and would then hold none: remove the file from the command line instead`,
      );
    }
  }

  /** Removes a pipeline's config from its file (and the file when it held only that one). */
  remove(name: string): Promise<void> {
    return this.#serialized(async () => {
      const entry = this.#entries.get(name);
      if (!entry?.file) return;
      const { json } = await this.#readFile(entry.file);
      const rest = Array.isArray(json)
        ? (json as { name: string }[]).filter((item) => item.name !== name)
        : (json as { name: string }).name === name
        ? []
        : [json];
      if (rest.length === 0) await Deno.remove(entry.file);
      else await writeAtomically(entry.file, JSON.stringify(rest, null, 2) + "\n");
      this.#entries.delete(name);
      this.configs.delete(name);
    });
  }

  #inFile(file: string): RawConnector[] {
    return [...this.#entries.values()].filter((e) => e.file && resolve(e.file) === file);
  }

  /** `<name>.json` in the folder (characters unsafe in a file name become `_`), never an existing file. */
  #newFile(name: string): string {
    const base = name.replace(/[^A-Za-z0-9._-]/g, "_").replace(/^\.+/, "_");
    const taken = new Set([...this.#entries.values()].map((e) => e.file && resolve(e.file)));
    for (let n = 1;; n++) {
      const file = join(this.folder!, n === 1 ? `${base}.json` : `${base}-${n}.json`);
      if (taken.has(resolve(file))) continue;
      try {
        Deno.statSync(file);
      } catch {
        return file;
      }
    }
  }

  async #readFile(file: string): Promise<{ json: unknown }> {
    const json = JSON.parse(await Deno.readTextFile(file));
    parseConnectors(json, file); // still well-formed (a hand edit may have broken it)
    return { json };
  }

  #serialized<T>(work: () => Promise<T>): Promise<T> {
    const next = this.#tail.then(work);
    this.#tail = next.catch(() => {});
    return next;
  }
}
