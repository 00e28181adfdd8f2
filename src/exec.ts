// How child processes (bpftool, system-probe, nsenter) are run. Injected through the context so
// tests can swap it.
//
// Every child runs in its own process group and has a timeout. When the timeout fires, or our
// consumer stops reading, the whole group is SIGKILLed and its pipes are closed, so a wrapper
// script's grandchild that holds stdout open cannot keep the stage waiting. When the child itself
// exits, what is left of its group is killed too (none of the tools we run leaves a daemon). Its
// stderr is always drained (a child that fills a 64 KiB stderr pipe nobody reads would block
// forever) and its tail is kept for the error message. The groups of children still running
// when we exit (SIGINT, SIGTERM, a closed stdout) are killed by the exit actions
// (src/cleanup.ts): in their own group they no longer get the terminal's SIGINT.
//
// Timers in Node run on libuv's epoll_wait timeout, not nanosleep/clock_nanosleep, so the seccomp
// profiles that break Python's time.sleep do not stop our timeouts from firing.
import {spawn, type ChildProcess} from 'node:child_process';
import type {Readable} from 'node:stream';
import {atExit} from './cleanup.ts';
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
  /** Kills the child's process group now and stops reading (idempotent). */
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
const MAX_BUFFER = 256 * 1024 * 1024;
export const DEFAULT_TIMEOUT_MS = 120_000;
/** setTimeout's largest delay (2^31 - 1 ms, ~24.8 days); longer ones fire after 1 ms. */
export const MAX_TIMEOUT_MS = 2 ** 31 - 1;

interface Started {
  child: ChildProcess;
  /** The stderr tail so far. */
  stderr(): string;
  /** Settles once: exit code (null when killed or not started), timed out, start error. */
  finished: Promise<{exitCode: number | null, timedOut: boolean, startError: NodeJS.ErrnoException | null}>;
  /** Kills the group and closes our ends of its pipes. */
  stop(): void;
}

function killGroup(child: ChildProcess): void {
  if (child.pid === undefined)
    return;
  try {
    process.kill(-child.pid, `SIGKILL`);
  } catch {
    // the group is gone already
  }
}

function start(file: string, args: ReadonlyArray<string>, options: RunOptions): Started {
  const child = spawn(file, [...args], {
    detached: true, // a new session and process group: the group can be killed as one
    stdio: [`ignore`, `pipe`, `pipe`],
    env: options.env === undefined ? process.env : {...process.env, ...options.env},
  });
  let stderr = ``;
  child.stderr!.setEncoding(`utf8`);
  child.stderr!.on(`data`, (chunk: string) => {
    stderr += chunk;
    if (stderr.length > STDERR_TAIL * 2)
      stderr = stderr.slice(-STDERR_TAIL);
  });
  child.stderr!.on(`error`, () => {});
  child.stdout!.on(`error`, () => {});
  const forget = atExit(() => killGroup(child));
  let settle!: (value: {exitCode: number | null, timedOut: boolean, startError: NodeJS.ErrnoException | null}) => void;
  const finished = new Promise<{exitCode: number | null, timedOut: boolean, startError: NodeJS.ErrnoException | null}>(resolve => {
    settle = resolve;
  });
  let done = false;
  const finish = (exitCode: number | null, timedOut: boolean, startError: NodeJS.ErrnoException | null) => {
    if (done)
      return;
    done = true;
    clearTimeout(timer);
    forget();
    settle({exitCode, timedOut, startError});
  };
  const stop = () => {
    killGroup(child);
    child.stdout!.destroy();
    child.stderr!.destroy();
  };
  const timer = setTimeout(() => {
    stop();
    finish(null, true, null);
  }, Math.min(Math.max(1, options.timeoutMs ?? DEFAULT_TIMEOUT_MS), MAX_TIMEOUT_MS));
  child.once(`error`, err => {
    stop();
    finish(null, false, err as NodeJS.ErrnoException);
  });
  // The child exited: what is left of its group (a grandchild holding our pipes) goes too.
  child.once(`exit`, () => killGroup(child));
  child.once(`close`, code => finish(code, false, null));
  return {child, stderr: () => stderr, finished, stop};
}

function startFailure(file: string, err: NodeJS.ErrnoException): EnvironmentFault {
  if (err.code === `ENOENT`)
    return new EnvironmentFault(`cannot run ${file}: not found`);
  if (err.code === `EACCES`)
    return new EnvironmentFault(`cannot run ${file}: permission denied`);
  return new EnvironmentFault(`cannot run ${file}: ${err.code ?? err.message}`);
}

export class ProcessGroupRunner implements CommandRunner {
  async run(file: string, args: ReadonlyArray<string>, options: RunOptions = {}): Promise<RunResult> {
    const started = start(file, args, options);
    const chunks: Array<Buffer> = [];
    let size = 0;
    let overflow = false;
    started.child.stdout!.on(`data`, (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BUFFER) {
        overflow = true;
        started.stop();
        return;
      }
      chunks.push(chunk);
    });
    const result = await started.finished;
    if (result.startError !== null)
      throw startFailure(file, result.startError);
    return {
      exitCode: overflow ? null : result.exitCode,
      stdout: Buffer.concat(chunks).toString(`utf8`),
      stderr: overflow ? `${started.stderr()}output larger than ${MAX_BUFFER} bytes` : started.stderr(),
      timedOut: result.timedOut,
    };
  }

  stream(file: string, args: ReadonlyArray<string>, options: RunOptions = {}): StreamedChild {
    const started = start(file, args, options);
    const done = started.finished.then(result => ({
      exitCode: result.exitCode,
      stdout: ``,
      stderr: result.startError !== null && !started.stderr() ? `${result.startError.code}: ${result.startError.message}` : started.stderr(),
      timedOut: result.timedOut,
    }));
    return {
      stdout: started.child.stdout!,
      done,
      kill: () => started.stop(),
    };
  }
}
