// What every subcommand shares: -v/-q, the tool context, and one place that turns errors into
// exit codes and messages on stderr (clipanion would print them on stdout, into the pipe).
import {Command, Option, type BaseContext} from 'clipanion';
import {createLogger, defaultToolContext, type ToolContext} from '../src/context.ts';
import {ToolError, UsageFault} from '../src/errors.ts';
import {escapeControl} from '../src/escape.ts';
import {parseSize} from '../src/lines.ts';
import {ExitCode} from '../src/exitCodes.ts';
import {makeHeader} from '../src/header.ts';
import type {Origin} from '../src/provenance.ts';
import {singly, type Batches} from '../src/batch.ts';
import {OutputClosed, RecordWriter, batchBytes, readInputBatches, readInputs, recycleBatchBytes, type LineBytes} from '../src/ndjson.ts';
import type {AnyRecord, Stage} from '../src/schema.ts';

/** Batches at least this long go out as bytes, one write each (batchBytes); smaller ones are queued as text. */
const BYTES_FROM = 64;

export type CliContext = BaseContext & {
  /** Overrides of the tool context (tests inject proc roots, runners, clocks). */
  tool?: Partial<ToolContext>;
  /** Whether stderr is a terminal (progress display); defaults to process.stderr.isTTY. */
  stderrIsTTY?: boolean;
  /** Whether stdout is a terminal (colour in reports). */
  stdoutIsTTY?: boolean;
};

export abstract class BaseCommand extends Command<CliContext> {
  verbose = Option.Counter(`-v,--verbose`, 0, {description: `More detail on stderr (repeat for debug output)`});
  quiet = Option.Boolean(`-q,--quiet`, false, {description: `No progress or warnings on stderr, only errors`});
  maxLineLength = Option.String(`--max-line-length`, {description: `Longest input line or dump element accepted, in characters (suffixes k, M, G; default 16M); longer ones are reported and skipped`});

  /** The command's work; returns its exit code. */
  protected abstract run(tool: ToolContext): Promise<number>;

  async execute(): Promise<number> {
    let tool: ToolContext | null = null;
    try {
      tool = this.toolContext();
      return await this.run(tool);
    } catch (err) {
      tool?.log.done();
      if (err instanceof OutputClosed)
        return ExitCode.Ok;
      const name = `usm-leak-detector ${this.path.join(` `)}`.trim();
      if (err instanceof ToolError) {
        this.context.stderr.write(`${name}: ${escapeControl(err.message)}\n`);
        return err.exitCode;
      }
      this.context.stderr.write(`${name}: internal error: ${(err as Error)?.stack ?? String(err)}\n`);
      return ExitCode.Internal;
    }
  }

  private cachedTool: ToolContext | null = null;

  protected toolContext(): ToolContext {
    if (this.cachedTool)
      return this.cachedTool;
    const stderr = this.context.stderr;
    const isTTY = this.context.stderrIsTTY ?? Boolean((process.stderr as {isTTY?: boolean}).isTTY && stderr === process.stderr);
    const log = createLogger(stderr, {verbosity: this.verbose ?? 0, quiet: this.quiet, isTTY});
    const overrides = this.context.tool ?? {};
    let maxLineLength: number | undefined;
    if (this.maxLineLength !== undefined) {
      const parsed = parseSize(this.maxLineLength);
      if (parsed === null)
        throw new UsageFault(`--max-line-length ${this.maxLineLength}: expected a size in bytes, like 16M or 1G`);
      maxLineLength = parsed;
    }
    this.cachedTool = defaultToolContext(stderr, {
      log: this.quiet ? {...log, warn: () => {}} : log,
      env: this.context.env,
      ...overrides,
      ...(maxLineLength !== undefined ? {maxLineLength} : {}),
    });
    return this.cachedTool;
  }

  /** Whether our stdout is a terminal (colour in reports): the context says, else the real stdout. */
  protected stdoutIsTTY(): boolean {
    return this.context.stdoutIsTTY ?? Boolean((process.stdout as {isTTY?: boolean}).isTTY && this.context.stdout === process.stdout);
  }

  /** Record input from files (`-` = stdin) or stdin; bad lines (and records failing the spec) are reported and skipped. */
  protected input(tool: ToolContext, paths: ReadonlyArray<string>): AsyncGenerator<AnyRecord> {
    return readInputs(paths, this.context.stdin, {onProblem: message => tool.log.warn(message), maxLineLength: tool.maxLineLength});
  }

  /** Record input in batches (one per chunk read): what the batch stages take. */
  protected inputBatches(tool: ToolContext, paths: ReadonlyArray<string>): AsyncGenerator<Array<AnyRecord>> {
    return readInputBatches(paths, this.context.stdin, {onProblem: message => tool.log.warn(message)});
  }

  /**
   * Writes the stage's header then every record; resolves when all is flushed (and taken). The header is
   * written when the first record is ready (or at the end): a stage that refuses its input
   * before producing anything leaves stdout empty, and `origin` (where the data was taken, when
   * not live here) is known from the input's own header by then.
   */
  protected async emit(stage: Stage, tool: ToolContext, records: AsyncIterable<object>, lineOf?: (record: object) => string, origin?: () => Origin | null): Promise<void> {
    await this.emitBatches(stage, tool, singly(records), lineOf, origin);
  }

  /**
   * emit() for a stage that yields batches of records (src/batch.ts): one write per batch.
   * `lineBytes` writes the lines it can as bytes (src/ndjson.ts batchBytes), `lineOf` the others.
   */
  protected async emitBatches(stage: Stage, tool: ToolContext, batches: Batches<object>, lineOf?: (record: object) => string, origin?: () => Origin | null, lineBytes?: LineBytes): Promise<void> {
    const writer = new RecordWriter(this.context.stdout, lineOf);
    let headed = false;
    try {
      for await (const batch of batches) {
        if (!headed && batch.length > 0) {
          headed = true;
          await writer.write(makeHeader(stage, tool, origin?.()));
        }
        if (batch.length >= BYTES_FROM) {
          const bytes = batchBytes(batch, lineOf, lineBytes);
          if (writer.givesChunksBack) {
            await writer.writeBytes(bytes, () => recycleBatchBytes(bytes));
          } else {
            // A stream that may keep what it is given gets a copy of the batch's size.
            const copy = Buffer.from(bytes);
            recycleBatchBytes(bytes);
            await writer.writeBytes(copy);
          }
        } else {
          const pending = writer.writeBatch(batch);
          if (pending !== undefined)
            await pending;
        }
      }
      if (!headed)
        await writer.write(makeHeader(stage, tool, origin?.()));
      await writer.end();
    } finally {
      writer.release();
      tool.log.done();
    }
  }

  /** Stages read `-` as stdin, like every Unix filter. */
  protected static stdinHint = `A file argument of \`-\` means standard input; with no file, standard input is read.`;
}
