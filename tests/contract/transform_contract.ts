/**
 * The contract every transform keeps (Kafka Connect's rule: a transform
 * returns a record or null and never mutates its input), run against each
 * plugin with a small valid config from `transforms_test.ts`:
 *
 * - it never mutates its input (the input is deep-frozen, and compared with
 *   a copy taken before);
 * - it handles a row record, every change op (c, u, r, a delete whose
 *   `before` holds only the key, a truncate) and a tombstone;
 * - it returns a record (with a topic) or null, never anything else.
 *
 * @module
 */
import type { TransformPlugin } from "../../api/plugin.ts";
import type { ChangeOp, Row, SluiceRecord } from "../../api/record.ts";
import { assert, assertEquals } from "../_assert.ts";
import { changeRecord, deepFreeze, make, rowRecord } from "../_transforms.ts";

/** The kinds of input record every transform is given. */
export const TRANSFORM_INPUTS = [
  "row",
  "create",
  "update",
  "snapshot read",
  "delete (key-only before)",
  "tombstone",
  "truncate",
] as const;

/** One kind of input record. */
export type TransformInput = typeof TRANSFORM_INPUTS[number];

/** One line of the table: a plugin, a small valid config, and its known failures. */
export interface TransformCase {
  // deno-lint-ignore no-explicit-any
  readonly plugin: TransformPlugin<any>;
  readonly config: Record<string, string>;
  /**
   * Inputs that fail today because of a known bug: their cases are ignored
   * (not weakened) until the fix lands. Name the issue item beside each.
   */
  readonly ignore?: Partial<Record<TransformInput, true>>;
}

/** A full row of the fixture table (the fields the configs of the table name). */
const ROW: Row = {
  id: 1,
  name: "Ada Lovelace",
  email: "ada@example.org",
  n: "12",
  ts: "2024-03-10T12:34:56.789Z",
  region: "north",
};

const CDC_TOPIC = "warehouse.public.profiles";

/** The input record of a kind, built fresh for every case. */
export function inputRecord(kind: TransformInput): SluiceRecord {
  const key = { id: 1 };
  const change = (op: ChangeOp, images: { before?: Row | null; after?: Row | null }) =>
    changeRecord(op, images, { key, topic: CDC_TOPIC, origin: { lsn: "0/16B3748", txId: 571 } });
  switch (kind) {
    case "row":
      return rowRecord({ ...ROW }, { key, topic: "public.profiles" });
    case "create":
      return change("c", { after: { ...ROW } });
    case "update":
      return change("u", { after: { ...ROW, name: "Ada King" } });
    case "snapshot read":
      return change("r", { after: { ...ROW } });
    case "delete (key-only before)":
      // Default replica identity: a delete's old image holds only the key.
      return change("d", { before: { id: 1 } });
    case "tombstone":
      return { topic: CDC_TOPIC, key, value: null, origin: { lsn: "0/16B3748", txId: 571 } };
    case "truncate":
      return changeRecord("t", {}, { key: null, topic: CDC_TOPIC, origin: { lsn: "0/16B37A0" } });
  }
}

/** Registers the contract's tests for one transform. */
export function transformContract(entry: TransformCase): void {
  const { plugin, config } = entry;
  for (const kind of TRANSFORM_INPUTS) {
    Deno.test({
      name: `transform ${plugin.name} handles a ${kind} record without mutating it`,
      ignore: entry.ignore?.[kind] === true,
      fn: async () => {
        const transform = await make(plugin, config);
        try {
          const input = inputRecord(kind);
          const before = structuredClone(input);
          const output = await transform.apply(deepFreeze(input));
          assertEquals(input, before, "the input record is unchanged");
          assert(
            output === null || isRecord(output),
            `${plugin.name} returned neither a record nor null: ${Deno.inspect(output)}`,
          );
        } finally {
          await transform.close?.();
        }
      },
    });
  }
}

function isRecord(value: unknown): value is SluiceRecord {
  if (value === null || typeof value !== "object") return false;
  const record = value as Record<string, unknown>;
  return typeof record.topic === "string" && record.topic.length > 0 && "key" in record &&
    "value" in record;
}
