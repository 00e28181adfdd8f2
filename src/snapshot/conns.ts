// snapshot-conns: every network namespace on the host and the TCP/UDP sockets in each, read
// once per namespace.
//
// Namespaces come from two places: the ns/net link of every process, and bind mounts listed in
// mountinfo (namespaces no process is in, such as `ip netns add` ones, which the original tool
// missed: B5). A namespace's tables are read through /proc/PID/net of one of its processes; when
// that process vanishes or its files cannot be read, the next one is tried (B2). A namespace with
// no readable process is entered through its bind mount: setns() in a worker thread
// (src/sys/netns.ts), or `nsenter --net=PATH` when the FFI is not available. Our own namespace
// (live, as root) is dumped through NETLINK_SOCK_DIAG instead (src/snapshot/sockDiag.ts), table
// by table falling back to the text. With `--from CAPTURE`, the capture's proc/ tree stands in
// for /proc and netns/<INODE>/ for the nsenter reads.
import {readlinkSync, statfsSync, statSync} from 'node:fs';
import {readdir, stat} from 'node:fs/promises';
import {BATCH_SIZE} from '../batch.ts';
import {readBoundedText, readBoundedTextSync} from '../boundedRead.ts';
import {snapshotMonotonicNs} from '../capture/monotonic.ts';
import {findTrusted, trustedCommand} from '../trustedBinary.ts';
import type {ToolContext} from '../context.ts';
import {captureOrigin} from '../provenance.ts';
import {errorMessage} from '../errors.ts';
import {readInNetns} from '../sys/netns.ts';
import {SCHEMA_VERSION, type NetnsRecord, type SnapshotRecord, type SocketRecord} from '../schema.ts';
import {netTableInodes, parseNetTable, TABLES, type TableSpec} from './nettable.ts';
import {readOwnTables, type DiagTable} from './sockDiag.ts';
import {mapOrdered} from './ordered.ts';
import {parseNetnsMounts} from './mountinfo.ts';
import {errnoOf, isVanished, listPids, numericNames, parseNsLink, readNetnsLinkSync, yieldToLoop} from './procfs.ts';

export interface SnapshotConnsOptions {
  /** A capture directory (its proc/ and netns/) instead of the live system. */
  from?: string;
  /** Namespaces read at the same time. */
  concurrency?: number;
}

/** How many pids a netns record lists. */
const PIDS_LISTED = 8;
/** Once a process gave some but not all tables, how many more processes to try. */
const EXTRA_TRIES = 3;
const NSENTER_TIMEOUT_MS = 15_000;
/** Processes whose ns/net link is read between two turns of the event loop. */
const DISCOVERY_BATCH = 512;
/** How many processes with a refused ns/net link get their tables read to place them. */
const REFUSED_READ = 256;

interface Namespace {
  netnsInode: number;
  /** Every process found in it, ascending. */
  pids: Array<number>;
  /** Bind-mount paths (mount points, or the capture's `paths` file). */
  paths: Array<string>;
  /** Paths that opened as this namespace, to enter it (live runs). */
  enterPaths: Array<string>;
  /** netns/<INODE>/ of a capture. */
  captureDir: string | null;
  foundByMount: boolean;
  problems: Array<string>;
}

/** One way of reading a namespace's four tables; `texts[i]` is null when TABLES[i] failed. */
interface TableRead {
  via: string;
  /** How to name a table's file in messages. */
  fileOf: (table: TableSpec) => string;
  texts: Array<string | null>;
  failures: Array<string>;
}

export async function* snapshotConns(ctx: ToolContext, options: SnapshotConnsOptions = {}): AsyncGenerator<NetnsRecord | SocketRecord | SnapshotRecord> {
  for await (const batch of snapshotConnsBatches(ctx, options))
    yield* batch;
}

/**
 * The same records in batches of BATCH_SIZE (the last may be shorter), as `batched` would group
 * them: scan takes them so, without an await per socket.
 */
