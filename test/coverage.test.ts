// Issue 15 without privileges: the catalogue's layouts and selection, the BTF reader on the
// committed test object's .BTF section, key/value decoding of the new kinds, and the rules that
// judge them (pid_fd, goroutine keys, pointer keys judged by their value, age races).
import {readFileSync} from 'node:fs';
import {test} from 'uvu';
import * as assert from 'uvu/assert';
import {BtfError, findConnTuple, findFields, isConnTuple, mapTypesByName, parseBtf, resolveType, sizeOfType} from '../src/btf.ts';
import {CATALOGUE, findCatalogueMap, kernelName, layoutFor, selectCatalogue, selectionDiscovers, selectionNeedsSocketFds} from '../src/catalogue.ts';
import {ageFromBytes, decodeKey, valueTupleFromBytes} from '../src/dump/decode.ts';
import {SCHEMA_VERSION, type AnyRecord, type EntryRecord} from '../src/schema.ts';
import {judgeEntry} from '../src/validate/rules.ts';
import {SnapshotIndex} from '../src/validate/snapshotIndex.ts';
import {connTupleBytes} from './helpers/bpf.ts';
import {runCommand} from './helpers/cli.ts';
import {mapRecord, tupleKey, verdict} from './helpers/records.ts';
import {BTF_OBJECT, elfSection} from './fixtures/bpf/maps.ts';

test(`every catalogue map has a unique kernel name and cites its source`, () => {
  const names = CATALOGUE.map(map => kernelName(map.name));
  assert.is(new Set(names).size, names.length, names.join(` `));
  for (const map of CATALOGUE) {
    assert.ok(map.source.length > 10, `${map.name} cites where its layout was read`);
    for (const layout of [map, ...(map.older ?? [])])
      assert.ok(layout.source.length > 10, `${map.name}: every layout cites its source`);
  }
  // The candidates are all in (or deliberately out, with a reason: NOT_CATALOGUED).
  for (const name of [
    `http2_remainder`, `kafka_tcp_seq`, `java_tls_connections`, `mongo_request_id`, `tuple_by_pid_fd`, `sockfd_lookup_args`,
    `ssl_certs_statem_args`, `ssl_certs_i2d_X509_args`, `go_tls_read_args`, `go_tls_write_args`, `ssl_sock_by_ctx`,
    `conn_tup_by_go_tls_conn`, `http2_iterations`, `tls_http2_iterations`, `kprobe_http2_iterations`,
  ])
    assert.ok(findCatalogueMap(name), name);
});

test(`the README's map table has every catalogue map, with its source and what judges it`, () => {
  const readme = readFileSync(new URL(`../README.md`, import.meta.url), `utf8`);
  for (const map of CATALOGUE) {
    const row = readme.split(`\n`).find(line => line.startsWith(`| \`${map.name}\` |`));
    assert.ok(row, `${map.name} has a row`);
    assert.ok(row!.includes(map.source.replaceAll(`|`, `\\|`)), `${map.name}: its source is cited`);
  }
});

test(`layouts are told apart by key size`, () => {
  const goConn = findCatalogueMap(`conn_tup_by_go_`)!;
  assert.is(layoutFor(goConn, 8)?.keyKind, `pointer`);
  assert.is(layoutFor(goConn, 4)?.keySize, 4);
  assert.is(layoutFor(goConn, 16), null);
  const sslSock = findCatalogueMap(`ssl_sock_by_ctx`)!;
  assert.is(layoutFor(sslSock, 16)?.keyKind, `pid_tgid`);
  assert.is(layoutFor(sslSock, 8)?.keyKind, `pointer`);
  assert.is(layoutFor(sslSock, 8)?.judgedBy, `value`);
  const iterations = findCatalogueMap(`http2_iterations`)!;
  for (const size of [48, 64, 72, 80])
    assert.is(layoutFor(iterations, size)?.tupleOffset, 0, `${size}-byte tail-call key`);
  assert.is(layoutFor(iterations, 40), null);
  assert.is(layoutFor(findCatalogueMap(`http_in_flight`)!, 56), null);
});

