// Writing (issue 16 cases 1-3 and 9, issue 12's `> /dev/full`): a full disk is exit 3 naming
// what could not be written, never "the reader left"; temp files go on every way out (a reader
// that closed stdout, SIGINT, SIGTERM); a lost stderr does not cost stdout; files the tool
// creates are 0600 and never clobber or follow what is already at the path.
import {spawn, spawnSync} from 'node:child_process';
import {closeSync, cpSync, existsSync, lstatSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {test} from 'uvu';
import * as assert from 'uvu/assert';
import {defaultToolContext} from '../src/context.ts';
import {makeHeader} from '../src/header.ts';
import {parseLines, runCommand} from './helpers/cli.ts';
import {requirePrivileges} from './helpers/privileges.ts';

const BIN = join(process.cwd(), `bin`, `usm-leak-detector`);
const scratch = mkdtempSync(join(tmpdir(), `usmld-output-`));
const sample = readFileSync(`samples/capture.ndjson`, `utf8`).split(`\n`);
const entryLine = sample.find(line => line.includes(`"type":"entry"`))!;
const leakedLine = sample.find(line => line.includes(`"type":"verdict"`) && line.includes(`"status":"leaked"`))!;
/** 25,000 entries: more than validate holds in memory (20,000), so the rest spill to TMPDIR. */
const manyEntries = `${Array.from({length: 25_000}, () => entryLine).join(`\n`)}\n`;
let tmpfs: string | null = null;

/** A capture directory (the capture script's layout) from the samples: proc/, netns/, meta/, maps/. */
function sampleCapture(): string {
  const dir = join(scratch, `sample-capture`);
  if (!existsSync(dir)) {
    cpSync(`samples/proc/capture`, dir, {recursive: true});
    cpSync(`samples/dump/bpftool/maps`, join(dir, `maps`), {recursive: true});
  }
  return dir;
}

test.after(() => {
  if (tmpfs !== null)
    spawnSync(`umount`, [tmpfs]);
  rmSync(scratch, {recursive: true, force: true});
});

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs the real CLI (stdio and signals as a user's shell would give them). */
function runBin(args: Array<string>, options: {input?: string, stdout?: number | `pipe`, env?: NodeJS.ProcessEnv} = {}): Promise<Exit> {
  return new Promise((resolve, reject) => {
    const child = spawn(BIN, args, {stdio: [`pipe`, options.stdout ?? `pipe`, `pipe`], env: options.env ?? process.env});
    let stdout = ``;
    let stderr = ``;
    child.stdout?.on(`data`, chunk => stdout += chunk);
    child.stderr!.on(`data`, chunk => stderr += chunk);
    child.stdin!.on(`error`, () => {});
    child.stdin!.end(options.input ?? ``);
    child.on(`error`, reject);
    child.on(`close`, (code, signal) => resolve({code, signal, stdout, stderr}));
  });
}

function usmldLeftovers(dir: string): Array<string> {
  return readdirSync(dir).filter(name => name.startsWith(`usmld-`));
}

test(`stdout on /dev/full: snapshot-pids, report and dump-maps exit 3 naming the error (was 0 silently, and 4 with a stack)`, async () => {
  for (const args of [[`snapshot-pids`], [`report`, `samples/capture.ndjson`], [`dump-maps`, `--from`, `samples/dump/bpftool`]]) {
    const fd = openSync(`/dev/full`, `w`);
    try {
      const run = await runBin(args, {stdout: fd});
      assert.is(run.code, 3, `${args[0]}: ${run.stderr}`);
      assert.match(run.stderr, /cannot write to standard output: ENOSPC/);
      assert.not.match(run.stderr, /internal error|\n\s+at /);
    } finally {
      closeSync(fd);
    }
  }
});

test(`a directory where a file is expected is exit 3 with a message`, async () => {
  const report = await runCommand([`report`, `samples/`]);
  assert.is(report.code, 3, report.stderr);
  assert.match(report.stderr, /cannot read samples\/: is a directory/);
  const validate = await runCommand([`validate`, `--snapshot`, `samples/`, `--no-live`]);
  assert.is(validate.code, 3, validate.stderr);
  const missingTmp = await runCommand([`validate`, `--no-live`], {stdin: manyEntries, tool: {tmpDir: join(scratch, `no-such-dir`)}});
  assert.is(missingTmp.code, 3, missingTmp.stderr);
  assert.match(missingTmp.stderr, /cannot create a temporary directory in .*no-such-dir \(set TMPDIR to a writable directory\): ENOENT/);
});

test(`on a full 1 MB tmpfs: TMPDIR spill, stdout to a file and scan --capture are exit 3 naming the file, and nothing is left behind`, async () => {
  if (!requirePrivileges(`full-disk tests`, process.geteuid?.() === 0 ? null : `not root (mount tmpfs)`))
    return;
  tmpfs = join(scratch, `tmpfs`);
  mkdirSync(tmpfs);
  const mounted = spawnSync(`mount`, [`-t`, `tmpfs`, `-o`, `size=1m`, `usmld-test-tmpfs`, tmpfs]);
  assert.is(mounted.status, 0, String(mounted.stderr));

  // The spill file of validate's held entries (25,000 entries, ~3 MB past the first 20,000).
  const spill = await runCommand([`validate`, `--no-live`], {stdin: manyEntries, tool: {tmpDir: tmpfs}});
  assert.is(spill.code, 3, spill.stderr);
  assert.match(spill.stderr, /cannot write to .*usmld-validate-[^/]+\/held\.ndjson: ENOSPC/);
  assert.equal(usmldLeftovers(tmpfs), []);

  // stdout redirected to a file on the full disk.
  const outPath = join(tmpfs, `out.ndjson`);
  const fd = openSync(outPath, `w`);
  try {
    const toFile = await runBin([`validate`, `--no-live`], {input: manyEntries.slice(0, 3 * 1024 * 1024), stdout: fd, env: {...process.env, TMPDIR: scratch}});
    assert.is(toFile.code, 3, toFile.stderr);
    assert.match(toFile.stderr, /cannot write to standard output: ENOSPC/);
  } finally {
    closeSync(fd);
    rmSync(outPath);
  }

  // scan --capture: fill the disk first, so the capture cannot be written.
  writeFileSync(join(tmpfs, `filler`), Buffer.alloc(1024 * 1024 - 8192));
  const capture = join(tmpfs, `scan.ndjson`);
  const scan = await runCommand([`scan`, `--from`, sampleCapture(), `--capture`, capture, `--recheck-delay`, `0`]);
  assert.is(scan.code, 3, scan.stderr);
  assert.match(scan.stderr, new RegExp(`cannot write to ${capture.replace(/[.*+?^${}()|[\]\\]/g, `\\$&`)}: ENOSPC`));
  rmSync(join(tmpfs, `filler`));
});

test(`scan --capture creates 0600, refuses an existing file or a planted symlink, and replaces them only with --force`, async () => {
  const dir = join(scratch, `capture`);
  mkdirSync(dir);
  const path = join(dir, `scan.ndjson`);
  const first = await runCommand([`scan`, `--from`, sampleCapture(), `--capture`, path, `--recheck-delay`, `0`]);
  assert.ok(first.code === 0 || first.code === 1, first.stderr);
  assert.is(statSync(path).mode & 0o777, 0o600);
  const before = readFileSync(path, `utf8`);
  const again = await runCommand([`scan`, `--from`, sampleCapture(), `--capture`, path, `--recheck-delay`, `0`]);
  assert.is(again.code, 3);
  assert.match(again.stderr, /--capture .*scan\.ndjson: already exists; not overwriting it \(give --force/);
  assert.is(readFileSync(path, `utf8`), before);

  const target = join(dir, `victim`);
  writeFileSync(target, `precious\n`, {mode: 0o644});
  const link = join(dir, `link.ndjson`);
  symlinkSync(target, link);
  const planted = await runCommand([`scan`, `--from`, sampleCapture(), `--capture`, link, `--recheck-delay`, `0`]);
  assert.is(planted.code, 3);
  assert.is(readFileSync(target, `utf8`), `precious\n`);
  const forced = await runCommand([`scan`, `--from`, sampleCapture(), `--capture`, link, `--force`, `--recheck-delay`, `0`]);
  assert.ok(forced.code === 0 || forced.code === 1, forced.stderr);
  assert.is(readFileSync(target, `utf8`), `precious\n`, `the symlink's target is untouched`);
  assert.ok(lstatSync(link).isFile(), `the link was replaced by a new file`);
  assert.is(lstatSync(link).mode & 0o777, 0o600);
});

test(`validate | head -1 leaves no spill file in TMPDIR`, async () => {
  const tmp = mkdtempSync(join(scratch, `head-`));
  const result = spawnSync(`sh`, [`-c`, `"$0" validate --no-live < "$1" | head -1 > /dev/null`, BIN, writeInput(`head-input.ndjson`, manyEntries)], {env: {...process.env, TMPDIR: tmp}});
  assert.is(result.status, 0, String(result.stderr));
  assert.equal(usmldLeftovers(tmp), []);
});

function writeInput(name: string, text: string): string {
  const path = join(scratch, name);
  writeFileSync(path, text);
  return path;
}

/** Starts the CLI with stdin held open; resolves once `ready` matches its stderr. */
function startWaiting(args: Array<string>, input: string, tmp: string, ready: RegExp) {
  const child = spawn(BIN, [...args, `-v`], {stdio: [`pipe`, `ignore`, `pipe`], env: {...process.env, TMPDIR: tmp}});
  let stderr = ``;
  const exited = new Promise<{code: number | null, signal: NodeJS.Signals | null}>(resolve => child.on(`close`, (code, signal) => resolve({code, signal})));
  const isReady = new Promise<void>((resolve, reject) => {
    child.stderr!.on(`data`, chunk => {
      stderr += chunk;
      if (ready.test(stderr))
        resolve();
    });
    void exited.then(() => reject(new Error(`exited before ready: ${stderr}`)));
  });
  child.stdin!.on(`error`, () => {});
  child.stdin!.write(input);
  return {child, isReady, exited, stderr: () => stderr};
}

for (const [signal, status] of [[`SIGINT`, 130], [`SIGTERM`, 143]] as const) {
  test(`${signal} while validate holds spilled entries removes the spill file (exit ${status})`, async () => {
    const tmp = mkdtempSync(join(scratch, `sig-`));
    // stdin stays open: validate is still waiting for more input when the signal comes.
    const run = startWaiting([`validate`, `--no-live`], manyEntries, tmp, /holding more than 20000/);
    await run.isReady;
    await waitFor(() => usmldLeftovers(tmp).length > 0 && existsSync(join(tmp, usmldLeftovers(tmp)[0], `held.ndjson`)));
    run.child.kill(signal);
    const exit = await run.exited;
    assert.is(exit.code, status, run.stderr());
    assert.equal(usmldLeftovers(tmp), []);
  });
}

test(`SIGTERM during recheck's wait removes the held candidates`, async () => {
  const tmp = mkdtempSync(join(scratch, `recheck-`));
  const header = JSON.stringify(makeHeader(`validate`, defaultToolContext(process.stderr)));
  const input = `${header}\n${Array.from({length: 25_000}, () => leakedLine).join(`\n`)}\n`;
  const run = startWaiting([`recheck`, `--delay`, `600`], input, tmp, /looking again in 600 s/);
  run.child.stdin!.end();
  await run.isReady;
  // The candidates (usmld-validate-*) and their keys (usmld-recheck-*).
  assert.is(usmldLeftovers(tmp).length, 2, `spilled while waiting`);
  run.child.kill(`SIGTERM`);
  const exit = await run.exited;
  assert.is(exit.code, 143, run.stderr());
  assert.equal(usmldLeftovers(tmp), []);
});

test(`losing stderr (validate 2>&1 >out | head -1) does not kill the run: stdout is complete`, async () => {
  const bad = Array.from({length: 5000}, (_, i) => `not json ${i}`).join(`\n`);
  const notes = Array.from({length: 5000}, (_, i) => JSON.stringify({type: `note`, v: 1, i})).join(`\n`);
  const input = writeInput(`stderr-loss.ndjson`, `${bad}\n${notes}\n`);
  const out = join(scratch, `stderr-loss.out`);
  const status = join(scratch, `stderr-loss.status`);
  const result = spawnSync(`sh`, [`-c`, `{ "$0" validate --no-live "$1" 2>&1 >"$2"; echo $? > "$3"; } | head -1 >/dev/null`, BIN, input, out, status], {encoding: `utf8`});
  assert.is(result.status, 0, result.stderr);
  assert.is(readFileSync(status, `utf8`).trim(), `0`, `the tool's own exit status`);
  const records = parseLines(readFileSync(out, `utf8`));
  assert.is(records.filter(r => r.type === `note`).length, 5000);
});

async function waitFor(condition: () => boolean, ms = 30_000): Promise<void> {
  const start = Date.now();
  while (!condition()) {
    if (Date.now() - start > ms)
      throw new Error(`condition not met within ${ms} ms`);
    await new Promise(resolve => setTimeout(resolve, 50));
  }
}

test.run();
