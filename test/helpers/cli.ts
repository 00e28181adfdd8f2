// Drives the CLI in-process with injected stdio and tool context, as the tests of every stage do.
import {PassThrough, Readable} from 'node:stream';
import type {ToolContext} from '../../src/context.ts';
import {runCli} from '../../commands/cli.ts';

export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

export interface CliRunOptions {
  /** Text (or a stream) for stdin; empty when absent. */
  stdin?: string | Readable;
  tool?: Partial<ToolContext>;
  env?: NodeJS.ProcessEnv;
  stdoutIsTTY?: boolean;
  stderrIsTTY?: boolean;
  /**
   * Only the stdout lines it accepts are kept (a dump of the whole host may hold other maps,
   * millions of entries: more than one string can hold).
   */
  keepLine?: (line: string) => boolean;
}

export async function runCommand(args: Array<string>, options: CliRunOptions = {}): Promise<CliRun> {
  const stdin = typeof options.stdin === `string` || options.stdin === undefined
    ? Readable.from(options.stdin === undefined || options.stdin === `` ? [] : [options.stdin])
    : options.stdin;
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  const out: Array<Buffer> = [];
  const err: Array<Buffer> = [];
  const keepLine = options.keepLine;
  let partial = ``;
  stdout.on(`data`, (chunk: Buffer) => {
    if (keepLine === undefined) {
      out.push(chunk);
      return;
    }
    const lines = (partial + chunk.toString(`utf8`)).split(`\n`);
    partial = lines.pop()!;
    const kept = lines.filter(keepLine);
    if (kept.length > 0)
      out.push(Buffer.from(`${kept.join(`\n`)}\n`));
  });
  stderr.on(`data`, chunk => err.push(chunk));
  const code = await runCli(args, {
    stdin,
    stdout,
    stderr,
    env: options.env ?? process.env,
    tool: options.tool,
    stdoutIsTTY: options.stdoutIsTTY ?? false,
    stderrIsTTY: options.stderrIsTTY ?? false,
  });
  stdout.end();
  stderr.end();
  await new Promise(resolve => setImmediate(resolve));
  if (keepLine !== undefined && partial !== `` && keepLine(partial))
    out.push(Buffer.from(partial));
  return {code, stdout: Buffer.concat(out).toString(`utf8`), stderr: Buffer.concat(err).toString(`utf8`)};
}

/** Parses NDJSON output into records (throws on a bad line: our own output must be clean). */
export function parseLines(text: string): Array<Record<string, any>> {
  return text.split(`\n`).filter(line => line.length > 0).map((line, i) => {
    try {
      return JSON.parse(line);
    } catch {
      throw new Error(`output line ${i + 1} is not JSON: ${line.slice(0, 120)}`);
    }
  });
}

/** The records of output, without the header (whose time and host vary). */
export function withoutHeader(records: Array<Record<string, any>>): Array<Record<string, any>> {
  return records.filter(record => record.type !== `header`);
}
