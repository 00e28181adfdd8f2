// scan's first look walks each process's fd/ once (FdLinksCache in the context): snapshot-pids'
// socket fds and the dump's map holders then come from the same walk. Against real processes
// holding a real map and sockets, the records must be those of the unshared path (each stage
// walking fd/ itself), and the sharing must really have happened.
import {spawn, type ChildProcess} from 'node:child_process';
import * as fs from 'node:fs';
import {closeSync, mkdtempSync, readFileSync, readlinkSync, rmSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {PassThrough} from 'node:stream';
import {test} from 'uvu';
import * as assert from 'uvu/assert';
import {defaultToolContext, type ToolContext} from '../src/context.ts';
import {dumpMaps} from '../src/dump/index.ts';
import {openMapReadOnly} from '../src/dump/kernel.ts';
import type {AnyRecord, MapRecord, ProcessRecord} from '../src/schema.ts';
import {ReadAhead} from '../src/dump/readAhead.ts';
import {FdLinksCache, sharedWalkState, walkFdDir, walkSharedFdLinks, type FdLinks, type FdWalks} from '../src/snapshot/fdLinks.ts';
import {snapshotPids} from '../src/snapshot/pids.ts';
import {lazySyscalls} from '../src/sys/syscalls.ts';
import {BpfTestSet, type TestMap} from './helpers/bpf.ts';
import {killChildren} from './helpers/children.ts';
import {runCommand} from './helpers/cli.ts';
import {bpfUnavailable, requirePrivileges} from './helpers/privileges.ts';
import {beforeAll} from './helpers/setUp.ts';

const runs = requirePrivileges(`shared fd walks (real maps and processes)`, bpfUnavailable());
let set: BpfTestSet;
let held: TestMap;
let other: TestMap;
const children = new Set<ChildProcess>();

async function collect(records: AsyncIterable<AnyRecord>): Promise<Array<AnyRecord>> {
  const out: Array<AnyRecord> = [];
  for await (const record of records)
    out.push(record);
  return out;
}

/** snapshot-pids with socket fds, then a kernel dump of the maps: scan's first look, in its order. */
async function look(ctx: ToolContext, mapIds: Array<number>) {
  const processes = (await collect(snapshotPids(ctx, {socketFds: true}))).filter(record => record.type === `process`);
  const maps = (await collect(dumpMaps(ctx, {backend: `kernel`, mapIds, download: false}))).filter(record => record.type === `map`);
  return {processes, maps};
}

if (runs) {
  beforeAll(test, () => {
    set = new BpfTestSet(`fdlinks`);
    held = set.createMap({name: `ssl_read_args`, keySize: 8, valueSize: 8});
    other = set.createMap({name: `ssl_write_args`, keySize: 8, valueSize: 8});
  });

  test.after(() => {
    killChildren(children);
    set?.cleanup();
  });

  /**
   * One child that holds a map twice (fds 3 and 5) and another map (fd 4), with sockets on 0-2
   * (the stdio pipes are socket pairs); one that holds sockets only.
   */
  async function startHolders(): Promise<{both: ChildProcess, socketsOnly: ChildProcess}> {
    const sys = lazySyscalls(process.env.TMPDIR ?? `/tmp`)();
    if (`unavailable` in sys)
      throw new Error(sys.unavailable);
    const heldFd = openMapReadOnly(sys, held.id);
    const otherFd = openMapReadOnly(sys, other.id);
    const both = spawn(`sleep`, [`60`], {stdio: [`pipe`, `pipe`, `pipe`, heldFd, otherFd, heldFd]});
    const socketsOnly = spawn(`sleep`, [`60`], {stdio: [`pipe`, `pipe`, `ignore`]});
    children.add(both).add(socketsOnly);
    closeSync(heldFd);
    closeSync(otherFd);
    await new Promise(resolve => setTimeout(resolve, 100));
    assert.ok(readlinkSync(`/proc/${both.pid}/fd/0`).startsWith(`socket:[`), `stdio pipes are sockets`);
    return {both, socketsOnly};
  }

  test(`the first look's shared fd walks give the records of the unshared path`, async () => {
    const {both, socketsOnly} = await startHolders();

    const mapIds = [held.id, other.id];
    const plain = await look(defaultToolContext(new PassThrough()), mapIds);
    const cache = new FdLinksCache();
    const shared = await look({...defaultToolContext(new PassThrough()), fdLinks: cache}, mapIds);
    assert.ok(cache.reused > 0, `the dump's holders came from snapshot-pids' walks`);

    for (const child of [both, socketsOnly]) {
      const mine = (records: Array<AnyRecord>) => records.find(record => record.type === `process` && record.pid === child.pid);
      const record = mine(shared.processes) as ProcessRecord | undefined;
      assert.ok(record?.socketFds !== undefined, `process ${child.pid} listed with its socket fds`);
      assert.equal(record!.socketFds!.map(([fd]) => fd), child === both ? [0, 1, 2] : [0, 1]);
      assert.equal(record, mine(plain.processes));
    }
    assert.equal(shared.maps, plain.maps);
    const holders = (id: number) => (shared.maps.find(record => record.type === `map` && record.mapId === id) as MapRecord).holders;
    assert.equal(holders(held.id), [{pid: both.pid, comm: `sleep`}]);
    assert.equal(holders(other.id), [{pid: both.pid, comm: `sleep`}]);
  });

  test(`scan's worker thread walks every fd/ but ours as this thread does; the first look then gives the records of the unshared path`, async () => {
    const {both, socketsOnly} = await startHolders();
    const helper = new ReadAhead(process.env.TMPDIR ?? `/tmp`);
    let walks: FdWalks | null;
    try {
      const walk = helper.walkFdLinks(`/proc`, process.pid);
      // This thread takes what the worker has not got to (maybe nothing, maybe all of it).
      await new Promise(resolve => setTimeout(resolve, 5));
      walks = walk.help() ?? await walk.done;
    } finally {
      helper.close();
    }
    assert.ok(walks !== null, `the worker walked`);
    const fdDirs = walks.map(([fdDir]) => fdDir);
    assert.is(new Set(fdDirs).size, fdDirs.length, `each fd/ walked once`);
    const here = new Map(walkSharedFdLinks(fs, walkFdDir, `/proc`, process.pid, sharedWalkState(64)).walks);
    for (const [fdDir] of here)
      assert.ok(fdDirs.includes(fdDir) || !fs.existsSync(fdDir), `${fdDir} walked (or its process gone since)`);
    const there = new Map(walks);
    assert.not.ok(there.has(`/proc/${process.pid}/fd`), `our own fd/ is left to the stage that reads it`);
    for (const child of [both, socketsOnly]) {
      const fdDir = `/proc/${child.pid}/fd`;
      assert.ok(there.get(fdDir)!.sockets.length > 0, fdDir);
      assert.equal(there.get(fdDir), here.get(fdDir), fdDir);
    }
    assert.equal(there.get(`/proc/${both.pid}/fd`)!.bpfMaps, [`3`, `4`, `5`]);

    const mapIds = [held.id, other.id];
    const plain = await look(defaultToolContext(new PassThrough()), mapIds);
    const cache = new FdLinksCache();
    cache.adopt(walks);
    const adopted = await look({...defaultToolContext(new PassThrough()), fdLinks: cache}, mapIds);
    assert.ok(cache.reused > 0, `snapshot-pids and the holders read the worker's walks`);
    for (const child of [both, socketsOnly]) {
      const mine = (records: Array<AnyRecord>) => records.find(record => record.type === `process` && record.pid === child.pid);
      assert.ok((mine(adopted.processes) as ProcessRecord | undefined)?.socketFds !== undefined);
      assert.equal(mine(adopted.processes), mine(plain.processes));
    }
    assert.equal(adopted.maps, plain.maps);
  });

  test(`a shared fd/ walk: the first thread lists and walks from the front, the other from the back until they meet; each fd/ once, none missed, also past the shared room; alone, a thread has the whole walk`, () => {
    const alone = walkSharedFdLinks(fs, walkFdDir, `/proc`, process.pid, sharedWalkState(100_000));
    assert.ok(alone.all, `one thread alone walks every process`);
    const plain = new Map(alone.walks);
    assert.ok(plain.size > 3, `processes to walk`);
    for (const room of [plain.size + 10, 3]) {
      const shared = sharedWalkState(room);
      let helped: {walks: FdWalks, all: boolean} = {walks: [], all: true};
      let walked = 0;
      // The lister walks two processes, then the other thread takes all it can, as scan's main thread would.
      const walk: typeof walkFdDir = (fsModule, fdDir): FdLinks | undefined => {
        if (walked++ === 1)
          helped = walkSharedFdLinks(fs, walkFdDir, `/proc`, process.pid, shared);
        return walkFdDir(fsModule, fdDir);
      };
      const theirs = walkSharedFdLinks(fs, walk, `/proc`, process.pid, shared);
      const all = [...theirs.walks, ...helped.walks].map(([fdDir]) => fdDir);
      assert.is(new Set(all).size, all.length, `room ${room}: each fd/ once`);
      assert.ok(helped.walks.length > 0 && theirs.walks.length >= 2, `room ${room}: both walked (${theirs.walks.length} and ${helped.walks.length})`);
      assert.ok(!theirs.all && !helped.all, `room ${room}: neither has the whole walk`);
      for (const fdDir of plain.keys())
        assert.ok(all.includes(fdDir) || !fs.existsSync(fdDir), `room ${room}: ${fdDir} walked`);
      if (room === 3)
        assert.is(helped.walks.length, 1, `the other thread takes only what the shared room lists`);
    }
    // Listed largest fd/ first (procfs gives the open fds as the directory's size on Linux 6.2+).
    const sizes = alone.walks.map(([fdDir]) => { try { return fs.statSync(fdDir).size; } catch { return -1; } });
    if (sizes.some(size => size > 0)) {
      const biggest = Math.max(...sizes);
      assert.ok(sizes[0] >= biggest * 0.9 || sizes[0] === -1, `the largest fd/ walked first (${sizes.slice(0, 5).join(`, `)} of up to ${biggest})`);
    }
    // A lister that never finishes listing (state left "being listed"): the other thread gives up, walks nothing.
    const stuck = sharedWalkState(8);
    Atomics.store(stuck, 0, -1);
    const gaveUp = walkSharedFdLinks(fs, walkFdDir, `/proc`, process.pid, stuck);
    assert.equal(gaveUp, {walks: [], all: false});
  });

  /** A child holding `count` fds: sockets (its stdio pipes are socket pairs), gaps (fds left closed) at every 13th; closed when killed. */
  function startLargeChild(count: number): ChildProcess {
    const stdio = Array.from({length: count}, (_, fd) => (fd > 2 && fd % 13 === 7 ? `ignore` : `pipe`));
    const child = spawn(`sleep`, [`60`], {stdio});
    children.add(child);
    child.on(`exit`, () => {
      for (const stream of child.stdio)
        stream?.destroy();
    });
    return child;
  }

  test(`scan's worker ended mid-walk: this thread's help and the walk's end still come, and what they give is right (or null: the stages walk on demand)`, async () => {
    const large = startLargeChild(1300);
    await new Promise(resolve => setTimeout(resolve, 100));
    const largeDir = `/proc/${large.pid}/fd`;
    const plain = walkFdDir(fs, largeDir)!;
    for (const delayMs of [0, 20, 40, 60, 80, 100, 130, 160, 200]) {
      const helper = new ReadAhead(process.env.TMPDIR ?? `/tmp`);
      const walk = helper.walkFdLinks(`/proc`, process.pid);
      await new Promise(resolve => setTimeout(resolve, delayMs));
      helper.close();
      const walks = walk.help() ?? await walk.done;
      if (walks !== null) {
        const fdDirs = walks.map(([fdDir]) => fdDir);
        assert.is(new Set(fdDirs).size, fdDirs.length, `each fd/ once`);
        assert.equal(new Map(walks).get(largeDir), plain, `after ${delayMs} ms`);
      }
    }
  });

  test(`scan's early worker keeps the fallbacks: without the FFI, or with bpf() wrapped (refused), the same processes and holders, read through bpftool`, async () => {
    const {both} = await startHolders();
    const dir = mkdtempSync(join(tmpdir(), `usmld-scanfallback-`));
    try {
      const looks: Array<{code: number, stderr: string, records: Array<Record<string, unknown>>}> = [];
      const variants: Array<Partial<ToolContext>> = [
        {},
        {syscalls: () => ({unavailable: `no FFI in this test`})},
        {syscalls: () => ({bpf: () => -1, address: () => 0n, socket: () => -1, send: () => -1, recv: () => -1, close: () => 0, native: {kind: `require` as const, path: `unused`}})},
      ];
      for (const [i, tool] of variants.entries()) {
        const capture = join(dir, `capture-${i}.ndjson`);
        const run = await runCommand([`scan`, `--map-id`, String(held.id), `--recheck-delay`, `0`, `--capture`, capture, `-vv`], {tool});
        const records = readFileSync(capture, `utf8`).trim().split(`\n`).map(line => JSON.parse(line) as Record<string, unknown>);
        looks.push({code: run.code, stderr: run.stderr, records});
      }
      for (const look of looks) {
        assert.is(look.code, 0, look.stderr);
        assert.match(look.stderr, /fd\/ of \d+ process\(es\) walked for this look/);
      }
      assert.match(looks[1].stderr, /falling back to bpftool/);
      assert.match(looks[2].stderr, /bpf\(\) refused \(EPERM\).*falling back to bpftool/);
      const mine = (look: typeof looks[number]) => look.records.find(record => record.type === `process` && record.pid === both.pid);
      const map = (look: typeof looks[number]): Record<string, unknown> => ({...look.records.find(record => record.type === `map`), backend: undefined});
      assert.ok(mine(looks[0]) !== undefined);
      assert.ok((map(looks[0]).holders as Array<{pid: number}>).some(holder => holder.pid === both.pid), `the child holding the map is a holder`);
      for (const look of looks.slice(1)) {
        assert.equal(mine(look), mine(looks[0]));
        assert.equal(map(look), map(looks[0]));
      }
    } finally {
      rmSync(dir, {recursive: true, force: true});
    }
  });
}

test.run();
