// snapshot-pids: one record per process with its threads, state, start time, command name and
// network namespace. validate uses it to judge pid_tgid keys by thread, to notice zombies, and
// (through the start time) to notice a pid reused by a newer process.
import {readdirSync} from 'node:fs';
import {readBoundedTextSync} from '../boundedRead.ts';
import {snapshotMonotonicNs} from '../capture/monotonic.ts';
import type {ToolContext} from '../context.ts';
import {captureOrigin} from '../provenance.ts';
import {SCHEMA_VERSION, type ProcessRecord, type SnapshotRecord} from '../schema.ts';
import {errnoOf, isVanished, listPids, numericNames, readNetnsLinkSync, yieldToLoop} from './procfs.ts';
import {Ascii} from '../ascii.ts';
import {readFdLinks, type FdLinksCache} from './fdLinks.ts';

export interface SnapshotPidsOptions {
  /** A capture directory: its proc/ is read instead of the live /proc. */
  from?: string;
  /** Also list each process's socket fds (`socketFds`): pid_fd maps are judged by them. One readlink per open fd. */
  socketFds?: boolean;
}

/** Processes read between two turns of the event loop. */
const BATCH = 256;
/** A stat line is under 1 KiB (comm is at most 64 bytes); anything bigger is not one. */
const STAT_MAX_BYTES = 64 * 1024;

export interface ParsedStat {
  pid: number;
  comm: string;
  state: string;
  /** Field 22: clock ticks after boot. */
  startTime: number;
}

/**
 * Parses /proc/PID/stat. The command name is field 2, in parentheses, and may itself contain
 * spaces and parentheses (`a) b (c`): it runs from the first `(` to the LAST `)`. Fields 3.. are
 * space separated after that. Null when the text is not a stat line.
 */
export function parseStat(text: string): ParsedStat | null {
  const open = text.indexOf(`(`);
  const close = text.lastIndexOf(`)`);
  if (open < 1 || close < open || text.charCodeAt(close + 1) !== Ascii.Space)
    return null;
  const pid = Number(text.slice(0, open - 1));
  // Fields from 3 on: state is field 3, start time field 22.
  const rest = text.slice(close + 2).split(` `, 20);
  if (!Number.isInteger(pid) || rest.length < 20 || rest[0].length === 0)
    return null;
  const startTime = Number(rest[19]);
  if (!Number.isSafeInteger(startTime) || startTime < 0)
    return null;
  return {pid, comm: text.slice(open + 1, close), state: rest[0], startTime};
}

/** `refused`: what could not be read of a process that is there (its ns/net link, its fds). */
type ProcessRead = {record: ProcessRecord, refused?: string} | {vanished: true} | {problem: string};

/** One process. Synchronous on purpose: see readNetnsLinkSync for the measured reason. */
function readProcess(procRoot: string, pid: number, socketFds: boolean, cache: FdLinksCache | undefined): ProcessRead {
  const dir = `${procRoot}/${pid}`;
  let statText: string;
  let taskNames: Array<string>;
  try {
    statText = readBoundedTextSync(`${dir}/stat`, `utf8`, STAT_MAX_BYTES);
    taskNames = readdirSync(`${dir}/task`);
  } catch (err) {
    // Gone while being read: it simply is not in the snapshot.
    if (isVanished(err))
      return {vanished: true};
    return {problem: `cannot read ${dir}: ${errnoOf(err)}`};
  }
  const stat = parseStat(statText);
  if (stat === null)
    return {problem: `${dir}/stat: not a stat line: ${JSON.stringify(statText.slice(0, 80))}`};
  const link = readNetnsLinkSync(procRoot, pid);
  const read: {record: ProcessRecord, refused?: string} = {
    record: {
      type: `process`,
      v: SCHEMA_VERSION,
      pid,
      tids: numericNames(taskNames),
      state: stat.state,
      startTime: stat.startTime,
      comm: stat.comm,
      // null for zombies (their namespaces are released) and for refused links.
      netnsInode: `inode` in link ? link.inode : null,
    },
  };
  if (`error` in link)
    read.refused = `ns/net: ${link.error}`;
  if (socketFds) {
    const fds = readSocketFds(dir, cache);
    if (fds !== undefined)
      read.record.socketFds = fds;
    else
      read.refused = `${read.refused !== undefined ? `${read.refused}, ` : ``}fd/`;
  }
  return read;
}

