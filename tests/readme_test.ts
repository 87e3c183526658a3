/**
 * The README is the front door: its generated reference is current, and
 * every JSON block and the plugin example in it work as written.
 */
import { assert, assertEquals } from "./_assert.ts";
import { withReference } from "../dev/config_reference.ts";
import { buildPipelines, parseConnectors } from "../core/config.ts";
import { builtinRegistry } from "../builtins.ts";
import { parseAlertsConfig } from "../core/alert_rules.ts";

const readme = await Deno.readTextFile(new URL("../README.md", import.meta.url));

/** The fenced blocks of one language, in order. */
function blocks(language: string): string[] {
  const fence = new RegExp("```" + language + "\\n([\\s\\S]*?)```", "g");
  return [...readme.matchAll(fence)].map((match) => match[1]);
}

/** Plausible values for the variables the README's configs reference. */
function env(name: string): string {
  if (/(_URL|^DB)$/.test(name)) return "postgres://user:secret@127.0.0.1:5432/db";
  return "value";
}

Deno.test("the README's config reference matches the plugins' schemas (run `deno task docs`)", () => {
  assertEquals(readme, withReference(readme));
});

Deno.test("every JSON block in the README parses, and its pipelines and alerts validate", async () => {
  const json = blocks("json");
  assert(json.length >= 3, `only ${json.length} JSON blocks found`);
  // The plugin example the README's configs name by path, written where they expect it.
  const folder = await Deno.makeTempDir();
  try {
    const plugin = blocks("ts").find((block) => block.startsWith("// my_source.ts"));
    assert(plugin, "the README's my_source.ts example is missing");
    await Deno.writeTextFile(`${folder}/my_source.ts`, plugin);
    let checked = 0;
    // A block may name a pipeline of an earlier block (a reconcile job names the one it checks).
    const earlier: ReturnType<typeof parseConnectors> = [];
    for (const text of json) {
      const value = JSON.parse(text);
      if ("config" in value) {
        const connectors = parseConnectors(value).map((c) => ({ ...c, baseDir: folder }));
        const others = earlier.filter((c) => c.name !== value.name);
        const specs = await buildPipelines([...others, ...connectors], {
          registry: builtinRegistry(),
          providers: { env, readText: () => "" },
        });
        assertEquals(specs.map((spec) => spec.name).slice(others.length), [value.name]);
        earlier.push(...connectors);
        checked++;
      } else if ("alerts" in value) {
        parseAlertsConfig(value, "README");
        checked++;
      }
    }
    assert(checked >= 3, `only ${checked} blocks were validated`);
  } finally {
    await Deno.remove(folder, { recursive: true });
  }
});
