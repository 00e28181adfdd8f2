// Turns key bytes into the decoded key of an entry record, and BTF-decoded keys (system-probe)
// back into key bytes; reads the conn_tuple_t and the timestamps some values carry. Layouts:
// ../shared/reference/usm-maps-and-formats.md §1 (conn_tuple_t, little-endian host) and
// src/catalogue.ts (where the tuple, pid, fd, goroutine id and timestamps sit in each map).
import {formatEndpoint, formatIPv4, formatIPv4Number, formatIPv6, formatIPv6Words} from '../addr.ts';
import {CONN_TUPLE_SIZE, type CatalogueMap, type ExtraFields, type KeyLayout} from '../catalogue.ts';
import type {ConnTupleKey, DecodedKey, PidTgidKey} from '../schema.ts';
import type {LosslessValue} from './json.ts';

export const u16 = (b: Uint8Array, o: number) => b[o] | (b[o + 1] << 8);
export const u32 = (b: Uint8Array, o: number) => (b[o] | (b[o + 1] << 8) | (b[o + 2] << 16)) + b[o + 3] * 0x1000000;

/** u64 LE as a decimal string, exact. */
export function u64String(b: Uint8Array, o: number): string {
  const low = u32(b, o);
  const high = u32(b, o + 4);
  if (high < 0x200000)
    return String(high * 0x100000000 + low);
  return ((BigInt(high) << 32n) | BigInt(low)).toString();
}

/** s64 LE as a decimal string, exact. */
function s64String(b: Uint8Array, o: number): string {
  const high = u32(b, o + 4);
  if (high < 0x80000000)
    return u64String(b, o);
  return BigInt.asIntN(64, (BigInt(high) << 32n) | BigInt(u32(b, o))).toString();
}

/** The conn_tuple_t at `off` (the caller checked there are 48 bytes). */
export function decodeTuple(bytes: Uint8Array, off: number): ConnTupleKey {
  const metadata = u32(bytes, off + 44);
  const v6 = (metadata & 2) !== 0;
  const saddr = v6 ? formatIPv6(bytes, off) : formatIPv4(bytes, off + 8);
  const daddr = v6 ? formatIPv6(bytes, off + 16) : formatIPv4(bytes, off + 24);
  const sport = u16(bytes, off + 32);
  const dport = u16(bytes, off + 34);
  return {
    kind: `conn_tuple`,
    family: v6 ? `v6` : `v4`,
    proto: (metadata & 1) !== 0 ? `tcp` : `udp`,
    saddr, sport, daddr, dport,
    src: formatEndpoint(saddr, sport),
    dst: formatEndpoint(daddr, dport),
    netns: u32(bytes, off + 36),
    pid: u32(bytes, off + 40),
    metadata,
  };
}

/**
 * A conn_tuple_t key as scan decodes it when nothing sees its records whole (no capture, no
 * recheck): IPv4 addresses kept as numbers, every text field made only when read. Most entries
 * are then judged and counted by number alone (src/validate/rules.ts, src/report/aggregate.ts),
 * a million of them without four strings each. Reads as the ConnTupleKey decodeTuple makes, and
 * JSON.stringify gives that object (toJSON), field for field.
 */
export class LeanTuple implements ConnTupleKey {
  readonly kind = `conn_tuple` as const;
  // Written by refill() (the constructor's, and again when scan reuses the entry record that
  // holds it: src/dump/leanPool.ts), `declare`d: no field definitions before it.
  declare family: `v4` | `v6`;
  declare proto: `tcp` | `udp`;
  declare sport: number;
  declare dport: number;
  declare netns: number;
  declare pid: number;
  declare metadata: number;
  /** IPv4: the addresses as int32 (a.b.c.d is a << 24 | b << 16 | c << 8 | d); 0 for IPv6. */
  declare saddrV4: number;
  declare daddrV4: number;
  /** IPv6: the addresses as 8 int32, 4 per address, each of 4 bytes in network order; null for IPv4. */
  declare v6Words: ReadonlyArray<number> | null;
  /** The addresses' text, once made. */
  private saddrText: string | null = null;
  private daddrText: string | null = null;
  /** The array v6Words was last, kept for the next IPv6 refill (a tuple that is refilled holds its words alone: copy()). */
  private spareWords: Array<number> | null = null;
  /** The map's extra key fields (catalogue `extra`), when it has any. */
  declare extra: {[name: string]: number | string} | undefined;

