// diff: two captures of one host, each judged, compared map by map (by name: ids change when the
// agent restarts). "Is it leaking?" is a question about a trend: which leaks are new, which are
// gone, which persist (the real, permanent leaks), and how fast the maps fill.
//
// Each side is judged from its own contents, never against this host: an NDJSON file that has
// verdicts is read as is, one that only has entries and snapshots goes through validate
// (offline), and a capture directory through scan's offline pipeline (`scan --from DIR`).
// Memory: the keys of the leaked entries (both sides), not the entries.
import {stat} from 'node:fs/promises';
import {Readable} from 'node:stream';
import type {ToolContext} from '../context.ts';
import {UsageFault} from '../errors.ts';
import {readInputs} from '../ndjson.ts';
import {ReportAggregator} from '../report/aggregate.ts';
import {leakRow, pickSource} from '../report/model.ts';
import type {LeakRow} from '../report/format.ts';
import type {AnyRecord, HeaderRecord, VerdictRecord} from '../schema.ts';
import {scan} from '../scan/index.ts';
import {validate} from '../validate/index.ts';

/** One capture, judged, as diff needs it. */
export interface CaptureSide {
  path: string;
  kind: `ndjson` | `directory`;
  host: string | null;
  kernel: string | null;
  time: string | null;
  timeMs: number | null;
  maps: Map<string, MapSide>;
  /** Per map, the rows of the leaked entries `LoadOptions.keep` asked for (at most `samples`). */
  rows: Map<string, Array<LeakRow>>;
}

export interface LoadOptions {
  /** Which leaked entries to keep a row of (the persisting ones, once the earlier side is known). */
  keep?: (map: string, keyHex: string) => boolean;
  samples?: number;
}

export interface MapSide {
  map: string;
  /** Entries in the map(s) of this name when dumped; null when no mapstats nor verdicts say. */
  entries: number;
  maxEntries: number | null;
  /** keyHex of the leaked entries. */
  leaked: Set<string>;
  /** keyHex of the entries that could not be judged. */
  unknown: Set<string>;
}

/** Per map: what changed between the captures (the `mapdiff` record). */
export interface MapDiff {
  map: string;
  leakedBefore: number;
  leakedAfter: number;
  /** Leaked now, not leaked (or absent) before. */
  new: number;
  /** Leaked before, absent or judged alive now. */
  gone: number;
  /** Leaked in both: the permanent leaks. */
  persisting: number;
  /** Leaked before, not judged (unknown) now. */
  undetermined: number;
  entriesBefore: number | null;
  entriesAfter: number | null;
  maxEntries: number | null;
  fillBefore: number | null;
  fillAfter: number | null;
  /** Minutes between the captures (their headers); null when a header lacks a time. */
  minutes: number | null;
  /** (leakedAfter − leakedBefore) per hour; null without minutes. */
  leaksPerHour: number | null;
  /** (entriesAfter − entriesBefore) per hour; null without minutes. */
  entriesPerHour: number | null;
  /** Hours until max_entries at leaksPerHour; null when not growing (or max unknown). */
  hoursToFull: number | null;
  /** A few of the persisting leaks, structured. */
  persistingSamples: Array<LeakRow>;
}

export interface DiffResult {
  earlier: Omit<CaptureSide, `maps` | `rows`>;
  later: Omit<CaptureSide, `maps` | `rows`>;
  /** The captures were given in the wrong order and were swapped. */
  swapped: boolean;
  minutes: number | null;
  /** Worst growth first. */
  maps: Array<MapDiff>;
  totals: {leakedBefore: number, leakedAfter: number, new: number, gone: number, persisting: number, undetermined: number};
}

export interface DiffOptions {
  /** Persisting leaks kept per map for the output. */
  samples: number;
  /** Compare captures of different hosts anyway. */
  force: boolean;
}

