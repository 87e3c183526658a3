/**
 * The built-in transforms and predicates.
 *
 * @module
 */
import type { PredicatePlugin, TransformPlugin } from "../api/plugin.ts";
import { cast } from "./cast.ts";
import { dedup } from "./dedup/mod.ts";
import { filter } from "./filter.ts";
import { hasHeaderKey } from "./has_header_key.ts";
import { insertField } from "./insert_field.ts";
import { mask } from "./mask/mod.ts";
import { recordIsTombstone } from "./record_is_tombstone.ts";
import { replaceField } from "./replace_field.ts";
import { route } from "./route.ts";
import { timestampConverter } from "./timestamp_converter.ts";
import { topicNameMatches } from "./topic_name_matches.ts";
import { unwrap } from "./unwrap.ts";
import { valueToKey } from "./value_to_key.ts";

export { checkMaskFields, fpeDecrypt, fpeEncrypt, type MaskConfig } from "./mask/mod.ts";
export { createDedup, type DedupTransform, FileSeenStore, type SeenStore } from "./dedup/mod.ts";

/** Built-in transforms. */
export const transforms: readonly TransformPlugin[] = [
  mask,
  filter,
  dedup,
  route,
  unwrap,
  replaceField,
  insertField,
  cast,
  timestampConverter,
  valueToKey,
];

/** Built-in predicates. */
export const predicates: readonly PredicatePlugin[] = [
  topicNameMatches,
  hasHeaderKey,
  recordIsTombstone,
];
