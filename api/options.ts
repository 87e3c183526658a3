/**
 * Zod building blocks for plugin configs written in the Kafka Connect style,
 * where every value may arrive as a string (`"5432"`, `"true"`, `"a,b,c"`).
 *
 * @module
 */
/**
 * A third-party package: `deno doc --lint` (Deno 2.9) calls its types private,
 * which they are not (denoland/deno#27364); the tag silences that false alarm.
 *
 * @internal
 */
import { z } from "zod";

/**
 * An integer given as a number or a numeric string.
 *
 * @example Kafka Connect style values
 * ```ts
 * import { integer } from "@sluice/sluice";
 * import assert from "node:assert/strict";
 *
 * assert.equal(integer().parse("5432"), 5432);
 * assert.equal(integer().parse(-1), -1);
 * assert.equal(integer().safeParse("many").success, false);
 * assert.equal(integer().safeParse("1.5").success, false);
 * ```
 */
export function integer(): z.ZodType<number, unknown> {
  return z.union([z.number(), z.string().regex(/^-?\d+$/, "expected an integer")])
    .transform((value) => Number(value))
    .pipe(z.number().int()) as z.ZodType<number, unknown>;
}

/**
 * A positive integer given as a number or a numeric string.
 *
 * @example Zero is not positive
 * ```ts
 * import { positiveInteger } from "@sluice/sluice";
 * import assert from "node:assert/strict";
 *
 * assert.equal(positiveInteger().parse("1000"), 1000);
 * assert.equal(positiveInteger().safeParse("0").success, false);
 * ```
 */
export function positiveInteger(): z.ZodType<number, unknown> {
  return integer().pipe(z.number().positive("must be a positive integer")) as z.ZodType<
    number,
    unknown
  >;
}

/** A TCP port, 1 to 65535, given as a number or a numeric string. */
export function port(): z.ZodType<number, unknown> {
  const message = "must be a port number from 1 to 65535";
  return integer().pipe(z.number().min(1, message).max(65535, message)) as z.ZodType<
    number,
    unknown
  >;
}

const HOST_LABEL = "[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?";
const HOST_NAME = new RegExp(`^(?=.{1,253}\\.?$)${HOST_LABEL}(?:\\.${HOST_LABEL})*\\.?$`, "i");

/**
 * Why `host` is not a host name or IPv4 address a connection can go to, or
 * undefined when it is one. IPv6 literals, socket paths and URLs are refused
 * rather than half-parsed into another destination.
 */
export function hostProblem(host: string): string | undefined {
  if (host.trim() === "") return "is empty: name a host";
  if (host.includes(":")) {
    return `must be a host name or IPv4 address without port, scheme or IPv6 brackets: current value is ${
      JSON.stringify(host)
    }`;
  }
  if (!HOST_NAME.test(host)) {
    return `is not a valid host name or IPv4 address: current value is ${JSON.stringify(host)}`;
  }
  return undefined;
}

/** A host name or IPv4 address (see {@linkcode hostProblem}). */
export function host(): z.ZodType<string, unknown> {
  return z.string().superRefine((value, context) => {
    const problem = hostProblem(value);
    if (problem) context.addIssue({ code: "custom", message: problem, input: undefined });
  }) as z.ZodType<string, unknown>;
}

/**
 * Why `servers` is not a comma-separated list of `host:port` (Kafka's
 * `bootstrap.servers`), or undefined when it is one.
 */
export function hostPortListProblem(servers: string): string | undefined {
  const entries = servers.split(",").map((entry) => entry.trim());
  if (entries.every((entry) => entry === "")) return "is empty: list host:port pairs";
  for (const entry of entries) {
    // A listener name may come first, as in PLAINTEXT://broker:9092.
    const match = /^(?:[A-Za-z_]+:\/\/)?(.*):(\d+)$/.exec(entry);
    const hostIssue = match ? hostProblem(match[1]) : undefined;
    const portNumber = match ? Number(match[2]) : 0;
    if (!match || hostIssue || portNumber < 1 || portNumber > 65535) {
      return `must be a comma-separated list of host:port (port 1 to 65535): ${
        JSON.stringify(entry)
      } is not one`;
    }
  }
  return undefined;
}

/** Kafka `bootstrap.servers`: `host:port[,host:port…]`, each optionally `PLAINTEXT://host:port`. */
export function hostPortList(): z.ZodType<string, unknown> {
  return z.string().superRefine((value, context) => {
    const problem = hostPortListProblem(value);
    if (problem) context.addIssue({ code: "custom", message: problem, input: undefined });
  }) as z.ZodType<string, unknown>;
}

/**
 * A boolean given as `true`/`false` or the strings `"true"`/`"false"`.
 *
 * @example Strings and booleans
 * ```ts
 * import { boolean } from "@sluice/sluice";
 * import assert from "node:assert/strict";
 *
 * assert.equal(boolean().parse("false"), false);
 * assert.equal(boolean().parse(true), true);
 * assert.equal(boolean().safeParse("yes").success, false);
 * ```
 */
