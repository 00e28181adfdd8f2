// A script to preload (`node --require`, or NODE_OPTIONS for the standalone executable) that says
// on stderr whether V8 took the code cache the bundle's loader gave to vm.Script; with
// PROBE_THROW_ON_WRITE set, stdout.write throws (a stack trace through the bundle's code).
import {writeFileSync} from 'node:fs';
import {join} from 'node:path';

export const PROBE_LINE = /code-cache-probe: (\w+)\n/;

/** Writes the probe into `dir`; returns its path. */
export function writeCodeCacheProbe(dir: string): string {
  const file = join(dir, `code-cache-probe.cjs`);
  writeFileSync(file, `
const vm = require('node:vm');
const Script = vm.Script;
vm.Script = class extends Script {
  constructor(code, options) {
    super(code, options);
    if (options && options.cachedData !== undefined)
      process.stderr.write('code-cache-probe: ' + (this.cachedDataRejected ? 'rejected' : 'accepted') + '\\n');
  }
};
if (process.env.PROBE_THROW_ON_WRITE)
  process.stdout.write = () => { throw new Error('probe'); };
`);
  return file;
}
