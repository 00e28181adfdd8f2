// The benchmark's generated inputs are what they claim to be: deterministic, unique keys, the
// small fill a prefix of the large one, recorded dumps that dump-maps reads as bpftool output
// with the tuples decoded, and the synthetic host's alive tuples matched by validate. Also the
// GNU time wrapper reads a child's figures and notices a failing step. (No timing assertions:
// speed is `make bench`'s business.)
import {mkdtempSync, readFileSync, rmSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {test} from 'uvu';
import * as assert from 'uvu/assert';
import {haveGnuTime, measure} from '../bench/measure.ts';
import {syntheticWorld, writeRecordedMaps} from '../bench/synthetic.ts';
import {writeSnapshotRecords} from '../bench/snapshots.ts';
import {FULL_ENTRIES, mapEntries, scalePlan, type AliveSet} from '../bench/world.ts';
import {parseLines, runCommand} from './helpers/cli.ts';

const scratch = mkdtempSync(join(tmpdir(), `usmld-bench-test-`));
process.once(`exit`, () => rmSync(scratch, {recursive: true, force: true}));

const world = syntheticWorld({namespaces: 5, sockets: 200, processes: 40}, 7);

test(`the plan holds a million entries and scales by proportion`, () => {
  assert.is(FULL_ENTRIES, 1_000_000);
  const small = scalePlan(100_000);
  assert.is(small.reduce((sum, map) => sum + map.entries, 0), 100_000);
  assert.ok(small.some(map => map.keyKind === `pid_tgid`) && small.some(map => map.keySize === 56));
});

test(`entries are deterministic, unique per map, and a smaller fill is a prefix of a larger one`, () => {
  const map = scalePlan(FULL_ENTRIES).find(m => m.name === `http2_dynamic_table`)!;
  const hex = (count: number) => [...mapEntries(map, count, world.alive, 3)].map(([key, value]) => `${key.toString(`hex`)}=${value.toString(`hex`)}`);
  const large = hex(2000);
  assert.equal(hex(2000), large);
  assert.equal(hex(200), large.slice(0, 200));
  assert.is(new Set(large.map(line => line.split(`=`)[0])).size, 2000);
  for (const line of large.slice(0, 20)) {
    const [key, value] = line.split(`=`);
    assert.is(key.length, 56 * 2);
    assert.is(value.length, map.valueSize * 2);
  }
});

test(`recorded dumps read by dump-maps --from give every entry with its tuple decoded`, async () => {
  const plan = scalePlan(3000);
  const capture = join(scratch, `capture`);
  const written = await writeRecordedMaps(capture, plan, plan.map(map => map.entries), world.alive, 11);
  assert.is(written, 3000);
  const run = await runCommand([`dump-maps`, `--from`, capture]);
  assert.is(run.code, 0, run.stderr);
  const records = parseLines(run.stdout);
  const entries = records.filter(record => record.type === `entry`);
  assert.is(entries.length, 3000);
  assert.ok(entries.every(entry => entry.key !== null), `every key decodes`);
  const stats = records.filter(record => record.type === `mapstats`);
  // dump-maps goes through the maps in catalogue order.
  const byName = (a: Array<unknown>, b: Array<unknown>) => String(a[0]).localeCompare(String(b[0]));
  assert.equal(stats.map(stat => [stat.map, stat.entries, stat.duplicates, stat.complete]).sort(byName), plan.map(map => [map.name, map.entries, 0, true]).sort(byName));
  // Tuples of the synthetic host's connections come out as its sockets' addresses.
  const endpoints = new Set(world.alive.connections.map(c => `${c.saddr}|${c.sport}|${c.daddr}|${c.dport}`));
  const tuples = entries.filter(entry => (entry.key as {kind: string}).kind === `conn_tuple`).map(entry => entry.key as Record<string, unknown>);
  const alive = tuples.filter(k => endpoints.has(`${k.saddr}|${k.sport}|${k.daddr}|${k.dport}`) || endpoints.has(`${k.daddr}|${k.dport}|${k.saddr}|${k.sport}`));
  assert.ok(alive.length > tuples.length * 0.5 && alive.length < tuples.length * 0.9, `${alive.length} of ${tuples.length} tuples are live connections`);
});

test(`validate finds the synthetic host's connections alive and the made-up ones leaked`, async () => {
  const conns = join(scratch, `conns.ndjson`);
  const pids = join(scratch, `pids.ndjson`);
  writeSnapshotRecords(world, conns, pids);
  const map = scalePlan(FULL_ENTRIES).find(m => m.name === `connection_protocol`)!;
  const onlyAlive: AliveSet = {...world.alive};
  const capture = join(scratch, `capture-one`);
  await writeRecordedMaps(capture, [{...map, entries: 400}], [400], onlyAlive, 5);
  const dump = await runCommand([`dump-maps`, `--from`, capture]);
  const run = await runCommand([`validate`, `--no-live`, `--snapshot`, conns, `--snapshot`, pids], {stdin: dump.stdout});
  assert.ok(run.code === 0 || run.code === 1, run.stderr);
  const verdicts = parseLines(run.stdout).filter(record => record.type === `verdict`);
  assert.is(verdicts.length, 400);
  const byStatus = (status: string) => verdicts.filter(verdict => verdict.status === status).length;
  // About 70% of the keys are built from existing connections (the rest are dead ones).
  assert.ok(byStatus(`alive`) > 200 && byStatus(`leaked`) > 60, `alive ${byStatus(`alive`)}, leaked ${byStatus(`leaked`)}`);
  assert.is(byStatus(`unknown`), 0);
});

test(`measure reads a child's CPU and peak RSS, and a failing step is an error`, async () => {
  if (!haveGnuTime()) {
    process.stderr.write(`SKIP bench measure: GNU time (/usr/bin/time) is not installed\n`);
    return;
  }
  const out = join(scratch, `out.txt`);
  const result = await measure({
    steps: [{argv: [process.execPath, `-e`, `const a = Buffer.alloc(64 << 20, 1); let s = 0; for (const b of a) s += b; process.stdout.write(String(s))`]}],
    stdout: out, scratch,
  });
  assert.is(readFileSync(out, `utf8`).trim(), String(64 << 20));
  assert.ok(result.rssMiB > 64, `peak RSS ${result.rssMiB} MiB`);
  assert.ok(result.cpuS > 0 && result.wallS > 0);
  let failed = false;
  try {
    await measure({steps: [{argv: [`sh`, `-c`, `exit 3`]}, {argv: [`cat`]}], scratch});
  } catch (err) {
    failed = /exited 3/.test((err as Error).message);
  }
  assert.ok(failed, `a failing first step of a pipeline is reported`);
});

test.run();
