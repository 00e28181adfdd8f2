// Every validate rule on hand-made records: the truth of each entry is spelled out in the records
// themselves (which sockets, namespaces and processes exist), so each verdict is known in advance.
import {mkdtempSync, readdirSync, rmSync, writeFileSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {test} from 'uvu';
import * as assert from 'uvu/assert';
import {defaultToolContext, type ToolContext} from '../src/context.ts';
import {ExitCode} from '../src/exitCodes.ts';
import {SCHEMA_VERSION, checkRecord, type AnyRecord, type EntryRecord, type Match, type SocketState} from '../src/schema.ts';
import {makeHeader} from '../src/header.ts';
import {validate} from '../src/validate/index.ts';
import {SocketTable, type Found} from '../src/validate/snapshotIndex.ts';
import {PassThrough} from 'node:stream';
import {parseLines, runCommand, withoutHeader} from './helpers/cli.ts';
import {netns as netnsRecord, pidEntry, processRecord, snapshotCloser, socketRecord, tupleEntry} from './helpers/records.ts';

const NS_A = 4026531840;
const NS_B = 4026532001;
const NS_C = 4026532002;

const socket = socketRecord;
const closer = snapshotCloser;
const netns = (inode: number, complete = true) => netnsRecord(inode, [1], complete ? {} : {readVia: null, complete: false});
const process = (pid: number, tids: Array<number>, state = `S`, comm = `proc${pid}`) => processRecord(pid, comm, {tids, state, netnsInode: NS_A});

function quietContext(warnings: Array<string> = []): ToolContext {
  const ctx = defaultToolContext(new PassThrough());
  ctx.log = {...ctx.log, warn: message => warnings.push(message), info: () => {}, debug: () => {}};
  return ctx;
}

async function* from(records: Array<AnyRecord | EntryRecord>): AsyncGenerator<AnyRecord> {
  yield* records as Array<AnyRecord>;
}

/** Hand-made records go straight into the stage (some on purpose missing fields a reader would check). */
async function run(records: Array<object>, warnings: Array<string> = []): Promise<Array<Record<string, any>>> {
  const out: Array<Record<string, any>> = [];
  for await (const record of validate(quietContext(warnings), from(records as Array<AnyRecord>), {live: `never`}))
    out.push(record);
  for (const record of out.filter(record => record.type === `verdict` || record.type === `summary`))
    assert.is(checkRecord(record as AnyRecord), null, `output record is valid: ${JSON.stringify(record)}`);
  return out;
}

const verdicts = (records: Array<Record<string, any>>) => records.filter(record => record.type === `verdict`);

/** Judges entries against a snapshot made of `evidence` (both closers added) and returns the verdicts. */
async function judge(evidence: Array<AnyRecord>, entries: Array<EntryRecord>): Promise<Array<Record<string, any>>> {
  const out = verdicts(await run([...evidence, closer(`conns`), closer(`pids`), ...entries]));
  assert.is(out.length, entries.length);
  return out;
}

const client = socket({laddr: `10.0.0.1`, lport: 40000, raddr: `10.0.0.2`, rport: 80});
const server = socket({laddr: `10.0.0.2`, lport: 80, raddr: `10.0.0.1`, rport: 40000});

test(`a normalised tuple (client→server) matches the client's local→remote socket forward`, async () => {
  const [verdict] = await judge([netns(NS_A), client], [tupleEntry({saddr: `10.0.0.1`, sport: 40000, daddr: `10.0.0.2`, dport: 80})]);
  assert.is(verdict.status, `alive`);
  assert.is(verdict.reason, `established`);
  assert.is(verdict.match.netnsInode, NS_A);
  assert.is(verdict.match.socket.lport, 40000);
  assert.is(verdict.checks, 1);
});

test(`the same tuple matches the server's socket reversed (d→s)`, async () => {
  const [verdict] = await judge([netns(NS_A), server], [tupleEntry({saddr: `10.0.0.1`, sport: 40000, daddr: `10.0.0.2`, dport: 80})]);
  assert.is(verdict.status, `alive`);
  assert.is(verdict.reason, `established`);
  assert.is(verdict.match.socket.lport, 80);
});

test(`a tuple no socket carries is leaked: no_connection in its namespace, no_connection_any_namespace for netns 0`, async () => {
  const [inNs, anyNs] = await judge([netns(NS_A), client], [
    tupleEntry({saddr: `10.0.0.1`, sport: 40001, daddr: `10.0.0.2`, dport: 80, netns: NS_A}),
    tupleEntry({saddr: `10.0.0.1`, sport: 40001, daddr: `10.0.0.2`, dport: 80}),
  ]);
  assert.is(inNs.status, `leaked`);
  assert.is(inNs.reason, `no_connection`);
  assert.is(anyNs.status, `leaked`);
  assert.is(anyNs.reason, `no_connection_any_namespace`);
});

test(`netns 0 searches every namespace and reports where the connection was found`, async () => {
  const inB = socket({netns: NS_B, laddr: `192.168.5.1`, lport: 5432, raddr: `192.168.5.9`, rport: 50000});
  const [verdict] = await judge([netns(NS_A), netns(NS_B), netns(NS_C), client, inB],
    [tupleEntry({saddr: `192.168.5.9`, sport: 50000, daddr: `192.168.5.1`, dport: 5432})]);
  assert.is(verdict.status, `alive`);
  assert.is(verdict.reason, `established`);
  assert.is(verdict.match.netnsInode, NS_B);
});

test(`a non-zero netns is matched only in that namespace: found elsewhere only is leaked wrong_namespace`, async () => {
  const inB = socket({netns: NS_B, laddr: `10.0.0.1`, lport: 40000, raddr: `10.0.0.2`, rport: 80});
  const [wrong, right] = await judge([netns(NS_A), netns(NS_B), inB], [
    tupleEntry({saddr: `10.0.0.1`, sport: 40000, daddr: `10.0.0.2`, dport: 80, netns: NS_A}),
    tupleEntry({saddr: `10.0.0.1`, sport: 40000, daddr: `10.0.0.2`, dport: 80, netns: NS_B}),
  ]);
  assert.is(wrong.status, `leaked`);
  assert.is(wrong.reason, `wrong_namespace`);
  assert.is(wrong.match.netnsInode, NS_B);
  assert.is(right.status, `alive`);
  assert.is(right.match.netnsInode, NS_B);
});

test(`the same tuple in two namespaces: each netns finds its own`, async () => {
  const inA = socket({netns: NS_A, laddr: `10.0.0.1`, lport: 40000, raddr: `10.0.0.2`, rport: 80});
  const inB = socket({netns: NS_B, laddr: `10.0.0.1`, lport: 40000, raddr: `10.0.0.2`, rport: 80});
  const out = await judge([netns(NS_A), netns(NS_B), inA, inB], [
    tupleEntry({saddr: `10.0.0.1`, sport: 40000, daddr: `10.0.0.2`, dport: 80, netns: NS_A}),
    tupleEntry({saddr: `10.0.0.1`, sport: 40000, daddr: `10.0.0.2`, dport: 80, netns: NS_B}),
  ]);
  assert.equal(out.map(verdict => [verdict.status, verdict.match.netnsInode]), [[`alive`, NS_A], [`alive`, NS_B]]);
});

test(`a netns no snapshot knows is leaked unknown_namespace (and says where the tuple lives, if anywhere)`, async () => {
  const [verdict] = await judge([netns(NS_A), client], [tupleEntry({saddr: `10.0.0.1`, sport: 40000, daddr: `10.0.0.2`, dport: 80, netns: 12345})]);
  assert.is(verdict.status, `leaked`);
  assert.is(verdict.reason, `unknown_namespace`);
  assert.is(verdict.match.netnsInode, NS_A);
});

test(`an unreadable namespace turns a miss into unknown namespace_unreadable, never leaked`, async () => {
  const out = await judge([netns(NS_A), netns(NS_B, false), client], [
    tupleEntry({saddr: `10.9.9.9`, sport: 1, daddr: `10.0.0.2`, dport: 80, netns: NS_B}),
    tupleEntry({saddr: `10.9.9.9`, sport: 1, daddr: `10.0.0.2`, dport: 80}),
    // A miss in a readable namespace is still a leak.
    tupleEntry({saddr: `10.9.9.9`, sport: 1, daddr: `10.0.0.2`, dport: 80, netns: NS_A}),
    // A hit is a hit wherever.
    tupleEntry({saddr: `10.0.0.1`, sport: 40000, daddr: `10.0.0.2`, dport: 80}),
  ]);
  assert.equal(out.map(verdict => `${verdict.status}/${verdict.reason}`),
    [`unknown/namespace_unreadable`, `unknown/namespace_unreadable`, `leaked/no_connection`, `alive/established`]);
});

test(`listener tuples match LISTEN sockets, exact or wildcard, v4 and v6`, async () => {
  const out = await judge([
    netns(NS_A),
    socket({laddr: `10.0.0.1`, lport: 8080}),
    socket({laddr: `0.0.0.0`, lport: 9090}),
    socket({laddr: `::`, lport: 7070}),
    socket({laddr: `fd00::1`, lport: 6060}),
    socket({laddr: `0.0.0.0`, lport: 5050}),
  ], [
    tupleEntry({saddr: `10.0.0.1`, sport: 8080, daddr: `0.0.0.0`, dport: 0}),
    tupleEntry({saddr: `10.0.0.1`, sport: 9090, daddr: `0.0.0.0`, dport: 0}),
    // A `::` socket is dual-stack: it listens for IPv4 too.
    tupleEntry({saddr: `10.0.0.1`, sport: 7070, daddr: `0.0.0.0`, dport: 0}),
    tupleEntry({saddr: `fd00::1`, sport: 6060, daddr: `::`, dport: 0}),
    tupleEntry({saddr: `fd00::2`, sport: 7070, daddr: `::`, dport: 0}),
    // An IPv4 wildcard never takes IPv6.
    tupleEntry({saddr: `fd00::2`, sport: 5050, daddr: `::`, dport: 0}),
    tupleEntry({saddr: `10.0.0.1`, sport: 1111, daddr: `0.0.0.0`, dport: 0, netns: NS_A}),
  ]);
  assert.equal(out.map(verdict => `${verdict.status}/${verdict.reason}`), [
    `alive/listening`, `alive/listening_wildcard`, `alive/listening_wildcard`, `alive/listening`,
    `alive/listening_wildcard`, `leaked/no_listener`, `leaked/no_listener`,
  ]);
  assert.is(out[1].match.socket.laddr, `0.0.0.0`);
  assert.is(out[2].match.socket.laddr, `::`);
});

test(`a listening socket does not make a connection tuple alive, nor a connection a listener tuple`, async () => {
  const out = await judge([netns(NS_A), socket({laddr: `0.0.0.0`, lport: 80}), client], [
    tupleEntry({saddr: `10.0.0.7`, sport: 45000, daddr: `10.0.0.2`, dport: 80}),
    tupleEntry({saddr: `10.0.0.1`, sport: 40000, daddr: `0.0.0.0`, dport: 0}),
  ]);
  assert.equal(out.map(verdict => verdict.reason), [`no_connection_any_namespace`, `no_listener`]);
});

test(`UDP tuples match UDP sockets only: connected (established) or bound (bound)`, async () => {
  const out = await judge([
    netns(NS_A),
    socket({proto: `udp`, laddr: `0.0.0.0`, lport: 53, state: `CLOSE`}),
    socket({proto: `udp`, laddr: `10.0.0.1`, lport: 41000, raddr: `10.0.0.53`, rport: 53}),
    socket({proto: `udp`, laddr: `10.0.0.1`, lport: 5353, state: `CLOSE`}),
    client,
  ], [
    tupleEntry({saddr: `10.0.0.9`, sport: 33333, daddr: `10.0.0.1`, dport: 53, udp: true}),
    tupleEntry({saddr: `10.0.0.1`, sport: 41000, daddr: `10.0.0.53`, dport: 53, udp: true}),
    tupleEntry({saddr: `10.0.0.1`, sport: 5353, daddr: `0.0.0.0`, dport: 0, udp: true}),
    // The TCP connection exists, but this tuple says UDP.
    tupleEntry({saddr: `10.0.0.1`, sport: 40000, daddr: `10.0.0.2`, dport: 80, udp: true}),
    // And a UDP socket on port 53 does not vouch for TCP port 53.
    tupleEntry({saddr: `10.0.0.9`, sport: 33333, daddr: `10.0.0.1`, dport: 53}),
  ]);
  assert.equal(out.map(verdict => `${verdict.status}/${verdict.reason}`),
    [`alive/bound`, `alive/established`, `alive/bound`, `leaked/no_connection_any_namespace`, `leaked/no_connection_any_namespace`]);
});

test(`TIME_WAIT and other non-LISTEN states count as a connection`, async () => {
  const states: Array<SocketState> = [`TIME_WAIT`, `CLOSE_WAIT`, `FIN_WAIT2`, `SYN_SENT`, `LAST_ACK`];
  const evidence = [netns(NS_A), ...states.map((state, i) => socket({laddr: `10.0.0.1`, lport: 41000 + i, raddr: `10.0.0.2`, rport: 443, state}))];
  const out = await judge(evidence, states.map((_, i) => tupleEntry({saddr: `10.0.0.1`, sport: 41000 + i, daddr: `10.0.0.2`, dport: 443})));
  assert.equal(out.map(verdict => `${verdict.status}/${verdict.reason}/${verdict.match.socket.state}`), states.map(state => `alive/established/${state}`));
});

test(`an IPv4 tuple matches a dual-stack row listed in tcp6 (folded), and a ::ffff: tuple is folded too`, async () => {
  const folded = socket({laddr: `127.0.0.1`, lport: 8443, raddr: `127.0.0.1`, rport: 51000, listedFamily: `v6`});
  const unfolded = socket({laddr: `::ffff:10.1.1.1`, lport: 9443, raddr: `::ffff:10.1.1.2`, rport: 52000});
  const out = await judge([netns(NS_A), folded, unfolded], [
    tupleEntry({saddr: `127.0.0.1`, sport: 51000, daddr: `127.0.0.1`, dport: 8443}),
    tupleEntry({saddr: `::ffff:127.0.0.1`, sport: 51000, daddr: `::ffff:127.0.0.1`, dport: 8443}),
    tupleEntry({saddr: `10.1.1.2`, sport: 52000, daddr: `10.1.1.1`, dport: 9443}),
  ]);
  assert.equal(out.map(verdict => `${verdict.status}/${verdict.reason}`), [`alive/established`, `alive/established`, `alive/established`]);
});

test(`the pid of a tuple is never required to match, but its owner is reported`, async () => {
  const [verdict, gone] = await judge([netns(NS_A), client, process(4242, [4242], `S`, `nginx`)], [
    tupleEntry({saddr: `10.0.0.1`, sport: 40000, daddr: `10.0.0.2`, dport: 80, pid: 4242}),
    tupleEntry({saddr: `10.0.0.1`, sport: 40000, daddr: `10.0.0.2`, dport: 80, pid: 999999}),
  ]);
  assert.is(verdict.status, `alive`);
  assert.equal(verdict.owner, {pid: 4242, comm: `nginx`});
  assert.is(gone.status, `alive`);
  assert.equal(gone.owner, {pid: 999999, comm: null});
});

test(`pid_tgid: live threads are alive; exited threads, zombies and dead pids are leaked`, async () => {
  const out = await judge([
    process(100, [100, 101, 102]),
    process(200, [200], `Z`),
    // A leader that called pthread_exit: `Z` while its threads run on.
    process(300, [300, 301], `Z`),
    process(400, []),
  ], [
    pidEntry(100, 100),
    pidEntry(100, 102),
    pidEntry(100, 105),
    pidEntry(200, 200),
    pidEntry(300, 301),
    pidEntry(300, 300),
    pidEntry(400, 401),
    pidEntry(999, 999),
    pidEntry(0, 0),
  ]);
  assert.equal(out.map(verdict => `${verdict.status}/${verdict.reason}`), [
    `alive/thread_alive`, `alive/thread_alive`, `leaked/thread_gone`, `leaked/zombie`, `alive/thread_alive`,
    `leaked/thread_gone`, `alive/process_alive`, `leaked/process_gone`, `leaked/process_gone`,
  ]);
  assert.equal(out[2].owner, {pid: 100, comm: `proc100`});
  assert.equal(out[2].match.process, {pid: 100, comm: `proc100`, state: `S`});
  assert.equal(out[7].owner, {pid: 999, comm: null});
});

test(`a thread list longer than 16 is searched as a set, with the same answers`, async () => {
  const tids = Array.from({length: 40}, (_, i) => 500 + i);
  const out = await judge([process(500, tids)], [pidEntry(500, 539), pidEntry(500, 540), pidEntry(500, 500)]);
  assert.equal(out.map(verdict => verdict.reason), [`thread_alive`, `thread_gone`, `thread_alive`]);
});

test(`an undecodable key and an entry of a map with a problem are unknown`, async () => {
  const map = {type: `map`, v: SCHEMA_VERSION, mapId: 30, name: `http_in_flight`, catalogName: `http_in_flight`, keyKind: `conn_tuple`, mapType: `hash`,
    keySize: 40, valueSize: 8, maxEntries: 10, holders: [], backend: `bpftool`, problem: `key size 40, the catalogue says 48`};
  const broken: EntryRecord = {type: `entry`, v: SCHEMA_VERSION, mapId: 10, map: `http_in_flight`, keyHex: `0102`, key: null, keyError: `short key`};
  const out = await run([map, netns(NS_A), client, closer(`conns`), closer(`pids`), broken,
    tupleEntry({saddr: `10.0.0.1`, sport: 40000, daddr: `10.0.0.2`, dport: 80}, 30)]);
  assert.equal(verdicts(out).map(verdict => `${verdict.mapId}/${verdict.status}/${verdict.reason}`), [`10/unknown/undecodable_key`, `30/unknown/map_problem`]);
  assert.is(verdicts(out)[0].keyHex, `0102`);
});

test(`without a snapshot of the right kind, entries are unknown no_snapshot (with a warning)`, async () => {
  const warnings: Array<string> = [];
  const out = await run([netns(NS_A), client, closer(`conns`), pidEntry(1, 1), tupleEntry({saddr: `10.0.0.1`, sport: 40000, daddr: `10.0.0.2`, dport: 80})], warnings);
  assert.equal(verdicts(out).map(verdict => `${verdict.status}/${verdict.reason}`), [`unknown/no_snapshot`, `alive/established`]);
  assert.is(warnings.length, 1);
  assert.match(warnings[0], /snapshot-pids/);
});

test(`count in = count out, one summary per map, and records it does not consume pass through in order`, async () => {
  const header = {type: `header`, v: SCHEMA_VERSION, stage: `dump-maps`, tool: `usm-leak-detector`};
  const map = {type: `map`, v: SCHEMA_VERSION, mapId: 10, name: `http_in_flight`, catalogName: `http_in_flight`};
  const mapstats = {type: `mapstats`, v: SCHEMA_VERSION, mapId: 10, map: `http_in_flight`, entries: 3};
  const foreign = {type: `something-new`, v: SCHEMA_VERSION, x: 1};
  const entries = [
    tupleEntry({saddr: `10.0.0.1`, sport: 40000, daddr: `10.0.0.2`, dport: 80}),
    tupleEntry({saddr: `10.0.0.1`, sport: 40002, daddr: `10.0.0.2`, dport: 80}),
    tupleEntry({saddr: `10.0.0.1`, sport: 40000, daddr: `10.0.0.2`, dport: 80}, 11, `connection_states`),
    pidEntry(100, 100), pidEntry(100, 101),
  ];
  const out = await run([header, netns(NS_A), client, closer(`conns`), process(100, [100]), closer(`pids`), map, ...entries.slice(0, 2), foreign, ...entries.slice(2), mapstats]);
  assert.equal(out.map(record => record.type), [
    `header`, `netns`, `snapshot`, `snapshot`, `map`, `verdict`, `verdict`, `something-new`, `verdict`, `verdict`, `verdict`, `mapstats`,
    `summary`, `summary`, `summary`,
  ]);
  assert.equal(verdicts(out).map(verdict => verdict.keyHex), entries.map(entry => entry.keyHex));
  const summaries = out.filter(record => record.type === `summary`);
  assert.equal(summaries.map(s => [s.stage, s.mapId, s.map, s.total, s.alive, s.leaked, s.unknown]), [
    [`validate`, 10, `http_in_flight`, 2, 1, 1, 0],
    [`validate`, 11, `connection_states`, 1, 1, 0, 0],
    [`validate`, 20, `ssl_read_args`, 2, 1, 1, 0],
  ]);
});

test(`entries that come before the snapshots are held, then judged the same`, async () => {
  const entries = [
    tupleEntry({saddr: `10.0.0.1`, sport: 40000, daddr: `10.0.0.2`, dport: 80}),
    pidEntry(100, 100),
    pidEntry(100, 101),
  ];
  const evidence = [netns(NS_A), client, closer(`conns`), process(100, [100]), closer(`pids`)];
  const before = verdicts(await run([...entries, ...evidence]));
  const after = verdicts(await run([...evidence, ...entries]));
  const between = verdicts(await run([evidence[0], entries[0], ...evidence.slice(1, 3), entries[1], ...evidence.slice(3), entries[2]]));
  assert.equal(before.map(v => v.reason), [`established`, `thread_alive`, `thread_gone`]);
  assert.equal(after, before);
  assert.equal(between, before);
});

test(`snapshot records after entries were judged are ignored, with a warning`, async () => {
  const warnings: Array<string> = [];
  const entry = tupleEntry({saddr: `10.0.0.1`, sport: 40000, daddr: `10.0.0.2`, dport: 80});
  const out = verdicts(await run([netns(NS_A), closer(`conns`), closer(`pids`), entry, client, entry], warnings));
  assert.equal(out.map(v => v.status), [`leaked`, `leaked`]);
  assert.is(warnings.length, 1);
  assert.match(warnings[0], /ignored 1 snapshot record/);
});

test(`live: auto takes live snapshots only when the input has none, never otherwise`, async () => {
  let taken = 0;
  const takeSnapshots = async function* () {
    taken += 1;
    yield* [netns(NS_A), client, closer(`conns`), process(7, [7]), closer(`pids`)];
  };
  const entry = tupleEntry({saddr: `10.0.0.1`, sport: 40000, daddr: `10.0.0.2`, dport: 80});
  const liveRun = [];
  const ctx = quietContext();
  // A header saying the entries were dumped live on this host: the only input live snapshots judge.
  for await (const record of validate(ctx, from([makeHeader(`dump-maps`, ctx) as unknown as AnyRecord, entry]), {takeSnapshots}))
    liveRun.push(record);
  assert.is(taken, 1);
  assert.equal(verdicts(liveRun).map(v => v.status), [`alive`]);
  const offline = [];
  for await (const record of validate(quietContext(), from([netns(NS_A), closer(`conns`), entry]), {takeSnapshots}))
    offline.push(record);
  assert.is(taken, 1);
  assert.equal(verdicts(offline).map(v => v.status), [`leaked`]);
});

test(`live: always takes the snapshots first, streams, and ignores snapshot records in the input`, async () => {
  const warnings: Array<string> = [];
  const order: Array<string> = [];
  const takeSnapshots = async function* () {
    order.push(`snapshots`);
    yield* [netns(NS_A), client, closer(`conns`), closer(`pids`)];
  };
  async function* input() {
    order.push(`input`);
    yield tupleEntry({saddr: `10.0.0.1`, sport: 40000, daddr: `10.0.0.2`, dport: 80}) as unknown as AnyRecord;
    yield socket({laddr: `10.0.0.1`, lport: 40009, raddr: `10.0.0.2`, rport: 80});
    yield tupleEntry({saddr: `10.0.0.1`, sport: 40009, daddr: `10.0.0.2`, dport: 80}) as unknown as AnyRecord;
  }
  const out = [];
  for await (const record of validate(quietContext(warnings), input(), {live: `always`, takeSnapshots}))
    out.push(record);
  // The input's first record (its header, if any) is read first: a capture is never judged live.
  assert.equal(order, [`input`, `snapshots`]);
  assert.equal(verdicts(out).map(v => v.status), [`alive`, `leaked`]);
  assert.ok(warnings.some(w => /ignored 1 snapshot record/.test(w)));
});

test(`provenance: validate takes no live snapshot for a capture's entries, another host's, or headerless ones (exit 2, nothing on stdout)`, async () => {
  const ctx = quietContext();
  const entry = tupleEntry({saddr: `10.0.0.1`, sport: 40000, daddr: `10.0.0.2`, dport: 80});
  const header = makeHeader(`dump-maps`, ctx);
  const replayed = makeHeader(`dump-maps`, ctx, {host: ctx.host.hostname, kernel: `6.1`, time: `2026-01-01T00:00:00.000Z`, timeMs: 1767225600000});
  const foreign = {...header, host: `customer-box-17`};
  for (const [name, records, args, pattern] of [
    [`replayed capture of this host`, [replayed, entry], [], /a capture \(replayed\), taken at 2026-01-01T00:00:00.000Z/],
    [`another host`, [foreign, entry], [], /host customer-box-17/],
    [`another host, --live`, [foreign, entry], [`--live`], /host customer-box-17/],
    [`replayed, --live`, [replayed, entry], [`--live`], /a capture/],
    [`no header`, [entry], [], /no header record.*--live/s],
  ] as Array<[string, Array<object>, Array<string>, RegExp]>) {
    // A proc root that does not exist: a live snapshot, if one were taken, would fail with exit 3.
    const run = await runCommand([`validate`, `--proc-root`, join(tmpdir(), `usmld-no-such-proc`), ...args], {stdin: ndjson(records), tool: {host: ctx.host}});
    assert.is(run.code, ExitCode.Usage, `${name}: ${run.stderr}`);
    assert.is(run.stdout, ``, name);
    assert.match(run.stderr, pattern, name);
    if (name !== `no header`)
      assert.match(run.stderr, /snapshot-conns --from CAPTURE[\s\S]*snapshot-pids --from CAPTURE[\s\S]*dump-maps --from CAPTURE[\s\S]*recheck --later CAPTURE/, name);
  }
  // With the capture's own snapshots the same entries are judged, and validate's header carries the capture's provenance.
  const snapshots = [netns(NS_A), closer(`conns`), closer(`pids`)];
  const judged = await runCommand([`validate`], {stdin: ndjson([foreign, ...snapshots, entry]), tool: {host: ctx.host}});
  assert.is(judged.code, ExitCode.LeaksFound, judged.stderr);
  const out = parseLines(judged.stdout);
  assert.equal([out[0].type, out[0].stage, out[0].host, out[0].replayed, out[0].replayedOn?.host], [`header`, `validate`, `customer-box-17`, true, ctx.host.hostname]);
  assert.equal(out.filter(r => r.type === `verdict`).map(v => v.status), [`leaked`]);
  // Entries of one host with snapshots of another: refused.
  const mixed = await runCommand([`validate`], {stdin: ndjson([foreign, ...snapshots, {...foreign, host: `other-box`}, entry]), tool: {host: ctx.host}});
  assert.is(mixed.code, ExitCode.Usage);
  assert.match(mixed.stderr, /mixes data of host customer-box-17 and host other-box/);
  // This host's live snapshot (a snapshot-conns file) with a capture's entries: refused too.
  const liveAndCapture = await runCommand([`validate`], {stdin: ndjson([header, ...snapshots, replayed, entry]), tool: {host: ctx.host}});
  assert.is(liveAndCapture.code, ExitCode.Usage);
  assert.match(liveAndCapture.stderr, /mixes data read live on this host .* with data of a capture/);
  const snapshotFile = join(mkdtempSync(join(tmpdir(), `usmld-mix-`)), `conns.ndjson`);
  writeFileSync(snapshotFile, ndjson([header, ...snapshots]));
  const viaSnapshot = await runCommand([`validate`, `--snapshot`, snapshotFile], {stdin: ndjson([foreign, entry]), tool: {host: ctx.host}});
  rmSync(join(snapshotFile, `..`), {recursive: true, force: true});
  assert.is(viaSnapshot.code, ExitCode.Usage);
  assert.match(viaSnapshot.stderr, /mixes data read live on this host .* with data of host customer-box-17/);
});

function ndjson(records: Array<object>): string {
  return records.map(record => JSON.stringify(record)).join(`\n`) + `\n`;
}

test(`CLI: bad lines are reported as stdin:LINE, the rest still gets verdicts, exit 1 on a leak`, async () => {
  const good = tupleEntry({saddr: `10.0.0.1`, sport: 40000, daddr: `10.0.0.2`, dport: 80});
  const bad = {...tupleEntry({saddr: `10.0.0.1`, sport: 40001, daddr: `10.0.0.2`, dport: 80}), keyHex: `XYZ`};
  const leaked = tupleEntry({saddr: `10.0.0.1`, sport: 40003, daddr: `10.0.0.2`, dport: 80});
  const text = ndjson([netns(NS_A), client, closer(`conns`), closer(`pids`)]) + `{oops\n` + ndjson([good, bad, leaked]);
  const run = await runCommand([`validate`, `--no-live`], {stdin: text});
  assert.is(run.code, ExitCode.LeaksFound);
  assert.match(run.stderr, /stdin:5: not JSON/);
  assert.match(run.stderr, /stdin:7: invalid entry record/);
  const records = withoutHeader(parseLines(run.stdout));
  assert.equal(verdicts(records).map(v => v.status), [`alive`, `leaked`]);
  assert.is(parseLines(run.stdout)[0].stage, `validate`);
});

test(`CLI: --snapshot FILE reads the snapshots first; exit 0 when nothing leaked`, async () => {
  const dir = mkdtempSync(join(tmpdir(), `usmld-validate-`));
  try {
    const file = join(dir, `snap.ndjson`);
    writeFileSync(file, ndjson([netns(NS_A), client, closer(`conns`), process(100, [100]), closer(`pids`)]));
    const run = await runCommand([`validate`, `--snapshot`, file], {stdin: ndjson([tupleEntry({saddr: `10.0.0.1`, sport: 40000, daddr: `10.0.0.2`, dport: 80}), pidEntry(100, 100)])});
    assert.is(run.code, ExitCode.Ok, run.stderr);
    assert.equal(verdicts(parseLines(run.stdout)).map(v => v.reason), [`established`, `thread_alive`]);
    const both = await runCommand([`validate`, `--snapshot`, file, `--live`], {stdin: ``});
    assert.is(both.code, ExitCode.Usage);
  } finally {
    rmSync(dir, {recursive: true, force: true});
  }
});

test(`entries before the snapshots spill to a temp file past the memory limit and come back in order, judged right`, async () => {
  const tmp = mkdtempSync(join(tmpdir(), `usmld-hold-`));
  try {
    const ctx = {...quietContext(), tmpDir: tmp};
    const live = tupleEntry({saddr: `10.0.0.1`, sport: 40000, daddr: `10.0.0.2`, dport: 80});
    const entries: Array<EntryRecord> = [];
    for (let i = 0; i < 50; i++)
      entries.push(i % 2 === 0 ? {...live, mapId: 100 + i} : tupleEntry({saddr: `10.9.9.${i}`, sport: 1000 + i, daddr: `10.0.0.2`, dport: 80}, 100 + i));
    const out: Array<Record<string, any>> = [];
    const input = from([...entries, client, server, closer(`conns`), closer(`pids`)]);
    let sawSpill = false;
    for await (const record of validate(ctx, input, {live: `never`, holdInMemory: 5})) {
      // While the held entries are read back, their spill file exists under our tmpDir.
      sawSpill ||= readdirSync(tmp).length > 0;
      out.push(record);
    }
    const judged = verdicts(out);
    assert.ok(sawSpill, `the held entries went to a file`);
    assert.is(judged.length, 50);
    assert.equal(judged.map(v => v.mapId), entries.map(e => e.mapId));
    judged.forEach((verdict, i) => assert.is(verdict.status, i % 2 === 0 ? `alive` : `leaked`, `entry ${i}`));
    assert.equal(readdirSync(tmp), [], `the spill file is removed`);
  } finally {
    rmSync(tmp, {recursive: true, force: true});
  }
});

test(`SocketTable: every lookup finds what a list of all sockets gives, in filing order, past many growths of its tables`, () => {
  const table = new SocketTable();
  type Filed = {udp: boolean, laddr: string, lport: number, raddr: string, rport: number, match: Match};
  const filed: Array<Filed> = [];
  // Few distinct keys (each in several namespaces, filed first and last), many sockets.
  // Remote sides of every kind: IPv6 (the chained buckets), dotted quads and a bound socket's
  // empty one (the flat table of numbers), and quads that are not canonical (leading zeros: the
  // chains, and never equal to the canonical spelling of the same number).
  const remotes = [`::`, `fd00::1`, `fd00::2`, `10.1.0.2`, `10.1.0.02`, `010.1.0.2`, ``, `0.0.0.0`, `255.255.255.255`, `10.1.0.20`, `1.2.3`];
  const key = (i: number) => ({udp: i % 3 === 0, laddr: i % 13 === 0 ? `10.0.0.01` : `10.0.${i % 7}.1`, lport: 1000 + (i % 50), raddr: remotes[i % remotes.length], rport: i % 4});
  for (let i = 0; i < 6000; i++) {
    const entry = {...key(i), match: {netnsInode: (i % 17 === 0 ? 2 ** 40 : 4026531000) + (i % 9), socket: {proto: `tcp`, laddr: ``, lport: i, raddr: ``, rport: 0, state: `LISTEN`, inode: i}}};
    if (i % 2 === 0) {
      table.first(entry.udp, entry.laddr, entry.lport, entry.raddr, entry.rport, entry.match);
      filed.unshift(entry);
    } else {
      table.last(entry.udp, entry.laddr, entry.lport, entry.raddr, entry.rport, entry.match);
      filed.push(entry);
    }
  }
  for (let i = 0; i < 600; i++) {
    const k = key(i * 7 + 1);
    // Namespaces past 32 bits too (not kept in the flat table's cell: read from the match).
    const same = filed.filter(f => f.udp === k.udp && f.laddr === k.laddr && f.lport === k.lport && f.raddr === k.raddr && f.rport === k.rport);
    // Every namespace the key has a socket in, too: the first socket's and the later ones'.
    for (const netns of [0, 4026531000 + (i % 9), 2 ** 40 + (i % 9), 1, ...same.map(f => f.match.netnsInode!)]) {
      const want = same.find(f => netns === 0 || f.match.netnsInode === netns);
      const found: Found = {match: null, elsewhere: null, matchText: null};
      assert.is(table.search(found, k.udp, k.laddr, k.lport, k.raddr, k.rport, netns), want !== undefined);
      assert.is(found.match, want?.match ?? null);
      // A text handed over with the match is the match's own.
      if (found.matchText !== null)
        assert.is(found.matchText, JSON.stringify(found.match));
      // The first one of the key in another namespace, met before the one taken.
      assert.is(found.elsewhere, same[0] === want ? null : same[0]?.match ?? null);
      // A search that finds another key elsewhere keeps what an earlier search put there.
      const earlier = {netnsInode: 5} as Match;
      const kept: Found = {match: null, elsewhere: earlier, matchText: null};
      table.search(kept, k.udp, k.laddr, k.lport, k.raddr, k.rport, netns);
      assert.is(kept.elsewhere, earlier);
    }
  }
  // Keys never filed (ports no socket has; addresses of filed keys) are found nowhere.
  for (let i = 0; i < 6000; i += 7) {
    const k = key(i);
    const found: Found = {match: null, elsewhere: null, matchText: null};
    assert.is(table.search(found, k.udp, k.laddr, 2000 + (i % 50), k.raddr, k.rport, 0), false);
    assert.is(table.search(found, k.udp, k.laddr, k.lport, k.raddr, 4 + (i % 4), 0), false);
    assert.equal(found, {match: null, elsewhere: null, matchText: null});
  }
});

test.run();
