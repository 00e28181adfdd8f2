// scan end to end on real maps, real sockets, real processes: verdicts for entries whose truth
// the world arranged, the recheck settling a race and a deletion, exit codes, the capture
// replayed through `report` and through `validate | report`, and the environment errors.
import {chmodSync, cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs';
import {createServer, type Server} from 'node:net';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {test} from 'uvu';
import * as assert from 'uvu/assert';
import {PassThrough} from 'node:stream';
import {defaultToolContext, type Clock} from '../src/context.ts';
import {ExitCode} from '../src/exitCodes.ts';
import {GROUP_FIELDS} from '../src/report/aggregate.ts';
import type {ReportModel} from '../src/report/model.ts';
import {scan, type ScanOptions} from '../src/scan/index.ts';
import {connTupleBytes} from './helpers/bpf.ts';
import {parseLines, runCommand} from './helpers/cli.ts';
import {freePort} from './helpers/ports.ts';
import {bpfUnavailable, netnsUnavailable, requirePrivileges} from './helpers/privileges.ts';
import {buildUsmWorld, entryId, type UsmWorld} from './helpers/usmWorld.ts';

const scratch = mkdtempSync(join(tmpdir(), `usmld-scan-`));
process.once(`exit`, () => rmSync(scratch, {recursive: true, force: true}));

const canRun = requirePrivileges(`scan-live`, bpfUnavailable() ?? netnsUnavailable());
const HOST = {hostname: `scan-test-host`, kernel: `6.1.0-test`};

/**
 * Other tests on this host create and delete namespaces while we snapshot: when one could not be
 * read completely, a netns-0 tuple is rightly `unknown` (no namespace may be ruled out).
 */
function someNamespaceIncomplete(records: Array<Record<string, any>>): boolean {
  return records.some(record => (record.type === `netns` || (record.type === `snapshot` && record.of === `conns`)) && record.complete === false);
}

function checkVerdicts(world: UsmWorld, verdicts: Array<Record<string, any>>, overrides: Map<string, {status: string, reason: string}> = new Map(), incomplete = false): void {
  const id = (verdict: Record<string, any>) => entryId(verdict as {map: string, keyHex: string});
  const mine = verdicts.filter(verdict => world.expected.has(id(verdict)));
  assert.is(mine.length, world.expected.size, `one verdict per arranged entry`);
  for (const verdict of mine) {
    const want = overrides.get(id(verdict)) ?? world.expected.get(id(verdict))!;
    const note = world.expected.get(id(verdict))!.note;
    if (incomplete && want.reason === `no_connection_any_namespace` && verdict.reason === `namespace_unreadable`)
      continue;
    assert.is(`${verdict.status}/${verdict.reason}`, `${want.status}/${want.reason}`, `${verdict.map}: ${note}`);
  }
}

/** The report without its second line (host and what the entries were judged against). */
const withoutHostLine = (text: string) => text.replace(/^(.*\n)Host .*\n/, `$1`);


if (canRun) {
  test(`scan: leaks found (exit 1), every arranged entry judged right, the recheck settles a race and a deletion`, async () => {
    const world = await buildUsmWorld(`scan`, {namespace: true});
    let lateListener: Server | null = null;
    try {
      // A listener tuple whose socket appears only during the recheck delay: a race.
      const racePort = await freePort();
      const raceKey = connTupleBytes({saddr: `127.0.0.1`, sport: racePort, daddr: `0.0.0.0`, dport: 0, netns: world.holder.netnsInode, pid: world.holder.pid});
      const pidFd = world.maps.find(map => map.catalogName === `pid_fd_by_tuple`)!;
      world.bpf.fill(pidFd, [[raceKey, Buffer.alloc(8)]]);
      world.expected.set(`pid_fd_by_tuple:${raceKey.toString(`hex`)}`, {map: `pid_fd_by_tuple`, status: `leaked`, reason: `no_listener`, note: `listener opened during the recheck delay`});
      const deletable = world.deletable!;
      let slept = 0;
      const clock: Clock = {
        now: () => Date.now(),
        sleep: async ms => {
          // scan sleeps in one-second steps (its countdown): change the world on the first.
          if (slept === 0) {
            world.bpf.deleteKey(deletable.map, deletable.key);
            lateListener = createServer();
            await new Promise<void>(resolve => lateListener!.listen({host: `127.0.0.1`, port: racePort}, resolve));
          }
          slept += ms;
        },
      };
      const capture = join(scratch, `race.ndjson`);
      const run = await runCommand([`scan`, ...world.mapIdArgs, `--recheck-delay`, `2.5`, `--capture`, capture], {tool: {host: HOST, clock}});
      assert.is(run.code, ExitCode.LeaksFound, run.stderr);
      assert.is(slept, 2500, `one recheck delay for the whole run`);
      const records = parseLines(readFileSync(capture, `utf8`));
      assert.is(records[0].type, `header`);
      assert.is(records[0].stage, `scan`);
      for (const type of [`map`, `entry`, `mapstats`, `netns`, `socket`, `process`, `snapshot`, `verdict`, `summary`])
        assert.ok(records.some(record => record.type === type), `capture has ${type} records`);
      const overrides = new Map([
        [`pid_fd_by_tuple:${raceKey.toString(`hex`)}`, {status: `alive`, reason: `race`}],
        [deletable.id, {status: `resolved`, reason: `removed_from_map`}],
      ]);
      checkVerdicts(world, records.filter(record => record.type === `verdict`), overrides, someNamespaceIncomplete(records));
      const out = run.stdout;
      assert.match(out, /Host scan-test-host \(kernel 6\.1\.0-test\)/);
      // The answer first, confirmed by the recheck; then the maps worst first, with full names.
      assert.match(out, /^LEAKING: \d+ leaked entries in \d+ of \d+ maps, confirmed at two looks[^\n]*; connection_protocol is nearly full: 28\/30 \(93\.3%\)\n/);
      assert.match(out, /\n  connection_protocol +conn_tuple +27\/28 \(96\.4%\) +1 +0 +28\/30 \(93\.3%\) NEARLY FULL\n/);
      assert.match(out, /\n  ssl_read_args +pid_tgid +3\/6 \(50\.0%\) /);
      assert.match(out, /\n  ssl_ctx_by_pid_tgid +pid_tgid +0\/0 /);
      assert.match(out, /\nconnection_protocol \(id \d+, kernel name connection_prot\)\n  leaked 27\/28 \(96\.4%\), all confirmed at two looks; fill 28\/30 \(93\.3%\), nearly full\n/);
      assert.match(out, /    \.\.\. and 17 more/);
      assert.match(out, /  races cleared by the recheck: 1\n/);
      assert.match(out, /  removed from the map before the recheck \(not leaks\): 1\n/);
      assert.match(out, /    tcp  \[2001:db8::10\]:44321 +->  \[2001:db8::20\]:443 +netns \d+ +no pid in key +no_connection\n/);
      assert.match(out, /By destination port \(dport\) \(\d+ distinct\)\n +27  5432\n/);
      assert.match(out, new RegExp(`  \\d+  ${world.holder.pid} \\(node\\)`));
      // The capture alone gives the same report, anywhere.
      const replay = await runCommand([`report`, capture]);
      assert.is(replay.code, ExitCode.LeaksFound);
      assert.is(replay.stdout, run.stdout);
    } finally {
      const listener = lateListener as Server | null;
      listener?.close();
      await world.cleanup();
    }
  });

  test(`scan: live and the capture replayed through validate | report agree (header aside)`, async () => {
    const world = await buildUsmWorld(`replay`, {namespace: true, fakeConnections: 150, ipv6Edges: true});
    try {
      const capture = join(scratch, `replay.ndjson`);
      const live = await runCommand([`scan`, ...world.mapIdArgs, `--recheck-delay`, `0`, `--capture`, capture], {tool: {host: HOST}});
      assert.is(live.code, ExitCode.LeaksFound, live.stderr);
      // 150 leaks, 10 shown: the count is the true one (B7)
      assert.match(live.stdout, /\n  connection_protocol +conn_tuple +150\/151 \(99\.3%\) +1 +0 /);
      assert.match(live.stdout, /\nconnection_protocol \(id \d+, kernel name connection_prot\)\n[^]*?    \.\.\. and 140 more/);
      const captured = parseLines(readFileSync(capture, `utf8`));
      checkVerdicts(world, captured.filter(record => record.type === `verdict`), new Map(), someNamespaceIncomplete(captured));

      const validated = await runCommand([`validate`, capture], {tool: {host: HOST}});
      assert.is(validated.code, ExitCode.LeaksFound, validated.stderr);
      const again = parseLines(validated.stdout).filter(record => record.type === `verdict`);
      checkVerdicts(world, again, new Map(), someNamespaceIncomplete(captured));
      const byKey = (list: Array<Record<string, any>>) => list.map(v => `${v.mapId}/${v.keyHex}/${v.status}/${v.reason}`).sort();
      assert.equal(byKey(again), byKey(captured.filter(record => record.type === `verdict`)));
      const report = await runCommand([`report`], {stdin: validated.stdout});
      assert.is(report.code, ExitCode.LeaksFound);
      assert.is(withoutHostLine(report.stdout), withoutHostLine(live.stdout));
    } finally {
      await world.cleanup();
    }
  });

  test(`scan: the report alone (tuples judged and counted by number) gives every arranged entry its verdict, as scan --capture does`, async () => {
    const world = await buildUsmWorld(`lean`, {namespace: true, ipv6Edges: true});
    try {
      const args = [`scan`, ...world.mapIdArgs, `--recheck-delay`, `0`, `--samples`, `1000`, `--group-by`, GROUP_FIELDS.join(`,`), `--format`, `json`];
      const alone = await runCommand(args, {tool: {host: HOST}});
      assert.is(alone.code, ExitCode.LeaksFound, alone.stderr);
      const doc = JSON.parse(alone.stdout);
      // Per map, the counts by status and reason are the arranged ones, and the leaked samples
      // (all of them: --samples 1000) are exactly the arranged leaked entries.
      for (const map of world.maps) {
        const shown = doc.maps.find((m: Record<string, any>) => m.mapId === map.id);
        const want: Record<string, Record<string, number>> = {};
        const wantLeaked = new Set<string>();
        for (const [id, expectation] of world.expected) {
          // One map per catalogue name in this world.
          if (expectation.map !== map.catalogName)
            continue;
          const keyHex = id.slice(map.catalogName.length + 1);
          (want[expectation.status] ??= {})[expectation.reason] = (want[expectation.status]?.[expectation.reason] ?? 0) + 1;
          if (expectation.status === `leaked`)
            wantLeaked.add(keyHex);
        }
        assert.equal(shown.reasons, want, map.catalogName);
        assert.equal(new Set(shown.samples.map((sample: Record<string, any>) => sample.keyHex)), wantLeaked, `${map.catalogName}: leaked samples`);
      }
      const captured = await runCommand([...args, `--capture`, join(scratch, `lean.ndjson`), `--force`], {tool: {host: HOST}});
      assert.is(captured.code, alone.code, captured.stderr);
      // The same report, but for when each run read the host.
      const untimed = (text: string) => text.replace(/"time": "[^"]*"/, `"time": ""`);
      assert.is(untimed(alone.stdout), untimed(captured.stdout));
    } finally {
      await world.cleanup();
    }
  });

  test(`scan: the report alone keeps its samples' keyHex when every map comes in many read-ahead chunks, handed on in parts (the hex made only for samples, from the chunk the worker sent)`, async () => {
    const world = await buildUsmWorld(`chunks`, {namespace: true});
    try {
      // Three entries per batch lookup: many chunks per map, the samples spread over them; then
      // chunks of seven handed on two at a time: samples at every place of a chunk.
      for (const chunking of [{batchEntries: 3}, {batchEntries: 7, handedOn: 2}]) {
        const options: ScanOptions = {dump: {mapIds: world.maps.map(map => map.id), ...chunking}, recheckDelaySeconds: 0, samples: 1000, groupBy: [`reason`]};
        const ctx = defaultToolContext(new PassThrough(), {host: HOST});
        const alone = await scan(ctx, options);
        // Records seen whole (an observer): every entry's keyHex made at once, from its bytes.
        const whole = await scan(ctx, {...options, observe: () => {}});
        const samples = (model: ReportModel) => model.maps.map(map => [map.mapId, map.samples.map(sample => sample.keyHex)]);
        assert.equal(samples(alone.model), samples(whole.model), JSON.stringify(chunking));
        for (const map of world.maps) {
          const wantLeaked = new Set<string>();
          for (const [id, expectation] of world.expected) {
            if (expectation.map === map.catalogName && expectation.status === `leaked`)
              wantLeaked.add(id.slice(map.catalogName.length + 1));
          }
          const shown = alone.model.maps.find(m => m.mapId === map.id)!;
          assert.equal(new Set(shown.samples.map(sample => sample.keyHex)), wantLeaked, `${map.catalogName}: leaked samples (${JSON.stringify(chunking)})`);
        }
      }
    } finally {
      await world.cleanup();
    }
  });

  test(`scan: a world without leaks exits 0`, async () => {
    const world = await buildUsmWorld(`clean`, {cleanOnly: true});
    try {
      const run = await runCommand([`scan`, ...world.mapIdArgs, `--recheck-delay`, `0`, `--format`, `json`], {tool: {host: HOST}});
      assert.is(run.code, ExitCode.Ok, run.stdout + run.stderr);
      const doc = JSON.parse(run.stdout);
      assert.is(doc.summary.leaked, 0);
      assert.is(doc.summary.mapsChecked, world.maps.length);
      assert.not.match(run.stderr, /\r|\x1b|dumping|snapshotting/, `no progress when stderr is not a terminal`);
      const tty = await runCommand([`scan`, ...world.mapIdArgs, `--recheck-delay`, `0`], {tool: {host: HOST}, stderrIsTTY: true});
      assert.is(tty.code, ExitCode.Ok);
      assert.match(tty.stderr, /\r\x1b\[Kdumping pid_fd_by_tuple \(id \d+\): \d+ entries \(\d+ in all, \d+ entries\/s\)/);
      assert.match(tty.stderr, /snapshotting network namespaces and sockets/);
      assert.not.match(tty.stdout, /\x1b/, `progress never reaches stdout`);
      const quiet = await runCommand([`scan`, ...world.mapIdArgs, `--recheck-delay`, `0`, `-q`], {tool: {host: HOST}, stderrIsTTY: true});
      assert.is(quiet.stderr, ``);
    } finally {
      await world.cleanup();
    }
  });
}

test(`scan: the report is the same whether the entries carry their values (with --capture) or not (the report alone)`, async () => {
  const dir = mkdtempSync(join(tmpdir(), `usmld-scan-values-`));
  try {
    const from = join(dir, `capture`);
    cpSync(`samples/proc/capture`, from, {recursive: true});
    cpSync(`samples/dump/bpftool/maps`, join(from, `maps`), {recursive: true});
    const args = [`scan`, `--from`, from, `--recheck-delay`, `0`, `--samples`, `1000`, `--group-by`, GROUP_FIELDS.join(`,`)];
    for (const format of [`json`, `text`]) {
      const alone = await runCommand([...args, `--format`, format]);
      const captured = await runCommand([...args, `--format`, format, `--capture`, join(dir, `${format}.ndjson`), `--force`]);
      assert.is(alone.code, ExitCode.LeaksFound, alone.stderr);
      assert.is(captured.code, alone.code, captured.stderr);
      assert.is(alone.stdout, captured.stdout, format);
      assert.match(readFileSync(join(dir, `${format}.ndjson`), `utf8`), /"type":"verdict"[^\n]*"valueHex"/);
    }
  } finally {
    rmSync(dir, {recursive: true, force: true});
  }
});

test(`scan: not root and not offline is a clear message and exit 3`, async () => {
  const run = await runCommand([`scan`], {tool: {uid: 1000}});
  assert.is(run.code, ExitCode.Environment);
  assert.is(run.stdout, ``);
  assert.match(run.stderr, /not running as root: the eBPF maps .* other processes' \/proc\/PID\/net tables .* --from DIR/);
});

// Root only: the fake bpftool must pass the binary rule for root (owned by root), which a
// non-root run cannot arrange while pretending to be root.
(process.geteuid?.() === 0 ? test : test.skip)(`scan: no USM maps says so and exits 3`, async () => {
  const fake = join(scratch, `bpftool-no-maps`);
  writeFileSync(fake, `#!/bin/sh\ncase "$*" in *"map show"*) echo '[{"id":7,"type":"hash","name":"some_other_map","flags":0,"bytes_key":4,"bytes_value":4,"max_entries":8}]' ;; *) echo '[]' ;; esac\n`);
  chmodSync(fake, 0o755);
  const run = await runCommand([`scan`, `--backend`, `bpftool`, `--bpftool`, fake, `--recheck-delay`, `0`], {tool: {uid: 0}});
  assert.is(run.code, ExitCode.Environment, run.stderr);
  assert.is(run.stdout, ``);
  assert.match(run.stderr, /USM maps found\. Is system-probe running with USM enabled\?/);
});

test(`scan: a capture file that cannot be written is exit 3 before anything is read`, async () => {
  const run = await runCommand([`scan`, `--capture`, join(scratch, `no-such-dir`, `c.ndjson`)], {tool: {uid: 0}});
  assert.is(run.code, ExitCode.Environment);
  assert.match(run.stderr, /--capture .*c\.ndjson: cannot write: ENOENT/);
});

test(`scan: a bad --recheck-delay is a usage error`, async () => {
  const run = await runCommand([`scan`, `--recheck-delay`, `soon`], {tool: {uid: 0}});
  assert.is(run.code, ExitCode.Usage);
  assert.match(run.stderr, /--recheck-delay: expected a number of seconds .*\(got "soon"\)/);
});

test.run();
