/**
 * Debezium's source signalling channel: rows inserted into the table named
 * by `signal.data.collection` (columns `id`, `type`, `data`) are read from
 * the stream itself and act on the capture at that point of the WAL.
 *
 * - `execute-snapshot` with `{"data-collections": ["public.t", …]}` takes a
 *   snapshot of those captured tables while the stream waits at the signal
 *   (Debezium's `blocking` snapshot; an `incremental` request is served the
 *   same way, and says so in the log). The usual answer to "I added a table
 *   to the publication: how do its existing rows get there?".
 * - `log` writes `data.message` to the log.
 *
 * Anything else is refused with an ERROR line and changes nothing: a signal
 * Sluice cannot honour exactly (a snapshot limited by
 * `additional-conditions`, a table that is not captured) must not be half
 * done.
 *
 * @module
 */
import type { TableRef } from "./_slot.ts";

/** What a signal row asks for, or why it cannot be done. */
export type Signal =
  | {
    readonly kind: "snapshot";
    readonly id: string;
    readonly collections: readonly string[];
    readonly type: string;
  }
  | { readonly kind: "log"; readonly id: string; readonly message: string }
  | { readonly kind: "refused"; readonly id: string; readonly reason: string };

/**
 * The signal a row of the signal table holds: its columns `id`, `type` and
 * `data`, else (as Debezium reads them) its first three columns in order.
 */
export function parseSignal(row: Record<string, unknown> | null | undefined): Signal {
  const columns = Object.values(row ?? {});
  const named = row && "type" in row;
  const id = String((named ? row.id : columns[0]) ?? "(no id)");
  const given = named ? row.type : columns[1];
  // Debezium reads type names in any case.
  const type = typeof given === "string" ? given.toLowerCase() : given;
  let data: unknown = (named ? row.data : columns[2]) ?? null;
  if (typeof data === "string") {
    try {
      data = data.trim() === "" ? null : JSON.parse(data);
    } catch (error) {
      return {
        kind: "refused",
        id,
        reason: `its data is not JSON (${(error as Error).message}): ${data}`,
      };
    }
  }
  const fields = (data ?? {}) as Record<string, unknown>;
  switch (type) {
    case "log":
      if (typeof fields.message !== "string") {
        return { kind: "refused", id, reason: `a log signal needs data {"message": "…"}` };
      }
      return { kind: "log", id, message: fields.message };
    case "execute-snapshot": {
      const collections = fields["data-collections"];
      if (
        !Array.isArray(collections) || collections.length === 0 ||
        !collections.every((c) => typeof c === "string" && c !== "")
      ) {
        return {
          kind: "refused",
          id,
          reason: `execute-snapshot needs "data-collections", a list of tables ("schema.table")`,
        };
      }
      const kind = typeof fields.type === "string" ? fields.type.toLowerCase() : "incremental";
      if (kind !== "incremental" && kind !== "blocking") {
        return {
          kind: "refused",
          id,
          reason: `snapshot type "${kind}" is unknown (blocking or incremental)`,
        };
      }
      const conditions = fields["additional-conditions"];
      if (Array.isArray(conditions) ? conditions.length > 0 : conditions !== undefined) {
        return {
          kind: "refused",
          id,
          reason:
            "additional-conditions are not supported: Sluice snapshots whole tables (copy a subset with a postgres_query job)",
        };
      }
      return { kind: "snapshot", id, collections, type: String(kind) };
    }
    default:
      return {
        kind: "refused",
        id,
        reason: `signal type ${
          JSON.stringify(given ?? null)
        } is not supported (execute-snapshot, log)`,
      };
  }
}

/**
 * The captured tables a snapshot signal names, in its order: each entry is
 * a table's `schema.table`, else a regular expression matched against the
 * whole name, as Debezium reads `data-collections`. Throws naming the
 * entries that match no captured table.
 */
export function signalTables(
  collections: readonly string[],
  captured: readonly TableRef[],
): TableRef[] {
  const name = (t: TableRef) => `${t.schema}.${t.table}`;
  const chosen: TableRef[] = [];
  const unmatched: string[] = [];
  for (const entry of collections) {
    // The exact name first; else, as the include lists read names, a
    // regular expression over the whole name in any case.
    let matches = captured.filter((t) => name(t) === entry);
    if (matches.length === 0) {
      let pattern: RegExp | undefined;
      try {
        pattern = new RegExp(`^(?:${entry})$`, "i");
      } catch {
        pattern = undefined;
      }
      matches = pattern ? captured.filter((t) => pattern.test(name(t))) : [];
    }
    if (matches.length === 0) unmatched.push(entry);
    for (const table of matches) if (!chosen.includes(table)) chosen.push(table);
  }
  if (unmatched.length > 0) {
    const hint = unmatched.some((entry) => entry.includes('"') || !entry.includes("."))
      ? ` (write schema.table without quotes, e.g. public.Big Events)`
      : "";
    throw new Error(
      `${unmatched.join(", ")} ${
        unmatched.length === 1 ? "names" : "name"
      } no captured table (tables in the publication and the include lists)${hint}: captured are ${
        captured.map(name).join(", ") || "none"
      }`,
    );
  }
  return chosen;
}
