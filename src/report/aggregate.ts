// Folds a stream of records into what the report prints, in bounded memory: per-map counters,
// at most `samples` leaked verdicts per map, and group tables capped in size. Records may come
// in any order (a verdict before its map record, process records after the verdicts): names,
// commands and namespaces are resolved only when the report is built.
import {findCatalogueMap, kernelName} from '../catalogue.ts';
import type {
  AnyRecord, HeaderRecord, KeyKind, MapRecord, MapStatsRecord, NetnsRecord, ProcessRecord,
  SnapshotRecord, SummaryRecord, VerdictRecord,
} from '../schema.ts';
import {LeakFilter} from './filter.ts';
import {NumberMap} from '../numberMap.ts';
import {formatIPv4Number, formatIPv6Words, isWildcard} from '../addr.ts';
import {LeanTuple} from '../dump/decode.ts';
import {sampleOf} from '../dump/leanPool.ts';
import {v4Code} from '../validate/snapshotIndex.ts';
import {isListenerKey, ownerPid, LISTENER_DST} from './format.ts';
import {MAP_SECTIONS} from './sections.ts';
import {ANY_VALUES, COUNT_VALUES, generalizeFields} from '../shapes.ts';

/** Fields leaks can be grouped by (`--group-by`). */
export const GROUP_FIELDS = [`reason`, `dport`, `sport`, `daddr`, `saddr`, `netns`, `pid`, `comm`, `map`, `proto`, `family`] as const;
export type GroupField = (typeof GROUP_FIELDS)[number];

/** Printed when no --group-by is given. */
export const DEFAULT_GROUPS: ReadonlyArray<GroupField> = [`reason`, `dport`, `daddr`, `saddr`, `netns`, `pid`, `map`];

/** Distinct values kept per group table; past this, new values are counted as "other". */
export const GROUP_CAP = 10_000;

/** A map at or above this fill ratio gets a warning: USM starts dropping data when it is full. */
export const NEAR_FULL = 0.9;

export interface ReportOptions {
  /** Leaked samples kept (and printed) per map. */
  samples: number;
  /** Group tables to build. */
  groupBy: ReadonlyArray<GroupField>;
  /** `--map/--reason/--netns/--pid`: records outside them are not counted. */
  filter?: LeakFilter;
}

/** Verdicts of one map by status, as the tally keeps them and the report shows them. */
export interface StatusCounts {
  total: number;
  alive: number;
  leaked: number;
  unknown: number;
  resolved: number;
  /** Leaked at the first look, alive at the second. */
  raceFiltered: number;
  /** Leaked verdicts confirmed by a second look (checks ≥ 2). */
  confirmed: number;
}

export interface MapTally extends StatusCounts {
  mapId: number;
  /** Catalogue name (full C name). */
  map: string;
  /** Kernel name (≤15 chars). */
  kernelName: string;
  keyKind: KeyKind | null;
  info: MapRecord | null;
  stats: MapStatsRecord | null;
  /** Count per `status:reason` (incremented in place). */
  reasons: Map<string, Tally>;
  /** The first RECENT_REASONS pairs counted, as [status, reason, count] triples: looked up before `reasons`. */
  recentReasons: Array<string | Tally>;
  samples: Array<VerdictRecord>;
  /** PID maps: distinct tgids of leaked entries whose process is gone (capped at GROUP_CAP). */
  deadPids: Set<number>;
  deadPidsCapped: boolean;
  /** PID maps: leaked entries whose thread is gone but whose process lives. */
  threadsGone: number;
  /** Latest summary seen (recheck's wins over validate's). */
  summary: SummaryRecord | null;
  /** States of the MAP_SECTIONS, in their order. */
  sections: Array<unknown>;
}

/**
 * One `--group-by` table: leaks counted per value of one field, GROUP_CAP distinct values at most
 * (values first seen after that count as `other`). Numeric fields (ports, netns, pid) are counted
 * under the number itself and the map under its id, so the hot path makes and hashes no string
 * per leak; `values()` gives the values as text, in the order they were first seen.
 */
