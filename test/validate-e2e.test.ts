// validate end to end on real things: real eBPF maps (bpftool) filled with tuples of real
// connections (in our namespace, in an `ip netns add` namespace, and in a namespace no process is
// in) and of connections that never existed, plus pid_tgid keys of a live thread, a thread that
// exited inside a live process, a zombie and a dead pid. `dump-maps | validate` runs in-process;
// every verdict is checked against what the test arranged.
import {execFileSync, spawn, type ChildProcess} from 'node:child_process';
import {existsSync, readdirSync, readFileSync} from 'node:fs';
import {test} from 'uvu';
import * as assert from 'uvu/assert';
import {ExitCode} from '../src/exitCodes.ts';
import {BpfTestSet, connTupleBytes, pidTgidBytes, type TestMap} from './helpers/bpf.ts';
import {parseLines, runCommand} from './helpers/cli.ts';
import {cleanupNetns, createNetns, makeProcessLessNetns, netnsInodeOfPid, startSocketHolder, type HeldConnection} from './helpers/netns.ts';
import {bpfUnavailable, netnsUnavailable, requirePrivileges} from './helpers/privileges.ts';
import {killChildren} from './helpers/children.ts';

const enabled = requirePrivileges(`validate-e2e`, bpfUnavailable() ?? netnsUnavailable());

// Children of this file, killed by pid on the way out (also when a test fails or the process exits).
const children = new Set<ChildProcess>();
const killAll = () => killChildren(children);
process.once(`exit`, killAll);

function track(child: ChildProcess): ChildProcess {
  children.add(child);
  return child;
}

function message<T>(child: ChildProcess): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`child sent nothing in 15 s`)), 15_000);
    child.once(`message`, value => {
      clearTimeout(timer);
      resolve(value as T);
    });
    child.once(`exit`, code => reject(new Error(`child exited (${code}) before reporting`)));
  });
}

// A live process whose worker thread has exited: reports its pid and the tids that are gone.
const EXITED_THREAD_SCRIPT = `
const fs = require('fs');
const {Worker} = require('worker_threads');
const tids = () => fs.readdirSync('/proc/self/task');
const before = new Set(tids());
const worker = new Worker('setInterval(() => {}, 1000)', {eval: true});
worker.on('online', async () => {
  const added = tids().filter(tid => !before.has(tid));
  await worker.terminate();
  for (let i = 0; i < 200; i++) {
    const now = new Set(tids());
    const gone = added.filter(tid => !now.has(tid));
    if (gone.length > 0) {
      process.send({pid: process.pid, gone: gone.map(Number), threads: [...now].map(Number)});
      setInterval(() => {}, 1 << 30);
      return;
    }
    await new Promise(resolve => setTimeout(resolve, 20));
  }
  process.exit(3);
});
`;

function stateOf(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, `utf8`);
    return stat.slice(stat.lastIndexOf(`)`) + 2).split(` `)[0];
  } catch {
    return null;
  }
}

/** A zombie: sh backgrounds a child then execs sleep, which never reaps it. Returns the zombie's pid. */
async function makeZombie(): Promise<{zombie: number, parent: ChildProcess}> {
  const parent = track(spawn(`/bin/sh`, [`-c`, `/bin/true & exec /bin/sleep 600`], {stdio: `ignore`}));
  for (let i = 0; i < 250; i++) {
    for (const name of readdirSync(`/proc`)) {
      if (!/^\d+$/.test(name))
        continue;
      try {
        const stat = readFileSync(`/proc/${name}/stat`, `utf8`);
        const fields = stat.slice(stat.lastIndexOf(`)`) + 2).split(` `);
        if (Number(fields[1]) === parent.pid && fields[0] === `Z`)
          return {zombie: Number(name), parent};
      } catch {
        // Raced with an exit.
      }
    }
    await new Promise(resolve => setTimeout(resolve, 20));
  }
  throw new Error(`no zombie appeared under pid ${parent.pid}`);
}

/** A pid that existed and is gone (reaped). */
function deadPid(): number {
  const pid = Number(execFileSync(`/bin/sh`, [`-c`, `echo $$`], {encoding: `utf8`}).trim());
  assert.not.ok(existsSync(`/proc/${pid}`), `pid ${pid} is gone`);
  return pid;
}

type Expect = {key: Buffer, status: string, reason: string, netnsInode?: number, matchLport?: number, what: string};

function tupleFrom(c: HeldConnection, side: `client` | `server`, netns = 0, udp = false) {
  const [local, remote] = side === `client` ? [c.client, c.clientPeer] : [c.server, c.client];
  // The eBPF side stores ::ffff:a.b.c.d as a plain IPv4 tuple; node reports the mapped form.
  const unmap = (address: string) => address.replace(/^::ffff:(?=\d+\.)/, ``);
  return connTupleBytes({saddr: unmap(local.address), sport: local.port, daddr: unmap(remote.address), dport: remote.port, netns, udp});
}