export async function* snapshotConnsBatches(ctx: ToolContext, options: SnapshotConnsOptions = {}): AsyncGenerator<Array<NetnsRecord | SocketRecord | SnapshotRecord>> {
  // A capture's snapshot was taken when the capture was (its meta/time), not now.
  const startedMs = options.from !== undefined ? (await captureOrigin(options.from)).timeMs : ctx.clock.now();
  const monotonicNs = await snapshotMonotonicNs(ctx, options.from);
  const procRoot = options.from !== undefined ? `${options.from}/proc` : ctx.procRoot;
  // Our own namespace is read through NETLINK_SOCK_DIAG (src/snapshot/sockDiag.ts) when the FFI
  // can be had: its module is made ready meanwhile.
  const own = options.from === undefined && ctx.uid === 0 ? ownNetnsInode(procRoot) : null;
  if (own !== null)
    ctx.syscalls.prepare?.();
  let complete = true;
  const namespaces = new Map<number, Namespace>();
  const namespaceOf = (netnsInode: number): Namespace => {
    let ns = namespaces.get(netnsInode);
    if (!ns) {
      ns = {netnsInode, pids: [], paths: [], enterPaths: [], captureDir: null, foundByMount: false, problems: []};
      namespaces.set(netnsInode, ns);
    }
    return ns;
  };

  // 1. Every process's namespace.
  const pids = await listPids(procRoot);
  const refused: Array<{pid: number, error: string}> = [];
  for (let i = 0; i < pids.length; i++) {
    if (i % DISCOVERY_BATCH === DISCOVERY_BATCH - 1)
      await yieldToLoop();
    const pid = pids[i];
    // Synchronous: a readlink is far cheaper as a direct syscall (see readNetnsLinkSync).
    const link = readNetnsLinkSync(procRoot, pid);
    if (`inode` in link)
      namespaceOf(link.inode).pids.push(pid);
    else if (`error` in link)
      refused.push({pid, error: link.error});
  }
  // Some sandboxes refuse even root the ns/net link of pid 1 (it is not dumpable) while its
  // net/ tables stay readable. On procfs its net/tcp is its namespace's own file (same inode as
  // through any process of that namespace); elsewhere, or when no known namespace has it: socket
  // inodes are unique host-wide, so the namespace whose tables list the same socket inodes is
  // that process's namespace.
  const refusedSockets = await socketInodesOf(procRoot, refused.slice(0, REFUSED_READ).map(({pid}) => pid), options.from === undefined ? namespaces : null);
  // 2. Namespaces held by bind mounts (live), or recorded by the capture.
  if (options.from !== undefined)
    await addCaptureNamespaces(ctx, `${options.from}/netns`, namespaceOf);
  else
    await addMountedNamespaces(ctx, procRoot, pids, namespaceOf);

  if (namespaces.size === 0)
    ctx.log.warn(`no network namespace found under ${procRoot}`);

  // 3. Read each namespace's tables once, a few namespaces at a time, output in inode order.
  let count = 0;
  const ordered = [...namespaces.values()].sort((a, b) => a.netnsInode - b.netnsInode);
  const placed = new Set<number>();
  const reads = mapOrdered(ordered, options.concurrency ?? 8, ns => readNamespace(ctx, procRoot, ns, refusedSockets, ns.netnsInode === own));
  let batch: Array<NetnsRecord | SocketRecord | SnapshotRecord> = [];
  for await (const {record, sockets, matchedPids} of reads) {
    for (const pid of matchedPids)
      placed.add(pid);
    if (!record.complete)
      complete = false;
    batch.push(record);
    if (batch.length >= BATCH_SIZE) {
      yield batch;
      batch = [];
    }
    for (const socket of sockets) {
      batch.push(socket);
      if (batch.length >= BATCH_SIZE) {
        yield batch;
        batch = [];
      }
    }
    count += sockets.length;
  }

  const unplaced = refused.filter(({pid}, i) => i >= REFUSED_READ || (refusedSockets.toPlace.has(pid) && !placed.has(pid)));
  if (unplaced.length > 0) {
    // A namespace only these processes are in, with sockets in it, is missing.
    complete = false;
    ctx.log.warn(`cannot read ns/net of ${unplaced.length} process(es) under ${procRoot} and cannot place their sockets in a known namespace: ${unplaced.slice(0, 5).map(({pid, error}) => `${pid} (${error})`).join(`, `)}${unplaced.length > 5 ? `, ...` : ``}`);
  }

  if (!complete && ctx.uid !== 0 && options.from === undefined)
    ctx.log.warn(`not running as root: the namespaces and processes above could not be read, so this snapshot says complete: false (entries they hold are judged unknown); run as root for a complete one`);
  batch.push({
    type: `snapshot`,
    v: SCHEMA_VERSION,
    of: `conns`,
    procRoot: options.from ?? procRoot,
    time: new Date(startedMs).toISOString(),
    timeMs: startedMs,
    ...(monotonicNs === undefined ? {} : {monotonicNs}),
    count,
    complete,
  });
  yield batch;
}

