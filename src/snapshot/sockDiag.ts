// The socket tables of our own network namespace through NETLINK_SOCK_DIAG, the interface `ss`
// uses, instead of the /proc/net/{tcp,tcp6,udp,udp6} text: the kernel formats ~3.5 µs of text
// per socket there, and then we parse it; a dump of binary inet_diag_msg records costs a fraction
// of that on both sides. A netlink socket only ever sees the namespace it was made in, so other
// namespaces keep the text (read through one of their processes, or entered).
//
// The records are those parseNetTable makes from the text, field for field and in the same order:
// both walk the same hash tables (listeners, then established and TIME_WAIT, for TCP; the port
// hash for UDP). Where the two interfaces differ, the text is what we follow:
// - a TCP request socket (SYN_RECV, no inode yet): the text gives its listener's uid, the dump 0.
//   It takes the uid of the listeners on its port (both TCP tables); when they disagree or are
//   gone, that table falls back to its text.
// - sockets that are bound but neither listening nor connected (TCP_BOUND_INACTIVE, Linux 6.6+)
//   are dumped only when asked for; the text never lists them, so they are not asked for.
// Any failure of a table (udp_diag not built in and not loadable: ENOENT; refused; a reply we do
// not expect) leaves that table to its text, as before.
import {endianness} from 'node:os';
import {formatIPv4, formatIPv6} from '../addr.ts';
import type {SocketRecord} from '../schema.ts';
import {EINTR, errnoName, type Syscalls} from '../sys/syscalls.ts';
import {socketRecord, TABLES, type TableSpec} from './nettable.ts';

const AF_NETLINK = 16;
const SOCK_RAW = 3;
const SOCK_CLOEXEC = 0o2000000;
const SOCK_NONBLOCK = 0o4000;
const NETLINK_SOCK_DIAG = 4;
const SOCK_DIAG_BY_FAMILY = 20;
const NLM_F_REQUEST = 0x1;
const NLM_F_DUMP_INTR = 0x10;
const NLM_F_DUMP = 0x300;
const NLMSG_ERROR = 2;
const NLMSG_DONE = 3;
const AF_INET = 2;
const AF_INET6 = 10;
const IPPROTO_TCP = 6;
const IPPROTO_UDP = 17;
/** Every state the text lists: 1 (ESTABLISHED) to 12 (NEW_SYN_RECV); not 13, TCP_BOUND_INACTIVE. */
const STATES = 0x1ffe;

/** nlmsghdr (16 bytes), then inet_diag_req_v2 (56) / inet_diag_msg (72). */
const HEADER = 16;
const REQUEST_LENGTH = HEADER + 56;
const MESSAGE_LENGTH = HEADER + 72;
/** The kernel fills a dump's replies up to 32 KiB each; more room than that is never used. */
const REPLY_SIZE = 64 * 1024;

/** One table's sockets, or why it was not read this way. */
export type DiagTable = Array<SocketRecord> | string;

/** The buffers, made once: a scan reads the tables twice at most (first look, recheck). */
let buffers: {request: Buffer, reply: Buffer, view: DataView} | null = null;

/**
 * The four tables of TABLES (same order) of the namespace this thread is in, `netnsInode`:
 * each as socket records, or as the reason it could not be read (its text is then read instead).
 */
export function readOwnTables(sys: Syscalls, netnsInode: number): Array<DiagTable> {
  buffers ??= (() => {
    const reply = Buffer.alloc(REPLY_SIZE);
    return {request: Buffer.alloc(REQUEST_LENGTH), reply, view: new DataView(reply.buffer, reply.byteOffset, reply.byteLength)};
  })();
  // Host-order fields are read as little-endian.
  if (endianness() !== `LE`)
    return TABLES.map(() => `a big-endian host`);
  // Non-blocking: the kernel queues a dump's first reply before send() returns and each next one
  // within the recv() that takes the one before, so a recv() that would wait means something
  // else happened (EAGAIN: that table falls back), never a hung run.
  const fd = sys.socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_SOCK_DIAG);
  if (fd < 0)
    return TABLES.map(() => `socket(AF_NETLINK, NETLINK_SOCK_DIAG): ${errnoName(-fd)}`);
  const tables: Array<DiagTable> = [];
  try {
    // After a reply we cannot read to its end, the socket may still hold the rest of it.
    let broken: string | null = null;
    TABLES.forEach((table, i) => {
      if (broken !== null) {
        tables.push(broken);
        return;
      }
      const sockets: Array<SocketRecord> = [];
      const outcome = dumpTable(sys, fd, buffers!, i + 1, table.listedFamily === `v6` ? AF_INET6 : AF_INET,
        table.proto === `tcp` ? IPPROTO_TCP : IPPROTO_UDP, table, netnsInode, sockets);
      if (outcome === null) {
        tables.push(sockets);
      } else {
        tables.push(outcome.why);
        if (outcome.broken)
          broken = `not tried after ${table.name} failed (${outcome.why})`;
      }
    });
  } finally {
    sys.close(fd);
  }
  giveRequestsTheirListenersUid(tables);
  return tables;
}

