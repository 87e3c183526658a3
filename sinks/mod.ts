/**
 * The built-in sinks.
 *
 * @module
 */
import type { SinkPlugin } from "../api/plugin.ts";
import kafka from "./kafka.ts";
import postgres from "./postgres/mod.ts";

/** Built-in sinks. */
export const sinks: readonly SinkPlugin[] = [
  kafka,
  postgres,
];
