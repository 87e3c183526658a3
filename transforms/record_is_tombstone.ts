/**
 * `record_is_tombstone`: Kafka's RecordIsTombstone predicate. True when the
 * record's value is null. It takes no options.
 *
 * ```json
 * {
 *   "transforms": "mask",
 *   "transforms.mask.predicate": "tombstone",
 *   "transforms.mask.negate": "true",
 *   "predicates": "tombstone",
 *   "predicates.tombstone.type": "org.apache.kafka.connect.transforms.predicates.RecordIsTombstone"
 * }
 * ```
 *
 * @module
 */
import { z } from "zod";
import { definePredicate } from "../api/plugin.ts";

/** Matches tombstones (records with a null value). */
export const recordIsTombstone = definePredicate({
  name: "record_is_tombstone",
  aliases: ["org.apache.kafka.connect.transforms.predicates.RecordIsTombstone"],
  summary: "True when the record is a tombstone (its value is null).",
  config: z.strictObject({}),
  create() {
    return (record) => record.value === null || record.value === undefined;
  },
});
