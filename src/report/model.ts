// The report as data: built once from the aggregator, then printed as text, markdown, JSON or
// NDJSON. Everything a renderer shows is decided here, so the formats cannot disagree.
import {formatEndpoint, isWildcard} from '../addr.ts';
import {SCHEMA_VERSION, type KeyKind, type VerdictRecord} from '../schema.ts';
import {GROUP_CAP, NEAR_FULL, type GroupField, type MapTally, type ReportAggregator} from './aggregate.ts';

export interface SampleLine {
  /** The original tool's tuple text (IPv6 bracketed and in its real byte order). */
  text: string;
  reason: string;
  keyHex: string;
}

export interface MapReport {
  mapId: number;
  map: string;
  kernelName: string;
  keyKind: KeyKind | null;
  /** Several maps on the host carry this name: show the id next to it. */
  sharedName: boolean;
  maxEntries: number | null;
  /** Entries in the map when it was dumped. */
  entries: number;
  /** entries / maxEntries, or null when max_entries is unknown. */
  fill: number | null;
  nearFull: boolean;
  dumpComplete: boolean | null;
  dumpError: string | null;
  problem: string | null;
  total: number;
  /** Judged fine: alive, or removed from the map by the time of the recheck. */
  valid: number;
  alive: number;
  leaked: number;
  unknown: number;
  resolved: number;
  raceFiltered: number;
  /** Where the counts came from: the verdicts seen, or the stage's summary record. */
  countsFrom: `verdicts` | `summary`;
  reasons: {[status: string]: {[reason: string]: number}};
  deadPids: Array<number>;
  deadPidsCapped: boolean;
  threadsGone: number;
  samples: Array<SampleLine>;
  /** Leaked entries not shown as samples: the true count, not capped. */
  moreLeaked: number;
}

export interface GroupRow {
  value: string;
  label: string;
  count: number;
}

export interface GroupReport {
  field: GroupField;
  title: string;
  /** Leaks counted in this table (rows + other). */
  total: number;
  /** Distinct values counted; a lower bound when `capped`. */
  distinct: number;
  /** More distinct values than the table keeps: values first seen after it filled are in `other`, so the top rows may not be the true top. */
  capped: boolean;
  rows: Array<GroupRow>;
  /** Leaks whose value did not fit in the capped table. */
  other: number;
  notApplicable: number;
}

export interface NamespaceReport {
  netnsInode: number;
  pids: Array<number>;
  paths: Array<string>;
  foundBy: Array<string>;
  complete: boolean;
  problems: Array<string>;
}

export interface SectionSummary {
  mapsChecked: number;
  mapsWithLeaks: number;
  leaked: number;
  unknown: number;
  resolved: number;
  raceFiltered: number;
}

export interface ReportModel {
  type: `report`;
  v: number;
  source: {host: string, kernel: string, time: string, stage: string} | null;
  pidMaps: Array<MapReport>;
  connTupleMaps: Array<MapReport>;
  namespaces: Array<NamespaceReport>;
  /** Namespaces kept are capped; this is how many distinct ones were seen in total, at least. */
  namespaceCount: number;
  groups: Array<GroupReport>;
  summary: SectionSummary & {
    pid: SectionSummary;
    connTuple: SectionSummary;
    nearFullMaps: number;
    verdicts: number;
    /** `entry` records seen (unjudged map entries: a dump piped straight into report). */
    entries: number;
  };
  warnings: Array<string>;
}

const GROUP_TITLES: {[F in GroupField]: string} = {
  reason: `reason`,
  dport: `destination port (dport)`,
  sport: `source port (sport)`,
  daddr: `destination address (daddr)`,
  saddr: `source address (saddr)`,
  netns: `network namespace`,
  pid: `process (pid)`,
  comm: `command (comm)`,
  map: `map id`,
  proto: `protocol`,
  family: `address family`,
};

/** Rows kept per group table in the model (top groups first). */
export const GROUP_ROWS = 10;

