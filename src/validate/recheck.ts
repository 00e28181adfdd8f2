// recheck: a second look at the leaked verdicts, to drop the races a single snapshot cannot
// avoid (a connection opened after the snapshot, an entry deleted just after the dump).
//
// Everything that is not a leaked verdict streams straight through. The leaked ones are held
// (past a limit, the verdicts in a spill file and their keys in one file per map); when the
// input ends the stage waits ONE delay for the whole run (the original tool waited once per
// leaky map, one after another: B16), then looks again at both sides:
//   1. fresh snapshots of sockets and processes (first: see below);
//   2. a re-read of only the maps that had leaked candidates (one dump per map, not per key; only
//      the keys are taken from it, marked against that map's candidate keys).
// An entry gone from its map is `resolved`; one that now matches a socket/process is `alive`
// (`race`); the rest stay `leaked`, confirmed twice (checks: 2).
//
// Why snapshots before the re-read: a live connection's entry is deleted when the connection
// closes. Reading the map after the snapshot means "entry still there, socket already absent
// before" cannot be a connection that closed in between: it was gone before the entry was seen.
import {constants} from 'node:fs';
import {access, stat} from 'node:fs/promises';
import {join} from 'node:path';
import {Readable} from 'node:stream';
import {singly, unbatched, type Batches} from '../batch.ts';
import type {ToolContext} from '../context.ts';
import {dumpMapKeys, type DumpOptions, type KeyVisitor} from '../dump/index.ts';
import {EnvironmentFault, ToolError, UsageFault, errorMessage} from '../errors.ts';
import {offlineSource} from '../dump/offline.ts';
import {readInputs} from '../ndjson.ts';
import {Provenance, UNKNOWN_HOST, captureOrigin, type CaptureMeta, type Origin} from '../provenance.ts';
import {HOLD_IN_MEMORY, RecordHolding} from './holding.ts';
import {CandidateKeys} from './keySet.ts';
import type {AnyRecord, VerdictRecord} from '../schema.ts';
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
  /** Standard input, for `later: '-'`. */
  stdin?: Readable;
  /** The input is this host's, live, though no header says so (`--local`): a live second look is allowed. */
  local?: boolean;
  /** Fed the input's headers and snapshot records (the command's header, the first look's time). */
  provenance?: Provenance;
  /** When the first look was taken, when the caller knows better than the input's records (scan). */
  firstLookMs?: number;
}

/** Why a live second look at this host must not judge the input; null when it may. */
export function liveLookRefusal(ctx: ToolContext, provenance: Provenance, local: boolean): string | null {
  const origin = provenance.origin;
  if (origin !== null) {
    const what = origin.host === ctx.host.hostname
      ? `a capture of this host replayed (data from ${origin.time}): a live look now would compare it with the present, not with the moment after`
      : `host ${origin.host} (data from ${origin.time}), this is ${ctx.host.hostname}: a live second look would judge another host's entries (and "resolve" every one)`;
    return `the verdicts are about ${what}; give that capture's later look with --later CAPTURE (a capture directory's later/ is used), or a later NDJSON capture of ${origin.host}`;
  }
  if (provenance.headers === 0 && !local)
    return `the input has no header record, so nothing says its verdicts are about this host, live: no live second look. For a capture, give its later look with --later CAPTURE; if the verdicts were made live on this host (a filter dropped the header), say so with --local`;
  return null;
}

/** The host of a later capture: a directory's meta/, or the first header of an NDJSON file. */
async function laterOrigin(ctx: ToolContext, later: string): Promise<Origin | null> {
  const dir = await laterDir(later);
  if (dir !== null)
    return dir.meta;
  for await (const record of readInputs([later], Readable.from([]), {onProblem: () => {}})) {
    if (record.type !== `header`)
      return null;
    const header = record;
    return {host: header.host, kernel: header.kernel, time: header.time, timeMs: header.timeMs};
  }
  return null;
}

/**
 * Checks the later capture before anything is written: it exists, and a directory is a capture
 * (has a map listing). Errors name --later, the flag the user gave.
 */
