/**
 * The slot's lag for the metrics: how many WAL bytes its consumer has not
 * confirmed (`sluice_replication_slot_lag_bytes`, current WAL position minus
 * `confirmed_flush_lsn`) and how many the server keeps for it
 * (`sluice_replication_slot_retained_wal_bytes`, minus `restart_lsn`), read
 * from `pg_replication_slots` every `lag.poll.interval.ms`. The second is
 * what fills the disk when a stream stops consuming.
 *
 * @module
 */
import type { Logger } from "@logtape/logtape";
import { type MetricDefinition, type PluginMetrics, pollMetrics } from "../../api/metrics.ts";
import { connect, type Sql } from "../../drivers/postgres.ts";

/** WAL the stream has not confirmed. */
export const SLOT_LAG: MetricDefinition = {
  name: "sluice_replication_slot_lag_bytes",
  help:
    "WAL bytes written since the replication slot's confirmed flush position (what the stream has not acknowledged).",
  labels: ["slot"],
};

/** WAL the server keeps for the slot. */
export const SLOT_RETAINED_WAL: MetricDefinition = {
  name: "sluice_replication_slot_retained_wal_bytes",
  help: "WAL bytes the server retains for the replication slot (since its restart_lsn).",
  labels: ["slot"],
};

/** Starts polling; returns the handle that stops it (before the connection closes). */
export function pollSlotLag(
  sql: Sql,
  slot: string,
  metrics: PluginMetrics | undefined,
  intervalMs: number,
  logger: Logger,
): { stop(): Promise<void> } {
  return pollMetrics({
    metrics,
    logger,
    name: "replication_slot",
    intervalMs,
    async poll(metrics) {
      const lag = metrics.gauge(SLOT_LAG);
      const retained = metrics.gauge(SLOT_RETAINED_WAL);
      // On a standby (PostgreSQL 16+ decodes there) the position is the replayed one.
      const rows = await sql<{ lag: number | null; retained: number | null }[]>`
        with here as (
          select case when pg_is_in_recovery() then pg_last_wal_replay_lsn()
                      else pg_current_wal_lsn() end as lsn)
        select pg_wal_lsn_diff(here.lsn, confirmed_flush_lsn)::float8 as lag,
               pg_wal_lsn_diff(here.lsn, restart_lsn)::float8 as retained
        from pg_replication_slots, here where slot_name = ${slot}`;
      const labels = { slot };
      const row = rows[0];
      // No slot (not created yet, or dropped): no series rather than a made-up 0.
      if (row?.lag == null) lag.remove(labels);
      else lag.set(labels, Math.max(0, row.lag));
      if (row?.retained == null) retained.remove(labels);
      else retained.set(labels, Math.max(0, row.retained));
    },
  });
}

/**
 * Polls the slot's lag on a connection of its own while no run of the
 * stream is going (see `SourcePlugin.watch`): a failed or stopped stream
 * confirms nothing, and the WAL its slot keeps grows until the disk is full.
 * A connection that fails counts as a failed poll and is tried again at the
 * next interval.
 */
export function watchSlotLag(
  url: string,
  applicationName: string,
  slot: string,
  metrics: PluginMetrics | undefined,
  intervalMs: number,
  logger: Logger,
): { stop(): Promise<void> } {
  if (!metrics || intervalMs <= 0) return { stop: () => Promise.resolve() };
  const sql = connect(url, { max: 1, applicationName });
  const polling = pollSlotLag(sql, slot, metrics, intervalMs, logger);
  return {
    async stop() {
      await polling.stop();
      await sql.end({ timeout: 1 });
    },
  };
}
