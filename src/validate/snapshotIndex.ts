// The evidence validate and recheck judge entries against: every socket of every namespace and
// every process, indexed once so that each entry costs a few hash lookups, whatever the number of
// namespaces (the original tool walked every namespace for each netns-0 tuple).
import {NumberMap} from '../numberMap.ts';
import type {AnyRecord, Match, NetnsRecord, ProcessRecord, SnapshotRecord, SocketRecord} from '../schema.ts';
import {Ascii} from '../ascii.ts';
import {parseIPv6Words} from '../addr.ts';
import {jsonOf} from './serialize.ts';

export const SNAPSHOT_RECORD_TYPES: ReadonlySet<string> = new Set([`netns`, `socket`, `process`, `snapshot`]);

/**
 * Folds an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, as formatIPv6 prints it) to `a.b.c.d`,
 * the way the eBPF side and snapshot-conns both do. Anything else comes back unchanged (and
 * unallocated: this runs for every address of every entry).
 */
export function foldMapped(address: string): string {
  // `::ffff:` is 7 characters; a dotted quad has at least 7 more.
  if (address.length >= 14 && address.charCodeAt(0) === Ascii.Colon && address.startsWith(`::ffff:`) && address.indexOf(`.`, 7) > 0)
    return address.slice(7);
  return address;
}

/** One socket filed under one key: the key's fields (addresses folded) and the socket's match. */
interface Slot {
  readonly hash: number;
  readonly udp: boolean;
  readonly laddr: string;
  readonly lport: number;
  readonly raddr: string;
  readonly rport: number;
  /** The match's namespace, here so that a lookup does not read the match it does not take. */
  readonly netns: number;
  readonly match: Match;
  /** The next slot of the same bucket: other keys, or the same key in other namespaces. */
  next: Slot | null;
}

/** Where search() puts what it found: reused across entries instead of one object per lookup. */
export interface Found {
  /** A socket with the key in the namespace asked for (any namespace when 0). */
  match: Match | null;
  /** Else the first socket with the key in another namespace. */
  elsewhere: Match | null;
  /** The JSON text of `match` (jsonOf) when the table had it at hand, else null. */
  matchText: string | null;
}

/**
 * Sockets by (proto, local address, local port, remote address, remote port). Keys are hashed to a
 * small integer from the fields themselves, so a lookup builds no string (the index keyed by
 * `proto|laddr|lport|raddr|rport` strings spent more time making and hashing the key than
 * anything else per entry), and the hash picks a bucket of an array (a Map keyed by the hash
 * cost a lookup in its own tables on top); slots of one bucket are chained and compared field by
 * field. Sockets of one key keep the order they were filed in (first(): ahead of the others,
 * last(): after).
 *
 * Keys whose addresses are both canonical dotted quads (or a bound socket's empty remote side:
 * nearly every key) are filed in V4Keys instead, a flat table of numbers: a lookup there reads one
 * cell, where the chain walk read a slot and both of its address strings, each a cache miss in an
 * index of a few hundred thousand sockets. The two sets of keys are disjoint (a key's addresses
 * decide its table), so every key is in exactly one of them.
 */
export class SocketTable {
  private buckets: Array<Slot | null> = new Array<Slot | null>(1024).fill(null);
  private mask = 1023;
  private readonly v4: V4Keys;

  /** `matchTexts`: a search hands over the found match's JSON text too (for the verdict's writer). */
  constructor(matchTexts = true) {
    this.v4 = new V4Keys(matchTexts);
  }
  size = 0;

  /** Files a socket ahead of the key's earlier ones (the one a search finds first). */
  first(udp: boolean, laddr: string, lport: number, raddr: string, rport: number, match: Match): void {
    this.file(true, udp, laddr, lport, raddr, rport, match);
  }

  /** Files a socket after the key's earlier ones. */
  last(udp: boolean, laddr: string, lport: number, raddr: string, rport: number, match: Match): void {
    this.file(false, udp, laddr, lport, raddr, rport, match);
  }