export class GroupTable {
  /** Leaks whose value arrived after the table was full. */
  other = 0;
  /** Leaks the field does not apply to (dport of a pid_tgid entry, no pid in the key, ...). */
  notApplicable = 0;
  /** Counts of numeric values (the listener's `*` port as -1), or of the text values. */
  private readonly byNumber = new NumberMap<Tally>();
  private readonly byText = new Map<string, Tally>();
  /** The value counted last and its tally: leaks of one map come in runs of the same reason, map, port. */
  private lastValue: number | string | undefined = undefined;
  private lastTally: Tally | null = null;
  /**
   * Addresses in the order first seen (text, an IPv4 address as an int32 or an IPv6 one as 4;
   * count; next slot of the same hash), and each hash's first slot; IPv4 and IPv6 addresses
   * given as numbers find their slots by them.
   */
  private readonly addresses = {texts: [] as Array<string | number | ReadonlyArray<number>>, tallies: [] as Array<number>, next: [] as Array<number>};
  private readonly addressHeads = new Map<number, number>();
  private readonly v4Slots = new AddressSlots(1);
  private readonly v6Slots = new AddressSlots(4);
  /** The `map` field's text (`name#id`) of each map id. */
  private readonly mapTexts = new Map<number, {name: string, text: string}>();
  /** The map of the last mapText(), and its text: leaks come in runs of one map. */
  private lastMap: {mapId: number, name: string, text: string} = {mapId: NaN, name: ``, text: ``};
  /** The field as a small integer (FIELD_CODES): add() switches on it once per leak and table, where a switch on the name compared strings. */
  private readonly code: Field;

  constructor(readonly field: GroupField) {
    this.code = FIELD_CODES[field];
  }

  /** Counts one leaked verdict. */
  add(verdict: VerdictRecord): void {
    const key = verdict.key;
    switch (this.code) {
      case Field.Reason: this.countText(verdict.reason); return;
      case Field.Map: this.countText(this.mapText(verdict)); return;
      case Field.Dport:
        if (key?.kind !== `conn_tuple`)
          break;
        this.countNumber(key.dport === 0 && isWildcard(key.daddr) ? LISTENER_PORT : key.dport);
        return;
      case Field.Sport:
        if (key?.kind !== `conn_tuple`)
          break;
        this.countNumber(key.sport);
        return;
      case Field.Netns:
        if (key?.kind !== `conn_tuple`)
          break;
        this.countNumber(key.netns);
        return;
      case Field.Daddr:
        if (key?.kind !== `conn_tuple`)
          break;
        if (key.dport === 0 && isWildcard(key.daddr))
          this.countAddress(LISTENER_DST.slice(0, 1));
        else if (key instanceof LeanTuple)
          this.countLean(key, false);
        else
          this.countAddress(key.daddr);
        return;
      case Field.Saddr:
        if (key?.kind !== `conn_tuple`)
          break;
        if (key instanceof LeanTuple)
          this.countLean(key, true);
        else
          this.countAddress(key.saddr);
        return;
      case Field.Pid: {
        const pid = ownerPid(verdict);
        if (pid === null)
          break;
        this.countNumber(pid);
        return;
      }
      default: {
        const value = groupValue(this.field, verdict);
        if (value === null)
          break;
        this.countText(value);
        return;
      }
    }
    this.notApplicable += 1;
  }

  /**
   * The values counted, in the order first seen: each one's count, and its text (as groupValue
   * gives it) made only when asked for: the report names only the first rows of up to GROUP_CAP.
   */
  values(): GroupValues {
    if (this.field === `daddr` || this.field === `saddr`) {
      const {texts, tallies} = this.addresses;
      return {
        size: texts.length,
        count: i => tallies[i],
        text: i => {
          const text = texts[i];
          return typeof text === `number` ? formatIPv4Number(text) : typeof text === `string` ? text : formatIPv6Words(text, 0);
        },
      };
    }
    if (!NUMERIC_FIELDS.has(this.field)) {
      const entries = [...this.byText];
      return {size: entries.length, count: i => entries[i][1].n, text: i => entries[i][0]};
    }
    const {keys: numbers, values: tallies} = this.byNumber;
    return {
      size: numbers.length,
      count: i => tallies[i].n,
      text: i => (numbers[i] === LISTENER_PORT ? LISTENER_DST.slice(2) : String(numbers[i])),
    };
  }