/**
 * Bind-mounted namespaces from mountinfo. `<procRoot>/1/mountinfo` is the host's mount table
 * when the proc root is the host's (`--proc-root /host/proc` in a container: `self` there would
 * be our own, containerised, mount table); `<procRoot>/self/mountinfo` adds mounts only our own
 * mount namespace has. Each mount is opened as its mount point (our own view), else through
 * `<procRoot>/1/root<mount point>` (the host's view from inside a container), else, where pid 1's
 * root is refused (a sandbox that makes pid 1 undumpable, a container without the right to trace
 * it), through the root of another process: one per other mount namespace, lowest pid first,
 * so a process sharing the host's mount namespace (whose mount table has the bind mount) is found.
 * A path is kept only when it really is that namespace (same inode).
 */
async function addMountedNamespaces(ctx: ToolContext, procRoot: string, pids: ReadonlyArray<number>, namespaceOf: (inode: number) => Namespace): Promise<void> {
  const seen = new Set<string>();
  let otherRoots: Array<number> | null = null;
  for (const source of [`${procRoot}/1/mountinfo`, `${procRoot}/self/mountinfo`]) {
    let text: string;
    try {
      text = await readBoundedText(source, `utf8`);
    } catch (err) {
      ctx.log.debug(`cannot read ${source}: ${errnoOf(err)}`);
      continue;
    }
    for (const mount of parseNetnsMounts(text)) {
      const key = `${mount.netnsInode} ${mount.mountPoint}`;
      if (seen.has(key))
        continue;
      seen.add(key);
      const ns = namespaceOf(mount.netnsInode);
      ns.foundByMount = true;
      if (!ns.paths.includes(mount.mountPoint))
        ns.paths.push(mount.mountPoint);
      const tried: Array<string> = [];
      const opens = async (candidate: string): Promise<boolean> => {
        try {
          const info = await stat(candidate);
          if (info.ino === mount.netnsInode) {
            if (!ns.enterPaths.includes(candidate))
              ns.enterPaths.push(candidate);
            return true;
          }
          tried.push(`${candidate} is inode ${info.ino}`);
        } catch (err) {
          tried.push(`${candidate}: ${errnoOf(err)}`);
        }
        return false;
      };
      let found = await opens(mount.mountPoint) || await opens(`${procRoot}/1/root${mount.mountPoint}`);
      if (!found) {
        otherRoots ??= otherMountNamespaceRoots(procRoot, pids);
        for (const pid of otherRoots) {
          if (await opens(`${procRoot}/${pid}/root${mount.mountPoint}`)) {
            ctx.log.info(`netns ${mount.netnsInode}: ${mount.mountPoint} reached through the root of process ${pid} (${tried.slice(0, 2).join(`; `)})`);
            found = true;
            break;
          }
        }
      }
      if (!found)
        ns.problems.push(`bind mount ${mount.mountPoint} cannot be opened (${summarise(tried)})`);
    }
  }
}

/** How many other mount namespaces' roots are tried for a bind mount pid 1's root cannot open. */
const OTHER_ROOTS = 64;

