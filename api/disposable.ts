/**
 * Explicit resource management for anything with a `close()` method: plugins
 * return plain objects (`{ read, close }`, `{ write, close }`), and
 * {@linkcode disposable} lets `await using` close them when a scope ends.
 *
 * @module
 */

/** Something that can be closed, synchronously or not. */
export interface Closable {
  /** Releases what the object holds. */
  close(): Promise<void> | void;
}

/**
 * Returns `resource` itself with a `[Symbol.asyncDispose]` method that calls
 * its `close()`, so that `await using` closes it when the scope ends, even
 * when the scope throws. A resource that already has one is returned as is.
 *
 * @example Closing a plugin's sink at the end of a scope
 * ```ts
 * import { disposable, type Sink } from "@sluice/sluice";
 * import assert from "node:assert/strict";
 *
 * let closed = false;
 * const sink: Sink = {
 *   write: (batch) => Promise.resolve({ written: batch.records.length }),
 *   close: () => {
 *     closed = true;
 *     return Promise.resolve();
 *   },
 * };
 * {
 *   await using open = disposable(sink);
 *   await open.write({ records: [], reject: () => Promise.resolve() });
 * }
 * assert.equal(closed, true);
 * ```
 */
export function disposable<T extends Closable>(resource: T): T & AsyncDisposable {
  if (Symbol.asyncDispose in resource) return resource as T & AsyncDisposable;
  return Object.assign(resource, {
    async [Symbol.asyncDispose](): Promise<void> {
      await resource.close();
    },
  });
}