  private countNumber(value: number): void {
    this.countIn(this.byNumber, value);
  }

  private countText(value: string): void {
    this.countIn(this.byText, value);
  }

  private countIn<K extends number | string>(table: Counts<K>, value: K): void {
    if (value === this.lastValue) {
      this.lastTally!.n += 1;
      return;
    }
    let tally = table.get(value);
    if (tally !== undefined) {
      tally.n += 1;
    } else if (table.size < GROUP_CAP) {
      tally = {n: 1};
      table.set(value, tally);
    } else {
      this.other += 1;
      return;
    }
    this.lastValue = value;
    this.lastTally = tally;
  }

  /**
   * Counts an address (a fresh string per leak, which a string-keyed Map hashes anew every time):
   * filed under a hash of its text computed here, so the table compares small integers and reads a
   * stored string only when the hash matches. Past GROUP_CAP most addresses miss.
   */
  private countAddress(value: string): void {
    // A dotted quad is counted by its number, as a LeanTuple's IPv4 address is: one slot per address.
    const code = v4Code(value);
    if (code >= 0 && code <= 0xffffffff) {
      V4_WORD[0] = code;
      this.countWords(this.v4Slots, V4_WORD, 0);
      return;
    }
    let hash = 0x811c9dc5;
    for (let i = 0; i < value.length; i++)
      hash = Math.imul(hash ^ value.charCodeAt(i), 0x01000193);
    hash &= 0x3fffffff;
    const {texts, tallies, next} = this.addresses;
    const head = this.addressHeads.get(hash);
    for (let slot = head ?? -1; slot >= 0; slot = next[slot]) {
      if (texts[slot] === value) {
        tallies[slot] += 1;
        return;
      }
    }
    if (texts.length >= GROUP_CAP) {
      this.other += 1;
      return;
    }
    next.push(head ?? -1);
    this.addressHeads.set(hash, texts.length);
    texts.push(value);
    tallies.push(1);
  }

  /** Counts the source (or destination) address of a LeanTuple by its numbers. */
  private countLean(key: LeanTuple, source: boolean): void {
    if (key.v6Words !== null) {
      this.countWords(this.v6Slots, key.v6Words, source ? 0 : 4);
      return;
    }
    V4_WORD[0] = source ? key.saddrV4 : key.daddrV4;
    this.countWords(this.v4Slots, V4_WORD, 0);
  }

  /**
   * Counts an address given as numbers (its `width` words at words[at]). Every count ends in the
   * same increment, and every miss passes the `other` count, whether the table is full or not:
   * code V8 optimised before the first repeated address or the full table then has seen each
   * step already, and is not thrown away when they come (it was, for each table, twice).
   */
  private countWords(slots: AddressSlots, words: ArrayLike<number>, at: number): void {
    const {texts, tallies, next} = this.addresses;
    let slot = slots.find(words, at);
    if (slot < 0) {
      const full = texts.length >= GROUP_CAP;
      this.other += full ? 1 : 0;
      if (full)
        return;
      slot = texts.length;
      slots.add(words, at, slot);
      texts.push(slots.width === 1 ? words[at] : [words[at], words[at + 1], words[at + 2], words[at + 3]]);
      tallies.push(0);
      next.push(-1);
    }
    tallies[slot] += 1;
  }

  /** `name#id`, one string per map (the same string object each time: hashed once). */
  private mapText(verdict: VerdictRecord): string {
    const last = this.lastMap;
    if (last.mapId === verdict.mapId && last.name === verdict.map)
      return last.text;
    let known = this.mapTexts.get(verdict.mapId);
    if (known === undefined || known.name !== verdict.map) {
      known = {name: verdict.map, text: `${verdict.map}#${verdict.mapId}`};
      this.mapTexts.set(verdict.mapId, known);
    }
    this.lastMap = {mapId: verdict.mapId, name: known.name, text: known.text};
    return known.text;
  }
}

