// The rules that turn one map entry plus a snapshot into a verdict. README "Verdict reasons"
// documents each outcome; the tests in test/validate-rules.test.ts pin every rule down.
import {isWildcard} from '../addr.ts';
import {LeanTuple} from '../dump/decode.ts';
import type {ConnTupleKey, EntryFields, Match, PidFdKey, PidTgidKey, ProcessRecord, Reason, VerdictStatus} from '../schema.ts';
import {foldMapped, type Found, type SnapshotIndex} from './snapshotIndex.ts';

export type Owner = {pid: number, comm: string | null};

export interface Judgement {
  status: VerdictStatus;
  reason: Reason;
  match?: Match;
  owner?: Owner;
  /** The JSON text of `match` when the index had it at hand (the verdict's writer uses it). */
  matchText?: string;
}

/**
 * A judgement, every field present (undefined when it has none): judgements of every kind of
 * entry then share one object shape, and the code that reads them stays optimised across maps.
 * One object, written again by the next judgement (not one per entry): judgeEntry's callers read
 * it at once, and a rule that judges twice (judgePidFd) reads the first before the second.
 */
function judged(status: VerdictStatus, reason: Reason, match?: Match, owner?: Owner, matchText?: string): Judgement {
  const judgement = JUDGEMENT;
  judgement.status = status;
  judgement.reason = reason;
  judgement.match = match;
  judgement.owner = owner;
  judgement.matchText = matchText;
  return judgement;
}
const JUDGEMENT: Judgement = {status: `unknown`, reason: `no_snapshot`, match: undefined, owner: undefined, matchText: undefined};

/** A judgement of its own (not JUDGEMENT): the constant ones below, returned as they are. */
function constantJudgement(status: VerdictStatus, reason: Reason): Judgement {
  return {status, reason, match: undefined, owner: undefined, matchText: undefined};
}

/**
 * Judges one entry. `mapProblem` is the `problem` of its map record, when it has one; `readNs`
 * its `monotonicNs` (when the map was read), which dates entries that carry `ageSeconds`. The
 * judgement returned is valid until the next one is made (see judged): read it at once.
 */
export function judgeEntry(entry: EntryFields, index: SnapshotIndex, mapProblem?: string, readNs?: number): Judgement {
  if (mapProblem !== undefined)
    return judged(`unknown`, `map_problem`);
  const key = entry.key;
  if (key === null || key === undefined)
    return judged(`unknown`, `undecodable_key`);
  let judgement: Judgement;
  switch (key.kind) {
    case `pid_tgid`:
      judgement = judgePidTgid(key, index, key.extra !== undefined);
      break;
    case `pid_fd`:
      judgement = judgePidFd(key, entry.valueTuple, index);
      break;
    case `pid_goroutine`:
      judgement = judgeProcess(key.pid, index);
      break;
    case `pointer`:
      // The key is an address in some process: the tuple in the value is what can be checked.
      judgement = entry.valueTuple === undefined ? judged(`unknown`, `undecodable_key`) : judgeValueTuple(entry.valueTuple, index);
      break;
    default:
      judgement = judgeTuple(key, index);
  }
  if (judgement.status === `leaked` && entry.ageSeconds !== undefined && readNs !== undefined
    && updatedAfterSnapshot(entry.ageSeconds, readNs, key.kind === `conn_tuple` || key.kind === `pointer` ? index.connsMonotonicNs : index.pidsMonotonicNs)) {
    // Without a match or an owner, one shared judgement says it (a quarter of the bench's entries).
    if (judgement.match === undefined && judgement.owner === undefined && judgement.matchText === undefined)
      return UNKNOWN_UPDATED_AFTER_SNAPSHOT;
    return judged(`unknown`, `updated_after_snapshot`, judgement.match, judgement.owner, judgement.matchText);
  }
  return judgement;
}

/**
 * An entry whose value was written after the snapshot was taken (both CLOCK_MONOTONIC) saw
 * traffic the snapshot cannot know about: it cannot be called leaked from that snapshot.
 * `snapshotNs`: the snapshot's monotonicNs, when it has one.
 */
function updatedAfterSnapshot(ageSeconds: number, readNs: number, snapshotNs: number | undefined): boolean {
  if (snapshotNs === undefined)
    return false;
  return readNs - ageSeconds * 1e9 > snapshotNs;
}

