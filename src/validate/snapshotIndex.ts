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
 * Sockets by (proto, local address, local port, remote address, remote port). Every key with two
 * 16-bit ports (every socket /proc lists) is filed in AddressKeys, a flat table of numbers, its
 * addresses as AddressIds codes: a lookup there reads one cell, where a walk of chained slots
 * read a slot and both of its address strings, each a cache miss in an index of a few hundred
 * thousand sockets, and a LeanTuple's addresses are looked up by their numbers, IPv6 ones as well
 * as IPv4 ones, without their text. Keys with other ports (a capture's oddities) are hashed to a
 * small integer from their fields, chained in buckets of an array and compared field by field.
 * The two sets of keys are disjoint (a key's ports decide its table), so every key is in exactly
 * one of them. Sockets of one key keep the order they were filed in (first(): ahead of the
 * others, last(): after).
 */
export class SocketTable {
  private buckets: Array<Slot | null> = new Array<Slot | null>(1024).fill(null);
  private mask = 1023;
  private readonly keys: AddressKeys;

  /**
   * `matchTexts`: a search hands over the found match's JSON text too (for the verdict's writer).
   * `addresses`: the codes of the addresses, shared by the tables of one snapshot.
   */
  constructor(matchTexts = true, readonly addresses = new AddressIds()) {
    this.keys = new AddressKeys(matchTexts);
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
    if (isPort(lport) && isPort(rport)) {
      this.keys.file(first, udp, this.addresses.intern(laddr), lport, this.addresses.intern(raddr), rport, match);
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
    if (isPort(lport) && isPort(rport)) {
      // An address no socket has has no code: no key holds it.
      const local = this.addresses.codeOfText(laddr);
      const remote = local < 0 ? -1 : this.addresses.codeOfText(raddr);
      return remote >= 0 && this.keys.search(found, udp, local, lport, remote, rport, netns);
    }
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
   * search() for addresses given as their codes (AddressIds: codeOfWords, or an IPv4 address's
   * unsigned number; -1 for an address no socket has) and 16-bit ports: the cell search() reaches
   * from their text.
   */
  searchCodes(found: Found, udp: boolean, local: number, lport: number, remote: number, rport: number, netns: number): boolean {
    return local >= 0 && remote >= 0 && this.keys.search(found, udp, local, lport, remote, rport, netns);
  }

  /** searchCodes() of a bound socket: the remote side empty (`` and 0). */
  searchBoundCode(found: Found, udp: boolean, local: number, lport: number, netns: number): boolean {
    return local >= 0 && this.keys.search(found, udp, local, lport, EMPTY_ADDRESS, 0, netns);
  }
}

/** An AddressKeys cell: [laddr, raddr (their codes, as uint32), lport * 65536 + rport, flags (0: an empty cell), netns of the key's first socket]. */
const CELL = 5;
const FILLED = 1;
const UDP = 2;
const LOCAL_EMPTY = 4;
const REMOTE_EMPTY = 8;
/** The address is an AddressIds id (its code less EMPTY_ADDRESS), not an IPv4 address's number. */
const LOCAL_ID = 16;
const REMOTE_ID = 32;
/** The first socket's namespace does not fit the cell (not a 32-bit count): read it from its match. */
const NETNS_ELSEWHERE = 64;
const KEY_FLAGS = FILLED | UDP | LOCAL_EMPTY | REMOTE_EMPTY | LOCAL_ID | REMOTE_ID;

/** A socket of an AddressKeys key after its first one, in filing order. */
interface LaterSocket {
  readonly netns: number;
  readonly match: Match;
  next: LaterSocket | null;
}

/**
 * The keys of SocketTable with two 16-bit ports, their addresses as codes, by open
 * addressing (linear probing) in one Uint32Array: a key and the namespace of its first socket sit
 * in one 20-byte cell, so the common lookup (one socket per key, in the namespace asked for or
 * any) touches that cell and the cell's pair in `firsts` (the match and its text). The key's
 * other sockets, when it has any, are a chain of their own in `laters`.
 *
 * It grows by half, not by doubling (its size is then no power of two: a hash is placed by
 * scaling, not masking). A cell takes 44 bytes (20 here, 16 in `firsts`, 8 in `laters`), and a
 * doubling just past 3/4 full leaves 2.7 cells a key, the old table alive beside the new one
 * while copying: the bench's recorded host (100,000 sockets, 198,798 keys, just past 3/4 of 2^18
 * cells) went from 11.5 to 23 MB, and validate's peak RSS at 1M entries from ~178 to ~196 MiB.
 *
 * In front, a bit per hash of the keys in (`present`, at least 16 bits a cell): a key whose bit is
 * clear is not there, which a lookup learns without a probe. Most lookups are misses (a leaked
 * entry's key is in no socket), and a miss probes to an empty cell, several cells (cache lines)
 * on average at 3/4 full.
 */
class AddressKeys {
  private cells = new Uint32Array(CELL * 1024);
  private present = new Int32Array(presentWords(1024));
  private presentMask = 32 * this.present.length - 1;
  /**
   * Per cell, side by side (one cache line): the first socket's match, and its JSON text, made on
   * its first lookup. The verdict's writer takes the text from here (the verdict carries it)
   * instead of from the match, one cache miss fewer per verdict.
   */
  private firsts: Array<Match | string | null> = new Array<Match | string | null>(2 * 1024).fill(null);
  private laters: Array<LaterSocket | null> = new Array<LaterSocket | null>(1024).fill(null);
  private capacity = 1024;
  private keys = 0;

  constructor(private readonly matchTexts: boolean) {}

  file(first: boolean, udp: boolean, local: number, lport: number, remote: number, rport: number, match: Match): void {
    const netns = match.netnsInode ?? 0;
    const flags = keyFlags(udp, local, remote);
    const hash = cellHash(flags, local >>> 0, remote >>> 0, lport * 65536 + rport);
    const at = this.cellOf(hash, flags, local >>> 0, remote >>> 0, lport * 65536 + rport);
    const c = at * CELL;
    const cells = this.cells;
    if (cells[c + 3] === 0) {
      cells[c] = local >>> 0;
      cells[c + 1] = remote >>> 0;
      cells[c + 2] = lport * 65536 + rport;
      this.setFirst(at, match, netns, flags);
      this.present[(hash & this.presentMask) >>> 5] |= 1 << (hash & 31);
      this.keys += 1;
      // At most 3/4 full: a short probe stays within a cache line or two.
      if (4 * this.keys > 3 * this.capacity)
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
    const wanted = keyFlags(udp, local, remote);
    const hash = cellHash(wanted, local >>> 0, remote >>> 0, lport * 65536 + rport);
    if ((this.present[(hash & this.presentMask) >>> 5] & (1 << (hash & 31))) === 0)
      return false;
    const at = this.cellOf(hash, wanted, local >>> 0, remote >>> 0, lport * 65536 + rport);
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

  /** The key's cell, or the empty cell where it goes; `hash`: its cellHash. */
  private cellOf(hash: number, flags: number, local: number, remote: number, ports: number): number {
    const cells = this.cells;
    const capacity = this.capacity;
    // The 30-bit hash scaled to [0, capacity) (exact up to 2^23 cells, in range at any size).
    let at = Math.floor(hash * capacity / 0x40000000);
    for (;;) {
      const c = at * CELL;
      const filled = cells[c + 3];
      if (filled === 0 || (cells[c] === local && cells[c + 1] === remote && cells[c + 2] === ports && (filled & KEY_FLAGS) === flags))
        return at;
      at = at + 1 === capacity ? 0 : at + 1;
    }
  }

  private grow(): void {
    const oldCells = this.cells;
    const oldFirsts = this.firsts;
    const oldLaters = this.laters;
    const oldCapacity = this.capacity;
    const capacity = oldCapacity + (oldCapacity >>> 1);
    this.cells = new Uint32Array(CELL * capacity);
    this.firsts = new Array<Match | string | null>(2 * capacity).fill(null);
    this.laters = new Array<LaterSocket | null>(capacity).fill(null);
    this.capacity = capacity;
    this.present = new Int32Array(presentWords(capacity));
    this.presentMask = 32 * this.present.length - 1;
    for (let i = 0; i < oldCapacity; i++) {
      const c = i * CELL;
      const flags = oldCells[c + 3];
      if (flags === 0)
        continue;
      const hash = cellHash(flags & KEY_FLAGS, oldCells[c], oldCells[c + 1], oldCells[c + 2]);
      this.present[(hash & this.presentMask) >>> 5] |= 1 << (hash & 31);
      const at = this.cellOf(hash, flags & KEY_FLAGS, oldCells[c], oldCells[c + 1], oldCells[c + 2]);
      // Word by word: a subarray() per key made as many short-lived objects as the index has keys.
      for (let w = 0; w < CELL; w++)
        this.cells[at * CELL + w] = oldCells[c + w];
      this.firsts[2 * at] = oldFirsts[2 * i];
      this.firsts[2 * at + 1] = oldFirsts[2 * i + 1];
      this.laters[at] = oldLaters[i];
    }
  }
}

/** An AddressKeys key's flags: its protocol, and which of its addresses are empty or ids. */
function keyFlags(udp: boolean, local: number, remote: number): number {
  return FILLED | (udp ? UDP : 0)
    | (local < EMPTY_ADDRESS ? 0 : local === EMPTY_ADDRESS ? LOCAL_EMPTY : LOCAL_ID)
    | (remote < EMPTY_ADDRESS ? 0 : remote === EMPTY_ADDRESS ? REMOTE_EMPTY : REMOTE_ID);
}

/** Words of AddressKeys.present for `capacity` cells: at least 16 bits a cell, a power of two. */
function presentWords(capacity: number): number {
  let bits = 32;
  while (bits < 16 * capacity)
    bits *= 2;
  return bits / 32;
}

/** Mixes an AddressKeys key to a small integer. */
function cellHash(flags: number, local: number, remote: number, ports: number): number {
  let hash = Math.imul(local ^ flags, 0x9e3779b1);
  hash = Math.imul(hash ^ (hash >>> 15) ^ remote, 0x85ebca6b);
  hash = Math.imul(hash ^ (hash >>> 13) ^ ports, 0xc2b2ae35);
  return (hash ^ (hash >>> 16)) & 0x3fffffff;
}

/** A port AddressKeys can file (a 16-bit count): others go to the chains. */
function isPort(port: number): boolean {
  return Number.isInteger(port) && port >= 0 && port <= 0xffff;
}

/** The empty address's code (a bound socket's remote side): above every dotted quad's, below every id's. */
const EMPTY_ADDRESS = 0x100000000;

/**
 * A canonical dotted quad (as formatIPv4 writes it: no leading zeros) as its 32-bit number, the
 * empty string as EMPTY_ADDRESS, anything else -1. Two addresses that give the same number are
 * the same string, so AddressKeys compares numbers where the chains compare strings.
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
 * Every address of a snapshot's sockets as a number, its code: a canonical dotted quad's own
 * number (v4Code), EMPTY_ADDRESS for the empty one, and for any other text (IPv6, or whatever a
 * capture holds) EMPTY_ADDRESS + 1 + an id given in order first seen. Two texts have the same
 * code only if they are the same text. The IPv6 texts formatIPv6 writes are found from their 4
 * int32 words too (an open addressing table; [id + 1 (0: empty), 4 words] per cell): a LeanTuple
 * codes its IPv6 addresses without their text (src/validate/rules.ts), and one no socket has
 * (-1) is not in any key.
 */
export class AddressIds {
  private readonly ids = new Map<string, number>();
  private cells = new Int32Array(5 * 64);
  private mask = 63;
  private readonly scratch = new Int32Array(4);
  /** The code of `::` once a socket has it (the dual-stack wildcard every bound search tries). */
  private wildcard = -1;

  /** The address's code; -1 when no address so written was filed. */
  codeOfText(address: string): number {
    const code = v4Code(address);
    if (code >= 0)
      return code;
    const id = this.ids.get(address);
    return id === undefined ? -1 : EMPTY_ADDRESS + 1 + id;
  }

  /** The address's code, made for it if it has none yet. */
  intern(address: string): number {
    const code = this.codeOfText(address);
    if (code >= 0)
      return code;
    const id = this.ids.size;
    this.ids.set(address, id);
    // A host's sockets share few addresses (loopback, its own): each is read once.
    if (parseIPv6Words(address, this.scratch, 0)) {
      const c = 5 * this.cellOf(this.scratch, 0);
      this.cells[c] = id + 1;
      this.cells.set(this.scratch, c + 1);
      if (2 * this.ids.size > this.mask + 1)
        this.grow();
    }
    return EMPTY_ADDRESS + 1 + id;
  }

  /**
   * The code of the IPv6 address of the 4 int32 words at words[at] (each 4 bytes in network
   * order), as codeOfText gives it for the address's formatIPv6 text folded (foldMapped): an
   * IPv4-mapped one is its IPv4 address.
   */
  codeOfWords(words: ArrayLike<number>, at: number): number {
    if (words[at] === 0 && words[at + 1] === 0 && words[at + 2] === 0xffff)
      return words[at + 3] >>> 0;
    const id = this.cells[5 * this.cellOf(words, at)];
    return id === 0 ? -1 : EMPTY_ADDRESS + id;
  }

  /** The code of `::`, or -1 while no socket has it. */
  get anyV6(): number {
    if (this.wildcard < 0)
      this.wildcard = this.codeOfText(`::`);
    return this.wildcard;
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
      if (old[c] === 0)
        continue;
      const to = 5 * this.cellOf(old, c + 1);
      for (let w = 0; w < 5; w++)
        this.cells[to + w] = old[c + w];
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
  /** The codes of the sockets' addresses, shared by both tables (src/validate/rules.ts: a LeanTuple's lookups by number). */
  readonly addresses = new AddressIds();

  /**
   * `matchTexts` false: the verdicts are not written out (scan without a capture), so a found
   * socket's JSON text is not made for them.
   */
  constructor(options: {matchTexts?: boolean} = {}) {
    this.connections = new SocketTable(options.matchTexts ?? true, this.addresses);
    this.bound = new SocketTable(options.matchTexts ?? true, this.addresses);
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
    this.connections.first(udp, laddr, socket.lport, raddr, socket.rport, match);
    this.connections.last(udp, raddr, socket.rport, laddr, socket.lport, match);
  }
}

function isUnconnected(raddr: string, rport: number): boolean {
  return rport === 0 && (raddr === `0.0.0.0` || raddr === `::`);
}
