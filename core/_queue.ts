/**
 * A bounded first-in first-out channel between two async loops. `push` waits
 * while the queue is full, which is how a slow sink slows its source down.
 *
 * @module
 */

/** A bounded async queue; `close()` ends iteration once drained. */
export class BoundedQueue<T> implements AsyncIterable<T> {
  readonly capacity: number;
  #items: T[] = [];
  #closed = false;
  #waitingPush: (() => void)[] = [];
  #waitingPull: (() => void)[] = [];

  constructor(capacity: number) {
    if (!(capacity >= 1)) throw new RangeError(`capacity must be at least 1: got ${capacity}`);
    this.capacity = capacity;
  }

  /** Adds an item, waiting for room. Returns false if the queue was closed meanwhile. */
  async push(item: T): Promise<boolean> {
    while (this.#items.length >= this.capacity && !this.#closed) {
      await new Promise<void>((resolve) => this.#waitingPush.push(resolve));
    }
    if (this.#closed) return false;
    this.#items.push(item);
    this.#waitingPull.shift()?.();
    return true;
  }

  /** No more items will be pushed; pending pushes return false. */
  close(): void {
    this.#closed = true;
    for (const wake of this.#waitingPush.splice(0)) wake();
    for (const wake of this.#waitingPull.splice(0)) wake();
  }

  /** Drops queued items (they were never acknowledged, so they will be read again). */
  clear(): void {
    this.#items = [];
    for (const wake of this.#waitingPush.splice(0)) wake();
  }

  get size(): number {
    return this.#items.length;
  }

  async *[Symbol.asyncIterator](): AsyncIterator<T> {
    for (;;) {
      if (this.#items.length > 0) {
        const item = this.#items.shift()!;
        this.#waitingPush.shift()?.();
        yield item;
      } else if (this.#closed) {
        return;
      } else {
        await new Promise<void>((resolve) => this.#waitingPull.push(resolve));
      }
    }
  }
}
