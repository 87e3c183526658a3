/**
 * The few assertions the tests use (JSR's @std/assert is not reachable here).
 *
 * @module
 */
import { deepStrictEqual } from "node:assert";

/** Throws when `condition` is falsy. */
export function assert(condition: unknown, message = "assertion failed"): asserts condition {
  if (!condition) throw new Error(message);
}

/** Deep equality, with a readable diff from Node's assert. */
export function assertEquals<T>(actual: T, expected: T, message?: string): void {
  deepStrictEqual(actual, expected, message);
}

/** Throws unless `text` matches `pattern`. */
export function assertMatch(text: string, pattern: RegExp, message?: string): void {
  if (!pattern.test(text)) {
    throw new Error(message ?? `expected ${JSON.stringify(text)} to match ${pattern}`);
  }
}

/** Awaits `fn` and returns the error it rejects with; fails if it resolves. */
export async function assertRejects(fn: () => Promise<unknown>): Promise<Error> {
  try {
    await fn();
  } catch (error) {
    return error as Error;
  }
  throw new Error("expected the promise to reject");
}