/** A tuple from a value: ports 0 (a socket not yet connected when it was stored) cannot be looked up. */
function judgeValueTuple(tuple: ConnTupleKey, index: SnapshotIndex): Judgement {
  if (tuple.sport === 0 || tuple.dport === 0)
    return judged(`unknown`, `incomplete_value_tuple`, undefined, tuple.pid === 0 ? undefined : ownerOf(index, tuple.pid));
  return judgeTuple(tuple, index);
}

// Scratch for the socket searches: one object reused across entries instead of one per lookup
// (safe: judging is synchronous, and the results are read before the next search).
const found: Found = {match: null, elsewhere: null, matchText: null};

/** Wildcard addresses a socket could listen on and still take traffic for `address`. */
function wildcardsFor(address: string): ReadonlyArray<string> {
  // A `::` socket is dual-stack unless IPV6_V6ONLY (which /proc does not show): it takes IPv4 too.
  return address.includes(`:`) ? V6_WILDCARDS : V4_WILDCARDS;
}
const V4_WILDCARDS = [`0.0.0.0`, `::`];
const V6_WILDCARDS = [`::`];

function searchBound(index: SnapshotIndex, proto: string, address: string, port: number, netns: number): Reason | null {
  const udp = proto === `udp`;
  if (index.bound.search(found, udp, address, port, ``, 0, netns))
    return proto === `tcp` ? `listening` : `bound`;
  for (const wildcard of wildcardsFor(address)) {
    if (wildcard !== address && index.bound.search(found, udp, wildcard, port, ``, 0, netns))
      return proto === `tcp` ? `listening_wildcard` : `bound`;
  }
  return null;
}

/** Finds the socket behind a tuple, in either direction; returns the alive reason or null. */
function findSocket(index: SnapshotIndex, key: ConnTupleKey, saddr: string, daddr: string, netns: number, listener: boolean): Reason | null {
  const proto = key.proto;
  if (listener)
    return searchBound(index, proto, saddr, key.sport, netns);
  // Maps keep tuples client→server (normalised) or in packet direction; /proc lists local→remote.
  // The index holds every connection both ways round, so one lookup covers both directions.
  if (index.connections.search(found, proto === `udp`, saddr, key.sport, daddr, key.dport, netns))
    return `established`;
  // An unconnected UDP socket takes datagrams from anyone: the tuple's local side may be either end.
  if (proto === `udp`)
    return searchBound(index, proto, saddr, key.sport, netns) ?? searchBound(index, proto, daddr, key.dport, netns);
  return null;
}

/**
 * searchBound() for an address given as its code (AddressIds; -1: an IPv6 address no socket
 * has): the same searches (the address, then `0.0.0.0` for an IPv4 one, and `::`), by number.
 */
function searchBoundCode(index: SnapshotIndex, proto: string, address: number, port: number, netns: number): Reason | null {
  const udp = proto === `udp`;
  const bound = index.bound;
  if (bound.searchBoundCode(found, udp, address, port, netns))
    return proto === `tcp` ? `listening` : `bound`;
  const anyV6 = index.addresses.anyV6;
  // Codes of IPv4 addresses are their numbers (below 2^32); 0 is 0.0.0.0.
  const v4 = address >= 0 && address < 0x100000000;
  if ((v4 && address !== 0 && bound.searchBoundCode(found, udp, 0, port, netns)) || (anyV6 !== address && bound.searchBoundCode(found, udp, anyV6, port, netns)))
    return proto === `tcp` ? `listening_wildcard` : `bound`;
  return null;
}

/** findSocket() for a LeanTuple, its addresses given as their codes (no text made). */
function findSocketByCode(index: SnapshotIndex, key: LeanTuple, saddr: number, daddr: number, netns: number, listener: boolean): Reason | null {
  const proto = key.proto;
  if (listener)
    return searchBoundCode(index, proto, saddr, key.sport, netns);
  if (index.connections.searchCodes(found, proto === `udp`, saddr, key.sport, daddr, key.dport, netns))
    return `established`;
  if (proto === `udp`)
    return searchBoundCode(index, proto, saddr, key.sport, netns) ?? searchBoundCode(index, proto, daddr, key.dport, netns);
  return null;
}

/** The IPv6 address of the 4 words at words[at] is `::` or `::ffff:0.0.0.0` (0.0.0.0 once folded). */
const isWildcardWords = (words: ReadonlyArray<number>, at: number) =>
  words[at] === 0 && words[at + 1] === 0 && (words[at + 2] === 0 || words[at + 2] === 0xffff) && words[at + 3] === 0;