/**
 * One process per mount namespace other than pid 1's, lowest pid first (the host's daemons
 * before containers'); processes whose ns/mnt link is refused are skipped (their root would be too).
 */
function otherMountNamespaceRoots(procRoot: string, pids: ReadonlyArray<number>): Array<number> {
  const seen = new Set<string>();
  const roots: Array<number> = [];
  for (const pid of pids) {
    if (pid === 1)
      continue;
    let link: string;
    try {
      link = readlinkSync(`${procRoot}/${pid}/ns/mnt`);
    } catch {
      continue;
    }
    if (seen.has(link))
      continue;
    seen.add(link);
    roots.push(pid);
    if (roots.length >= OTHER_ROOTS)
      break;
  }
  return roots;
}

/** The first few attempts, and how many more. */
function summarise(tried: ReadonlyArray<string>): string {
  return tried.length <= 3 ? tried.join(`; `) : `${tried.slice(0, 3).join(`; `)}; and ${tried.length - 3} more`;
}

/** A capture's netns/<INODE>/ directories: namespaces the capture read through nsenter. */
async function addCaptureNamespaces(ctx: ToolContext, dir: string, namespaceOf: (inode: number) => Namespace): Promise<void> {
  let names: Array<string>;
  try {
    names = await readdir(dir);
  } catch (err) {
    ctx.log.debug(`no process-less namespaces in the capture (${dir}: ${errnoOf(err)})`);
    return;
  }
  for (const inode of numericNames(names)) {
    const ns = namespaceOf(inode);
    ns.captureDir = `${dir}/${inode}`;
    try {
      const paths = (await readBoundedText(`${ns.captureDir}/paths`, `utf8`)).split(`\n`).map(line => line.trim()).filter(line => line.length > 0);
      for (const path of paths) {
        if (!ns.paths.includes(path))
          ns.paths.push(path);
      }
      ns.foundByMount ||= paths.length > 0;
    } catch (err) {
      ctx.log.debug(`${ns.captureDir}/paths: ${errnoOf(err)}`);
    }
  }
}

interface RefusedSockets {
  /** Socket inode → the refused processes whose tables list it. */
  owners: Map<number, Array<number>>;
  /** Refused processes that have sockets (or unreadable tables): they must be placed. */
  toPlace: Set<number>;
  /** netns inode → the refused processes whose net/tcp is that namespace's (placed without reading their tables). */
  sameTable: Map<number, Array<number>>;
}

/**
 * Refused processes placed by the inode of their net/tcp: on procfs each namespace's tcp table is
 * one file, the same inode through /proc/PID/net of every process in it, a different one in
 * every other namespace. Live only (`namespaces` given) and only on procfs: a capture's or a
 * fixture's copies share no inodes. Returns the processes it placed, by namespace.
 */
export function placeByTableInode(procRoot: string, pids: ReadonlyArray<number>, namespaces: ReadonlyMap<number, {pids: ReadonlyArray<number>}>): Map<number, Array<number>> {
  const placed = new Map<number, Array<number>>();
  if (pids.length === 0)
    return placed;
  try {
    if (statfsSync(procRoot).type !== PROC_SUPER_MAGIC)
      return placed;
  } catch {
    return placed;
  }
  const tableInode = (pid: number): number | null => {
    try {
      return statSync(`${procRoot}/${pid}/net/tcp`).ino;
    } catch {
      return null;
    }
  };
  // Each known namespace's table inode, through the first of its processes that answers.
  const namespaceOfTable = new Map<number, number>();
  for (const [netnsInode, ns] of namespaces) {
    for (const pid of ns.pids.slice(0, 3)) {
      const inode = tableInode(pid);
      if (inode !== null) {
        namespaceOfTable.set(inode, netnsInode);
        break;
      }
    }
  }
  for (const pid of pids) {
    const inode = tableInode(pid);
    const netnsInode = inode !== null ? namespaceOfTable.get(inode) : undefined;
    if (netnsInode === undefined)
      continue;
    const list = placed.get(netnsInode);
    if (list)
      list.push(pid);
    else
      placed.set(netnsInode, [pid]);
  }
  return placed;
}

