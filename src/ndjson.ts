// NDJSON in and out, with a pipe tool's manners: records only on stdout, a bad line is a
// message naming its source and line (the rest of the stream still flows), empty lines are
// skipped, and a reader that goes away (`| head -1`) ends the run quietly.
import {open, type FileHandle} from 'node:fs/promises';
import type {Readable, Writable} from 'node:stream';
import {Ascii} from './ascii.ts';
import {EnvironmentFault, ToolError} from './errors.ts';
import {parseEntryLine} from './entryLineParse.ts';
import {DEFAULT_MAX_LINE_LENGTH, MAX_NESTING, nestsTooDeep, splitLines} from './lines.ts';
import {SCHEMA_VERSION, checkEntryHexRead, checkRecord, type AnyRecord} from './schema.ts';

export interface ReadOptions {
  /** Called with `source:line: message` for every line that is not a usable record. */
  onProblem: (message: string) => void;
  /** Record types whose line text is kept on the record under SOURCE_LINE (see there). */
  keepSourceLine?: ReadonlySet<string>;
  /** Longest line accepted (default DEFAULT_MAX_LINE_LENGTH); longer ones are reported and skipped. */
  maxLineLength?: number;
  /**
   * Entry lines in dump-maps' layout are read by parseEntryLine instead of JSON.parse (the same
   * records, faster); tests turn it off to compare.
   */
  entryLines?: boolean;
}

/**
 * The exact input line a record was parsed from, kept (for the types a reader asks for) under a
 * symbol key, which JSON.stringify ignores. A stage that derives a record from it (validate: a
 * verdict from an entry) can then write the unchanged fields as the original text instead of
 * stringifying them again: parse once.
 */
export const SOURCE_LINE: unique symbol = Symbol(`sourceLine`);

/**
 * Parses one NDJSON stream into batches: one array of records per chunk read (a 64 KiB chunk holds
 * a hundred or more entry lines), so the stages after it pay one await per chunk, not per record.
 * Never throws on bad input; throws only when the stream itself fails.
 */
export async function* readRecordBatches(input: Readable | AsyncIterable<Buffer | string>, source: string, options: ReadOptions): AsyncGenerator<Array<AnyRecord>> {
  let lineNo = 0;
  const maxLength = options.maxLineLength ?? DEFAULT_MAX_LINE_LENGTH;
  let batches;
  try {
    batches = splitLines(input as AsyncIterable<Buffer | string>, maxLength);
  } catch (err) {
    throw readFailure(source, err);
  }
  for (;;) {
    let next;
    try {
      next = await batches.next();
    } catch (err) {
      throw readFailure(source, err);
    }
    if (next.done)
      break;
    const lines = next.value;
    const records: Array<AnyRecord> = [];
    const bytes = options.entryLines === false ? undefined : lines.bytes;
    const view = bytes === undefined ? undefined : new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const starts = lines.starts;
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i];
      lineNo += 1;
      if (typeof line === `number`) {
        options.onProblem(`${source}:${lineNo}: line of ${line} characters is longer than the limit of ${maxLength} (--max-line-length); skipped`);
        continue;
      }
      const start = bytes === undefined ? -1 : starts![i];
      const record = start >= 0 ? parseEntryBytes(line, bytes!, view!, start, source, lineNo, options) : parseLine(line, source, lineNo, options);
      if (record !== null)
        records.push(record);
    }
    if (records.length > 0)
      yield records;
  }
}

/** Parses one NDJSON stream, one record at a time. */
export async function* readRecords(input: Readable, source: string, options: ReadOptions): AsyncGenerator<AnyRecord> {
  for await (const batch of readRecordBatches(input, source, options))
    yield* batch;
}

function readFailure(source: string, err: unknown): Error {
  if (err instanceof ToolError)
    return err;
  const code = (err as NodeJS.ErrnoException)?.code;
  return new EnvironmentFault(`cannot read ${source}: ${code === `EISDIR` ? `is a directory (expected an NDJSON file)` : code ?? (err as Error)?.message ?? String(err)}`);
}

