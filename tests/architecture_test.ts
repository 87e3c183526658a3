/**
 * The layers, read from the import statements: plugins (connectors, sinks,
 * transforms) see only the plugin API (`api/`) and the drivers; the API sees
 * nothing of ours but itself; the engine (`core/`) never reaches into a
 * plugin or a driver; jobs (reconcile) are plugins too, and reach another
 * pipeline's plugins only through the parts the runtime hands them; `mod.ts` exports the API and the runtime without
 * pulling the built-ins (and their drivers) in.
 */
import { assert, assertEquals } from "./_assert.ts";
import { dirname, join, relative, resolve } from "node:path";

const root = resolve(dirname(new URL(import.meta.url).pathname), "..");

/** The top-level folders (or files) each layer may import from. */
const allowed: Record<string, string[]> = {
  api: ["api"],
  drivers: ["drivers", "api"],
  core: ["core", "api"],
  connectors: ["connectors", "api", "drivers"],
  sinks: ["sinks", "api", "drivers"],
  transforms: ["transforms", "api", "drivers"],
  jobs: ["jobs", "api", "drivers"],
};

async function* sourceFiles(folder: string): AsyncGenerator<string> {
  for await (const entry of Deno.readDir(folder)) {
    const path = join(folder, entry.name);
    if (entry.isDirectory) yield* sourceFiles(path);
    else if (entry.name.endsWith(".ts")) yield path;
  }
}

/** The relative module specifiers a file imports or re-exports. */
function localImports(text: string): string[] {
  const found: string[] = [];
  const pattern = /(?:^|\n)\s*(?:import|export)\b[^;]*?from\s+["'](\.[^"']+)["']/g;
  for (const match of text.matchAll(pattern)) found.push(match[1]);
  const dynamic = /import\(\s*["'](\.[^"']+)["']\s*\)/g;
  for (const match of text.matchAll(dynamic)) found.push(match[1]);
  return found;
}

function layerOf(path: string): string {
  return relative(root, path).split("/")[0];
}

async function violations(layer: string): Promise<string[]> {
  const problems: string[] = [];
  for await (const file of sourceFiles(join(root, layer))) {
    const text = await Deno.readTextFile(file);
    for (const specifier of localImports(text)) {
      const target = layerOf(resolve(dirname(file), specifier));
      if (!allowed[layer].includes(target)) {
        problems.push(`${relative(root, file)} imports ${specifier} (${target}/)`);
      }
    }
  }
  return problems;
}

for (const layer of Object.keys(allowed)) {
  Deno.test(`${layer}/ imports only ${allowed[layer].join(", ")}`, async () => {
    assertEquals(await violations(layer), []);
  });
}

Deno.test("mod.ts exports the API and the runtime, not the built-in plugins", async () => {
  const text = await Deno.readTextFile(join(root, "mod.ts"));
  const targets = localImports(text).map((specifier) => layerOf(resolve(root, specifier)));
  assert(targets.length > 0, "mod.ts re-exports nothing");
  const forbidden = targets.filter((target) => !["api", "core"].includes(target));
  assertEquals(forbidden, []);
});

Deno.test("the import reader sees what it must police", () => {
  const text = 'import { a } from "../core/x.ts";\nexport { b } from "./y.ts";\n' +
    'import type {\n  C,\n} from "../drivers/z.ts";\nconst m = await import("../sinks/w.ts");';
  assertEquals(localImports(text), ["../core/x.ts", "./y.ts", "../drivers/z.ts", "../sinks/w.ts"]);
});