async function checkLater(ctx: ToolContext, later: string): Promise<void> {
  let info;
  try {
    info = await stat(later);
  } catch (err) {
    throw new EnvironmentFault(`--later ${later}: ${(err as NodeJS.ErrnoException).code === `ENOENT` ? `no such file or directory` : errorMessage(err)}`);
  }
  if (info.isDirectory()) {
    const dir = (await laterDir(later))!.dir;
    try {
      await offlineSource(ctx, [dir]);
    } catch (err) {
      if (err instanceof ToolError)
        throw new ToolError(`--later ${later}: not a capture directory: ${err.message.replace(/^--from \S+: /, ``)}`, err.exitCode);
      throw err;
    }
    return;
  }
  if (!info.isFile())
    throw new EnvironmentFault(`--later ${later}: not a file or a capture directory`);
  try {
    await access(later, constants.R_OK);
  } catch (err) {
    throw new EnvironmentFault(`--later ${later}: cannot read: ${(err as NodeJS.ErrnoException).code ?? errorMessage(err)}`);
  }
}

/** A later capture directory (DIR/later when it has one) and what its meta/ says; null for a file. */
async function laterDir(later: string): Promise<{dir: string, meta: CaptureMeta, delaySeconds: number | null} | null> {
  let info;
  try {
    info = await stat(later);
  } catch {
    return null;
  }
  if (!info.isDirectory())
    return null;
  const nested = join(later, `later`);
  const hasNested = await stat(nested).then(found => found.isDirectory(), () => false);
  const dir = hasNested ? nested : later;
  const meta = await captureOrigin(dir);
  // The delay is recorded with the first look (meta/delay), or with the look itself.
  const delaySeconds = hasNested ? (await captureOrigin(later)).delaySeconds ?? meta.delaySeconds : meta.delaySeconds;
  return {dir, meta, delaySeconds};
}

/** Snapshots first, then the maps that had candidates (their entries' keys to `onKey`, no entry records). */
export async function* liveLook(ctx: ToolContext, mapIds: ReadonlyArray<number>, onKey: KeyVisitor, dump: RecheckOptions[`dump`] = {}, socketFds = false): AsyncGenerator<AnyRecord> {
  yield* liveSnapshots(ctx, undefined, socketFds);
  for await (const batch of dumpMapKeys(ctx, {...dump, mapIds}, onKey))
    yield* batch;
}

/** A later capture: an NDJSON file read as is, or a capture directory (its later/ when it has one). */
export async function* laterLook(ctx: ToolContext, mapIds: ReadonlyArray<number>, onKey: KeyVisitor, later: string, stdin: Readable = Readable.from([]), socketFds = false): AsyncGenerator<AnyRecord> {
  // A missing file: readInputs gives the usual "cannot read" environment error.
  const dir = later === `-` ? null : await laterDir(later);
  if (dir !== null) {
    yield* liveSnapshots(ctx, dir.dir, socketFds);
    for await (const batch of dumpMapKeys(ctx, {from: [dir.dir], mapIds}, onKey))
      yield* batch;
    return;
  }
  yield* readInputs([later], stdin, {onProblem: message => ctx.log.warn(message), maxLineLength: ctx.maxLineLength});
}

/** What the second look found: the fresh index, and which candidate keys are still in their maps. */
class SecondLook {
  readonly index = new SnapshotIndex();
  /** Maps whose re-read finished (mapstats complete), or that no longer exist. */
  private readonly conclusive = new Set<number>();
  /** Earliest time of the second look's data (its headers and snapshot records). */
  earliestMs: number | null = null;

  /** Candidate keys per map; the re-read marks the ones it still has (only candidates are kept, not whole maps). */
  constructor(private readonly candidateKeys: CandidateKeys) {}

  /** An entry of the re-read given by its key alone (dumpMapKeys). */
  readonly sawKey: KeyVisitor = (mapId, bytes, length) => {
    this.candidateKeys.markBytes(mapId, bytes, length);
  };

