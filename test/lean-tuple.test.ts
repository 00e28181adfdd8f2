// scan's records when nothing sees them whole, against the general path's. LeanTuple (its
// conn_tuple_t key) against decodeTuple's plain key of the same bytes: the same JSON, the same
// judgement of every rule (its lookups go by number, IPv6 ones too: ::1, link-local, listeners on
// 0.0.0.0 and ::, bound UDP on either end, namespaces, IPv4-mapped addresses and dual-stack rows,
// hosts without IPv6 sockets or with bound ones only), and the same group tables (IPv4 counted by number,
// first-seen order and the GROUP_CAP overflow shared with text addresses, the listener's `*`).
// validate's verdicts made in place (entriesOwned) against its copied ones.
import {test} from 'uvu';
import * as assert from 'uvu/assert';
import {decodeKey, decodeTuple, LeanTuple} from '../src/dump/decode.ts';
import {KEY_SLOT, KEY_STORE, LeanPool, sampleOf} from '../src/dump/leanPool.ts';
import {CATALOGUE, findCatalogueMap, type ExtraFields, type KeyLayout} from '../src/catalogue.ts';
import {GROUP_CAP, GroupTable, groupValue} from '../src/report/aggregate.ts';
import {NumberMap} from '../src/numberMap.ts';
import type {AnyRecord, ConnTupleKey, VerdictRecord} from '../src/schema.ts';
import {PassThrough} from 'node:stream';
import {defaultToolContext} from '../src/context.ts';
import {validateBatches} from '../src/validate/index.ts';
import {judgeEntry} from '../src/validate/rules.ts';
import {SnapshotIndex} from '../src/validate/snapshotIndex.ts';
import {connTupleBytes} from './helpers/bpf.ts';
import {mapRecord, netns, pidEntry, processRecord, snapshotCloser, socketRecord, tupleEntry, tupleKey} from './helpers/records.ts';

const NS_A = 4026531840;
const NS_B = 4026532001;

interface Spec {
  saddr: string;
  sport: number;
  daddr: string;
  dport: number;
  udp?: boolean;
  netns?: number;
  pid?: number;
}

/** The key bytes of a tuple (IPv4 when both addresses are dotted quads), with `pad` bytes after it. */
const tupleBytes = (spec: Spec, pad = 0) => Buffer.concat([connTupleBytes(spec), Buffer.alloc(pad, 0xee)]);

