// Issue 15 on real maps (root + BPF): the test object's BTF-typed maps with the newer layouts,
// filled with entries of live and dead connections, processes and sockets, and values dated by
// the test (now, and H seconds earlier: an hour when the machine has been up that long). Every
// entry's truth is arranged here. Through both BTF paths: the kernel backend (raw BTF blob) and
// bpftool (`bpftool -j btf dump`).
import {spawnSync} from 'node:child_process';
import {mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {PassThrough} from 'node:stream';
import {test} from 'uvu';
import * as assert from 'uvu/assert';
import {defaultToolContext, type ToolContext} from '../src/context.ts';
import {dumpMaps} from '../src/dump/index.ts';
import type {AnyRecord} from '../src/schema.ts';
import {snapshotConns} from '../src/snapshot/conns.ts';
import {snapshotPids} from '../src/snapshot/pids.ts';
import {validate} from '../src/validate/index.ts';
import {BpfTestSet, connTupleBytes, type TestMap} from './helpers/bpf.ts';
import {parseLines, runCommand, withoutHeader} from './helpers/cli.ts';
import {cleanupNetns, startSocketHolder, type HeldConnection, type SocketHolder} from './helpers/netns.ts';
import {bpfUnavailable, requirePrivileges} from './helpers/privileges.ts';
import {loadBtfMaps} from './fixtures/bpf/maps.ts';
import {captureScript} from '../src/capture/script.ts';
import {beforeAll} from './helpers/setUp.ts';

const runs = requirePrivileges(`coverage live`, bpfUnavailable());

let set: BpfTestSet;
let holder: SocketHolder;
let btf: Map<string, TestMap>;
let sslSockOld: TestMap;
/** keyHex → [map, status, reason] the verdict must have. */
const expected = new Map<string, [string, string, string]>();
/** keyHex → the age the entry must carry (seconds), and its field. */
const dated = new Map<string, [number, string]>();
let snapshot: Array<AnyRecord> = [];
let filledAtNs = 0n;
/** How far back "an hour ago" is: an hour when the machine has been up longer, else what uptime allows. */
let olderBy = 3600;

const quiet = (): ToolContext => defaultToolContext(new PassThrough());
const u32 = (n: number) => { const b = Buffer.alloc(4); b.writeUInt32LE(n >>> 0); return b; };
const u64 = (n: bigint) => { const b = Buffer.alloc(8); b.writeBigUInt64LE(n); return b; };

function reapedPid(): number {
  return Number(spawnSync(`sh`, [`-c`, `echo $$`], {encoding: `utf8`}).stdout.trim());
}

/** The fd of `pid` whose socket inode is `inode`. */
function fdOfInode(pid: number, inode: number): number {
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      if (readlinkSync(`/proc/${pid}/fd/${fd}`) === `socket:[${inode}]`)
        return Number(fd);
    } catch {
      // closed meanwhile
    }
  }
  throw new Error(`no fd of ${pid} holds socket ${inode}`);
}

async function collect(records: AsyncIterable<unknown>): Promise<Array<AnyRecord>> {
  const out: Array<AnyRecord> = [];
  for await (const record of records)
    out.push(record as AnyRecord);
  return out;
}

async function* from<T>(items: ReadonlyArray<T>): AsyncGenerator<T> {
  yield* items;
}

const tupleOf = (c: HeldConnection, netns = 0, pid = 0) =>
  connTupleBytes({saddr: c.client.address, sport: c.client.port, daddr: c.server.address, dport: c.server.port, netns, pid});
const closed = (port: number) => connTupleBytes({saddr: `127.0.0.1`, sport: port, daddr: `127.0.0.1`, dport: 9, netns: 0, pid: 0});

