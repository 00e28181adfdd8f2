// dump-maps' entry lines written as bytes, straight from the raw key and value bytes into the
// output buffer: no record object, no decoded-key object, no string per entry (hex, addresses and
// numbers go through byte tables), which were most of dump-maps' CPU and garbage per entry. The
// bytes are exactly JSON.stringify of the record toEntry builds (test/dump-entry-line checks every
// layout of the catalogue on random bytes); whatever is off the usual shapes (BTF-only keys or
// values, keys that do not decode, value tuples, names that would need escaping) is declined and
// goes the record way.
import {ipv6Groups, NO_RUN, V4_MAPPED} from '../addr.ts';
import {CONN_TUPLE_SIZE, type ExtraFields, type KeyLayout} from '../catalogue.ts';
import {SCHEMA_VERSION} from '../schema.ts';
import {ageFromBytes, u16, u32} from './decode.ts';
import type {RawEntry} from './entry.ts';

/** Names JSON.stringify prints as they are, and that no object reorders (not integer-like). */
const PLAIN_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** Map names printed as they are. */
const PLAIN_TEXT = /^[0-9A-Za-z_.:[\]-]*$/;

/** Bytes of text that is ASCII (the plan checked it). */
function ascii(text: string): Uint8Array {
  return Buffer.from(text, `latin1`);
}

/**
 * Constant text as little-endian 32-bit words: written four bytes per store (a byte at a time
 * from JS costs about as much per byte as a store does per word). The last word may carry up to
 * three bytes past the text, which the next write covers: lineBound leaves room for them.
 */
export interface Literal {
  words: Int32Array;
  length: number;
}

function literal(text: string): Literal {
  const bytes = ascii(text);
  const words = new Int32Array(Math.ceil(bytes.length / 4));
  for (let i = 0; i < bytes.length; i++)
    words[i >>> 2] |= bytes[i] << (8 * (i & 3));
  return {words, length: bytes.length};
}

/** Where lines are written: the bytes, and a view of the same bytes for the word stores. */
export interface LineOut {
  buffer: Uint8Array;
  view: DataView;
}

/** What is the same for every entry line of one map, worked out and encoded once. */
export interface LinePlan {
  /** `{"type":"entry",...,"keyHex":"` */
  prefix: Literal;
  layout: KeyLayout;
  tupleOffset: number;
  extra: ExtraFields | undefined;
  /** `"name":` of each extra field. */
  extraNames: ReadonlyArray<Literal>;
  ages: ReadonlyArray<readonly [string, number]>;
  /** `,"ageField":"name"}` and the newline, per age name. */
  ageTails: ReadonlyMap<string, Literal>;
  /** BTF age names without value bytes: such entries take the record way. */
  btfAges: boolean;
  readNs: number;
  /** Most bytes a line takes besides the key's and value's hex (with the slack of word stores). */
  fixedBytes: number;
}

export interface LineDating {
  readNs: number;
  ages: ReadonlyArray<readonly [string, number]>;
  names: ReadonlyArray<string>;
}

/** The plan for a map's entry lines, or null when its entries must go the record way. */
export function linePlan(mapId: number, mapName: string, layout: KeyLayout | null, problem: string | undefined, dating: LineDating | null): LinePlan | null {
  if (layout === null || problem !== undefined || layout.valueTupleOffset !== undefined || !PLAIN_TEXT.test(mapName))
    return null;
  if (layout.keyKind !== `conn_tuple` && layout.keyKind !== `pid_tgid`)
    return null;
  const extra = layout.extra;
  const extraNames: Array<Literal> = [];
  if (extra !== undefined) {
    const names = new Set<string>();
    for (const [name] of extra) {
      if (!PLAIN_NAME.test(name) || names.has(name))
        return null;
      names.add(name);
      extraNames.push(literal(`"${name}":`));
    }
  }
  const ages = dating === null ? [] : dating.ages;
  if (ages.some(([name]) => !PLAIN_TEXT.test(name)))
    return null;
  const prefix = literal(`{"type":"entry","v":${SCHEMA_VERSION},"mapId":${mapId},"map":"${mapName}","keyHex":"`);
  const ageTails = new Map(ages.map(([name]) => [name, literal(`,"ageField":"${name}"}\n`)]));
  // The key object takes at most ~430 bytes (two IPv6 addresses and endpoints, every number at
  // its longest); each extra its name, a comma and a quoted u64; an age ~25 digits and its tail.
  let fixedBytes = prefix.length + 512;
  for (const name of extraNames)
    fixedBytes += name.length + 32;
  fixedBytes += Math.max(0, ...[...ageTails.values()].map(tail => tail.length)) + 48;
  return {
    prefix, layout, tupleOffset: layout.tupleOffset ?? 0, extra, extraNames, ages, ageTails,
    btfAges: dating !== null && dating.names.length > 0, readNs: dating?.readNs ?? 0, fixedBytes,
  };
}