/** Judges both captures and compares them. Throws UsageFault for captures of different hosts (unless force). */
export async function diffCaptures(ctx: ToolContext, earlierPath: string, laterPath: string, options: DiffOptions): Promise<DiffResult> {
  let earlier = await loadCapture(ctx, earlierPath);
  // The later side is read second, knowing the earlier one's leaks: only persisting samples are kept.
  const persistingIn = (side: CaptureSide) => (map: string, keyHex: string) => side.maps.get(map)?.leaked.has(keyHex) === true;
  let later = await loadCapture(ctx, laterPath, {keep: persistingIn(earlier), samples: options.samples});
  if (earlier.host !== null && later.host !== null && earlier.host !== later.host) {
    if (!options.force)
      throw new UsageFault(`${earlierPath} is from host ${earlier.host} and ${laterPath} from host ${later.host}: diff compares two captures of one host (--force to compare them anyway)`);
    ctx.log.warn(`comparing captures of two hosts (${earlier.host}, ${later.host}) because of --force`);
  }
  let swapped = false;
  if (earlier.timeMs !== null && later.timeMs !== null && later.timeMs < earlier.timeMs) {
    ctx.log.warn(`${laterPath} (${later.time}) is older than ${earlierPath} (${earlier.time}): comparing them the other way round`);
    const older = later;
    // Read the newer one again, this time keeping the rows of the leaks that persist.
    later = await loadCapture(ctx, earlierPath, {keep: persistingIn(older), samples: options.samples});
    earlier = older;
    swapped = true;
  }
  const minutes = earlier.timeMs !== null && later.timeMs !== null ? (later.timeMs - earlier.timeMs) / 60_000 : null;
  const names = [...new Set([...earlier.maps.keys(), ...later.maps.keys()])];
  const maps = names.map(name => mapDiff(name, earlier.maps.get(name), later.maps.get(name), later.rows.get(name) ?? [], minutes));
  maps.sort(compareGrowth);
  const sum = (pick: (map: MapDiff) => number) => maps.reduce((total, map) => total + pick(map), 0);
  const describe = ({maps: _maps, rows: _rows, ...side}: CaptureSide) => side;
  return {
    earlier: describe(earlier),
    later: describe(later),
    swapped,
    minutes,
    maps,
    totals: {
      leakedBefore: sum(map => map.leakedBefore), leakedAfter: sum(map => map.leakedAfter), new: sum(map => map.new),
      gone: sum(map => map.gone), persisting: sum(map => map.persisting), undetermined: sum(map => map.undetermined),
    },
  };
}

/** Worst growth first: most leaked entries added, then most new, then most persisting. */
function compareGrowth(a: MapDiff, b: MapDiff): number {
  return (b.leakedAfter - b.leakedBefore) - (a.leakedAfter - a.leakedBefore)
    || b.new - a.new
    || b.persisting - a.persisting
    || (b.fillAfter ?? -1) - (a.fillAfter ?? -1)
    || (a.map < b.map ? -1 : a.map > b.map ? 1 : 0);
}

function mapDiff(name: string, before: MapSide | undefined, after: MapSide | undefined, persistingSamples: Array<LeakRow>, minutes: number | null): MapDiff {
  const leakedBefore = before?.leaked ?? new Set<string>();
  const leakedAfter = after?.leaked ?? new Set<string>();
  let persisting = 0;
  let undetermined = 0;
  for (const key of leakedBefore) {
    if (leakedAfter.has(key))
      persisting += 1;
    else if (after?.unknown.has(key))
      undetermined += 1;
  }
  const hours = minutes !== null && minutes > 0 ? minutes / 60 : null;
  const leaksPerHour = hours === null ? null : (leakedAfter.size - leakedBefore.size) / hours;
  const entriesBefore = before ? before.entries : null;
  const entriesAfter = after ? after.entries : null;
  const maxEntries = after?.maxEntries ?? before?.maxEntries ?? null;
  const entriesPerHour = hours === null || entriesBefore === null || entriesAfter === null ? null : (entriesAfter - entriesBefore) / hours;
  const fill = (entries: number | null) => entries === null || !maxEntries ? null : entries / maxEntries;
  const hoursToFull = leaksPerHour !== null && leaksPerHour > 0 && maxEntries && entriesAfter !== null
    ? Math.max(0, maxEntries - entriesAfter) / leaksPerHour
    : null;
  return {
    map: name,
    leakedBefore: leakedBefore.size,
    leakedAfter: leakedAfter.size,
    new: leakedAfter.size - persisting,
    gone: leakedBefore.size - persisting - undetermined,
    persisting,
    undetermined,
    entriesBefore,
    entriesAfter,
    maxEntries,
    fillBefore: fill(entriesBefore),
    fillAfter: fill(entriesAfter),
    minutes,
    leaksPerHour,
    entriesPerHour,
    hoursToFull,
    persistingSamples,
  };
}