/** The socket inodes in the tables of processes whose ns/net link was refused (and not placed by their table's inode). */
async function socketInodesOf(procRoot: string, pids: Array<number>, namespaces: ReadonlyMap<number, Namespace> | null): Promise<RefusedSockets> {
  const refused: RefusedSockets = {owners: new Map(), toPlace: new Set(), sameTable: new Map()};
  if (namespaces !== null) {
    refused.sameTable = placeByTableInode(procRoot, pids, namespaces);
    const placed = new Set<number>();
    for (const list of refused.sameTable.values()) {
      for (const pid of list) {
        placed.add(pid);
        refused.toPlace.add(pid);
      }
    }
    pids = pids.filter(pid => !placed.has(pid));
  }
  for await (const [pid, read] of mapOrdered(pids, 16, async pid => [pid, readThroughPid(procRoot, pid, null)] as const)) {
    if (read === null)
      continue;
    if (read.failures.length > 0)
      refused.toPlace.add(pid);
    TABLES.forEach((table, i) => {
      const text = read.texts[i];
      if (text === null)
        return;
      netTableInodes(text, table, inode => {
        refused.toPlace.add(pid);
        if (inode === 0)
          return;
        const owners = refused.owners.get(inode);
        if (owners)
          owners.push(pid);
        else
          refused.owners.set(inode, [pid]);
      });
    });
  }
  return refused;
}

/** procfs's f_type (statfs). */
const PROC_SUPER_MAGIC = 0x9fa0;

/**
 * The inode of the network namespace this process is in, when `procRoot` is a live procfs (the
 * host's, or /host/proc in a container: `self` there is still this process); null for a fixture
 * tree, whose made-up inodes must not be taken for ours.
 */
function ownNetnsInode(procRoot: string): number | null {
  try {
    if (statfsSync(procRoot).type !== PROC_SUPER_MAGIC)
      return null;
    return parseNsLink(readlinkSync(`${procRoot}/self/ns/net`));
  } catch {
    return null;
  }
}

/** How the netns record names tables read through NETLINK_SOCK_DIAG. */
const SOCK_DIAG_VIA = `sock-diag`;

/** Our own namespace's tables through NETLINK_SOCK_DIAG; null without the FFI. A table it could not read is said at -vv. */
function readThroughSockDiag(ctx: ToolContext, netnsInode: number): Array<DiagTable> | null {
  const sys = ctx.syscalls();
  if (`unavailable` in sys) {
    ctx.log.debug(`netns ${netnsInode} (ours): tables read from /proc text: ${sys.unavailable}`);
    return null;
  }
  const tables = readOwnTables(sys, netnsInode);
  TABLES.forEach((table, i) => {
    if (typeof tables[i] === `string`)
      ctx.log.debug(`netns ${netnsInode} (ours): ${table.name} not read through NETLINK_SOCK_DIAG (${tables[i] as string}): read from its /proc text`);
  });
  return tables;
}

