// `make dist` output, run the way a customer would: copied alone into an empty directory (no
// node_modules, no repository), with PATH stripped of node. The standalone executable and the
// bundle must answer --help and replay recorded outputs exactly as the in-process CLI does.
// Builds dist/ once (scripts/dist.sh: bundle, SEA from this machine's node, capture.sh).
import {execFileSync, spawnSync} from 'node:child_process';
import {copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join, resolve} from 'node:path';
import {test} from 'uvu';
import * as assert from 'uvu/assert';
import {captureScript} from '../src/capture/script.ts';
import {TOOL_VERSION} from '../src/version.ts';
import {parseLines, runCommand, withoutHeader} from './helpers/cli.ts';
import {PROBE_LINE, writeCodeCacheProbe} from './helpers/codeCacheProbe.ts';
import {runWithoutBpftool} from './helpers/hideBpftool.ts';
import {makeProcessLessNetns} from './helpers/netns.ts';
import {bpfUnavailable, netnsUnavailable} from './helpers/privileges.ts';
import {addProcessLessEntry, assertArrangedVerdicts, buildUsmWorld} from './helpers/usmWorld.ts';
import {ExitCode} from '../src/exitCodes.ts';
import {beforeAll} from './helpers/setUp.ts';

const repo = resolve(new URL(`..`, import.meta.url).pathname);
const scratch = mkdtempSync(join(tmpdir(), `usmld-dist-`));
process.once(`exit`, () => rmSync(scratch, {recursive: true, force: true}));
const box = join(scratch, `box`);
const emptyBin = join(scratch, `bin`);
const exe = join(box, `usm-leak-detector`);
const bundle = join(box, `usm-leak-detector.cjs`);
// Nothing on PATH: no node, no bpftool, no shell utilities.
const env = {PATH: emptyBin, HOME: box, LANG: `C`};

beforeAll(test, () => {
  execFileSync(`scripts/dist.sh`, {cwd: repo, stdio: [`ignore`, `pipe`, `pipe`], timeout: 600_000, env: {...process.env, USMLD_DIST_MEASURE: `0`}});
  mkdirSync(box);
  mkdirSync(emptyBin);
  for (const name of [`usm-leak-detector`, `usm-leak-detector.cjs`, `capture.sh`])
    copyFileSync(join(repo, `dist`, name), join(box, name));
  // A capture directory assembled from recorded samples: bpftool output and a proc tree.
  const capture = join(box, `capture`);
  cpSync(join(repo, `samples/proc/capture`), capture, {recursive: true, verbatimSymlinks: true});
  cpSync(join(repo, `samples/dump/bpftool/maps`), join(capture, `maps`), {recursive: true});
});

/** Runs a dist artifact from the empty directory with the stripped PATH. */
function runDist(file: string, args: Array<string>) {
  const argv = file === bundle ? [process.execPath, [bundle, ...args]] as const : [file, args] as const;
  const result = spawnSync(argv[0], [...argv[1]], {cwd: box, env, encoding: `utf8`, timeout: 60_000, maxBuffer: 1 << 26});
  return {code: result.status, stdout: result.stdout, stderr: result.stderr, error: result.error};
}

test(`dist/ holds the executable, the bundle and capture.sh; the box has no node and no node_modules`, () => {
  assert.equal(readdirSync(emptyBin), []);
  assert.not.ok(existsSync(join(box, `node_modules`)));
  assert.ok(statSync(exe).mode & 0o111, `executable`);
  assert.ok(statSync(exe).size > 10 * 1024 * 1024, `a whole node inside`);
  // The executable needs no interpreter from PATH, unlike the bundle's #! line.
  assert.not.ok(spawnSync(`node`, [`--version`], {env}).status === 0, `node must not be reachable`);
});

