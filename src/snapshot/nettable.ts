// Parser for /proc/net/{tcp,tcp6,udp,udp6}. The rows are printf output with fixed-width hex
// columns, so they are read with index arithmetic: no regex, no split per row. Only the slot
// number in front (`%4d:` for TCP, `%5d:` for UDP, wider past 9999) and the columns after the
// state vary in width.
//
// Addresses: the kernel prints each 32-bit word of the address as a host-order u32 (`%08X`), so
// on little-endian hosts each word's bytes are reversed: `0100007F` is 127.0.0.1. Ports are
// plain hex numbers. We turn the words back into network-order bytes and format them through
// src/addr.ts, so the strings equal those dump-maps makes from map keys.
import {formatIPv4, formatIPv6} from '../addr.ts';
import {SCHEMA_VERSION, type SocketRecord, type SocketState} from '../schema.ts';
import {Ascii} from '../ascii.ts';

export const TABLES = [
  {name: `tcp`, proto: `tcp`, listedFamily: `v4`},
  {name: `tcp6`, proto: `tcp`, listedFamily: `v6`},
  {name: `udp`, proto: `udp`, listedFamily: `v4`},
  {name: `udp6`, proto: `udp`, listedFamily: `v6`},
] as const;
export type TableSpec = (typeof TABLES)[number];
export type TableName = TableSpec[`name`];

/** include/net/tcp_states.h, by the hex code in the `st` column. */
const STATE_NAMES: Array<SocketState> = [
  `UNKNOWN`, `ESTABLISHED`, `SYN_SENT`, `SYN_RECV`, `FIN_WAIT1`, `FIN_WAIT2`, `TIME_WAIT`, `CLOSE`,
  `CLOSE_WAIT`, `LAST_ACK`, `LISTEN`, `CLOSING`, `NEW_SYN_RECV`,
];

export interface BadRow {
  /** 1-based line number in the file (the header is line 1). */
  line: number;
  reason: string;
  text: string;
}

export interface ParseOutcome {
  rows: number;
  bad: Array<BadRow>;
  badCount: number;
}

/** How many bad rows per table are kept with their text (the rest are only counted). */
const BAD_ROWS_KEPT = 5;

// Hex digit values by char code; -1 for anything else.
const HEX = new Int8Array(128).fill(-1);
for (let i = 0; i < 10; i++)
  HEX[48 + i] = i;
for (let i = 0; i < 6; i++) {
  HEX[65 + i] = 10 + i;
  HEX[97 + i] = 10 + i;
}

/** Value of `count` hex digits at `at`, or -1 when one is not a hex digit. */
function hexAt(text: string, at: number, count: number): number {
  let value = 0;
  for (let i = 0; i < count; i++) {
    const code = text.charCodeAt(at + i);
    const digit = code < 128 ? HEX[code] : -1;
    if (digit < 0)
      return -1;
    value = value * 16 + digit;
  }
  return value;
}

/** Reads `words` host-order u32 hex words at `at` into `bytes` as network-order bytes. */
function addressAt(text: string, at: number, words: number, bytes: Uint8Array): boolean {
  for (let w = 0; w < words; w++) {
    const value = hexAt(text, at + 8 * w, 8);
    if (value < 0)
      return false;
    // Little-endian host: the u32's low byte is the first byte in memory.
    bytes[4 * w] = value & 0xff;
    bytes[4 * w + 1] = (value >>> 8) & 0xff;
    bytes[4 * w + 2] = (value >>> 16) & 0xff;
    bytes[4 * w + 3] = value >>> 24;
  }
  return true;
}

/** ::ffff:a.b.c.d, tested the way the eBPF side does (h == 0 and low u32 of l == 0xffff0000). */
function isMapped(bytes: Uint8Array): boolean {
  return bytes[0] === 0 && bytes[1] === 0 && bytes[2] === 0 && bytes[3] === 0 && bytes[4] === 0 && bytes[5] === 0
    && bytes[6] === 0 && bytes[7] === 0 && bytes[8] === 0 && bytes[9] === 0 && bytes[10] === 0xff && bytes[11] === 0xff;
}

