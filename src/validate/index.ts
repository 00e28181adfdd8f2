// validate: one verdict for every map entry, judged against a snapshot of sockets and processes.
//
// Streams when the snapshots come first (or from --snapshot files, or live with --live): each
// entry is judged as it arrives. Entries that arrive before both snapshot closers (`snapshot` of
// conns and of pids) are held until those arrive or the input ends (in memory up to a limit, then
// in a temporary file: holding.ts); with no snapshot records at all the stage then takes live
// snapshots itself.
import {BATCH_SIZE, singly, unbatched, type Batches} from '../batch.ts';
import type {ToolContext} from '../context.ts';
import {SOURCE_LINE} from '../ndjson.ts';
import {UsageFault} from '../errors.ts';
import {Provenance} from '../provenance.ts';
import {SCHEMA_VERSION, type AnyRecord, type EntryRecord, type MapRecord, type SummaryRecord, type VerdictRecord} from '../schema.ts';
import {snapshotConns} from '../snapshot/conns.ts';
import {snapshotPids} from '../snapshot/pids.ts';
import {judgeEntry} from './rules.ts';
import {RecordHolding} from './holding.ts';
import {COUNT_VALUES, generalizeFields} from '../shapes.ts';
import {MATCH_TEXT, lineCarriesEntry} from './serialize.ts';
import {SNAPSHOT_RECORD_TYPES, SnapshotIndex} from './snapshotIndex.ts';

export interface ValidateOptions {
  /** Snapshot records (or batches of them) read before the input (`--snapshot FILE`); other record types there are ignored. */
  snapshots?: AsyncIterable<AnyRecord> | Batches<AnyRecord>;
  /** `auto` (default): live snapshots only when no snapshot record arrives at all; `always`: take them first and ignore any in the input; `never`. */
  live?: `auto` | `always` | `never`;
  /** Where the live snapshots come from (tests, scan); defaults to snapshot-conns and snapshot-pids (with socket fds when pid_fd entries came). */
  takeSnapshots?: (ctx: ToolContext, socketFds: boolean) => AsyncIterable<AnyRecord>;
  /** Filled in as verdicts go out (the command's exit code), without another pass over the records. */
  counts?: VerdictCounts;
  /** Entries held in memory while waiting for snapshots before spilling to a temp file (tests lower it). */
  holdInMemory?: number;
  /** Fed the input's headers and snapshot records: where the data was taken (the command's header). */
  provenance?: Provenance;
  /**
   * The entries are this stage's alone and its verdicts are not written out (scan without a
   * capture: only the report's counters read them): each entry becomes its own verdict
   * (judgeInPlace) instead of being copied into a new one, and no match's JSON text is made.
   */
  entriesOwned?: boolean;
  /**
   * The index to judge against: filled from the input's snapshot records as usual, or, when it
   * is already complete, judged against as it is from the first entry on (scan's rehearsal,
   * src/scan/rehearsal.ts, judges against the index its real validate filled). Made with
   * `matchTexts` as entriesOwned asks (see SnapshotIndex).
   */
  index?: SnapshotIndex;
}

/** The pipeline that judges a capture by its own snapshots, for messages. */
export const OFFLINE_PIPELINE = [
  `usm-leak-detector snapshot-conns --from CAPTURE > conns.ndjson`,
  `usm-leak-detector snapshot-pids --from CAPTURE > pids.ndjson`,
  `usm-leak-detector dump-maps --from CAPTURE > entries.ndjson`,
  `cat conns.ndjson pids.ndjson entries.ndjson | usm-leak-detector validate | usm-leak-detector recheck --later CAPTURE | usm-leak-detector report`,
  `(or all of it: usm-leak-detector scan --from CAPTURE)`,
].map(line => `    ${line}`).join(`\n`);

/** Why this host's live snapshots must not judge the input's entries; null when they may. */
export function liveSnapshotRefusal(ctx: ToolContext, provenance: Provenance, explicit: boolean): string | null {
  const origin = provenance.origin;
  if (origin !== null) {
    const what = origin.host === ctx.host.hostname ? `a capture (replayed), taken at ${origin.time}` : `host ${origin.host} (data from ${origin.time}), this is ${ctx.host.hostname}`;
    return `the entries come from ${what}: this host's live sockets and processes would judge them wrongly (every connection of the capture looks leaked or alive by chance). Judge them against the capture's own snapshots:\n${OFFLINE_PIPELINE}`;
  }
  if (provenance.headers === 0 && !explicit)
    return `the input has no header record, so nothing says its entries were read on this host: no live snapshots taken. If they are from a capture, judge them against its snapshots:\n${OFFLINE_PIPELINE}\nIf they were dumped live on this host, say so with --live (or give --snapshot files).`;
  return null;
}