test(`--conn-tuple-only and --pid-only split the maps by what judges them`, () => {
  const sockets = selectCatalogue({connTupleOnly: true}).map(map => map.name);
  const processes = selectCatalogue({pidOnly: true}).map(map => map.name);
  assert.is(sockets.length + processes.length, CATALOGUE.length);
  assert.ok(sockets.includes(`conn_tup_by_go_tls_conn`) && sockets.includes(`http2_iterations`) && sockets.includes(`connection_states`));
  for (const name of [`tuple_by_pid_fd`, `go_tls_read_args`, `ssl_sock_by_ctx`, `sockfd_lookup_args`, `ssl_read_args`])
    assert.ok(processes.includes(name), name);
  assert.ok(selectionDiscovers({}) && selectionDiscovers({connTupleOnly: true}));
  assert.not.ok(selectionDiscovers({pidOnly: true}) || selectionDiscovers({names: [`http_in_flight`]}));
  assert.ok(selectionNeedsSocketFds({}) && selectionNeedsSocketFds({names: [`tuple_by_pid_fd`]}));
  assert.not.ok(selectionNeedsSocketFds({connTupleOnly: true}));
});

test(`BTF: the test object's raw .BTF section is read, conn_tuple_t found by shape and nested`, () => {
  const btf = parseBtf(elfSection(readFileSync(BTF_OBJECT), `.BTF`));
  const proto = mapTypesByName(btf, `connection_prot`)!;
  assert.ok(proto, `connection_protocol found by its 15-character name in .maps`);
  assert.is(proto.name, `connection_protocol`);
  assert.ok(isConnTuple(btf, proto.key));
  assert.is(sizeOfType(btf, proto.key), 48);
  const dynamic = mapTypesByName(btf, `http2_dynamic_t`)!;
  assert.is(findConnTuple(btf, dynamic.key), 8);
  assert.is(findFields(btf, dynamic.key, [`index`, `pid`]).map(f => `${f.name}@${f.offset}`).join(), `index@0`, `a pid inside the tuple is not the key's`);
  const kafka = mapTypesByName(btf, `kafka_in_flight`)!;
  assert.is(findConnTuple(btf, kafka.key), 0);
  assert.is(resolveType(btf, kafka.key)?.kind, `STRUCT`);
  assert.is(findConnTuple(btf, mapTypesByName(btf, `ssl_ctx_by_pid_`)!.key), null);
  assert.throws(() => parseBtf(new Uint8Array(30)), (err: unknown) => err instanceof BtfError && /magic/.test(String(err)));
});

test(`new key kinds decode: pid_fd, pid + goroutine (either order), pointers of 8 and 4 bytes`, () => {
  const key = Buffer.alloc(16);
  key.writeUInt32LE(4242, 0);
  key.writeBigInt64LE(7n, 8);
  const goroutine = findCatalogueMap(`go_tls_read_args`)!;
  assert.equal(decodeKey(goroutine, key, 16), {kind: `pid_goroutine`, pid: 4242, goroutineId: `7`});
  // The older layout (goroutine first), as BTF reports it: the same bytes read another way round.
  assert.equal(decodeKey({...goroutine, pidOffset: 8, goroutineOffset: 0}, key, 16), {kind: `pid_goroutine`, pid: 7, goroutineId: `4242`});
  key.writeBigInt64LE(-2n, 8);
  assert.is((decodeKey(goroutine, key, 16) as {goroutineId: string}).goroutineId, `-2`);
  const pidFd = Buffer.from([0x39, 0x30, 0, 0, 7, 0, 0, 0]);
  assert.equal(decodeKey(findCatalogueMap(`tuple_by_pid_fd`)!, pidFd, 8), {kind: `pid_fd`, pid: 12345, fd: 7});
  const goConn = findCatalogueMap(`conn_tup_by_go_tls_conn`)!;
  assert.equal(decodeKey(goConn, Buffer.from(`efbeadde55550000`, `hex`), 8), {kind: `pointer`, pointer: `0x00005555deadbeef`});
  assert.equal(decodeKey(layoutFor(goConn, 4)!, Buffer.from(`efbeadde`, `hex`), 4), {kind: `pointer`, pointer: `0xdeadbeef`});
  const ctxKey = Buffer.alloc(16);
  ctxKey.writeBigUInt64LE((77n << 32n) | 78n, 0);
  ctxKey.writeBigUInt64LE(0x7f00aa00n, 8);
  assert.equal(decodeKey(findCatalogueMap(`ssl_sock_by_ctx`)!, ctxKey, 16), {kind: `pid_tgid`, pidTgid: ((77n << 32n) | 78n).toString(), tgid: 77, tid: 78, extra: {ctx: String(0x7f00aa00)}});
});

