// Imported first by main.ts (modules run in import order, and the rest of the program takes tens
// of ms to load): a live scan's worker thread starts here, so that its own start-up overlaps the
// loading; scan adopts it (src/dump/readAhead.ts). Never for other commands, --from or --help.
import {startReadAheadEarly} from '../src/dump/readAhead.ts';

/** Whether a command line is a live scan as root (the only run that adopts the worker). */
export function wantsEarlyReadAhead(args: ReadonlyArray<string>, uid: number | undefined): boolean {
  return args[0] === `scan` && uid === 0 && !args.some(arg => /^(--from(=|$)|--help$|-h$)/.test(arg));
}

if (wantsEarlyReadAhead(process.argv.slice(2), process.getuid?.()))
  startReadAheadEarly();
