// Issue 12: the snapshot stages run without root say what they could not read (stderr) and mark
// the snapshot `complete: false`, instead of printing `netnsInode: null` for every other user's
// process with `complete: true`. Run for real as nobody (setpriv), from a copy of the bundle in a
// temp directory (any user can read it there).
import {spawn, spawnSync} from 'node:child_process';
import {chmodSync, copyFileSync, existsSync, mkdtempSync, rmSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {fileURLToPath} from 'node:url';
import {test} from 'uvu';
import * as assert from 'uvu/assert';
import {killChildren} from './helpers/children.ts';
import {parseLines} from './helpers/cli.ts';
import {cleanupNetns, makeProcessLessNetns} from './helpers/netns.ts';
import {netnsUnavailable, requirePrivileges} from './helpers/privileges.ts';

const BUNDLE = fileURLToPath(new URL(`../dist/usm-leak-detector.cjs`, import.meta.url));
const has = (bin: string) => spawnSync(`sh`, [`-c`, `command -v ${bin}`]).status === 0;
const isRoot = typeof process.geteuid === `function` && process.geteuid() === 0;

const canRun = requirePrivileges(`snapshots without root`, !isRoot ? `not root (setpriv to nobody needs it)`
  : !has(`setpriv`) ? `setpriv is not installed` : !existsSync(BUNDLE) ? `dist/usm-leak-detector.cjs is not built (make build)` : netnsUnavailable());

if (canRun) {
  test(`snapshot-pids and snapshot-conns as nobody: warnings name what could not be read, complete: false, exit 0`, async () => {
    const dir = mkdtempSync(join(tmpdir(), `usmld-nobody-`));
    chmodSync(dir, 0o755);
    const bundle = join(dir, `usm-leak-detector.cjs`);
    copyFileSync(BUNDLE, bundle);
    chmodSync(bundle, 0o644);
    // A process of root: nobody may not read its ns/net link.
    const sleeper = spawn(`sleep`, [`600`], {stdio: `ignore`});
    const lonely = await makeProcessLessNetns(`nobody`);
    const asNobody = (args: Array<string>) => spawnSync(`setpriv`, [`--reuid=65534`, `--regid=65534`, `--clear-groups`, process.execPath, bundle, ...args],
      {encoding: `utf8`, cwd: dir, timeout: 120_000, maxBuffer: 1 << 26});
    try {
      const pids = asNobody([`snapshot-pids`]);
      assert.is(pids.status, 0, pids.stderr);
      const records = parseLines(pids.stdout);
      const mine = records.find(record => record.type === `process` && record.pid === sleeper.pid);
      assert.is(mine?.netnsInode, null);
      assert.is(records.at(-1)!.type, `snapshot`);
      assert.is(records.at(-1)!.complete, false);
      assert.match(pids.stderr, /cannot read part of \d+ of \d+ process\(es\) under \/proc: .*ns\/net: EACCES.*not running as root, so the snapshot says complete: false/);

      const conns = asNobody([`snapshot-conns`]);
      assert.is(conns.status, 0, conns.stderr);
      const out = parseLines(conns.stdout);
      const netns = out.find(record => record.type === `netns` && record.netnsInode === lonely.netns.inode);
      assert.is(netns?.complete, false, `the process-less namespace cannot be entered without root`);
      assert.is(out.at(-1)!.complete, false);
      assert.match(conns.stderr, new RegExp(`netns ${lonely.netns.inode}`));
      assert.match(conns.stderr, /not running as root: .*complete: false/);
    } finally {
      killChildren(new Set([sleeper]));
      lonely.release();
      cleanupNetns();
      rmSync(dir, {recursive: true, force: true});
    }
  });
}

test.run();