  add(record: AnyRecord): void {
    if ((record.type === `snapshot` || record.type === `header`) && typeof record.timeMs === `number`
      && (this.earliestMs === null || record.timeMs < this.earliestMs))
      this.earliestMs = record.timeMs;
    if (this.index.add(record))
      return;
    if (record.type === `entry`) {
      this.candidateKeys.markHex(record.mapId, record.keyHex);
    } else if (record.type === `mapstats`) {
      const stats = record;
      // A map that is gone took its entries with it; a dump that stopped early proves nothing.
      if (stats.complete || stats.gone === true)
        this.conclusive.add(stats.mapId);
    }
  }

  isConclusive(mapId: number): boolean {
    return this.conclusive.has(mapId);
  }
}

/** recheck, batch in, batch out (src/batch.ts). */
export async function* recheckBatches(ctx: ToolContext, input: Batches<AnyRecord>, options: RecheckOptions = {}): AsyncGenerator<Array<AnyRecord>> {
  const tallies = new Tallies();
  // Leaked verdicts wait for the second look: in memory up to a limit, then in a temp file.
  const candidates = new RecordHolding<VerdictRecord>(ctx, `leaked candidates`, options.holdInMemory);
  // Their keys, per map: what the re-read of each map is compared against.
  const candidateKeys = new CandidateKeys(ctx, options.holdInMemory ?? HOLD_IN_MEMORY);
  const provenance = options.provenance ?? new Provenance(ctx);
  const liveSecondLook = options.later === undefined && options.lookAgain === undefined;
  // `--later -`: a later NDJSON capture on stdin (read once, at the second look).
  const laterIsStdin = options.later === `-`;
  if (options.later !== undefined && !laterIsStdin)
    await checkLater(ctx, options.later);
  const later = options.later !== undefined && !laterIsStdin ? await laterOrigin(ctx, options.later) : null;
  let checkedFirst = false;
  let held = 0;
  // pid_fd candidates are judged again by socket fds: the fresh snapshot must list them.
  let sawPidFd = false;
  try {
    yield* firstPass();
    yield* secondPass();
  } finally {
    candidates.discard();
    candidateKeys.discard();
  }

  async function* firstPass(): AsyncGenerator<Array<AnyRecord>> {
    for await (const batch of input) {
      const out: Array<AnyRecord> = [];
      for (let i = 0; i < batch.length; i++) {
        const record = batch[i];
        if (record.type === `header` || record.type === `snapshot`)
          provenance.observe(record);
        if (!checkedFirst || record.type === `header`) {
          // Before anything goes out: a refused stream leaves stdout empty.
          checkedFirst = true;
          check();
        }
        if (record.type === `verdict`) {
          const verdict = record;
          // Leaked, or updated after the snapshot it was judged against (a race to settle now).
          if (verdict.status === `leaked` || verdict.reason === `updated_after_snapshot`) {
            const stored = candidates.add(verdict);
            if (stored !== undefined)
              await stored;
            candidateKeys.add(verdict.mapId, verdict.keyHex);
            if (verdict.key?.kind === `pid_fd`)
              sawPidFd = true;
            held += 1;
            tallies.get(verdict.mapId, verdict.map);
            continue;
          }
          tallies.get(verdict.mapId, verdict.map).count(verdict.status);
          out.push(record);
        } else if (record.type === `summary`) {
          // Replaced by recheck's own summary; keep the map in the tally even if it had no entries.
          tallies.get(record.mapId, record.map);
        } else {
          if (record.type === `map`)
            tallies.get(record.mapId, record.catalogName);
          out.push(record);
        }
      }
      if (out.length > 0)
        yield out;
    }
  }

  /** Looking at this host again only makes sense for verdicts about this host, live; a later capture must be of the same host. */
  function check(): void {
    if (liveSecondLook) {
      const refusal = liveLookRefusal(ctx, provenance, options.local === true);
      if (refusal !== null)
        throw new UsageFault(refusal);
    } else if (later !== null && later.host !== UNKNOWN_HOST) {
      const host = provenance.origin?.host ?? (provenance.headers > 0 ? ctx.host.hostname : null);
      if (host !== null && host !== UNKNOWN_HOST && host !== later.host)
        throw new UsageFault(`--later ${options.later}: that capture is of host ${later.host}, the verdicts are about host ${host}: the second look must be at the same host`);
    }
  }

  async function* secondPass(): AsyncGenerator<Array<AnyRecord>> {
    if (!checkedFirst)
      check();
    let secondLookMs: number | null = null;
    // The delay asked for: ours, or the one the later capture was taken after (its meta/delay).
    const delayMs = options.later === undefined ? options.delayMs ?? DEFAULT_RECHECK_DELAY_MS
      : await laterDir(options.later).then(dir => dir?.delaySeconds != null ? dir.delaySeconds * 1000 : null);
    if (held > 0) {
      const mapIds = candidateKeys.mapIds;
      // A later capture was taken later already: no wait for it.
      if (options.later === undefined && delayMs! > 0) {
        ctx.log.info(`recheck: ${held} leaked candidate(s) in ${mapIds.length} map(s); looking again in ${delayMs! / 1000} s`);
        await ctx.clock.sleep(delayMs!);
      }
      const look = new SecondLook(candidateKeys);
      const startedMs = ctx.clock.now();
      const records = options.lookAgain !== undefined ? options.lookAgain(ctx, mapIds)
        : options.later !== undefined ? laterLook(ctx, mapIds, look.sawKey, options.later, options.stdin, sawPidFd)
          : liveLook(ctx, mapIds, look.sawKey, options.dump, sawPidFd);
      try {
        for await (const record of records)
          look.add(record);
      } catch (err) {
        if (options.later !== undefined && err instanceof ToolError && !err.message.startsWith(`--later`))
          throw new ToolError(`--later ${options.later}: ${err.message.replace(/^--from \S+: /, ``)}`, err.exitCode);
        throw err;
      }
      candidateKeys.settleAll();
      secondLookMs = liveSecondLook ? startedMs : look.earliestMs ?? (options.later === undefined ? startedMs : null);
      for (const mapId of mapIds) {
        if (!look.isConclusive(mapId))
          ctx.log.warn(`recheck: map ${mapId} could not be re-read completely: its entries are rechecked against the fresh snapshots only`);
      }
      let unconfirmed = 0;
      for await (const verdicts of candidates.drain()) {
        const out: Array<AnyRecord> = new Array(verdicts.length);
        for (let i = 0; i < verdicts.length; i++) {
          const verdict = verdicts[i];
          const after = second(verdict, look, candidateKeys.nextMarked(verdict.mapId));
          if (after.checks === verdict.checks)
            unconfirmed += 1;
          const tally = tallies.get(after.mapId, after.map);
          tally.count(after.status);
          if (after.status === `alive`)
            tally.raceFiltered += 1;
          out[i] = after;
        }
        yield out;
      }
      if (unconfirmed > 0)
        ctx.log.warn(`recheck: ${unconfirmed} leaked verdict(s) could not be confirmed (the second look lacked evidence): kept as leaked with checks unchanged`);
    }
    const looks = {firstLookMs: options.firstLookMs ?? provenance.earliestMs, secondLookMs, delayMs};
    yield [...tallies.summaries(`recheck`)].map(summary => ({...summary, ...looks}));
  }
}

/** recheck one record at a time (each input record a batch of its own). */
export function recheck(ctx: ToolContext, input: AsyncIterable<AnyRecord>, options: RecheckOptions = {}): AsyncGenerator<AnyRecord> {
  return unbatched(recheckBatches(ctx, singly(input), options));
}

/** The verdict after the second look; `reread` says whether the re-read of its map had its key. */
function second(verdict: VerdictRecord, look: SecondLook, reread: boolean): VerdictRecord {
  const checks = verdict.checks + 1;
  // Removed: the re-read of its map finished without the key.
  if (look.isConclusive(verdict.mapId) && !reread)
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
      const after: VerdictRecord = {...verdict, status: `leaked`, reason: judgement.reason, checks};
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