  private file(first: boolean, udp: boolean, laddr: string, lport: number, raddr: string, rport: number, match: Match): void {
    const local = v4Code(laddr);
    const remote = local < 0 ? -1 : v4Code(raddr);
    if (remote >= 0 && isPort(lport) && isPort(rport)) {
      this.v4.file(first, udp, local, lport, remote, rport, match);
      return;
    }
    const hash = tupleHash(udp, laddr, lport, raddr, rport);
    const slot: Slot = {hash, udp, laddr, lport, raddr, rport, netns: match.netnsInode ?? 0, match, next: null};
    if (first) {
      const bucket = hash & this.mask;
      slot.next = this.buckets[bucket];
      this.buckets[bucket] = slot;
    } else {
      this.append(slot);
    }
    this.added();
  }

  private append(slot: Slot): void {
    const bucket = slot.hash & this.mask;
    let tail = this.buckets[bucket];
    if (tail === null) {
      this.buckets[bucket] = slot;
      return;
    }
    while (tail.next !== null)
      tail = tail.next;
    tail.next = slot;
  }

  /** Twice the buckets when there are more sockets than buckets; every chain keeps its order. */
  private added(): void {
    this.size += 1;
    if (this.size <= this.buckets.length)
      return;
    const old = this.buckets;
    this.buckets = new Array<Slot | null>(2 * old.length).fill(null);
    this.mask = this.buckets.length - 1;
    for (let slot of old) {
      while (slot !== null) {
        const next = slot.next;
        slot.next = null;
        this.append(slot);
        slot = next;
      }
    }
  }

  /**
   * Looks the key up: the first socket in `netns` (any namespace when 0) goes to found.match and
   * gives true; else the first one elsewhere goes to found.elsewhere (when it is still empty).
   */
  search(found: Found, udp: boolean, laddr: string, lport: number, raddr: string, rport: number, netns: number): boolean {
    const local = v4Code(laddr);
    const remote = local < 0 ? -1 : v4Code(raddr);
    if (remote >= 0 && isPort(lport) && isPort(rport))
      return this.v4.search(found, udp, local, lport, remote, rport, netns);
    const hash = tupleHash(udp, laddr, lport, raddr, rport);
    for (let slot = this.buckets[hash & this.mask]; slot !== null; slot = slot.next) {
      if (slot.hash !== hash || slot.lport !== lport || slot.rport !== rport || slot.udp !== udp || slot.laddr !== laddr || slot.raddr !== raddr)
        continue;
      if (netns === 0 || slot.netns === netns) {
        found.match = slot.match;
        return true;
      }
      found.elsewhere ??= slot.match;
    }
    return false;
  }

  /**
   * search() for two IPv4 addresses given as int32 (as LeanTuple keeps them; a dotted quad's
   * number): the same cell search() reaches from their text.
   */
  searchV4(found: Found, udp: boolean, laddr: number, lport: number, raddr: number, rport: number, netns: number): boolean {
    return this.v4.search(found, udp, laddr, lport, raddr, rport, netns);
  }

  /** searchV4() of a bound socket: the remote side empty (`` and 0). */
  searchBoundV4(found: Found, udp: boolean, laddr: number, lport: number, netns: number): boolean {
    return this.v4.search(found, udp, laddr, lport, EMPTY_ADDRESS, 0, netns);
  }
}

/** A V4Keys cell: [laddr, raddr, lport * 65536 + rport, flags (0: an empty cell), netns of the key's first socket]. */
const CELL = 5;
const FILLED = 1;
const UDP = 2;
const LOCAL_EMPTY = 4;
const REMOTE_EMPTY = 8;
/** The first socket's namespace does not fit the cell (not a 32-bit count): read it from its match. */
const NETNS_ELSEWHERE = 16;
const KEY_FLAGS = FILLED | UDP | LOCAL_EMPTY | REMOTE_EMPTY;

/** A socket of a V4Keys key after its first one, in filing order. */
interface LaterSocket {
  readonly netns: number;
  readonly match: Match;
  next: LaterSocket | null;
}

/**
 * The keys of SocketTable with two dotted-quad (or empty) addresses and two ports, by open
 * addressing (linear probing) in one Uint32Array: a key and the namespace of its first socket sit
 * in one 20-byte cell, so the common lookup (one socket per key, in the namespace asked for or
 * any) touches that cell and the cell's pair in `firsts` (the match and its text). The key's
 * other sockets, when it has any, are a chain of their own in `laters`.
 */