export interface VerdictCounts {
  leaked: number;
}

/** Snapshot records small enough to pass on (report counts namespaces); sockets and processes stay here. */
const PASSED_SNAPSHOT_TYPES: ReadonlySet<string> = new Set([`netns`, `snapshot`]);

export class MapTally {
  total = 0;
  alive = 0;
  leaked = 0;
  unknown = 0;
  resolved = 0;
  raceFiltered = 0;

  constructor(readonly mapId: number, public map: string) {}

  count(status: VerdictRecord[`status`]): void {
    this.total += 1;
    // Named stores: `this[status]` was a keyed store by a changing name, once per entry.
    switch (status) {
      case `alive`: this.alive += 1; break;
      case `leaked`: this.leaked += 1; break;
      case `unknown`: this.unknown += 1; break;
      default: this.resolved += 1;
    }
  }

  summary(stage: `validate` | `recheck`): SummaryRecord {
    return {
      type: `summary`, v: SCHEMA_VERSION, stage, mapId: this.mapId, map: this.map, total: this.total,
      alive: this.alive, leaked: this.leaked, unknown: this.unknown, resolved: this.resolved, raceFiltered: this.raceFiltered,
    };
  }
}

/** Per-map tallies in order of first appearance. */
export class Tallies {
  private readonly byId = new Map<number, MapTally>();

  constructor() {
    // Counts made general before any is optimised (src/shapes.ts): the first `unknown` comes late.
    generalizeFields(new MapTally(0, ``), [`total`, `alive`, `leaked`, `unknown`, `resolved`, `raceFiltered`], COUNT_VALUES);
  }

  get(mapId: number, map: string): MapTally {
    let tally = this.byId.get(mapId);
    if (tally === undefined) {
      tally = new MapTally(mapId, map);
      this.byId.set(mapId, tally);
    }
    return tally;
  }

  *summaries(stage: `validate` | `recheck`): Generator<SummaryRecord> {
    for (const tally of this.byId.values())
      yield tally.summary(stage);
  }
}

/**
 * Builds the verdict record for an entry (checks: 1): every field of the entry, known to the spec
 * or not (a newer producer's), then the judgement. The common fields go in one object literal,
 * so every verdict has the same shape from the start (Object.assign of the entry cost validate
 * ~10% CPU). When the entry's line can be the verdict's text (serialize.ts), the line is kept
 * and carries the other fields; else (scan in-process, another key order) they are copied.
 */
export function makeVerdict(entry: EntryRecord, index: SnapshotIndex, mapProblem: string | undefined, readNs?: number): VerdictRecord {
  const judgement = judgeEntry(entry, index, mapProblem, readNs);
  const verdict: Record<string | symbol, unknown> & Partial<VerdictRecord> = {
    type: `verdict`, v: entry.v, mapId: entry.mapId, map: entry.map, keyHex: entry.keyHex, key: entry.key,
    status: judgement.status, reason: judgement.reason, checks: 1,
  };
  const fields = entry as Record<string | symbol, unknown>;
  const line = fields[SOURCE_LINE] as string | undefined;
  if (line !== undefined && lineCarriesEntry(line, entry)) {
    // Written from the line, which holds every field of the entry: the object needs only those
    // code reads (copying the rest cost validate ~4% CPU).
    verdict[SOURCE_LINE] = line;
    if (entry.valueHex !== undefined)
      verdict.valueHex = entry.valueHex;
    if (entry.valuesHex !== undefined)
      verdict.valuesHex = entry.valuesHex;
    if (entry.keyError !== undefined)
      verdict.keyError = entry.keyError;
  } else {
    for (const name in fields) {
      if (!(name in verdict))
        verdict[name] = fields[name];
    }
  }
  if (entry.key?.kind === `pointer`)
    verdict.judgedBy = `value`;
  if (judgement.match !== undefined) {
    verdict.match = judgement.match;
    // A copy: the judgement object is written again by the next entry's.
    if (judgement.matchText !== undefined)
      verdict[MATCH_TEXT] = {match: judgement.match, matchText: judgement.matchText};
  }
  if (judgement.owner !== undefined)
    verdict.owner = judgement.owner;
  return verdict as VerdictRecord;
}