test(`values: the tuple they hold, and the age of their newest timestamp`, () => {
  const value = Buffer.alloc(56);
  connTupleBytes({saddr: `10.0.0.1`, sport: 40000, daddr: `10.0.0.2`, dport: 443, pid: 9, netns: 5}).copy(value, 0);
  const tuple = valueTupleFromBytes(value, 56, 0)!;
  assert.equal([tuple.src, tuple.dst, tuple.pid, tuple.netns], [`10.0.0.1:40000`, `10.0.0.2:443`, 9, 5]);
  assert.is(valueTupleFromBytes(value, 40, 0), null);
  const tx = Buffer.alloc(240);
  tx.writeBigUInt64LE(1_000_000_000_000n, 0); // request_started: 1000 s after boot
  tx.writeBigUInt64LE(1_500_000_000_000n, 8); // response_last_seen: 1500 s
  const fields = findCatalogueMap(`http_in_flight`)!.ages!.bySize[240];
  assert.equal(ageFromBytes(tx, 240, fields, 3_600_000_000_000), {ageSeconds: 2100, ageField: `response_last_seen`});
  // Written while the dump ran (after the read time): 0, never negative.
  assert.equal(ageFromBytes(tx, 240, fields, 1_400_000_000_000)?.ageSeconds, 0);
  assert.is(ageFromBytes(Buffer.alloc(240), 240, fields, 5), null);
  assert.is(findCatalogueMap(`connection_protocol`)!.ages!.bySize[16][0][1], 8);
});

// --- rules ---------------------------------------------------------------------------------

const NS = 4026531840;

function index(records: Array<Record<string, unknown>>): SnapshotIndex {
  const built = new SnapshotIndex();
  for (const record of records)
    built.add({v: SCHEMA_VERSION, ...record} as unknown as AnyRecord);
  return built;
}

const snapshotRecords = (monotonicNs: string) => [
  {type: `netns`, netnsInode: NS, foundBy: [`process`], pids: [1], paths: [], readVia: `proc-pid:1`, complete: true},
  {type: `socket`, netnsInode: NS, proto: `tcp`, family: `v4`, listedFamily: `v4`, laddr: `10.0.0.1`, lport: 40000, raddr: `10.0.0.2`, rport: 443, state: `ESTABLISHED`, inode: 555, uid: 0},
  {type: `socket`, netnsInode: NS, proto: `tcp`, family: `v4`, listedFamily: `v4`, laddr: `10.0.0.1`, lport: 40001, raddr: `10.0.0.2`, rport: 443, state: `ESTABLISHED`, inode: 556, uid: 0},
  {type: `process`, pid: 100, tids: [100, 101], state: `S`, startTime: 1, comm: `client`, netnsInode: NS, socketFds: [[3, 555], [4, 556]]},
  {type: `process`, pid: 200, tids: [200], state: `S`, startTime: 1, comm: `nofds`, netnsInode: NS},
  {type: `snapshot`, of: `conns`, procRoot: `/proc`, time: ``, timeMs: 0, monotonicNs, count: 2, complete: true},
  {type: `snapshot`, of: `pids`, procRoot: `/proc`, time: ``, timeMs: 0, monotonicNs, count: 2, complete: true},
];

function entry(map: string, key: EntryRecord[`key`], more: Partial<EntryRecord> = {}): EntryRecord {
  return {type: `entry`, v: SCHEMA_VERSION, mapId: 1, map, keyHex: `00`, key, ...more};
}

const tupleOf = (sport: number) => valueTupleFromBytes(connTupleBytes({saddr: `10.0.0.1`, sport, daddr: `10.0.0.2`, dport: 443, netns: NS, pid: 100}), 48, 0)!;

