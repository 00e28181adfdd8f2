// The report as data: built once from the aggregator, then printed as text, markdown, JSON or
// NDJSON. Everything a renderer shows is decided here, so the formats cannot disagree: the
// answer (LEAKING / CLEAN / INCONCLUSIVE), the maps worst first, one totals block, hints.
import {SCHEMA_VERSION, type HeaderRecord, type KeyKind, type VerdictRecord} from '../schema.ts';
import {GROUP_CAP, NEAR_FULL, placeholderPid, type GroupField, type GroupValues, type MapTally, type ReportAggregator, type StatusCounts} from './aggregate.ts';
import {fraction, isListenerKey, ownerPid, type LeakRow} from './format.ts';
import {hintsFor, mapNotes, ONE_LOOK, type Hint, type MapNote} from './hints.ts';
import {MAP_SECTIONS} from './sections.ts';

export type Answer = `LEAKING` | `CLEAN` | `INCONCLUSIVE`;

/** Why a report without leaks is not CLEAN. */
export type InconclusiveWhy = `no_maps` | `no_verdicts` | `unknown_entries` | `incomplete_dump` | `map_problem`;

export interface Conclusion {
  answer: Answer;
  leaked: number;
  /** Entries counted (every status): verdicts, or the summaries of a filtered stream. */
  entries: number;
  unknown: number;
  mapsChecked: number;
  mapsWithLeaks: number;
  /** Leaked entries seen leaked at two looks (recheck). */
  confirmed: number;
  /** Seconds between the two looks, when the input recorded both. */
  looksApartSeconds: number | null;
  /** The map with the highest fill, when any map's max_entries is known. */
  fullest: {mapId: number, map: string, entries: number, maxEntries: number, fill: number, nearFull: boolean} | null;
  /** For INCONCLUSIVE (and for caveats on the others): what is missing. */
  why: Array<InconclusiveWhy>;
}