/**
 * parseLine for a line whose bytes are at hand: an entry line in dump-maps' layout is read by
 * parseEntryLine (exactly what JSON.parse makes of it, which parseLine would then find to be an
 * object of type `entry` and version SCHEMA_VERSION), then checked as parseLine checks it.
 */
function parseEntryBytes(line: string, bytes: Uint8Array, view: DataView, start: number, source: string, lineNo: number, options: ReadOptions): AnyRecord | null {
  const record = parseEntryLine(line, bytes, view, start) as ({type: `entry`, v: number, [SOURCE_LINE]?: string} & Record<string, unknown>) | undefined;
  if (record === undefined)
    return parseLine(line, source, lineNo, options);
  if (options.keepSourceLine?.has(`entry`))
    record[SOURCE_LINE] = line;
  // Its hex fields are hex: parseEntryLine read them so.
  const problem = checkEntryHexRead(record);
  if (problem !== null) {
    options.onProblem(`${source}:${lineNo}: ${problem}`);
    return null;
  }
  return record as unknown as AnyRecord;
}

/** One line to a record, or null (after telling onProblem why) when it is not a usable one. */
function parseLine(line: string, source: string, lineNo: number, options: ReadOptions): AnyRecord | null {
  if (line.length === 0 || (line.length < 4 && line.trim() === ``))
    return null;
  if (nestsTooDeep(line)) {
    options.onProblem(`${source}:${lineNo}: nested deeper than ${MAX_NESTING} levels; skipped`);
    return null;
  }
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch (err) {
    options.onProblem(`${source}:${lineNo}: not JSON (${(err as Error).message}): ${clip(line)}`);
    return null;
  }
  if (value === null || typeof value !== `object` || Array.isArray(value)) {
    options.onProblem(`${source}:${lineNo}: expected a JSON object with "type" and "v", got ${clip(line)}`);
    return null;
  }
  // Every record of a known type is checked against the spec (src/schema.ts) before it is
  // yielded, so stages narrow on `type` and trust the fields; foreign types pass unchecked.
  const record = value as {type: unknown, v: unknown, [field: string]: unknown};
  if (typeof record.type !== `string`) {
    options.onProblem(`${source}:${lineNo}: record has no "type" field: ${clip(line)}`);
    return null;
  }
  if (record.v !== SCHEMA_VERSION) {
    options.onProblem(`${source}:${lineNo}: ${record.type} record has schema version ${JSON.stringify(record.v)}, this tool reads version ${SCHEMA_VERSION}`);
    return null;
  }
  if (options.keepSourceLine?.has(record.type))
    (record as {[SOURCE_LINE]?: string})[SOURCE_LINE] = line;
  const problem = checkRecord(record);
  if (problem !== null) {
    options.onProblem(`${source}:${lineNo}: ${problem}`);
    return null;
  }
  return record as AnyRecord;
}

/** Reads several inputs one after the other, in batches; `-` (or no input at all) is stdin. */
export async function* readInputBatches(paths: ReadonlyArray<string>, stdin: Readable, options: ReadOptions): AsyncGenerator<Array<AnyRecord>> {
  const list = paths.length === 0 ? [`-`] : paths;
  for (const path of list) {
    if (path === `-`) {
      yield* readRecordBatches(stdin, `stdin`, options);
      continue;
    }
    // Opened (blocking: a FIFO from `<(...)` is a fine input) and checked before reading, so a
    // directory is a message, not a stream error.
    let handle;
    try {
      handle = await open(path, `r`);
      if ((await handle.stat()).isDirectory())
        throw Object.assign(new Error(`is a directory`), {code: `EISDIR`});
    } catch (err) {
      await handle?.close();
      throw readFailure(path, err);
    }
    const chunks = new FileChunks(handle);
    try {
      yield* readRecordBatches(chunks, path, options);
    } finally {
      await chunks.close();
    }
  }
}

/** How much of a file is read at once: fewer, larger batches than a stream's 64 KiB default. */
const FILE_CHUNK = 256 * 1024;

/**
 * A file's bytes in chunks, read into two buffers in turn: the next read is under way while a
 * chunk is used, and a chunk's memory is read into again once the chunk after it was asked for
 * (splitLines and the parsers are done with it then: they copy what they keep). A stream's fresh
 * buffer per read left ~10 MB of them to the garbage collector at any time.
 */