async function readNamespace(ctx: ToolContext, procRoot: string, ns: Namespace, refused: RefusedSockets, ours: boolean): Promise<{record: NetnsRecord, sockets: Array<SocketRecord>, matchedPids: Array<number>}> {
  const problems = [...ns.problems];
  // The FFI module being made ready off this thread: the other namespaces are read meanwhile.
  if (ours)
    await ctx.syscalls.prepared?.();
  const diag = ours ? readThroughSockDiag(ctx, ns.netnsInode) : null;
  // The tables to read as text: all, or those NETLINK_SOCK_DIAG did not give.
  const need = TABLES.map((_, i) => diag === null || typeof diag[i] === `string`);
  let best: TableRead | null = need.some(Boolean) ? null : {via: SOCK_DIAG_VIA, fileOf: table => `NETLINK_SOCK_DIAG ${table.name}`, texts: TABLES.map(() => null), failures: []};
  const better = (read: TableRead) => {
    if (!best || read.texts.filter(text => text !== null).length > best.texts.filter(text => text !== null).length)
      best = read;
  };
  let vanished = 0;
  let partialTries = 0;
  for (const pid of best === null ? ns.pids : []) {
    if (best !== null && ++partialTries > EXTRA_TRIES)
      break;
    const read = readThroughPid(procRoot, pid, ns.netnsInode, need);
    if (read === null) {
      vanished++;
      continue;
    }
    if (read.failures.length === 0) {
      best = read;
      break;
    }
    ctx.log.info(`netns ${ns.netnsInode}: ${read.failures.join(`; `)}; trying another way in`);
    better(read);
  }
  if (ns.captureDir !== null && (best === null || (best as TableRead).failures.length > 0))
    better(await readCaptureDir(ns));
  for (const path of ns.enterPaths) {
    if (best !== null && (best as TableRead).failures.length === 0)
      break;
    const read = await readEntering(ctx, path, ns.netnsInode);
    if (read.texts.every(text => text === null) && read.failures.length > 0)
      problems.push(...read.failures);
    better(read);
  }

  const chosen = best as TableRead | null;
  const sockets: Array<SocketRecord> = [];
  const matched = new Set<number>();
  // /proc/net/tcp is not one atomic snapshot: the kernel walks its hash tables over several read()
  // calls, so a socket that moves while we read can be listed twice. One row per socket inode
  // (the later row wins: it is the newer state); inode 0 (TIME_WAIT, SYN_RECV) has no identity.
  const rowOfInode = new Map<number, number>();
  const keep = (socket: SocketRecord): boolean => {
    if (socket.inode === 0)
      return true;
    const row = rowOfInode.get(socket.inode);
    if (row === undefined) {
      rowOfInode.set(socket.inode, sockets.length);
      return true;
    }
    sockets[row] = socket;
    return false;
  };
  const emit = refused.owners.size === 0
    ? (socket: SocketRecord) => { if (keep(socket)) sockets.push(socket); }
    : (socket: SocketRecord) => {
      if (keep(socket))
        sockets.push(socket);
      const owners = socket.inode !== 0 ? refused.owners.get(socket.inode) : undefined;
      if (owners)
        for (const pid of owners)
          matched.add(pid);
    };
  let complete = chosen !== null && chosen.failures.length === 0;
  if (chosen === null) {
    const why = ns.pids.length > 0 ? `its ${ns.pids.length} process(es) vanished or could not be read` : `no process is in it`;
    problems.push(`tables not read: ${why}${ns.enterPaths.length === 0 ? ` and no bind mount could be entered` : ``}`);
  } else {
    problems.push(...chosen.failures);
    TABLES.forEach((table, i) => {
      const listed = diag?.[i];
      if (listed !== undefined && typeof listed !== `string`) {
        for (const socket of listed)
          emit(socket);
        return;
      }
      const text = chosen.texts[i];
      if (text === null)
        return;
      const outcome = parseNetTable(text, table, ns.netnsInode, emit);
      if (outcome.badCount === 0)
        return;
      complete = false;
      const file = chosen.fileOf(table);
      for (const bad of outcome.bad)
        ctx.log.warn(`${file}:${bad.line}: malformed row skipped (${bad.reason}): ${bad.text}`);
      if (outcome.badCount > outcome.bad.length)
        ctx.log.warn(`${file}: ${outcome.badCount - outcome.bad.length} more malformed rows skipped`);
      problems.push(`net/${table.name}: ${outcome.badCount} malformed row(s) skipped, first at line ${outcome.bad[0].line}`);
    });
  }
  if (chosen !== null && chosen.failures.length > 0)
    ctx.log.warn(`netns ${ns.netnsInode} is incomplete: ${chosen.failures.join(`; `)}`);
  else if (chosen === null)
    ctx.log.warn(`netns ${ns.netnsInode}: ${problems.join(`; `)}`);
  if (vanished > 0)
    ctx.log.debug(`netns ${ns.netnsInode}: ${vanished} process(es) vanished or had no net/ files`);

  const foundBy: NetnsRecord[`foundBy`] = [];
  if (ns.pids.length > 0)
    foundBy.push(`process`);
  if (ns.foundByMount)
    foundBy.push(`bind-mount`);
  const record: NetnsRecord = {
    type: `netns`,
    v: SCHEMA_VERSION,
    netnsInode: ns.netnsInode,
    foundBy,
    // Only processes whose link names it: a capture (which has no link for a refused process)
    // then gives the same record as the live run.
    pids: ns.pids.slice(0, PIDS_LISTED),
    paths: ns.paths,
    readVia: chosen?.via ?? null,
    complete,
  };
  if (problems.length > 0)
    record.problems = problems;
  // Processes placed here by their table's inode: placed once the tables are read; named as
  // holding sockets when there are any (their tables are these).
  const sameTable = chosen !== null ? refused.sameTable.get(ns.netnsInode) ?? [] : [];
  if (sameTable.length > 0 && sockets.some(socket => socket.inode !== 0)) {
    for (const pid of sameTable)
      matched.add(pid);
  }
  if (matched.size > 0)
    ctx.log.info(`netns ${ns.netnsInode}: holds the sockets of process(es) ${[...matched].join(`, `)}, whose ns/net link is unreadable`);
  return {record, sockets, matchedPids: [...matched, ...sameTable]};
}