/** Most bytes the line of `entry` can take. */
export function lineBound(plan: LinePlan, entry: RawEntry): number {
  const values = entry.value === null ? 0 : entry.perCpu ? entry.cpus * (2 * entry.valueLength + 3) : 2 * entry.valueLength;
  return plan.fixedBytes + 2 * entry.keyLength + values;
}

const HEX_DIGITS = ascii(`0123456789abcdef`);
/** The two hex digits of each byte value, as one little-endian u16. */
const HEX = new Uint16Array(256);
/** Decimal digits of 0..255: up to three per value, and how many. */
const DEC = new Uint8Array(768);
const DEC_LENGTH = new Uint8Array(256);
for (let b = 0; b < 256; b++) {
  HEX[b] = HEX_DIGITS[b >>> 4] | (HEX_DIGITS[b & 15] << 8);
  const digits = String(b);
  DEC_LENGTH[b] = digits.length;
  for (let i = 0; i < digits.length; i++)
    DEC[3 * b + i] = digits.charCodeAt(i);
}

const enum Ch { Quote = 0x22, Comma = 0x2c, Minus = 0x2d, Dot = 0x2e, Zero = 0x30, Colon = 0x3a, LBracket = 0x5b, RBracket = 0x5d, RBrace = 0x7d, Newline = 0x0a }

const KEY_PID = literal(`","key":{"kind":"pid_tgid","pidTgid":"`);
const TGID = literal(`","tgid":`);
const TID = literal(`,"tid":`);
/** `","key":{"kind":"conn_tuple","family":"…","proto":"…","saddr":"`, by family (v6: +2) and proto (tcp: +1). */
const KEY_TUPLE = [[`v4`, `udp`], [`v4`, `tcp`], [`v6`, `udp`], [`v6`, `tcp`]]
  .map(([family, proto]) => literal(`","key":{"kind":"conn_tuple","family":"${family}","proto":"${proto}","saddr":"`));
const SPORT = literal(`","sport":`);
const DADDR = literal(`,"daddr":"`);
const DPORT = literal(`","dport":`);
const SRC = literal(`,"src":"`);
const DST = literal(`","dst":"`);
const NETNS = literal(`","netns":`);
const PID = literal(`,"pid":`);
const METADATA = literal(`,"metadata":`);
const VALUE_HEX = literal(`,"valueHex":"`);
const VALUES_HEX = literal(`,"valuesHex":[`);
const EXTRA = literal(`,"extra":{`);
const EMPTY_EXTRA = literal(`,"extra":{}`);
const AGE_SECONDS = literal(`,"ageSeconds":`);
const V4_MAPPED_TEXT = literal(`::ffff:`);
/** `00` to `99`: two digits per value. */
const DIGIT_PAIRS = ascii(Array.from({length: 100}, (_, i) => String(i).padStart(2, `0`)).join(``));

function put(view: DataView, at: number, text: Literal): number {
  const words = text.words;
  for (let i = 0; i < words.length; i++)
    view.setInt32(at + 4 * i, words[i], true);
  return at + text.length;
}

/** Bytes [from, to) as hex: four digits per store. */
function putHex(view: DataView, at: number, bytes: Uint8Array, from: number, to: number): number {
  let i = from;
  for (; i + 1 < to; i += 2) {
    view.setInt32(at, HEX[bytes[i]] | (HEX[bytes[i + 1]] << 16), true);
    at += 4;
  }
  if (i < to) {
    view.setUint16(at, HEX[bytes[i]], true);
    at += 2;
  }
  return at;
}

/**
 * A u32 in decimal, two digits per step from a table. Kept in uint32 arithmetic (`>>> 0`), where
 * the compiler divides by 100 with a multiply; a double's divide per digit was a third of the line.
 */
function putU32(out: Uint8Array, at: number, n: number): number {
  n >>>= 0;
  const end = at + (n < 100000 ? (n < 100 ? (n < 10 ? 1 : 2) : n < 1000 ? 3 : n < 10000 ? 4 : 5)
    : n < 10000000 ? (n < 1000000 ? 6 : 7) : n < 100000000 ? 8 : n < 1000000000 ? 9 : 10);
  let p = end;
  while (n >= 100) {
    const q = (n / 100) >>> 0;
    const r = 2 * (n - 100 * q);
    out[p - 1] = DIGIT_PAIRS[r + 1];
    out[p - 2] = DIGIT_PAIRS[r];
    p -= 2;
    n = q;
  }
  if (n >= 10) {
    out[p - 1] = DIGIT_PAIRS[2 * n + 1];
    out[p - 2] = DIGIT_PAIRS[2 * n];
  } else {
    out[p - 1] = Ch.Zero + n;
  }
  return end;
}