  constructor(bytes: Uint8Array, off: number, extra?: {[name: string]: number | string}) {
    this.refill(bytes, off, extra);
  }

  /** Makes this the tuple at bytes[off] (the caller checked there are 48 bytes). */
  refill(bytes: Uint8Array, off: number, extra: {[name: string]: number | string} | undefined): void {
    this.extra = extra;
    const metadata = u32(bytes, off + 44);
    const v6 = (metadata & 2) !== 0;
    this.family = v6 ? `v6` : `v4`;
    this.proto = (metadata & 1) !== 0 ? `tcp` : `udp`;
    this.sport = u16(bytes, off + 32);
    this.dport = u16(bytes, off + 34);
    this.netns = u32(bytes, off + 36);
    this.pid = u32(bytes, off + 40);
    this.metadata = metadata;
    this.saddrV4 = v6 ? 0 : i32BigEndian(bytes, off + 8);
    this.daddrV4 = v6 ? 0 : i32BigEndian(bytes, off + 24);
    let words: Array<number> | null = null;
    if (v6) {
      words = this.spareWords ??= [0, 0, 0, 0, 0, 0, 0, 0];
      for (let i = 0; i < 8; i++)
        words[i] = i32BigEndian(bytes, off + 4 * i);
    }
    this.v6Words = words;
    this.saddrText = null;
    this.daddrText = null;
  }

  /** A tuple of its own with the same fields (what a report keeps of a tuple that will be refilled). */
  copy(): LeanTuple {
    const copied = Object.assign(Object.create(LeanTuple.prototype) as LeanTuple, this);
    copied.v6Words = this.v6Words === null ? null : this.v6Words.slice();
    copied.spareWords = null;
    return copied;
  }

  get saddr(): string {
    return this.saddrText ??= this.v6Words === null ? formatIPv4Number(this.saddrV4) : formatIPv6Words(this.v6Words, 0);
  }

  get daddr(): string {
    return this.daddrText ??= this.v6Words === null ? formatIPv4Number(this.daddrV4) : formatIPv6Words(this.v6Words, 4);
  }

  get src(): string {
    return formatEndpoint(this.saddr, this.sport);
  }

  get dst(): string {
    return formatEndpoint(this.daddr, this.dport);
  }

  toJSON(): ConnTupleKey {
    const key: ConnTupleKey = {
      kind: `conn_tuple`, family: this.family, proto: this.proto, saddr: this.saddr, sport: this.sport, daddr: this.daddr, dport: this.dport,
      src: this.src, dst: this.dst, netns: this.netns, pid: this.pid, metadata: this.metadata,
    };
    if (this.extra !== undefined)
      key.extra = this.extra;
    return key;
  }
}

/** 4 network-order bytes as an int32, first byte highest. */
const i32BigEndian = (b: Uint8Array, o: number) => (b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3];

function decodeExtra(fields: ExtraFields, bytes: Uint8Array, length: number): {[name: string]: number | string} {
  const extra: {[name: string]: number | string} = {};
  // Indexed, not `for...of` with destructuring: an iterator per entry of the maps that have extras.
  for (let i = 0; i < fields.length; i++) {
    const [name, offset, size, signed] = fields[i];
    if (offset + size > length)
      continue;
    if (size === 8)
      extra[name] = u64String(bytes, offset);
    else
      extra[name] = signed ? u32(bytes, offset) | 0 : u32(bytes, offset);
  }
  return extra;
}

type ExtraDecoder = (bytes: Uint8Array, length: number) => {[name: string]: number | string};

/**
 * decodeExtra for one layout's fields, as a function made for them: an object literal with their
 * names, each read at its offset, when the key holds every field (else decodeExtra). decodeExtra's
 * store by a name that changes from map to map cost more than the rest of the key's decoding.
 */