/** Decimal integer at `at` up to the next space or end; -1 when empty or not digits. */
function decimalAt(text: string, at: number, end: number): number {
  let value = 0;
  let i = at;
  for (; i < end; i++) {
    const digit = text.charCodeAt(i) - Ascii.Digit0;
    if (digit < 0 || digit > 9)
      break;
    value = value * 10 + digit;
  }
  return i === at ? -1 : value;
}

function skipSpaces(text: string, at: number, end: number): number {
  while (at < end && text.charCodeAt(at) === Ascii.Space)
    at++;
  return at;
}

function skipToken(text: string, at: number, end: number): number {
  while (at < end && text.charCodeAt(at) !== Ascii.Space)
    at++;
  return at;
}

// Scratch for one row's two addresses, shared by every call: safe because parseRow fills them
// and the row's record is made from them without an await in between, so no other row, of this
// table or a concurrently parsed one, can run in the middle.
const localBytes = new Uint8Array(16);
const remoteBytes = new Uint8Array(16);

/**
 * Parses one table's text and calls `emit` for each socket. Never throws on bad content: bad
 * rows are counted, and the first few are kept (line number, reason, text) for the warning.
 * IPv4-mapped rows of tcp6/udp6 come out as family `v4` with `listedFamily` `v6`.
 *
 * A table is read once per scan, so this code runs cold (mostly interpreted): each row is taken
 * apart by one regular expression (native code) and its addresses looked up by their hex text,
 * most rows sharing a few addresses. A row the expression does not take whole goes through
 * parseRow, which says what is wrong with it; `general` sends every row there (tests).
 */
export function parseNetTable(text: string, table: TableSpec, netnsInode: number, emit: (socket: SocketRecord) => void, general = false): ParseOutcome {
  if (general)
    return scanRows(text, table, () => emit(socketOfRow(table, netnsInode)), null);
  const addresses = new Map<string, AddressText>();
  return scanRows(text, table, () => emit(socketOfRow(table, netnsInode)), (match: RegExpExecArray) => {
    const local = addressText(addresses, match[2], table);
    const remote = addressText(addresses, match[4], table);
    let family: `v4` | `v6` = table.listedFamily;
    let laddr = local.text;
    let raddr = remote.text;
    if (local.mapped || remote.mapped) {
      family = `v4`;
      laddr = local.tail;
      raddr = remote.tail;
    }
    return socketRecord(table, netnsInode, family, laddr, parseInt(match[3], 16), raddr, parseInt(match[5], 16), parseInt(match[6], 16), Number(match[8]), Number(match[7]));
  }, emit);
}

/** An address column's text as a socket record gives it (ipv6: also as IPv4 from its last 4 bytes). */
interface AddressText {
  text: string;
  /** ::ffff:a.b.c.d (tcp6, udp6). */
  mapped: boolean;
  /** a.b.c.d of the last 4 bytes: both ends of a row take it when either is mapped. */
  tail: string;
}

const addressScratch = new Uint8Array(16);

/** The address of `hex` (valid hex digits, as the row expression took them), made once per table and text. */
function addressText(addresses: Map<string, AddressText>, hex: string, table: TableSpec): AddressText {
  let address = addresses.get(hex);
  if (address === undefined) {
    const v6 = table.listedFamily === `v6`;
    addressAt(hex, 0, v6 ? 4 : 1, addressScratch);
    address = v6
      ? {text: formatIPv6(addressScratch, 0), mapped: isMapped(addressScratch), tail: formatIPv4(addressScratch, 12)}
      : {text: formatIPv4(addressScratch, 0), mapped: false, tail: ``};
    addresses.set(hex, address);
  }
  return address;
}