class FileChunks implements AsyncIterable<Buffer> {
  private readonly buffers = [Buffer.allocUnsafeSlow(FILE_CHUNK), Buffer.allocUnsafeSlow(FILE_CHUNK)];
  private pending: Promise<{bytesRead: number}> | null = null;

  constructor(private readonly handle: FileHandle) {}

  async* [Symbol.asyncIterator](): AsyncGenerator<Buffer> {
    let turn = 0;
    this.pending = this.handle.read(this.buffers[turn], 0, FILE_CHUNK, null);
    for (;;) {
      const {bytesRead} = await this.pending;
      this.pending = null;
      if (bytesRead === 0)
        return;
      const chunk = this.buffers[turn].subarray(0, bytesRead);
      turn ^= 1;
      this.pending = this.handle.read(this.buffers[turn], 0, FILE_CHUNK, null);
      yield chunk;
    }
  }

  /** Waits for a read under way (its outcome no longer matters), then closes the file. */
  async close(): Promise<void> {
    await this.pending?.catch(() => {});
    await this.handle.close();
  }
}

/** Reads several inputs one after the other, one record at a time; `-` (or no input at all) is stdin. */
export async function* readInputs(paths: ReadonlyArray<string>, stdin: Readable, options: ReadOptions): AsyncGenerator<AnyRecord> {
  for await (const batch of readInputBatches(paths, stdin, options))
    yield* batch;
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

/** A write that failed for any reason but "the reader left": a full disk, EIO, ... (exit 3). */
export class WriteFailed extends EnvironmentFault {
  constructor(readonly target: string, override readonly cause: NodeJS.ErrnoException) {
    super(`cannot write to ${target}: ${describeErrno(cause)}${cause.code === `ENOSPC` || cause.code === `EDQUOT` ? `; the output is incomplete` : ``}`);
    this.name = `WriteFailed`;
  }
}

function describeErrno(err: NodeJS.ErrnoException): string {
  const text = (err.message ?? ``).replace(/,? (?:write|open|close)$/, ``);
  return err.code && !text.startsWith(err.code) ? `${err.code} (${text})` : text || String(err.code);
}

export const STANDARD_OUTPUT = `standard output`;

/**
 * What a write error means. EPIPE on standard output is the reader leaving (`| head -1`): a
 * normal end. Anything else, and any error on a file we write, is a failure that must be said.
 */
export function writeErrorOf(err: NodeJS.ErrnoException, target: string): Error {
  if (err.code === `EPIPE` && target === STANDARD_OUTPUT)
    return new OutputClosed();
  return err instanceof WriteFailed ? err : new WriteFailed(target, err);
}

const FLUSH_AT = 64 * 1024;

/**
 * How big a chunk batchBytes encodes into (grown for a batch that needs more): the verdicts of a
 * 256 KiB read of entries take ~400 KiB.
 */
const BATCH_CHUNK = 512 * 1024;
/** Chunks given back (recycleBatchBytes) once written, filled again; at most this many kept (one is in use at a time). */
const MAX_SPARE_CHUNKS = 2;
const spareChunks: Array<Buffer> = [];

/**
 * Writes one record's line and its newline as UTF-8 into `buffer` at `at` and returns where it
 * ends; -1 when it does not (too little room, or a record it leaves to the `lineOf` text).
 */
export type LineBytes = (record: object, buffer: Buffer, at: number) => number;

/**
 * A batch of records as NDJSON bytes, each line encoded straight into one chunk (`lineBytes`
 * first, when given, else `lineOf`'s text): joining the lines into one string and encoding that
 * cost validate ~15% of its CPU. What comes back is the caller's; give it back with
 * recycleBatchBytes once nothing holds it (its write called back), and the next batch is encoded
 * into the same memory instead of a fresh chunk (a copy per batch, and ~1 GB of chunks at 1M
 * verdicts left to the garbage collector).
 */
export function batchBytes(records: ReadonlyArray<object>, lineOf: (record: object) => string = JSON.stringify, lineBytes?: LineBytes): Buffer {
  let buffer = spareChunks.pop() ?? Buffer.allocUnsafeSlow(BATCH_CHUNK);
  let at = 0;
  for (let i = 0; i < records.length; i++) {
    const record = records[i];
    if (lineBytes !== undefined) {
      const end = lineBytes(record, buffer, at);
      if (end >= 0) {
        at = end;
        continue;
      }
    }
    const line = lineOf(record);
    // At most 3 bytes per UTF-16 unit (a surrogate pair: 4 bytes for 2), and the newline.
    const need = at + 3 * line.length + 1;
    if (need > buffer.length) {
      const bigger = Buffer.allocUnsafeSlow(Math.max(need, 2 * buffer.length));
      buffer.copy(bigger, 0, 0, at);
      recycleBatchBytes(buffer);
      buffer = bigger;
    }
    at += buffer.write(line, at);
    buffer[at++] = Ascii.LineFeed;
  }
  return buffer.subarray(0, at);
}

/** Gives back a chunk batchBytes made, once nothing holds it any more (others are left alone). */
export function recycleBatchBytes(chunk: Buffer): void {
  if (chunk.byteOffset === 0 && chunk.buffer.byteLength === BATCH_CHUNK && spareChunks.length < MAX_SPARE_CHUNKS)
    spareChunks.push(Buffer.from(chunk.buffer, 0, BATCH_CHUNK));
}

/**
 * Writes records as NDJSON lines. Lines are batched into ~64 KiB writes (one syscall per batch,
 * not per record) and backpressure is honoured, so memory stays flat behind a slow reader.
 * Every write error surfaces: OutputClosed when the reader of stdout left, WriteFailed otherwise.
 */
export class RecordWriter {
  private pending = ``;
  private error: NodeJS.ErrnoException | null = null;
  private readonly onError = (err: NodeJS.ErrnoException) => {
    // The first error is the one that says what happened (a later ERR_STREAM_DESTROYED does not).
    this.error ??= err;
  };

  /**
   * `lineOf` serialises one record (without the newline); stages whose records have a faster
   * exact form than JSON.stringify pass it (validate's verdicts, see src/validate/serialize.ts).
   * `target` names the destination in messages: STANDARD_OUTPUT, or a file's path.
   */
  constructor(private readonly out: Writable, private readonly lineOf: (record: object) => string = JSON.stringify, readonly target: string = STANDARD_OUTPUT) {
    out.on(`error`, this.onError);
  }

  private failure(): Error {
    return writeErrorOf(this.error ?? Object.assign(new Error(`the stream was closed`), {code: `ERR_STREAM_DESTROYED`}), this.target);
  }

  get isClosed(): boolean {
    return this.error !== null || this.out.destroyed || this.out.writableEnded;
  }

  /**
   * Queues one record. Returns a promise only when a batch goes out (await it: that is where
   * backpressure and a failed write show); otherwise undefined, so the hot loop makes no promise.
   */
  write(record: object): Promise<void> | undefined {
    if (this.isClosed)
      throw this.failure();
    this.pending += `${this.lineOf(record)}\n`;
    if (this.pending.length >= FLUSH_AT)
      return this.flush();
    return undefined;
  }

  /**
   * Queues a batch of records: write() for each, with one flush check for the batch. Returns a
   * promise only when a write must go out (await it, as with write()).
   */
  writeBatch(records: ReadonlyArray<object>): Promise<void> | undefined {
    if (this.isClosed)
      throw this.failure();
    const lineOf = this.lineOf;
    let text = ``;
    for (let i = 0; i < records.length; i++)
      text += `${lineOf(records[i])}\n`;
    this.pending += text;
    if (this.pending.length >= FLUSH_AT)
      return this.flush();
    return undefined;
  }

  /** Queues NDJSON text already serialized (one or more complete lines, each ending in a newline). */
  async writeText(lines: string): Promise<void> {
    if (this.isClosed)
      throw this.failure();
    this.pending += lines;
    if (this.pending.length >= FLUSH_AT)
      await this.flush();
  }

  /** Whether writeBytes calls `done` (a stream onto a file descriptor): else it may hold chunks. */
  get givesChunksBack(): boolean {
    return typeof (this.out as {fd?: unknown}).fd === `number`;
  }

  /**
   * Writes NDJSON bytes already serialized (complete lines), after the queued text, with the same
   * backpressure and errors as flush(). The chunk is the stream's from then on. With `done`, on a
   * stream onto a file descriptor (process.stdout, fs and net streams: their write callback runs
   * once the bytes went out), this waits for that callback and then calls `done`: the chunk's
   * memory may be filled again. Other streams may hold on to a chunk: `done` never runs for them.
   */
  async writeBytes(chunk: Uint8Array, done?: () => void): Promise<void> {
    await this.flush();
    if (done === undefined || !this.givesChunksBack) {
      await this.send(chunk);
      return;
    }
    if (this.isClosed)
      throw this.failure();
    // Not the `drain` event: a synchronous stream (a file) says nothing, and its callbacks would
    // wait for the end of the dump, each holding its chunk.
    const written = await this.until(chunk);
    if (this.isClosed)
      throw this.failure();
    if (written)
      done();
  }

  async flush(): Promise<void> {
    if (this.isClosed)
      throw this.failure();
    if (this.pending.length === 0)
      return;
    const chunk = this.pending;
    this.pending = ``;
    await this.send(chunk);
  }

  private async send(chunk: string | Uint8Array): Promise<void> {
    if (this.isClosed)
      throw this.failure();
    if (!this.out.write(chunk))
      await this.until();
    if (this.isClosed)
      throw this.failure();
  }

  /**
   * Waits for the stream's `drain`, or with a chunk writes it and waits for its callback (true
   * when it was written); a close or an error (recorded) ends the wait too. Plain listeners, not
   * events.once with an AbortSignal: that made an AbortError with a stack per wait.
   */
  private until(chunk?: Uint8Array): Promise<boolean> {
    const out = this.out;
    return new Promise(resolve => {
      let written = false;
      const finish = () => {
        out.off(`drain`, finish);
        out.off(`close`, finish);
        out.off(`error`, failed);
        resolve(written);
      };
      const failed = (err: NodeJS.ErrnoException) => {
        this.onError(err);
        finish();
      };
      out.on(`close`, finish);
      out.on(`error`, failed);
      if (chunk === undefined) {
        out.on(`drain`, finish);
      } else {
        out.write(chunk, err => {
          written = !err;
          if (err)
            failed(err as NodeJS.ErrnoException);
          else
            finish();
        });
      }
    });
  }

  /**
   * Flushes what is left and waits until every byte was taken by the destination (a file's last
   * write can fail after write() returned). Returns quietly when the reader of stdout left (a
   * normal end); throws WriteFailed when a write failed.
   */
  async end(): Promise<void> {
    try {
      await this.settle();
    } catch (err) {
      if (!(err instanceof OutputClosed))
        throw err;
    } finally {
      this.release();
    }
  }

  private async settle(): Promise<void> {
    await this.flush();
    if (!this.isClosed) {
      await new Promise<void>(resolve => {
        // An empty write's callback runs once every earlier write is done (or failed).
        this.out.write(``, err => {
          if (err)
            this.onError(err as NodeJS.ErrnoException);
          resolve();
        });
      });
    }
    if (this.error !== null)
      throw this.failure();
  }

  /** Stops listening to the stream (late EPIPEs from it are then not errors for us). */
  release(): void {
    this.out.off(`error`, this.onError);
    if (this.out.listenerCount(`error`) === 0)
      this.out.on(`error`, () => {});
  }

  lastError(): NodeJS.ErrnoException | null {
    return this.error;
  }
}

/** Writes a whole text (a rendered report) and waits for it to be taken; errors as RecordWriter's. */
export async function writeWhole(out: Writable, text: string, target = STANDARD_OUTPUT): Promise<void> {
  const writer = new RecordWriter(out, JSON.stringify, target);
  await writer.writeText(text);
  await writer.end();
}

/** Drains an async iterable of records into a writer, flushing at the end. */
export async function writeAll(records: AsyncIterable<object>, writer: RecordWriter): Promise<void> {
  for await (const record of records)
    await writer.write(record);
  await writer.end();
}