export function boolean(): z.ZodType<boolean, unknown> {
  return z.union([
    z.boolean(),
    z.enum(["true", "false"], { error: 'expected "true" or "false"' }).transform((v) =>
      v === "true"
    ),
  ]) as z.ZodType<boolean, unknown>;
}

/**
 * A list given as an array of strings or one comma-separated string.
 *
 * @example Debezium's `table.include.list`
 * ```ts
 * import { list } from "@sluice/sluice";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(list().parse("public.orders, public.customers,"), [
 *   "public.orders",
 *   "public.customers",
 * ]);
 * assert.deepEqual(list().parse(["a", "b"]), ["a", "b"]);
 * ```
 */
export function list(): z.ZodType<string[], unknown> {
  return z.union([
    z.array(z.string()),
    z.string().transform((value) =>
      value.split(",").map((item) => item.trim()).filter((item) => item.length > 0)
    ),
  ]) as z.ZodType<string[], unknown>;
}

/**
 * Pass as `{ when: always }` to a `superRefine` so cross-field checks run even
 * when other fields failed, and every problem is reported at once.
 */
export const always = (): boolean => true;

/**
 * One option of a plugin, as `sluice plugins` and the README show it.
 *
 * @example The documentation of a chunk size option
 * ```ts
 * import type { OptionDoc } from "@sluice/sluice";
 *
 * const doc: OptionDoc = {
 *   key: "chunk.size",
 *   type: "integer",
 *   required: false,
 *   default: 10000,
 *   description: "Rows read per chunk.",
 * };
 * ```
 */
export type OptionDoc = {
  /** The option's key as written in a config, e.g. `chunk.size`. */
  key: string;
  /** A short type name: `string`, `integer`, `boolean`, `list`, or the allowed values. */
  type: string;
  /** True when the option has neither a default nor may be left out. */
  required: boolean;
  /** The default value, when there is one. */
  default?: unknown;
  /** The option's `.describe()` text. */
  description: string;
};

/**
 * Describes each option of an object schema, for `sluice plugins` and the README.
 *
 * @example The options of a small plugin
 * ```ts
 * import { describeOptions, integer } from "@sluice/sluice";
 * import { z } from "zod";
 * import assert from "node:assert/strict";
 *
 * const config = z.strictObject({
 *   table: z.string().describe("The table to read."),
 *   "chunk.size": integer().default(1000).describe("Rows per chunk."),
 * });
 * assert.deepEqual(describeOptions(config), [
 *   { key: "table", type: "string", required: true, default: undefined, description: "The table to read." },
 *   { key: "chunk.size", type: "integer", required: false, default: 1000, description: "Rows per chunk." },
 * ]);
 * ```
 */
export function describeOptions(schema: z.ZodType): OptionDoc[] {
  const shape = objectShape(schema);
  if (!shape) return [];
  return Object.entries(shape).map(([key, field]) => {
    const { inner, defaultValue, optional } = unwrap(field);
    return {
      key,
      type: typeName(inner),
      required: !optional && defaultValue === undefined,
      default: defaultValue,
      description: field.description ?? inner.description ?? "",
    };
  });
}

/** The shape of an object schema (looking through pipes and refinements), or undefined. */
export function objectShape(schema: z.ZodType): Record<string, z.ZodType> | undefined {
  // deno-lint-ignore no-explicit-any
  const def = (schema as any)._zod?.def;
  if (!def) return undefined;
  if (def.type === "object") return def.shape;
  if (def.type === "pipe") return objectShape(def.in);
  return undefined;
}

function unwrap(field: z.ZodType): { inner: z.ZodType; defaultValue?: unknown; optional: boolean } {
  let current = field;
  let defaultValue: unknown;
  let optional = false;
  for (;;) {
    // deno-lint-ignore no-explicit-any
    const def = (current as any)._zod.def;
    if (def.type === "default" || def.type === "prefault") {
      defaultValue = typeof def.defaultValue === "function" ? def.defaultValue() : def.defaultValue;
      current = def.innerType;
    } else if (def.type === "optional" || def.type === "nullable") {
      optional = true;
      current = def.innerType;
    } else if (def.type === "pipe" && def.out?._zod?.def?.type === "transform") {
      // `.default(…).transform(…)`: the option's spec is what goes in.
      current = def.in;
    } else {
      return { inner: current, defaultValue, optional };
    }
  }
}

function typeName(schema: z.ZodType): string {
  // deno-lint-ignore no-explicit-any
  const def = (schema as any)._zod.def;
  switch (def.type) {
    case "enum":
      return Object.values(def.entries).map((v) => JSON.stringify(v)).join(" | ");
    case "union": {
      const names = new Set<string>(def.options.map((option: z.ZodType) => typeName(option)));
      if (names.has("boolean")) return "boolean";
      if (names.has("integer")) return "integer";
      if (names.has("list")) return "list";
      return [...names].join(" | ");
    }
    case "pipe":
      if (def.out?._zod?.def?.type === "number") return "integer";
      return typeName(def.in);
    case "array":
      return "list";
    case "literal":
      return def.values.map((v: unknown) => JSON.stringify(v)).join(" | ");
    default:
      return def.type;
  }
}