class V4Keys {
  private cells = new Uint32Array(CELL * 1024);
  /**
   * Per cell, side by side (one cache line): the first socket's match, and its JSON text, made on
   * its first lookup. The verdict's writer takes the text from here (the verdict carries it)
   * instead of from the match, one cache miss fewer per verdict.
   */
  private firsts: Array<Match | string | null> = new Array<Match | string | null>(2 * 1024).fill(null);
  private laters: Array<LaterSocket | null> = new Array<LaterSocket | null>(1024).fill(null);
  private mask = 1023;
  private keys = 0;

  constructor(private readonly matchTexts: boolean) {}

  file(first: boolean, udp: boolean, local: number, lport: number, remote: number, rport: number, match: Match): void {
    const netns = match.netnsInode ?? 0;
    const flags = keyFlags(udp, local, remote);
    const at = this.cellOf(flags, local >>> 0, remote >>> 0, lport * 65536 + rport);
    const c = at * CELL;
    const cells = this.cells;
    if (cells[c + 3] === 0) {
      cells[c] = local >>> 0;
      cells[c + 1] = remote >>> 0;
      cells[c + 2] = lport * 65536 + rport;
      this.setFirst(at, match, netns, flags);
      this.keys += 1;
      // At most 3/4 full: a short probe stays within a cache line or two.
      if (4 * this.keys > 3 * this.laters.length)
        this.grow();
      return;
    }
    if (first) {
      // Ahead of the others: the first one so far becomes the first of the later ones.
      const before = this.firsts[2 * at] as Match;
      this.laters[at] = {netns: before.netnsInode ?? 0, match: before, next: this.laters[at]};
      this.setFirst(at, match, netns, flags);
      return;
    }
    const later: LaterSocket = {netns, match, next: null};
    let tail = this.laters[at];
    if (tail === null) {
      this.laters[at] = later;
      return;
    }
    while (tail.next !== null)
      tail = tail.next;
    tail.next = later;
  }

  private setFirst(at: number, match: Match, netns: number, flags: number): void {
    const exact = Number.isInteger(netns) && netns >= 0 && netns <= 0xffffffff;
    this.cells[at * CELL + 3] = flags | (exact ? 0 : NETNS_ELSEWHERE);
    this.cells[at * CELL + 4] = exact ? netns : 0;
    this.firsts[2 * at] = match;
    this.firsts[2 * at + 1] = null;
  }

  search(found: Found, udp: boolean, local: number, lport: number, remote: number, rport: number, netns: number): boolean {
    const at = this.cellOf(keyFlags(udp, local, remote), local >>> 0, remote >>> 0, lport * 65536 + rport);
    const c = at * CELL;
    const cells = this.cells;
    const flags = cells[c + 3];
    if (flags === 0)
      return false;
    const firsts = this.firsts;
    const match = firsts[2 * at] as Match;
    if (netns === 0 || ((flags & NETNS_ELSEWHERE) === 0 ? cells[c + 4] === netns : (match.netnsInode ?? 0) === netns)) {
      found.match = match;
      if (this.matchTexts)
        found.matchText = (firsts[2 * at + 1] ??= jsonOf(match)) as string;
      return true;
    }
    found.elsewhere ??= match;
    for (let later = this.laters[at]; later !== null; later = later.next) {
      if (later.netns === netns) {
        found.match = later.match;
        return true;
      }
    }
    return false;
  }

  /** The key's cell, or the empty cell where it goes. */
  private cellOf(flags: number, local: number, remote: number, ports: number): number {
    const cells = this.cells;
    const mask = this.mask;
    let at = cellHash(flags, local, remote, ports) & mask;
    for (;;) {
      const c = at * CELL;
      const filled = cells[c + 3];
      if (filled === 0 || (cells[c] === local && cells[c + 1] === remote && cells[c + 2] === ports && (filled & KEY_FLAGS) === flags))
        return at;
      at = (at + 1) & mask;
    }
  }