/**
 * A well-formed row, whole, as parseRow reads it: slot, both addresses and ports, state, then the
 * columns parseRow skips (space-separated tokens: three, the uid's, the timeout) and the uid and
 * inode digits. Everything after the state may match empty, so the first way it matches is the
 * greedy one: the same columns parseRow's scanning finds. Captures: 1 slot, 2 local address,
 * 3 local port, 4 remote address, 5 remote port, 6 state, 7 uid, 8 inode (empty: no digits).
 */
const ROW_TAIL = `(?=[ \\n]|$) *[^ \\n]* *[^ \\n]* *[^ \\n]* *(\\d*)[^ \\n]* *[^ \\n]* *(\\d*)`;
const ROW_V4 = new RegExp(` *(\\d+): ([0-9A-Fa-f]{8}):([0-9A-Fa-f]{4}) ([0-9A-Fa-f]{8}):([0-9A-Fa-f]{4}) ([0-9A-Fa-f]{2})${ROW_TAIL}`, `y`);
const ROW_V6 = new RegExp(` *(\\d+): ([0-9A-Fa-f]{32}):([0-9A-Fa-f]{4}) ([0-9A-Fa-f]{32}):([0-9A-Fa-f]{4}) ([0-9A-Fa-f]{2})${ROW_TAIL}`, `y`);
/** Digits past this many may not be a safe integer: parseRow decides. */
const SAFE_DIGITS = 15;

/**
 * The socket inode of each row parseNetTable would emit a socket for, in the same order (the
 * same rows are valid), without making the records: placing a process whose ns/net link is
 * refused needs only its sockets' inodes.
 */
export function netTableInodes(text: string, table: TableSpec, onInode: (inode: number) => void): ParseOutcome {
  return scanRows(text, table, () => onInode(row.inode), null);
}

/**
 * Calls `onRow` after parseRow accepted a row; with `fast`, a row ROW_V4/ROW_V6 takes whole goes
 * to `fast` instead and its socket to `emitFast`.
 */
function scanRows(text: string, table: TableSpec, onRow: () => void, fast: ((match: RegExpExecArray) => SocketRecord) | null, emitFast?: (socket: SocketRecord) => void): ParseOutcome {
  const outcome: ParseOutcome = {rows: 0, bad: [], badCount: 0};
  const v6 = table.listedFamily === `v6`;
  const pattern = v6 ? ROW_V6 : ROW_V4;
  let lineNo = 0;
  let start = 0;
  const length = text.length;
  while (start < length) {
    let end = text.indexOf(`\n`, start);
    if (end < 0)
      end = length;
    lineNo++;
    const lineStart = start;
    start = end + 1;
    const p = skipSpaces(text, lineStart, end);
    if (p === end)
      continue;
    // The header (`  sl  local_address ...`); kernels always print it first.
    if (lineNo === 1 && text.charCodeAt(p) === Ascii.LowerS)
      continue;
    if (fast !== null) {
      pattern.lastIndex = p;
      const match = pattern.exec(text);
      if (match !== null && match[7].length > 0 && match[8].length > 0 && match[7].length <= SAFE_DIGITS && match[8].length <= SAFE_DIGITS) {
        emitFast!(fast(match));
        outcome.rows++;
        continue;
      }
    }
    const reason = parseRow(text, p, end, v6, table);
    if (reason === null) {
      onRow();
      outcome.rows++;
      continue;
    }
    outcome.badCount++;
    if (outcome.bad.length < BAD_ROWS_KEPT)
      outcome.bad.push({line: lineNo, reason, text: text.slice(lineStart, Math.min(end, lineStart + 160)).trimEnd()});
  }
  return outcome;
}

/** The numeric columns of the row parseRow last accepted (its addresses are in localBytes/remoteBytes). */
const row = {lport: 0, rport: 0, stateCode: 0, uid: 0, inode: 0};