function extraDecoder(fields: ExtraFields): ExtraDecoder {
  // Keys come in runs of one map: the last one's decoder at hand, the others kept by their fields.
  if (fields === lastExtra.fields)
    return lastExtra.decoder;
  let decoder = extraDecoders.get(fields);
  if (decoder === undefined) {
    decoder = makeExtraDecoder(fields);
    extraDecoders.set(fields, decoder);
  }
  lastExtra.fields = fields;
  lastExtra.decoder = decoder;
  return decoder;
}
const extraDecoders = new WeakMap<ExtraFields, ExtraDecoder>();
const lastExtra: {fields: ExtraFields | null, decoder: ExtraDecoder} = {fields: null, decoder: () => ({})};

function makeExtraDecoder(fields: ExtraFields): ExtraDecoder {
  const generic: ExtraDecoder = (bytes, length) => decodeExtra(fields, bytes, length);
  let end = 0;
  const members: Array<string> = [];
  for (const [name, offset, size, signed] of fields) {
    // Only what the literal reads as decodeExtra does (`__proto__` would set the prototype).
    if (name === `__proto__` || !Number.isSafeInteger(offset) || offset < 0 || (size !== 4 && size !== 8))
      return generic;
    end = Math.max(end, offset + size);
    members.push(`${JSON.stringify(name)}: ${size === 8 ? `u64String(bytes, ${offset})` : signed ? `u32(bytes, ${offset}) | 0` : `u32(bytes, ${offset})`}`);
  }
  return new Function(`u32`, `u64String`, `generic`, `return function decodeExtraOf(bytes, length) {
  return length >= ${end} ? {${members.join(`, `)}} : generic(bytes, length);
};`)(u32, u64String, generic) as ExtraDecoder;
}

/**
 * Decodes a key of `length` bytes per its layout; a string is the reason it cannot be. `lean`:
 * a conn_tuple_t as a LeanTuple (nothing will see the record whole).
 */
/** `into`: with `lean`, a LeanTuple nothing holds any longer, refilled and returned instead of a new one. */
export function decodeKey(layout: KeyLayout, bytes: Uint8Array, length: number, lean = false, into: LeanTuple | null = null): DecodedKey | string {
  switch (layout.keyKind) {
    case `pid_tgid`: {
      const at = layout.pidOffset ?? 0;
      if (length !== layout.keySize)
        return `pid_tgid key must be ${layout.keySize} bytes, got ${length}`;
      const key: PidTgidKey = {kind: `pid_tgid`, pidTgid: u64String(bytes, at), tgid: u32(bytes, at + 4), tid: u32(bytes, at)};
      if (layout.extra !== undefined)
        key.extra = extraDecoder(layout.extra)(bytes, length);
      return key;
    }
    case `pid_fd`:
      if (length !== layout.keySize)
        return `pid_fd key must be ${layout.keySize} bytes, got ${length}`;
      return {kind: `pid_fd`, pid: u32(bytes, layout.pidOffset ?? 0), fd: u32(bytes, layout.fdOffset ?? 4)};
    case `pid_goroutine`:
      if (length !== layout.keySize)
        return `pid + goroutine key must be ${layout.keySize} bytes, got ${length}`;
      return {kind: `pid_goroutine`, pid: u32(bytes, layout.pidOffset ?? 0), goroutineId: s64String(bytes, layout.goroutineOffset ?? 8)};
    case `pointer`: {
      if (length !== layout.keySize || (length !== 4 && length !== 8))
        return `pointer key must be ${layout.keySize} bytes, got ${length}`;
      const high = length === 8 ? u32(bytes, 4).toString(16).padStart(8, `0`) : ``;
      return {kind: `pointer`, pointer: `0x${high}${u32(bytes, 0).toString(16).padStart(8, `0`)}`};
    }
    default: {
      const off = layout.tupleOffset ?? 0;
      if (length < off + CONN_TUPLE_SIZE)
        return `key is ${length} bytes, too short for a conn_tuple_t at offset ${off}`;
      const extra = layout.extra !== undefined ? extraDecoder(layout.extra)(bytes, length) : undefined;
      if (lean && into !== null) {
        into.refill(bytes, off, extra);
        return into;
      }
      if (lean)
        return new LeanTuple(bytes, off, extra);
      const key = decodeTuple(bytes, off);
      if (extra !== undefined)
        key.extra = extra;
      return key;
    }
  }
}

