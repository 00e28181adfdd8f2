// scan: the original tool's one command, done with the stages' own library functions in one
// process, records passed as objects from stage to stage (never re-serialised).
//
//   dumpMaps → snapshotConns → snapshotPids → validate → recheck → report
//
// Order: the system is snapshotted FIRST and the maps dumped AFTER, so validate judges every
// entry as it streams out of the dump and never holds the dump in memory (a million entries are
// hundreds of MB as objects). The cost is the original tool's race: a connection opened during
// the dump is missing from the snapshot and looks leaked at the first look. recheck settles every
// such candidate: after its wait it takes fresh snapshots and then re-reads the maps, so the entry
// is either matched (`alive`, reason `race`), gone from its map (`resolved`), or leaked twice.
// With --recheck-delay 0 those races stay reported, as in the original tool.
//
// The capture (--capture FILE) is every record seen: the stages' input (header, maps, entries,
// mapstats, namespaces, sockets, processes, snapshots) as it is produced, then each new record
// coming out of validate/recheck (verdicts, recheck outcomes, summaries). The report is built
// from exactly those records, so `report < FILE` prints the same report anywhere.
import {selectionNeedsSocketFds} from '../catalogue.ts';
import type {WriteStream} from 'node:fs';
import {finished} from 'node:stream/promises';
import {batched} from '../batch.ts';
import type {ToolContext} from '../context.ts';
import {dumpMapBatches, fillSampleKeyHex, type DumpOptions} from '../dump/index.ts';
import {LeanPool} from '../dump/leanPool.ts';
import {ReadAhead, type SharedWalk} from '../dump/readAhead.ts';
import {EnvironmentFault} from '../errors.ts';
import {makeHeader} from '../header.ts';
import {captureOrigin, type Origin} from '../provenance.ts';
import {RecordWriter, writeErrorOf} from '../ndjson.ts';
import {createPrivateFile} from '../outputFile.ts';
import {ReportAggregator, type GroupField} from '../report/aggregate.ts';
import {buildReport, type ReportModel} from '../report/model.ts';
import type {AnyRecord} from '../schema.ts';
import {snapshotConnsBatches} from '../snapshot/conns.ts';
import {FdLinksCache, type FdWalks} from '../snapshot/fdLinks.ts';
import {callsKernelDirectly} from '../sys/syscalls.ts';
import {snapshotPids} from '../snapshot/pids.ts';
import {validateBatches} from '../validate/index.ts';
import {SnapshotIndex} from '../validate/snapshotIndex.ts';
import {kernelMayRead} from '../dump/rehearsal.ts';
import {rehearse} from './rehearsal.ts';
import {recheckBatches, type RecheckOptions} from '../validate/recheck.ts';

export interface ScanOptions {
  dump: DumpOptions;
  /** Capture directory to scan instead of the live host. */
  from?: string;
  /** Seconds before recheck looks again; 0 (or less) skips the recheck. */
  recheckDelaySeconds: number;
  /** File to write every record to (created 0600, never over an existing path unless `force`). */
  capture?: string;
  force?: boolean;
  samples: number;
  groupBy: ReadonlyArray<GroupField>;
  /** Called with every record the report counts (the capture's records), in order: diff reads a capture this way. */
  observe?: (record: AnyRecord) => void;
  /** Live: rehearse the dump and the judging before the real dump (src/scan/rehearsal.ts); default true (tests turn it off to compare). */
  rehearse?: boolean;
  /**
   * Called once both snapshots are taken, before the rehearsal and the dump: the bundle's loader
   * lowers V8's inlining budget here (scripts/build.mjs), for the compiles of the judging, after
   * Node's own modules are loaded (a flag changed sooner made V8 refuse their code caches).
   */
  tuneCompiler?: () => void;
}

export interface ScanResult {
  model: ReportModel;
  records: number;
  /** Where and when the data was taken, when it is a capture (`from`). */
  origin: Origin | null;
}

const WORKER_STARTERS = {loader: `the loader, before the program was read`, program: `the program, first thing`, reader: `scan`} as const;

/** What a scan without root cannot read, for the message. */
export const NOT_ROOT = `not running as root: the eBPF maps (bpftool/system-probe need CAP_BPF or CAP_SYS_ADMIN), `
  + `other processes' /proc/PID/net tables and ns/net links, and bind-mounted namespaces cannot be read, `
  + `so leaks would be reported wrongly. Run it with sudo, or scan a capture directory with --from DIR`;