beforeAll(test, async () => {
  if (!runs)
    return;
  set = new BpfTestSet(`coverage`);
  holder = await startSocketHolder();
  btf = loadBtfMaps(set);
  const uptime = Number(readFileSync(`/proc/uptime`, `utf8`).split(` `)[0]);
  olderBy = uptime > 3700 ? 3600 : Math.max(1, Math.floor(uptime) - 30);
  const live = holder.connections.find(c => c.proto === `tcp` && c.kind === `v4`)!;
  const liveTuple = tupleOf(live);
  const dead = reapedPid();
  const expect = (map: string, key: Buffer, status: string, reason: string) => expected.set(`${map}:${key.toString(`hex`)}`, [map, status, reason]);

  // Snapshot first (as scan does), then fill: every value is dated after the snapshot started.
  // The entries dated "now" are then races (updated_after_snapshot), the older ones are judged.
  snapshot = [...await collect(snapshotConns(quiet())), ...await collect(snapshotPids(quiet(), {socketFds: true}))];
  const snapshotNs = BigInt((snapshot.find(r => r.type === `snapshot` && r.of === `conns`) as {monotonicNs: string}).monotonicNs);
  filledAtNs = process.hrtime.bigint();
  const now = filledAtNs;
  const old = now - BigInt(olderBy) * 1_000_000_000n;
  assert.ok(old < snapshotNs && now > snapshotNs, `the old date is before the snapshot, now after it`);

  // connection_protocol: updated at offset 8.
  const proto = btf.get(`connection_protocol`)!;
  const wrapper = (ns: bigint) => Buffer.concat([Buffer.from([0, 0x41, 0, 1]), Buffer.alloc(4), u64(ns)]);
  set.fill(proto, [[liveTuple, wrapper(now)], [closed(1), wrapper(old)], [closed(2), wrapper(now)], [closed(3), wrapper(0n)]]);
  expect(`connection_protocol`, liveTuple, `alive`, `established`);
  expect(`connection_protocol`, closed(1), `leaked`, `no_connection_any_namespace`);
  expect(`connection_protocol`, closed(2), `unknown`, `updated_after_snapshot`);
  expect(`connection_protocol`, closed(3), `leaked`, `no_connection_any_namespace`);
  dated.set(`connection_protocol:${liveTuple.toString(`hex`)}`, [0, `updated`]);
  dated.set(`connection_protocol:${closed(1).toString(`hex`)}`, [olderBy, `updated`]);

  // http_in_flight: the newest of request_started / response_last_seen.
  const http = btf.get(`http_in_flight`)!;
  const tx = (started: bigint, seen: bigint) => { const b = Buffer.alloc(240); b.writeBigUInt64LE(started, 0); b.writeBigUInt64LE(seen, 8); return b; };
  set.fill(http, [[closed(4), tx(old - 5_000_000_000n, old)]]);
  expect(`http_in_flight`, closed(4), `leaked`, `no_connection_any_namespace`);
  dated.set(`http_in_flight:${closed(4).toString(`hex`)}`, [olderBy, `response_last_seen`]);

  // tuple_by_pid_fd: the holder's client socket by its fd (and that socket's tuple), an fd it
  // does not have, the fd of its other socket with the first one's tuple (reused), a dead process.
  const inodes = snapshot.filter(r => r.type === `socket` && r.laddr === live.client.address && r.lport === live.client.port && r.rport === live.server.port) as Array<{inode: number}>;
  const clientFd = fdOfInode(holder.pid, inodes[0].inode);
  const serverInode = (snapshot.find(r => r.type === `socket` && r.lport === live.server.port && r.rport === live.client.port) as {inode: number}).inode;
  const serverFd = fdOfInode(holder.pid, serverInode);
  const socketTuple = connTupleBytes({saddr: live.client.address, sport: live.client.port, daddr: live.server.address, dport: live.server.port, netns: holder.netnsInode, pid: holder.pid});
  const pidFd = (pid: number, fd: number) => Buffer.concat([u32(pid), u32(fd)]);
  const byFd = btf.get(`tuple_by_pid_fd`)!;
  set.fill(byFd, [[pidFd(holder.pid, clientFd), socketTuple], [pidFd(holder.pid, 999), socketTuple], [pidFd(holder.pid, serverFd), socketTuple], [pidFd(dead, 3), socketTuple]]);
  expect(`tuple_by_pid_fd`, pidFd(holder.pid, clientFd), `alive`, `fd_socket`);
  expect(`tuple_by_pid_fd`, pidFd(holder.pid, 999), `leaked`, `fd_closed`);
  expect(`tuple_by_pid_fd`, pidFd(holder.pid, serverFd), `leaked`, `fd_reused`);
  expect(`tuple_by_pid_fd`, pidFd(dead, 3), `leaked`, `process_gone`);

  // go_tls_read_args in the older key order {s64 goroutine_id; u32 pid}: BTF says where pid is.
  const goKey = (goroutine: bigint, pid: number) => { const b = Buffer.alloc(16); b.writeBigInt64LE(goroutine, 0); b.writeUInt32LE(pid, 8); return b; };
  set.fill(btf.get(`go_tls_read_args`)!, [[goKey(5n, holder.pid), Buffer.alloc(16)], [goKey(6n, dead), Buffer.alloc(16)]]);
  expect(`go_tls_read_args`, goKey(5n, holder.pid), `alive`, `process_alive`);
  expect(`go_tls_read_args`, goKey(6n, dead), `leaked`, `process_gone`);

  // conn_tup_by_go_tls_conn: pointer keys, judged by the tuple in the value.
  const goConn = btf.get(`conn_tup_by_go_tls_conn`)!;
  set.fill(goConn, [[u64(0x5555_0000_1000n), socketTuple], [u64(0x5555_0000_2000n), closed(5)]]);
  expect(`conn_tup_by_go_tls_conn`, u64(0x5555_0000_1000n), `alive`, `established`);
  expect(`conn_tup_by_go_tls_conn`, u64(0x5555_0000_2000n), `leaked`, `no_connection_any_namespace`);

  // A map no catalogue knows: conn_tuple_t at offset 8 of its key, found through BTF.
  const future = btf.get(`future_conn_map`)!;
  const futureKey = (tuple: Buffer) => Buffer.concat([u32(1), u32(2), tuple]);
  const futureValue = (ns: bigint) => Buffer.concat([u64(ns), u32(1), Buffer.alloc(4)]);
  set.fill(future, [[futureKey(liveTuple), futureValue(old)], [futureKey(closed(6)), futureValue(old)]]);
  expect(`future_conn_map`, futureKey(liveTuple), `alive`, `established`);
  expect(`future_conn_map`, futureKey(closed(6)), `leaked`, `no_connection_any_namespace`);
  dated.set(`future_conn_map:${futureKey(closed(6)).toString(`hex`)}`, [olderBy, `request_started`]);

  // ssl_sock_by_ctx's older layout without BTF: an SSL* key, ssl_sock_t {tup; fd} value.
  sslSockOld = set.createMap({name: `ssl_sock_by_ctx`, keySize: 8, valueSize: 56});
  set.fill(sslSockOld, [[u64(0x7f00_0000_0010n), Buffer.concat([closed(7), u32(5), Buffer.alloc(4)])]]);
  expect(`ssl_sock_by_ctx`, u64(0x7f00_0000_0010n), `leaked`, `no_connection_any_namespace`);
});

