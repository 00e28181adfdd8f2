// scan's rehearsal: the first few entries of each map read, judged and counted once, into
// throwaway counters, before the real dump reads the maps from the start.
//
// Why: V8 optimises the hot functions (decoding, judging, counting) as soon as the first map's
// entries make them hot, for the key and field kinds seen so far; each later map that brings
// another kind (v6 tuples, pid_tgid keys, pid_fd keys, extras, dated values, other reasons)
// throws that code away and compiles it again. On a 2-core host those compiles take the cores
// from the main thread: at 225k entries in 14 maps, about 160 optimising compiles and 51
// deoptimisations per scan. With a rehearsal that shows every function every map's kinds first
// (16 entries each), 102-117 compiles and 5-12 deoptimisations (3 runs each, --trace-opt); with
// the loader's smaller inlining budget for scan (scripts/build.mjs) their compile time is a quarter.
//
// What it touches: it reads the maps (read-only, as the dump does), on this thread, 16 entries
// at a time; it judges against the index the real validate filled (read only: judging adds
// nothing to it); it counts into its own report aggregator, which is dropped. It says nothing
// (a silent logger) and a failure of any kind ends it without a word: the real dump then reads
// the maps as it always does. The real dump's evidence is unchanged: the snapshots were taken
// before either read.
import {SILENT_LOGGER, type ToolContext} from '../context.ts';
import {dumpMapBatches, fillSampleKeyHex, type DumpOptions} from '../dump/index.ts';
import {REHEARSAL_ENTRIES} from '../dump/rehearsal.ts';
import {ReportAggregator, type ReportOptions} from '../report/aggregate.ts';
import type {SnapshotIndex} from '../validate/snapshotIndex.ts';
import {validateBatches} from '../validate/index.ts';

/**
 * Rehearses the dump and the judging of `dump` (the real dump's options) on the first entries of
 * each map, against the complete `index`. Never throws; nothing it makes is kept. Returns the
 * number of entries it judged (0 when it could not rehearse).
 */
export async function rehearse(ctx: ToolContext, dump: DumpOptions, index: SnapshotIndex, report: ReportOptions): Promise<number> {
  if (!index.isComplete)
    return 0;
  const quiet: ToolContext = {...ctx, log: SILENT_LOGGER};
  const aggregator = new ReportAggregator(report);
  // The kernel backend only (another one would run bpftool or system-probe again), read here
  // (not in the worker thread: the real dump's reading starts there afterwards).
  const options: DumpOptions = {
    ...dump, backend: `kernel`, download: false, readAhead: false, holders: false, batchEntries: REHEARSAL_ENTRIES, entriesPerMap: REHEARSAL_ENTRIES,
    keyHexWanted: mapId => aggregator.samplesWanted(mapId),
  };
  let judgedEntries = 0;
  try {
    const judged = validateBatches(quiet, dumpMapBatches(quiet, options), {live: `never`, entriesOwned: dump.withValues === false, index});
    for await (const batch of judged) {
      for (let i = 0; i < batch.length; i++) {
        const record = batch[i];
        if (record.type === `verdict`)
          judgedEntries += 1;
        // As scan's keep() does for the verdicts its report keeps whole.
        fillSampleKeyHex(record, aggregator);
        aggregator.add(record);
      }
      // Counted: back to the real dump's pool, as scan gives its batches back (which the
      // rehearsal then rehearses too).
      dump.leanPool?.giveBack(batch);
    }
  } catch {
    // A rehearsal only: the real dump says what is wrong, if anything is.
  }
  return judgedEntries;
}
