// recheck: a second look at the leaked verdicts, to drop the races a single snapshot cannot
// avoid (a connection opened after the snapshot, an entry deleted just after the dump).
//
// Everything that is not a leaked verdict streams straight through. The leaked ones are held;
// when the input ends the stage waits ONE delay for the whole run (the original tool waited once
// per leaky map, one after another: B16), then looks again at both sides:
//   1. fresh snapshots of sockets and processes (first: see below);
//   2. a re-read of only the maps that had leaked candidates (one dump per map, not per key).
// An entry gone from its map is `resolved`; one that now matches a socket/process is `alive`
// (`race`); the rest stay `leaked`, confirmed twice (checks: 2).
//
// Why snapshots before the re-read: a live connection's entry is deleted when the connection
// closes. Reading the map after the snapshot means "entry still there, socket already absent
// before" cannot be a connection that closed in between: it was gone before the entry was seen.
import {stat} from 'node:fs/promises';
import {join} from 'node:path';
import {Readable} from 'node:stream';
import type {ToolContext} from '../context.ts';
import {dumpMaps, type DumpOptions} from '../dump/index.ts';
import {UsageFault} from '../errors.ts';
import {readInputs} from '../ndjson.ts';
import {RecordHolding} from './holding.ts';
import type {AnyRecord, EntryRecord, MapRecord, MapStatsRecord, VerdictRecord} from '../schema.ts';
import {Tallies, liveSnapshots} from './index.ts';
import {judgeEntry} from './rules.ts';
import {SnapshotIndex} from './snapshotIndex.ts';

export const DEFAULT_RECHECK_DELAY_MS = 2000;

export interface RecheckOptions {
  /** How long to wait before looking again (default 2 s). 0 looks again at once. Ignored with `later`. */
  delayMs?: number;
  /** A later capture to look at instead of the live host: an NDJSON file (entries + snapshots) or a capture directory. */
  later?: string;
  /** How dump-maps reaches the maps for the live re-read (backend, paths, timeout). */
  dump?: Omit<DumpOptions, `mapIds` | `from` | `selection`>;
  /** The second look itself (tests, scan): fresh snapshot records, then the re-read maps' records. */
  lookAgain?: (ctx: ToolContext, mapIds: ReadonlyArray<number>) => AsyncIterable<AnyRecord>;
  /** Leaked verdicts held in memory until the second look before spilling to a temp file (tests lower it). */
  holdInMemory?: number;
}

/** Snapshots first, then the maps that had candidates. */
export async function* liveLook(ctx: ToolContext, mapIds: ReadonlyArray<number>, dump: RecheckOptions[`dump`] = {}): AsyncGenerator<AnyRecord> {
  yield* liveSnapshots(ctx);
  yield* dumpMaps(ctx, {...dump, mapIds}) as AsyncIterable<AnyRecord>;
}

/** A later capture: an NDJSON file read as is, or a capture directory (its later/ when it has one). */
export async function* laterLook(ctx: ToolContext, mapIds: ReadonlyArray<number>, later: string): AsyncGenerator<AnyRecord> {
  let info;
  try {
    info = await stat(later);
  } catch {
    // readInputs turns a missing file into the usual "cannot read" environment error.
    info = null;
  }
  if (info?.isDirectory()) {
    const nested = join(later, `later`);
    const dir = await stat(nested).then(found => found.isDirectory() ? nested : later, () => later);
    yield* liveSnapshots(ctx, dir);
    yield* dumpMaps(ctx, {from: [dir], mapIds}) as AsyncIterable<AnyRecord>;
    return;
  }
  yield* readInputs([later], Readable.from([]), {onProblem: message => ctx.log.warn(message)});
}

/** What the second look found: the fresh index, and which candidate keys are still in their maps. */
class SecondLook {
  readonly index = new SnapshotIndex();
  /** Candidate keys (per map) the re-read still had: only candidates are kept, not whole maps. */
  private readonly present = new Map<number, Set<string>>();
  /** Maps whose re-read finished (mapstats complete), or that no longer exist. */
  private readonly conclusive = new Set<number>();

  constructor(private readonly candidateKeys: ReadonlyMap<number, ReadonlySet<string>>) {
    for (const mapId of candidateKeys.keys())
      this.present.set(mapId, new Set());
  }

  add(record: AnyRecord): void {
    if (this.index.add(record))
      return;
    if (record.type === `entry`) {
      const entry = record;
      if (this.candidateKeys.get(entry.mapId)?.has(entry.keyHex))
        this.present.get(entry.mapId)!.add(entry.keyHex);
    } else if (record.type === `mapstats`) {
      const stats = record;
      // A map that is gone took its entries with it; a dump that stopped early proves nothing.
      if (stats.complete || /no longer exists/.test(stats.error ?? ``))
        this.conclusive.add(stats.mapId);
    }
  }

  /** True when the re-read of its map finished and did not have the key. */
  removed(verdict: VerdictRecord): boolean {
    return this.conclusive.has(verdict.mapId) && !(this.present.get(verdict.mapId)?.has(verdict.keyHex) ?? false);
  }

