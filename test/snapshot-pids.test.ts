// snapshot-pids against real processes as root: a node child with live worker threads and one
// that has exited, a zombie (a parent that never reaps its child) whose parent's command name
// holds spaces and parentheses, and `snapshot-pids | head -1` through a real shell pipe.
import {execFileSync, spawn, type ChildProcess} from 'node:child_process';
import {mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {test} from 'uvu';
import * as assert from 'uvu/assert';
import {parseLines, runCommand} from './helpers/cli.ts';
import {netnsInodeOfPid} from './helpers/netns.ts';
import {requirePrivileges} from './helpers/privileges.ts';
import {killChildren} from './helpers/children.ts';

type Rec = Record<string, any>;

const children = new Set<ChildProcess>();
const cleanups: Array<() => void> = [];
const killAll = () => {
  for (const cleanup of cleanups.splice(0))
    cleanup();
  killChildren(children);
};
process.once(`exit`, killAll);

// Two workers report their thread id (from /proc/thread-self); one stays, one exits. The main
// thread reports both once the second has really exited.
const THREADS_SCRIPT = `
const {Worker} = require('worker_threads');
const code = "const {parentPort, workerData} = require('worker_threads'); const tid = Number(require('fs').readlinkSync('/proc/thread-self').split('/').pop()); parentPort.postMessage(tid); if (workerData.stay) setInterval(() => {}, 1 << 30);";
const start = stay => new Promise(resolve => { const w = new Worker(code, {eval: true, workerData: {stay}}); w.once('message', tid => resolve([w, tid])); });
(async () => {
  const [, liveTid] = await start(true);
  const [gone, goneTid] = await start(false);
  await new Promise(resolve => gone.once('exit', resolve));
  process.stdout.write(JSON.stringify({liveTid, goneTid}) + '\\n');
  setInterval(() => {}, 1 << 30);
})();
`;

function firstLine(child: ChildProcess): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = ``;
    child.stdout!.setEncoding(`utf8`);
    child.stdout!.on(`data`, chunk => {
      text += chunk;
      const newline = text.indexOf(`\n`);
      if (newline >= 0)
        resolve(text.slice(0, newline));
    });
    child.once(`exit`, code => reject(new Error(`child exited (${code}) before writing a line`)));
  });
}

const readState = (pid: number) => {
  const stat = readFileSync(`/proc/${pid}/stat`, `utf8`);
  return stat.slice(stat.lastIndexOf(`)`) + 2).split(` `)[0];
};

