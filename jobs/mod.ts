/**
 * The built-in jobs: batch sources that work on another pipeline rather
 * than read data of their own (see {@linkcode SourcePlugin.subject}).
 *
 * @module
 */
import type { SourcePlugin } from "../api/plugin.ts";
import reconcile from "./reconcile/mod.ts";

/** Built-in jobs. */
export const jobs: readonly SourcePlugin[] = [reconcile];
