/**
 * The built-in sinks.
 *
 * @module
 */
import type { SinkPlugin } from "../core/plugin.ts";

/** Built-in sinks. */
export const sinks: readonly SinkPlugin[] = [];
