/**
 * Config providers, as in Kafka Connect: `${env:VAR}` reads an environment
 * variable, `${file:path:key}` reads one key of a properties (or JSON) file,
 * and `${directory:path:file}` reads a whole file (as Docker and Kubernetes
 * secrets are mounted). Relative paths resolve against the config file.
 *
 * @module
 */
import { isAbsolute, resolve } from "./_path.ts";

const PLACEHOLDER = /\$\{(env|file|directory):([^}]*)\}/g;

/**
 * Where `${env:…}`, `${file:…}` and `${directory:…}` values come from. The
 * default reads the process environment and the file system; tests and
 * embedders can substitute their own.
 *
 * @example Values from a map
 * ```ts
 * import type { ProviderSources } from "@sluice/sluice";
 *
 * const files: Record<string, string> = { "/run/secrets/db": "postgres://localhost/warehouse" };
 * const sources: ProviderSources = {
 *   env: (name) => (name === "REGION" ? "eu-west" : undefined),
 *   readText: (path) => {
 *     if (!(path in files)) throw new Deno.errors.NotFound(path);
 *     return files[path];
 *   },
 * };
 * ```
 */
export interface ProviderSources {
  /** The value of environment variable `name`, or undefined when it is not set. */
  env(name: string): string | undefined;
  /** The whole text of the file at `path` (absolute); throws when it cannot be read. */
  readText(path: string): string;
}

const defaultSources: ProviderSources = {
  env: (name) => Deno.env.get(name),
  readText: (path) => Deno.readTextFileSync(path),
};

/**
 * Replaces every placeholder in `value`. Problems are reported through
 * `onProblem` (one sentence each) and the placeholder is left in place.
 */
export function resolvePlaceholders(
  value: string,
  baseDir: string,
  onProblem: (message: string) => void,
  sources: ProviderSources = defaultSources,
): string {
  return value.replace(PLACEHOLDER, (whole, provider: string, argument: string) => {
    const resolved = resolveOne(provider, argument, baseDir, sources);
    if (typeof resolved === "string") return resolved;
    onProblem(resolved.problem);
    return whole;
  });
}

function resolveOne(
  provider: string,
  argument: string,
  baseDir: string,
  sources: ProviderSources,
): string | { problem: string } {
  if (provider === "env") {
    const value = sources.env(argument);
    return value ?? { problem: `environment variable "${argument}" is not set` };
  }
  const split = argument.lastIndexOf(":");
  if (split <= 0) {
    return { problem: `"\${${provider}:${argument}}" must name a path and a key: path:key` };
  }
  const path = argument.slice(0, split);
  const key = argument.slice(split + 1);
  const fullPath = isAbsolute(path) ? path : resolve(baseDir, path);
  if (provider === "directory") {
    return readText(resolve(fullPath, key), sources);
  }
  const text = readText(fullPath, sources);
  if (typeof text !== "string") return text;
  const entries = fullPath.endsWith(".json") ? parseJsonEntries(text) : parseProperties(text);
  const value = entries[key];
  return value ?? { problem: `key "${key}" is not in file "${path}"` };
}

function readText(path: string, sources: ProviderSources): string | { problem: string } {
  try {
    return sources.readText(path).replace(/\r?\n$/, "");
  } catch (error) {
    return { problem: `cannot read file "${path}": ${(error as Error).message}` };
  }
}

function parseJsonEntries(text: string): Record<string, string> {
  const parsed = JSON.parse(text);
  return Object.fromEntries(Object.entries(parsed).map(([k, v]) => [k, String(v)]));
}

/** Parses the `key=value` lines of a Java properties file (comments with # or !). */
export function parseProperties(text: string): Record<string, string> {
  const entries: Record<string, string> = {};
  for (const rawLine of text.split(/\r?\n/)) {
    const line = rawLine.trim();
    if (line === "" || line.startsWith("#") || line.startsWith("!")) continue;
    const match = /^([^=:]+?)\s*[=:]\s*(.*)$/.exec(line);
    if (match) entries[match[1]] = match[2];
  }
  return entries;
}
