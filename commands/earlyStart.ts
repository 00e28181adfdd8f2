// Imported first by main.ts (modules run in import order, and the rest of the program takes tens
// of ms to load): a live scan's worker thread starts here, so that its own start-up overlaps the
// loading; scan adopts it (src/dump/readAhead.ts). Never for other commands, --from or --help.
// What the bundle's loader left for scan is taken here too (loaderCompilerTuning).
import {setFlagsFromString} from 'node:v8';
import {startReadAheadEarly} from '../src/dump/readAhead.ts';

/** Whether a command line is a live scan as root (the only run that adopts the worker). */
export function wantsEarlyReadAhead(args: ReadonlyArray<string>, uid: number | undefined): boolean {
  return args[0] === `scan` && uid === 0 && !args.some(arg => /^(--from(=|$)|--help$|-h$)/.test(arg));
}

if (wantsEarlyReadAhead(process.argv.slice(2), process.getuid?.()))
  startReadAheadEarly();

/**
 * The V8 flags the bundle's (or the executable's) loader left for scan to set once its snapshots
 * are taken (scripts/build.mjs, "V8's inlining budget"): a function that sets them, once; undefined
 * when no loader left any (run from the source tree, or another command).
 */
export function loaderCompilerTuning(): (() => void) | undefined {
  const holder = globalThis as {[COMPILER_TUNING]?: string};
  const flags = holder[COMPILER_TUNING];
  delete holder[COMPILER_TUNING];
  if (typeof flags !== `string`)
    return undefined;
  return () => setFlagsFromString(flags);
}
const COMPILER_TUNING = Symbol.for(`usm-leak-detector.compilerTuning`);
