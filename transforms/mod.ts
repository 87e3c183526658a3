/**
 * The built-in transforms and predicates.
 *
 * @module
 */
import type { PredicatePlugin, TransformPlugin } from "../core/plugin.ts";

/** Built-in transforms. */
export const transforms: readonly TransformPlugin[] = [];

/** Built-in predicates. */
export const predicates: readonly PredicatePlugin[] = [];