/** One line for a key that is not a conn_tuple_t (reports, messages). */
export function describeOtherKey(key: Exclude<DecodedKey, ConnTupleKey>): string {
  switch (key.kind) {
    case `pid_tgid`: {
      const extra = Object.entries(key.extra ?? {}).map(([name, value]) => `, ${name}=${value}`).join(``);
      return `pid_tgid=${key.pidTgid} (pid=${key.tgid}, tid=${key.tid}${extra})`;
    }
    case `pid_fd`: return `pid=${key.pid} fd=${key.fd}`;
    case `pid_goroutine`: return `pid=${key.pid} goroutine=${key.goroutineId}`;
    default: return `pointer ${key.pointer}`;
  }
}

// -------------------------------------------------------------------------------------------
// Values: the conn_tuple_t some carry, and their CLOCK_MONOTONIC timestamps.

/** The conn_tuple_t at `offset` of a value of `length` bytes; null when the value is too short. */
export function valueTupleFromBytes(value: Uint8Array, length: number, offset: number): ConnTupleKey | null {
  if (length < offset + CONN_TUPLE_SIZE)
    return null;
  return decodeTuple(value, offset);
}

export interface Age {
  ageSeconds: number;
  ageField: string;
}

/**
 * The age of a value: seconds from its newest non-zero timestamp field to `readNs` (the
 * CLOCK_MONOTONIC moment the map was read), to the microsecond; never below 0 (a field
 * written while the dump ran). Null when every field is 0 or past the value's end. The Age is
 * one object, written again by the next call (read it at once): not one per dated entry.
 */
export function ageFromBytes(value: Uint8Array, length: number, fields: ReadonlyArray<readonly [string, number]>, readNs: number): Age | null {
  let newest = 0;
  let field = ``;
  // Indexed, not `for...of` with destructuring: an iterator per dated entry.
  for (let i = 0; i < fields.length; i++) {
    const [name, offset] = fields[i];
    if (offset + 8 > length)
      continue;
    // u64 as a Number: exact below 2^53 ns (104 days of uptime), within a few ns above.
    const ns = u32(value, offset + 4) * 0x100000000 + u32(value, offset);
    if (ns > newest) {
      newest = ns;
      field = name;
    }
  }
  return newest === 0 ? null : ageOf(newest, field, readNs);
}

function ageOf(ns: number, field: string, readNs: number): Age {
  // Microseconds: fine enough to tell an entry written just after a snapshot from one just before.
  AGE.ageSeconds = Math.max(0, Math.round((readNs - ns) / 1e3) / 1e6);
  AGE.ageField = field;
  return AGE;
}
/** What ageFromBytes and ageFromBtf return, written again at each call. */
const AGE: Age = {ageSeconds: 0, ageField: ``};

/** The same from a BTF-decoded value (system-probe): the named fields, searched through nested objects (the same one Age object). */
export function ageFromBtf(value: LosslessValue | undefined, names: ReadonlyArray<string>, readNs: number): Age | null {
  let newest = 0;
  let field = ``;
  const walk = (object: LosslessValue | undefined, depth: number) => {
    if (!isObject(object) || depth > 4 || `saddr_h` in object)
      return;
    for (const [name, member] of Object.entries(object)) {
      if (names.includes(name)) {
        const ns = Number(toBigInt(member) ?? 0n);
        if (ns > newest) {
          newest = ns;
          field = name;
        }
      } else {
        walk(member, depth + 1);
      }
    }
  };
  walk(value, 0);
  return newest === 0 ? null : ageOf(newest, field, readNs);
}

/** The conn_tuple_t inside a BTF-decoded value (the value itself, or a member holding one). */
export function valueTupleFromBtf(value: LosslessValue | undefined): ConnTupleKey | null {
  const tuple = isObject(value) && `saddr_h` in value ? value : isObject(value) ? Object.values(value).find(member => isObject(member) && `saddr_h` in member) : undefined;
  if (!isObject(tuple))
    return null;
  const out = Buffer.alloc(CONN_TUPLE_SIZE);
  for (const [name, at, size] of TUPLE_FIELDS) {
    const number = toBigInt(tuple[name]);
    if (number === null)
      return null;
    writeInt(out, at, size, number);
  }
  return decodeTuple(out, 0);
}