  private grow(): void {
    const oldCells = this.cells;
    const oldFirsts = this.firsts;
    const oldLaters = this.laters;
    this.cells = new Uint32Array(2 * oldCells.length);
    this.firsts = new Array<Match | string | null>(2 * oldFirsts.length).fill(null);
    this.laters = new Array<LaterSocket | null>(2 * oldLaters.length).fill(null);
    this.mask = this.laters.length - 1;
    for (let i = 0; i < oldLaters.length; i++) {
      const c = i * CELL;
      const flags = oldCells[c + 3];
      if (flags === 0)
        continue;
      const at = this.cellOf(flags & KEY_FLAGS, oldCells[c], oldCells[c + 1], oldCells[c + 2]);
      this.cells.set(oldCells.subarray(c, c + CELL), at * CELL);
      this.firsts[2 * at] = oldFirsts[2 * i];
      this.firsts[2 * at + 1] = oldFirsts[2 * i + 1];
      this.laters[at] = oldLaters[i];
    }
  }
}

/** A V4Keys key's flags: its protocol, and which of its addresses are empty. */
function keyFlags(udp: boolean, local: number, remote: number): number {
  return FILLED | (udp ? UDP : 0) | (local === EMPTY_ADDRESS ? LOCAL_EMPTY : 0) | (remote === EMPTY_ADDRESS ? REMOTE_EMPTY : 0);
}

/** Mixes a V4Keys key to a small integer. */
function cellHash(flags: number, local: number, remote: number, ports: number): number {
  let hash = Math.imul(local ^ flags, 0x9e3779b1);
  hash = Math.imul(hash ^ (hash >>> 15) ^ remote, 0x85ebca6b);
  hash = Math.imul(hash ^ (hash >>> 13) ^ ports, 0xc2b2ae35);
  return (hash ^ (hash >>> 16)) & 0x3fffffff;
}

/** A port V4Keys can file (a 16-bit count): others go to the chains. */
function isPort(port: number): boolean {
  return Number.isInteger(port) && port >= 0 && port <= 0xffff;
}

/** The empty address (a bound socket's remote side) as a V4Keys address: above every dotted quad. */
const EMPTY_ADDRESS = 0x100000000;

/**
 * A canonical dotted quad (as formatIPv4 writes it: no leading zeros) as its 32-bit number, the
 * empty string as EMPTY_ADDRESS, anything else -1. Two addresses that give the same number are
 * the same string, so V4Keys compares numbers where the chains compare strings.
 */
export function v4Code(address: string): number {
  const length = address.length;
  if (length === 0)
    return EMPTY_ADDRESS;
  if (length < 7 || length > 15)
    return -1;
  let value = 0;
  let part = 0;
  let digits = 0;
  let dots = 0;
  for (let i = 0; i < length; i++) {
    const c = address.charCodeAt(i);
    if (c === Ascii.Dot) {
      if (digits === 0 || dots === 3)
        return -1;
      value = value * 256 + part;
      part = 0;
      digits = 0;
      dots += 1;
    } else if (c >= Ascii.Digit0 && c <= Ascii.Digit9) {
      // A leading zero: another spelling of a shorter number, not the canonical one.
      if (digits > 0 && part === 0)
        return -1;
      part = part * 10 + (c - Ascii.Digit0);
      digits += 1;
      if (part > 255)
        return -1;
    } else {
      return -1;
    }
  }
  if (dots !== 3 || digits === 0)
    return -1;
  return value * 256 + part;
}

/** FNV-1a over the key's fields, cut to 30 bits (a small integer: the cheapest Map key there is). */
function tupleHash(udp: boolean, laddr: string, lport: number, raddr: string, rport: number): number {
  let hash = udp ? 0x050c5d1f : 0x811c9dc5;
  for (let i = 0; i < laddr.length; i++)
    hash = Math.imul(hash ^ laddr.charCodeAt(i), 0x01000193);
  hash = Math.imul(hash ^ lport, 0x01000193);
  for (let i = 0; i < raddr.length; i++)
    hash = Math.imul(hash ^ raddr.charCodeAt(i), 0x01000193);
  hash = Math.imul(hash ^ rport, 0x01000193);
  return (hash ^ (hash >>> 15)) & 0x3fffffff;
}

