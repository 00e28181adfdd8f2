// dump-maps' rehearsal: the first few entries of each map read and written as lines once, into
// throwaway chunks, before the real dump reads the maps from the start (scan has its own,
// src/scan/rehearsal.ts, which judges and counts too).
//
// Why: V8 optimises the line writer (./entryLine.ts) and the kernel reader's per-entry code as
// soon as the first map's entries make them hot, for the key kinds seen so far; each later map
// that brings another kind (v6 tuples, pid_tgid keys, extras, per-CPU or dated values) throws
// that code away and compiles it again, on the other core. Shown every map's kinds first, in the
// interpreter, they are compiled once, for all of them.
//
// What it touches: the maps (read-only, as the dump does), REHEARSAL_ENTRIES entries of each,
// on this thread. It says nothing; any failure ends it without a word (the real dump then says
// what is wrong, if anything is). The kernel backend only: another one would run a child again.
import {SILENT_LOGGER, type ToolContext} from '../context.ts';
import {dumpMapText, type DumpOptions} from './index.ts';
import {LineChunks} from './lineChunks.ts';

/** Entries read per map, by this rehearsal and by scan's. */
export const REHEARSAL_ENTRIES = 16;

/**
 * Whether the dump will read the maps with bpf() itself, as a rehearsal does: the kernel backend
 * asked for, or no backend and no bpftool/system-probe path given (the kernel backend is then
 * chosen when bpf() may be called; when it may not, the rehearsal fails and says nothing).
 */
export function kernelMayRead(dump: DumpOptions): boolean {
  if (dump.from !== undefined && dump.from.length > 0)
    return false;
  return dump.backend === `kernel` || (dump.backend === undefined && dump.bpftoolPath === undefined && dump.systemProbePath === undefined);
}

/** Rehearses dumpMapText with `dump` (the real dump's options). Never throws; returns the bytes it wrote (0 when it could not rehearse). */
export async function rehearseDumpText(ctx: ToolContext, dump: DumpOptions): Promise<number> {
  const quiet: ToolContext = {...ctx, log: SILENT_LOGGER};
  const options: DumpOptions = {
    ...dump, backend: `kernel`, download: false, readAhead: false, holders: false,
    batchEntries: REHEARSAL_ENTRIES, entriesPerMap: REHEARSAL_ENTRIES,
  };
  const out = new LineChunks();
  let bytes = 0;
  try {
    for await (const chunk of dumpMapText(quiet, options, out)) {
      bytes += chunk.length;
      out.recycle(chunk);
    }
  } catch {
    // A rehearsal only.
  }
  return bytes;
}
