// Records move between stages in batches: an async iterable of arrays, one await per batch
// instead of one per record (a million entries through three stages were three million awaits).
// A batch is a plain array, in stream order; a stage may yield empty arrays, and never keeps a
// reference to a batch it has passed on. The NDJSON reader yields one batch per chunk read,
// `dump-maps`' sources one per chunk of a map, validate one per input batch.

export type Batches<T> = AsyncIterable<ReadonlyArray<T>>;

/** How many records `batched` puts in a batch by default: a batch of entries is ~100 KiB of objects. */
export const BATCH_SIZE = 256;

/** Groups a record-at-a-time stream into batches of up to `size` (the last may be shorter). */
export async function* batched<T>(records: AsyncIterable<T> | Iterable<T>, size = BATCH_SIZE): AsyncGenerator<Array<T>> {
  let batch: Array<T> = [];
  for await (const record of records) {
    batch.push(record);
    if (batch.length >= size) {
      yield batch;
      batch = [];
    }
  }
  if (batch.length > 0)
    yield batch;
}

/** Each record in a batch of its own: the record-at-a-time API over a batch stage, same timing. */
export async function* singly<T>(records: AsyncIterable<T>): AsyncGenerator<Array<T>> {
  for await (const record of records)
    yield [record];
}

/** Back to one record at a time. */
export async function* unbatched<T>(batches: Batches<T>): AsyncGenerator<T> {
  for await (const batch of batches)
    yield* batch;
}