const SPECS: Array<Spec> = [
  {saddr: `10.0.0.1`, sport: 40000, daddr: `10.0.0.2`, dport: 80},
  {saddr: `10.0.0.2`, sport: 80, daddr: `10.0.0.1`, dport: 40000},
  {saddr: `10.0.0.1`, sport: 40000, daddr: `10.0.0.2`, dport: 80, netns: NS_A, pid: 100},
  {saddr: `10.0.0.1`, sport: 40000, daddr: `10.0.0.2`, dport: 80, netns: NS_B, pid: 100},
  {saddr: `10.0.0.1`, sport: 40000, daddr: `10.0.0.2`, dport: 80, netns: 77, pid: 4242},
  {saddr: `10.0.0.9`, sport: 40001, daddr: `10.0.0.2`, dport: 81},
  {saddr: `10.0.0.9`, sport: 40001, daddr: `10.0.0.2`, dport: 81, netns: NS_A},
  // Listener keys: the socket's own address, 0.0.0.0, dual-stack ::, nothing.
  {saddr: `10.0.0.2`, sport: 80, daddr: `0.0.0.0`, dport: 0},
  {saddr: `10.0.0.3`, sport: 8080, daddr: `0.0.0.0`, dport: 0},
  {saddr: `10.0.0.3`, sport: 443, daddr: `0.0.0.0`, dport: 0},
  {saddr: `0.0.0.0`, sport: 8080, daddr: `0.0.0.0`, dport: 0},
  {saddr: `10.0.0.3`, sport: 9999, daddr: `0.0.0.0`, dport: 0, netns: NS_A},
  {saddr: `10.0.0.3`, sport: 9999, daddr: `10.0.0.4`, dport: 0},
  // UDP: connected, bound on either end, bound on a wildcard, nothing.
  {saddr: `10.0.0.5`, sport: 5353, daddr: `10.0.0.6`, dport: 53, udp: true},
  {saddr: `10.0.0.6`, sport: 53, daddr: `10.0.0.5`, dport: 5353, udp: true},
  {saddr: `10.0.0.7`, sport: 5000, daddr: `10.0.0.8`, dport: 6000, udp: true},
  {saddr: `10.0.0.7`, sport: 7000, daddr: `10.0.0.8`, dport: 123, udp: true},
  {saddr: `10.0.0.7`, sport: 7001, daddr: `10.0.0.8`, dport: 124, udp: true},
  // High addresses (negative as int32), the mapped socket's v4 side, IPv6 and IPv4-mapped keys.
  {saddr: `192.168.1.1`, sport: 50000, daddr: `255.255.255.255`, dport: 443},
  {saddr: `203.0.113.5`, sport: 443, daddr: `10.1.2.3`, dport: 50001},
  {saddr: `::ffff:203.0.113.5`, sport: 443, daddr: `::ffff:10.1.2.3`, dport: 50001},
  {saddr: `fd00::1`, sport: 44000, daddr: `fd00::2`, dport: 443},
  {saddr: `fd00::2`, sport: 443, daddr: `fd00::1`, dport: 44000},
  {saddr: `fd00::2`, sport: 443, daddr: `fd00::1`, dport: 44000, netns: NS_B},
  {saddr: `fd00::2`, sport: 443, daddr: `fd00::1`, dport: 44000, netns: NS_A},
  {saddr: `fd00::1`, sport: 44000, daddr: `fd00::2`, dport: 443, udp: true},
  {saddr: `fd00::5`, sport: 5353, daddr: `fd00::6`, dport: 124, udp: true},
  {saddr: `::ffff:10.0.0.2`, sport: 80, daddr: `::ffff:0.0.0.0`, dport: 0},
  // IPv6 connections that no socket has: one address or both unknown, a listener's key, mapped ones.
  {saddr: `fd00::1`, sport: 44000, daddr: `fd00::3`, dport: 443},
  {saddr: `fd00::3`, sport: 443, daddr: `fd00::1`, dport: 44000, netns: NS_B},
  {saddr: `fd00::77`, sport: 40000, daddr: `fd00:1234::78`, dport: 443, netns: NS_A, pid: 100},
  {saddr: `fd00::1`, sport: 44001, daddr: `fd00::2`, dport: 443, netns: NS_B},
  {saddr: `fd00::77`, sport: 443, daddr: `::`, dport: 0},
  {saddr: `fd00::77`, sport: 40000, daddr: `::ffff:10.0.0.2`, dport: 80},
  {saddr: `fd00::2`, sport: 443, daddr: `::`, dport: 0},
  {saddr: `fd00::9`, sport: 443, daddr: `::`, dport: 0},
  // Loopback ::1 both ways, in its namespace, none, another, an unknown one; one key in two namespaces.
  {saddr: `::1`, sport: 40000, daddr: `::1`, dport: 5000},
  {saddr: `::1`, sport: 5000, daddr: `::1`, dport: 40000, netns: NS_A, pid: 100},
  {saddr: `::1`, sport: 40000, daddr: `::1`, dport: 5000, netns: NS_B},
  {saddr: `::1`, sport: 40000, daddr: `::1`, dport: 5000, netns: 77},
  {saddr: `::1`, sport: 40001, daddr: `::1`, dport: 5000, netns: NS_A},
  {saddr: `::1`, sport: 6000, daddr: `::1`, dport: 46000},
  {saddr: `::1`, sport: 46000, daddr: `::1`, dport: 6000, netns: NS_B},
  {saddr: `::1`, sport: 6000, daddr: `::1`, dport: 46000, netns: NS_A},
  {saddr: `::1`, sport: 6000, daddr: `::1`, dport: 46000, netns: 4026532999},
  // Listener keys on ::1 and ::: its own listener, the dual-stack wildcard's, in other namespaces, none.
  {saddr: `::1`, sport: 5000, daddr: `::`, dport: 0, netns: NS_A},
  {saddr: `::1`, sport: 5000, daddr: `::`, dport: 0, netns: NS_B},
  {saddr: `::1`, sport: 443, daddr: `::`, dport: 0, netns: NS_B},
  {saddr: `::1`, sport: 443, daddr: `::`, dport: 0, netns: NS_A},
  {saddr: `::`, sport: 443, daddr: `::`, dport: 0},
  {saddr: `::`, sport: 444, daddr: `::`, dport: 0},
  {saddr: `0.0.0.0`, sport: 443, daddr: `0.0.0.0`, dport: 0},
  {saddr: `::ffff:10.0.0.3`, sport: 443, daddr: `::ffff:0.0.0.0`, dport: 0},
  {saddr: `::1`, sport: 5000, daddr: `::ffff:0.0.0.0`, dport: 0},
  {saddr: `::1`, sport: 5000, daddr: `::1`, dport: 0},
  // Link-local (no scope in a key or in /proc), both ways.
  {saddr: `fe80::1c2:3ff:fe04:506`, sport: 22, daddr: `fe80::aa:bbff:fecc:ddee`, dport: 51000, netns: NS_B, pid: 100},
  {saddr: `fe80::aa:bbff:fecc:ddee`, sport: 51000, daddr: `fe80::1c2:3ff:fe04:506`, dport: 22},
  {saddr: `fe80::aa:bbff:fecc:ddee`, sport: 51000, daddr: `fe80::1c2:3ff:fe04:507`, dport: 22},
  // A dual-stack socket's row (listed in tcp6, IPv4-mapped addresses): keys as IPv4 and as mapped IPv6.
  {saddr: `127.0.0.1`, sport: 41000, daddr: `127.0.0.1`, dport: 6379, netns: NS_A},
  {saddr: `::ffff:127.0.0.1`, sport: 6379, daddr: `::ffff:127.0.0.1`, dport: 41000, netns: NS_A},
  {saddr: `::ffff:127.0.0.1`, sport: 6379, daddr: `::ffff:127.0.0.1`, dport: 41000, netns: NS_B},
  {saddr: `::ffff:127.0.0.1`, sport: 6379, daddr: `::ffff:127.0.0.2`, dport: 41000},
  {saddr: `::ffff:127.0.0.1`, sport: 6379, daddr: `::1`, dport: 41000},
  // A socket with one mapped and one IPv6 address; UDP bound on ::1 on either end, and on ::.
  {saddr: `::ffff:10.0.0.9`, sport: 7777, daddr: `fd00::9`, dport: 8888},
  {saddr: `fd00::9`, sport: 8888, daddr: `::ffff:10.0.0.9`, dport: 7777, netns: NS_A},
  {saddr: `fd00::7`, sport: 999, daddr: `::1`, dport: 5353, udp: true, netns: NS_B},
  {saddr: `::1`, sport: 5353, daddr: `fd00::7`, dport: 999, udp: true},
  {saddr: `fd00::7`, sport: 999, daddr: `::1`, dport: 5353, udp: true, netns: NS_A},
  {saddr: `fd00::7`, sport: 999, daddr: `fd00::8`, dport: 124, udp: true},
  {saddr: `::ffff:10.0.0.7`, sport: 999, daddr: `::ffff:10.0.0.8`, dport: 124, udp: true},
];