export function buildReport(agg: ReportAggregator): ReportModel {
  const tallies = [...agg.maps.values()];
  const nameUse = new Map<string, number>();
  for (const tally of tallies)
    nameUse.set(tally.kernelName, (nameUse.get(tally.kernelName) ?? 0) + 1);
  const maps = tallies
    .map(tally => mapReport(tally, (nameUse.get(tally.kernelName) ?? 0) > 1))
    .sort((a, b) => a.kernelName < b.kernelName ? -1 : a.kernelName > b.kernelName ? 1 : a.mapId - b.mapId);
  const pidMaps = maps.filter(map => map.keyKind === `pid_tgid`);
  const connTupleMaps = maps.filter(map => map.keyKind !== `pid_tgid`);
  const pid = sectionSummary(pidMaps);
  const connTuple = sectionSummary(connTupleMaps);
  const namespaces = [...agg.namespaces.values()]
    .map(netns => ({
      netnsInode: netns.netnsInode, pids: netns.pids, paths: netns.paths, foundBy: netns.foundBy,
      complete: netns.complete, problems: netns.problems ?? [],
    }))
    .sort((a, b) => a.netnsInode - b.netnsInode);
  const warnings: Array<string> = [];
  for (const map of maps) {
    if (map.nearFull)
      warnings.push(`${displayName(map)} is ${percent(map.fill!, 1)}% full (${map.entries}/${map.maxEntries}): USM drops new data when a map is full`);
    if (map.dumpComplete === false)
      warnings.push(`${displayName(map)} was not dumped completely${map.dumpError ? ` (${map.dumpError})` : ``}: counts cover part of it`);
    if (map.problem)
      warnings.push(`${displayName(map)} could not be judged: ${map.problem}`);
  }
  for (const netns of namespaces) {
    if (!netns.complete)
      warnings.push(`network namespace ${netns.netnsInode} could not be read completely${netns.problems.length ? ` (${netns.problems[0]})` : ``}: entries in it are unknown, not leaked`);
  }
  if (agg.processTableCapped)
    warnings.push(`too many process records to keep: some commands show as unknown`);
  const source = sourceOf(agg);
  return {
    type: `report`,
    v: SCHEMA_VERSION,
    source,
    pidMaps,
    connTupleMaps,
    namespaces,
    namespaceCount: agg.namespaces.size,
    groups: agg.groups.map(group => groupReport(agg, group.field, group.counts, group.other, group.notApplicable)),
    summary: {
      mapsChecked: pid.mapsChecked + connTuple.mapsChecked,
      mapsWithLeaks: pid.mapsWithLeaks + connTuple.mapsWithLeaks,
      leaked: pid.leaked + connTuple.leaked,
      unknown: pid.unknown + connTuple.unknown,
      resolved: pid.resolved + connTuple.resolved,
      raceFiltered: pid.raceFiltered + connTuple.raceFiltered,
      pid,
      connTuple,
      nearFullMaps: maps.filter(map => map.nearFull).length,
      verdicts: agg.verdicts,
      entries: agg.entries,
    },
    warnings,
  };
}

function sourceOf(agg: ReportAggregator): ReportModel[`source`] {
  // The stage that looked at the host (scan, dump-maps, a capture) says where the data comes from.
  const header = agg.headers.find(h => h.stage === `scan` || h.stage === `capture`)
    ?? agg.headers.find(h => h.stage === `dump-maps`)
    ?? agg.headers[0];
  if (!header)
    return null;
  return {host: header.host, kernel: header.kernel, time: header.time, stage: header.stage};
}

function mapReport(tally: MapTally, sharedName: boolean): MapReport {
  let {total, alive, leaked, unknown, resolved} = tally;
  let raceFiltered = tally.raceFiltered;
  let countsFrom: MapReport[`countsFrom`] = `verdicts`;
  // A stream filtered down (jq on leaked verdicts) still has the stage's tally: trust it then.
  if (tally.summary && tally.summary.total > total) {
    ({total, alive, leaked, unknown, resolved, raceFiltered} = tally.summary);
    countsFrom = `summary`;
  }
  const maxEntries = tally.info?.maxEntries ?? null;
  const entries = tally.stats?.entries ?? total;
  const fill = maxEntries ? entries / maxEntries : null;
  const reasons: MapReport[`reasons`] = {};
  for (const [key, count] of [...tally.reasons].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))) {
    const [status, reason] = key.split(`:`);
    (reasons[status] ??= {})[reason] = count;
  }
  const samples = tally.samples.map(verdict => ({text: describeKey(verdict), reason: verdict.reason, keyHex: verdict.keyHex}));
  return {
    mapId: tally.mapId,
    map: tally.map,
    kernelName: tally.info?.name ?? tally.kernelName,
    keyKind: tally.info?.keyKind ?? tally.keyKind,
    sharedName,
    maxEntries,
    entries,
    fill,
    nearFull: fill !== null && fill >= NEAR_FULL,
    dumpComplete: tally.stats ? tally.stats.complete : null,
    dumpError: tally.stats?.error ?? null,
    problem: tally.info?.problem ?? null,
    total,
    valid: alive + resolved,
    alive,
    leaked,
    unknown,
    resolved,
    raceFiltered,
    countsFrom,
    reasons,
    deadPids: [...tally.deadPids].sort((a, b) => a - b),
    deadPidsCapped: tally.deadPidsCapped,
    threadsGone: tally.threadsGone,
    samples,
    moreLeaked: Math.max(0, leaked - samples.length),
  };
}

