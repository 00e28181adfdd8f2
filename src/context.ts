// What a stage needs from the world, passed in rather than reached for: where /proc is, how
// child processes run, what time it is, where messages go. Tests point these at fixture trees,
// fake binaries or real maps without touching globals.
import {hostname, release, tmpdir} from 'node:os';
import type {Writable} from 'node:stream';
import {setTimeout as delay} from 'node:timers/promises';
import {escapeControl} from './escape.ts';
import {ProcessGroupRunner, type CommandRunner} from './exec.ts';
import {DEFAULT_MAX_LINE_LENGTH} from './lines.ts';
import {lazySyscalls, type SyscallAccess} from './sys/syscalls.ts';
import type {FdLinksCache} from './snapshot/fdLinks.ts';

export interface Clock {
  /** Milliseconds since the Unix epoch. */
  now(): number;
  /** Resolves after `ms`; rejects with an AbortError when `signal` fires. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
  /**
   * CLOCK_MONOTONIC in nanoseconds: the clock bpf_ktime_get_ns() dates map values with. Absent
   * in a clock that cannot give it (entries are then not aged).
   */
  monotonicNs?(): bigint;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  // libuv's hrtime is clock_gettime(CLOCK_MONOTONIC) on Linux (checked against /proc/timer_list `now at`).
  monotonicNs: () => process.hrtime.bigint(),
  sleep: (ms, signal) => delay(ms, undefined, {signal}),
};

export interface Logger {
  /** Something the user should know; always printed. */
  warn(message: string): void;
  /** Printed with -v. */
  info(message: string): void;
  /** Printed with -vv. */
  debug(message: string): void;
  /** A transient status line; shown only when stderr is a TTY and not quiet. */
  progress(message: string): void;
  /** Clears the progress line, if any. */
  done(): void;
}

/** A logger that says nothing (rehearsals: src/dump/rehearsal.ts, src/scan/rehearsal.ts). */
export const SILENT_LOGGER: Logger = {warn() {}, info() {}, debug() {}, progress() {}, done() {}};

export interface LoggerOptions {
  verbosity?: number;
  quiet?: boolean;
  isTTY?: boolean;
}

export function createLogger(stderr: Writable, options: LoggerOptions = {}): Logger {
  const verbosity = options.verbosity ?? 0;
  const showProgress = Boolean(options.isTTY) && !options.quiet;
  let progressShown = false;
  const clear = () => {
    if (progressShown) {
      write(`\r\x1b[K`);
      progressShown = false;
    }
  };
  // Messages quote process names and paths: control characters in them are escaped. Writing to
  // stderr is best-effort: a reader of stderr that went away must not end the run.
  const write = (text: string) => {
    if (stderr.destroyed || stderr.writableEnded)
      return;
    try {
      stderr.write(text);
    } catch {
      // a synchronous stderr (a file, a full disk) that cannot take it: messages are best-effort
    }
  };
  if (stderr.listenerCount(`error`) === 0)
    stderr.on(`error`, () => {});
  const line = (prefix: string, message: string) => {
    clear();
    write(`${prefix}${escapeControl(message)}\n`);
  };
  return {
    warn: message => line(`usm-leak-detector: `, message),
    info: message => { if (verbosity >= 1) line(``, message); },
    debug: message => { if (verbosity >= 2) line(`debug: `, message); },
    progress: message => {
      if (!showProgress)
        return;
      write(`\r\x1b[K${escapeControl(message)}`);
      progressShown = true;
    },
    done: clear,
  };
}

export interface HostFacts {
  hostname: string;
  kernel: string;
}

export interface ToolContext {
  /** Root of the proc filesystem to read (`/proc`, `/host/proc`, or a fixture tree). */
  procRoot: string;
  /** Runs bpftool, system-probe, nsenter. */
  runner: CommandRunner;
  clock: Clock;
  log: Logger;
  host: HostFacts;
  /** Where temporary files go (never a fixed path). */
  tmpDir: string;
  env: NodeJS.ProcessEnv;
  /** Effective uid, for "are we root" decisions (tests override it). */
  uid: number;
  /** The system calls we make ourselves (bpf(), setns()), loaded on first use. */
  syscalls: SyscallAccess;
  /** Longest input line (NDJSON record, dump element) accepted; longer ones are reported and skipped. */
  maxLineLength: number;
  /** The fd walks of one look at the host, shared by its stages (scan's first look); absent: each walks its own. */
  fdLinks?: FdLinksCache;
}

export function defaultToolContext(stderr: Writable, overrides: Partial<ToolContext> = {}): ToolContext {
  const tmpDir = overrides.tmpDir ?? tmpdir();
  return {
    procRoot: `/proc`,
    runner: new ProcessGroupRunner(),
    clock: systemClock,
    log: createLogger(stderr),
    host: {hostname: hostname(), kernel: release()},
    tmpDir,
    env: process.env,
    uid: typeof process.geteuid === `function` ? process.geteuid() : -1,
    syscalls: lazySyscalls(tmpDir),
    maxLineLength: DEFAULT_MAX_LINE_LENGTH,
    ...overrides,
  };
}
