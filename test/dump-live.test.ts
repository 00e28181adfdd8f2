// dump-maps against real eBPF maps (root + bpftool): hex and BTF-typed maps named like USM's,
// a duplicate name, a decoy, a key-size mismatch, per-CPU values, an empty map.
import {test} from 'uvu';
import * as assert from 'uvu/assert';
import {BpfTestSet, pidTgidBytes} from './helpers/bpf.ts';
import {parseLines, runCommand, withoutHeader} from './helpers/cli.ts';
import {bpfUnavailable, requirePrivileges} from './helpers/privileges.ts';
import {buildFixtureMaps, type FixtureMap} from './fixtures/bpf/maps.ts';
import {dumpMaps} from '../src/dump/index.ts';
import {defaultToolContext} from '../src/context.ts';
import {execFileSync, spawnSync} from 'node:child_process';
import {mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync} from 'node:fs';
import {fileURLToPath} from 'node:url';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {PassThrough} from 'node:stream';
import {beforeAll} from './helpers/setUp.ts';

const runs = requirePrivileges(`dump-maps live`, bpfUnavailable());
/** Registered as skipped, not as passed, when the suite cannot run here. */
const privilegedTest = runs ? test : test.skip;
let set: BpfTestSet;
let fixture: Array<FixtureMap> = [];

beforeAll(test, () => {
  if (!runs)
    return;
  set = new BpfTestSet(`dump`);
  fixture = buildFixtureMaps(set);
});

test.after(() => {
  set?.cleanup();
});

const hex = (b: Buffer) => b.toString(`hex`);

/** Our fixture's records out of a dump of the whole host (other tests may have maps too). */
function ours(records: Array<Record<string, any>>) {
  const ids = new Set(fixture.map(f => f.map.id));
  return records.filter(record => ids.has(record.mapId));
}

function checkMap(records: Array<Record<string, any>>, f: FixtureMap, backend = `kernel`) {
  const id = f.map.id;
  const label = `${f.catalogName} #${id}`;
  const mine = records.filter(record => record.mapId === id);
  const maps = mine.filter(record => record.type === `map`);
  assert.is(maps.length, 1, `${label}: one map record`);
  assert.is(maps[0].catalogName, f.catalogName, label);
  assert.is(maps[0].backend, backend);
  assert.is(maps[0].mapType, f.perCpu ? `percpu_hash` : `hash`, label);
  assert.is(Boolean(maps[0].problem), Boolean(f.problem), `${label}: problem`);
  const entries = mine.filter(record => record.type === `entry`);
  assert.is(entries.length, f.entries.length, `${label}: every entry once`);
  const byKey = new Map(entries.map(entry => [entry.keyHex, entry]));
  for (const want of f.entries) {
    const got = byKey.get(hex(want.key));
    assert.ok(got, `${label}: entry ${hex(want.key)} missing`);
    assert.is(got.map, f.catalogName);
    if (want.expect === null) {
      assert.is(got.key, null, label);
      assert.type(got.keyError, `string`);
    } else {
      assert.equal(got.key, want.expect, label);
    }
    if (f.perCpu) {
      assert.ok(Array.isArray(got.valuesHex) && got.valuesHex.length >= 1, `${label}: per-CPU values`);
      for (const value of got.valuesHex)
        assert.is(value, hex(want.value));
    } else {
      assert.is(got.valueHex, hex(want.value), label);
    }
  }
  const stats = mine.filter(record => record.type === `mapstats`);
  assert.is(stats.length, 1, `${label}: one mapstats`);
  assert.equal(
    {entries: stats[0].entries, duplicates: stats[0].duplicates, errors: stats[0].errors, complete: stats[0].complete},
    {entries: f.entries.length, duplicates: 0, errors: 0, complete: true}, label);
  if (f.entries.length > 0)
    assert.is(stats[0].btf, f.btf, `${label}: BTF told from the dump`);
  // Order: map, its entries, its mapstats.
  assert.is(mine[0].type, `map`);
  assert.is(mine[mine.length - 1].type, `mapstats`);
}

