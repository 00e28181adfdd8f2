import {Readable} from 'node:stream';
import {test} from 'uvu';
import * as assert from 'uvu/assert';
import {SOURCE_LINE, batchBytes, readRecords} from '../src/ndjson.ts';
import {SCHEMA_VERSION, type AnyRecord, type EntryRecord} from '../src/schema.ts';
import {makeVerdict, validate} from '../src/validate/index.ts';
import {defaultToolContext} from '../src/context.ts';
import {parseLines, runCommand} from './helpers/cli.ts';
import {SnapshotIndex} from '../src/validate/snapshotIndex.ts';
import {MATCH_TEXT, jsonOf, verdictBytes, verdictLine} from '../src/validate/serialize.ts';

const entries = [
  {type: `entry`, v: SCHEMA_VERSION, mapId: 3, map: `http_in_flight`, keyHex: `00`.repeat(48), valueHex: `0102`,
    key: {kind: `conn_tuple`, family: `v4`, proto: `tcp`, saddr: `127.0.0.1`, sport: 40000, daddr: `127.0.0.1`, dport: 8080,
      src: `127.0.0.1:40000`, dst: `127.0.0.1:8080`, netns: 0, pid: 7, metadata: 1}},
  {type: `entry`, v: SCHEMA_VERSION, mapId: 4, map: `ssl_read_args`, keyHex: `0100000002000000`, valuesHex: [`00`, `01`],
    key: {kind: `pid_tgid`, pidTgid: `8589934593`, tgid: 2, tid: 1}},
  {type: `entry`, v: SCHEMA_VERSION, mapId: 5, map: `kafka_in_flight`, keyHex: `00`, key: null, keyError: `key is 1 byte, expected 56`},
];

async function index(): Promise<SnapshotIndex> {
  const snapshot = new SnapshotIndex();
  const records = [
    {type: `netns`, v: 1, netnsInode: 9, foundBy: [`process`], pids: [7], paths: [], readVia: `proc-pid:7`, complete: true},
    {type: `socket`, v: 1, netnsInode: 9, proto: `tcp`, family: `v4`, listedFamily: `v4`, laddr: `127.0.0.1`, lport: 8080, raddr: `127.0.0.1`, rport: 40000, state: `ESTABLISHED`, inode: 5, uid: 0},
    {type: `snapshot`, v: 1, of: `conns`, procRoot: `/proc`, time: ``, timeMs: 0, count: 1, complete: true},
    {type: `process`, v: 1, pid: 7, tids: [7], state: `S`, startTime: 1, comm: `srv`, netnsInode: 9},
    {type: `process`, v: 1, pid: 2, tids: [2], state: `S`, startTime: 1, comm: `cli`, netnsInode: 9},
    {type: `snapshot`, v: 1, of: `pids`, procRoot: `/proc`, time: ``, timeMs: 0, count: 2, complete: true},
  ];
  for (const record of records)
    snapshot.add(record as never);
  return snapshot;
}

test(`a verdict written from its entry's line parses to the record JSON.stringify writes`, async () => {
  const snapshot = await index();
  const text = entries.map(entry => JSON.stringify(entry)).join(`\n`);
  let seen = 0;
  for await (const record of readRecords(Readable.from([text]), `t`, {onProblem: p => assert.unreachable(p), keepSourceLine: new Set([`entry`])})) {
    const entry = record as unknown as EntryRecord;
    assert.type((entry as {[SOURCE_LINE]?: string})[SOURCE_LINE], `string`);
    const verdict = makeVerdict(entry, snapshot, undefined);
    const fast = verdictLine(verdict);
    assert.ok(fast.startsWith(`{"type":"verdict","v":1,`), fast);
    assert.equal(JSON.parse(fast), JSON.parse(JSON.stringify(verdict)));
    // A second verdict sharing the match/owner objects still comes out whole.
    assert.equal(JSON.parse(verdictLine(makeVerdict(entry, snapshot, undefined))), JSON.parse(fast));
    seen += 1;
  }
  assert.is(seen, 3);
});

test(`an entry line not of our shape falls back to JSON.stringify`, async () => {
  const snapshot = await index();
  const foreign = `{"v":1,"type":"entry","mapId":3,"map":"http_in_flight","keyHex":"00","key":null,"status":"odd"}`;
  for await (const record of readRecords(Readable.from([foreign]), `t`, {onProblem: () => {}, keepSourceLine: new Set([`entry`])})) {
    const verdict = makeVerdict(record as unknown as EntryRecord, snapshot, undefined);
    assert.is(verdictLine(verdict), JSON.stringify(verdict));
  }
});