const ALL_TABLES = TABLES.map(() => true);

/**
 * The four tables (those `need` says) through /proc/PID/net. Null when the process is gone (every
 * file missing, as for the processes of a capture that were not chosen to carry net/), or when it
 * is no longer in the namespace afterwards (it moved, or its pid was reused). Synchronous: procfs
 * hands a table out a page per read(), and a thread-pool round trip per page cost more than the page.
 */
function readThroughPid(procRoot: string, pid: number, netnsInode: number | null, need: ReadonlyArray<boolean> = ALL_TABLES): TableRead | null {
  const dir = `${procRoot}/${pid}/net`;
  const texts: Array<string | null> = [null, null, null, null];
  const errors: Array<string | null> = [null, null, null, null];
  let missing = TABLES.length - need.filter(Boolean).length;
  TABLES.forEach((table, i) => {
    if (!need[i])
      return;
    try {
      texts[i] = readBoundedTextSync(`${dir}/${table.name}`, `latin1`);
    } catch (err) {
      if (isVanished(err))
        missing++;
      errors[i] = errnoOf(err);
    }
  });
  if (missing === TABLES.length)
    return null;
  if (netnsInode !== null) {
    const after = readNetnsLinkSync(procRoot, pid);
    if (`inode` in after && after.inode !== netnsInode)
      return null;
  }
  const failures: Array<string> = [];
  TABLES.forEach((table, i) => {
    if (errors[i] !== null)
      failures.push(`cannot read ${dir}/${table.name}: ${errors[i]}`);
  });
  return {via: `proc-pid:${pid}`, fileOf: table => `${dir}/${table.name}`, texts, failures};
}

async function readCaptureDir(ns: Namespace): Promise<TableRead> {
  const dir = ns.captureDir!;
  const texts: Array<string | null> = [null, null, null, null];
  const failures: Array<string> = [];
  await Promise.all(TABLES.map(async (table, i) => {
    try {
      texts[i] = await readBoundedText(`${dir}/${table.name}`, `latin1`);
    } catch (err) {
      failures[i] = `cannot read ${dir}/${table.name}: ${errnoOf(err)}`;
    }
  }));
  // Same readVia as the live run the capture stands for.
  const via = ns.paths.length > 0 ? `nsenter:${ns.paths[0]}` : `capture:netns/${ns.netnsInode}`;
  return {via, fileOf: table => `${dir}/${table.name}`, texts, failures: failures.filter(Boolean)};
}