  isConclusive(mapId: number): boolean {
    return this.conclusive.has(mapId);
  }
}

export async function* recheck(ctx: ToolContext, input: AsyncIterable<AnyRecord>, options: RecheckOptions = {}): AsyncGenerator<AnyRecord> {
  const tallies = new Tallies();
  // Leaked verdicts wait for the second look: in memory up to a limit, then in a temp file.
  const candidates = new RecordHolding<VerdictRecord>(ctx, `leaked candidates`, options.holdInMemory);
  // Their keys, per map: what the re-read of each map is compared against.
  const candidateKeys = new Map<number, Set<string>>();
  let held = 0;
  try {
    yield* firstPass();
    yield* secondPass();
  } finally {
    candidates.discard();
  }

  async function* firstPass(): AsyncGenerator<AnyRecord> {
    for await (const record of input) {
      if (record.type === `verdict`) {
        const verdict = record;
        if (verdict.status === `leaked`) {
          const stored = candidates.add(verdict);
          if (stored !== undefined)
            await stored;
          let keys = candidateKeys.get(verdict.mapId);
          if (keys === undefined) {
            keys = new Set();
            candidateKeys.set(verdict.mapId, keys);
          }
          keys.add(verdict.keyHex);
          held += 1;
          tallies.get(verdict.mapId, verdict.map);
          continue;
        }
        tallies.get(verdict.mapId, verdict.map).count(verdict.status);
        yield record;
      } else if (record.type === `summary`) {
        // Replaced by recheck's own summary; keep the map in the tally even if it had no entries.
        tallies.get(record.mapId, record.map);
      } else {
        // Looking at this host again only makes sense for verdicts about this host.
        if (record.type === `header` && typeof record.host === `string` && record.host !== ctx.host.hostname
          && options.later === undefined && options.lookAgain === undefined)
          throw new UsageFault(`the input was captured on host ${record.host}, this is ${ctx.host.hostname}: a live second look would judge another host's entries; give a later capture of ${record.host} with --later`);
        if (record.type === `map`)
          tallies.get(record.mapId, record.catalogName);
        yield record;
      }
    }
  }

  async function* secondPass(): AsyncGenerator<AnyRecord> {
    if (held > 0) {
      const mapIds = [...candidateKeys.keys()];
      const delayMs = options.delayMs ?? DEFAULT_RECHECK_DELAY_MS;
      // A later capture was taken later already: no wait for it.
      if (options.later === undefined && delayMs > 0) {
        ctx.log.info(`recheck: ${held} leaked candidate(s) in ${mapIds.length} map(s); looking again in ${delayMs / 1000} s`);
        await ctx.clock.sleep(delayMs);
      }
      const look = new SecondLook(candidateKeys);
      const records = options.lookAgain !== undefined ? options.lookAgain(ctx, mapIds)
        : options.later !== undefined ? laterLook(ctx, mapIds, options.later)
          : liveLook(ctx, mapIds, options.dump);
      for await (const record of records)
        look.add(record);
      for (const mapId of mapIds) {
        if (!look.isConclusive(mapId))
          ctx.log.warn(`recheck: map ${mapId} could not be re-read completely: its entries are rechecked against the fresh snapshots only`);
      }
      let unconfirmed = 0;
      for await (const verdict of candidates.drain()) {
        const after = second(verdict, look);
        if (after.checks === verdict.checks)
          unconfirmed += 1;
        const tally = tallies.get(after.mapId, after.map);
        tally.count(after.status);
        if (after.status === `alive`)
          tally.raceFiltered += 1;
        yield after;
      }
      if (unconfirmed > 0)
        ctx.log.warn(`recheck: ${unconfirmed} leaked verdict(s) could not be confirmed (the second look lacked evidence): kept as leaked with checks unchanged`);
    }
    yield* tallies.summaries(`recheck`);
  }
}

/** The verdict after the second look. */
function second(verdict: VerdictRecord, look: SecondLook): VerdictRecord {
  const checks = verdict.checks + 1;
  if (look.removed(verdict))
    return {...verdict, status: `resolved`, reason: `removed_from_map`, checks};
  const judgement = judgeEntry(verdict, look.index);
  switch (judgement.status) {
    case `alive`: {
      const after: VerdictRecord = {...verdict, status: `alive`, reason: `race`, checks};
      if (judgement.match !== undefined)
        after.match = judgement.match;
      return after;
    }
    case `leaked`: {
      // The second look's reason: it describes the state that is still there.
      const after: VerdictRecord = {...verdict, reason: judgement.reason, checks};
      if (judgement.match !== undefined)
        after.match = judgement.match;
      else
        delete after.match;
      if (judgement.owner !== undefined)
        after.owner = judgement.owner;
      return after;
    }
    default:
      // Unknown now (a namespace unreadable, no snapshot): not confirmed, not cleared either.
      return verdict;
  }
}