function fill(set: BpfTestSet, map: TestMap, expects: Array<Expect>, valueSize = 8): void {
  set.fill(map, expects.map(e => [e.key, Buffer.alloc(valueSize)] as const));
}

test(`dump-maps | validate: every entry's verdict matches what was arranged`, async () => {
  if (!enabled)
    return;
  const set = new BpfTestSet(`validate-e2e`);
  try {
    const ourNetns = netnsInodeOfPid(process.pid);
    const nsB = createNetns(`valB`);
    const holderHere = await startSocketHolder();
    const holderB = await startSocketHolder({netns: nsB});
    const processLess = await makeProcessLessNetns(`valPL`);
    const exited = track(spawn(process.execPath, [`-e`, EXITED_THREAD_SCRIPT], {stdio: [`ignore`, `ignore`, `inherit`, `ipc`]}));
    const threads = await message<{pid: number, gone: Array<number>, threads: Array<number>}>(exited);
    const {zombie, parent} = await makeZombie();
    const dead = deadPid();

    const conn = (holder: {connections: Array<HeldConnection>}, kind: string, proto = `tcp`) =>
      holder.connections.find(c => c.kind === kind && c.proto === proto)!;
    const v4 = conn(holderHere, `v4`);
    const v6 = conn(holderHere, `v6`);
    const dual = conn(holderHere, `dual`);
    const udp = conn(holderHere, `v4`, `udp`);
    const inB = conn(holderB, `v4`);
    const pl = processLess.connections[0];

    const tuples: Array<Expect> = [
      {what: `v4 client→server, netns 0`, key: tupleFrom(v4, `client`), status: `alive`, reason: `established`, netnsInode: ourNetns},
      {what: `v4 server→client (reversed), our netns`, key: tupleFrom(v4, `server`, ourNetns), status: `alive`, reason: `established`, netnsInode: ourNetns},
      {what: `v6`, key: tupleFrom(v6, `client`, ourNetns), status: `alive`, reason: `established`},
      // Matched forward, so against the accepted socket's own row: tcp6's ::ffff:127.0.0.1, folded.
      {what: `v4 tuple of a dual-stack connection (tcp6 ::ffff: row)`, key: tupleFrom(dual, `server`), status: `alive`, reason: `established`, matchLport: dual.server.port},
      {what: `UDP connected pair`, key: tupleFrom(udp, `client`, 0, true), status: `alive`, reason: `established`},
      {what: `connection in ip netns B, netns B`, key: tupleFrom(inB, `client`, nsB.inode), status: `alive`, reason: `established`, netnsInode: nsB.inode},
      {what: `connection in ip netns B, netns 0`, key: tupleFrom(inB, `client`), status: `alive`, reason: `established`, netnsInode: nsB.inode},
      {what: `connection in B, stamped with our netns`, key: tupleFrom(inB, `server`, ourNetns), status: `leaked`, reason: `wrong_namespace`, netnsInode: nsB.inode},
      {what: `process-less namespace`, key: tupleFrom(pl, `client`, processLess.netns.inode), status: `alive`, reason: `established`, netnsInode: processLess.netns.inode},
      {what: `listener, exact`, key: connTupleBytes({saddr: v4.listener!.address, sport: v4.listener!.port, daddr: `0.0.0.0`, dport: 0}), status: `alive`, reason: `listening`},
      {what: `listener on :: for an IPv4 tuple`, key: connTupleBytes({saddr: `127.0.0.1`, sport: dual.listener!.port, daddr: `0.0.0.0`, dport: 0}), status: `alive`, reason: `listening_wildcard`},
      {what: `never existed, netns 0`, key: connTupleBytes({saddr: `10.255.255.1`, sport: 41234, daddr: `10.255.255.2`, dport: 80}), status: `leaked`, reason: `no_connection_any_namespace`},
      {what: `never existed, our netns`, key: connTupleBytes({saddr: `10.255.255.1`, sport: 41235, daddr: `10.255.255.2`, dport: 80, netns: ourNetns}), status: `leaked`, reason: `no_connection`},
      {what: `namespace that does not exist`, key: connTupleBytes({saddr: `10.255.255.1`, sport: 41236, daddr: `10.255.255.2`, dport: 80, netns: 12345}), status: `leaked`, reason: `unknown_namespace`},
      {what: `listener nobody has`, key: connTupleBytes({saddr: `127.0.0.1`, sport: 1, daddr: `0.0.0.0`, dport: 0}), status: `leaked`, reason: `no_listener`},
    ];
    // http2_in_flight: {conn_tuple_t, u32 stream_id} in 56 bytes (the original's system-probe path zeroed these).
    const streamKey = (tuple: Buffer, streamId: number) => {
      const key = Buffer.alloc(56);
      tuple.copy(key);
      key.writeUInt32LE(streamId, 48);
      return key;
    };
    const nested: Array<Expect> = [
      {what: `nested key, live connection`, key: streamKey(tupleFrom(v4, `client`), 1), status: `alive`, reason: `established`},
      {what: `nested key, never existed`, key: streamKey(connTupleBytes({saddr: `10.255.255.1`, sport: 41237, daddr: `10.255.255.2`, dport: 443}), 3), status: `leaked`, reason: `no_connection_any_namespace`},
    ];
    const otherThread = threads.threads.find(tid => tid !== threads.pid)!;
    const pids: Array<Expect> = [
      {what: `main thread of a live process`, key: pidTgidBytes(threads.pid, threads.pid), status: `alive`, reason: `thread_alive`},
      {what: `another live thread`, key: pidTgidBytes(threads.pid, otherThread), status: `alive`, reason: `thread_alive`},
      {what: `exited thread of a live process`, key: pidTgidBytes(threads.pid, threads.gone[0]), status: `leaked`, reason: `thread_gone`},
      {what: `zombie`, key: pidTgidBytes(zombie, zombie), status: `leaked`, reason: `zombie`},
      {what: `dead pid`, key: pidTgidBytes(dead, dead), status: `leaked`, reason: `process_gone`},
    ];

    const tupleMap = set.createMap({name: `http_in_flight`, keySize: 48, valueSize: 8});
    const nestedMap = set.createMap({name: `http2_in_flight`, keySize: 56, valueSize: 8});
    const pidMap = set.createMap({name: `ssl_read_args`, keySize: 8, valueSize: 16});
    fill(set, tupleMap, tuples);
    fill(set, nestedMap, nested);
    fill(set, pidMap, pids, 16);
    // A key size the catalogue does not expect: its entries cannot be judged.
    const oddMap = set.createMap({name: `pid_fd_by_tuple`, keySize: 40, valueSize: 8});
    const odd: Array<Expect> = [{what: `entry of a map with a problem`, key: tupleFrom(v4, `client`).subarray(0, 40), status: `unknown`, reason: `map_problem`}];
    fill(set, oddMap, odd);

    const dump = await runCommand([`dump-maps`, `--backend`, `bpftool`, `--no-download`, ...[tupleMap, nestedMap, pidMap, oddMap].flatMap(map => [`--map-id`, String(map.id)])]);
    assert.is(dump.code, ExitCode.Ok, dump.stderr);
    const expects = [...tuples, ...nested, ...pids, ...odd];

    // Live: validate takes the snapshots itself. Offline: the snapshot stages' output, then the dump.
    const live = await runCommand([`validate`], {stdin: dump.stdout});
    const conns = await runCommand([`snapshot-conns`]);
    const procs = await runCommand([`snapshot-pids`]);
    const offline = await runCommand([`validate`], {stdin: conns.stdout + procs.stdout + dump.stdout});
    // The arranged state still holds (nothing we rely on vanished while we looked).
    assert.is(stateOf(zombie), `Z`);
    assert.not.ok(existsSync(`/proc/${threads.pid}/task/${threads.gone[0]}`));
    for (const [label, run] of [[`live`, live], [`offline`, offline]] as const) {
      assert.is(run.code, ExitCode.LeaksFound, `${label}: ${run.stderr}`);
      const records = parseLines(run.stdout);
      const verdicts = records.filter(record => record.type === `verdict`);
      assert.is(verdicts.length, expects.length, `${label}: one verdict per entry`);
      const byKey = new Map(verdicts.map(v => [v.keyHex, v]));
      for (const e of expects) {
        const v = byKey.get(e.key.toString(`hex`));
        assert.ok(v, `${label}: a verdict for ${e.what}`);
        assert.is(`${v!.status}/${v!.reason}`, `${e.status}/${e.reason}`, `${label}: ${e.what}`);
        if (e.matchLport !== undefined)
          assert.is(v!.match?.socket?.lport, e.matchLport, `${label}: ${e.what}: the socket matched`);
        if (e.netnsInode !== undefined)
          assert.is(v!.match?.netnsInode, e.netnsInode, `${label}: ${e.what}: namespace of the match`);
      }
      const summaries = records.filter(record => record.type === `summary`);
      assert.equal(summaries.map(s => [s.mapId, s.total]).sort(), [[tupleMap.id, tuples.length], [nestedMap.id, nested.length], [pidMap.id, pids.length], [oddMap.id, odd.length]].sort());
      const byMap = new Map(summaries.map(s => [s.mapId, s]));
      assert.is(byMap.get(pidMap.id)!.leaked, 3);
      const zombieVerdict = byKey.get(pidTgidBytes(zombie, zombie).toString(`hex`))!;
      assert.equal(zombieVerdict.owner, {pid: zombie, comm: `true`});
    }
    await holderHere.stop();
    await holderB.stop();
    processLess.release();
    void parent;
  } finally {
    killAll();
    cleanupNetns();
    set.cleanup();
  }
});

test.run();
