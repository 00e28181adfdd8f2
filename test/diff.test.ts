// diff EARLIER LATER: on hand-made captures (hosts, order, exit codes, records), and on two real
// captures of this host: real maps scanned, then changed as arranged here (leaks added, leaks
// deleted from their map, a leaked listener brought back to life), then scanned again; and the
// same as two capture directories written by the capture script.
import {spawnSync} from 'node:child_process';
import {mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs';
import {createServer, type Server} from 'node:net';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {test} from 'uvu';
import * as assert from 'uvu/assert';
import {captureScript} from '../src/capture/script.ts';
import type {Clock} from '../src/context.ts';
import {ExitCode} from '../src/exitCodes.ts';
import {checkRecord} from '../src/schema.ts';
import {connTupleBytes, pidTgidBytes} from './helpers/bpf.ts';
import {parseLines, runCommand} from './helpers/cli.ts';
import {bpfUnavailable, requirePrivileges} from './helpers/privileges.ts';
import {mapRecord, mapStats, ndjson, tupleKey, verdict} from './helpers/records.ts';
import {buildUsmWorld} from './helpers/usmWorld.ts';

const scratch = mkdtempSync(join(tmpdir(), `usmld-diff-`));
process.once(`exit`, () => rmSync(scratch, {recursive: true, force: true}));
const SAMPLE = new URL(`../samples/capture.ndjson`, import.meta.url).pathname;
const NS = 4026531840;

function header(host: string, time: string) {
  return {type: `header`, v: 1, stage: `scan`, tool: `usm-leak-detector`, toolVersion: `0.1.0`, host, kernel: `6.1.0`, time, timeMs: Date.parse(time)};
}

/** A capture of http_in_flight with these leaked source ports (and one alive entry). */
function capture(name: string, host: string, time: string, leakedPorts: Array<number>): string {
  const key = (sport: number) => tupleKey({saddr: `10.0.0.1`, sport, daddr: `10.0.0.2`, dport: 80, netns: NS});
  const keyHex = (sport: number) => sport.toString(16).padStart(8, `0`);
  const records = [
    header(host, time), mapRecord(1, `http_in_flight`, {maxEntries: 100}),
    verdict(1, `http_in_flight`, key(1), `alive`, `established`, {keyHex: keyHex(1)}),
    ...leakedPorts.map(port => verdict(1, `http_in_flight`, key(port), `leaked`, `no_connection`, {keyHex: keyHex(port), checks: 2})),
    mapStats(1, `http_in_flight`, 1 + leakedPorts.length),
  ];
  const path = join(scratch, name);
  writeFileSync(path, ndjson(records));
  return path;
}

test(`diff: new, gone and persisting by key, the rate per hour, hours to full, exit 1`, async () => {
  const a = capture(`a.ndjson`, `box`, `2026-01-01T10:00:00.000Z`, [100, 101, 102, 103]);
  const b = capture(`b.ndjson`, `box`, `2026-01-01T12:00:00.000Z`, [102, 103, 104, 105, 106, 107]);
  const run = await runCommand([`diff`, `--format`, `ndjson`, a, b]);
  assert.is(run.code, ExitCode.LeaksFound, run.stderr);
  const [head, ...maps] = parseLines(run.stdout);
  assert.is(head!.type, `header`);
  assert.is(head!.stage, `diff`);
  assert.is(maps.length, 1);
  const map = maps[0]!;
  assert.is(checkRecord(map as never), null);
  assert.equal(
    {leakedBefore: map.leakedBefore, leakedAfter: map.leakedAfter, new: map.new, gone: map.gone, persisting: map.persisting, minutes: map.minutes},
    {leakedBefore: 4, leakedAfter: 6, new: 4, gone: 2, persisting: 2, minutes: 120},
  );
  assert.is(map.leaksPerHour, 1);
  assert.is(map.entriesBefore, 5);
  assert.is(map.entriesAfter, 7);
  assert.is(map.hoursToFull, 93);
  assert.equal(map.persistingSamples.map((row: any) => row.key.sport).sort(), [102, 103]);
  const text = await runCommand([`diff`, a, b]);
  assert.match(text.stdout, /^LEAKING: 2 persisting and 4 new leaked entries in 1 of 1 map, captures 2\.0 h apart; 2 gone since the earlier one; http_in_flight grows by 1\.0 leaks an hour, full in 3\.9 d\n/);
  assert.match(text.stdout, /\n  http_in_flight +4 +6 +4 +2 +2  5\/100 \(5\.0%\) +7\/100 \(7\.0%\) +1\.0  3\.9 d\n/);
  assert.match(text.stdout, /\nPersisting leaks [^\n]*\nhttp_in_flight \(2\)\n    tcp  10\.0\.0\.1:102  ->  10\.0\.0\.2:80/);
});

test(`diff: the later capture given first is swapped with a warning; no leak left is exit 0`, async () => {
  const a = capture(`c.ndjson`, `box`, `2026-01-01T10:00:00.000Z`, [100]);
  const b = capture(`d.ndjson`, `box`, `2026-01-01T10:30:00.000Z`, []);
  const run = await runCommand([`diff`, `--format`, `json`, b, a]);
  assert.is(run.code, ExitCode.Ok, run.stderr);
  assert.match(run.stderr, /d\.ndjson \(2026-01-01T10:30:00\.000Z\) is older than|is older than .*comparing them the other way round/);
  const doc = JSON.parse(run.stdout);
  assert.is(doc.swapped, true);
  assert.is(doc.earlier.path, a);
  assert.equal([doc.maps[0].leakedBefore, doc.maps[0].leakedAfter, doc.maps[0].gone, doc.maps[0].leaksPerHour, doc.maps[0].hoursToFull], [1, 0, 1, -2, null]);
  const text = await runCommand([`diff`, a, b]);
  assert.match(text.stdout, /^NOT LEAKING: no leaked entry in the later capture, captures 30 min apart; 1 gone since the earlier one\n/);
});

test(`diff: captures of two hosts are refused (exit 2) unless --force`, async () => {
  const a = capture(`e.ndjson`, `box-a`, `2026-01-01T10:00:00.000Z`, [100]);
  const b = capture(`f.ndjson`, `box-b`, `2026-01-01T11:00:00.000Z`, [100]);
  const run = await runCommand([`diff`, a, b]);
  assert.is(run.code, ExitCode.Usage);
  assert.is(run.stdout, ``);
  assert.match(run.stderr, /from host box-a and .* from host box-b/);
  const forced = await runCommand([`diff`, `--force`, a, b]);
  assert.is(forced.code, ExitCode.LeaksFound);
  assert.match(forced.stdout, /^LEAKING: 1 persisting and 0 new/);
});

test(`diff: the sample against itself: everything persists, no time passed, markdown renders the table`, async () => {
  const run = await runCommand([`diff`, `--format`, `markdown`, SAMPLE, SAMPLE]);
  assert.is(run.code, ExitCode.LeaksFound);
  assert.match(run.stdout, /^# USM eBPF map leak diff\n\n\*\*LEAKING\*\*: 36 persisting and 0 new leaked entries in 5 of 6 maps, captures 0 s apart; 0 gone since the earlier one\n/);
  assert.match(run.stdout, /\| connection\\_protocol \| 27 \| 27 \| 0 \| 0 \| 27 \| 28\/30 \(93\.3%\) \| 28\/30 \(93\.3%\) \| - \| - \|/);
  const missing = await runCommand([`diff`, SAMPLE, join(scratch, `nope.ndjson`)]);
  assert.is(missing.code, ExitCode.Usage);
  assert.match(missing.stderr, /nope\.ndjson: no such file or directory/);
});

const canRun = requirePrivileges(`diff on real maps`, bpfUnavailable());

if (canRun) {
  test(`diff of two real captures of this host: per map new, gone and persisting as arranged (NDJSON and capture directories)`, async () => {
    const world = await buildUsmWorld(`diff`);
    let listener: Server | null = null;
    try {
      const map = (name: string) => world.maps.find(m => m.catalogName === name)!;
      const pidFd = map(`pid_fd_by_tuple`);
      const proto = map(`connection_protocol`);
      const ssl = map(`ssl_read_args`);
      const ns = world.holder.netnsInode;
      const pid = world.holder.pid;
      // Out of the arrangement: the netns-0 leak and the one of a namespace that does not exist
      // (both rightly unknown whenever another run's namespace is half-made or vanishes while it
      // is read), so every leak here is judged the same in both captures.
      world.bpf.deleteKey(pidFd, connTupleBytes({saddr: `10.20.30.40`, sport: 5556, daddr: `10.20.30.41`, dport: 6379, netns: 0, pid: 0}));
      world.bpf.deleteKey(pidFd, connTupleBytes({saddr: `10.20.30.40`, sport: 5555, daddr: `10.20.30.41`, dport: 6379, netns: 4026530000, pid: 0}));
      // A listener tuple with no listener yet: leaked now, alive once the later capture is taken.
      const port = await new Promise<number>(resolve => {
        const probe = createServer().listen({host: `127.0.0.1`, port: 0}, () => {
          const found = (probe.address() as {port: number}).port;
          probe.close(() => resolve(found));
        });
      });
      world.bpf.fill(pidFd, [[connTupleBytes({saddr: `127.0.0.1`, sport: port, daddr: `0.0.0.0`, dport: 0, netns: ns, pid}), Buffer.alloc(8)]]);

      const t0 = Date.parse(`2026-03-01T08:00:00.000Z`);
      const clockAt = (ms: number): Clock => ({now: () => ms, sleep: async () => {}});
      const script = join(scratch, `capture.sh`);
      writeFileSync(script, captureScript());
      const ids = world.maps.map(m => m.id).join(`,`);
      const captureDir = (dir: string) => {
        const result = spawnSync(`sh`, [script, `-o`, dir, `-d`, `0`, `-i`, ids], {encoding: `utf8`, timeout: 120_000});
        assert.is(result.status, 0, result.stderr);
      };
      const earlier = join(scratch, `earlier.ndjson`);
      const first = await runCommand([`scan`, ...world.mapIdArgs, `--recheck-delay`, `0`, `--capture`, earlier], {tool: {clock: clockAt(t0)}});
      assert.is(first.code, ExitCode.LeaksFound, first.stderr);
      captureDir(join(scratch, `earlier-dir`));

      // The changes between the captures.
      const fakes = (from: number, count: number) => Array.from({length: count}, (_, i) => connTupleBytes({saddr: `127.0.0.1`, sport: 40000 + from + i, daddr: `127.0.0.${2 + ((from + i) % 3)}`, dport: 5432, netns: ns, pid: (from + i) % 2 ? pid : 0}));
      for (const key of fakes(0, 5))
        world.bpf.deleteKey(proto, key);                      // 5 leaks gone from connection_protocol
      world.bpf.fill(proto, fakes(1000, 2).map(key => [key, Buffer.alloc(8)] as const)); // 2 new there
      world.bpf.deleteKey(pidFd, world.deletable!.key);      // a pid_fd_by_tuple leak removed
      world.bpf.fill(pidFd, [100, 101, 102].map(sport => [connTupleBytes({saddr: `127.0.0.1`, sport, daddr: `127.0.0.1`, dport: 9, netns: ns, pid}), Buffer.alloc(8)] as const));
      listener = createServer();
      await new Promise<void>(resolve => listener!.listen({host: `127.0.0.1`, port}, resolve)); // the leaked listener lives again
      const gone = spawnSync(`sh`, [`-c`, `echo $$`], {encoding: `utf8`});
      world.bpf.fill(ssl, [[pidTgidBytes(Number(gone.stdout.trim()), Number(gone.stdout.trim())), Buffer.alloc(8)]]); // a new dead pid

      const later = join(scratch, `later.ndjson`);
      const second = await runCommand([`scan`, ...world.mapIdArgs, `--recheck-delay`, `0`, `--capture`, later], {tool: {clock: clockAt(t0 + 30 * 60_000)}});
      assert.is(second.code, ExitCode.LeaksFound, second.stderr);
      captureDir(join(scratch, `later-dir`));

      const want = {
        pid_fd_by_tuple: {leakedBefore: 4, leakedAfter: 5, new: 3, gone: 2, persisting: 2},
        ssl_read_args: {leakedBefore: 3, leakedAfter: 4, new: 1, gone: 0, persisting: 3},
        http2_in_flight: {leakedBefore: 1, leakedAfter: 1, new: 0, gone: 0, persisting: 1},
        ssl_ctx_by_pid_tgid: {leakedBefore: 0, leakedAfter: 0, new: 0, gone: 0, persisting: 0},
        connection_protocol: {leakedBefore: 27, leakedAfter: 24, new: 2, gone: 5, persisting: 22},
      };
      const counts = (records: Array<Record<string, any>>) => Object.fromEntries(records.filter(r => r.type === `mapdiff`).map(r =>
        [r.map, {leakedBefore: r.leakedBefore, leakedAfter: r.leakedAfter, new: r.new, gone: r.gone, persisting: r.persisting}]));

      const run = await runCommand([`diff`, `--format`, `ndjson`, earlier, later]);
      assert.is(run.code, ExitCode.LeaksFound, run.stderr);
      const records = parseLines(run.stdout);
      assert.equal(counts(records), want);
      // worst growth first
      assert.equal(records.filter(r => r.type === `mapdiff`).map(r => r.map), Object.keys(want));
      const pidFdDiff = records.find(r => r.map === `pid_fd_by_tuple`)!;
      assert.is(pidFdDiff.minutes, 30);
      assert.is(pidFdDiff.leaksPerHour, 2);
      assert.is(pidFdDiff.hoursToFull, (1024 - pidFdDiff.entriesAfter) / 2);
      const protoDiff = records.find(r => r.map === `connection_protocol`)!;
      assert.equal([protoDiff.entriesBefore, protoDiff.entriesAfter, protoDiff.maxEntries, protoDiff.hoursToFull], [28, 25, 30, null]);
      // the persisting samples are the arranged leaks that stayed
      assert.equal(pidFdDiff.persistingSamples.map((row: any) => row.reason).sort(), [`no_connection`, `no_listener`]);
      for (const record of records)
        assert.is(checkRecord(record as never), null, JSON.stringify(record).slice(0, 200));

      // The same from the capture script's directories, each judged from its own contents.
      const dirs = await runCommand([`diff`, `--format`, `ndjson`, join(scratch, `earlier-dir`), join(scratch, `later-dir`)]);
      assert.is(dirs.code, ExitCode.LeaksFound, dirs.stderr);
      assert.equal(counts(parseLines(dirs.stdout)), want);
      assert.ok(readFileSync(join(scratch, `later-dir`, `meta`, `hostname`), `utf8`).length > 0);
    } finally {
      listener?.close();
      await world.cleanup();
    }
  });
}

test.run();
