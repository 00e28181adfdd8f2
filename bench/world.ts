// The benchmark's inputs, generated from a seed so every run (and every machine) measures the
// same thing: which USM-named maps hold how many entries, and the key/value bytes of each entry,
// a mix of tuples of connections that exist and of connections that are gone.
import {CONN_TUPLE_SIZE, findCatalogueMap} from '../src/catalogue.ts';

/** Deterministic 32-bit PRNG (mulberry32): same seed, same inputs. */
export function makeRng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface BenchMap {
  /** Catalogue (C) name; the kernel keeps the first 15 characters. */
  name: string;
  keyKind: `conn_tuple` | `pid_tgid`;
  keySize: number;
  valueSize: number;
  /** Share of the full-scale entry count. */
  entries: number;
}

/**
 * One million entries at full scale (BENCH_SCALE=1): 960,000 over the ConnTuple maps the agent
 * fills most, 40,000 pid_tgid entries. Value sizes are the agent's (http_transaction_t is 240 B),
 * because bpftool prints values in hex too and they weigh on every dump.
 */
export const FULL_PLAN: ReadonlyArray<BenchMap> = [
  {name: `connection_states`, keyKind: `conn_tuple`, keySize: 48, valueSize: 4, entries: 200_000},
  {name: `connection_protocol`, keyKind: `conn_tuple`, keySize: 48, valueSize: 16, entries: 200_000},
  {name: `pid_fd_by_tuple`, keyKind: `conn_tuple`, keySize: 48, valueSize: 8, entries: 150_000},
  {name: `tls_enhanced_tags`, keyKind: `conn_tuple`, keySize: 48, valueSize: 6, entries: 100_000},
  {name: `http_in_flight`, keyKind: `conn_tuple`, keySize: 48, valueSize: 240, entries: 60_000},
  {name: `http2_in_flight`, keyKind: `conn_tuple`, keySize: 56, valueSize: 64, entries: 60_000},
  {name: `http2_dynamic_table`, keyKind: `conn_tuple`, keySize: 56, valueSize: 40, entries: 50_000},
  {name: `kafka_in_flight`, keyKind: `conn_tuple`, keySize: 56, valueSize: 64, entries: 40_000},
  {name: `redis_in_flight`, keyKind: `conn_tuple`, keySize: 48, valueSize: 32, entries: 40_000},
  {name: `ssl_ctx_by_tuple`, keyKind: `conn_tuple`, keySize: 48, valueSize: 8, entries: 40_000},
  {name: `go_tls_conn_by_tuple`, keyKind: `conn_tuple`, keySize: 48, valueSize: 8, entries: 20_000},
  {name: `ssl_ctx_by_pid_tgid`, keyKind: `pid_tgid`, keySize: 8, valueSize: 8, entries: 20_000},
  {name: `ssl_read_args`, keyKind: `pid_tgid`, keySize: 8, valueSize: 16, entries: 10_000},
  {name: `ssl_write_args`, keyKind: `pid_tgid`, keySize: 8, valueSize: 16, entries: 10_000},
];

export const FULL_ENTRIES = FULL_PLAN.reduce((sum, map) => sum + map.entries, 0);

/** Entries per map for a total of `total` entries (the same proportions as the full plan). */
export function scalePlan(total: number): Array<BenchMap> {
  return FULL_PLAN.map(map => ({...map, entries: Math.max(1, Math.round(map.entries * total / FULL_ENTRIES))}));
}

/** max_entries for a map holding `entries`: the agent's 65,536 default, raised to fit. */
export function maxEntriesFor(entries: number): number {
  let max = 65_536;
  while (max < entries)
    max *= 2;
  return max;
}

/** A connection as both ends' socket tables would show it (local = saddr side). */
export interface Connection {
  saddr: string;
  sport: number;
  daddr: string;
  dport: number;
  v6: boolean;
  udp?: boolean;
  /** Namespace inode of the socket, for the maps that carry it. */
  netns: number;
  pid: number;
}

export interface Thread {
  tgid: number;
  tid: number;
}

/** What exists: the keys built from these are alive, the others are leaked. */
export interface AliveSet {
  connections: ReadonlyArray<Connection>;
  threads: ReadonlyArray<Thread>;
  /** Process ids that exist nowhere (for dead pid_tgid keys and tuple pids). */
  deadPids: ReadonlyArray<number>;
  /** Namespace inodes that exist, for dead tuples that still carry one. */
  netns: ReadonlyArray<number>;
}

/** Share of entries built from what exists; the rest are dead connections and exited threads. */
export const ALIVE_SHARE = 0.7;

const SERVER_PORTS = [80, 443, 5432, 6379, 9092, 8080, 8443, 3306];

/**
 * The key/value bytes of every entry of one map, in a fixed order. The first N entries are the
 * same whatever the total, so a 100k fill is the prefix of the 1M fill. Keys are unique per map.
 */
