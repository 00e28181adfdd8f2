// How child processes (bpftool, system-probe, nsenter) are run. Injected through the context so
// tests can swap it; the default uses execa.
//
// Every child has a timeout and is killed with SIGKILL when it fires or when our consumer stops
// reading. Its stderr is always drained (a child that fills a 64 KiB stderr pipe nobody reads
// would block forever) and its tail is kept for the error message. Timers in Node run on libuv's
// epoll_wait timeout, not nanosleep/clock_nanosleep, so the seccomp profiles that break Python's
// time.sleep do not stop our timeouts from firing.
import type {Readable} from 'node:stream';
import {execa} from 'execa';
import {EnvironmentFault} from './errors.ts';

export interface RunResult {
  exitCode: number | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

export interface StreamedChild {
  /** The child's stdout, as bytes. */
  stdout: Readable;
  /** Settles when the child has exited and its stderr is drained. Never rejects. */
  done: Promise<RunResult>;
  /** Kills the child now (idempotent). */
  kill(): void;
}

export interface RunOptions {
  timeoutMs?: number;
  /** Extra environment for the child. */
  env?: Record<string, string>;
}

export interface CommandRunner {
  /** Runs to completion with output buffered. Rejects only when the binary cannot be started. */
  run(file: string, args: ReadonlyArray<string>, options?: RunOptions): Promise<RunResult>;
  /** Starts a child whose stdout is consumed as a stream. */
  stream(file: string, args: ReadonlyArray<string>, options?: RunOptions): StreamedChild;
}

const STDERR_TAIL = 16 * 1024;
export const DEFAULT_TIMEOUT_MS = 120_000;

export class ExecaRunner implements CommandRunner {
  async run(file: string, args: ReadonlyArray<string>, options: RunOptions = {}): Promise<RunResult> {
    const result = await execa(file, args, {
      reject: false,
      timeout: options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
      killSignal: `SIGKILL`,
      env: options.env,
      stdin: `ignore`,
      maxBuffer: 256 * 1024 * 1024,
      stripFinalNewline: false,
    });
    if (result.failed && (result as {code?: string}).code === `ENOENT`)
      throw new EnvironmentFault(`cannot run ${file}: not found`);
    if (result.failed && (result as {code?: string}).code === `EACCES`)
      throw new EnvironmentFault(`cannot run ${file}: permission denied`);
    return {
      exitCode: result.exitCode ?? null,
      stdout: String(result.stdout ?? ``),
      stderr: String(result.stderr ?? ``),
      timedOut: Boolean(result.timedOut),
    };
  }

  stream(file: string, args: ReadonlyArray<string>, options: RunOptions = {}): StreamedChild {
    const child = execa(file, args, {
      reject: false,
      buffer: false,
      timeout: options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
      killSignal: `SIGKILL`,
      env: options.env,
      stdin: `ignore`,
    });
    let stderr = ``;
    child.stderr!.setEncoding(`utf8`);
    child.stderr!.on(`data`, (chunk: string) => {
      stderr += chunk;
      if (stderr.length > STDERR_TAIL * 2)
        stderr = stderr.slice(-STDERR_TAIL);
    });
    const done = child.then(
      result => ({
        exitCode: result.exitCode ?? null,
        stdout: ``,
        stderr: result.failed && (result as {code?: string}).code && !stderr
          ? `${(result as {code?: string}).code}: ${result.message}`
          : stderr,
        timedOut: Boolean(result.timedOut),
      }),
      err => ({exitCode: null, stdout: ``, stderr: `${stderr}${String(err)}`, timedOut: false}),
    );
    return {
      stdout: child.stdout!,
      done,
      kill: () => {
        if (child.exitCode === null && child.signalCode === null)
          child.kill(`SIGKILL`);
      },
    };
  }
}