/** Enters the namespace at `path`: setns() in a worker thread, or nsenter when there is no FFI. */
async function readEntering(ctx: ToolContext, path: string, netnsInode: number): Promise<TableRead> {
  const sys = ctx.syscalls();
  if (`unavailable` in sys) {
    ctx.log.debug(`entering ${path} with nsenter: ${sys.unavailable}`);
    return readThroughNsenter(ctx, path);
  }
  const via = `setns:${path}`;
  const read = await readInNetns(sys, ctx.tmpDir, path, netnsInode, TABLES.map(table => table.name), NSENTER_TIMEOUT_MS);
  const failures: Array<string> = [];
  if (read.error !== undefined) {
    failures.push(read.error);
  } else {
    TABLES.forEach((table, i) => {
      if (read.texts[i] === null)
        failures.push(`cannot read /proc/thread-self/net/${table.name} inside ${path}`);
    });
  }
  return {via, fileOf: table => `${via} /proc/thread-self/net/${table.name}`, texts: read.texts, failures};
}

/** Where nsenter is when it is not on PATH (util-linux puts it in /usr/bin, older systems in /bin or sbin). */
const NSENTER_DIRS = [`/usr/bin`, `/bin`, `/usr/sbin`, `/sbin`];

async function findNsenter(ctx: ToolContext): Promise<string | null> {
  const [found] = await findTrusted(ctx, `nsenter`, {last: NSENTER_DIRS});
  return found ?? null;
}

const MARK = `\n@@usmld`;
// One child for all four tables; a marker line before each, a failure marker when cat fails.
// `$0` is the trusted cat's path (no PATH lookup inside the namespace's shell).
const NSENTER_SCRIPT = `for t in ${TABLES.map(table => table.name).join(` `)}; do printf '${MARK.replace(`\n`, `\\n`)} %s\\n' "$t"; "$0" "/proc/self/net/$t" 2>/dev/null || printf '${MARK.replace(`\n`, `\\n`)}-failed %s\\n' "$t"; done`;

/** The four tables of a namespace no process is in: `nsenter --net=PATH`, then cat /proc/self/net/*. */
async function readThroughNsenter(ctx: ToolContext, path: string): Promise<TableRead> {
  const texts: Array<string | null> = [null, null, null, null];
  const via = `nsenter:${path}`;
  const fileOf = (table: TableSpec) => `${via} /proc/self/net/${table.name}`;
  const nsenter = await findNsenter(ctx);
  if (nsenter === null)
    return {via, fileOf, texts, failures: [`cannot enter ${path}: no FFI for setns() and no nsenter (looked on PATH and in ${NSENTER_DIRS.join(`, `)})`]};
  let stdout: string;
  try {
    const [sh, cat] = [await trustedCommand(ctx, `sh`, {last: NSENTER_DIRS}), await trustedCommand(ctx, `cat`, {last: NSENTER_DIRS})];
    const result = await ctx.runner.run(nsenter, [`--net=${path}`, sh, `-c`, NSENTER_SCRIPT, cat], {timeoutMs: NSENTER_TIMEOUT_MS});
    stdout = result.stdout;
    if (!stdout.includes(MARK)) {
      const why = result.timedOut ? `timed out` : (result.stderr.trim().split(`\n`)[0] || `exit code ${result.exitCode}`);
      return {via, fileOf, texts, failures: [`nsenter --net=${path} failed: ${why}`]};
    }
  } catch (err) {
    return {via, fileOf, texts, failures: [`nsenter --net=${path} failed: ${errorMessage(err)}`]};
  }
  const failed = new Set<string>();
  for (const chunk of stdout.split(MARK)) {
    const newline = chunk.indexOf(`\n`);
    if (newline < 0)
      continue;
    const head = chunk.slice(0, newline);
    if (head.startsWith(`-failed `)) {
      failed.add(head.slice(8));
      continue;
    }
    const index = TABLES.findIndex(table => table.name === head.slice(1));
    if (head.startsWith(` `) && index >= 0)
      texts[index] = chunk.slice(newline + 1);
  }
  const failures: Array<string> = [];
  TABLES.forEach((table, i) => {
    if (failed.has(table.name) || texts[i] === null) {
      texts[i] = null;
      failures.push(`cannot read /proc/self/net/${table.name} inside ${path}`);
    }
  });
  return {via, fileOf, texts, failures};
}
