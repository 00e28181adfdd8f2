// The evidence validate and recheck judge entries against: every socket of every namespace and
// every process, indexed once so that each entry costs a few hash lookups, whatever the number of
// namespaces (the original tool walked every namespace for each netns-0 tuple).
import type {AnyRecord, Match, NetnsRecord, ProcessRecord, SnapshotRecord, SocketRecord} from '../schema.ts';

export const SNAPSHOT_RECORD_TYPES: ReadonlySet<string> = new Set([`netns`, `socket`, `process`, `snapshot`]);

/**
 * Folds an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, as formatIPv6 prints it) to `a.b.c.d`,
 * the way the eBPF side and snapshot-conns both do. Anything else comes back unchanged (and
 * unallocated: this runs for every address of every entry).
 */
export function foldMapped(address: string): string {
  // `::ffff:` is 7 characters; a dotted quad has at least 7 more.
  if (address.length >= 14 && address.charCodeAt(0) === 58 && address.startsWith(`::ffff:`) && address.indexOf(`.`, 7) > 0)
    return address.slice(7);
  return address;
}

/** `proto|laddr|lport|raddr|rport`: the string every socket and every tuple direction is looked up by. */
export function connKey(proto: string, laddr: string, lport: number, raddr: string, rport: number): string {
  return `${proto}|${laddr}|${lport}|${raddr}|${rport}`;
}

/** `proto|laddr|lport`: listening (TCP) and bound, unconnected (UDP) sockets. */
export function bindKey(proto: string, laddr: string, lport: number): string {
  return `${proto}|${laddr}|${lport}`;
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
  /** Non-listening sockets by connKey, local→remote and remote→local, across namespaces. */
  readonly connections = new Map<string, Array<Match>>();
  /** TCP LISTEN and unconnected UDP sockets by bindKey, across namespaces. */
  readonly bound = new Map<string, Array<Match>>();
  readonly namespaces = new Map<number, NamespaceFacts>();
  readonly processes = new Map<number, ProcessRecord>();
  /** The closing `snapshot` record of each kind, once it has been seen. */
  conns: SnapshotRecord | null = null;
  pids: SnapshotRecord | null = null;
  /** How many namespaces are incomplete (any: a netns-0 miss proves nothing). */
  incompleteNamespaces = 0;
  /** Whether any socket or netns record was seen (a conns snapshot without its closing record still counts). */
  sawConns = false;
  sawPids = false;
  socketCount = 0;

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
        if (snapshot.of === `conns`) {
          this.conns = snapshot;
          this.sawConns = true;
        } else {
          this.pids = snapshot;
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
    if (socket.proto === `tcp` ? socket.state === `LISTEN` : isUnconnected(raddr, socket.rport)) {
      const key = bindKey(socket.proto, laddr, socket.lport);
      const list = this.bound.get(key);
      if (list === undefined)
        this.bound.set(key, [match]);
      else
        list.push(match);
      return;
    }
    // Every other state counts as a connection, TIME_WAIT included (README "Verdict reasons").
    const forward = connKey(socket.proto, laddr, socket.lport, raddr, socket.rport);
    const list = this.connections.get(forward);
    if (list === undefined)
      this.connections.set(forward, [match]);
    else
      list.unshift(match);
    const reversed = connKey(socket.proto, raddr, socket.rport, laddr, socket.lport);
    const back = this.connections.get(reversed);
    if (back === undefined)
      this.connections.set(reversed, [match]);
    else
      back.push(match);
  }
}

function isUnconnected(raddr: string, rport: number): boolean {
  return rport === 0 && (raddr === `0.0.0.0` || raddr === `::`);
}