// -------------------------------------------------------------------------------------------
// BTF keys (system-probe prints decoded structs, fields in alphabetical order, u64 as numbers).

const TUPLE_FIELDS: ReadonlyArray<readonly [string, number, 2 | 4 | 8]> = [
  [`saddr_h`, 0, 8], [`saddr_l`, 8, 8], [`daddr_h`, 16, 8], [`daddr_l`, 24, 8],
  [`sport`, 32, 2], [`dport`, 34, 2], [`netns`, 36, 4], [`pid`, 40, 4], [`metadata`, 44, 4],
];

type BtfObject = {[key: string]: LosslessValue};

function isObject(value: LosslessValue | undefined): value is BtfObject {
  return value !== null && typeof value === `object` && !Array.isArray(value);
}

function toBigInt(value: LosslessValue | undefined): bigint | null {
  if (typeof value === `bigint`)
    return value;
  if (typeof value === `number` && Number.isInteger(value))
    return BigInt(value);
  if (typeof value === `string` && /^(?:0x[0-9a-fA-F]+|-?[0-9]+)$/.test(value))
    return BigInt(value);
  return null;
}

function writeInt(out: Buffer, offset: number, size: number, value: bigint): void {
  // Two's complement for negative values (s32 correlation_id).
  const masked = BigInt.asUintN(size * 8, value);
  for (let i = 0; i < size; i++)
    out[offset + i] = Number((masked >> BigInt(8 * i)) & 0xffn);
}

/**
 * Re-encodes a BTF-decoded key into its bytes (`keySize` long). Handles a bare conn_tuple_t,
 * a tuple nested under any member (`tup`, `tuple`) next to the layout's extra fields, u64
 * pid_tgid numbers (or a struct holding one), pid_fd and pid + goroutine structs, and pointers
 * (`"0x..."`). Returns the reason when the object does not have the fields it must have.
 */
export function encodeBtfKey(map: KeyLayout, key: LosslessValue, keySize: number): Buffer | string {
  const out = Buffer.alloc(keySize);
  const put = (name: string, offset: number, size: number, value: LosslessValue | undefined): string | null => {
    const number = toBigInt(value);
    if (number === null || offset + size > keySize)
      return `${name} is missing or not an integer in ${describe(key)}`;
    writeInt(out, offset, size, number);
    return null;
  };
  switch (map.keyKind) {
    case `pid_tgid`: {
      const value = isObject(key) ? key.pid_tgid ?? key.tgid : key;
      const number = toBigInt(value);
      if (number === null || number < 0n || keySize !== map.keySize)
        return `pid_tgid key is not a u64: ${describe(key)}`;
      writeInt(out, map.pidOffset ?? 0, 8, number);
      for (const [name, at, size] of map.extra ?? []) {
        const problem = isObject(key) ? put(name, at, size, key[name]) : `key field ${name} is missing`;
        if (problem !== null)
          return problem;
      }
      return out;
    }
    case `pid_fd`:
    case `pid_goroutine`: {
      if (!isObject(key))
        return `expected a struct key, got ${describe(key)}`;
      const second = map.keyKind === `pid_fd` ? put(`fd`, map.fdOffset ?? 4, 4, key.fd) : put(`goroutine_id`, map.goroutineOffset ?? 8, 8, key.goroutine_id);
      return put(`pid`, map.pidOffset ?? 0, 4, key.pid) ?? second ?? out;
    }
    case `pointer`:
      return put(`pointer`, 0, keySize, key) ?? out;
    default:
      break;
  }
  if (!isObject(key))
    return `expected a struct key, got ${describe(key)}`;
  const offset = map.tupleOffset ?? 0;
  let tuple: BtfObject | undefined;
  let tupleMember: string | null = null;
  if (`saddr_h` in key) {
    tuple = key;
  } else {
    for (const [name, member] of Object.entries(key)) {
      if (isObject(member) && `saddr_h` in member) {
        tuple = member;
        tupleMember = name;
        break;
      }
    }
  }
  if (tuple === undefined)
    return `no conn_tuple_t in the key: ${describe(key)}`;
  if (offset + CONN_TUPLE_SIZE > keySize)
    return `key is ${keySize} bytes, too short for a conn_tuple_t at offset ${offset}`;
  for (const [name, at, size] of TUPLE_FIELDS) {
    const value = toBigInt(tuple[name]);
    if (value === null)
      return `conn_tuple_t field ${name} is missing or not an integer`;
    writeInt(out, offset + at, size, value);
  }
  for (const [name, at, size] of map.extra ?? []) {
    if (tupleMember === null && !(name in key))
      continue;
    const value = toBigInt(key[name]);
    if (value === null)
      return `key field ${name} is missing or not an integer`;
    if (at + size <= keySize)
      writeInt(out, at, size, value);
  }
  return out;
}