/** A non-negative integer below 2^53 in decimal: the high digits, then the low eight. */
function putUint53(out: Uint8Array, at: number, n: number): number {
  if (n < 0x100000000)
    return putU32(out, at, n);
  const high = Math.floor(n / 1e8);
  let low = (n - high * 1e8) >>> 0;
  at = putU32(out, at, high);
  for (let p = at + 8; p > at; p -= 2) {
    const q = (low / 100) >>> 0;
    const r = 2 * (low - 100 * q);
    out[p - 1] = DIGIT_PAIRS[r + 1];
    out[p - 2] = DIGIT_PAIRS[r];
    low = q;
  }
  return at + 8;
}

/** Text that is ASCII (numbers JS formats itself, rare big u64s). */
function putText(out: Uint8Array, at: number, text: string): number {
  for (let i = 0; i < text.length; i++)
    out[at + i] = text.charCodeAt(i);
  return at + text.length;
}

/** u64 LE as decimal, exact (decode.ts u64String, without the string when it fits a double). */
function putU64(out: Uint8Array, at: number, bytes: Uint8Array, offset: number): number {
  const low = u32(bytes, offset);
  const high = u32(bytes, offset + 4);
  if (high < 0x200000)
    return putUint53(out, at, high * 0x100000000 + low);
  return putText(out, at, ((BigInt(high) << 32n) | BigInt(low)).toString());
}

function putIPv4(out: Uint8Array, at: number, bytes: Uint8Array, offset: number): number {
  for (let i = 0; i < 4; i++) {
    if (i > 0)
      out[at++] = Ch.Dot;
    const b = bytes[offset + i];
    const d = 3 * b;
    const length = DEC_LENGTH[b];
    out[at] = DEC[d];
    if (length > 1)
      out[at + 1] = DEC[d + 1];
    if (length > 2)
      out[at + 2] = DEC[d + 2];
    at += length;
  }
  return at;
}

const GROUPS = new Uint16Array(8);

/** The address formatIPv6 (src/addr.ts) prints, as bytes: RFC 5952, ::ffff:a.b.c.d for v4-mapped. */
function putIPv6(out: LineOut, at: number, bytes: Uint8Array, offset: number): number {
  const run = ipv6Groups(bytes, offset, GROUPS);
  if (run === V4_MAPPED)
    return putIPv4(out.buffer, put(out.view, at, V4_MAPPED_TEXT), bytes, offset + 12);
  if (run === NO_RUN)
    return putGroups(out.buffer, at, 0, 8);
  at = putGroups(out.buffer, at, 0, run >>> 4);
  out.buffer[at] = Ch.Colon;
  out.buffer[at + 1] = Ch.Colon;
  return putGroups(out.buffer, at + 2, (run >>> 4) + (run & 15), 8);
}

/** GROUPS [from, to) in hex without leading zeros, colon-separated. */
function putGroups(out: Uint8Array, at: number, from: number, to: number): number {
  for (let i = from; i < to; i++) {
    if (i > from)
      out[at++] = Ch.Colon;
    const g = GROUPS[i];
    if (g >= 0x1000)
      out[at++] = HEX_DIGITS[g >>> 12];
    if (g >= 0x100)
      out[at++] = HEX_DIGITS[(g >>> 8) & 15];
    if (g >= 0x10)
      out[at++] = HEX_DIGITS[(g >>> 4) & 15];
    out[at++] = HEX_DIGITS[g & 15];
  }
  return at;
}

/** `ip:port` (formatEndpoint), the address being the bytes [from, to) already written. */
function putEndpoint(out: Uint8Array, at: number, from: number, to: number, v6: boolean, port: number): number {
  if (v6)
    out[at++] = Ch.LBracket;
  for (let i = from; i < to; i++)
    out[at++] = out[i];
  if (v6)
    out[at++] = Ch.RBracket;
  out[at] = Ch.Colon;
  return putU32(out, at + 1, port);
}

/** `,"extra":{...}` with the fields the key is long enough for. */
function putExtra(out: LineOut, at: number, plan: LinePlan, fields: ExtraFields, bytes: Uint8Array, length: number): number {
  const buffer = out.buffer;
  let written = 0;
  for (let i = 0; i < fields.length; i++) {
    const [, offset, size, signed] = fields[i];
    if (offset + size > length)
      continue;
    if (written++ === 0)
      at = put(out.view, at, EXTRA);
    else
      buffer[at++] = Ch.Comma;
    at = put(out.view, at, plan.extraNames[i]);
    if (size === 8) {
      buffer[at++] = Ch.Quote;
      at = putU64(buffer, at, bytes, offset);
      buffer[at++] = Ch.Quote;
    } else {
      const value = u32(bytes, offset);
      if (signed && value >= 0x80000000) {
        buffer[at++] = Ch.Minus;
        at = putU32(buffer, at, 0x100000000 - value);
      } else {
        at = putU32(buffer, at, value);
      }
    }
  }
  if (written === 0)
    return put(out.view, at, EMPTY_EXTRA);
  buffer[at] = Ch.RBrace;
  return at + 1;
}