for (const [label, file] of [[`executable`, exe], [`bundle`, bundle]] as const) {
  test(`${label}: --version and --help, with no node on PATH`, () => {
    const version = runDist(file, [`--version`]);
    assert.is(version.code, 0, `${version.error ?? ``} ${version.stderr}`);
    assert.is(version.stdout.trim(), TOOL_VERSION);
    const help = runDist(file, [`--help`]);
    assert.is(help.code, 0, help.stderr);
    for (const command of [`dump-maps`, `snapshot-conns`, `snapshot-pids`, `validate`, `recheck`, `report`, `scan`, `capture-script`])
      assert.match(help.stdout, new RegExp(`usm-leak-detector ${command}\\b`), command);
    assert.not.match(help.stderr, /ExperimentalWarning|single executable/i);
  });

  test(`${label}: replays recorded samples exactly like the in-process CLI`, async () => {
    for (const args of [
      [`dump-maps`, `--from`, `capture`],
      [`snapshot-pids`, `--proc-root`, `capture/proc`],
      [`snapshot-conns`, `--from`, `capture`],
    ]) {
      const run = runDist(file, args);
      assert.is(run.code, 0, `${args.join(` `)}: ${run.stderr}`);
      const inProcess = await runCommand(args.map(arg => arg.startsWith(`capture`) ? join(box, arg) : arg));
      const strip = (text: string) => withoutHeader(parseLines(text)).map(record => record.type === `snapshot` ? {...record, time: 0, timeMs: 0, monotonicNs: 0, procRoot: ``} : record);
      assert.ok(strip(run.stdout).length > 3, `${args[0]} gave records`);
      assert.equal(strip(run.stdout), strip(inProcess.stdout), args.join(` `));
    }
  });

  test(`${label}: scan --from a capture prints the same report as the in-process CLI`, async () => {
    const run = runDist(file, [`scan`, `--from`, `capture`, `--recheck-delay`, `0`]);
    const inProcess = await runCommand([`scan`, `--from`, join(box, `capture`), `--recheck-delay`, `0`]);
    assert.ok(run.code === 0 || run.code === 1, `${run.code}: ${run.stderr}`);
    assert.is(run.code, inProcess.code);
    assert.ok(run.stdout.length > 100, `a report`);
    const stable = (text: string) => text.replace(/[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z/g, `TIME`).replaceAll(join(box, `capture`), `capture`);
    assert.is(stable(run.stdout), stable(inProcess.stdout));
  });

  test(`${label}: capture-script prints the script the source prints`, () => {
    const run = runDist(file, [`capture-script`]);
    assert.is(run.code, 0, run.stderr);
    assert.is(run.stdout, captureScript());
  });
}

test(`executable: its code cache (an asset) is taken, and refused under other V8 flags with the same output`, () => {
  const probe = writeCodeCacheProbe(scratch);
  for (const args of [[`--version`], [`scan`, `--from`, `capture`, `--recheck-delay`, `0`], [`dump-maps`, `--from`, `capture`]]) {
    const runs = [``, ` --max-old-space-size=1000`].map(flags => {
      const result = spawnSync(exe, args, {cwd: box, env: {...env, NODE_OPTIONS: `--require ${probe}${flags}`}, encoding: `utf8`, timeout: 60_000, maxBuffer: 1 << 26});
      const stable = result.stdout.replace(/[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z/g, `TIME`).replace(/"(timeMs|monotonicNs)":[0-9]+/g, `"$1":0`);
      return {code: result.status, stdout: stable, stderr: result.stderr.replace(PROBE_LINE, ``), probe: PROBE_LINE.exec(result.stderr)?.[1]};
    });
    assert.is(runs[0].probe, `accepted`, `${args.join(` `)}: ${runs[0].stderr}`);
    assert.is(runs[1].probe, `rejected`, args.join(` `));
    assert.ok(runs[0].stdout.length > 0 && (runs[0].code === 0 || runs[0].code === 1), `${args.join(` `)}: ${runs[0].stderr}`);
    assert.equal({...runs[1], probe: ``}, {...runs[0], probe: ``}, args.join(` `));
  }
});

// Real maps need root and BPF: registered only when they can run (CI has them).
if (bpfUnavailable() === null && netnsUnavailable() === null) {
  for (const [label, file] of [[`executable`, exe], [`bundle`, bundle]] as const) {
    test(`${label}: a scan that ends at once (its one map is gone) while its read-ahead worker may still be loading the FFI exits 3 every time, never aborts, and leaves no FFI directory`, () => {
      const argv = file === bundle ? [process.execPath, bundle] : [exe];
      const startedMs = Date.now();
      const codes: Array<number | null> = [];
      for (let i = 0; i < 12; i++) {
        const run = spawnSync(argv[0], [...argv.slice(1), `scan`, `-q`, `--backend`, `kernel`, `--map-id`, `2147483647`, `--recheck-delay`, `0`], {env, cwd: box, encoding: `utf8`});
        codes.push(run.status);
        assert.not.match(run.stderr, /FATAL ERROR/, `run ${i}: ${run.stderr}`);
      }
      assert.equal(codes, Array(12).fill(ExitCode.Environment));
      assert.equal(readdirSync(tmpdir()).filter(name => name.startsWith(`usmld-ffi-`) && statSync(join(tmpdir(), name)).mtimeMs >= startedMs - 1000), []);
    });

    test(`${label}: a scan refused at its command line, whose early worker no scan adopts, exits 2 every time and never aborts`, () => {
      const argv = file === bundle ? [process.execPath, bundle] : [exe];
      for (let i = 0; i < 8; i++) {
        const run = spawnSync(argv[0], [...argv.slice(1), `scan`, `--recheck-delay`, `soon`], {env, cwd: box, encoding: `utf8`});
        assert.is(run.status, ExitCode.Usage, run.stderr);
        assert.not.match(run.stderr, /FATAL ERROR/, `run ${i}: ${run.stderr}`);
      }
    });

    test(`${label}: scan with no node on PATH, no node_modules and no bpftool reads the maps itself and judges them right`, async () => {
      const world = await buildUsmWorld(`dist-${label}`, {namespace: true});
      const lonely = await makeProcessLessNetns(`dist-${label}-lonely`);
      try {
        addProcessLessEntry(world, lonely, `connection in a namespace no process is in (setns)`);
        const capture = join(box, `scan-${label}.ndjson`);
        const argv = file === bundle ? [process.execPath, bundle] : [exe];
        const run = runWithoutBpftool(argv[0], [...argv.slice(1), `scan`, `-vv`, ...world.mapIdArgs, `--no-download`, `--recheck-delay`, `0`, `--capture`, capture], {env, cwd: box});
        assert.is(run.status, ExitCode.LeaksFound, run.stderr);
        // Its read-ahead worker was started by the loader, before the program's code was read (scripts/build.mjs).
        assert.match(run.stderr, /debug: read-ahead worker started by the loader, before the program was read\n/);
        // The loader's inlining budget is set by scan once its snapshots are taken, not by the
        // loader (scripts/build.mjs: sooner, it made V8 refuse Node's own modules' code caches).
        assert.match(run.stderr, /debug: V8's inlining budget lowered for the judging's compiles \(the loader's tuning\)\n/);
        const records = parseLines(readFileSync(capture, `utf8`));
        assert.ok(records.filter(record => record.type === `map`).every(record => record.backend === `kernel`));
        assert.is(records.find(record => record.type === `netns` && record.netnsInode === lonely.netns.inode)?.readVia, `setns:${lonely.netns.path}`);
        // Our own namespace (the run's): its tables dumped through NETLINK_SOCK_DIAG.
        const ours = Number(/\d+/.exec(readlinkSync(`/proc/self/ns/net`))![0]);
        assert.is(records.find(record => record.type === `netns` && record.netnsInode === ours)?.readVia, `sock-diag`);
        assertArrangedVerdicts(world, records);
        // The FFI module was written to a private temporary directory and removed at once.
        assert.equal(readdirSync(tmpdir()).filter(name => name.startsWith(`usmld-ffi-`) && statSync(join(tmpdir(), name)).mtimeMs > Date.now() - 60_000), []);
      } finally {
        lonely.release();
        await world.cleanup();
      }
    });
  }
}

// strace shows which threads end on their own after the report is written (CI installs it).
const strace = spawnSync(`sh`, [`-c`, `command -v strace`], {encoding: `utf8`}).stdout.trim();
if (bpfUnavailable() === null && strace !== ``) {
  test(`bundle: a scan that read the maps itself ends through exit_group once its report is written (no teardown of V8's or libuv's threads after it), with the same report and exit code as Node's own exit`, async () => {
    const world = await buildUsmWorld(`dist-exit`);
    try {
      const traced = (nodeArgs: Array<string>) => {
        const trace = join(scratch, `exit-${nodeArgs.length}.strace`);
        const run = spawnSync(strace, [`-f`, `-qq`, `-e`, `trace=write,exit,exit_group`, `-o`, trace, process.execPath, ...nodeArgs, bundle, `scan`, `--backend`, `kernel`, ...world.mapIdArgs, `--recheck-delay`, `0`], {env, cwd: box, encoding: `utf8`, timeout: 120_000});
        // After the report's last write to stdout: the threads that still end one by one (exit), and whether the process ended with exit_group.
        const lines = readFileSync(trace, `utf8`).split(`\n`);
        let lastWrite = lines.length - 1;
        while (lastWrite >= 0 && !/^\d+ +write\(1,/.test(lines[lastWrite]))
          lastWrite--;
        const after = lines.slice(lastWrite + 1);
        return {
          // The host line counts the host's sockets and processes, which other tests' runs change between the two.
          code: run.status, report: run.stdout.replace(/[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z|[0-9.]+ s\b/g, `T`).replace(/^Host .*$/m, `Host`), stderr: run.stderr, wrote: lastWrite >= 0,
          threadExits: after.filter(line => /^\d+ +exit\(/.test(line)).length, exitGroup: after.some(line => /^\d+ +exit_group\(/.test(line)),
        };
      };
      const atOnce = traced([]);
      // A Node option (here the default stack size, given) is one whose run keeps Node's own exit.
      const nodes = traced([`--stack-size=984`]);
      assert.is(atOnce.code, ExitCode.LeaksFound, atOnce.stderr);
      assert.is(nodes.code, ExitCode.LeaksFound, nodes.stderr);
      assert.ok(atOnce.wrote && nodes.wrote);
      assert.is(atOnce.report, nodes.report);
      // At most the read-ahead worker's thread, which scan ended itself before the report (it may
      // still be finishing then: 1 run in 15-30): none of V8's or libuv's threads.
      assert.ok(atOnce.threadExits <= 1, `no thread but the worker's ends on its own after the report (${atOnce.threadExits})`);
      assert.ok(atOnce.exitGroup);
      // The check tells the two apart: Node's own exit ends V8's and libuv's threads one by one (9 here).
      assert.ok(nodes.threadExits > 1, `Node's own exit ends its threads first (${nodes.threadExits})`);
    } finally {
      await world.cleanup();
    }
  });
}

test(`dist/capture.sh is the script the tool prints`, () => {
  assert.is(execFileSync(`cat`, [join(box, `capture.sh`)], {encoding: `utf8`}), captureScript());
});

test.run();