/** Parses the row at [p, end) into `row` and the address scratch; returns why it is malformed, or null. */
function parseRow(text: string, p: number, end: number, v6: boolean, table: TableSpec): string | null {
  const addrLen = v6 ? 32 : 8;
  const words = v6 ? 4 : 1;
  // Slot number and colon.
  const slotStart = p;
  while (p < end && text.charCodeAt(p) >= Ascii.Digit0 && text.charCodeAt(p) <= Ascii.Digit9)
    p++;
  if (p === slotStart || text.charCodeAt(p) !== Ascii.Colon || text.charCodeAt(p + 1) !== Ascii.Space)
    return `no slot number`;
  p += 2;
  // local_address rem_address st: fixed width from here.
  const fixedEnd = p + 2 * (addrLen + 6) + 2;
  if (fixedEnd > end)
    return `row too short`;
  const remoteAt = p + addrLen + 6;
  if (text.charCodeAt(p + addrLen) !== Ascii.Colon || text.charCodeAt(remoteAt - 1) !== Ascii.Space
    || text.charCodeAt(remoteAt + addrLen) !== Ascii.Colon || text.charCodeAt(fixedEnd - 3) !== Ascii.Space
    || (fixedEnd < end && text.charCodeAt(fixedEnd) !== Ascii.Space))
    return `bad column layout (expected ${addrLen}-digit addresses in ${table.name})`;
  const lport = hexAt(text, p + addrLen + 1, 4);
  const rport = hexAt(text, remoteAt + addrLen + 1, 4);
  const stateCode = hexAt(text, fixedEnd - 2, 2);
  if (lport < 0 || rport < 0 || stateCode < 0 || !addressAt(text, p, words, localBytes) || !addressAt(text, remoteAt, words, remoteBytes))
    return `bad hex digit`;
  // tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode: whitespace separated.
  let q = fixedEnd;
  for (let skip = 0; skip < 3; skip++)
    q = skipToken(text, skipSpaces(text, q, end), end);
  q = skipSpaces(text, q, end);
  const uid = decimalAt(text, q, end);
  q = skipToken(text, skipSpaces(text, skipToken(text, q, end), end), end);
  q = skipSpaces(text, q, end);
  const inode = decimalAt(text, q, end);
  if (uid < 0 || inode < 0)
    return `no uid or inode column`;
  // Inodes are unsigned long; beyond 2^53 the number would print as 1e+23.
  if (!Number.isSafeInteger(inode) || !Number.isSafeInteger(uid))
    return `uid or inode out of range`;
  row.lport = lport;
  row.rport = rport;
  row.stateCode = stateCode;
  row.uid = uid;
  row.inode = inode;
  return null;
}

/** The socket record of the row parseRow just accepted. */
function socketOfRow(table: TableSpec, netnsInode: number): SocketRecord {
  let family: `v4` | `v6` = table.listedFamily;
  let laddr: string;
  let raddr: string;
  if (table.listedFamily === `v4`) {
    laddr = formatIPv4(localBytes, 0);
    raddr = formatIPv4(remoteBytes, 0);
  } else if (isMapped(localBytes) || isMapped(remoteBytes)) {
    // Dual-stack socket talking IPv4: the eBPF side folds both ends to their last 4 bytes.
    family = `v4`;
    laddr = formatIPv4(localBytes, 12);
    raddr = formatIPv4(remoteBytes, 12);
  } else {
    laddr = formatIPv6(localBytes, 0);
    raddr = formatIPv6(remoteBytes, 0);
  }
  return socketRecord(table, netnsInode, family, laddr, row.lport, raddr, row.rport, row.stateCode, row.inode, row.uid);
}

/** A socket record as both the text's parser and the NETLINK_SOCK_DIAG reader (src/snapshot/sockDiag.ts) make it. */
export function socketRecord(table: TableSpec, netnsInode: number, family: `v4` | `v6`, laddr: string, lport: number, raddr: string, rport: number, stateCode: number, inode: number, uid: number): SocketRecord {
  return {
    type: `socket`,
    v: SCHEMA_VERSION,
    netnsInode,
    proto: table.proto,
    family,
    listedFamily: table.listedFamily,
    laddr,
    lport,
    raddr,
    rport,
    state: stateCode < STATE_NAMES.length ? STATE_NAMES[stateCode] : `UNKNOWN`,
    inode,
    uid,
  };
}