/**
 * [fd, socket inode] of every socket fd of a process: its fd/ links (`socket:[INODE]`) live, or
 * the `ls -l` listing the capture script saved as fd.ls. Undefined when neither can be read: no
 * evidence, and pid_fd verdicts of the process say so (unknown), never "fd closed".
 */
export function readSocketFds(dir: string, cache?: FdLinksCache): Array<[number, number]> | undefined {
  const links = cache !== undefined ? cache.read(`${dir}/fd`) : readFdLinks(`${dir}/fd`);
  if (links !== undefined)
    return [...links.sockets].sort((a, b) => a[0] - b[0]);
  let listing = ``;
  try {
    listing = readBoundedTextSync(`${dir}/fd.ls`, `utf8`);
  } catch {
    return undefined;
  }
  const out: Array<[number, number]> = [];
  for (const match of listing.matchAll(/ (\d+) -> socket:\[(\d+)\]$/gm))
    out.push([Number(match[1]), Number(match[2])]);
  return out.sort((a, b) => a[0] - b[0]);
}

export async function* snapshotPids(ctx: ToolContext, options: SnapshotPidsOptions = {}): AsyncGenerator<ProcessRecord | SnapshotRecord> {
  // A capture's snapshot was taken when the capture was (its meta/time), not now.
  const startedMs = options.from !== undefined ? (await captureOrigin(options.from)).timeMs : ctx.clock.now();
  const monotonicNs = await snapshotMonotonicNs(ctx, options.from);
  const procRoot = options.from !== undefined ? `${options.from}/proc` : ctx.procRoot;
  const pids = await listPids(procRoot);
  let count = 0;
  let problems = 0;
  // Processes listed with a field they could not give (netnsInode null although not a zombie).
  const refused: Array<string> = [];
  let refusedCount = 0;
  for (let i = 0; i < pids.length; i++) {
    if (i % BATCH === BATCH - 1)
      await yieldToLoop();
    const read = readProcess(procRoot, pids[i], options.socketFds === true, options.from === undefined ? ctx.fdLinks : undefined);
    if (`record` in read) {
      count++;
      if (read.refused !== undefined && ++refusedCount <= 5)
        refused.push(`${pids[i]} (${read.refused})`);
      yield read.record;
    } else if (`problem` in read) {
      problems++;
      ctx.log.warn(read.problem);
    }
  }
  // Without root, most processes' ns/net links (and fd/) are refused: the snapshot is incomplete
  // and says so. As root, a sandbox may refuse one undumpable process (pid 1) that root cannot
  // read either: it is listed, its netnsInode null, and only -v says so.
  const unprivileged = ctx.uid !== 0 && options.from === undefined;
  if (refusedCount > 0) {
    const message = `cannot read part of ${refusedCount} of ${count} process(es) under ${procRoot}: ${refused.join(`, `)}${refusedCount > refused.length ? `, ...` : ``}; their netnsInode is null (unknown)`;
    if (unprivileged)
      ctx.log.warn(`${message}; not running as root, so the snapshot says complete: false`);
    else
      ctx.log.info(message);
  }
  yield {
    type: `snapshot`,
    v: SCHEMA_VERSION,
    of: `pids`,
    procRoot: options.from ?? procRoot,
    time: new Date(startedMs).toISOString(),
    timeMs: startedMs,
    ...(monotonicNs === undefined ? {} : {monotonicNs}),
    count,
    complete: problems === 0 && !(unprivileged && refusedCount > 0),
  };
}