if (requirePrivileges(`snapshot-pids (live processes)`, process.geteuid?.() === 0 ? null : `not root`)) {
  test.after(killAll);

  test(`threads are listed by tid; an exited thread is absent`, async () => {
    const child = spawn(process.execPath, [`-e`, THREADS_SCRIPT], {stdio: [`ignore`, `pipe`, `inherit`]});
    children.add(child);
    const {liveTid, goneTid} = JSON.parse(await firstLine(child));
    const run = await runCommand([`snapshot-pids`]);
    assert.is(run.code, 0, run.stderr);
    const record = parseLines(run.stdout).find(rec => rec.type === `process` && rec.pid === child.pid)!;
    assert.ok(record, `process record missing`);
    assert.ok(record.tids.includes(child.pid), `the main thread`);
    assert.ok(record.tids.includes(liveTid), `the live worker ${liveTid}`);
    assert.not.ok(record.tids.includes(goneTid), `the exited worker ${goneTid}`);
    assert.equal(record.tids, [...record.tids].sort((a: number, b: number) => a - b));
    assert.is(record.comm, `node`);
    assert.is(record.netnsInode, netnsInodeOfPid(child.pid!));
    const stat = readFileSync(`/proc/${child.pid}/stat`, `utf8`);
    assert.is(record.startTime, Number(stat.slice(stat.lastIndexOf(`)`) + 2).split(` `)[19]));
  });

  test(`a zombie is listed with state Z and no namespace; a comm with ") (" parses`, async () => {
    // The command name is the basename of the path exec'd: a symlink to sleep named like this.
    const comm = `a) b (c`;
    const dir = mkdtempSync(join(tmpdir(), `usmld-zombie-`));
    cleanups.push(() => rmSync(dir, {recursive: true, force: true}));
    const sleepPath = execFileSync(`sh`, [`-c`, `command -v sleep`], {encoding: `utf8`}).trim();
    symlinkSync(sleepPath, join(dir, comm));
    // sh starts a short child, then becomes `a) b (c` (sleep), which never reaps it: a zombie.
    const parent = spawn(`sh`, [`-c`, `sleep 0 & echo $!; exec "$0" 600`, join(dir, comm)], {stdio: [`ignore`, `pipe`, `inherit`]});
    children.add(parent);
    const zombiePid = Number(await firstLine(parent));
    for (let i = 0; i < 100 && readState(zombiePid) !== `Z`; i++)
      await new Promise(resolve => setTimeout(resolve, 20));
    assert.is(readState(zombiePid), `Z`);
    const run = await runCommand([`snapshot-pids`]);
    const records = parseLines(run.stdout);
    const zombie = records.find(rec => rec.type === `process` && rec.pid === zombiePid)!;
    assert.ok(zombie, `zombie record missing`);
    assert.equal([zombie.state, zombie.netnsInode, zombie.tids, zombie.comm], [`Z`, null, [zombiePid], `sleep`]);
    const holder = records.find(rec => rec.type === `process` && rec.pid === parent.pid)!;
    assert.equal([holder.comm, holder.state, holder.tids], [comm, `S`, [parent.pid]]);
  });

  test(`a process that exited is absent, and nothing is reported about it`, async () => {
    const child = spawn(`sleep`, [`600`], {stdio: `ignore`});
    children.add(child);
    const pid = child.pid!;
    const exited = new Promise(resolve => child.once(`exit`, resolve));
    child.kill(`SIGKILL`);
    await exited;
    const run = await runCommand([`snapshot-pids`]);
    assert.not.ok(parseLines(run.stdout).some(rec => rec.type === `process` && rec.pid === pid));
    assert.is(run.stderr, ``);
  });
}

test(`snapshot-pids | head -1 through a real shell pipe exits 0 with one line`, () => {
  // Output well past a pipe buffer (64 KiB), so the reader really leaves mid-stream (EPIPE): a
  // proc tree of 600 processes, each a symlink to one 40-thread process directory (cheap to make).
  const dir = mkdtempSync(join(tmpdir(), `usmld-pids-pipe-`));
  try {
    const template = join(dir, `template`);
    mkdirSync(join(template, `ns`), {recursive: true});
    writeFileSync(join(template, `stat`), `1000 (worker) S 1 1000 1000 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 40 0 4242 1000 10 0 0\n`);
    symlinkSync(`net:[4026531840]`, join(template, `ns`, `net`));
    for (let t = 0; t < 40; t++)
      mkdirSync(join(template, `task`, String(1000 + t)), {recursive: true});
    mkdirSync(join(dir, `proc`));
    for (let pid = 1000; pid < 1600; pid++)
      symlinkSync(template, join(dir, `proc`, String(pid)));
    const full = execFileSync(`bin/usm-leak-detector`, [`snapshot-pids`, `--from`, dir], {encoding: `utf8`, maxBuffer: 1 << 26});
    assert.ok(full.length > 2 * 65536, `the tree's output (${full.length} bytes) should exceed a pipe buffer`);
    for (const args of [`snapshot-pids --from ${dir}`, `snapshot-pids`]) {
      const out = execFileSync(`bash`, [`-c`, `set -o pipefail; bin/usm-leak-detector ${args} | head -1; echo "status=$?"`], {encoding: `utf8`});
      const [line, status] = out.trim().split(`\n`);
      assert.is(JSON.parse(line).type, `header`, args);
      assert.is(status, `status=0`, args);
    }
  } finally {
    rmSync(dir, {recursive: true, force: true});
  }
});

test.run();
