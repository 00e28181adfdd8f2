// Turns key bytes into the decoded key of an entry record, and BTF-decoded keys (system-probe)
// back into key bytes. Layouts: ../shared/reference/usm-maps-and-formats.md §1 (conn_tuple_t,
// little-endian host) and §3 (where the tuple sits in each key).
import {formatEndpoint, formatIPv4, formatIPv6} from '../addr.ts';
import {CONN_TUPLE_SIZE, type CatalogueMap} from '../catalogue.ts';
import type {ConnTupleKey, DecodedKey, PidTgidKey} from '../schema.ts';
import type {LosslessValue} from './json.ts';

const u16 = (b: Uint8Array, o: number) => b[o] | (b[o + 1] << 8);
const u32 = (b: Uint8Array, o: number) => (b[o] | (b[o + 1] << 8) | (b[o + 2] << 16)) + b[o + 3] * 0x1000000;

/** u64 LE as a decimal string, exact. */
export function u64String(b: Uint8Array, o: number): string {
  const low = u32(b, o);
  const high = u32(b, o + 4);
  if (high < 0x200000)
    return String(high * 0x100000000 + low);
  return ((BigInt(high) << 32n) | BigInt(low)).toString();
}

/** Decodes a key of `length` bytes per the catalogue entry; a string is the reason it cannot be. */
export function decodeKey(map: CatalogueMap, bytes: Uint8Array, length: number): DecodedKey | string {
  if (map.keyKind === `pid_tgid`) {
    if (length !== 8)
      return `pid_tgid key must be 8 bytes, got ${length}`;
    const key: PidTgidKey = {kind: `pid_tgid`, pidTgid: u64String(bytes, 0), tgid: u32(bytes, 4), tid: u32(bytes, 0)};
    return key;
  }
  const off = map.tupleOffset ?? 0;
  if (length < off + CONN_TUPLE_SIZE)
    return `key is ${length} bytes, too short for a conn_tuple_t at offset ${off}`;
  const metadata = u32(bytes, off + 44);
  const v6 = (metadata & 2) !== 0;
  const saddr = v6 ? formatIPv6(bytes, off) : formatIPv4(bytes, off + 8);
  const daddr = v6 ? formatIPv6(bytes, off + 16) : formatIPv4(bytes, off + 24);
  const sport = u16(bytes, off + 32);
  const dport = u16(bytes, off + 34);
  const key: ConnTupleKey = {
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
  if (map.extra !== undefined) {
    const extra: {[name: string]: number | string} = {};
    for (const [name, offset, size, signed] of map.extra) {
      if (offset + size > length)
        continue;
      if (size === 8)
        extra[name] = u64String(bytes, offset);
      else
        extra[name] = signed ? u32(bytes, offset) | 0 : u32(bytes, offset);
    }
    key.extra = extra;
  }
  return key;
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
 * a tuple nested under any member (`tup`, `tuple`) next to the catalogue's extra fields, and u64
 * pid_tgid numbers. Returns the reason when the object does not have the fields it must have.
 */
export function encodeBtfKey(map: CatalogueMap, key: LosslessValue, keySize: number): Buffer | string {
  const out = Buffer.alloc(keySize);
  if (map.keyKind === `pid_tgid`) {
    const value = isObject(key) ? key.pid_tgid : key;
    const number = toBigInt(value);
    if (number === null || number < 0n || keySize !== 8)
      return `pid_tgid key is not a u64: ${describe(key)}`;
    writeInt(out, 0, 8, number);
    return out;
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
    // Two independent 32-bit hashes (FNV-1a and a multiplicative mix), never both zero.
    let h1 = 0x811c9dc5 | 0;
    let h2 = 0x9747b28c ^ length;
    for (let i = 0; i < length; i++) {
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