export function judgeTuple(key: ConnTupleKey, index: SnapshotIndex): Judgement {
  const owner = key.pid === 0 ? undefined : ownerOf(index, key.pid);
  if (!index.hasConns)
    return judged(`unknown`, `no_snapshot`, undefined, owner);
  const netns = key.netns;
  found.match = null;
  found.elsewhere = null;
  found.matchText = null;
  let listener = false;
  let alive: Reason | null;
  if (key instanceof LeanTuple) {
    // By number: an IPv4 address's own (unsigned), an IPv6 one's code (folded when IPv4-mapped).
    const words = key.v6Words;
    const saddr = words === null ? key.saddrV4 >>> 0 : index.addresses.codeOfWords(words, 0);
    const daddr = words === null ? key.daddrV4 >>> 0 : index.addresses.codeOfWords(words, 4);
    listener = key.dport === 0 && (words === null ? daddr === 0 : isWildcardWords(words, 4));
    alive = findSocketByCode(index, key, saddr, daddr, netns, listener);
  } else {
    const saddr = foldMapped(key.saddr);
    const daddr = foldMapped(key.daddr);
    listener = key.dport === 0 && isWildcard(daddr);
    alive = findSocket(index, key, saddr, daddr, netns, listener);
  }
  if (alive !== null)
    return judged(`alive`, alive, found.match!, owner, found.matchText ?? undefined);
  const elsewhere = found.elsewhere ?? undefined;
  if (netns === 0) {
    // A miss counts only if every namespace could be read.
    if (index.incompleteNamespaces > 0 || index.conns?.complete === false)
      return judged(`unknown`, `namespace_unreadable`, undefined, owner);
    if (owner === undefined)
      return listener ? LEAKED_NO_LISTENER : LEAKED_NO_CONNECTION_ANY_NAMESPACE;
    return judged(`leaked`, listener ? `no_listener` : `no_connection_any_namespace`, undefined, owner);
  }
  const namespace = index.namespaces.get(netns);
  if (namespace === undefined) {
    if (index.conns?.complete === false)
      return judged(`unknown`, `namespace_unreadable`, undefined, owner);
    return judged(`leaked`, `unknown_namespace`, elsewhere, owner);
  }
  if (!namespace.complete)
    return judged(`unknown`, `namespace_unreadable`, elsewhere, owner);
  if (elsewhere !== undefined)
    return judged(`leaked`, `wrong_namespace`, elsewhere, owner);
  if (owner === undefined)
    return listener ? LEAKED_NO_LISTENER : LEAKED_NO_CONNECTION;
  return judged(`leaked`, listener ? `no_listener` : `no_connection`, undefined, owner);
}

// The commonest judgements of a tuple without a pid, one object each (not one per entry): a
// judgement is only ever read (not frozen: a frozen object has a shape of its own).
const LEAKED_NO_LISTENER: Judgement = constantJudgement(`leaked`, `no_listener`);
const LEAKED_NO_CONNECTION: Judgement = constantJudgement(`leaked`, `no_connection`);
const LEAKED_NO_CONNECTION_ANY_NAMESPACE: Judgement = constantJudgement(`leaked`, `no_connection_any_namespace`);
const UNKNOWN_UPDATED_AFTER_SNAPSHOT: Judgement = constantJudgement(`unknown`, `updated_after_snapshot`);

// One process match per pid and snapshot (kept by the index), like owners below: made and
// stringified once, not once per verdict. Verdicts never modify it.
function processMatchOf(index: SnapshotIndex, process: ProcessRecord): Match {
  let match = index.processMatches.get(process.pid);
  if (match === undefined) {
    match = {process: {pid: process.pid, comm: process.comm, state: process.state}};
    index.processMatches.set(process.pid, match);
  }
  return match;
}

// One owner object per pid and snapshot (kept by the index), shared by every verdict of that pid
// (a busy process owns thousands of entries): less garbage on the hot path. Verdicts never modify it.
function ownerOf(index: SnapshotIndex, pid: number): Owner {
  const byPid = index.owners;
  let owner = byPid.get(pid);
  if (owner === undefined) {
    owner = {pid, comm: index.processes.get(pid)?.comm ?? null};
    byPid.set(pid, owner);
  }
  return owner;
}

// Threads of big processes, as sets: a JVM with 2000 threads and 60k entries must not be 60k scans.
const threadSets = new WeakMap<ProcessRecord, Set<number>>();

function hasThread(process: ProcessRecord, tid: number): boolean {
  const tids = process.tids;
  if (tids.length <= 16)
    return tids.includes(tid);
  let set = threadSets.get(process);
  if (set === undefined) {
    set = new Set(tids);
    threadSets.set(process, set);
  }
  return set.has(tid);
}