/** GroupTable's fields as small integers (its switch); the others (comm, proto, family) are Field.Other. */
const enum Field { Reason, Map, Dport, Sport, Netns, Daddr, Saddr, Pid, Other }
const FIELD_CODES: {readonly [F in GroupField]: Field} = {
  reason: Field.Reason, map: Field.Map, dport: Field.Dport, sport: Field.Sport, netns: Field.Netns, daddr: Field.Daddr, saddr: Field.Saddr, pid: Field.Pid,
  comm: Field.Other, proto: Field.Other, family: Field.Other,
};

/** A group table's values in the order first seen (GroupTable.values). */
export interface GroupValues {
  readonly size: number;
  count(index: number): number;
  text(index: number): string;
}

/** What countIn needs of a table of counts: a Map, or a NumberMap (numbers: a Map's get() was most of counting them). */
interface Counts<K> {
  readonly size: number;
  get(value: K): Tally | undefined;
  set(value: K, tally: Tally): void;
}

/** The IPv4 address counted, as AddressSlots takes it. */
const V4_WORD = new Int32Array(1);

/**
 * Addresses given as int32 words (1 for IPv4, 4 for IPv6) to the group table slots they are
 * counted in, by open addressing ([slot + 1, words] per cell, 0: empty; at most half full): one
 * cache line per lookup, where a Map read two. In front, a bit per hash of the addresses in
 * (2^17 bits, 16 KiB): an address whose bit is clear is not there, which a full table (a miss for
 * nearly every leak of random addresses) learns without a probe.
 */
class AddressSlots {
  private cells: Int32Array;
  private mask = 255;
  private size = 0;
  private readonly seen = new Int32Array(1 << 12);

  constructor(readonly width: 1 | 4) {
    this.cells = new Int32Array((width + 1) * 256);
  }

  /** The address's slot, or -1. */
  find(words: ArrayLike<number>, at: number): number {
    const hash = this.hash(words, at);
    const bit = hash >>> 15;
    if ((this.seen[bit >>> 5] & (1 << (bit & 31))) === 0)
      return -1;
    const c = this.cellOf(hash, words, at) * (this.width + 1);
    return this.cells[c] - 1;
  }

  /** Files an address that is not there under `slot`. */
  add(words: ArrayLike<number>, at: number, slot: number): void {
    const hash = this.hash(words, at);
    const bit = hash >>> 15;
    this.seen[bit >>> 5] |= 1 << (bit & 31);
    const c = this.cellOf(hash, words, at) * (this.width + 1);
    this.cells[c] = slot + 1;
    for (let i = 0; i < this.width; i++)
      this.cells[c + 1 + i] = words[at + i];
    this.size += 1;
    if (2 * this.size > this.mask + 1)
      this.grow();
  }

  /** An int32 (a uint32 above 2^31 - 1 would be a heap number, made for every leak counted). */
  private hash(words: ArrayLike<number>, at: number): number {
    let hash = Math.imul(words[at] ^ this.width, 0x9e3779b1);
    for (let i = 1; i < this.width; i++)
      hash = Math.imul(hash ^ (hash >>> 15) ^ words[at + i], 0x85ebca6b);
    return hash ^ (hash >>> 16);
  }

  /** The address's cell, or the empty one where it goes. */
  private cellOf(hash: number, words: ArrayLike<number>, at: number): number {
    const cells = this.cells;
    const width = this.width;
    for (let i = hash & this.mask; ; i = (i + 1) & this.mask) {
      const c = i * (width + 1);
      if (cells[c] === 0)
        return i;
      let same = true;
      for (let w = 0; w < width && same; w++)
        same = cells[c + 1 + w] === (words[at + w] | 0);
      if (same)
        return i;
    }
  }

  private grow(): void {
    const old = this.cells;
    const stride = this.width + 1;
    this.cells = new Int32Array(2 * old.length);
    this.mask = 2 * (this.mask + 1) - 1;
    const cells = this.cells;
    for (let c = 0; c < old.length; c += stride) {
      if (old[c] === 0)
        continue;
      // Copied word by word: a subarray() per address (up to GROUP_CAP at each growth) cost more than the rest.
      const to = this.cellOf(this.hash(old, c + 1), old, c + 1) * stride;
      for (let w = 0; w < stride; w++)
        cells[to + w] = old[c + w];
    }
  }
}

