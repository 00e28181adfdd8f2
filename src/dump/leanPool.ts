// Lean entry records (scan without a capture: nothing sees a record whole, src/dump/index.ts
// leanEntry) used again once the scan is done with them, their LeanTuple keys refilled in place.
//
// Why: a 225k-entry scan made 137 MB of short-lived objects, half of them these records and their
// tuples (about 300 bytes an entry); with the records taken back after each batch it makes 66 MB,
// and the scan takes 30-40 ms less (README, "scan": "Records used again").
//
// The rule that makes it safe: a record goes back only once nothing holds it. scan gives back a
// batch of verdicts after the report has counted them (src/scan/index.ts); the report keeps no
// record it is given except its samples, and those it copies (sampleOf). Only records that came
// out of leanEntry go back (they carry its KEY_STORE and KEY_SLOT fields), never one made elsewhere.
import type {AnyRecord, EntryRecord, VerdictRecord} from '../schema.ts';
import {LeanTuple} from './decode.ts';

/** Records kept for reuse at most: a few batches' worth (each batch is at most a read's chunk). */
const POOL_CAP = 4096;

// A lean entry's key where it lies (a read-ahead chunk), its hex not made: only a report sample
// shows it, and scan asks for it then (src/dump/index.ts fillKeyHex). Symbols: JSON.stringify
// never writes them. Every lean record has both (leanEntry declares them), no other record has.
export const KEY_STORE = Symbol(`keyStore`);
export const KEY_SLOT = Symbol(`keySlot`);

/** Whether the record came out of leanEntry. */
export function isLean(record: object): boolean {
  return KEY_SLOT in record;
}

export class LeanPool {
  private readonly free: Array<EntryRecord> = [];

  /** A record given back, for the next entry (its fields all rewritten by the taker), or undefined. */
  take(): EntryRecord | undefined {
    return this.free.pop();
  }

  /**
   * Gives back the lean records among batch[from..to): the caller is done with them and holds
   * none of them any longer. Records of other kinds, and any beyond the cap, are left to the GC.
   */
  giveBack(batch: ReadonlyArray<AnyRecord>, from = 0, to = batch.length): void {
    const free = this.free;
    for (let i = from; i < to && free.length < POOL_CAP; i++) {
      const record = batch[i];
      if ((record.type === `verdict` || record.type === `entry`) && isLean(record))
        free.push(record as EntryRecord);
    }
  }
}

/**
 * What a holder of a verdict beyond its batch keeps (the report's samples): a lean verdict's copy,
 * its LeanTuple copied too (the pool refills the original); any other verdict itself.
 */
export function sampleOf(verdict: VerdictRecord): VerdictRecord {
  if (!isLean(verdict))
    return verdict;
  const copied = {...verdict};
  if (verdict.key instanceof LeanTuple)
    copied.key = verdict.key.copy();
  return copied;
}