function index(): SnapshotIndex {
  const index = new SnapshotIndex();
  const records = [
    netns(NS_A, [1]), netns(NS_B, [2]),
    socketRecord({laddr: `10.0.0.1`, lport: 40000, raddr: `10.0.0.2`, rport: 80, netns: NS_A}),
    socketRecord({laddr: `10.0.0.2`, lport: 80, netns: NS_A}),
    socketRecord({laddr: `0.0.0.0`, lport: 8080, netns: NS_A}),
    socketRecord({laddr: `::`, lport: 443, netns: NS_B}),
    socketRecord({laddr: `10.0.0.5`, lport: 5353, raddr: `10.0.0.6`, rport: 53, proto: `udp`, state: `ESTABLISHED`, netns: NS_A}),
    socketRecord({laddr: `10.0.0.8`, lport: 6000, raddr: `0.0.0.0`, rport: 0, proto: `udp`, state: `CLOSE`, netns: NS_A}),
    socketRecord({laddr: `0.0.0.0`, lport: 123, raddr: `0.0.0.0`, rport: 0, proto: `udp`, state: `CLOSE`, netns: NS_A}),
    socketRecord({laddr: `::`, lport: 124, raddr: `::`, rport: 0, proto: `udp`, state: `CLOSE`, netns: NS_B}),
    socketRecord({laddr: `::ffff:203.0.113.5`, lport: 443, raddr: `::ffff:10.1.2.3`, rport: 50001, netns: NS_A}),
    socketRecord({laddr: `fd00::1`, lport: 44000, raddr: `fd00::2`, rport: 443, netns: NS_B}),
    socketRecord({laddr: `fd00::2`, lport: 443, netns: NS_B}),
    // Loopback ::1: a listener and both ends of a connection; one key in two namespaces.
    socketRecord({laddr: `::1`, lport: 5000, netns: NS_A}),
    socketRecord({laddr: `::1`, lport: 5000, raddr: `::1`, rport: 40000, netns: NS_A}),
    socketRecord({laddr: `::1`, lport: 40000, raddr: `::1`, rport: 5000, netns: NS_A}),
    socketRecord({laddr: `::1`, lport: 6000, raddr: `::1`, rport: 46000, netns: NS_B}),
    socketRecord({laddr: `::1`, lport: 6000, raddr: `::1`, rport: 46000, netns: NS_A}),
    socketRecord({laddr: `fe80::1c2:3ff:fe04:506`, lport: 22, raddr: `fe80::aa:bbff:fecc:ddee`, rport: 51000, netns: NS_B}),
    socketRecord({laddr: `::ffff:127.0.0.1`, lport: 6379, raddr: `::ffff:127.0.0.1`, rport: 41000, netns: NS_A, listedFamily: `v6`}),
    socketRecord({laddr: `::ffff:10.0.0.9`, lport: 7777, raddr: `fd00::9`, rport: 8888, netns: NS_A}),
    socketRecord({laddr: `::1`, lport: 5353, raddr: `::`, rport: 0, proto: `udp`, state: `CLOSE`, netns: NS_B}),
    processRecord(100, `curl`),
    snapshotCloser(`conns`), snapshotCloser(`pids`),
  ];
  for (const record of records)
    index.add(record);
  return index;
}