/** Reads and judges one capture: NDJSON file (judged when it has no verdicts) or capture directory. */
export async function loadCapture(ctx: ToolContext, path: string, options: LoadOptions = {}): Promise<CaptureSide> {
  let info;
  try {
    info = await stat(path);
  } catch (err) {
    throw new UsageFault(`${path}: ${(err as NodeJS.ErrnoException).code === `ENOENT` ? `no such file or directory` : (err as Error).message}`);
  }
  const aggregator = new ReportAggregator({samples: 0, groupBy: []});
  const maps = new Map<string, MapSide>();
  const rows = new Map<string, Array<LeakRow>>();
  const headers: Array<HeaderRecord> = [];
  const side = (name: string): MapSide => {
    let found = maps.get(name);
    if (!found) {
      found = {map: name, entries: 0, maxEntries: null, leaked: new Set(), unknown: new Set()};
      maps.set(name, found);
    }
    return found;
  };
  const entriesSeen = new Map<string, number>();
  // Per map id: its name and size, and whether it was dumped. A capture directory's listing names
  // every map of the host, also those the capture did not dump (`-i`, `-m`): those are left out.
  const ids = new Map<number, {name: string, maxEntries: number, dumped: boolean}>();
  const observe = (record: AnyRecord) => {
    aggregator.add(record);
    switch (record.type) {
      case `header`:
        if (headers.length < 16)
          headers.push(record);
        break;
      case `map`:
        if (!ids.has(record.mapId))
          ids.set(record.mapId, {name: record.catalogName, maxEntries: record.maxEntries, dumped: false});
        break;
      case `mapstats`: {
        const id = ids.get(record.mapId);
        // The first dump of an id counts (a recheck re-reads it later).
        if (id && !id.dumped && (record.complete || record.entries > 0)) {
          id.dumped = true;
          side(record.map).entries += record.entries;
        }
        break;
      }
      case `verdict`:
        addVerdict(side(record.map), record);
        entriesSeen.set(record.map, (entriesSeen.get(record.map) ?? 0) + 1);
        if (record.status === `leaked` && options.keep?.(record.map, record.keyHex)) {
          // Rows are made as the verdict passes: the processes seen so far name its pid.
          const list = rows.get(record.map) ?? [];
          rows.set(record.map, list);
          if (list.length < (options.samples ?? 10))
            list.push(leakRow(aggregator, record));
        }
        break;
      default:
        break;
    }
  };
  if (info.isDirectory()) {
    await scan(ctx, {dump: {}, from: path, recheckDelaySeconds: 1, samples: 0, groupBy: [], observe});
  } else {
    const read = () => readInputs([path], Readable.from([]), {onProblem: message => ctx.log.warn(message)});
    let judged = false;
    for await (const record of read()) {
      if (record.type === `verdict`) {
        judged = true;
        break;
      }
    }
    if (judged) {
      for await (const record of read())
        observe(record);
    } else {
      // Entries and snapshots only: judge them against the file's own snapshots, never this host.
      for await (const record of validate(ctx, tap(read(), observe), {live: `never`})) {
        if (record.type === `verdict`)
          observe(record);
      }
    }
  }
  // Maps sharing a name count together, with the ids that were dumped (or judged).
  for (const id of ids.values()) {
    if (id.dumped || maps.has(id.name)) {
      const map = side(id.name);
      map.maxEntries = (map.maxEntries ?? 0) + id.maxEntries;
    }
  }
  // Without mapstats (a stream cut down to verdicts), the verdicts count the entries.
  for (const [name, map] of maps) {
    if (map.entries === 0)
      map.entries = entriesSeen.get(name) ?? 0;
  }
  const source = pickSource(headers);
  return {
    path, kind: info.isDirectory() ? `directory` : `ndjson`,
    host: source?.host ?? null, kernel: source?.kernel ?? null, time: source?.time ?? null,
    timeMs: source?.timeMs ?? null, maps, rows,
  };
}

/** Keeps the latest word on each key: a recheck's verdict after validate's replaces it. */
function addVerdict(map: MapSide, verdict: VerdictRecord): void {
  const key = verdict.keyHex;
  map.leaked.delete(key);
  map.unknown.delete(key);
  if (verdict.status === `leaked`) {
    map.leaked.add(key);
  } else if (verdict.status === `unknown`) {
    map.unknown.add(key);
  }
}

async function* tap(input: AsyncIterable<AnyRecord>, observe: (record: AnyRecord) => void): AsyncGenerator<AnyRecord> {
  for await (const record of input) {
    if (record.type !== `verdict`)
      observe(record);
    yield record;
  }
}