export async function scan(ctx: ToolContext, options: ScanOptions): Promise<ScanResult> {
  if (ctx.uid !== 0 && options.from === undefined)
    throw new EnvironmentFault(NOT_ROOT);
  const aggregator = new ReportAggregator({samples: options.samples, groupBy: options.groupBy});
  const capture = options.capture !== undefined ? await openCapture(options.capture, options.force ?? false) : null;
  let records = 0;
  const writer = capture?.writer ?? null;
  /** Counts a record into the report and the capture; a promise only when a write must wait. */
  const keep = (record: AnyRecord): Promise<void> | undefined => {
    records += 1;
    // A lean entry's key hex, left for later, is made for the verdicts the report keeps whole.
    fillSampleKeyHex(record, aggregator);
    aggregator.add(record);
    options.observe?.(record);
    return writer?.write(record);
  };
  // The per-record loops live in these small functions, not in the generators below: a loop in
  // a big generator made V8 optimise all of it (tens of ms of compiling, again after each deopt).
  let waiting: Promise<void> | undefined;
  /** Keeps batch[from..to] (all records, or only verdicts and summaries); stops after one whose write must be waited for (`waiting`): returns where to go on. */
  const keepFrom = (batch: ReadonlyArray<AnyRecord>, from: number, judgedOnly = false, to = batch.length): number => {
    for (let i = from; i < to; i++) {
      const record = batch[i];
      if (judgedOnly && record.type !== `verdict` && record.type !== `summary`)
        continue;
      const pending = keep(record);
      if (pending) {
        waiting = pending;
        return i + 1;
      }
    }
    return to;
  };
  // A capture is stamped with its own host, kernel and time (meta/), and marked replayed.
  const origin = options.from !== undefined ? await captureOrigin(options.from) : null;
  // Live: the worker thread that will read the maps ahead (closed in `finally`, whatever fails).
  const helper = options.from === undefined ? new ReadAhead(ctx.tmpDir, options.dump.batchEntries) : null;
  let finishedScan = false;
  try {
    // It starts now, and walks every process's fd/ while this thread reads the socket tables (its
    // result is waited for before snapshot-pids).
    const early = helper !== null ? helper.walkFdLinks(ctx.procRoot, process.pid) : null;
    if (helper?.startedBy)
      ctx.log.debug(`read-ahead worker started by ${WORKER_STARTERS[helper.startedBy]}`);
    // The FFI is loaded to read our own namespace's socket tables (NETLINK_SOCK_DIAG), else once
    // the tables are read (handOverFfi): its module is decompressed meanwhile.
    if (helper !== null && kernelMayRead(options.dump))
      ctx.syscalls.prepare?.();
    const header = makeHeader(`scan`, ctx, origin);
    await keep(header);

    // Batches from stage to stage (src/batch.ts): one await per batch, each entry judged inside
    // validate's batch loop.
    // The first look's stages share one walk of each process's fd/ (socket fds, map holders);
    // recheck's later look, with the plain context, walks afresh.
    const firstLook: ToolContext = options.from === undefined ? {...ctx, fdLinks: new FdLinksCache()} : ctx;
    // validate's index, made here so that the rehearsal (live: src/scan/rehearsal.ts) judges
    // against it too once validate has filled it, before the real dump.
    const entriesOwned = !recordsSeenWhole(options);
    const index = new SnapshotIndex({matchTexts: !entriesOwned});
    // Lean records (nothing sees them whole: no capture, observer or recheck) come back once the
    // report has counted them, and are used again for later entries (src/dump/leanPool.ts; the
    // report copies the samples it keeps).
    const leanPool = entriesOwned ? new LeanPool() : null;
    // Only where the dump itself may use the kernel backend: a scan told to use bpftool or
    // system-probe makes no bpf() call of its own.
    const rehearsal = options.from === undefined && options.rehearse !== false && kernelMayRead(options.dump)
      ? async (dump: DumpOptions) => {
        const judged = await rehearse(firstLook, dump, index, {samples: options.samples, groupBy: options.groupBy});
        ctx.log.debug(`rehearsal: ${judged} entries read, judged and counted apart before the dump (none of them in the report)`);
      }
      : null;
    async function* observed(): AsyncGenerator<ReadonlyArray<AnyRecord>> {
      // Without a capture the entries are seen only here: an entry's keyHex is made only while
      // its map's samples are not all taken (the report reads no other), and then, when its key
      // stays readable, only for a verdict kept as a sample (keep).
      // Nothing else sees the records: a batch's run of entries is only counted (all the report
      // takes of an entry), not kept one by one.
      const countOnly = writer === null && options.observe === undefined;
      const dump: DumpOptions = {...options.dump, keyHexWanted: mapId => aggregator.samplesWanted(mapId), leanPool: leanPool ?? undefined};
      for await (const batch of stages(firstLook, {...options, dump}, helper, early, rehearsal)) {
        const [first, end] = countOnly ? entryRun(batch) : [0, 0];
        for (let i = keepFrom(batch, 0, false, first); i < first; i = keepFrom(batch, i, false, first))
          await waiting;
        records += end - first;
        aggregator.countEntries(end - first);
        for (let i = keepFrom(batch, end); i < batch.length; i = keepFrom(batch, i))
          await waiting;
        yield batch;
      }
    }

    const validated = validateBatches(ctx, observed(), {live: `never`, entriesOwned, index});
    const output = options.recheckDelaySeconds > 0
      ? recheckBatches(withCountdown(ctx), validated, recheckOptions(options))
      : validated;
    for await (const batch of output) {
      // validate and recheck make verdicts and summaries (recheck replaces validate's leaked
      // verdicts and its summaries, so each reaches here once); every other record they emit is
      // one of their input's, already kept on the way in.
      for (let i = keepFrom(batch, 0, true); i < batch.length; i = keepFrom(batch, i, true))
        await waiting;
      // Counted: nothing holds these records any longer.
      leanPool?.giveBack(batch);
    }
    finishedScan = true;
  } finally {
    helper?.close();
    ctx.log.done();
    if (capture !== null && !finishedScan)
      capture.abandon();
  }
  if (capture !== null)
    await capture.close();
  return {model: buildReport(aggregator), records, origin};
}

