/**
 * Cron schedules of batch jobs: when they fire next (for the log at start
 * and `GET /jobs`; Deno.cron itself does not say) and running a job at each
 * tick.
 *
 * @module
 */
import { Cron } from "croner";

/** The next time (ISO 8601, UTC) a UTC schedule fires, or null. */
export function nextRunTime(schedule: string | undefined, from = new Date()): string | null {
  if (!schedule) return null;
  const cron = new Cron(schedule, { timezone: "UTC", paused: true });
  try {
    return cron.nextRun(from)?.toISOString() ?? null;
  } finally {
    cron.stop();
  }
}

/**
 * Why croner (and Deno.cron) would refuse `schedule`, in its words, or
 * undefined when it is a valid expression: a value out of range ("61" as a
 * minute) passes a shape check but stops the job at start.
 */
export function scheduleProblem(schedule: string): string | undefined {
  try {
    new Cron(schedule, { timezone: "UTC", paused: true }).stop();
    return undefined;
  } catch (error) {
    return error instanceof Error ? error.message : String(error);
  }
}

/**
 * The scheduled time of the tick that fired at `now`: what every process of
 * a group names the tick by (the ticks table key), whatever its clock read
 * when the callback ran, a little early or late. croner's `previousRuns`
 * truncates its reference to the second and returns times strictly before
 * it, so the reference is the second after `now` rounded: the latest tick
 * at or before that rounded second.
 */
export function tickTime(cron: Cron, now = Date.now()): Date {
  const reference = new Date(Math.round(now / 1000) * 1000 + 1000);
  return cron.previousRuns(1, reference)[0] ?? new Date(now);
}

/**
 * Runs `handler` at every tick of a UTC cron schedule with the tick's
 * scheduled time, until `signal` aborts. A 5-field schedule (minutes) runs
 * on `Deno.cron` under `name`; a 6-field one (seconds first), which
 * Deno.cron does not take, on a croner timer. Either way a tick never
 * overlaps the previous one's handler and missed ticks are not caught up.
 */
export function scheduleJob(
  name: string,
  expression: string,
  signal: AbortSignal,
  handler: (tick: Date) => Promise<void>,
): void {
  const cron = new Cron(expression, { timezone: "UTC", paused: true });
  if (expression.trim().split(/\s+/).length === 5) {
    Deno.cron(name, expression, { backoffSchedule: [], signal }, () => handler(tickTime(cron)));
    signal.addEventListener("abort", () => cron.stop(), { once: true });
    return;
  }
  cron.stop();
  const timer = new Cron(
    expression,
    { timezone: "UTC", protect: true, catch: true },
    async (self: Cron) => await handler(tickTime(self)),
  );
  signal.addEventListener("abort", () => timer.stop(), { once: true });
}
