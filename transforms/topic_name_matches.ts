/**
 * `topic_name_matches`: Kafka's TopicNameMatches predicate. True when
 * `pattern`, a Java regular expression, matches the whole topic.
 *
 * ```json
 * {
 *   "transforms": "mask",
 *   "transforms.mask.predicate": "profiles",
 *   "predicates": "profiles",
 *   "predicates.profiles.type": "org.apache.kafka.connect.transforms.predicates.TopicNameMatches",
 *   "predicates.profiles.pattern": "warehouse\\.public\\.(profiles|applications)"
 * }
 * ```
 *
 * @module
 */
import { z } from "zod";
import { definePredicate } from "../api/plugin.ts";
import { addIssue, javaPattern } from "./_shared.ts";

const config = z.strictObject({
  pattern: z.string().min(1, "must not be empty").describe(
    "Java regular expression that must match the whole topic.",
  ),
}).superRefine((value, ctx) => {
  try {
    javaPattern(value.pattern);
  } catch (error) {
    addIssue(ctx, "pattern", `is invalid: ${(error as Error).message}`, value.pattern);
  }
});

/** Matches records whose topic matches a regular expression. */
export const topicNameMatches = definePredicate({
  name: "topic_name_matches",
  aliases: ["org.apache.kafka.connect.transforms.predicates.TopicNameMatches"],
  summary: "True when a Java regular expression matches the whole topic.",
  config,
  create(options) {
    const pattern = javaPattern(options.pattern);
    return (record) => pattern.test(record.topic);
  },
});