test(`a LeanTuple reads and serialises as decodeTuple's key of the same bytes`, () => {
  for (const spec of SPECS) {
    for (const offset of [0, 8]) {
      const bytes = Buffer.concat([Buffer.alloc(offset, 0xaa), tupleBytes(spec, 8)]);
      const plain = decodeTuple(bytes, offset);
      const lean = new LeanTuple(bytes, offset);
      assert.is(JSON.stringify(lean), JSON.stringify(plain), `${spec.saddr} ${spec.daddr}`);
      for (const field of Object.keys(plain) as Array<keyof ConnTupleKey>)
        assert.equal(lean[field], plain[field], `${field} of ${spec.saddr} → ${spec.daddr}`);
      lean.extra = plain.extra = {stream_id: 3};
      assert.is(JSON.stringify(lean), JSON.stringify(plain));
    }
  }
});

test(`a LeanTuple refilled with other bytes (IPv4 and IPv6 in turn, texts read between) reads as a new one of them; its copy keeps what it was`, () => {
  const reused = new LeanTuple(tupleBytes(SPECS[0]), 0);
  const copies: Array<[LeanTuple, string]> = [];
  // Every spec after every other: v4 after v6 and v6 after v4, each text made before the next refill.
  for (const [i, spec] of [...SPECS, ...SPECS.slice().reverse()].entries()) {
    const bytes = tupleBytes(spec, 8);
    const extra = i % 2 === 0 ? undefined : {stream_id: i};
    reused.refill(bytes, 0, extra);
    const fresh = new LeanTuple(bytes, 0, extra);
    assert.is(JSON.stringify(reused), JSON.stringify(fresh), `${spec.saddr} → ${spec.daddr}`);
    assert.equal(reused.v6Words, fresh.v6Words);
    assert.is(reused.src, fresh.src);
    copies.push([reused.copy(), JSON.stringify(fresh)]);
  }
  for (const [copy, json] of copies) {
    assert.ok(copy instanceof LeanTuple);
    assert.is(JSON.stringify(copy), json, `a copy is not changed by later refills`);
  }
});