export function* mapEntries(map: BenchMap, count: number, alive: AliveSet, seed: number): Generator<[Buffer, Buffer]> {
  const rng = makeRng(seed);
  const seen = new Set<string>();
  const catalogue = findCatalogueMap(map.name);
  const tupleOffset = catalogue?.tupleOffset ?? 0;
  const zeroPidNetns = catalogue?.direction === `normalized` || catalogue?.direction === `raw`;
  let attempts = 0;
  let made = 0;
  while (made < count) {
    attempts++;
    const useAlive = rng() < ALIVE_SHARE;
    const key = Buffer.alloc(map.keySize);
    if (map.keyKind === `pid_tgid`) {
      if (useAlive && alive.threads.length > 0) {
        const thread = alive.threads[Math.floor(rng() * alive.threads.length)];
        key.writeUInt32LE(thread.tid, 0);
        key.writeUInt32LE(thread.tgid, 4);
      } else {
        const pid = alive.deadPids[Math.floor(rng() * alive.deadPids.length)];
        key.writeUInt32LE(pid + Math.floor(rng() * 8), 0);
        key.writeUInt32LE(pid, 4);
      }
    } else {
      const connection = useAlive && alive.connections.length > 0
        ? aliveVariant(alive.connections[Math.floor(rng() * alive.connections.length)], rng)
        : deadConnection(rng, alive);
      writeTuple(key, tupleOffset, connection, zeroPidNetns);
      // The fields outside the tuple: http2 stream_id / kafka correlation_id after it, the
      // dynamic table's u64 index before it.
      if (map.keySize > CONN_TUPLE_SIZE && tupleOffset === 0)
        key.writeUInt32LE(1 + Math.floor(rng() * 2000) * 2, CONN_TUPLE_SIZE);
      else if (tupleOffset === 8)
        key.writeUInt32LE(Math.floor(rng() * 4096), 0);
    }
    const text = key.toString(`latin1`);
    if (seen.has(text)) {
      if (attempts > count * 20)
        throw new Error(`cannot make ${count} unique keys for ${map.name}`);
      continue;
    }
    seen.add(text);
    const value = Buffer.alloc(map.valueSize);
    for (let i = 0; i < value.length; i++)
      value[i] = Math.floor(rng() * 256);
    made++;
    yield [key, value];
  }
}

/** The same connection as a map may store it: either direction, with or without pid/netns. */
function aliveVariant(connection: Connection, rng: () => number): Connection {
  if (rng() < 0.5)
    return connection;
  return {...connection, saddr: connection.daddr, sport: connection.dport, daddr: connection.saddr, dport: connection.sport};
}

function deadConnection(rng: () => number, alive: AliveSet): Connection {
  const v6 = rng() < 0.2;
  const udp = rng() < 0.03;
  const client = v6 ? `fd00:${hex16(rng)}::${hex16(rng)}:${hex16(rng)}` : `10.${1 + Math.floor(rng() * 250)}.${Math.floor(rng() * 256)}.${1 + Math.floor(rng() * 254)}`;
  const server = v6 ? `fd00:${hex16(rng)}::${hex16(rng)}` : `10.${1 + Math.floor(rng() * 250)}.${Math.floor(rng() * 256)}.${1 + Math.floor(rng() * 254)}`;
  return {
    saddr: client,
    sport: 32768 + Math.floor(rng() * 28232),
    daddr: server,
    dport: SERVER_PORTS[Math.floor(rng() * SERVER_PORTS.length)],
    v6,
    udp,
    netns: alive.netns.length > 0 ? alive.netns[Math.floor(rng() * alive.netns.length)] : 0,
    pid: alive.deadPids.length > 0 ? alive.deadPids[Math.floor(rng() * alive.deadPids.length)] : 0,
  };
}

function hex16(rng: () => number): string {
  return Math.floor(rng() * 0x10000).toString(16);
}

/** conn_tuple_t at `offset`, as the agent writes it (see usm-maps-and-formats.md §1). */
export function writeTuple(key: Buffer, offset: number, c: Connection, zeroPidNetns: boolean): void {
  writeAddress(key, offset, c.saddr, c.v6);
  writeAddress(key, offset + 16, c.daddr, c.v6);
  key.writeUInt16LE(c.sport, offset + 32);
  key.writeUInt16LE(c.dport, offset + 34);
  key.writeUInt32LE(zeroPidNetns ? 0 : c.netns, offset + 36);
  key.writeUInt32LE(zeroPidNetns ? 0 : c.pid, offset + 40);
  key.writeUInt32LE((c.udp ? 0 : 1) | (c.v6 ? 2 : 0), offset + 44);
}

function writeAddress(key: Buffer, offset: number, address: string, v6: boolean): void {
  if (!v6) {
    const octets = address.split(`.`);
    for (let i = 0; i < 4; i++)
      key[offset + 8 + i] = Number(octets[i]);
    return;
  }
  ipv6Bytes(address).copy(key, offset);
}

export function ipv6Bytes(address: string): Buffer {
  const out = Buffer.alloc(16);
  const [head, tail] = address.includes(`::`) ? address.split(`::`) : [address, null];
  const headGroups = head ? head.split(`:`) : [];
  const tailGroups = tail ? tail.split(`:`) : [];
  const groups = tail === null ? headGroups : [...headGroups, ...new Array<string>(8 - headGroups.length - tailGroups.length).fill(`0`), ...tailGroups];
  groups.forEach((group, i) => out.writeUInt16BE(parseInt(group, 16), i * 2));
  return out;
}

/** bpftool's spelling of bytes in a JSON dump: ["0x0a","0x00",...]. */
const HEX_WORDS = Array.from({length: 256}, (_, i) => `"0x${i.toString(16).padStart(2, `0`)}"`);
export function bpftoolHexArray(bytes: Uint8Array): string {
  let out = `[`;
  for (let i = 0; i < bytes.length; i++)
    out += (i ? `,` : ``) + HEX_WORDS[bytes[i]];
  return `${out}]`;
}

/** `bpftool batch` spelling: space-separated two-digit hex. */
const HEX_PAIRS = Array.from({length: 256}, (_, i) => i.toString(16).padStart(2, `0`));
export function batchHex(bytes: Uint8Array): string {
  let out = ``;
  for (let i = 0; i < bytes.length; i++)
    out += (i ? ` ` : ``) + HEX_PAIRS[bytes[i]];
  return out;
}