export interface MapReport extends StatusCounts {
  mapId: number;
  /** Catalogue (full) name. */
  map: string;
  /** The kernel's ≤15-character name (what bpftool lists). */
  kernelName: string;
  keyKind: KeyKind | null;
  /** Several maps in the input carry this name: show the id next to it. */
  sharedName: boolean;
  maxEntries: number | null;
  /** Entries in the map when it was dumped. */
  entries: number;
  /** entries / maxEntries, or null when max_entries is unknown. */
  fill: number | null;
  nearFull: boolean;
  /** Entries added per hour, when a diff or entry ages tell; null otherwise. */
  growthPerHour: number | null;
  dumpComplete: boolean | null;
  dumpError: string | null;
  problem: string | null;
  /** Judged fine: alive, or removed from the map by the time of the recheck. */
  valid: number;
  /** Where the counts came from: the verdicts seen, or the stage's summary record. */
  countsFrom: `verdicts` | `summary`;
  reasons: {[status: string]: {[reason: string]: number}};
  deadPids: Array<number>;
  deadPidsCapped: boolean;
  threadsGone: number;
  samples: Array<LeakRow>;
  /** Leaked entries not shown as samples: the true count, not capped. */
  moreLeaked: number;
  /** The agent's cleaner for this map (catalogue), and a leak fixed for it in the agent. */
  cleaner: string | null;
  knownFix: string | null;
  /** Data of the plug-in sections (sections.ts), by section name. */
  sections: {[name: string]: unknown};
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
  /** Leaks the field does not apply to. */
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

export type WarningKind = `near_full` | `dump_incomplete` | `map_problem` | `namespace_incomplete` | `process_table_capped`;

export interface ReportWarning {
  kind: WarningKind;
  mapId?: number;
  map?: string;
  netnsInode?: number;
  /** For people: the same facts in words. */
  message: string;
}

/** The one totals block. */
export interface Totals {
  mapsChecked: number;
  mapsWithLeaks: number;
  nearFullMaps: number;
  /** Entries the maps' counts cover (judged or not): the verdicts, or the stages' summaries. */
  judged: number;
  /** Verdict records counted (after the filters). */
  verdicts: number;
  leaked: number;
  alive: number;
  unknown: number;
  resolved: number;
  raceFiltered: number;
  confirmed: number;
  /** `entry` records seen (unjudged map entries: a dump piped straight into report). */
  entries: number;
  /** Verdicts in the input, before the filters. */
  verdictsRead: number;
}

export interface ReportModel {
  type: `report`;
  v: number;
  conclusion: Conclusion;
  source: {host: string, kernel: string, time: string, stage: string} | null;
  /** `--map/--reason/--netns/--pid` as given; null when the report is not filtered. */
  filter: string | null;
  /** What the entries were judged against. */
  snapshots: {sockets: number | null, processes: number | null};
  /** Every map, worst first: most leaked entries, then fullest. */
  maps: Array<MapReport>;
  namespaces: Array<NamespaceReport>;
  /** Namespaces kept are capped; this is how many distinct ones were seen in total, at least. */
  namespaceCount: number;
  groups: Array<GroupReport>;
  summary: Totals;
  /** What to do next, once per reason that occurs (leaked and unknown). */
  hints: Array<Hint>;
  /** Cleaners and fixed leaks of the maps that leak. */
  mapNotes: Array<MapNote>;
  warnings: Array<ReportWarning>;
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
  map: `map`,
  proto: `protocol`,
  family: `address family`,
};

/** Rows kept per group table in the model (top groups first). */
export const GROUP_ROWS = 10;

/** Worst first: most leaked, then fullest, then most unknown; then by name and id. */
export function compareMaps(a: MapReport, b: MapReport): number {
  return b.leaked - a.leaked
    || (b.fill ?? -1) - (a.fill ?? -1)
    || b.unknown - a.unknown
    || (a.map < b.map ? -1 : a.map > b.map ? 1 : a.mapId - b.mapId);
}

export function buildReport(agg: ReportAggregator): ReportModel {
  const tallies = [...agg.maps.values()];
  const nameUse = new Map<string, number>();
  for (const tally of tallies)
    nameUse.set(tally.map, (nameUse.get(tally.map) ?? 0) + 1);
  let maps = tallies.map(tally => mapReport(agg, tally, (nameUse.get(tally.map) ?? 0) > 1));
  // An entry filter keeps the maps it matched something in.
  if (agg.filter.byEntry)
    maps = maps.filter(map => map.total > 0);
  maps.sort(compareMaps);
  const namespaces = [...agg.namespaces.values()]
    .map(netns => ({
      netnsInode: netns.netnsInode, pids: netns.pids, paths: netns.paths, foundBy: netns.foundBy,
      complete: netns.complete, problems: netns.problems ?? [],
    }))
    .sort((a, b) => a.netnsInode - b.netnsInode);
  const summary = totals(maps, agg);
  // Hints for leaked reasons first (most frequent first), then for the unknowns.
  const reasonsBy = (status: string) => {
    const counts = new Map<string, number>();
    for (const map of maps) {
      for (const [reason, count] of Object.entries(map.reasons[status] ?? {}))
        counts.set(reason, (counts.get(reason) ?? 0) + count);
    }
    return [...counts].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).map(([reason]) => reason);
  };
  const leakyMaps = maps.filter(map => map.leaked > 0);
  return {
    type: `report`,
    v: SCHEMA_VERSION,
    conclusion: conclude(maps, summary, agg),
    source: sourceOf(agg),
    filter: agg.filter.active ? agg.filter.describe() : null,
    snapshots: {
      sockets: agg.snapshots.find(snapshot => snapshot.of === `conns`)?.count ?? null,
      processes: agg.snapshots.find(snapshot => snapshot.of === `pids`)?.count ?? null,
    },
    maps,
    namespaces,
    namespaceCount: agg.namespaces.size,
    groups: agg.groups.map(group => groupReport(agg, group.field, group.values(), group.other, group.notApplicable)),
    summary,
    hints: hintsFor([
      ...reasonsBy(`leaked`),
      ...reasonsBy(`unknown`),
      ...(summary.leaked > summary.confirmed ? [ONE_LOOK] : []),
    ]),
    mapNotes: mapNotes(leakyMaps.map(map => map.map)),
    warnings: warningsOf(maps, namespaces, agg),
  };
}