test(`the lean pool takes back only lean records, up to its cap, and a report keeps copies of lean samples, the records themselves of others`, () => {
  const pool = new LeanPool();
  const lean = {type: `verdict`, [KEY_STORE]: undefined, [KEY_SLOT]: 0, key: new LeanTuple(tupleBytes(SPECS[1]), 0)} as unknown as VerdictRecord;
  const plain = {type: `verdict`, key: decodeTuple(tupleBytes(SPECS[1]), 0)} as unknown as VerdictRecord;
  pool.giveBack([plain, mapRecord(7, `connection_states`), lean] as Array<AnyRecord>);
  assert.is(pool.take(), lean as unknown);
  assert.is(pool.take(), undefined, `nothing else was taken back`);
  pool.giveBack(new Array(5000).fill(lean));
  let taken = 0;
  while (pool.take() !== undefined)
    taken++;
  assert.ok(taken > 0 && taken < 5000, `capped: ${taken}`);
  assert.is(sampleOf(plain), plain);
  const sample = sampleOf(lean);
  assert.is.not(sample, lean);
  assert.is.not(sample.key, lean.key);
  assert.is(JSON.stringify(sample.key), JSON.stringify(lean.key));
});

test(`decodeKey's lean keys of maps with extra key fields (stream id, correlation id, table index) serialise as its plain keys`, () => {
  for (const name of [`http2_in_flight`, `kafka_in_flight`, `http2_dynamic_table`, `mongo_request_id`]) {
    const layout = findCatalogueMap(name)!;
    for (const spec of SPECS.slice(0, 12)) {
      const tuple = tupleBytes(spec);
      const bytes = Buffer.alloc(layout.keySize, 0xf7);
      tuple.copy(bytes, layout.tupleOffset ?? 0);
      const lean = decodeKey(layout, bytes, bytes.length, true);
      assert.ok(lean instanceof LeanTuple && lean.extra !== undefined, name);
      assert.is(JSON.stringify(lean), JSON.stringify(decodeKey(layout, bytes, bytes.length, false)), `${name} ${spec.saddr}`);
    }
  }
});