function describe(value: LosslessValue): string {
  const text = JSON.stringify(value, (_k, v) => (typeof v === `bigint` ? v.toString() : v)) ?? String(value);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

// -------------------------------------------------------------------------------------------

/**
 * Remembers the keys seen in one map dump, to drop repeats (a hash map walked while it changes
 * can yield a key twice). It stores a 64-bit hash per key in an open-addressing table of
 * Int32 pairs (16 bytes per key at most) instead of the key text, so a million-entry map costs
 * ~16 MB, not ~150 MB. Two different keys share a 64-bit hash with probability ~n²/2^65
 * (about 3e-8 at a million keys); that would drop one of them as a "duplicate".
 */
export class KeySet {
  private table = new Int32Array(2 * 1024);
  private used = 0;

  /** Adds the key; false when it was already there. */
  add(bytes: Uint8Array, length: number): boolean {
    // Two independent 32-bit hashes (FNV-1a and a multiplicative mix), never both zero, four key
    // bytes per step (a byte per step was a seventh of dump-maps' CPU). Every step is a bijection
    // of the hash for a given word, so keys differing in one word never share either hash.
    let h1 = 0x811c9dc5 | 0;
    let h2 = 0x9747b28c ^ length;
    let i = 0;
    for (; i + 4 <= length; i += 4) {
      const w = bytes[i] | (bytes[i + 1] << 8) | (bytes[i + 2] << 16) | (bytes[i + 3] << 24);
      h1 = Math.imul(h1 ^ w, 0x01000193);
      h2 = Math.imul(h2 ^ w, 0x5bd1e995);
      h2 ^= h2 >>> 15;
    }
    for (; i < length; i++) {
      const b = bytes[i];
      h1 = Math.imul(h1 ^ b, 0x01000193);
      h2 = Math.imul(h2 ^ b, 0x5bd1e995);
      h2 ^= h2 >>> 15;
    }
    h2 = Math.imul(h2 ^ (h2 >>> 13), 0x85ebca6b);
    h2 ^= h2 >>> 16;
    if (h1 === 0 && h2 === 0)
      h1 = 1;
    if (2 * (this.used + 1) * 2 > this.table.length)
      this.resize();
    return this.insert(this.table, h1, h2);
  }

  get size(): number {
    return this.used;
  }

  private insert(table: Int32Array, h1: number, h2: number): boolean {
    const slots = table.length >>> 1;
    const mask = slots - 1;
    let slot = (h1 ^ Math.imul(h2, 0x27d4eb2d)) & mask;
    for (;;) {
      const a = table[2 * slot];
      const b = table[2 * slot + 1];
      if (a === 0 && b === 0) {
        table[2 * slot] = h1;
        table[2 * slot + 1] = h2;
        this.used++;
        return true;
      }
      if (a === h1 && b === h2)
        return false;
      slot = (slot + 1) & mask;
    }
  }

  private resize(): void {
    const old = this.table;
    this.table = new Int32Array(old.length * 2);
    this.used = 0;
    for (let i = 0; i < old.length; i += 2) {
      if (old[i] !== 0 || old[i + 1] !== 0)
        this.insert(this.table, old[i], old[i + 1]);
    }
  }
}