privilegedTest(`default run dumps exactly the catalogue maps, every entry once, keys decoded`, async () => {
  // The host's other maps (a real USM, a benchmark world) are dumped too, but not kept.
  const ids = new Set(fixture.map(f => String(f.map.id)));
  const run = await runCommand([`dump-maps`, `--no-download`], {keepLine: line => ids.has(/"mapId":(\d+)/.exec(line)?.[1] ?? ``)});
  assert.is(run.code, 0, run.stderr);
  const records = withoutHeader(parseLines(run.stdout));
  for (const f of fixture) {
    if (f.catalogName === null)
      assert.not.ok(records.some(record => record.mapId === f.map.id), `decoy ${f.map.id} must not be dumped`);
    else
      checkMap(records, f);
  }
  // Two maps share each of these names; both are there under their own ids.
  for (const name of [`ssl_read_args`, `http2_dynamic_table`, `http2_incomplete_frames`]) {
    const ids = ours(records).filter(record => record.type === `map` && record.catalogName === name).map(record => record.mapId);
    assert.is(new Set(ids).size, 2, name);
  }
});

privilegedTest(`--maps picks maps by full or kernel name; --map-id narrows to ids`, async () => {
  const run = await runCommand([`dump-maps`, `--maps`, `ssl_read_args,http2_dynamic_t`, `--no-download`]);
  assert.is(run.code, 0, run.stderr);
  const names = new Set(ours(withoutHeader(parseLines(run.stdout))).map(record => record.map ?? record.catalogName));
  assert.equal([...names].sort(), [`http2_dynamic_table`, `ssl_read_args`]);

  const target = fixture.find(f => f.catalogName === `connection_states`)!;
  const byId = await runCommand([`dump-maps`, `--map-id`, String(target.map.id), `--no-download`]);
  assert.is(byId.code, 0, byId.stderr);
  const records = withoutHeader(parseLines(byId.stdout));
  assert.ok(records.every(record => record.mapId === target.map.id));
  checkMap(records, target);

  // An id no map has: its mapstats says so as a field (recheck reads `gone`, not the words).
  const missing = 4_000_000_000;
  const withMissing = await runCommand([`dump-maps`, `--map-id`, String(target.map.id), `--map-id`, String(missing), `--no-download`]);
  const stats = withoutHeader(parseLines(withMissing.stdout)).find(record => record.type === `mapstats` && record.mapId === missing);
  assert.equal([stats?.complete, stats?.gone], [false, true], withMissing.stderr);
});

privilegedTest(`--bpftool with a bad path is an environment error naming it`, async () => {
  const run = await runCommand([`dump-maps`, `--bpftool`, `/nonexistent/bpftool`]);
  assert.is(run.code, 3);
  assert.is(run.stdout, ``);
  assert.match(run.stderr, /--bpftool \/nonexistent\/bpftool: no such file/);
  const dir = mkdtempSync(join(tmpdir(), `usmld-sp-`));
  try {
    const notExecutable = join(dir, `system-probe`);
    writeFileSync(notExecutable, `#!/bin/sh\n`, {mode: 0o644});
    const sp = await runCommand([`dump-maps`, `--system-probe`, notExecutable]);
    assert.is(sp.code, 3);
    assert.is(sp.stdout, ``);
    assert.match(sp.stderr, /not executable/);
  } finally {
    rmSync(dir, {recursive: true, force: true});
  }
});

privilegedTest(`dumpMaps with mapIds re-reads chosen maps and reports a vanished id`, async () => {
  const target = fixture.find(f => f.catalogName === `ssl_ctx_by_pid_tgid`)!;
  const ctx = defaultToolContext(new PassThrough());
  const records = [];
  for await (const record of dumpMaps(ctx, {mapIds: [target.map.id, 999999999], download: false}))
    records.push(record);
  const gone = records.find(record => record.mapId === 999999999);
  assert.ok(gone && gone.type === `mapstats` && gone.complete === false, `vanished id reported`);
  const entries = records.filter(record => record.type === `entry`);
  assert.is(entries.length, 2);
  assert.ok(entries.some(entry => (entry.key as {pidTgid?: string})?.pidTgid === `18446744073709551615`));
});

