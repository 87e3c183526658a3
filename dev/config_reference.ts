/**
 * Generates the README's configuration reference from the plugins' zod
 * schemas, so the documentation cannot drift from the code.
 *
 * ```
 * deno task docs          # rewrite the section between the markers in README.md
 * ```
 * `tests/readme_test.ts` fails when the README is out of date.
 *
 * @module
 */
import { builtinRegistry } from "../builtins.ts";
import { pipelineOptions } from "../core/config.ts";
import { describeOptions } from "../api/options.ts";
import type { Plugin } from "../api/plugin.ts";

export const BEGIN = "<!-- BEGIN GENERATED CONFIG REFERENCE (deno task docs) -->";
export const END = "<!-- END GENERATED CONFIG REFERENCE -->";

/** The reference as markdown: pipeline options, then every plugin by kind. */
export function configReference(): string {
  const registry = builtinRegistry();
  const parts: string[] = [
    "### Pipeline options",
    "",
    "Read by the runtime from every pipeline config.",
    "",
    optionTable(pipelineOptions),
  ];
  const kinds: [Plugin["kind"], string, string][] = [
    ["source", "Sources", "`connector.class`; options unprefixed"],
    ["sink", "Sinks", "`sink.class`; options prefixed with `sink.`"],
    [
      "transform",
      "Transforms",
      "`transforms.<alias>.type`; options prefixed with `transforms.<alias>.`",
    ],
    [
      "predicate",
      "Predicates",
      "`predicates.<alias>.type`; options prefixed with `predicates.<alias>.`",
    ],
  ];
  for (const [kind, title, how] of kinds) {
    parts.push("", `### ${title}`, "", `Chosen with ${how}.`);
    for (const plugin of registry.list(kind)) {
      parts.push("", `#### \`${plugin.name}\``, "", plugin.summary);
      if (plugin.aliases?.length) {
        parts.push("", `Also accepted as: ${plugin.aliases.map((a) => `\`${a}\``).join(", ")}.`);
      }
      const table = optionTable(plugin.config);
      if (table) parts.push("", table);
    }
  }
  return parts.join("\n");
}

function optionTable(schema: Plugin["config"]): string {
  const options = describeOptions(schema);
  if (options.length === 0) return "";
  const escape = (text: string) => text.replaceAll("|", "\\|").replaceAll("\n", " ");
  const rows = options.map((option) => {
    const fallback = option.default !== undefined
      ? `\`${escape(JSON.stringify(option.default))}\``
      : option.required
      ? "required"
      : "";
    return `| \`${option.key}\` | ${escape(option.type)} | ${fallback} | ${
      escape(option.description)
    } |`;
  });
  return ["| option | type | default | description |", "| --- | --- | --- | --- |", ...rows].join(
    "\n",
  );
}

/** README text with the generated section replaced. */
export function withReference(readme: string): string {
  const start = readme.indexOf(BEGIN);
  const end = readme.indexOf(END);
  if (start < 0 || end < start) throw new Error(`README.md lacks the markers ${BEGIN} … ${END}`);
  return `${readme.slice(0, start + BEGIN.length)}\n\n${configReference()}\n\n${readme.slice(end)}`;
}

if (import.meta.main) {
  const path = new URL("../README.md", import.meta.url);
  await Deno.writeTextFile(path, withReference(await Deno.readTextFile(path)));
  console.log("README.md: config reference regenerated");
}