/** One dump request and its replies into `sockets`; null when it ended well. */
function dumpTable(sys: Syscalls, fd: number, {request, reply, view}: NonNullable<typeof buffers>, seq: number, family: number, protocol: number,
  table: TableSpec, netnsInode: number, sockets: Array<SocketRecord>): {why: string, broken: boolean} | null {
  request.fill(0);
  request.writeUInt32LE(REQUEST_LENGTH, 0);
  request.writeUInt16LE(SOCK_DIAG_BY_FAMILY, 4);
  request.writeUInt16LE(NLM_F_REQUEST | NLM_F_DUMP, 6);
  request.writeUInt32LE(seq, 8);
  request[HEADER] = family;
  request[HEADER + 1] = protocol;
  request.writeUInt32LE(STATES, HEADER + 4);
  let sent: number;
  do
    sent = sys.send(fd, request, REQUEST_LENGTH);
  while (sent === -EINTR);
  if (sent !== REQUEST_LENGTH)
    return {why: sent < 0 ? `send: ${errnoName(-sent)}` : `send: ${sent} of ${REQUEST_LENGTH} bytes`, broken: true};
  const v6 = family === AF_INET6;
  // Address texts made once per table (most sockets share a few addresses), as the text parser does.
  const v4Texts = new Map<number, string>();
  const v6Texts = new Map<number, V6Text>();
  for (;;) {
    let length: number;
    do
      length = sys.recv(fd, reply, REPLY_SIZE);
    while (length === -EINTR);
    if (length <= 0)
      return {why: length < 0 ? `recv: ${errnoName(-length)}` : `recv: end of file`, broken: true};
    let at = 0;
    while (at + HEADER <= length) {
      // Netlink headers are in host order: little-endian on the platforms we call into.
      const size = view.getUint32(at, true);
      const type = view.getUint16(at + 4, true);
      if (size < HEADER || at + size > length)
        return {why: `a truncated reply`, broken: true};
      if (view.getUint32(at + 8, true) !== seq)
        return {why: `a reply to another request`, broken: true};
      if ((view.getUint16(at + 6, true) & NLM_F_DUMP_INTR) !== 0)
        return {why: `the dump was interrupted`, broken: true};
      if (type === NLMSG_DONE) {
        const errno = size >= HEADER + 4 ? -view.getInt32(at + HEADER, true) : 0;
        return errno > 0 ? {why: `SOCK_DIAG_BY_FAMILY: ${errnoName(errno)}`, broken: false} : null;
      }
      if (type === NLMSG_ERROR) {
        const errno = size >= HEADER + 4 ? -view.getInt32(at + HEADER, true) : 0;
        return {why: `SOCK_DIAG_BY_FAMILY: ${errno > 0 ? errnoName(errno) : `an error reply`}`, broken: false};
      }
      if (type !== SOCK_DIAG_BY_FAMILY || size < MESSAGE_LENGTH || reply[at + HEADER] !== family)
        return {why: `an unexpected reply (type ${type}, ${size} bytes)`, broken: true};
      sockets.push(v6 ? v6Socket(reply, view, at + HEADER, table, netnsInode, v6Texts) : v4Socket(reply, view, at + HEADER, table, netnsInode, v4Texts));
      at += (size + 3) & ~3;
    }
  }
}

// inet_diag_msg: family, state, timer, retrans (u8); sport, dport (be16); src, dst (16 bytes,
// network order); if, cookie[2]; expires, rqueue, wqueue, uid, inode (u32, host order).
const STATE = 1;
const SPORT = 4;
const DPORT = 6;
const SRC = 8;
const DST = 24;
const UID = 64;
const INODE = 68;

function v4Socket(bytes: Buffer, view: DataView, at: number, table: TableSpec, netnsInode: number, cache: Map<number, string>): SocketRecord {
  return socketRecord(table, netnsInode, `v4`, v4Text(bytes, view, at + SRC, cache), view.getUint16(at + SPORT), v4Text(bytes, view, at + DST, cache),
    view.getUint16(at + DPORT), bytes[at + STATE], view.getUint32(at + INODE, true), view.getUint32(at + UID, true));
}

