/**
 * The built-in source connectors.
 *
 * @module
 */
import type { SourcePlugin } from "../core/plugin.ts";

/** Built-in sources. */
export const sources: readonly SourcePlugin[] = [];