test(`a key's extra fields, read by a decoder made for its layout, are what reading them one by one gives: every catalogue layout with extras and made-up ones (signed, u64 past 2^53, a name twice), keys long enough and too short`, () => {
  // The reference: each field read where it is, when the key holds it, in the layout's order.
  const reference = (fields: ExtraFields, bytes: Buffer, length: number) => {
    const extra: {[name: string]: number | string} = {};
    for (const [name, offset, size, signed] of fields) {
      if (offset + size > length)
        continue;
      extra[name] = size === 8 ? bytes.readBigUInt64LE(offset).toString() : signed ? bytes.readInt32LE(offset) : bytes.readUInt32LE(offset);
    }
    return extra;
  };
  const layouts: Array<KeyLayout> = CATALOGUE.filter(map => map.extra !== undefined);
  const tuple = CATALOGUE.find(map => map.name === `http2_in_flight`)!;
  const pidTgid = CATALOGUE.find(map => map.name === `ssl_sock_by_ctx`)!;
  layouts.push(
    {...tuple, keySize: 72, extra: [[`a`, 48, 4, true], [`b`, 52, 8], [`a`, 60, 4], [`c d"e`, 64, 8, true]]},
    {...pidTgid, keySize: 24, extra: [[`ctx`, 8, 8], [`n`, 16, 4, true], [`m`, 20, 4]]},
  );
  assert.ok(layouts.length >= 6, `layouts: ${layouts.map(layout => (layout as {name?: string}).name).join(`, `)}`);
  let checked = 0;
  for (const layout of layouts) {
    const ends = layout.extra!.map(([, offset, size]) => offset + size);
    for (const length of new Set([layout.keySize, ...ends.map(end => end - 1), ...ends])) {
      for (const fill of [0x00, 0x7f, 0x80, 0xff, -1]) {
        const bytes = Buffer.alloc(layout.keySize);
        for (let i = 0; i < bytes.length; i++)
          bytes[i] = fill < 0 ? (i * 151 + length) & 255 : fill;
        if (layout.keyKind === `conn_tuple`)
          tupleBytes(SPECS[0]).copy(bytes, layout.tupleOffset ?? 0);
        for (const lean of [true, false]) {
          const key = decodeKey(layout, bytes, length, lean);
          if (typeof key === `string`)
            continue;
          assert.is(JSON.stringify((key as {extra?: unknown}).extra), JSON.stringify(reference(layout.extra!, bytes, length)), `${JSON.stringify(layout.extra)} at ${length}`);
          checked += 1;
        }
      }
    }
  }
  assert.ok(checked > 100, `${checked} keys checked`);
});

test(`judging a LeanTuple (its addresses by number, IPv6 ones too) gives the plain key's judgement, rule by rule`, () => {
  const snapshot = index();
  // A socket whose IPv6 text is not formatIPv6's: nothing is concluded from the numbers then.
  const odd = index();
  odd.add(socketRecord({laddr: `FD00::3`, lport: 443, raddr: `fd00::1`, rport: 44000, netns: NS_B}));
  // A host without IPv6 sockets (no :: to fall back on), and one whose IPv6 sockets are all bound.
  const v4Only = new SnapshotIndex();
  for (const record of [netns(NS_A, [1]), socketRecord({laddr: `10.0.0.1`, lport: 40000, raddr: `10.0.0.2`, rport: 80, netns: NS_A}),
    socketRecord({laddr: `0.0.0.0`, lport: 443, netns: NS_A}), snapshotCloser(`conns`), snapshotCloser(`pids`)])
    v4Only.add(record);
  const boundOnly = new SnapshotIndex();
  for (const record of [netns(NS_B, [2]), socketRecord({laddr: `::1`, lport: 5000, netns: NS_B}), socketRecord({laddr: `::`, lport: 443, netns: NS_B}),
    socketRecord({laddr: `::`, lport: 124, raddr: `::`, rport: 0, proto: `udp`, state: `CLOSE`, netns: NS_B}), snapshotCloser(`conns`), snapshotCloser(`pids`)])
    boundOnly.add(record);
  for (const other of [odd, v4Only, boundOnly]) {
    for (const spec of SPECS) {
      const bytes = tupleBytes(spec);
      assert.equal(judgeEntry({key: new LeanTuple(bytes, 0)} as never, other), judgeEntry({key: decodeTuple(bytes, 0)} as never, other), `${JSON.stringify(spec)}`);
    }
  }
  const judgements = new Set<string>();
  for (const spec of SPECS) {
    const bytes = tupleBytes(spec);
    const plain = judgeEntry({key: decodeTuple(bytes, 0)} as never, snapshot);
    const lean = judgeEntry({key: new LeanTuple(bytes, 0)} as never, snapshot);
    assert.equal(lean, plain, `${JSON.stringify(spec)}`);
    assert.ok(lean.match === plain.match, `the same match object`);
    judgements.add(`${plain.status}:${plain.reason}`);
  }
  // The specs reach every outcome of a tuple the rules have.
  for (const outcome of [`alive:established`, `alive:listening`, `alive:listening_wildcard`, `alive:bound`, `leaked:no_connection`,
    `leaked:no_listener`, `leaked:no_connection_any_namespace`, `leaked:wrong_namespace`, `leaked:unknown_namespace`])
    assert.ok(judgements.has(outcome), `${outcome} among ${[...judgements].join(`, `)}`);
});