function v4Text(bytes: Buffer, view: DataView, at: number, cache: Map<number, string>): string {
  const key = view.getUint32(at);
  let text = cache.get(key);
  if (text === undefined) {
    text = formatIPv4(bytes, at);
    cache.set(key, text);
  }
  return text;
}

function v6Socket(bytes: Buffer, view: DataView, at: number, table: TableSpec, netnsInode: number, cache: Map<number, V6Text>): SocketRecord {
  let family: `v4` | `v6` = `v6`;
  let laddr: string;
  let raddr: string;
  if (isMapped(view, at + SRC) || isMapped(view, at + DST)) {
    // Dual-stack socket talking IPv4: both ends folded to their last 4 bytes, as from the text.
    family = `v4`;
    laddr = formatIPv4(bytes, at + SRC + 12);
    raddr = formatIPv4(bytes, at + DST + 12);
  } else {
    laddr = v6Text(bytes, view, at + SRC, cache);
    raddr = v6Text(bytes, view, at + DST, cache);
  }
  return socketRecord(table, netnsInode, family, laddr, view.getUint16(at + SPORT), raddr, view.getUint16(at + DPORT),
    bytes[at + STATE], view.getUint32(at + INODE, true), view.getUint32(at + UID, true));
}

/** ::ffff:a.b.c.d: 80 zero bits, then 16 one bits (as the text's parser tests it). */
function isMapped(view: DataView, at: number): boolean {
  return view.getUint32(at + 8) === 0xffff && view.getUint32(at) === 0 && view.getUint32(at + 4) === 0;
}

/** An IPv6 address's text, filed under a hash of its words (the words are compared on a hit). */
interface V6Text {
  w0: number;
  w1: number;
  w2: number;
  w3: number;
  text: string;
}

function v6Text(bytes: Buffer, view: DataView, at: number, cache: Map<number, V6Text>): string {
  const w0 = view.getInt32(at);
  const w1 = view.getInt32(at + 4);
  const w2 = view.getInt32(at + 8);
  const w3 = view.getInt32(at + 12);
  const key = Math.imul(Math.imul(Math.imul(w0, 31) ^ w1, 31) ^ w2, 31) ^ w3;
  const known = cache.get(key);
  if (known !== undefined && known.w0 === w0 && known.w1 === w1 && known.w2 === w2 && known.w3 === w3)
    return known.text;
  const text = formatIPv6(bytes, at);
  cache.set(key, {w0, w1, w2, w3, text});
  return text;
}

/** TABLES' two TCP tables: tcp, tcp6. */
const TCP_TABLES = [0, 1];

/**
 * A request socket's uid as the text gives it: its listener's. The dump says 0 for it (and no
 * inode, and SYN_RECV); the listeners on its port, in either TCP table, give theirs (SO_REUSEPORT
 * listeners share one uid). A table with a request socket whose listeners are not all known
 * (gone, or a TCP table not read this way) or disagree is left to its text.
 */
function giveRequestsTheirListenersUid(tables: Array<DiagTable>): void {
  let listeners: Map<number, number> | null | undefined;
  for (const i of TCP_TABLES) {
    const sockets = tables[i];
    if (typeof sockets === `string`)
      continue;
    for (const socket of sockets) {
      if (socket.state !== `SYN_RECV` || socket.inode !== 0 || socket.uid !== 0)
        continue;
      if (listeners === undefined)
        listeners = TCP_TABLES.every(j => typeof tables[j] !== `string`) ? listenerUids(TCP_TABLES.map(j => tables[j] as Array<SocketRecord>)) : null;
      const uid = listeners?.get(socket.lport);
      if (uid === undefined || uid < 0) {
        tables[i] = `a request socket on port ${socket.lport}, whose listener's uid is not known`;
        break;
      }
      socket.uid = uid;
    }
  }
}

/** Port → the uid of its TCP listeners, -1 where they have different ones. */
function listenerUids(tables: Array<Array<SocketRecord>>): Map<number, number> {
  const uids = new Map<number, number>();
  for (const sockets of tables) {
    for (const socket of sockets) {
      if (socket.state !== `LISTEN`)
        continue;
      const known = uids.get(socket.lport);
      uids.set(socket.lport, known === undefined || known === socket.uid ? socket.uid : -1);
    }
  }
  return uids;
}