function conclude(maps: Array<MapReport>, summary: Totals, agg: ReportAggregator): Conclusion {
  const why: Array<InconclusiveWhy> = [];
  if (maps.length === 0)
    why.push(`no_maps`);
  else if (summary.verdictsRead === 0 && maps.some(map => map.entries > 0))
    why.push(`no_verdicts`);
  if (summary.unknown > 0)
    why.push(`unknown_entries`);
  if (maps.some(map => map.dumpComplete === false))
    why.push(`incomplete_dump`);
  if (maps.some(map => map.problem !== null))
    why.push(`map_problem`);
  const withFill = maps.filter(map => map.fill !== null);
  const top = withFill.length ? withFill.reduce((a, b) => (b.fill! > a.fill! ? b : a)) : null;
  return {
    answer: summary.leaked > 0 ? `LEAKING` : why.length ? `INCONCLUSIVE` : `CLEAN`,
    leaked: summary.leaked,
    entries: summary.judged,
    unknown: summary.unknown,
    mapsChecked: summary.mapsChecked,
    mapsWithLeaks: summary.mapsWithLeaks,
    confirmed: summary.confirmed,
    looksApartSeconds: looksApart(agg),
    fullest: top ? {mapId: top.mapId, map: top.map, entries: top.entries, maxEntries: top.maxEntries!, fill: top.fill!, nearFull: top.nearFull} : null,
    why,
  };
}

/**
 * Seconds between the first and the second look: recheck's summaries record both times
 * (`firstLookMs`, `secondLookMs`); without them, the first snapshot's time and a later one.
 */
function looksApart(agg: ReportAggregator): number | null {
  for (const tally of agg.maps.values()) {
    const looks = tally.summary as {firstLookMs?: unknown, secondLookMs?: unknown} | null;
    if (typeof looks?.firstLookMs === `number` && typeof looks.secondLookMs === `number` && looks.secondLookMs > looks.firstLookMs)
      return (looks.secondLookMs - looks.firstLookMs) / 1000;
  }
  const first = agg.snapshots.find(snapshot => snapshot.timeMs !== null);
  const second = agg.snapshots.filter(snapshot => snapshot.of === first?.of && snapshot.timeMs !== null)[1];
  if (!first || !second || first.timeMs === null || second.timeMs === null)
    return null;
  const seconds = (second.timeMs - first.timeMs) / 1000;
  return seconds > 0 ? seconds : null;
}

function totals(maps: Array<MapReport>, agg: ReportAggregator): Totals {
  const sum = (pick: (map: MapReport) => number) => maps.reduce((total, map) => total + pick(map), 0);
  return {
    mapsChecked: maps.length,
    mapsWithLeaks: maps.filter(map => map.leaked > 0).length,
    nearFullMaps: maps.filter(map => map.nearFull).length,
    judged: sum(map => map.total),
    verdicts: agg.verdicts,
    leaked: sum(map => map.leaked),
    alive: sum(map => map.alive),
    unknown: sum(map => map.unknown),
    resolved: sum(map => map.resolved),
    raceFiltered: sum(map => map.raceFiltered),
    confirmed: sum(map => map.confirmed),
    entries: agg.entries,
    verdictsRead: agg.verdictsRead,
  };
}

function warningsOf(maps: Array<MapReport>, namespaces: Array<NamespaceReport>, agg: ReportAggregator): Array<ReportWarning> {
  const warnings: Array<ReportWarning> = [];
  for (const map of maps) {
    const name = mapName(map);
    if (map.nearFull) {
      const growth = map.growthPerHour !== null && map.growthPerHour > 0 ? `, growing by ${Math.round(map.growthPerHour)} entries an hour` : ``;
      warnings.push({kind: `near_full`, mapId: map.mapId, map: map.map,
        message: `${name} is nearly full: ${fillText(map)} of max_entries${growth}; USM drops new data when a map is full`});
    }
    if (map.dumpComplete === false)
      warnings.push({kind: `dump_incomplete`, mapId: map.mapId, map: map.map, message: `${name} was not dumped completely${map.dumpError ? ` (${map.dumpError})` : ``}: counts cover part of it`});
    if (map.problem)
      warnings.push({kind: `map_problem`, mapId: map.mapId, map: map.map, message: `${name} could not be judged: ${map.problem}`});
  }
  for (const netns of namespaces) {
    if (!netns.complete)
      warnings.push({kind: `namespace_incomplete`, netnsInode: netns.netnsInode, message: `network namespace ${netns.netnsInode} could not be read completely${netns.problems.length ? ` (${netns.problems[0]})` : ``}: entries in it are unknown, not leaked`});
  }
  if (agg.processTableCapped)
    warnings.push({kind: `process_table_capped`, message: `too many process records to keep: some commands show as unknown`});
  return warnings;
}

function sourceOf(agg: ReportAggregator): ReportModel[`source`] {
  const header = pickSource(agg.headers);
  return header ? {host: header.host, kernel: header.kernel, time: header.time, stage: header.stage} : null;
}

