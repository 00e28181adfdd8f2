// Bounded concurrency with results in input order: /proc reads are many and small, so a few
// in flight hide the thread-pool round trips without opening thousands of files at once.

/**
 * Applies `fn` to each item with at most `limit` calls in flight and yields the results in the
 * order of `items`. `fn` should not reject; if it does, the rejection surfaces in order.
 */
export async function* mapOrdered<T, R>(items: Iterable<T>, limit: number, fn: (item: T) => Promise<R>): AsyncGenerator<R> {
  const iterator = items[Symbol.iterator]();
  const inFlight: Array<Promise<R>> = [];
  const fill = () => {
    while (inFlight.length < limit) {
      const next = iterator.next();
      if (next.done)
        return;
      const promise = fn(next.value);
      // Marks it handled so a rejection waiting its turn is not an "unhandled rejection".
      promise.catch(() => {});
      inFlight.push(promise);
    }
  };
  fill();
  while (inFlight.length > 0) {
    const result = await inFlight.shift()!;
    fill();
    yield result;
  }
}
