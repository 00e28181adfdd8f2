// NDJSON in and out, with a pipe tool's manners: records only on stdout, a bad line is a
// message naming its source and line (the rest of the stream still flows), empty lines are
// skipped, and a reader that goes away (`| head -1`) ends the run quietly.
import {createReadStream} from 'node:fs';
import {once} from 'node:events';
import type {Readable, Writable} from 'node:stream';
import split2 from 'split2';
import {EnvironmentFault} from './errors.ts';
import {SCHEMA_VERSION, checkRecord, type AnyRecord} from './schema.ts';

export interface ReadOptions {
  /** Called with `source:line: message` for every line that is not a usable record. */
  onProblem: (message: string) => void;
  /** Record types whose line text is kept on the record under SOURCE_LINE (see there). */
  keepSourceLine?: ReadonlySet<string>;
}

/**
 * The exact input line a record was parsed from, kept (for the types a reader asks for) under a
 * symbol key, which JSON.stringify ignores. A stage that derives a record from it (validate: a
 * verdict from an entry) can then write the unchanged fields as the original text instead of
 * stringifying them again: parse once.
 */
export const SOURCE_LINE: unique symbol = Symbol(`sourceLine`);

/** Parses one NDJSON stream. Never throws on bad input; throws only when the stream itself fails. */
export async function* readRecords(input: Readable, source: string, options: ReadOptions): AsyncGenerator<AnyRecord> {
  let lineNo = 0;
  const lines = input.pipe(split2());
  input.once(`error`, err => lines.destroy(err));
  for await (const line of lines as AsyncIterable<string>) {
    lineNo += 1;
    if (line.length === 0 || (line.length < 4 && line.trim() === ``))
      continue;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch (err) {
      options.onProblem(`${source}:${lineNo}: not JSON (${(err as Error).message}): ${clip(line)}`);
      continue;
    }
    if (value === null || typeof value !== `object` || Array.isArray(value)) {
      options.onProblem(`${source}:${lineNo}: expected a JSON object with "type" and "v", got ${clip(line)}`);
      continue;
    }
    // Every record of a known type is checked against the spec (src/schema.ts) before it is
    // yielded, so stages narrow on `type` and trust the fields; foreign types pass unchecked.
    const record = value as {type: unknown, v: unknown, [field: string]: unknown};
    if (typeof record.type !== `string`) {
      options.onProblem(`${source}:${lineNo}: record has no "type" field: ${clip(line)}`);
      continue;
    }
    if (record.v !== SCHEMA_VERSION) {
      options.onProblem(`${source}:${lineNo}: ${record.type} record has schema version ${JSON.stringify(record.v)}, this tool reads version ${SCHEMA_VERSION}`);
      continue;
    }
    if (options.keepSourceLine?.has(record.type))
      (record as {[SOURCE_LINE]?: string})[SOURCE_LINE] = line;
    const problem = checkRecord(record);
    if (problem !== null) {
      options.onProblem(`${source}:${lineNo}: ${problem}`);
      continue;
    }
    yield record as AnyRecord;
  }
}

/** Reads several inputs one after the other; `-` (or no input at all) is stdin. */
export async function* readInputs(paths: ReadonlyArray<string>, stdin: Readable, options: ReadOptions): AsyncGenerator<AnyRecord> {
  const list = paths.length === 0 ? [`-`] : paths;
  for (const path of list) {
    if (path === `-`) {
      yield* readRecords(stdin, `stdin`, options);
      continue;
    }
    const stream = createReadStream(path);
    try {
      await once(stream, `open`);
    } catch (err) {
      throw new EnvironmentFault(`cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    yield* readRecords(stream, path, options);
  }
}

function clip(line: string): string {
  return line.length > 80 ? `${line.slice(0, 77)}...` : line;
}

/** Thrown by RecordWriter once the reader of our output has gone away. Commands exit 0 on it. */
export class OutputClosed extends Error {
  constructor() {
    super(`output closed by its reader`);
    this.name = `OutputClosed`;
  }
}

const FLUSH_AT = 64 * 1024;

/**
 * Writes records as NDJSON lines. Lines are batched into ~64 KiB writes (one syscall per batch,
 * not per record) and backpressure is honoured, so memory stays flat behind a slow reader.
 */
export class RecordWriter {
  private pending = ``;
  private closed = false;
  private readonly onError = (err: NodeJS.ErrnoException) => {
    // EPIPE / ERR_STREAM_DESTROYED: the reader left; anything else is still "we cannot write".
    this.closed = true;
    this.error = err;
  };
  private error: NodeJS.ErrnoException | null = null;

  /**
   * `lineOf` serialises one record (without the newline); stages whose records have a faster
   * exact form than JSON.stringify pass it (validate's verdicts, see src/validate/serialize.ts).
   */
  constructor(private readonly out: Writable, private readonly lineOf: (record: object) => string = JSON.stringify) {
    out.on(`error`, this.onError);
  }

  get isClosed(): boolean {
    return this.closed || this.out.destroyed || this.out.writableEnded;
  }

  /**
   * Queues one record. Returns a promise only when a batch goes out (await it: that is where
   * backpressure and a closed reader show); otherwise undefined, so the hot loop makes no promise.
   */
  write(record: object): Promise<void> | undefined {
    if (this.closed)
      throw new OutputClosed();
    this.pending += `${this.lineOf(record)}\n`;
    if (this.pending.length >= FLUSH_AT)
      return this.flush();
    return undefined;
  }

  /** Queues NDJSON text already serialized (one or more complete lines, each ending in a newline). */
  async writeText(lines: string): Promise<void> {
    if (this.closed)
      throw new OutputClosed();
    this.pending += lines;
    if (this.pending.length >= FLUSH_AT)
      await this.flush();
  }

  async flush(): Promise<void> {
    if (this.isClosed)
      throw new OutputClosed();
    if (this.pending.length === 0)
      return;
    const chunk = this.pending;
    this.pending = ``;
    if (!this.out.write(chunk)) {
      // The listeners of the `once` that lost the race are removed (abort), or they pile up.
      const settled = new AbortController();
      try {
        await Promise.race([once(this.out, `drain`, {signal: settled.signal}), once(this.out, `close`, {signal: settled.signal})]);
      } catch {
        // `once` rejects on an `error` event: onError has recorded it.
        this.closed = true;
      } finally {
        settled.abort();
      }
      if (this.isClosed)
        throw new OutputClosed();
    }
  }

  /** Flushes what is left. Safe to call when the reader has gone (then it just returns). */
  async end(): Promise<void> {
    try {
      await this.flush();
    } catch (err) {
      if (!(err instanceof OutputClosed))
        throw err;
    } finally {
      this.out.off(`error`, this.onError);
      // Keep swallowing late EPIPEs from this stream: they are not errors for us.
      this.out.on(`error`, () => {});
    }
  }

  lastError(): NodeJS.ErrnoException | null {
    return this.error;
  }
}

/** Drains an async iterable of records into a writer, flushing at the end. */
export async function writeAll(records: AsyncIterable<object>, writer: RecordWriter): Promise<void> {
  for await (const record of records)
    await writer.write(record);
  await writer.end();
}