/** The header that says where the data comes from: the stage that looked at the host (scan, a capture, dump-maps). */
export function pickSource(headers: ReadonlyArray<HeaderRecord>): HeaderRecord | null {
  return headers.find(h => h.stage === `scan` || h.stage === `capture`)
    ?? headers.find(h => h.stage === `dump-maps`)
    ?? headers[0]
    ?? null;
}

function mapReport(agg: ReportAggregator, tally: MapTally, sharedName: boolean): MapReport {
  let {total, alive, leaked, unknown, resolved} = tally;
  let raceFiltered = tally.raceFiltered;
  let confirmed = tally.confirmed;
  let countsFrom: MapReport[`countsFrom`] = `verdicts`;
  // A stream filtered down (jq on leaked verdicts) still has the stage's tally: trust it then,
  // unless the report itself filters entries (the summary counts every entry of the map).
  if (tally.summary && tally.summary.total > total && !agg.filter.byEntry) {
    ({total, alive, leaked, unknown, resolved, raceFiltered} = tally.summary);
    countsFrom = `summary`;
    // A recheck summary's leaks were all seen twice.
    confirmed = tally.summary.stage === `recheck` ? leaked : tally.confirmed;
  }
  const maxEntries = tally.info?.maxEntries ?? null;
  const entries = tally.stats?.entries ?? total;
  const fill = maxEntries ? entries / maxEntries : null;
  const reasons: MapReport[`reasons`] = {};
  for (const [key, count] of [...tally.reasons].map(([key, {n}]) => [key, n] as const).sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))) {
    const [status, reason] = key.split(`:`);
    (reasons[status!] ??= {})[reason!] = count;
  }
  const samples = tally.samples.map(verdict => leakRow(agg, verdict));
  const notes = mapNotes([tally.map])[0];
  const base: Omit<MapReport, `sections`> = {
    mapId: tally.mapId,
    map: tally.map,
    kernelName: tally.info?.name ?? tally.kernelName,
    keyKind: tally.info?.keyKind ?? tally.keyKind,
    sharedName,
    maxEntries,
    entries,
    fill,
    nearFull: fill !== null && fill >= NEAR_FULL,
    growthPerHour: null,
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
    confirmed,
    countsFrom,
    reasons,
    deadPids: [...tally.deadPids].sort((a, b) => a - b),
    deadPidsCapped: tally.deadPidsCapped,
    threadsGone: tally.threadsGone,
    samples,
    moreLeaked: Math.max(0, leaked - samples.length),
    cleaner: notes?.cleaner ?? null,
    knownFix: notes?.knownFix ?? null,
  };
  const sections: MapReport[`sections`] = {};
  MAP_SECTIONS.forEach((section, i) => {
    const data = section.build(tally.sections[i], base);
    if (data !== null)
      sections[section.name] = data;
  });
  return {...base, sections};
}

/** A leaked verdict as the report shows it (samples, `--list`, `leak` records). */
export function leakRow(agg: ReportAggregator, verdict: VerdictRecord): LeakRow {
  const pid = ownerPid(verdict);
  const comm = pid === null ? null : (verdict.owner?.comm ?? agg.commOf(pid));
  const age = (verdict as {ageSeconds?: unknown}).ageSeconds;
  return {
    mapId: verdict.mapId,
    map: verdict.map,
    reason: verdict.reason,
    keyHex: verdict.keyHex,
    key: verdict.key,
    listener: isListenerKey(verdict.key),
    pid,
    comm,
    processGone: pid === null ? null : agg.processGone(pid, verdict),
    checks: verdict.checks,
    ageSeconds: typeof age === `number` ? age : null,
  };
}

function groupReport(agg: ReportAggregator, field: GroupField, counts: GroupValues, other: number, notApplicable: number): GroupReport {
  let merged = counts;
  if (field === `comm`) {
    // `pid:N` placeholders become the command from the process snapshot, `(gone)` when the
    // snapshot shows the process exited, `(not known)` without a process snapshot.
    const names = new Map<string, number>();
    for (let i = 0; i < counts.size; i++) {
      const value = counts.text(i);
      const pid = placeholderPid(value);
      const name = pid === null ? value : agg.commOf(pid) ?? (agg.processGone(pid) ? GONE : NOT_KNOWN);
      names.set(name, (names.get(name) ?? 0) + counts.count(i));
    }
    merged = valuesOf(names);
  }
  const {rows: top, total: counted} = rankedRows(merged, GROUP_ROWS);
  const total = other + counted;
  const shown = top.reduce((sum, row) => sum + row.count, 0);
  return {
    field,
    title: GROUP_TITLES[field],
    total,
    distinct: merged.size,
    capped: other > 0,
    rows: top.map(({value, count}) => ({value, label: groupLabel(agg, field, value), count})),
    other: total - shown,
    notApplicable,
  };
}