/** A group table's values() as [text, count] pairs. */
function listed(table: GroupTable): Array<[string, number]> {
  const values = table.values();
  return Array.from({length: values.size}, (_, i): [string, number] => [values.text(i), values.count(i)]);
}

test(`group tables count LeanTuples as they count plain keys, both as the values' text would count: order first seen, the listener's *, past GROUP_CAP`, () => {
  const specs: Array<Spec> = [...SPECS];
  // Enough distinct addresses to fill the tables, IPv4 and IPv6 interleaved, and some repeated after.
  for (let i = 0; i < GROUP_CAP + 500; i++) {
    const v6 = i % 5 === 0;
    const a = (i * 7919) & 0xffffff;
    specs.push(v6
      ? {saddr: `fd00::${(a & 0xffff).toString(16)}:${(a >> 16).toString(16)}`, sport: 40000, daddr: `fd00::${i.toString(16)}`, dport: 443}
      : {saddr: `10.${a >> 16}.${(a >> 8) & 255}.${a & 255}`, sport: 40000, daddr: `${128 + (i & 127)}.${i >> 8 & 255}.${i & 255}.1`, dport: i % 7 === 0 ? 0 : 443});
  }
  specs.push(...SPECS, ...specs.slice(0, 300));
  const fields = [`daddr`, `saddr`, `dport`] as const;
  const count = (lean: boolean) => fields.map(field => {
    const table = new GroupTable(field);
    for (const spec of specs) {
      const bytes = tupleBytes(spec);
      table.add({type: `verdict`, key: lean ? new LeanTuple(bytes, 0) : decodeTuple(bytes, 0), reason: `no_connection`} as VerdictRecord);
    }
    return {counts: listed(table), other: table.other};
  });
  // The reference: each verdict's value as text (groupValue), counted in a plain Map.
  const reference = fields.map(field => {
    const counts = new Map<string, number>();
    let other = 0;
    for (const spec of specs) {
      const value = groupValue(field, {type: `verdict`, key: decodeTuple(tupleBytes(spec), 0), reason: `no_connection`} as VerdictRecord)!;
      if (counts.has(value))
        counts.set(value, counts.get(value)! + 1);
      else if (counts.size < GROUP_CAP)
        counts.set(value, 1);
      else
        other += 1;
    }
    return {counts: [...counts], other};
  });
  const plain = count(false);
  const lean = count(true);
  assert.equal(plain, reference);
  assert.ok(plain[0].other > 0 && plain[1].other > 0, `the address tables overflow`);
  assert.ok(plain[0].counts.some(([value]) => value === `*`) && plain[0].counts.some(([value]) => value.includes(`:`)));
  assert.equal(lean, plain);
});

test(`numeric group tables (ports, namespaces, pids) count as a plain Map of the values' text: order first seen, the listener's *, past GROUP_CAP, values up to 2^32 - 1`, () => {
  // Ports and pids of every size, repeated near and far, past GROUP_CAP distinct values.
  const edges = [0, 1, 65535, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1, 4026531833, 4026531840];
  const keys: Array<ConnTupleKey> = [];
  for (let i = 0; i < GROUP_CAP + 700; i++) {
    const number = i % 4 === 0 ? (edges[i % edges.length] + (i % 3 === 0 ? i : -i)) >>> 0 : (i * 7919) % 70001;
    const port = number % 65536;
    keys.push(tupleKey({saddr: `10.0.0.1`, sport: port, daddr: i % 9 === 0 ? `0.0.0.0` : `10.0.0.2`, dport: i % 9 === 0 ? 0 : port, netns: number, pid: number}));
  }
  keys.push(...keys.slice(0, 400), ...keys.slice(-50));
  for (const field of [`sport`, `dport`, `netns`, `pid`] as const) {
    const table = new GroupTable(field);
    const counts = new Map<string, number>();
    let other = 0;
    let notApplicable = 0;
    for (const key of keys) {
      const verdict = {type: `verdict`, key, reason: `no_connection`} as VerdictRecord;
      table.add(verdict);
      const value = groupValue(field, verdict);
      if (value === null)
        notApplicable += 1;
      else if (counts.has(value))
        counts.set(value, counts.get(value)! + 1);
      else if (counts.size < GROUP_CAP)
        counts.set(value, 1);
      else
        other += 1;
    }
    assert.equal({counts: listed(table), other: table.other, notApplicable: table.notApplicable}, {counts: [...counts], other, notApplicable}, field);
    assert.ok(field === `dport` || other > 0, `${field}'s table overflows`);
  }
});