test(`an entry's unknown fields reach its verdict in every key order: validate, and the stage in-process as scan runs it`, async () => {
  const snapshot = [
    {type: `netns`, v: 1, netnsInode: 9, foundBy: [`process`], pids: [7], paths: [], readVia: `proc-pid:7`, complete: true},
    {type: `snapshot`, v: 1, of: `conns`, procRoot: `/proc`, time: ``, timeMs: 0, count: 0, complete: true},
    {type: `process`, v: 1, pid: 7, tids: [7], state: `S`, startTime: 1, comm: `srv`, netnsInode: 9},
    {type: `snapshot`, v: 1, of: `pids`, procRoot: `/proc`, time: ``, timeMs: 0, count: 1, complete: true},
  ];
  const known = {type: `entry`, v: 1, mapId: 4, map: `ssl_read_args`, keyHex: `0700000007000000`, valueHex: `00`,
    key: {kind: `pid_tgid`, pidTgid: `30064771079`, tgid: 7, tid: 7}};
  const ours = {...known, ageSeconds: 12, later: {nested: [1, `two`]}};
  const reordered = {later: {nested: [1, `two`]}, key: known.key, ageSeconds: 12, v: 1, map: known.map, type: `entry`, keyHex: known.keyHex, mapId: 4, valueHex: `00`};
  const input = [...snapshot, ours, reordered];
  const expected = {...known, ageSeconds: 12, later: {nested: [1, `two`]}, type: `verdict`, status: `alive`, reason: `thread_alive`, checks: 1};
  const strip = (verdict: Record<string, unknown>) => {
    const {owner: _owner, match: _match, ...rest} = verdict;
    return rest;
  };

  const run = await runCommand([`validate`, `--no-live`], {stdin: input.map(record => `${JSON.stringify(record)}\n`).join(``)});
  assert.is(run.stderr, ``);
  const written = parseLines(run.stdout).filter(record => record.type === `verdict`);
  assert.is(written.length, 2);
  for (const verdict of written)
    assert.equal(strip(verdict), expected);

  const inProcess: Array<Record<string, unknown>> = [];
  for await (const record of validate(defaultToolContext(process.stderr), Readable.from(input) as AsyncIterable<AnyRecord>, {live: `never`})) {
    if (record.type === `verdict`)
      inProcess.push(record);
  }
  assert.is(inProcess.length, 2);
  for (const verdict of inProcess)
    assert.equal(strip(JSON.parse(JSON.stringify(verdict))), expected);
});

test(`verdicts written as bytes (verdictBytes) are byte for byte verdictLine's text: non-ASCII lines and owners, matches, judgedBy, checks 2, a batch past the scratch buffer`, async () => {
  const snapshot = await index();
  snapshot.add({type: `process`, v: 1, pid: 9, tids: [9], state: `S`, startTime: 1, comm: `wörker 𝄞`, netnsInode: 9} as never);
  const lines = [
    ...entries.map(entry => JSON.stringify(entry)),
    // Non-ASCII in a field this tool does not know, and an owner whose comm is not ASCII.
    JSON.stringify({...entries[1], note: `ünïcode € 𝄞`, key: {kind: `pid_tgid`, pidTgid: `38654705673`, tgid: 9, tid: 9}}),
    // A pointer key: judged by the value's tuple (judgedBy).
    JSON.stringify({type: `entry`, v: SCHEMA_VERSION, mapId: 6, map: `ssl_sock_by_ctx`, keyHex: `00`.repeat(8), key: {kind: `pointer`, pointer: `0x0`},
      valueTuple: entries[0].key}),
  ];
  const verdicts: Array<Record<string | symbol, unknown>> = [];
  for await (const record of readRecords(Readable.from([lines.join(`\n`)]), `t`, {onProblem: p => assert.unreachable(p), keepSourceLine: new Set([`entry`])}))
    verdicts.push(makeVerdict(record as unknown as EntryRecord, snapshot, undefined) as never);
  assert.ok(verdicts.every(verdict => verdict[SOURCE_LINE] !== undefined));
  assert.ok(verdicts.some(verdict => verdict.judgedBy === `value`) && verdicts.some(verdict => verdict.match !== undefined));
  // A match's text the index handed over (MATCH_TEXT) is written only while the verdict's match is
  // still that judgement's: a copy given another match (as recheck makes them) writes its own.
  const withText = verdicts.find(verdict => verdict[MATCH_TEXT] !== undefined);
  assert.ok(withText !== undefined, `the index handed a match's text over`);
  verdicts.push({...withText, match: {...JSON.parse(JSON.stringify(withText.match)), netnsInode: 7}});
  assert.is(verdicts.at(-1)![MATCH_TEXT], withText[MATCH_TEXT]);
  // Judged again (checks 2), and a reason the prebuilt texts do not have: verdictLine's way.
  verdicts.push({...verdicts[0], checks: 2, [SOURCE_LINE]: verdicts[0][SOURCE_LINE]});
  verdicts.push({...verdicts[1], reason: `made_up`, [SOURCE_LINE]: verdicts[1][SOURCE_LINE]});
  const text = (records: ReadonlyArray<object>) => records.map(record => `${verdictLine(record)}\n`).join(``);
  assert.is(batchBytes(verdicts, verdictLine, verdictBytes).toString(), text(verdicts));
  // Each one alone, so a verdict the bytes way declines is seen as such.
  const written = verdicts.map(verdict => verdictBytes(verdict, Buffer.alloc(4096), 0) >= 0);
  assert.equal(written, [true, true, true, true, true, true, false, false]);
  // Too little room: left to verdictLine.
  assert.is(verdictBytes(verdicts[0], Buffer.alloc(64), 0), -1);
  // Many more bytes than the scratch buffer holds, in one batch.
  const many = Array.from({length: 6000}, (_, i) => verdicts[i % verdicts.length]);
  assert.is(batchBytes(many, verdictLine, verdictBytes).toString(), text(many));
});

test(`a match's text, made once and kept on it, is not carried by a spread copy given other fields`, () => {
  const match = {process: {pid: 1, comm: `a`, state: `S`}};
  assert.is(jsonOf(match), JSON.stringify(match));
  const copy = {...match, netnsInode: 5};
  assert.is(jsonOf(copy), JSON.stringify(copy));
});

test.run();