interface RankedValue {
  value: string;
  count: number;
  /** Number(value), worked out when a comparison first needs it (only between equal counts). */
  number: number | undefined;
}

/** Most counted first, then by value (compareParsed); equal ones in the order first seen. */
function compareRanked(a: RankedValue, b: RankedValue): number {
  if (a.count !== b.count)
    return b.count - a.count;
  a.number ??= Number(a.value);
  b.number ??= Number(b.value);
  return compareParsed(a.value, a.number, b.value, b.number);
}

/**
 * The first `limit` values of `counts` in compareRanked's order: what a stable sort of them all
 * would put first, without sorting the tens of thousands of values of an address group (each
 * value goes after the kept ones it does not precede, so equal ones stay in the order seen).
 */
export function topRows(counts: ReadonlyMap<string, number>, limit: number): Array<{value: string, count: number}> {
  return rankedRows(valuesOf(counts), limit).rows;
}

/** A Map's values and counts, as a group table gives its own. */
function valuesOf(counts: ReadonlyMap<string, number>): GroupValues {
  const entries = [...counts];
  return {size: entries.length, count: i => entries[i][1], text: i => entries[i][0]};
}

/**
 * topRows, and the sum of all the counts, in one pass. Run once per group table at the end of a
 * run, over up to GROUP_CAP values: forEach (no entry array per value), and a value that ranks
 * after the last row kept, nearly every one, is told from its count (or its value against the
 * last row's, the same compareRanked) without a RankedValue made for it.
 */
function rankedRows(counts: GroupValues, limit: number): {rows: Array<{value: string, count: number}>, total: number} {
  const top: Array<RankedValue> = [];
  let total = 0;
  for (let i = 0; i < counts.size; i++) {
    const count = counts.count(i);
    total += count;
    if (limit <= 0)
      continue;
    let number: number | undefined;
    // A value's text is made only when its count may put it among the rows kept.
    let value: string | undefined;
    if (top.length === limit) {
      const last = top[limit - 1];
      if (count < last.count)
        continue;
      if (count === last.count) {
        value = counts.text(i);
        number = Number(value);
        last.number ??= Number(last.value);
        if (compareParsed(value, number, last.value, last.number) >= 0)
          continue;
      }
    }
    const candidate: RankedValue = {value: value ?? counts.text(i), count, number};
    let at = top.length;
    while (at > 0 && compareRanked(candidate, top[at - 1]) < 0)
      at--;
    top.splice(at, 0, candidate);
    if (top.length > limit)
      top.pop();
  }
  return {rows: top.map(({value, count}) => ({value, count})), total};
}

/** The comm group of processes that exited, and of pids nobody looked up. */
export const GONE = `(gone)`;
export const NOT_KNOWN = `(not known)`;

/** Group values in order: as numbers when both are, else as text. */
function compareParsed(a: string, na: number, b: string, nb: number): number {
  if (Number.isFinite(na) && Number.isFinite(nb))
    return na - nb;
  return a < b ? -1 : a > b ? 1 : 0;
}

function groupLabel(agg: ReportAggregator, field: GroupField, value: string): string {
  switch (field) {
    case `pid`: {
      const pid = Number(value);
      const process = agg.processes.get(pid);
      if (process)
        return `${pid} (${process.comm}${process.state === `Z` ? `, zombie` : ``})`;
      const comm = agg.commOf(pid);
      if (comm !== null)
        return `${pid} (${comm})`;
      return `${pid} ${agg.processGone(pid) ? GONE : NOT_KNOWN}`;
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
    case `dport`:
    case `daddr`:
      return value === `*` ? `* (listener)` : value;
    default:
      return value;
  }
}

/** The map's full name, with its id when several maps share it. */
export function mapName(map: Pick<MapReport, `map` | `mapId` | `sharedName`>): string {
  return map.sharedName ? `${map.map} [id ${map.mapId}]` : map.map;
}

/** `28/30 (93.3%)`, or `n/a` when max_entries is unknown. */
export function fillText(map: Pick<MapReport, `entries` | `maxEntries`>): string {
  return map.maxEntries ? fraction(map.entries, map.maxEntries) : `n/a`;
}

export {GROUP_CAP};