/**
 * The IPv6 addresses (IPv4-mapped ones aside) of every connection, as 4 int32 words each (an open
 * addressing set; [filled, 4 words] per cell): a tuple whose address is not among them has no
 * connection, which an IPv6 LeanTuple learns from its words without making their text
 * (src/validate/rules.ts). `readable` false once an address was not the text formatIPv6 writes:
 * then no miss proves anything.
 */
export class V6Addresses {
  private cells = new Int32Array(5 * 64);
  private mask = 63;
  private size = 0;
  readable = true;
  private readonly scratch = new Int32Array(4);
  private readonly texts = new Set<string>();

  /** Adds a connection's address, as its text (folded: an IPv4 one, without a colon, is not added). */
  addText(address: string): void {
    // A host's connections share few addresses (loopback, its own): each is read once.
    if (!address.includes(`:`) || this.texts.has(address))
      return;
    this.texts.add(address);
    if (!parseIPv6Words(address, this.scratch, 0)) {
      this.readable = false;
      return;
    }
    const at = this.cellOf(this.scratch, 0);
    const c = 5 * at;
    if (this.cells[c] !== 0)
      return;
    this.cells[c] = 1;
    this.cells.set(this.scratch, c + 1);
    this.size += 1;
    if (2 * this.size > this.mask + 1)
      this.grow();
  }

  /** Whether the address of the 4 words at words[at] is a connection's. */
  has(words: ArrayLike<number>, at: number): boolean {
    return this.cells[5 * this.cellOf(words, at)] !== 0;
  }

  private cellOf(words: ArrayLike<number>, at: number): number {
    const w0 = words[at] | 0;
    const w1 = words[at + 1] | 0;
    const w2 = words[at + 2] | 0;
    const w3 = words[at + 3] | 0;
    let hash = Math.imul(w0 ^ 0x2545f491, 0x9e3779b1);
    hash = Math.imul(hash ^ (hash >>> 15) ^ w1, 0x85ebca6b);
    hash = Math.imul(hash ^ (hash >>> 13) ^ w2, 0xc2b2ae35);
    hash = Math.imul(hash ^ (hash >>> 16) ^ w3, 0x9e3779b1);
    const cells = this.cells;
    for (let i = (hash ^ (hash >>> 15)) & this.mask; ; i = (i + 1) & this.mask) {
      const c = 5 * i;
      if (cells[c] === 0 || (cells[c + 1] === w0 && cells[c + 2] === w1 && cells[c + 3] === w2 && cells[c + 4] === w3))
        return i;
    }
  }

  private grow(): void {
    const old = this.cells;
    this.cells = new Int32Array(2 * old.length);
    this.mask = 2 * (this.mask + 1) - 1;
    for (let c = 0; c < old.length; c += 5) {
      if (old[c] !== 0)
        this.cells.set(old.subarray(c, c + 5), 5 * this.cellOf(old, c + 1));
    }
  }
}

export interface NamespaceFacts {
  inode: number;
  /** False when one of its tables could not be read: a miss there proves nothing. */
  complete: boolean;
  /** A netns record described it (else only its sockets were seen). */
  described: boolean;
}

/**
 * One snapshot of the host (or of a capture). Feed it records with add(), then query. Each key
 * maps to the sockets that carry it in every namespace (almost always one), so a netns-0 tuple
 * is one lookup and a netns-N tuple one lookup plus a look at that short list.
 *
 * A socket is stored as the `match` a verdict reports (built once, shared by every verdict that
 * matches it), and a connection under both of its directions, so a tuple stored either way round
 * is a single lookup; the socket whose local→remote is the tuple itself comes first in its list.
 */
export class SnapshotIndex {
  /** Non-listening sockets, local→remote and remote→local, across namespaces. */
  readonly connections: SocketTable;
  /** TCP LISTEN and unconnected UDP sockets by (proto, laddr, lport; remote `` and 0), across namespaces. */
  readonly bound: SocketTable;
  readonly namespaces = new Map<number, NamespaceFacts>();
  readonly processes = new Map<number, ProcessRecord>();
  /** The closing `snapshot` record of each kind, once it has been seen. */
  conns: SnapshotRecord | null = null;
  pids: SnapshotRecord | null = null;
  /** Their monotonicNs as numbers (when they have one): compared with every dated entry's age. */
  connsMonotonicNs: number | undefined = undefined;
  pidsMonotonicNs: number | undefined = undefined;
  /** How many namespaces are incomplete (any: a netns-0 miss proves nothing). */
  incompleteNamespaces = 0;
  /** Whether any socket or netns record was seen (a conns snapshot without its closing record still counts). */
  sawConns = false;
  sawPids = false;
  socketCount = 0;
  /** The verdicts' `owner` of each pid, made once (src/validate/rules.ts). */
  readonly owners = new NumberMap<{pid: number, comm: string | null}>();
  /** The verdicts' process `match` of each pid, made once (src/validate/rules.ts). */
  readonly processMatches = new Map<number, Match>();
  /** The IPv6 addresses of the connections (src/validate/rules.ts: a LeanTuple's miss by number). */
  readonly v6Connected = new V6Addresses();

