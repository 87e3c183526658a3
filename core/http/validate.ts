/**
 * `PUT /connector-plugins/{class}/config/validate`: a config checked by the
 * same validation `sluice validate` runs, answered in Kafka Connect's
 * ConfigInfos shape (a definition and a value, with its errors, per key).
 *
 * @module
 */
import { ConfigError } from "../../api/errors.ts";
import { describeOptions, type OptionDoc } from "../../api/options.ts";
import type { Plugin } from "../../api/plugin.ts";
import { buildPipelines, parseConnectors, pipelineOptions } from "../config.ts";
import type { Registry } from "../registry.ts";

/** One key of Kafka Connect's validation response. */
interface ConfigInfo {
  readonly definition: {
    name: string;
    type: string;
    required: boolean;
    default_value: string | null;
    importance: "HIGH" | "MEDIUM";
    documentation: string;
    group: string;
    width: "NONE";
    display_name: string;
    dependents: string[];
    order: number;
  };
  readonly value: {
    name: string;
    value: string | null;
    recommended_values: string[];
    errors: string[];
    visible: boolean;
  };
}

/** Kafka Connect's validation response. */
export interface ConfigInfos {
  readonly name: string;
  readonly error_count: number;
  readonly groups: string[];
  readonly configs: ConfigInfo[];
}

const TYPES: Record<string, string> = { boolean: "BOOLEAN", integer: "INT", list: "LIST" };

function text(value: unknown): string | null {
  if (value === undefined || value === null) return null;
  return typeof value === "string" ? value : JSON.stringify(value);
}

/** The plugin named by `pluginClass` (a source, or else a sink), or undefined. */
export function findConnectorPlugin(registry: Registry, pluginClass: string): Plugin | undefined {
  return registry.find("source", pluginClass) ?? registry.find("sink", pluginClass);
}

/** Validates `config` for the connector plugin `plugin`. */
export async function validateConfig(
  registry: Registry,
  plugin: Plugin,
  config: Record<string, unknown>,
): Promise<ConfigInfos> {
  const classKey = plugin.kind === "sink" ? "sink.class" : "connector.class";
  const full = { [classKey]: plugin.name, ...config };
  const errors = new Map<string, string[]>();
  let errorCount = 0;
  try {
    await buildPipelines(parseConnectors({ name: "validate", config: full }), { registry });
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    for (const issue of error.issues) {
      const key = issue.path.replace(/^[^:]*: config\.?/, "") || classKey;
      errors.set(key, [...(errors.get(key) ?? []), issue.message]);
      errorCount++;
    }
  }
  const sinkName = typeof full["sink.class"] === "string" ? full["sink.class"] : undefined;
  const sink = sinkName && plugin.kind === "source" ? registry.find("sink", sinkName) : undefined;
  const groups: [string, string, OptionDoc[]][] = [
    [plugin.name, plugin.kind === "sink" ? "sink." : "", describeOptions(plugin.config)],
    ...(sink
      ? [[sink.name, "sink.", describeOptions(sink.config)] as [string, string, OptionDoc[]]]
      : []),
    ["Common", "", describeOptions(pipelineOptions)],
  ];
  const configs: ConfigInfo[] = [];
  for (const [group, prefix, options] of groups) {
    for (const option of options) {
      configs.push(info(`${prefix}${option.key}`, option, group, configs.length, full, errors));
    }
  }
  // Keys with errors that no definition covers (unknown keys, the classes themselves).
  for (const [key] of errors) {
    if (!configs.some((c) => c.definition.name === key)) {
      configs.push(info(key, undefined, "Common", configs.length, full, errors));
    }
  }
  return { name: plugin.name, error_count: errorCount, groups: groups.map(([g]) => g), configs };
}

function info(
  key: string,
  option: OptionDoc | undefined,
  group: string,
  order: number,
  config: Record<string, unknown>,
  errors: ReadonlyMap<string, string[]>,
): ConfigInfo {
  return {
    definition: {
      name: key,
      type: TYPES[option?.type ?? ""] ?? "STRING",
      required: option?.required ?? false,
      default_value: text(option?.default),
      importance: option?.required ? "HIGH" : "MEDIUM",
      documentation: option?.description ?? "",
      group,
      width: "NONE",
      display_name: key,
      dependents: [],
      order,
    },
    value: {
      name: key,
      value: text(config[key]),
      recommended_values: [],
      errors: errors.get(key) ?? [],
      visible: true,
    },
  };
}
