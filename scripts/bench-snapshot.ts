// CPU time of snapshot-conns and snapshot-pids over a generated fixture tree (capture layout):
//
//   tsx scripts/bench-snapshot.ts [--sockets N] [--namespaces M] [--processes P] [--runs R]
//
// Each run drains the stage and serialises every record (JSON.stringify, as the writer does),
// so the number is the stage's whole cost short of the write syscalls. CPU is process.cpuUsage
// (user + system, thread pool included). Prints one line per run and the best.
import {mkdtempSync, rmSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {PassThrough} from 'node:stream';
import {defaultToolContext} from '../src/context.ts';
import {snapshotConns} from '../src/snapshot/conns.ts';
import {snapshotPids} from '../src/snapshot/pids.ts';
import {syntheticWorld} from '../bench/synthetic.ts';
import {writeProcTree} from './gen-proc-fixture.ts';

const argv = process.argv.slice(2);
const option = (name: string, fallback: number) => {
  const at = argv.indexOf(`--${name}`);
  return at >= 0 ? Number(argv[at + 1]) : fallback;
};
const size = {sockets: option(`sockets`, 100_000), namespaces: option(`namespaces`, 200), processes: option(`processes`, 2_000)};
const runs = option(`runs`, 5);

const dir = mkdtempSync(join(tmpdir(), `usmld-bench-proc-`));
try {
  writeProcTree(dir, syntheticWorld(size, 1));
  const ctx = defaultToolContext(new PassThrough());
  const measure = async (label: string, records: () => AsyncIterable<object>) => {
    const results: Array<{cpuMs: number, wallMs: number, count: number, bytes: number}> = [];
    for (let run = 0; run < runs; run++) {
      const cpu = process.cpuUsage();
      const wall = performance.now();
      let count = 0;
      let bytes = 0;
      for await (const record of records()) {
        bytes += JSON.stringify(record).length + 1;
        count++;
      }
      const used = process.cpuUsage(cpu);
      results.push({cpuMs: (used.user + used.system) / 1000, wallMs: performance.now() - wall, count, bytes});
      process.stdout.write(`${label} run ${run + 1}: ${count} records, ${(bytes / 1e6).toFixed(1)} MB, CPU ${results.at(-1)!.cpuMs.toFixed(0)} ms, wall ${results.at(-1)!.wallMs.toFixed(0)} ms\n`);
    }
    const best = results.reduce((a, b) => (a.cpuMs <= b.cpuMs ? a : b));
    process.stdout.write(`${label} best: CPU ${best.cpuMs.toFixed(0)} ms, wall ${best.wallMs.toFixed(0)} ms\n`);
  };
  process.stdout.write(`tree: ${size.sockets} sockets, ${size.namespaces} namespaces, ${size.processes} processes\n`);
  await measure(`snapshot-conns`, () => snapshotConns(ctx, {from: dir}));
  await measure(`snapshot-pids`, () => snapshotPids(ctx, {from: dir}));
} finally {
  rmSync(dir, {recursive: true, force: true});
}