function sectionSummary(maps: Array<MapReport>): SectionSummary {
  return {
    mapsChecked: maps.length,
    mapsWithLeaks: maps.filter(map => map.leaked > 0).length,
    leaked: maps.reduce((sum, map) => sum + map.leaked, 0),
    unknown: maps.reduce((sum, map) => sum + map.unknown, 0),
    resolved: maps.reduce((sum, map) => sum + map.resolved, 0),
    raceFiltered: maps.reduce((sum, map) => sum + map.raceFiltered, 0),
  };
}

function groupReport(agg: ReportAggregator, field: GroupField, counts: Map<string, number>, other: number, notApplicable: number): GroupReport {
  let merged = counts;
  if (field === `comm`) {
    // `pid:N` placeholders become the command from the process snapshot, or `dead`.
    merged = new Map();
    for (const [value, count] of counts) {
      const pid = Number(value.slice(4));
      const name = value.startsWith(`pid:`) ? (agg.processes.get(pid)?.comm ?? agg.owners.get(pid) ?? `dead`) : value;
      merged.set(name, (merged.get(name) ?? 0) + count);
    }
  }
  const sorted = [...merged].sort((a, b) => b[1] - a[1] || compareValues(a[0], b[0]));
  const total = sorted.reduce((sum, [, count]) => sum + count, 0) + other;
  return {
    field,
    title: GROUP_TITLES[field],
    total,
    distinct: merged.size,
    capped: other > 0,
    rows: sorted.slice(0, GROUP_ROWS).map(([value, count]) => ({value, label: groupLabel(agg, field, value), count})),
    other: other + sorted.slice(GROUP_ROWS).reduce((sum, [, count]) => sum + count, 0),
    notApplicable,
  };
}

function compareValues(a: string, b: string): number {
  const na = Number(a);
  const nb = Number(b);
  if (Number.isFinite(na) && Number.isFinite(nb))
    return na - nb;
  return a < b ? -1 : a > b ? 1 : 0;
}

function groupLabel(agg: ReportAggregator, field: GroupField, value: string): string {
  switch (field) {
    case `pid`: {
      const pid = Number(value);
      if (pid === 0)
        return `0 (no pid in key)`;
      const process = agg.processes.get(pid);
      if (process)
        return `${pid} (${process.comm}${process.state === `Z` ? `, zombie` : ``})`;
      const comm = agg.owners.get(pid);
      return comm === undefined ? `${pid} (dead)` : `${pid} (${comm})`;
    }
    case `netns`: {
      const inode = Number(value);
      if (inode === 0)
        return `0 (not recorded in the key)`;
      const netns = agg.namespaces.get(inode);
      if (!netns)
        return `${inode} (not found on the host)`;
      const where = [
        netns.pids.length ? `pid ${netns.pids.slice(0, 3).join(`, `)}${netns.pids.length > 3 ? `, ...` : ``}` : ``,
        ...netns.paths.slice(0, 2),
      ].filter(Boolean).join(`; `);
      return where ? `${inode} (${where})` : String(inode);
    }
    case `map`: {
      const at = value.lastIndexOf(`#`);
      return `${value.slice(0, at)} (id ${value.slice(at + 1)})`;
    }
    default:
      return value;
  }
}

/** `saddr:sport -> daddr:dport (netns=N, pid=P)`, `-> *:*` for listeners; pid_tgid keys as tgid/tid. */
export function describeKey(verdict: VerdictRecord): string {
  const key = verdict.key;
  if (key === null)
    return `key ${verdict.keyHex}`;
  if (key.kind === `pid_tgid`)
    return `pid_tgid=${key.pidTgid} (pid=${key.tgid}, tid=${key.tid})`;
  const listener = key.dport === 0 && isWildcard(key.daddr);
  const src = formatEndpoint(key.saddr, key.sport);
  const dst = listener ? `*:*` : formatEndpoint(key.daddr, key.dport);
  let more = ``;
  if (key.proto === `udp`)
    more += `, udp`;
  for (const [name, value] of Object.entries(key.extra ?? {}))
    more += `, ${name}=${value}`;
  return `${src} -> ${dst} (netns=${key.netns}, pid=${key.pid}${more})`;
}

export function displayName(map: MapReport): string {
  return map.sharedName ? `${map.kernelName} [id ${map.mapId}]` : map.kernelName;
}

/** Python's `f"{x:.Nf}"` of a ratio as a percentage. */
export function percent(ratio: number, digits: number): string {
  return (ratio * 100).toFixed(digits);
}

export {GROUP_CAP};