  /**
   * `matchTexts` false: the verdicts are not written out (scan without a capture), so a found
   * socket's JSON text is not made for them.
   */
  constructor(options: {matchTexts?: boolean} = {}) {
    this.connections = new SocketTable(options.matchTexts ?? true);
    this.bound = new SocketTable(options.matchTexts ?? true);
  }

  /** Takes one snapshot record; returns false for records of other types. */
  add(record: AnyRecord): boolean {
    switch (record.type) {
      case `socket`:
        this.addSocket(record);
        return true;
      case `process`: {
        const process = record;
        this.processes.set(process.pid, process);
        this.sawPids = true;
        return true;
      }
      case `netns`:
        this.addNamespace(record);
        return true;
      case `snapshot`: {
        const snapshot = record;
        const monotonicNs = snapshot.monotonicNs === undefined ? undefined : Number(snapshot.monotonicNs);
        if (snapshot.of === `conns`) {
          this.conns = snapshot;
          this.connsMonotonicNs = monotonicNs;
          this.sawConns = true;
        } else {
          this.pids = snapshot;
          this.pidsMonotonicNs = monotonicNs;
          this.sawPids = true;
        }
        return true;
      }
      default:
        return false;
    }
  }

  /** Both closing `snapshot` records are in: nothing more is expected. */
  get isComplete(): boolean {
    return this.conns !== null && this.pids !== null;
  }

  get hasConns(): boolean {
    return this.sawConns;
  }

  get hasPids(): boolean {
    return this.sawPids;
  }

  private addNamespace(netns: NetnsRecord): void {
    this.sawConns = true;
    const known = this.namespaces.get(netns.netnsInode);
    const wasIncomplete = known !== undefined && !known.complete;
    // The same namespace described twice (two inputs): it is complete if either reading was.
    const complete = netns.complete || (known?.described === true && known.complete);
    this.namespaces.set(netns.netnsInode, {inode: netns.netnsInode, complete, described: true});
    this.incompleteNamespaces += (complete ? 0 : 1) - (wasIncomplete ? 1 : 0);
  }

  private addSocket(socket: SocketRecord): void {
    this.sawConns = true;
    this.socketCount += 1;
    if (!this.namespaces.has(socket.netnsInode))
      this.namespaces.set(socket.netnsInode, {inode: socket.netnsInode, complete: true, described: false});
    const laddr = foldMapped(socket.laddr);
    const raddr = foldMapped(socket.raddr);
    const match: Match = {
      netnsInode: socket.netnsInode,
      socket: {
        proto: socket.proto, laddr: socket.laddr, lport: socket.lport, raddr: socket.raddr, rport: socket.rport,
        state: socket.state, inode: socket.inode,
      },
    };
    const udp = socket.proto === `udp`;
    if (!udp ? socket.state === `LISTEN` : isUnconnected(raddr, socket.rport)) {
      this.bound.last(udp, laddr, socket.lport, ``, 0, match);
      return;
    }
    // Every other state counts as a connection, TIME_WAIT included (README "Verdict reasons").
    this.v6Connected.addText(laddr);
    this.v6Connected.addText(raddr);
    this.connections.first(udp, laddr, socket.lport, raddr, socket.rport, match);
    this.connections.last(udp, raddr, socket.rport, laddr, socket.lport, match);
  }
}

function isUnconnected(raddr: string, rport: number): boolean {
  return rport === 0 && (raddr === `0.0.0.0` || raddr === `::`);
}