test.after(async () => {
  await holder?.stop();
  cleanupNetns();
  set?.cleanup();
});

function mapIds(): Array<number> {
  return [...[`connection_protocol`, `http_in_flight`, `tuple_by_pid_fd`, `go_tls_read_args`, `conn_tup_by_go_tls_conn`, `future_conn_map`].map(name => btf.get(name)!.id), sslSockOld.id];
}

for (const backend of [`kernel`, `bpftool`] as const) {
  test(`${backend}: new layouts decoded, the unknown map discovered, entries dated and judged as arranged`, async () => {
    if (!runs)
      return;
    const ctx = quiet();
    const dump = await collect(dumpMaps(ctx, {backend, mapIds: mapIds(), download: false}));
    const maps = new Map(dump.filter(r => r.type === `map`).map(r => [r.mapId, r] as const));
    const future = maps.get(btf.get(`future_conn_map`)!.id)!;
    assert.equal([future.catalogName, future.discovered, future.keyKind, future.tupleOffset], [`future_conn_map`, true, `conn_tuple`, 8]);
    const go = maps.get(btf.get(`go_tls_read_args`)!.id)!;
    assert.is(go.assumption, undefined, `BTF confirmed the goroutine key's layout`);
    assert.equal(maps.get(btf.get(`connection_protocol`)!.id)!.ageFields, [`updated@8`]);
    assert.equal(maps.get(btf.get(`http_in_flight`)!.id)!.ageFields, [`request_started@0`, `response_last_seen@8`]);
    assert.is(maps.get(sslSockOld.id)!.judgedBy, `value`);
    assert.is(maps.get(btf.get(`conn_tup_by_go_tls_conn`)!.id)!.judgedBy, `value`);
    const goKeys = dump.filter(r => r.type === `entry` && r.mapId === go.mapId).map(r => ((r as {key: {pid: number}}).key).pid).sort((a, b) => a - b);
    assert.ok(goKeys.includes(holder.pid), `pid read at offset 8, where BTF says it is`);

    // Ages: measured from the map's read time; the two dates the test wrote are olderBy apart.
    const readNs = BigInt(maps.get(btf.get(`connection_protocol`)!.id)!.monotonicNs!);
    const sinceFill = Number(readNs - filledAtNs) / 1e9;
    assert.ok(sinceFill >= 0, `read after the fill`);
    for (const [id, [age, field]] of dated) {
      const entry = dump.find(r => r.type === `entry` && `${r.map}:${r.keyHex}` === id) as {ageField?: string, ageSeconds?: number} | undefined;
      assert.ok(entry, `${id} dumped`);
      assert.is(entry!.ageField, field, id);
      assert.ok(Math.abs(entry!.ageSeconds! - (age + sinceFill)) < 1, `${id}: age ${entry!.ageSeconds} s, expected ${age} s + ${sinceFill.toFixed(3)} s since the fill`);
    }
    assert.not.ok(dump.some(r => r.type === `entry` && r.keyHex === closed(3).toString(`hex`) && r.ageSeconds !== undefined), `a zero timestamp dates nothing`);

    const verdicts = (await collect(validate(ctx, from(dump), {snapshots: from(snapshot)}))).filter(r => r.type === `verdict`);
    for (const [id, [map, status, reason]] of expected) {
      const verdict = verdicts.find(v => `${v.map}:${v.keyHex}` === id);
      assert.ok(verdict, `${id}: a verdict`);
      assert.equal([verdict!.status, verdict!.reason], [status, reason], `${map} ${verdict!.keyHex}`);
    }
    assert.is(verdicts.length, expected.size);
    for (const verdict of verdicts.filter(v => v.map === `conn_tup_by_go_tls_conn` || v.map === `ssl_sock_by_ctx`))
      assert.is(verdict.judgedBy, `value`);
    const aged = verdicts.find(v => v.map === `http_in_flight`)!;
    assert.is(aged.ageField, `response_last_seen`);
  });
}