/**
 * makeVerdict for an entry nothing else holds (ValidateOptions.entriesOwned): the entry record
 * itself becomes the verdict, its fields kept and the judgement's added, an object and a copy of
 * every field fewer per entry. Its fields are then not in makeVerdict's order: only for records
 * nothing serialises.
 */
export function judgeInPlace(entry: EntryRecord, index: SnapshotIndex, mapProblem: string | undefined, readNs?: number): VerdictRecord {
  const judgement = judgeEntry(entry, index, mapProblem, readNs);
  const verdict = entry as unknown as Record<string, unknown> & Partial<VerdictRecord>;
  verdict.type = `verdict`;
  verdict.status = judgement.status;
  verdict.reason = judgement.reason;
  verdict.checks = 1;
  if (entry.key?.kind === `pointer`)
    verdict.judgedBy = `value`;
  if (judgement.match !== undefined)
    verdict.match = judgement.match;
  if (judgement.owner !== undefined)
    verdict.owner = judgement.owner;
  return verdict as VerdictRecord;
}

/** snapshot-conns then snapshot-pids, of ctx.procRoot (or of a capture directory). */
export async function* liveSnapshots(ctx: ToolContext, from?: string, socketFds = false): AsyncGenerator<AnyRecord> {
  yield* snapshotConns(ctx, {from}) as AsyncIterable<AnyRecord>;
  yield* snapshotPids(ctx, {from, socketFds}) as AsyncIterable<AnyRecord>;
}

/**
 * validate, batch in, batch out (src/batch.ts): each input batch gives one output batch (plus one
 * per batch of held entries drained), in the same order as record by record. Entries are judged
 * synchronously inside the batch loop; the only awaits are per batch, and while held entries
 * spill to disk.
 */