/**
 * Writes the key object's JSON (after the key's hex and its closing quote) and returns where it
 * ends, or -1 when the key does not decode (the record way says why).
 */
function putKey(out: LineOut, at: number, plan: LinePlan, bytes: Uint8Array, length: number): number {
  const layout = plan.layout;
  const buffer = out.buffer;
  const view = out.view;
  if (layout.keyKind === `pid_tgid`) {
    if (length !== layout.keySize)
      return -1;
    const pidAt = layout.pidOffset ?? 0;
    at = putU64(buffer, put(view, at, KEY_PID), bytes, pidAt);
    at = putU32(buffer, put(view, at, TGID), u32(bytes, pidAt + 4));
    at = putU32(buffer, put(view, at, TID), u32(bytes, pidAt));
  } else {
    const off = plan.tupleOffset;
    if (length < off + CONN_TUPLE_SIZE)
      return -1;
    const metadata = u32(bytes, off + 44);
    const v6 = (metadata & 2) !== 0;
    const sport = u16(bytes, off + 32);
    const dport = u16(bytes, off + 34);
    at = put(view, at, KEY_TUPLE[(v6 ? 2 : 0) + (metadata & 1)]);
    const saddr = at;
    at = v6 ? putIPv6(out, at, bytes, off) : putIPv4(buffer, at, bytes, off + 8);
    const saddrEnd = at;
    at = putU32(buffer, put(view, at, SPORT), sport);
    at = put(view, at, DADDR);
    const daddr = at;
    at = v6 ? putIPv6(out, at, bytes, off + 16) : putIPv4(buffer, at, bytes, off + 24);
    const daddrEnd = at;
    at = putU32(buffer, put(view, at, DPORT), dport);
    at = putEndpoint(buffer, put(view, at, SRC), saddr, saddrEnd, v6, sport);
    at = putEndpoint(buffer, put(view, at, DST), daddr, daddrEnd, v6, dport);
    at = putU32(buffer, put(view, at, NETNS), u32(bytes, off + 36));
    at = putU32(buffer, put(view, at, PID), u32(bytes, off + 40));
    at = putU32(buffer, put(view, at, METADATA), metadata);
  }
  if (plan.extra !== undefined)
    at = putExtra(out, at, plan, plan.extra, bytes, length);
  buffer[at] = Ch.RBrace;
  return at + 1;
}

/**
 * Writes one entry's NDJSON line (with its newline) at `at` and returns where it ends, or -1 when
 * the entry must go the record way (what was written past `at` is then garbage). The caller made
 * room for lineBound(plan, entry) bytes.
 */
export function putEntryLine(out: LineOut, at: number, plan: LinePlan, entry: RawEntry): number {
  const key = entry.key;
  const value = entry.value;
  if (key === null || entry.keyBtf !== undefined || (value === null && (entry.valueBtf !== undefined || plan.btfAges)))
    return -1;
  const buffer = out.buffer;
  const view = out.view;
  at = putHex(view, put(view, at, plan.prefix), key, 0, entry.keyLength);
  at = putKey(out, at, plan, key, entry.keyLength);
  if (at < 0)
    return -1;
  if (value !== null) {
    if (!entry.perCpu) {
      at = putHex(view, put(view, at, VALUE_HEX), value, 0, entry.valueLength);
      buffer[at++] = Ch.Quote;
      if (plan.ages.length > 0) {
        const age = ageFromBytes(value, entry.valueLength, plan.ages, plan.readNs);
        if (age !== null) {
          if (!Number.isFinite(age.ageSeconds))
            return -1;
          at = putText(buffer, put(view, at, AGE_SECONDS), String(age.ageSeconds));
          return put(view, at, plan.ageTails.get(age.ageField)!);
        }
      }
    } else {
      at = put(view, at, VALUES_HEX);
      for (let i = 0, from = 0; i < entry.cpus; i++, from += entry.valueStride) {
        if (i > 0)
          buffer[at++] = Ch.Comma;
        buffer[at] = Ch.Quote;
        at = putHex(view, at + 1, value, from, from + entry.valueLength);
        buffer[at++] = Ch.Quote;
      }
      buffer[at++] = Ch.RBracket;
    }
  }
  buffer[at] = Ch.RBrace;
  buffer[at + 1] = Ch.Newline;
  return at + 2;
}