/** A count in a group table (or of a map's reasons), incremented where it is (a Map's set() cost as much as its get()). */
export interface Tally {
  n: number;
}

/** Fields counted by number; `dport`'s listener `*` is this. */
const NUMERIC_FIELDS: ReadonlySet<GroupField> = new Set([`dport`, `sport`, `netns`, `pid`]);
const LISTENER_PORT = -1;

/** status:reason pairs a map tally keeps at hand (MapTally.recentReasons). */
const RECENT_REASONS = 8;

/** Placeholder of a `comm` group value resolved when the report is built. */
const PID_PREFIX = `pid:`;

export class ReportAggregator {
  readonly maps = new Map<number, MapTally>();
  readonly namespaces = new Map<number, NetnsRecord>();
  readonly processes = new Map<number, {comm: string, state: string}>();
  /** Commands named by verdicts' `owner` (validate does not pass process records on). */
  readonly owners = new Map<number, string>();
  readonly groups: Array<GroupTable>;
  readonly filter: LeakFilter;
  headers: Array<HeaderRecord> = [];
  /** Verdicts counted (after the filters), and read (before them). */
  verdicts = 0;
  verdictsRead = 0;
  entries = 0;
  /** Snapshots taken, for the "what was compared against" line. */
  snapshots: Array<{of: string, complete: boolean, count: number | null, timeMs: number | null}> = [];
  private processesCapped = false;
  private lastTally: MapTally | null = null;
  private readonly lastReason: {tally: MapTally | null, status: string, reason: string, count: Tally | null} = {tally: null, status: ``, reason: ``, count: null};

  constructor(readonly options: ReportOptions) {
    this.filter = options.filter ?? new LeakFilter();
    this.groups = options.groupBy.map(field => new GroupTable(field));
    generalizeTallyFields();
  }

  add(record: AnyRecord): void {
    switch (record.type) {
      case `verdict`: this.addVerdict(record); break;
      case `map`: this.addMap(record); break;
      case `mapstats`: this.addMapStats(record); break;
      case `summary`: this.addSummary(record); break;
      case `netns`: this.addNetns(record); break;
      case `process`: this.addProcess(record); break;
      case `header`: if (this.headers.length < 16) this.headers.push(record); break;
      case `snapshot`: this.addSnapshot(record); break;
      case `entry`: this.entries += 1; break;
      default: break;
    }
  }

  /** Counts entries the report is not given one by one (scan: as `add` of each would). */
  countEntries(count: number): void {
    this.entries += count;
  }

  /**
   * Whether a verdict of this map could still be kept as a sample (whole). Once false it stays
   * false: samples are the first leaked verdicts of each map.
   */
  samplesWanted(mapId: number): boolean {
    const tally = this.maps.get(mapId);
    return tally === undefined || tally.samples.length < this.options.samples;
  }

  /** A process snapshot was part of the input: a pid absent from it is a gone process. */
  get sawProcessSnapshot(): boolean {
    return this.processes.size > 0 || this.snapshots.some(snapshot => snapshot.of === `pids` && snapshot.complete);
  }

  private tally(mapId: number, map: string): MapTally {
    // Verdicts come in runs of one map.
    if (this.lastTally?.mapId === mapId)
      return this.lastTally;
    let tally = this.maps.get(mapId);
    if (!tally) {
      tally = newMapTally(mapId, map);
      this.maps.set(mapId, tally);
    }
    this.lastTally = tally;
    return tally;
  }

  private addMap(record: MapRecord): void {
    if (!this.filter.map(record.catalogName))
      return;
    const tally = this.tally(record.mapId, record.catalogName);
    tally.info = record;
    this.toSections(tally, record);
  }

