// Records that must wait wait here: entries that arrive before the snapshots they are judged
// against (`dump-maps | validate`, `cat entries conns pids | validate`), and recheck's leaked
// candidates until the second look. The first HOLD_IN_MEMORY wait in memory; past that they go
// to a temporary NDJSON file and are read back in order, so a million waiting records cost disk,
// not RAM.
import {createReadStream, type WriteStream} from 'node:fs';
import {finished} from 'node:stream/promises';
import {join} from 'node:path';
import type {ToolContext} from '../context.ts';
import {BATCH_SIZE} from '../batch.ts';
import {RecordWriter, SOURCE_LINE, readRecordBatches, writeErrorOf} from '../ndjson.ts';
import {createTempFile, makeTempDir, type TempDir} from '../outputFile.ts';
import type {AnyRecord} from '../schema.ts';

export const HOLD_IN_MEMORY = 20_000;

export class RecordHolding<T extends AnyRecord> {
  private readonly memory: Array<T> = [];
  private spill: {dir: TempDir, path: string, stream: WriteStream, writer: RecordWriter} | null = null;
  private spilled = 0;

  /** `what` names the records in messages ("entries before the snapshots"). */
  constructor(private readonly ctx: ToolContext, private readonly what: string, private readonly limit = HOLD_IN_MEMORY) {}

  get size(): number {
    return this.spilled + this.memory.length;
  }

  /** Holds one record; resolves once it is stored (a promise only while spilling must wait). */
  add(entry: T): Promise<void> | undefined {
    if (this.spill === null && this.memory.length < this.limit) {
      this.memory.push(entry);
      return undefined;
    }
    return this.toDisk(entry);
  }

  private async toDisk(entry: T): Promise<void> {
    if (this.spill === null) {
      const dir = makeTempDir(this.ctx, `usmld-validate-`);
      const path = join(dir.path, `held.ndjson`);
      let stream: WriteStream;
      try {
        stream = createTempFile(path);
      } catch (err) {
        dir.remove();
        throw err;
      }
      // An entry goes out as the line it was read from (entries are never modified); anything
      // else is stringified, since a derived record may carry its source's line.
      const writer = new RecordWriter(stream, record => ((record as T).type === `entry` ? (record as {[SOURCE_LINE]?: string})[SOURCE_LINE] : undefined) ?? JSON.stringify(record), path);
      this.spill = {dir, path, stream, writer};
      this.ctx.log.info(`holding more than ${this.limit} ${this.what} in ${path}`);
      const earlier = this.memory.splice(0);
      for (const held of earlier)
        await this.spill.writer.write(held);
      this.spilled += earlier.length;
    }
    await this.spill.writer.write(entry);
    this.spilled += 1;
  }

  /** Every held entry, in arrival order; the holding is empty (and its file gone) afterwards. */
  async *drain(): AsyncGenerator<Array<T>> {
    if (this.spill === null) {
      const entries = this.memory.splice(0);
      for (let at = 0; at < entries.length; at += BATCH_SIZE)
        yield entries.slice(at, at + BATCH_SIZE);
      return;
    }
    const {dir, path, stream, writer} = this.spill;
    this.spill = null;
    try {
      await writer.end();
      stream.end();
      // finished() also settles for a stream that already closed (an error destroys it at once).
      try {
        await finished(stream);
      } catch (err) {
        throw writeErrorOf(err as NodeJS.ErrnoException, path);
      }
      const problems: Array<string> = [];
      const input = createReadStream(path, {highWaterMark: 64 * 1024});
      for await (const batch of readRecordBatches(input, path, {onProblem: p => problems.push(p), keepSourceLine: new Set([`entry`]), maxLineLength: this.ctx.maxLineLength}))
        yield batch as Array<T>;
      if (problems.length > 0)
        throw new Error(`the held ${this.what} did not read back: ${problems[0]}`);
    } finally {
      this.spilled = 0;
      stream.destroy();
      dir.remove();
    }
  }

  /** Removes the spill file if the stage stops before draining. */
  discard(): void {
    if (this.spill !== null) {
      this.spill.stream.destroy();
      this.spill.dir.remove();
      this.spill = null;
    }
    this.memory.length = 0;
  }
}
