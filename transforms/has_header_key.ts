/**
 * `has_header_key`: Kafka's HasHeaderKey predicate. True when the record has
 * a header named `name`.
 *
 * ```json
 * {
 *   "transforms": "unwrap",
 *   "transforms.unwrap.predicate": "fromDebezium",
 *   "predicates": "fromDebezium",
 *   "predicates.fromDebezium.type": "org.apache.kafka.connect.transforms.predicates.HasHeaderKey",
 *   "predicates.fromDebezium.name": "__op"
 * }
 * ```
 *
 * @module
 */
import { z } from "zod";
import { definePredicate } from "../api/plugin.ts";

const config = z.strictObject({
  name: z.string().min(1, "must not be empty").describe("The header name to look for."),
});

/** Matches records that carry a header. */
export const hasHeaderKey = definePredicate({
  name: "has_header_key",
  aliases: ["org.apache.kafka.connect.transforms.predicates.HasHeaderKey"],
  summary: "True when the record has a header with the given name.",
  config,
  create(options) {
    return (record) => record.headers !== undefined && Object.hasOwn(record.headers, options.name);
  },
});
