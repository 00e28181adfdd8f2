// Small /proc helpers shared by snapshot-conns and snapshot-pids. Everything takes the proc
// root as a parameter: `/proc`, `/host/proc`, a capture's `proc/`, or a fixture tree.
import {readlinkSync} from 'node:fs';
import {readdir} from 'node:fs/promises';
import {UnreadableFile} from '../boundedRead.ts';
import {EnvironmentFault} from '../errors.ts';

/** errno codes that mean "this process (or thread) is gone": not an error, it is just absent. */
export function isVanished(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException)?.code;
  return code === `ENOENT` || code === `ESRCH` || code === `ENOTDIR`;
}

export function errnoOf(err: unknown): string {
  if (err instanceof UnreadableFile)
    return err.reason;
  return (err as NodeJS.ErrnoException)?.code ?? (err as Error)?.message ?? String(err);
}

/** Numeric entries of a proc root (the processes), ascending. */
export async function listPids(procRoot: string): Promise<Array<number>> {
  let names: Array<string>;
  try {
    names = await readdir(procRoot);
  } catch (err) {
    throw new EnvironmentFault(`cannot list processes in ${procRoot}: ${errnoOf(err)}`);
  }
  return numericNames(names);
}

/** Numeric names, as numbers, ascending (`task/` and proc roots mix them with other entries). */
export function numericNames(names: ReadonlyArray<string>): Array<number> {
  const numbers: Array<number> = [];
  for (const name of names) {
    if (name.length === 0 || name.length > 10)
      continue;
    let value = 0;
    let ok = true;
    for (let i = 0; i < name.length; i++) {
      const digit = name.charCodeAt(i) - 48;
      if (digit < 0 || digit > 9) {
        ok = false;
        break;
      }
      value = value * 10 + digit;
    }
    if (ok)
      numbers.push(value);
  }
  return numbers.sort((a, b) => a - b);
}

/** The inode in a namespace link's text, `net:[4026531840]`; null when the text is not that. */
export function parseNsLink(text: string): number | null {
  const match = /^net:\[(\d+)\]$/.exec(text);
  if (!match)
    return null;
  const inode = Number(match[1]);
  return inode > 0 && inode <= 0xffffffff ? inode : null;
}

export type NsLinkResult =
  | {inode: number}
  | {vanished: true}
  | {error: string};

/**
 * Reads `<procRoot>/<pid>/ns/net`. A process that is gone, or a zombie (whose namespaces are
 * already released), reads as vanished; a refused read (some sandboxes refuse even root for
 * pid 1) is an error. Synchronous: the per-process files are tiny and in memory (procfs, or a
 * capture in the page cache): a direct syscall costs a fraction of a thread-pool round trip
 * (measured: 20,000 processes' stat + task + ns/net take ~0.45 s CPU sync, ~2.2 s async).
 */
export function readNetnsLinkSync(procRoot: string, pid: number): NsLinkResult {
  let text: string;
  try {
    text = readlinkSync(`${procRoot}/${pid}/ns/net`);
  } catch (err) {
    return linkFailure(err);
  }
  return linkResult(text);
}

function linkResult(text: string): NsLinkResult {
  const inode = parseNsLink(text);
  return inode === null ? {error: `unexpected link text ${JSON.stringify(text)}`} : {inode};
}

function linkFailure(err: unknown): NsLinkResult {
  return isVanished(err) ? {vanished: true} : {error: errnoOf(err)};
}

/** Lets the event loop run (the output writer, timers) between batches of synchronous reads. */
export function yieldToLoop(): Promise<void> {
  return new Promise(resolve => setImmediate(resolve));
}