test(`NumberMap keeps what a Map keeps, in the same order: -1 and 2^32 - 1 apart, values replaced, grown past its first table`, () => {
  const numbers = new NumberMap<number>();
  const reference = new Map<number, number>();
  const keys = [-1, 0, 1, 2 ** 32 - 1, 2 ** 31, 2 ** 31 - 1, 4026531833, 65535];
  for (let i = 0; i < 5000; i++) {
    const key = i % 3 === 0 ? keys[i % keys.length] : (i * 2654435761) % 4294967296;
    numbers.set(key, i);
    reference.set(key, i);
  }
  assert.equal({keys: numbers.keys, values: numbers.values, size: numbers.size}, {keys: [...reference.keys()], values: [...reference.values()], size: reference.size});
  for (const key of [...keys, 7, 2 ** 32 - 2, -2])
    assert.is(numbers.get(key), reference.get(key), String(key));
});

test(`validate's verdicts made in place from owned entries equal its copied ones, field for field`, async () => {
  const ctx = defaultToolContext(new PassThrough());
  ctx.log = {...ctx.log, warn: () => {}, info: () => {}, debug: () => {}};
  const snapshot = () => [
    netns(NS_A, [1]), netns(NS_B, [2]),
    socketRecord({laddr: `10.0.0.1`, lport: 40000, raddr: `10.0.0.2`, rport: 80, netns: NS_A}),
    socketRecord({laddr: `::`, lport: 443, netns: NS_B}),
    processRecord(100, `curl`, {tids: [100, 101]}),
    snapshotCloser(`conns`), snapshotCloser(`pids`),
  ];
  const entries = () => [
    mapRecord(10, `http_in_flight`), mapRecord(11, `pid_fd_by_tuple`, {problem: `key size is 40 bytes`}), mapRecord(20, `ssl_read_args`),
    ...SPECS.map(spec => ({...tupleEntry(spec), key: new LeanTuple(tupleBytes(spec), 0), ageSeconds: 3, ageField: `updated`})),
    tupleEntry(SPECS[0], 11, `pid_fd_by_tuple`), {...tupleEntry(SPECS[0]), key: null, keyError: `too short`},
    pidEntry(100, 101), pidEntry(100, 102), pidEntry(555, 555),
    {...tupleEntry(SPECS[0], 30, `conn_tup_by_go_tls_conn`), key: {kind: `pointer`, pointer: `0x00000000deadbeef`}, valueTuple: tupleKey(SPECS[0])},
  ];
  const judged = async (entriesOwned: boolean) => {
    const out: Array<Record<string, unknown>> = [];
    const input = async function* () {
      yield snapshot() as never;
      yield entries() as never;
    };
    for await (const batch of validateBatches(ctx, input(), {live: `never`, entriesOwned}))
      out.push(...(batch as Array<Record<string, unknown>>).filter(record => record.type === `verdict`));
    // The same fields and values; their order is not the copy's.
    return out.map(verdict => JSON.stringify(Object.fromEntries(Object.entries(verdict).sort(([a], [b]) => (a < b ? -1 : 1)))));
  };
  const copied = await judged(false);
  assert.is(copied.length, SPECS.length + 6);
  assert.equal(await judged(true), copied);
});

test.run();
