/**
 * The built-in source connectors.
 *
 * @module
 */
import type { SourcePlugin } from "../core/plugin.ts";
import postgresQuery from "./postgres_query.ts";

/** Built-in sources. */
export const sources: readonly SourcePlugin[] = [postgresQuery as unknown as SourcePlugin];
