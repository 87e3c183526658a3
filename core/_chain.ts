/**
 * Which transform steps a dead letter's record went through.
 *
 * A dead letter holds the record as the failing stage received it. Replaying
 * it resumes at that stage, so the steps before it are not run again: that
 * is right only if they are the steps the pipeline has now. A mask added
 * after a sink failure would otherwise be skipped and clear values written.
 * So each dead letter carries the fingerprint of the chain before its stage
 * (header `__sluice.errors.chain`), and a replay compares it with the
 * current chain before the same stage.
 *
 * The fingerprint lists each step as `alias:plugin@hash`, the hash covering
 * the step's parsed config, its predicate and `negate`: a changed mask salt
 * or field list counts as a different step. Secrets in a config appear only
 * through a truncated SHA-256.
 *
 * @module
 */
import { sha256 } from "@noble/hashes/sha2.js";
import { bytesToHex } from "@noble/hashes/utils.js";
import type { PipelineSpec, TransformSpec } from "./config.ts";

/**
 * Where in the chain a dead letter resumes: the index of its failed step;
 * 0 for a converter stage (`KEY_CONVERTER`, `VALUE_CONVERTER`: before the
 * transforms); undefined for a transform no longer in the chain, whose
 * record cannot be placed (steps before it may or may not have run).
 */
export function resumeStep(spec: PipelineSpec, stage: string): number | undefined {
  if (stage === "sink") return spec.transforms.length;
  const index = spec.transforms.findIndex((step) => step.alias === stage);
  if (index !== -1) return index;
  return /^[A-Z_]+_CONVERTER$/.test(stage) ? 0 : undefined;
}

/** A stable text of a parsed config: sorted keys, regexes, sets, maps, bytes, bigints. */
function canonical(value: unknown): unknown {
  if (value instanceof RegExp) return `/${value.source}/${value.flags}`;
  if (typeof value === "bigint") return `${value}n`;
  if (typeof value === "function") return `function ${value.name}`;
  if (value instanceof Uint8Array) return bytesToHex(value);
  if (value instanceof Set) return [...value].map(canonical);
  if (value instanceof Map) return [...value].map(([k, v]) => [canonical(k), canonical(v)]);
  if (Array.isArray(value)) return value.map(canonical);
  if (typeof value === "object" && value !== null) {
    return Object.fromEntries(
      Object.keys(value).sort().map((key) => [key, canonical((value as never)[key])]),
    );
  }
  return value;
}

/** One step as `alias:plugin@hash`. */
function stepFingerprint(step: TransformSpec): string {
  const described = canonical({
    plugin: step.plugin.name,
    config: step.config,
    predicate: step.predicate
      ? { plugin: step.predicate.plugin.name, config: step.predicate.config }
      : null,
    negate: step.negate,
  });
  const hash = bytesToHex(sha256(new TextEncoder().encode(JSON.stringify(described))));
  return `${step.alias}:${step.plugin.name}@${hash.slice(0, 16)}`;
}

/** The fingerprint of the first `count` steps of `spec`'s chain ("" for none). */
export function chainBefore(spec: PipelineSpec, count: number): string {
  return spec.transforms.slice(0, count).map(stepFingerprint).join(",");
}

/**
 * The fingerprint of the steps a record failing in `stage` went through, or
 * undefined when the stage is not in the chain.
 */
export function chainOfStage(spec: PipelineSpec, stage: string): string | undefined {
  const index = resumeStep(spec, stage);
  return index === undefined ? undefined : chainBefore(spec, index);
}

/**
 * Why a record that went through `recorded` must not resume where the
 * current chain has `current` before its stage, in a sentence; undefined
 * when both are the same chain.
 */
export function chainDifference(recorded: string, current: string): string | undefined {
  if (recorded === current) return undefined;
  const parse = (chain: string) =>
    new Map(
      chain === "" ? [] : chain.split(",").map((step) => {
        const at = step.indexOf(":");
        return [step.slice(0, at), step.slice(at + 1)] as const;
      }),
    );
  const before = parse(recorded);
  const now = parse(current);
  const parts: string[] = [];
  const missing = [...now.keys()].filter((alias) => !before.has(alias));
  const gone = [...before.keys()].filter((alias) => !now.has(alias));
  const changed = [...now.keys()].filter((alias) =>
    before.has(alias) && before.get(alias) !== now.get(alias)
  );
  if (missing.length > 0) {
    parts.push(
      `it did not go through ${
        missing.map((a) => `"${a}" (${pluginOf(now.get(a)!)})`).join(", ")
      }, added to the chain since`,
    );
  }
  if (changed.length > 0) {
    parts.push(`the configuration of ${list(changed)} changed since`);
  }
  if (gone.length > 0) parts.push(`it went through ${list(gone)}, no longer in the chain`);
  if (parts.length === 0) parts.push("the steps before its stage are in another order now");
  return parts.join("; ");
}

const pluginOf = (step: string) => step.slice(0, step.indexOf("@"));
const list = (names: readonly string[]) => names.map((name) => `"${name}"`).join(", ");