test(`pid_fd keys: the fd must be a socket, and the socket of the tuple in the value`, () => {
  const snap = index(snapshotRecords(`1000`));
  const judge = (pid: number, fd: number, sport?: number) =>
    judgeEntry(entry(`tuple_by_pid_fd`, {kind: `pid_fd`, pid, fd}, sport === undefined ? {} : {valueTuple: tupleOf(sport)}), snap);
  assert.equal([judge(100, 3, 40000).status, judge(100, 3, 40000).reason, judge(100, 3, 40000).match?.socket?.inode], [`alive`, `fd_socket`, 555]);
  assert.equal([judge(100, 3).status, judge(100, 3).reason], [`alive`, `fd_socket`]);
  assert.equal([judge(100, 9, 40000).status, judge(100, 9, 40000).reason], [`leaked`, `fd_closed`]);
  // fd 4 is a socket, but not the one whose tuple the entry holds: the fd number was reused.
  assert.equal([judge(100, 4, 40000).status, judge(100, 4, 40000).reason], [`leaked`, `fd_reused`]);
  // fd 3 is a socket, the tuple's connection is gone: reused too.
  assert.equal([judge(100, 3, 50000).status, judge(100, 3, 50000).reason], [`leaked`, `fd_reused`]);
  assert.equal([judge(300, 3).status, judge(300, 3).reason], [`leaked`, `process_gone`]);
  // No fd list for the process (snapshot-pids without --socket-fds): no evidence, no verdict.
  assert.equal([judge(200, 3).status, judge(200, 3).reason], [`unknown`, `no_fd_snapshot`]);
});

test(`goroutine keys need the process; pointer keys are judged by the tuple in their value`, () => {
  const snap = index(snapshotRecords(`1000`));
  assert.is(judgeEntry(entry(`go_tls_read_args`, {kind: `pid_goroutine`, pid: 100, goroutineId: `7`}), snap).reason, `process_alive`);
  assert.is(judgeEntry(entry(`go_tls_read_args`, {kind: `pid_goroutine`, pid: 300, goroutineId: `7`}), snap).reason, `process_gone`);
  const pointer = {kind: `pointer`, pointer: `0x1`} as const;
  assert.is(judgeEntry(entry(`conn_tup_by_go_tls_conn`, pointer, {valueTuple: tupleOf(40000)}), snap).reason, `established`);
  assert.is(judgeEntry(entry(`conn_tup_by_go_tls_conn`, pointer, {valueTuple: tupleOf(50000)}), snap).reason, `no_connection`);
  assert.is(judgeEntry(entry(`conn_tup_by_go_tls_conn`, pointer, {valueTuple: {...tupleOf(50000), sport: 0}}), snap).reason, `incomplete_value_tuple`);
  // ssl_sock_by_ctx's newer key: the process that set the context up (as the agent's cleaner judges it).
  const ctxKey = {kind: `pid_tgid`, pidTgid: `0`, tgid: 100, tid: 999, extra: {ctx: `1`}} as const;
  assert.is(judgeEntry(entry(`ssl_sock_by_ctx`, ctxKey), snap).reason, `process_alive`);
});

test(`an entry dated after the snapshot it is judged against is a race, not a leak`, () => {
  // Snapshot at 1000 s; map read at 1010 s.
  const snap = index(snapshotRecords(`1000000000000`));
  const readNs = 1_010_000_000_000;
  const gone = {...tupleOf(50000), netns: 0, pid: 0};
  const old = judgeEntry(entry(`connection_protocol`, gone, {ageSeconds: 3600, ageField: `updated`}), snap, undefined, readNs);
  assert.equal([old.status, old.reason], [`leaked`, `no_connection_any_namespace`]);
  const fresh = judgeEntry(entry(`connection_protocol`, gone, {ageSeconds: 5, ageField: `updated`}), snap, undefined, readNs);
  assert.equal([fresh.status, fresh.reason], [`unknown`, `updated_after_snapshot`]);
  assert.equal(defined(fresh), {status: `unknown`, reason: `updated_after_snapshot`});
  // The judgement's owner stays with it.
  const owned = judgeEntry(entry(`connection_protocol`, {...gone, pid: 100}, {ageSeconds: 5, ageField: `updated`}), snap, undefined, readNs);
  assert.equal(defined(owned), {status: `unknown`, reason: `updated_after_snapshot`, owner: {pid: 100, comm: `client`}});
  // Alive stays alive; without the read time there is no comparison.
  assert.is(judgeEntry(entry(`connection_protocol`, tupleOf(40000), {ageSeconds: 5}), snap, undefined, readNs).status, `alive`);
  assert.is(judgeEntry(entry(`connection_protocol`, gone, {ageSeconds: 5}), snap).status, `leaked`);
});

