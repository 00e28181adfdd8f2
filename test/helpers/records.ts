// The one builder of hand-made wire records for tests: small functions that fill in the fields a
// real stage would, so a test states only what matters to it. Every record they make passes the
// spec (test/schema.test.ts checks the samples; these are checked where stages read them).
import {formatEndpoint} from '../../src/addr.ts';
import {findCatalogueMap, kernelName} from '../../src/catalogue.ts';
import {
  SCHEMA_VERSION, type ConnTupleKey, type EntryRecord, type NetnsRecord, type PidTgidKey, type ProcessRecord, type SnapshotRecord, type SocketRecord,
  type SocketState, type VerdictRecord,
} from '../../src/schema.ts';
import {connTupleBytes, pidTgidBytes} from './bpf.ts';

/** The network namespace of hand-made snapshots unless a test says otherwise. */
export const DEFAULT_NETNS = 4026531840;

export function mapRecord(mapId: number, catalogName: string, more: Record<string, unknown> = {}) {
  const known = findCatalogueMap(catalogName);
  return {
    type: `map`, v: SCHEMA_VERSION, mapId, name: kernelName(catalogName), catalogName,
    keyKind: known?.keyKind ?? `conn_tuple`, mapType: `hash`, keySize: known?.keySize ?? 48, valueSize: 8,
    maxEntries: 1024, holders: [], backend: `bpftool`, ...more,
  };
}

export function mapStats(mapId: number, map: string, entries: number, more: Record<string, unknown> = {}) {
  return {type: `mapstats`, v: SCHEMA_VERSION, mapId, map, entries, duplicates: 0, errors: 0, btf: false, complete: true, ...more};
}

export type TupleSpec = {saddr: string, sport: number, daddr: string, dport: number, netns?: number, pid?: number, udp?: boolean};

export function tupleKey(t: TupleSpec): ConnTupleKey {
  const v6 = t.saddr.includes(`:`) || t.daddr.includes(`:`);
  return {
    kind: `conn_tuple`, family: v6 ? `v6` : `v4`, proto: t.udp ? `udp` : `tcp`,
    saddr: t.saddr, sport: t.sport, daddr: t.daddr, dport: t.dport,
    src: formatEndpoint(t.saddr, t.sport), dst: formatEndpoint(t.daddr, t.dport),
    netns: t.netns ?? 0, pid: t.pid ?? 0, metadata: (t.udp ? 0 : 1) | (v6 ? 2 : 0),
  };
}

export function pidKey(tgid: number, tid: number): PidTgidKey {
  return {kind: `pid_tgid`, pidTgid: String((BigInt(tgid) << 32n) | BigInt(tid)), tgid, tid};
}

/** An entry of a conn_tuple map, its keyHex the real key bytes. */
export function tupleEntry(spec: TupleSpec, mapId = 10, map = `http_in_flight`): EntryRecord {
  return {type: `entry`, v: SCHEMA_VERSION, mapId, map, keyHex: connTupleBytes(spec).toString(`hex`), valueHex: `00`, key: tupleKey(spec)};
}

/** An entry of a pid_tgid map, its keyHex the real key bytes. */
export function pidEntry(tgid: number, tid: number, mapId = 20, map = `ssl_read_args`): EntryRecord {
  return {type: `entry`, v: SCHEMA_VERSION, mapId, map, keyHex: pidTgidBytes(tgid, tid).toString(`hex`), valueHex: `00`, key: pidKey(tgid, tid)};
}

export type SocketSpec = {netns?: number, proto?: `tcp` | `udp`, laddr: string, lport: number, raddr?: string, rport?: number, state?: SocketState, listedFamily?: `v4` | `v6`, inode?: number};

/** A socket: listening when it has no remote port, established when it has one. */
export function socketRecord(spec: SocketSpec): SocketRecord {
  const family = spec.laddr.includes(`:`) ? `v6` : `v4`;
  return {
    type: `socket`, v: SCHEMA_VERSION, netnsInode: spec.netns ?? DEFAULT_NETNS, proto: spec.proto ?? `tcp`, family,
    listedFamily: spec.listedFamily ?? family, laddr: spec.laddr, lport: spec.lport,
    raddr: spec.raddr ?? (family === `v6` ? `::` : `0.0.0.0`), rport: spec.rport ?? 0,
    state: spec.state ?? (spec.rport ? `ESTABLISHED` : `LISTEN`), inode: spec.inode ?? 1000 + spec.lport, uid: 0,
  };
}

/** The record that closes a snapshot-conns or snapshot-pids stream. */
export function snapshotCloser(of: `conns` | `pids`, complete = true): SnapshotRecord {
  return {type: `snapshot`, v: SCHEMA_VERSION, of, procRoot: `/proc`, time: `2024-01-01T00:00:00.000Z`, timeMs: 0, count: 1, complete};
}

let serial = 0;

export function verdict(mapId: number, map: string, key: ConnTupleKey | PidTgidKey | null, status: VerdictRecord[`status`], reason: VerdictRecord[`reason`], more: Record<string, unknown> = {}) {
  serial += 1;
  return {
    type: `verdict`, v: SCHEMA_VERSION, mapId, map, keyHex: serial.toString(16).padStart(16, `0`), key, status, reason,
    checks: 1, ...more,
  };
}

export function netns(netnsInode: number, pids: Array<number>, more: Partial<NetnsRecord> = {}): NetnsRecord {
  return {
    type: `netns`, v: SCHEMA_VERSION, netnsInode, foundBy: [`process`], pids, paths: [],
    readVia: `proc-pid:${pids[0] ?? 1}`, complete: true, ...more,
  };
}

export function processRecord(pid: number, comm: string, more: Partial<ProcessRecord> = {}): ProcessRecord {
  return {type: `process`, v: SCHEMA_VERSION, pid, tids: [pid], state: `S`, startTime: 100, comm, netnsInode: DEFAULT_NETNS, ...more};
}

export function summary(stage: `validate` | `recheck`, mapId: number, map: string, counts: {total: number, alive: number, leaked: number, unknown?: number, resolved?: number, raceFiltered?: number}) {
  return {type: `summary`, v: SCHEMA_VERSION, stage, mapId, map, unknown: 0, resolved: 0, raceFiltered: 0, ...counts};
}

export const ndjson = (records: Array<object>): string => records.map(record => JSON.stringify(record)).join(`\n`) + `\n`;
