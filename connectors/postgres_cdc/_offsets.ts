/**
 * The `postgres_cdc` source's offsets as an operator sees and changes them.
 *
 * The stored offset (`{ "lsn", "txId" }`, kept by the sink or the worker)
 * says where the stream resumes. The replication slot keeps WAL only from
 * its confirmed position on, so:
 *
 * - a reset (DELETE, `--to-earliest`) forgets the offset: the next start
 *   follows `snapshot.mode` (`initial`, `when_needed`: the slot is made anew
 *   and the tables are read again; `never`: the stream goes on from the
 *   slot's confirmed position);
 * - an LSN (PATCH, `--to-offset`) may move forward, never before the slot's
 *   confirmed position: that WAL is gone;
 * - `--to-latest` skips to the server's current WAL position;
 * - WAL is not indexed by time, so there is no `--to-timestamp`.
 *
 * Listed as Debezium lists it: partition `{ "server": <topic.prefix> }`.
 *
 * @module
 */
import type { OffsetChange, OffsetEntry, PluginContext } from "../../api/plugin.ts";
import { OffsetChangeError } from "../../api/errors.ts";
import type { JsonValue } from "../../api/record.ts";
import { connect } from "../../drivers/postgres.ts";
import { parsePosition } from "./_capture.ts";
import { formatLsn, parseLsn } from "./_lsn.ts";
import { inspectSlot } from "./_slot.ts";

/** What the offsets functions need of the source's settings. */
export interface CdcOffsetSettings {
  readonly url: string;
  readonly slot: string;
  readonly topicPrefix: string;
}

/** `GET …/offsets`: the stored position, as Debezium shows it. */
export function listCdcOffsets(
  topicPrefix: string,
  stored: JsonValue | undefined,
): OffsetEntry[] {
  if (stored === undefined || stored === null) return [];
  const offset = typeof stored === "object" && !Array.isArray(stored) ? stored : { lsn: stored };
  return [{ partition: { server: topicPrefix }, offset }];
}

/** Checks `change` against the slot and returns the new stored offset. */
export async function changeCdcOffsets(
  settings: CdcOffsetSettings,
  change: OffsetChange,
  context: PluginContext,
): Promise<JsonValue | undefined> {
  if (change.to === "reset" || change.to === "earliest") return undefined;
  if (change.to === "timestamp") {
    throw new OffsetChangeError(
      "postgres_cdc cannot seek by time: PostgreSQL's WAL is not indexed by timestamp. Give an LSN (--to-offset 0/16B3748), --to-latest, or --to-earliest (a new snapshot, per snapshot.mode)",
    );
  }
  let wanted: bigint | undefined;
  if (change.to === "entries") {
    if (change.entries.length !== 1) {
      throw new OffsetChangeError(
        `postgres_cdc has one partition ({"server": "${settings.topicPrefix}"}); give exactly one entry, not ${change.entries.length}`,
      );
    }
    const offset = change.entries[0].offset;
    if (offset === null) return undefined;
    try {
      wanted = parsePosition(offset as JsonValue)?.lsn;
    } catch {
      wanted = undefined;
    }
    if (wanted === undefined) {
      throw new OffsetChangeError(
        `offsets[0].offset must be {"lsn": "0/16B3748"}: current value is ${
          JSON.stringify(offset)
        }`,
      );
    }
  }
  await using sql = connect(settings.url, {
    max: 1,
    applicationName: `sluice:${context.pipeline}:offsets`,
  });
  const slot = await inspectSlot(sql, settings.slot);
  if (!slot) {
    throw new OffsetChangeError(
      `Replication slot "${settings.slot}" does not exist: a stored position would still miss every change until the next start makes the slot (which stops, unless offset.mismatch.strategy is trust_slot). Reset with --to-earliest: the next start makes the slot and follows snapshot.mode (initial copies the tables again; never streams from the start on)`,
    );
  }
  const [{ current }] = await sql<
    { current: string }[]
  >`select pg_current_wal_lsn()::text as current`;
  const now = parseLsn(current);
  if (wanted === undefined) return { lsn: formatLsn(now), txId: null };
  const confirmed = slot.confirmedFlush;
  if (confirmed !== null && wanted < confirmed) {
    throw new OffsetChangeError(
      `Replication slot "${settings.slot}" has confirmed ${
        formatLsn(confirmed)
      }: PostgreSQL keeps no WAL before it, so the stream cannot go back to ${
        formatLsn(wanted)
      }. To read everything again, reset the offsets (DELETE, or --to-earliest): the next start takes a new snapshot (snapshot.mode initial or when_needed)`,
    );
  }
  if (wanted > now) {
    throw new OffsetChangeError(
      `${formatLsn(wanted)} is ahead of the server's current WAL position ${formatLsn(now)}`,
    );
  }
  return { lsn: formatLsn(wanted), txId: null };
}

/**
 * The process streaming from the slot, if any: PostgreSQL marks a slot
 * active while a walsender serves it. A walsender winding down after its
 * client stopped keeps the mark a moment, so an active slot is asked again
 * for up to `graceMs`.
 */
export async function slotHolder(
  settings: Pick<CdcOffsetSettings, "url" | "slot">,
  context: PluginContext,
  graceMs = 5_000,
): Promise<string | undefined> {
  await using sql = connect(settings.url, {
    max: 1,
    applicationName: `sluice:${context.pipeline}:offsets`,
  });
  const until = Date.now() + graceMs;
  for (;;) {
    const [row] = await sql<{ pid: number; name: string | null; client: string | null }[]>`
      select s.active_pid as pid, a.application_name as name, a.client_addr::text as client
      from pg_replication_slots s left join pg_stat_activity a on a.pid = s.active_pid
      where s.slot_name = ${settings.slot} and s.active`;
    if (!row) return undefined;
    if (Date.now() >= until) {
      return `replication slot "${settings.slot}" is active (walsender pid ${row.pid}, ` +
        `application "${row.name ?? "?"}" from ${row.client ?? "a local socket"})`;
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}