test(`report: per map, the age histogram of leaked entries and how many the agent's cleaner should have removed`, async () => {
  const records: Array<object> = [mapRecord(7, `http_in_flight`, {maxEntries: 1000}), mapRecord(8, `connection_protocol`, {maxEntries: 1000}), mapRecord(9, `redis_key_in_flight`)];
  // http_in_flight: cleaner TTL 30 s + interval 300 s = 330 s allowed.
  const ages = [5, 45, 200, 400, 4000, 90_000, 200_000];
  ages.forEach((age, i) => records.push(verdict(7, `http_in_flight`, tupleKey({saddr: `10.0.0.1`, sport: 1000 + i, daddr: `10.0.0.2`, dport: 80}), `leaked`, `no_connection`, {ageSeconds: age, ageField: `request_started`})));
  records.push(verdict(7, `http_in_flight`, tupleKey({saddr: `10.0.0.1`, sport: 999, daddr: `10.0.0.2`, dport: 80}), `alive`, `established`, {ageSeconds: 1e6, ageField: `request_started`}));
  // connection_protocol: 180 s TTL + 65 s interval; its one leak is younger than that.
  records.push(verdict(8, `connection_protocol`, tupleKey({saddr: `10.0.0.1`, sport: 2000, daddr: `10.0.0.2`, dport: 80}), `leaked`, `no_connection`, {ageSeconds: 100, ageField: `updated`}));
  // Undated leaks: no section.
  records.push(verdict(9, `redis_key_in_flight`, tupleKey({saddr: `10.0.0.1`, sport: 3000, daddr: `10.0.0.2`, dport: 80}), `leaked`, `no_connection`));
  const stdin = records.map(record => JSON.stringify(record)).join(`\n`) + `\n`;
  const text = await runCommand([`report`], {stdin});
  assert.match(text.stdout, /ages of 7 dated leaked entries: < 1 min 2, < 10 min 2, < 1 h 0, < 1 day 1, older 2; oldest 2\.3 d/);
  assert.match(text.stdout, /cleaner is not keeping up: 4 of 7 dated leaked entries are older than 330 s \(HTTP idle-connection TTL: entries older than 30 s, every 300 s: TTL plus one interval\)/);
  assert.match(text.stdout, /ages of 1 dated leaked entry: < 1 min 0, < 10 min 1[^\n]*\n\s*none older than the agent's cleaner allows \(connection_protocol cleaner/);
  const json = JSON.parse((await runCommand([`report`, `--format`, `json`], {stdin})).stdout);
  const byName = new Map<string, {sections: {ages?: {dated: number, buckets: Array<{count: number}>, cleaner: {olderThanAllowed: number, allowanceSeconds: number} | null}}}>(json.maps.map((map: {map: string}) => [map.map, map]));
  const http = byName.get(`http_in_flight`)!.sections.ages!;
  assert.equal([http.dated, http.buckets.map(b => b.count), http.cleaner!.allowanceSeconds, http.cleaner!.olderThanAllowed], [7, [2, 2, 0, 1, 2], 330, 4]);
  assert.is(byName.get(`redis_key_in_flight`)!.sections.ages, undefined);
  const md = (await runCommand([`report`, `--format`, `markdown`], {stdin})).stdout;
  assert.match(md, /\| leaked \| 2 \| 2 \| 0 \| 1 \| 2 \|/);
  assert.match(md, /\*\*Cleaner is not keeping up:\*\* 4 of 7/);
});

test.run();

/** A judgement's fields that are set (every judgement has them all, undefined when it has none). */
function defined(judgement: object): object {
  return Object.fromEntries(Object.entries(judgement).filter(([, value]) => value !== undefined));
}