/**
 * The FFI, loaded on this thread by the time the socket tables are read (they load it for our own
 * namespace's; else now, while the worker still walks fd/, the wait this thread would have
 * anyway) and handed to the worker, which loads it after its walks, before the dump's first
 * batch lookup. Only when the kernel backend may read the maps.
 */
function handOverFfi(ctx: ToolContext, helper: ReadAhead, options: ScanOptions): void {
  if (!kernelMayRead(options.dump))
    return;
  const sys = ctx.syscalls();
  if (!(`unavailable` in sys) && callsKernelDirectly(sys))
    helper.useSyscalls(sys);
}

/** The two snapshots, then the dump, as one stream of batches; progress on a TTY. */
async function* stages(
  ctx: ToolContext, options: ScanOptions, helper: ReadAhead | null, early: SharedWalk | null, rehearsal: ((dump: DumpOptions) => Promise<void>) | null,
): AsyncGenerator<ReadonlyArray<AnyRecord>> {
  const from = options.from;
  ctx.log.progress(`snapshotting network namespaces and sockets...`);
  yield* snapshotConnsBatches(ctx, {from}) as AsyncIterable<Array<AnyRecord>>;
  if (helper !== null) {
    // One turn of the event loop: what finished off this thread meanwhile (the FFI module's
    // decompression) is taken in before the FFI is loaded, when the tables did not load it.
    await new Promise(resolve => setImmediate(resolve));
    handOverFfi(ctx, helper, options);
  }
  // The worker's fd/ walks, made meanwhile (this thread takes the processes it has not got to
  // yet, or all of them when the worker has not started): snapshot-pids and the map holders read them.
  const walks = early === null ? null : early.help() ?? await early.done;
  if (walks !== null) {
    ctx.fdLinks?.adopt(walks);
    ctx.log.debug(`fd/ of ${walks.length} process(es) walked for this look (the worker thread and this one)`);
  }
  ctx.log.progress(`snapshotting processes...`);
  yield* batched(snapshotPids(ctx, {from, socketFds: selectionNeedsSocketFds(options.dump.selection ?? {})}) as AsyncIterable<AnyRecord>);
  // Live: the kernel backend's batch lookups run in a worker, ahead of the entries being judged.
  // Values as hex only when a record can be seen whole: the report reads none of them.
  const withValues = recordsSeenWhole(options);
  const dump: DumpOptions = from !== undefined ? {...options.dump, from: [from], withValues} : {...options.dump, readAhead: helper ?? true, withValues};
  let map = ``;
  let entries = 0;
  let mapEntries = 0;
  const startedMs = ctx.clock.now();
  let shownMs = 0;
  const show = () => {
    const now = ctx.clock.now();
    shownMs = now;
    const rate = Math.round(entries / Math.max(0.001, (now - startedMs) / 1000));
    ctx.log.progress(`dumping ${map}: ${mapEntries} entries (${entries} in all, ${rate} entries/s)`);
  };
  const noteRecord = (record: AnyRecord) => {
    if (record.type === `map`) {
      map = `${record.name} (id ${record.mapId})`;
      mapEntries = 0;
      show();
    } else if (record.type === `entry`) {
      entries += 1;
      mapEntries += 1;
    } else if (record.type === `mapstats`) {
      show();
      ctx.log.info(`dumped ${map}: ${record.entries} entries${record.complete ? `` : ` (incomplete: ${record.error ?? `unknown error`})`}`);
    }
  };
  // The dump's batches hold entries, with its other records only before them (a map record,
  // alone) or after them (the mapstats): those are looked at one by one, the entries between
  // counted whole (entryRun). A loop over every record, reading the type of records of every shape, was
  // compiled again and again (7 optimising compiles, 36 ms of V8's time in a 225k scan).
  const progress = (batch: ReadonlyArray<AnyRecord>) => {
    // Unchecked: a miscounted batch would only show a wrong count on the progress line.
    const [first, end] = entryRun(batch, false);
    for (let i = 0; i < first; i++)
      noteRecord(batch[i]);
    entries += end - first;
    mapEntries += end - first;
    if (end > first && ctx.clock.now() - shownMs >= 100)
      show();
    for (let i = end; i < batch.length; i++)
      noteRecord(batch[i]);
  };
  if (options.tuneCompiler !== undefined) {
    options.tuneCompiler();
    ctx.log.debug(`V8's inlining budget lowered for the judging's compiles (the loader's tuning)`);
  }
  // Both snapshots are in validate's index by now (it took every batch yielded above). The
  // rehearsal runs once the first map's reading has started in the worker, while it reads.
  const real: DumpOptions = rehearsal === null ? dump : {...dump, firstMapOpened: () => rehearsal(dump)};
  for await (const batch of dumpMapBatches(ctx, real)) {
    progress(batch);
    yield batch;
  }
}