export async function* validateBatches(ctx: ToolContext, input: Batches<AnyRecord>, options: ValidateOptions = {}): AsyncGenerator<Array<AnyRecord>> {
  const index = options.index ?? new SnapshotIndex({matchTexts: options.entriesOwned !== true});
  const tallies = new Tallies();
  const mapProblems = new Map<number, string>();
  // When each map was read (CLOCK_MONOTONIC ns): dates the entries that carry ageSeconds.
  const mapReadNs = new Map<number, number>();
  const live = options.live ?? `auto`;
  const takeSnapshots = options.takeSnapshots ?? ((c: ToolContext, socketFds: boolean) => liveSnapshots(c, undefined, socketFds));
  const counts = options.counts;
  const provenance = options.provenance ?? new Provenance(ctx);
  let ready = index.isComplete;
  let ignoredSnapshotRecords = 0;
  let droppedJudgements = 0;
  // pid_fd entries are judged by socket fds: a live snapshot taken here then lists them.
  let sawPidFd = false;

  /** Feeds snapshot records (one at a time, or in batches) to the index; yields the ones passed on. */
  async function* load(records: AsyncIterable<AnyRecord> | Batches<AnyRecord>, source: string): AsyncGenerator<Array<AnyRecord>> {
    let others = 0;
    let passed: Array<AnyRecord> = [];
    const take = (record: AnyRecord) => {
      if (record.type === `header` || record.type === `snapshot`)
        provenance.observe(record);
      if (index.add(record)) {
        if (PASSED_SNAPSHOT_TYPES.has(record.type))
          passed.push(record);
      } else if (record.type !== `header`) {
        others += 1;
      }
    };
    for await (const item of records) {
      if (Array.isArray(item)) {
        for (let i = 0; i < item.length; i++)
          take(item[i]);
      } else {
        take(item as AnyRecord);
      }
      if (passed.length >= BATCH_SIZE) {
        yield passed;
        passed = [];
      }
    }
    if (passed.length > 0)
      yield passed;
    if (others > 0)
      ctx.log.warn(`${source}: ignored ${others} record(s) that are not snapshot records (netns, socket, process, snapshot)`);
  }

  // --live: the input's header first, so a capture's entries are never judged by this host.
  const batches = input[Symbol.asyncIterator]();
  let seenFirst: AnyRecord | undefined;
  let first = await batches.next();
  if (live === `always`) {
    const head = first.done ? undefined : first.value[0];
    if (head !== undefined && head.type === `header`)
      provenance.observe(head);
    seenFirst = head;
    const refusal = liveSnapshotRefusal(ctx, provenance, true);
    if (refusal !== null)
      throw new UsageFault(refusal);
    yield* load(takeSnapshots(ctx, true), `live snapshot`);
    ready = true;
  } else if (options.snapshots !== undefined) {
    yield* load(options.snapshots, `--snapshot`);
    ready = true;
  }

  const held = new RecordHolding<EntryRecord>(ctx, `entries before the snapshots`, options.holdInMemory);
  const missingWarned = new Set<string>();
  const inPlace = options.entriesOwned === true;
  const toVerdict = inPlace ? judgeInPlace : makeVerdict;
  // What is known of the map of the entry judged last, read once per run of its entries (a map
  // record starts over: it may bring a problem or a reading time).
  let runMapId = NaN;
  let runProblem: string | undefined;
  let runReadNs: number | undefined;
  let runTally: MapTally | null = null;
  const judge = (entry: EntryRecord): VerdictRecord => {
    if (entry.mapId !== runMapId) {
      runMapId = entry.mapId;
      runProblem = mapProblems.get(entry.mapId);
      runReadNs = mapReadNs.get(entry.mapId);
      runTally = tallies.get(entry.mapId, entry.map);
    }
    const verdict = toVerdict(entry, index, runProblem, runReadNs);
    if (verdict.reason === `no_snapshot` && !missingWarned.has(entry.key!.kind)) {
      missingWarned.add(entry.key!.kind);
      const stage = entry.key!.kind === `conn_tuple` || entry.key!.kind === `pointer` ? `snapshot-conns` : `snapshot-pids`;
      ctx.log.warn(`validate: no ${stage} records in the input: ${entry.key!.kind} entries are judged unknown (no_snapshot)`);
    }
    runTally!.count(verdict.status);
    if (verdict.status === `leaked` && counts !== undefined)
      counts.leaked += 1;
    return verdict;
  };
  const judgeAll = (entries: ReadonlyArray<EntryRecord>): Array<AnyRecord> => {
    const out: Array<AnyRecord> = new Array(entries.length);
    for (let i = 0; i < entries.length; i++)
      out[i] = judge(entries[i]);
    return out;
  };
  /**
   * Judges the run of entries from batch[from] on, into `out`; returns where the run ends. The
   * per-entry loop lives here, not in this generator: a loop in a function this big made V8
   * optimise the whole generator (tens of ms of compiling, again after each deopt). Only once
   * ready: sawPidFd, which only a stage not yet ready reads, is not kept here.
   */
  const judgeRun = (batch: ReadonlyArray<AnyRecord>, from: number, out: Array<AnyRecord>): number => {
    let i = from;
    for (; i < batch.length; i++) {
      const record = batch[i];
      if (record.type !== `entry`)
        break;
      out.push(judge(record));
    }
    return i;
  };

  /** A map record's facts, read before its entries are judged. */
  const noteMap = (record: MapRecord): void => {
    runMapId = NaN;
    if (record.problem !== undefined)
      mapProblems.set(record.mapId, record.problem);
    if (record.monotonicNs !== undefined)
      mapReadNs.set(record.mapId, Number(record.monotonicNs));
    tallies.get(record.mapId, record.catalogName);
  };
  /**
   * Entries judged in place (entriesOwned): a batch of only entries, map and mapstats records (a
   * dump's) comes out as it came in, each entry its own verdict, with no array of its own made.
   * False, with nothing judged, for a batch with any other record.
   */
  const judgedWhole = (batch: ReadonlyArray<AnyRecord>): boolean => {
    for (let i = 0; i < batch.length; i++) {
      const type = batch[i].type;
      if (type !== `entry` && type !== `map` && type !== `mapstats`)
        return false;
    }
    for (let i = 0; i < batch.length; i++) {
      const record = batch[i];
      if (record.type === `entry`)
        judge(record);
      else if (record.type === `map`)
        noteMap(record);
    }
    return true;
  };

  // Input that is not live here, with no snapshots yet: nothing goes out until the capture's own
  // snapshots arrive, so a refusal at the end leaves stdout empty.
  const waiting: Array<AnyRecord> = [];
  const holdBack = () => !ready && live === `auto` && !provenance.isLiveHere;
  try {
    for (; !first.done; first = await batches.next()) {
      const batch = first.value;
      if (ready && inPlace && judgedWhole(batch)) {
        yield batch as Array<AnyRecord>;
        continue;
      }
      let out: Array<AnyRecord> = [];
      const pass = (record: AnyRecord) => {
        if (holdBack())
          waiting.push(record);
        else
          out.push(record);
      };
      for (let i = 0; i < batch.length; i++) {
        const record = batch[i];
        if (ready && record.type === `entry`) {
          i = judgeRun(batch, i, out) - 1;
          continue;
        }
        switch (record.type) {
          case `entry`: {
            const entry = record;
            if (entry.key?.kind === `pid_fd`)
              sawPidFd = true;
            if (ready) {
              out.push(judge(entry));
            } else {
              const stored = held.add(entry);
              if (stored !== undefined)
                await stored;
            }
            break;
          }
          case `netns`:
          case `socket`:
          case `process`:
          case `snapshot`:
            if (ready) {
              // The index is in use: changing it now would judge entries against two different states.
              ignoredSnapshotRecords += 1;
              break;
            }
            if (record.type === `snapshot`)
              provenance.observe(record);
            index.add(record);
            if (PASSED_SNAPSHOT_TYPES.has(record.type))
              pass(record);
            if (index.isComplete) {
              ready = true;
              out.push(...waiting.splice(0));
              if (out.length > 0)
                yield out;
              out = [];
              ctx.log.debug(`validate: snapshots complete; judging ${held.size} held entries`);
              for await (const entries of held.drain())
                yield judgeAll(entries);
            }
            break;
          case `map`:
            noteMap(record);
            pass(record);
            break;
          case `verdict`:
          case `summary`:
            // Judgements already in the input (a `scan --capture` file fed back in): the entries are
            // judged again here, so passing the old ones on would count every entry twice.
            droppedJudgements += 1;
            break;
          case `header`:
            if (record !== seenFirst)
              provenance.observe(record);
            if (provenance.mixture !== null)
              throw new UsageFault(`${provenance.mixture}: entries are judged only against snapshots of the host (and time) they were dumped on`);
            if (ready && live === `always` && provenance.origin !== null)
              throw new UsageFault(`the input has data from host ${provenance.origin.host} (data from ${provenance.origin.time}) after entries were judged against this host's live snapshots (--live): leave --live out and judge it against its own snapshots`);
            pass(record);
            break;
          default:
            pass(record);
        }
      }
      if (out.length > 0)
        yield out;
    }
    if (droppedJudgements > 0)
      ctx.log.info(`validate: dropped ${droppedJudgements} verdict/summary record(s) from the input: the entries are judged again`);

    if (!ready) {
      if (!index.hasConns && !index.hasPids && live === `auto` && held.size > 0) {
        const refusal = liveSnapshotRefusal(ctx, provenance, false);
        if (refusal !== null)
          throw new UsageFault(refusal);
        ctx.log.info(`validate: the input has no snapshot records; taking live snapshots (procRoot ${ctx.procRoot})`);
        yield* load(takeSnapshots(ctx, sawPidFd), `live snapshot`);
      }
      ready = true;
      if (waiting.length > 0)
        yield waiting.splice(0);
      for await (const entries of held.drain())
        yield judgeAll(entries);
    }
    if (ignoredSnapshotRecords > 0)
      ctx.log.warn(`validate: ignored ${ignoredSnapshotRecords} snapshot record(s) that arrived after entries were already judged against an earlier snapshot`);
    yield [...tallies.summaries(`validate`)];
  } finally {
    // Stopped early (reader gone, error): no spill file left behind.
    held.discard();
  }
}

/** validate one record at a time (each input record a batch of its own: the same timing as before). */
export function validate(ctx: ToolContext, input: AsyncIterable<AnyRecord>, options: ValidateOptions = {}): AsyncGenerator<AnyRecord> {
  return unbatched(validateBatches(ctx, singly(input), options));
}

export {SnapshotIndex, SNAPSHOT_RECORD_TYPES};
