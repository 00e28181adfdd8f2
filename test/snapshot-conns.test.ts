// snapshot-conns against real sockets as root: connections over IPv4, IPv6 and an IPv4 client
// of a dual-stack `::` listener, in our own namespace, in an `ip netns add` namespace with a
// process in it, and in a namespace no process is in any more that still holds a connected pair.
import {execFileSync, spawn} from 'node:child_process';
import {linkSync, mkdirSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {test} from 'uvu';
import * as assert from 'uvu/assert';
import {parseLines, runCommand} from './helpers/cli.ts';
import {
  cleanupNetns, createNetns, makeProcessLessNetns, netnsInodeOfPid, startSocketHolder,
  type HeldConnection, type ProcessLessNetns, type SocketHolder,
} from './helpers/netns.ts';
import {netnsUnavailable, requirePrivileges} from './helpers/privileges.ts';
import {placeByTableInode} from '../src/snapshot/conns.ts';
import {beforeAll} from './helpers/setUp.ts';

type Rec = Record<string, any>;

/** Folds ::ffff:a.b.c.d the way snapshot-conns must (node reports mapped addresses as such). */
const plain = (address: string) => (address.startsWith(`::ffff:`) ? address.slice(7) : address);

function findSocket(sockets: Array<Rec>, netnsInode: number, proto: string, laddr: string, lport: number, raddr: string, rport: number): Rec | undefined {
  return sockets.find(socket => socket.netnsInode === netnsInode && socket.proto === proto && socket.laddr === laddr
    && socket.lport === lport && socket.raddr === raddr && socket.rport === rport);
}

/** Asserts the listener, the client end and the accepted end of `conn` are listed in `netnsInode`. */
function assertConnection(sockets: Array<Rec>, netnsInode: number, conn: HeldConnection, where: string): void {
  const label = `${where} ${conn.proto} ${conn.kind}`;
  const family = conn.kind === `v6` ? `v6` : `v4`;
  if (conn.proto === `udp`) {
    const connected = findSocket(sockets, netnsInode, `udp`, conn.client.address, conn.client.port, conn.clientPeer.address, conn.clientPeer.port);
    assert.ok(connected, `${label}: connected UDP socket missing`);
    assert.is(connected!.state, `ESTABLISHED`, label);
    const bound = findSocket(sockets, netnsInode, `udp`, conn.server.address, conn.server.port, `0.0.0.0`, 0);
    assert.ok(bound, `${label}: bound UDP socket missing`);
    assert.is(bound!.state, `CLOSE`, label);
    return;
  }
  const wildcard = conn.kind === `v6` || conn.kind === `dual` ? `::` : `0.0.0.0`;
  const listener = findSocket(sockets, netnsInode, `tcp`, conn.listener!.address, conn.listener!.port, wildcard, 0);
  assert.ok(listener, `${label}: listener ${conn.listener!.address}:${conn.listener!.port} missing`);
  assert.is(listener!.state, `LISTEN`, label);
  const client = findSocket(sockets, netnsInode, `tcp`, plain(conn.client.address), conn.client.port, plain(conn.clientPeer.address), conn.clientPeer.port);
  assert.ok(client, `${label}: client end missing`);
  assert.equal([client!.state, client!.family, client!.listedFamily], [`ESTABLISHED`, family, family], label);
  const server = findSocket(sockets, netnsInode, `tcp`, plain(conn.server.address), conn.server.port, plain(conn.client.address), conn.client.port);
  assert.ok(server, `${label}: accepted end missing`);
  // The dual-stack listener's accepted socket is listed in tcp6 as ::ffff:127.0.0.1, folded to v4 (B3).
  assert.equal([server!.state, server!.family, server!.listedFamily], [`ESTABLISHED`, family, conn.kind === `dual` ? `v6` : family], label);
  assert.ok(server!.inode > 0 && client!.inode > 0 && server!.inode !== client!.inode, `${label}: socket inodes`);
}

const statInode = (path: string) => Number(execFileSync(`stat`, [`-L`, `--format`, `%i`, path], {encoding: `utf8`}).trim());

if (requirePrivileges(`snapshot-conns (live namespaces)`, netnsUnavailable())) {
  let ours: SocketHolder | null = null;
  let inside: SocketHolder | null = null;
  let processLess: ProcessLessNetns | null = null;
  let records: Array<Rec> = [];
  let netnsName = ``;

  beforeAll(test, async () => {
    const netns = createNetns(`conns`);
    netnsName = netns.name;
    ours = await startSocketHolder();
    inside = await startSocketHolder({netns});
    processLess = await makeProcessLessNetns(`pless`);
    const run = await runCommand([`snapshot-conns`]);
    assert.is(run.code, 0, run.stderr);
    records = parseLines(run.stdout);
  });

  test.after(() => {
    cleanupNetns();
  });

  test(`every record is valid and the stream ends with a snapshot record`, () => {
    assert.is(records[0].type, `header`);
    const last = records.at(-1)!;
    assert.equal([last.type, last.of, last.procRoot], [`snapshot`, `conns`, `/proc`]);
    assert.is(last.count, records.filter(record => record.type === `socket`).length);
  });

  test(`connections in our own namespace carry its inode`, () => {
    const inode = netnsInodeOfPid(process.pid);
    assert.is(ours!.netnsInode, inode);
    const sockets = records.filter(record => record.type === `socket`);
    for (const conn of ours!.connections)
      assertConnection(sockets, inode, conn, `own namespace`);
  });

  test(`connections in an ip-netns namespace carry its inode, read through its process`, () => {
    const path = `/run/netns/${execFileSync(`ip`, [`netns`, `identify`, String(inside!.pid)], {encoding: `utf8`}).trim()}`;
    const inode = statInode(path);
    assert.is(inside!.netnsInode, inode);
    assert.is.not(inode, netnsInodeOfPid(process.pid));
    const netns = records.find(record => record.type === `netns` && record.netnsInode === inode)!;
    assert.ok(netns, `netns record missing`);
    assert.equal(netns.foundBy, [`process`, `bind-mount`]);
    assert.ok(netns.pids.includes(inside!.pid));
    assert.ok(netns.paths.includes(path));
    assert.is(netns.readVia, `proc-pid:${inside!.pid}`);
    assert.is(netns.complete, true);
    const sockets = records.filter(record => record.type === `socket`);
    for (const conn of inside!.connections)
      assertConnection(sockets, inode, conn, `ip netns`);
  });

  test(`each socket is listed once, in one namespace (every table read once per namespace)`, () => {
    const seen = new Map<number, number>();
    for (const socket of records.filter(record => record.type === `socket` && record.inode !== 0)) {
      assert.not.ok(seen.has(socket.inode), `socket inode ${socket.inode} listed twice (netns ${seen.get(socket.inode)} and ${socket.netnsInode})`);
      seen.set(socket.inode, socket.netnsInode);
    }
  });

  test(`placed by the inode of its net/tcp, a process lands in the namespace its ns/net link names (ours, the ip-netns one); never off procfs`, async () => {
    // A second process in the ip-netns namespace: each namespace then has one process that
    // stands for it and one placed by its table's inode (as pid 1 is when its link is refused).
    const second = spawn(`ip`, [`netns`, `exec`, netnsName, `sleep`, `30`], {stdio: `ignore`});
    try {
      for (let i = 0; i < 50 && netnsInodeOfPid(second.pid!) !== inside!.netnsInode; i++)
        await new Promise(resolve => setTimeout(resolve, 20));
      const namespaces = new Map([[inside!.netnsInode, {pids: [inside!.pid]}], [ours!.netnsInode, {pids: [ours!.pid]}]]);
      const placed = placeByTableInode(`/proc`, [second.pid!, process.pid, 999_999_999], namespaces);
      assert.equal([...placed].sort((a, b) => a[0] - b[0]), [[inside!.netnsInode, [second.pid]], [ours!.netnsInode, [process.pid]]].sort((a, b) => (a[0] as number) - (b[0] as number)));
    } finally {
      second.kill();
    }
    // A tree of copies (a capture, a fixture) is not procfs: the same inode there proves nothing.
    const dir = mkdtempSync(join(tmpdir(), `usmld-tableinode-`));
    try {
      for (const pid of [10, 11])
        mkdirSync(join(dir, String(pid), `net`), {recursive: true});
      writeFileSync(join(dir, `10`, `net`, `tcp`), ``);
      linkSync(join(dir, `10`, `net`, `tcp`), join(dir, `11`, `net`, `tcp`));
      assert.is(placeByTableInode(dir, [11], new Map([[4026531840, {pids: [10]}]])).size, 0);
    } finally {
      rmSync(dir, {recursive: true, force: true});
    }
  });

  test(`a namespace with no process in it is found by its bind mount and entered with setns() in a worker thread`, () => {
    const inode = statInode(processLess!.netns.path);
    assert.is(processLess!.netns.inode, inode);
    const netns = records.find(record => record.type === `netns` && record.netnsInode === inode)!;
    assert.ok(netns, `process-less netns record missing`);
    assert.equal([netns.foundBy, netns.pids, netns.paths, netns.readVia, netns.complete],
      [[`bind-mount`], [], [processLess!.netns.path], `setns:${processLess!.netns.path}`, true]);
    const sockets = records.filter(record => record.type === `socket`);
    for (const conn of processLess!.connections)
      assertConnection(sockets, inode, conn, `process-less`);
  });

  test(`without the FFI the namespace is entered with nsenter, found off PATH too`, async () => {
    const inode = processLess!.netns.inode;
    const run = await runCommand([`snapshot-conns`], {tool: {syscalls: () => ({unavailable: `no FFI in this test`}), env: {...process.env, PATH: ``}}, env: {...process.env, PATH: ``}});
    const fallback = parseLines(run.stdout);
    const netns = fallback.find(record => record.type === `netns` && record.netnsInode === inode)!;
    assert.equal([netns.readVia, netns.complete], [`nsenter:${processLess!.netns.path}`, true]);
    const sockets = fallback.filter(record => record.type === `socket`);
    for (const conn of processLess!.connections)
      assertConnection(sockets, inode, conn, `process-less, nsenter`);
  });

  test(`once the handed-over sockets are closed, the pair is no longer ESTABLISHED there`, async () => {
    const [conn] = processLess!.connections;
    processLess!.release();
    // Closing is asynchronous in the kernel only as far as FIN/ACK go; give it a moment.
    let established: Rec | undefined;
    for (let attempt = 0; attempt < 20; attempt++) {
      const run = await runCommand([`snapshot-conns`]);
      const sockets = parseLines(run.stdout).filter(record => record.type === `socket` && record.netnsInode === processLess!.netns.inode);
      established = sockets.find(socket => socket.lport === conn.client.port && socket.state === `ESTABLISHED`);
      if (!established && !sockets.some(socket => socket.state === `LISTEN` && socket.lport === conn.listener!.port))
        break;
      await new Promise(resolve => setTimeout(resolve, 100));
    }
    assert.is(established, undefined);
  });
}

test.run();