privilegedTest(`--from a saved listing and dumps of the same maps gives the same records as live`, async () => {
  const dir = mkdtempSync(join(tmpdir(), `usmld-capture-`));
  try {
    mkdirSync(join(dir, `maps`));
    const ids = new Set(fixture.map(f => f.map.id));
    const listing = JSON.parse(execFileSync(`bpftool`, [`-j`, `map`, `show`], {encoding: `utf8`})).filter((m: {id: number}) => ids.has(m.id));
    writeFileSync(join(dir, `maps`, `list.json`), JSON.stringify(listing));
    for (const id of ids)
      writeFileSync(join(dir, `maps`, `dump-${id}.json`), execFileSync(`bpftool`, [`-j`, `map`, `dump`, `id`, String(id)]));
    // The decoy is in the capture too, but asking for its id would (rightly) report it as not a USM map.
    const idArgs = fixture.filter(f => f.catalogName !== null).flatMap(f => [`--map-id`, String(f.map.id)]);
    const live = await runCommand([`dump-maps`, `--backend`, `bpftool`, ...idArgs, `--no-download`]);
    const saved = await runCommand([`dump-maps`, `--from`, dir]);
    assert.is(live.code, 0, live.stderr);
    assert.is(saved.code, 0, saved.stderr);
    const liveRecords = withoutHeader(parseLines(live.stdout));
    assert.ok(liveRecords.filter(r => r.type === `entry`).length >= 15);
    // A live run knows when it read a dated map (CLOCK_MONOTONIC); saved files without the
    // capture script's meta/monotonic do not: the only difference.
    assert.ok(liveRecords.some(r => r.type === `map` && r.catalogName === `connection_protocol` && /^\d+$/.test(r.monotonicNs)));
    for (const record of liveRecords)
      delete record.monotonicNs;
    assert.equal(withoutHeader(parseLines(saved.stdout)), liveRecords);
  } finally {
    rmSync(dir, {recursive: true, force: true});
  }
});

privilegedTest(`dump-maps | head -3 exits 0 (kernel backend) and leaves no bpftool process behind (bpftool backend)`, async () => {
  const big = new BpfTestSet(`dump-head`);
  try {
    const map = big.createMap({name: `ssl_write_args`, keySize: 8, valueSize: 8, maxEntries: 60000});
    big.fill(map, (function* () {
      for (let i = 1; i <= 50000; i++)
        yield [pidTgidBytes(i, i), Buffer.alloc(8, 1)] as const;
    })());
    const bin = fileURLToPath(new URL(`../bin/usm-leak-detector`, import.meta.url));
    const kernel = spawnSync(`bash`, [`-c`, `"${bin}" dump-maps --map-id ${map.id} --no-download | head -3; echo "status=\${PIPESTATUS[0]}" >&2`], {encoding: `utf8`, timeout: 120_000});
    assert.is(kernel.stdout.split(`\n`).filter(Boolean).length, 3);
    assert.match(kernel.stderr, /status=0/);
    const script = `"${bin}" dump-maps --backend bpftool --map-id ${map.id} --no-download | head -3; echo "status=\${PIPESTATUS[0]}" >&2`;
    const result = spawnSync(`bash`, [`-c`, script], {encoding: `utf8`, timeout: 120_000});
    assert.is(result.stdout.split(`\n`).filter(Boolean).length, 3);
    assert.match(result.stderr, /status=0/);
    assert.not.match(result.stderr, /internal error|EPIPE/);
    // The killed child may need a moment to be gone from the process table.
    const dumping = () => readdirSync(`/proc`).filter(pid => /^\d+$/.test(pid)).some(pid => {
      try {
        return readFileSync(`/proc/${pid}/cmdline`, `utf8`).split(`\0`).join(` `).includes(`map dump id ${map.id}`);
      } catch {
        return false;
      }
    });
    for (let i = 0; i < 50 && dumping(); i++)
      await new Promise(resolve => setTimeout(resolve, 100));
    assert.not.ok(dumping(), `a bpftool dump of map ${map.id} is still running`);
  } finally {
    big.cleanup();
  }
});

test.run();
