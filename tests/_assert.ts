/**
 * The one assertion module of the tests, shaped like Deno std's
 * `@std/assert` (which JSR would give us, but JSR is not reachable here).
 * Deep equality comes from Node's `assert` for its readable diff; no test
 * file imports `node:assert` itself.
 *
 * @module
 */
import { AssertionError, deepStrictEqual, notDeepStrictEqual } from "node:assert";

export { AssertionError };

/** Fails the test with `message`. */
export function fail(message = "failed"): never {
  throw new AssertionError({ message });
}

/** Throws when `condition` is falsy. */
export function assert(condition: unknown, message = "assertion failed"): asserts condition {
  if (!condition) fail(message);
}

/** Deep, strict equality (same prototypes, `Object.is` on primitives), with a diff. */
export function assertEquals<T>(actual: T, expected: T, message?: string): void {
  deepStrictEqual(actual, expected, message);
}

/** The opposite of {@linkcode assertEquals}. */
export function assertNotEquals<T>(actual: T, expected: T, message?: string): void {
  notDeepStrictEqual(actual, expected, message);
}

/** Identity (`Object.is`): the same primitive value or the same object. */
export function assertStrictEquals<T>(actual: unknown, expected: T, message?: string): void {
  if (!Object.is(actual, expected)) {
    fail(message ?? `expected ${show(expected)}, got ${show(actual)}`);
  }
}

/** The opposite of {@linkcode assertStrictEquals}. */
export function assertNotStrictEquals(actual: unknown, expected: unknown, message?: string): void {
  if (Object.is(actual, expected)) fail(message ?? `expected anything but ${show(expected)}`);
}

/** Throws when `value` is null or undefined. */
export function assertExists<T>(value: T, message?: string): asserts value is NonNullable<T> {
  if (value === null || value === undefined) {
    fail(message ?? `expected a value, got ${show(value)}`);
  }
}

/** Throws unless `value` is an instance of `type`. */
export function assertInstanceOf<T>(
  value: unknown,
  // deno-lint-ignore no-explicit-any
  type: abstract new (...args: any[]) => T,
  message?: string,
): asserts value is T {
  if (!(value instanceof type)) {
    fail(message ?? `expected an instance of ${type.name}, got ${show(value)}`);
  }
}

/** Throws unless `text` matches `pattern`. */
export function assertMatch(text: string, pattern: RegExp, message?: string): void {
  if (!pattern.test(text)) fail(message ?? `expected ${show(text)} to match ${pattern}`);
}

/** Throws when `text` matches `pattern`. */
export function assertNotMatch(text: string, pattern: RegExp, message?: string): void {
  if (pattern.test(text)) fail(message ?? `expected ${show(text)} not to match ${pattern}`);
}

/** Throws unless `text` contains `part`. */
export function assertStringIncludes(text: string, part: string, message?: string): void {
  if (!text.includes(part)) fail(message ?? `expected ${show(text)} to contain ${show(part)}`);
}

/** Throws unless `actual > expected`. */
export function assertGreater<T extends number | bigint>(
  actual: T,
  expected: T,
  message?: string,
): void {
  if (!(actual > expected)) fail(message ?? `expected ${actual} > ${expected}`);
}

/** Throws unless `actual >= expected`. */
export function assertGreaterOrEqual<T extends number | bigint>(
  actual: T,
  expected: T,
  message?: string,
): void {
  if (!(actual >= expected)) fail(message ?? `expected ${actual} >= ${expected}`);
}

/** Throws unless `actual < expected`. */
export function assertLess<T extends number | bigint>(
  actual: T,
  expected: T,
  message?: string,
): void {
  if (!(actual < expected)) fail(message ?? `expected ${actual} < ${expected}`);
}

/** Throws unless `actual <= expected`. */
export function assertLessOrEqual<T extends number | bigint>(
  actual: T,
  expected: T,
  message?: string,
): void {
  if (!(actual <= expected)) fail(message ?? `expected ${actual} <= ${expected}`);
}

/**
 * What a thrown error must be: a pattern its message matches, a string its
 * message contains, or a class it is an instance of.
 */
// deno-lint-ignore no-explicit-any
export type ErrorExpectation = RegExp | string | (abstract new (...args: any[]) => Error);

/**
 * Awaits `subject` (a promise, or a function returning one) and returns the
 * error it rejects with; fails if it resolves, or if the error does not meet
 * `expected` (and `pattern`, when `expected` is a class).
 */
export async function assertRejects(
  subject: Promise<unknown> | (() => Promise<unknown> | unknown),
  expected?: ErrorExpectation,
  pattern?: RegExp | string,
): Promise<Error> {
  let error: unknown;
  try {
    await (typeof subject === "function" ? subject() : subject);
  } catch (caught) {
    error = caught ?? new Error(String(caught));
  }
  if (error === undefined) fail("expected the promise to reject, but it resolved");
  return checkError(error, expected, pattern);
}

/**
 * Calls `fn` and returns the error it throws; fails if it returns, or if the
 * error does not meet `expected` (and `pattern`, when `expected` is a class).
 */
export function assertThrows(
  fn: () => unknown,
  expected?: ErrorExpectation,
  pattern?: RegExp | string,
): Error {
  try {
    fn();
  } catch (error) {
    return checkError(error ?? new Error(String(error)), expected, pattern);
  }
  fail("expected the function to throw, but it returned");
}

function checkError(
  error: unknown,
  expected: ErrorExpectation | undefined,
  pattern: RegExp | string | undefined,
): Error {
  if (!(error instanceof Error)) fail(`expected an Error, got ${show(error)}`);
  if (typeof expected === "function") {
    assertInstanceOf(error, expected);
    if (pattern !== undefined) checkMessage(error, pattern);
  } else if (expected !== undefined) {
    checkMessage(error, expected);
  }
  return error;
}

function checkMessage(error: Error, pattern: RegExp | string): void {
  if (typeof pattern === "string") {
    assertStringIncludes(error.message, pattern, `unexpected error: ${error.message}`);
  } else {
    assertMatch(error.message, pattern, `expected an error matching ${pattern}: ${error.message}`);
  }
}

function show(value: unknown): string {
  return Deno.inspect(value, { depth: 4, breakLength: Infinity }).slice(0, 1000);
}
