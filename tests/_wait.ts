/**
 * The one way tests wait: until a condition holds, with a deadline. A test
 * never sleeps for a fixed time to let something happen, because a loaded
 * machine makes such a sleep pass trivially or fail spuriously.
 *
 * @module
 */

/** How long and how often {@linkcode waitUntil} checks. */
export interface WaitOptions {
  /** Give up after this many milliseconds (default 20,000). */
  readonly timeoutMs?: number;
  /** Pause between two checks in milliseconds (default 50; 0 checks back to back). */
  readonly intervalMs?: number;
}

/**
 * Calls `check` until it returns a truthy value, and returns that value. A
 * check that throws counts as not yet (so a check can throw to say what it
 * saw). After the deadline it fails with a message naming `what` was awaited
 * and the last value (or error) observed.
 *
 * @example Wait for a row to arrive
 * ```ts ignore
 * const row = await waitUntil("row 7 in the target", async () => (await sql`select * from t where id = 7`)[0]);
 * ```
 */
export async function waitUntil<T>(
  what: string,
  check: () => T | Promise<T>,
  options: WaitOptions = {},
): Promise<NonNullable<T>> {
  const { timeoutMs = 20_000, intervalMs = 50 } = options;
  const deadline = Date.now() + timeoutMs;
  let last: unknown = "(not checked yet)";
  for (;;) {
    try {
      const value = await check();
      if (value) return value as NonNullable<T>;
      last = value;
    } catch (error) {
      last = error;
    }
    if (Date.now() >= deadline) {
      throw new Error(
        `Timed out after ${timeoutMs} ms waiting for ${what}; last observed: ${describe(last)}`,
      );
    }
    await pause(intervalMs);
  }
}

/**
 * Waits until `sample` returns the same value for `steadyMs` in a row, and
 * returns that value: "nothing moves any more", for tests that prove that
 * something stays bounded (a buffer, a lag) once the system has settled.
 */
export async function waitUntilSteady<T>(
  what: string,
  sample: () => T | Promise<T>,
  steadyMs: number,
  options: WaitOptions = {},
): Promise<T> {
  let last: { value: T; since: number } | undefined;
  const steady = await waitUntil(`${what} to stay unchanged for ${steadyMs} ms`, async () => {
    const value = await sample();
    if (!last || !Object.is(value, last.value)) last = { value, since: Date.now() };
    const held = Date.now() - last.since;
    // Throwing keeps waiting and makes the timeout message show the value.
    if (held < steadyMs) throw new Error(`${Deno.inspect(value)} for ${held} ms`);
    return { value };
  }, { intervalMs: 100, ...options });
  return steady.value;
}

/**
 * Resolves with `promise`'s value, or fails naming `what` when it takes
 * longer than `timeoutMs`; clears its timer either way. For promises that
 * already stand for a condition (a pipeline's report, a poll loop).
 */
export async function deadline<T>(
  what: string,
  promise: Promise<T>,
  timeoutMs = 30_000,
): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`)),
          timeoutMs,
        );
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Resolves once every task already queued has run (one macrotask turn): for
 * in-memory code with no I/O, anything that can happen has happened then.
 */
export function settle(): Promise<void> {
  return pause(0);
}

function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function describe(value: unknown): string {
  if (value instanceof Error) return `${value.name}: ${value.message}`;
  return Deno.inspect(value, { depth: 4, breakLength: Infinity }).slice(0, 500);
}