/**
 * Where a batch's entries are, [first, end): the dump's batches hold entries with its other
 * records only before them (a map record) or after them (the mapstats). `checked`: an empty run
 * for any batch that is not so (the snapshots', or entries with other records between them).
 */
function entryRun(batch: ReadonlyArray<AnyRecord>, checked = true): [number, number] {
  let first = 0;
  let end = batch.length;
  while (first < end && batch[first].type !== `entry`)
    first++;
  while (end > first && batch[end - 1].type !== `entry`)
    end--;
  for (let i = first; checked && i < end; i++) {
    if (batch[i].type !== `entry`)
      return [batch.length, batch.length];
  }
  return [first, end];
}

/** A capture, an observer or recheck sees records whole; else only the report's counters read them. */
function recordsSeenWhole(options: ScanOptions): boolean {
  return options.capture !== undefined || options.observe !== undefined || options.recheckDelaySeconds > 0;
}

function recheckOptions(options: ScanOptions): RecheckOptions {
  // A capture directory's later/ (or, without one, the capture itself) is the second look.
  if (options.from !== undefined)
    return {later: options.from};
  const {selection: _selection, mapIds: _mapIds, from: _from, ...dump} = options.dump;
  // scan read the data itself, live, on this host: the second look may be live too.
  return {delayMs: options.recheckDelaySeconds * 1000, dump, local: true};
}

/** The same context, whose sleeps show a countdown on the progress line. */
function withCountdown(ctx: ToolContext): ToolContext {
  return {
    ...ctx,
    clock: {
      now: () => ctx.clock.now(),
      monotonicNs: ctx.clock.monotonicNs,
      async sleep(ms, signal) {
        let left = ms;
        while (left > 0) {
          ctx.log.progress(`rechecking candidate leaks in ${Math.ceil(left / 1000)} s...`);
          const step = Math.min(left, 1000);
          await ctx.clock.sleep(step, signal);
          left -= step;
        }
        ctx.log.progress(`rechecking candidate leaks...`);
      },
    },
  };
}

interface Capture {
  writer: RecordWriter;
  /** Flushes and closes; throws WriteFailed (exit 3, naming the file) when any write failed. */
  close(): Promise<void>;
  /** Stops writing (the scan failed for another reason, which is the one reported). */
  abandon(): void;
}

async function openCapture(path: string, force: boolean): Promise<Capture> {
  const stream: WriteStream = await createPrivateFile(path, {force, what: `--capture ${path}`});
  const writer = new RecordWriter(stream, JSON.stringify, path);
  return {
    writer,
    async close() {
      try {
        await writer.end();
      } catch (err) {
        stream.destroy();
        throw err;
      }
      stream.end();
      // finished() settles even when the stream already closed (an error destroys it at once):
      // waiting for a `close` event that already fired would wait forever.
      try {
        await finished(stream);
      } catch (err) {
        throw writeErrorOf(err as NodeJS.ErrnoException, path);
      }
    },
    abandon() {
      writer.release();
      stream.destroy();
    },
  };
}