  private addVerdict(verdict: VerdictRecord): void {
    this.verdictsRead += 1;
    if (!this.filter.verdict(verdict))
      return;
    this.verdicts += 1;
    const tally = this.tally(verdict.mapId, verdict.map);
    if (tally.keyKind === null && verdict.key)
      tally.keyKind = verdict.key.kind;
    tally.total += 1;
    switch (verdict.status) {
      case `alive`: tally.alive += 1; break;
      case `leaked`: tally.leaked += 1; break;
      case `unknown`: tally.unknown += 1; break;
      default: tally[verdict.status] += 1;
    }
    if (verdict.status === `alive` && verdict.reason === `race`)
      tally.raceFiltered += 1;
    this.reasonTally(tally, verdict.status, verdict.reason).n += 1;
    for (let i = 0; i < MAP_SECTIONS.length; i++)
      MAP_SECTIONS[i]!.addVerdict(tally.sections[i], verdict);
    if (verdict.status !== `leaked`)
      return;
    if (verdict.checks >= 2)
      tally.confirmed += 1;
    if (tally.samples.length < this.options.samples)
      tally.samples.push(sampleOf(verdict));
    const entryKey = verdict.key;
    if (entryKey?.kind === `pid_tgid`) {
      if (verdict.reason === `thread_gone`) {
        tally.threadsGone += 1;
      } else if (tally.deadPids.size < GROUP_CAP) {
        tally.deadPids.add(entryKey.tgid);
      } else if (!tally.deadPids.has(entryKey.tgid)) {
        tally.deadPidsCapped = true;
      }
    }
    const owner = verdict.owner;
    if (owner && typeof owner.comm === `string` && this.owners.size < GROUP_CAP && !this.owners.has(owner.pid))
      this.owners.set(owner.pid, owner.comm);
    const groups = this.groups;
    for (let i = 0; i < groups.length; i++)
      groups[i].add(verdict);
  }

  /** The count of a map's `status:reason`; the last one asked for at hand (verdicts come in runs). */
  private reasonTally(tally: MapTally, status: string, reason: string): Tally {
    const last = this.lastReason;
    if (last.tally === tally && last.status === status && last.reason === reason)
      return last.count!;
    // A map's verdicts alternate between a few pairs (alive and leaked, in turn): those are kept
    // at hand too, compared by identity, before the pair's key is made and looked up.
    const recent = tally.recentReasons;
    let count: Tally | undefined;
    for (let i = 0; i < recent.length && count === undefined; i += 3) {
      if (recent[i] === status && recent[i + 1] === reason)
        count = recent[i + 2] as Tally;
    }
    if (count === undefined) {
      const key = reasonKey(status, reason);
      count = tally.reasons.get(key);
      if (count === undefined) {
        count = {n: 0};
        tally.reasons.set(key, count);
      }
      if (recent.length < 3 * RECENT_REASONS)
        recent.push(status, reason, count);
    }
    last.tally = tally;
    last.status = status;
    last.reason = reason;
    last.count = count;
    return count;
  }

  private addMapStats(stats: MapStatsRecord): void {
    if (stats.map === `` && !this.maps.has(stats.mapId))
      return;
    if (!this.filter.map(stats.map))
      return;
    const tally = this.tally(stats.mapId, stats.map);
    // The first dump of a map is the one judged; recheck's re-read of it comes later.
    tally.stats ??= stats;
    this.toSections(tally, stats);
  }

  private addSummary(summary: SummaryRecord): void {
    if (!this.filter.map(summary.map))
      return;
    const tally = this.tally(summary.mapId, summary.map);
    // recheck's summary is the later word on a map; never let validate's replace it.
    if (tally.summary?.stage === `recheck` && summary.stage === `validate`)
      return;
    tally.summary = summary;
  }

  private toSections(tally: MapTally, record: AnyRecord): void {
    for (let i = 0; i < MAP_SECTIONS.length; i++)
      MAP_SECTIONS[i]!.addRecord?.(tally.sections[i], record);
  }

  private addSnapshot(record: SnapshotRecord): void {
    if (this.snapshots.length < 16)
      this.snapshots.push({of: record.of, complete: record.complete, count: record.count, timeMs: record.timeMs});
  }

  private addNetns(netns: NetnsRecord): void {
    if (this.namespaces.size < GROUP_CAP || this.namespaces.has(netns.netnsInode))
      this.namespaces.set(netns.netnsInode, netns);
  }

  private addProcess(process: ProcessRecord): void {
    if (this.processes.size >= GROUP_CAP * 10 && !this.processes.has(process.pid)) {
      this.processesCapped = true;
      return;
    }
    this.processes.set(process.pid, {comm: process.comm, state: process.state});
  }