test(`dump-maps --from a capture dates entries against the capture's clock, not now`, async () => {
  if (!runs)
    return;
  const dir = mkdtempSync(join(tmpdir(), `usmld-capture-`));
  try {
    mkdirSync(join(dir, `maps`));
    mkdirSync(join(dir, `meta`));
    const id = btf.get(`connection_protocol`)!.id;
    const bpftool = (args: Array<string>) => spawnSync(`bpftool`, args, {encoding: `utf8`}).stdout;
    writeFileSync(join(dir, `maps`, `list.json`), JSON.stringify([JSON.parse(bpftool([`-j`, `map`, `show`, `id`, String(id)]))]));
    writeFileSync(join(dir, `maps`, `dump-${id}.json`), bpftool([`-j`, `map`, `dump`, `id`, String(id)]));
    writeFileSync(join(dir, `meta`, `backend`), `bpftool\n`);
    // The capture's clock: 100 s after the fill.
    const clockNs = filledAtNs + 100_000_000_000n;
    writeFileSync(join(dir, `meta`, `monotonic`), `${clockNs} timer_list\n`);
    const run = await runCommand([`dump-maps`, `--from`, dir]);
    assert.is(run.code, 0, run.stderr);
    const records = withoutHeader(parseLines(run.stdout));
    assert.is(records.find(r => r.type === `map`)!.monotonicNs, clockNs.toString());
    const old = records.find(r => r.type === `entry` && r.keyHex === closed(1).toString(`hex`))!;
    assert.ok(Math.abs(old.ageSeconds - (olderBy + 100)) < 0.001, `age ${old.ageSeconds}, expected ${olderBy + 100}`);
    const fresh = records.find(r => r.type === `entry` && r.keyHex === closed(2).toString(`hex`))!;
    assert.ok(Math.abs(fresh.ageSeconds - 100) < 0.001);
  } finally {
    rmSync(dir, {recursive: true, force: true});
  }
});

test(`the capture script saves the BTF and the maps sharing it: a replay discovers, dates and reads layouts as live`, async () => {
  if (!runs)
    return;
  const dir = mkdtempSync(join(tmpdir(), `usmld-capture-`));
  try {
    const script = join(dir, `capture.sh`);
    writeFileSync(script, captureScript());
    const out = join(dir, `out`);
    // -i: only this test's maps (other runs have maps of the same names); future_conn_map is not a
    // catalogue name: the script dumps it because it shares the USM maps' BTF object.
    const ids = mapIds().join(`,`);
    const run = spawnSync(`dash`, [script, `-o`, out, `-d`, `0`, `-b`, `bpftool`, `-i`, ids], {encoding: `utf8`, timeout: 120_000});
    assert.is(run.status, 0, run.stderr);
    const saved = readdirSync(join(out, `maps`));
    assert.ok(saved.some(name => /^btf-\d+\.json$/.test(name)), saved.join(` `));
    assert.ok(saved.includes(`dump-${btf.get(`future_conn_map`)!.id}.json`), `the shared-BTF map is dumped`);
    const replay = await runCommand([`dump-maps`, `--from`, out]);
    assert.is(replay.code, 0, replay.stderr);
    const records = withoutHeader(parseLines(replay.stdout));
    const maps = new Map(records.filter(r => r.type === `map`).map(r => [r.mapId, r] as const));
    assert.equal(maps.get(btf.get(`future_conn_map`)!.id)?.discovered, true);
    assert.is(maps.get(btf.get(`future_conn_map`)!.id)?.tupleOffset, 8);
    assert.is(maps.get(btf.get(`go_tls_read_args`)!.id)?.assumption, undefined);
    const clock = BigInt(maps.get(btf.get(`connection_protocol`)!.id)!.monotonicNs);
    const old = records.find(r => r.type === `entry` && r.keyHex === closed(1).toString(`hex`))!;
    assert.ok(Math.abs(old.ageSeconds - (olderBy + Number(clock - filledAtNs) / 1e9)) < 0.001, `dated against the capture's clock`);
  } finally {
    rmSync(dir, {recursive: true, force: true});
  }
});

test.run();
