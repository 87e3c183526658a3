/**
 * The built-in source connectors.
 *
 * @module
 */
import type { SourcePlugin } from "../api/plugin.ts";
import kafka from "./kafka.ts";
import postgresQuery from "./postgres_query.ts";
import postgresCdc from "./postgres_cdc/mod.ts";

/** Built-in sources. */
export const sources: readonly SourcePlugin[] = [
  kafka,
  postgresQuery,
  postgresCdc,
];
