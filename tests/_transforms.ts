/**
 * Helpers for the transform tests: build a plugin from Kafka-style options
 * the way the config loader does, apply it to deep-frozen records (so any
 * mutation of the input throws), and collect config issues as the loader
 * reports them.
 */
import { getLogger } from "@logtape/logtape";
import type { z } from "zod";
import { describeIssue } from "../core/config.ts";
import type {
  PluginContext,
  Predicate,
  PredicatePlugin,
  Transform,
  TransformPlugin,
} from "../api/plugin.ts";
import type { ChangeEvent, ChangeOp, Row, SluiceRecord } from "../api/record.ts";

/** A plugin context for tests. */
export function testContext(): PluginContext {
  return {
    pipeline: "test",
    logger: getLogger(["sluice", "test"]),
    signal: new AbortController().signal,
  };
}

// deno-lint-ignore no-explicit-any
type AnyTransformPlugin = TransformPlugin<any>;
// deno-lint-ignore no-explicit-any
type AnyPredicatePlugin = PredicatePlugin<any>;

/** Parses `options` with the plugin's schema (throwing on issues) and creates it. */
export async function make(
  plugin: AnyTransformPlugin,
  options: Record<string, unknown> = {},
): Promise<Transform> {
  return await plugin.create(parse(plugin, options), testContext());
}

/** Creates a predicate from options. */
export function makePredicate(
  plugin: AnyPredicatePlugin,
  options: Record<string, unknown> = {},
): Predicate {
  return plugin.create(parse(plugin, options), testContext());
}

function parse(plugin: AnyTransformPlugin | AnyPredicatePlugin, options: Record<string, unknown>) {
  const result = plugin.config.safeParse(options, { reportInput: true });
  if (!result.success) {
    const issues = configIssues(plugin, options).map((i) => `${i.path}: ${i.message}`);
    throw new Error(`Invalid ${plugin.name} options:\n${issues.join("\n")}`);
  }
  return result.data;
}

/** The issues the config loader would report, as `{ path, message }` (empty when valid). */
export function configIssues(
  plugin: AnyTransformPlugin | AnyPredicatePlugin,
  options: Record<string, unknown>,
): { path: string; message: string }[] {
  const result = plugin.config.safeParse(options, { reportInput: true });
  if (result.success) return [];
  const issues: z.core.$ZodIssue[] = result.error.issues;
  return issues.flatMap((issue) =>
    issue.code === "unrecognized_keys"
      ? issue.keys.map((key: string) => ({ path: key, message: "is not an option" }))
      : [{ path: issue.path.map(String).join("."), message: describeIssue(issue) }]
  );
}

/** Applies a transform to a deep-frozen copy of `record`. */
export async function apply(
  transform: Transform,
  record: SluiceRecord,
): Promise<SluiceRecord | null> {
  return await transform.apply(deepFreeze(record));
}

/** Freezes an object graph (Dates and byte arrays excepted: they cannot be frozen usefully). */
export function deepFreeze<T>(value: T): T {
  if (value === null || typeof value !== "object" || Object.isFrozen(value)) return value;
  if (value instanceof Date || ArrayBuffer.isView(value)) return value;
  for (const child of Object.values(value)) deepFreeze(child);
  return Object.freeze(value);
}

/** A batch row record. */
export function rowRecord(value: Row | null, extra: Partial<SluiceRecord> = {}): SluiceRecord {
  return { topic: "test", key: null, value, ...extra };
}

/** A Debezium change event record from PostgreSQL. */
export function changeRecord(
  op: ChangeOp,
  images: { before?: Row | null; after?: Row | null },
  extra: Partial<SluiceRecord> & { source?: Record<string, unknown>; envelope?: Row } = {},
): SluiceRecord {
  const { source, envelope, ...rest } = extra;
  const value: ChangeEvent = {
    before: images.before ?? null,
    after: images.after ?? null,
    source: {
      version: "0.1.0",
      connector: "postgresql",
      name: "warehouse",
      ts_ms: 1_700_000_000_000,
      snapshot: "false",
      db: "smart_warehouse",
      schema: "public",
      table: "profiles",
      txId: 571,
      lsn: 1234,
      ...source,
    },
    op,
    ts_ms: 1_700_000_000_100,
    ...envelope,
  };
  return { topic: "warehouse.public.profiles", key: null, value, ...rest };
}

/** The row images of a change event record, for assertions. */
export function images(record: SluiceRecord | null): { before: Row | null; after: Row | null } {
  const value = record?.value as ChangeEvent;
  return { before: value.before, after: value.after };
}
