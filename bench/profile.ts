// `make bench` with BENCH_PROFILE=1 (or --profile): one more run of every measurement with
// `node --cpu-prof`, and the functions that took the most CPU (self time) in each process, so a
// missed target comes with where the time went. Profiles stay in bench/results/profiles/.
import {readFileSync, readdirSync} from 'node:fs';
import {join} from 'node:path';

interface ProfileNode {
  id: number;
  callFrame: {functionName: string, url: string, lineNumber: number};
}

interface CpuProfile {
  nodes: Array<ProfileNode>;
  samples: Array<number>;
  timeDeltas: Array<number>;
}

export interface HotFunction {
  /** `name file:line` (bundle lines: dist/usm-leak-detector.cjs, built with `make build`). */
  where: string;
  ms: number;
  share: number;
}

/** Self time per function over every profile in `dir`, largest first. */
export function hotFunctions(dir: string, top = 12): Array<HotFunction> {
  const self = new Map<string, number>();
  let total = 0;
  let files: Array<string> = [];
  try {
    files = readdirSync(dir).filter(name => name.endsWith(`.cpuprofile`));
  } catch {
    return [];
  }
  for (const file of files) {
    const profile = JSON.parse(readFileSync(join(dir, file), `utf8`)) as CpuProfile;
    const byId = new Map(profile.nodes.map(node => [node.id, node]));
    profile.samples.forEach((id, i) => {
      const frame = byId.get(id)!.callFrame;
      const where = `${frame.functionName || `(anonymous)`} ${frame.url.split(`/`).pop() || `(native)`}:${frame.lineNumber + 1}`;
      const us = profile.timeDeltas[i] ?? 0;
      self.set(where, (self.get(where) ?? 0) + us);
      total += us;
    });
  }
  return [...self].sort((a, b) => b[1] - a[1]).slice(0, top)
    .map(([where, us]) => ({where, ms: Math.round(us / 1000), share: total > 0 ? us / total : 0}));
}
