/**
 * When a cron schedule fires next, for the log at start and for `GET /jobs`
 * (Deno.cron itself does not say).
 *
 * @module
 */
import { Cron } from "croner";

/** The next time (ISO 8601, UTC) a 5-field UTC schedule fires, or null. */
export function nextRunTime(schedule: string | undefined, from = new Date()): string | null {
  if (!schedule) return null;
  const cron = new Cron(schedule, { timezone: "UTC", paused: true });
  try {
    return cron.nextRun(from)?.toISOString() ?? null;
  } finally {
    cron.stop();
  }
}
