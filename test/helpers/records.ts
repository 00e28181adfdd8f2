// Hand-made wire records for tests of the later stages (report, scan): small builders that fill
// in the fields a real stage would, so a test states only what matters to it.
import {formatEndpoint} from '../../src/addr.ts';
import {findCatalogueMap, kernelName} from '../../src/catalogue.ts';
import {SCHEMA_VERSION, type ConnTupleKey, type PidTgidKey, type VerdictRecord} from '../../src/schema.ts';

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

export function tupleKey(t: {saddr: string, sport: number, daddr: string, dport: number, netns?: number, pid?: number, udp?: boolean}): ConnTupleKey {
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

let serial = 0;

export function verdict(mapId: number, map: string, key: ConnTupleKey | PidTgidKey | null, status: VerdictRecord[`status`], reason: VerdictRecord[`reason`], more: Record<string, unknown> = {}) {
  serial += 1;
  return {
    type: `verdict`, v: SCHEMA_VERSION, mapId, map, keyHex: serial.toString(16).padStart(16, `0`), key, status, reason,
    checks: 1, ...more,
  };
}

export function netns(netnsInode: number, pids: Array<number>, more: Record<string, unknown> = {}) {
  return {
    type: `netns`, v: SCHEMA_VERSION, netnsInode, foundBy: [`process`], pids, paths: [],
    readVia: `proc-pid:${pids[0] ?? 1}`, complete: true, ...more,
  };
}

export function processRecord(pid: number, comm: string, more: Record<string, unknown> = {}) {
  return {type: `process`, v: SCHEMA_VERSION, pid, tids: [pid], state: `S`, startTime: 100, comm, netnsInode: 4026531840, ...more};
}

export function summary(stage: `validate` | `recheck`, mapId: number, map: string, counts: {total: number, alive: number, leaked: number, unknown?: number, resolved?: number, raceFiltered?: number}) {
  return {type: `summary`, v: SCHEMA_VERSION, stage, mapId, map, unknown: 0, resolved: 0, raceFiltered: 0, ...counts};
}

export const ndjson = (records: Array<object>): string => records.map(record => JSON.stringify(record)).join(`\n`) + `\n`;