/**
 * A pid_tgid key: the thread must exist (its process, with `processLevel`: ssl_sock_by_ctx's
 * key names the thread that set the context up, and the agent's own cleaner checks the process).
 */
export function judgePidTgid(key: PidTgidKey, index: SnapshotIndex, processLevel = false): Judgement {
  if (processLevel)
    return judgeProcess(key.tgid, index);
  if (!index.hasPids)
    return judged(`unknown`, `no_snapshot`, undefined, {pid: key.tgid, comm: null});
  const process = index.processes.get(key.tgid);
  // `X` (dead) is only ever seen mid-teardown: as gone as a missing pid.
  if (process === undefined || process.state === `X`)
    return judged(`leaked`, `process_gone`, undefined, {pid: key.tgid, comm: null});
  const owner = ownerOf(index, key.tgid);
  const match = processMatchOf(index, process);
  if (process.state === `Z`) {
    // The stat state is the leader's. A leader that called pthread_exit is `Z` while its other
    // threads run on: the process is alive then, only the leader's own thread is gone.
    const othersAlive = process.tids.some(tid => tid !== process.pid);
    if (!othersAlive)
      return judged(`leaked`, `zombie`, match, owner);
    if (key.tid === process.pid || !hasThread(process, key.tid))
      return judged(`leaked`, `thread_gone`, match, owner);
    return judged(`alive`, `thread_alive`, match, owner);
  }
  // No thread list (task/ unreadable): the process is all we can vouch for.
  if (process.tids.length === 0)
    return judged(`alive`, `process_alive`, match, owner);
  if (!hasThread(process, key.tid))
    return judged(`leaked`, `thread_gone`, match, owner);
  return judged(`alive`, `thread_alive`, match, owner);
}

/** The process must exist (go_tls_*_args: a goroutine id cannot be checked from outside). */
export function judgeProcess(pid: number, index: SnapshotIndex): Judgement {
  if (!index.hasPids)
    return judged(`unknown`, `no_snapshot`, undefined, {pid, comm: null});
  const process = index.processes.get(pid);
  if (process === undefined || process.state === `X`)
    return judged(`leaked`, `process_gone`, undefined, {pid, comm: null});
  const owner = ownerOf(index, pid);
  const match = processMatchOf(index, process);
  // A zombie leader with no other thread: the process has exited.
  if (process.state === `Z` && !process.tids.some(tid => tid !== process.pid))
    return judged(`leaked`, `zombie`, match, owner);
  return judged(`alive`, `process_alive`, match, owner);
}

/**
 * pid_fd_t {pid, fd}: /proc/PID/fd/FD must be a socket; when the value holds the tuple and the
 * socket snapshot has it, that socket's inode must be the fd's (else the fd number was reused).
 */
export function judgePidFd(key: PidFdKey, tuple: ConnTupleKey | undefined, index: SnapshotIndex): Judgement {
  const processJudgement = judgeProcess(key.pid, index);
  if (processJudgement.status !== `alive`)
    return processJudgement;
  // Read now: judgeTuple below writes the same judgement object.
  const alive = {match: processJudgement.match, owner: processJudgement.owner};
  const process = index.processes.get(key.pid)!;
  if (process.socketFds === undefined)
    return judged(`unknown`, `no_fd_snapshot`, alive.match, alive.owner);
  let inode = -1;
  for (const [fd, socketInode] of process.socketFds) {
    if (fd === key.fd) {
      inode = socketInode;
      break;
    }
  }
  if (inode < 0)
    return judged(`leaked`, `fd_closed`, alive.match, alive.owner);
  if (tuple !== undefined && index.hasConns && tuple.sport !== 0) {
    const bySocket = judgeTuple(tuple, index);
    const socket = bySocket.match?.socket;
    const socketNetns = bySocket.match?.netnsInode;
    // The tuple's socket is listed with another inode, or not at all while the fd is a socket: reused.
    if (bySocket.status === `leaked` || (socket !== undefined && socket.inode !== 0 && socket.inode !== inode))
      return judged(`leaked`, `fd_reused`, socket === undefined ? alive.match : {process: alive.match!.process, socket, netnsInode: socketNetns}, alive.owner);
    if (socket !== undefined)
      return judged(`alive`, `fd_socket`, {process: alive.match!.process, socket, netnsInode: socketNetns}, alive.owner);
  }
  return judged(`alive`, `fd_socket`, alive.match, alive.owner);
}