  get processTableCapped(): boolean {
    return this.processesCapped;
  }

  /** The command of a pid, when a process record or a verdict's owner named it. */
  commOf(pid: number): string | null {
    return this.processes.get(pid)?.comm ?? this.owners.get(pid) ?? null;
  }

  /** Whether a pid's process was looked for and is gone; null when there is no process snapshot. */
  processGone(pid: number, verdict?: VerdictRecord): boolean | null {
    if (this.commOf(pid) !== null || (verdict?.owner && typeof verdict.owner.comm === `string`))
      return false;
    if (verdict?.reason === `process_gone`)
      return true;
    return this.sawProcessSnapshot ? true : null;
  }
}

function newMapTally(mapId: number, map: string): MapTally {
  return {
    mapId, map, kernelName: kernelName(map), keyKind: findCatalogueMap(map)?.keyKind ?? null, info: null, stats: null,
    total: 0, alive: 0, leaked: 0, unknown: 0, resolved: 0, raceFiltered: 0, confirmed: 0, reasons: new Map(), recentReasons: [],
    samples: [], deadPids: new Set(), deadPidsCapped: false, threadsGone: 0, summary: null,
    sections: MAP_SECTIONS.map(section => section.start()),
  };
}

/**
 * A map's tally's fields made general before any is optimised (src/shapes.ts): the counts are
 * first counted, the records and the key kind first set, one map after another.
 */
function generalizeTallyFields(): void {
  const tally = newMapTally(0, ``);
  generalizeFields(tally, [`keyKind`, `info`, `stats`, `summary`, `reasons`, `recentReasons`, `samples`, `deadPids`, `sections`], ANY_VALUES);
  generalizeFields(tally, [`total`, `alive`, `leaked`, `unknown`, `resolved`, `raceFiltered`, `confirmed`, `threadsGone`], COUNT_VALUES);
  generalizeFields(tally, [`deadPidsCapped`], [true, false]);
}

/**
 * `status:reason`, the key of MapTally.reasons: one string per pair, made once (a fresh string per
 * verdict was hashed anew at every count).
 */
function reasonKey(status: string, reason: string): string {
  let byReason = REASON_KEYS.get(status);
  if (byReason === undefined) {
    byReason = new Map();
    REASON_KEYS.set(status, byReason);
  }
  let key = byReason.get(reason);
  if (key === undefined) {
    key = `${status}:${reason}`;
    byReason.set(reason, key);
  }
  return key;
}
const REASON_KEYS = new Map<string, Map<string, string>>();

/** The value a leaked verdict has for a group field; null when the field does not apply. */
export function groupValue(field: GroupField, verdict: VerdictRecord): string | null {
  const key = verdict.key;
  const tuple = key?.kind === `conn_tuple` ? key : null;
  const listener = isListenerKey(key);
  switch (field) {
    case `reason`: return verdict.reason;
    case `map`: return `${verdict.map}#${verdict.mapId}`;
    // A listener has no remote side: its daddr/dport print as `*`, as its dst prints `*:*`.
    case `dport`: return tuple ? (listener ? LISTENER_DST.slice(2) : String(tuple.dport)) : null;
    case `sport`: return tuple ? String(tuple.sport) : null;
    case `daddr`: return tuple ? (listener ? LISTENER_DST.slice(0, 1) : tuple.daddr) : null;
    case `saddr`: return tuple ? tuple.saddr : null;
    case `proto`: return tuple ? tuple.proto : null;
    case `family`: return tuple ? tuple.family : null;
    case `netns`: return tuple ? String(tuple.netns) : null;
    case `pid`: {
      const pid = ownerPid(verdict);
      return pid === null ? null : String(pid);
    }
    case `comm`: {
      const pid = ownerPid(verdict);
      if (pid === null)
        return null;
      // Resolved when the report is built, from process records, when the verdict does not carry it.
      return verdict.owner?.comm ?? `${PID_PREFIX}${pid}`;
    }
    default: return null;
  }
}

/** The pid of a `comm` placeholder value, or null for a resolved command. */
export function placeholderPid(value: string): number | null {
  return value.startsWith(PID_PREFIX) ? Number(value.slice(PID_PREFIX.length)) : null;
}
