// Recorded outputs (samples/dump/*) replayed with --from, against their golden NDJSON; the
// system-probe backend through a fake binary replaying recorded output; parser edge cases.
import {mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {fileURLToPath} from 'node:url';
import {test} from 'uvu';
import * as assert from 'uvu/assert';
import {parseLines, runCommand, withoutHeader} from './helpers/cli.ts';
import {DumpTokenizer} from '../src/dump/tokenizer.ts';
import {keyHexOf, valueHexOf, type RawEntry} from '../src/dump/entry.ts';
import {parseLossless} from '../src/dump/json.ts';

const samples = (name: string) => fileURLToPath(new URL(`../samples/dump/${name}`, import.meta.url));
const FAKE_SYSTEM_PROBE = fileURLToPath(new URL(`./fixtures/system-probe/system-probe`, import.meta.url));

function golden(name: string): Array<Record<string, any>> {
  return parseLines(readFileSync(`${samples(name)}/golden.ndjson`, `utf8`));
}

for (const name of [`bpftool`, `system-probe`, `bpftool-edge`, `bpftool-by-name`]) {
  test(`--from samples/dump/${name} gives its golden output`, async () => {
    const run = await runCommand([`dump-maps`, `--from`, samples(name)]);
    assert.is(run.code, 0, run.stderr);
    const records = parseLines(run.stdout);
    assert.is(records[0].type, `header`);
    assert.equal(withoutHeader(records), golden(name));
  });
}

test(`the bpftool and system-probe samples decode to the same keys (u64 fields beyond 2^53 included)`, () => {
  const keys = (name: string) => golden(name).filter(r => r.type === `entry`).map(r => `${r.mapId} ${r.keyHex} ${JSON.stringify(r.key)}`).sort();
  const fromBpftool = keys(`bpftool`);
  assert.ok(fromBpftool.length >= 15);
  assert.equal(keys(`system-probe`), fromBpftool);
  const big = golden(`system-probe`).filter(r => r.type === `entry` && r.key?.kind === `pid_tgid`).map(r => r.key.pidTgid);
  assert.ok(big.includes(`18446744073709551615`));
  const index = golden(`system-probe`).filter(r => r.type === `entry` && r.key?.extra?.index).map(r => r.key.extra.index);
  assert.ok(index.includes(((1n << 60n) + 5n).toString()));
});

test(`system-probe backend through a fake binary gives the same records as --from`, async () => {
  const live = await runCommand([`dump-maps`, `--system-probe`, FAKE_SYSTEM_PROBE]);
  assert.is(live.code, 0, live.stderr);
  // A live run knows when it read each dated map (the saved sample does not): the only difference.
  const records = withoutHeader(parseLines(live.stdout));
  const dated = records.filter(r => r.type === `map` && r.monotonicNs !== undefined).map(r => r.catalogName).sort();
  assert.equal(dated, [`connection_protocol`, `http2_in_flight`, `kafka_in_flight`, `redis_in_flight`]);
  for (const record of records)
    delete record.monotonicNs;
  assert.equal(records, golden(`system-probe`));
  const forced = await runCommand([`dump-maps`, `--backend`, `system-probe`, `--system-probe`, FAKE_SYSTEM_PROBE, `--maps`, `kafka_in_flight`]);
  assert.is(forced.code, 0, forced.stderr);
  const entries = withoutHeader(parseLines(forced.stdout)).filter(r => r.type === `entry`);
  assert.is(entries.length, 1);
  assert.equal(entries[0].key.extra, {correlation_id: -5});
});

test(`a dump that hangs is killed at --timeout, reported incomplete, and the other maps still come`, async () => {
  const hung = golden(`system-probe`).find(r => r.type === `map` && r.catalogName === `connection_states`)!.mapId;
  process.env.USMLD_FAKE_SP_HANG_DUMP = String(hung);
  try {
    const run = await runCommand([`dump-maps`, `--system-probe`, FAKE_SYSTEM_PROBE, `--timeout`, `1`]);
    assert.is(run.code, 0, run.stderr);
    const stats = withoutHeader(parseLines(run.stdout)).filter(r => r.type === `mapstats`);
    const bad = stats.filter(s => !s.complete);
    assert.is(bad.length, 1);
    assert.is(bad[0].mapId, hung);
    assert.match(bad[0].error, /timed out after 1 s/);
    assert.is(stats.length, golden(`system-probe`).filter(r => r.type === `mapstats`).length);
    assert.match(run.stderr, /dump incomplete/);
  } finally {
    delete process.env.USMLD_FAKE_SP_HANG_DUMP;
  }
});

test(`edge sample: holders carried, failed lookups and repeats counted, broken dumps reported, others go on`, () => {
  const records = golden(`bpftool-edge`);
  const stats = records.filter(r => r.type === `mapstats`);
  const connStates = stats.find(s => s.map === `connection_states`)!;
  assert.equal([connStates.entries, connStates.duplicates, connStates.errors, connStates.complete], [3, 1, 1, true]);
  assert.ok(records.filter(r => r.type === `map`).every(r => r.holders.length === 1 && r.holders[0].comm === `system-probe`));
  const failed = stats.filter(s => !s.complete).map(s => s.map).sort();
  assert.equal(failed, [`http2_dynamic_table`, `http2_in_flight`, `ssl_read_args`]);
  assert.ok(stats.filter(s => s.map === `ssl_read_args`).some(s => s.complete && s.entries === 4));
  assert.not.ok(records.some(r => r.type === `entry` && r.keyHex === ``));
});

test(`no USM maps: exit 3 with the hint, nothing on stdout`, async () => {
  const run = await runCommand([`dump-maps`, `--from`, samples(`bpftool`), `--maps`, `redis_key_in_flight`]);
  assert.is(run.code, 3);
  assert.is(run.stdout, ``);
  assert.match(run.stderr, /Is system-probe running with USM enabled\?/);
});

test(`a bpftool that cannot list maps: exit 3 with its error, nothing on stdout`, async () => {
  const dir = mkdtempSync(join(tmpdir(), `usmld-bpftool-`));
  try {
    const bpftool = join(dir, `bpftool`);
    // What bpftool prints without CAP_BPF: a JSON error object on stdout, exit 255.
    writeFileSync(bpftool, `#!/bin/sh\necho '{"error":"cannot get next map: \\\\"Operation not permitted\\\\""}'\nexit 255\n`, {mode: 0o755});
    const run = await runCommand([`dump-maps`, `--bpftool`, bpftool], {tool: {uid: 1000}});
    assert.is(run.code, 3);
    assert.is(run.stdout, ``);
    assert.match(run.stderr, /cannot list eBPF maps: .*exited with code 255: cannot get next map: "Operation not permitted"/);
    assert.match(run.stderr, /not running as root/);
  } finally {
    rmSync(dir, {recursive: true, force: true});
  }
});

test(`--maps with an unknown name is a usage error naming the known maps`, async () => {
  const run = await runCommand([`dump-maps`, `--from`, samples(`bpftool`), `--maps`, `http_in_flight,nope`]);
  assert.is(run.code, 2);
  assert.match(run.stderr, /no catalogue map matches "nope"; known maps: connection_states/);
});

// ---------------------------------------------------------------------------------------------
// Tokenizer: any chunking gives the same elements; slow path shapes.

function tokenize(text: string, chunkSize: number) {
  const out: Array<Record<string, unknown>> = [];
  const problems: Array<string> = [];
  let outputError: string | null = null;
  const tokenizer = new DumpTokenizer({
    entry: (e: RawEntry) => out.push({
      keyHex: e.key === null ? null : keyHexOf(e), keyBtf: e.keyBtf,
      value: valueHexOf(e), valueBtf: e.valueBtf, formatted: e.formatted, error: e.error,
    }),
    outputError: message => { outputError = message; },
    problem: (message, fatal) => problems.push(`${fatal ? `fatal` : `skip`}: ${message}`),
  });
  const bytes = Buffer.from(text);
  // One buffer, refilled for each chunk and scribbled over after it (a capture's dump files are
  // read that way): the tokenizer must keep nothing of a chunk once feed() returns.
  const reused = Buffer.alloc(Math.max(1, Math.min(chunkSize, bytes.length)));
  for (let i = 0; i < bytes.length; i += chunkSize) {
    const length = bytes.copy(reused, 0, i, Math.min(i + chunkSize, bytes.length));
    tokenizer.feed(reused.subarray(0, length));
    reused.fill(`}`);
  }
  tokenizer.end();
  return {out, problems, outputError};
}

test(`the tokenizer gives the same elements whatever the chunk boundaries`, () => {
  const text = readFileSync(`${samples(`bpftool`)}/maps/${`dump-`}${golden(`bpftool`).find(r => r.type === `map` && r.catalogName === `http2_in_flight`)!.mapId}.json`, `utf8`)
    + ``;
  const whole = tokenize(text, 1 << 20);
  assert.is(whole.out.length, 1);
  assert.is(whole.out[0].formatted, true);
  for (const size of [1, 2, 3, 7, 64])
    assert.equal(tokenize(text, size), whole, `chunks of ${size}`);
  const sp = readFileSync(`${samples(`system-probe`)}/maps/dump-${golden(`system-probe`).find(r => r.type === `map` && r.catalogName === `connection_states`)!.mapId}.json`, `utf8`);
  const spWhole = tokenize(sp, 1 << 20);
  assert.is(spWhole.out.length, 4);
  for (const size of [1, 5, 13])
    assert.equal(tokenize(sp, size), spWhole, `system-probe, chunks of ${size}`);
});

test(`tokenizer: strings with escaped quotes and braces, error objects, null, truncation`, () => {
  const tricky = `[{"key":["0x01"],"value":["0x02"],"formatted":{"key":"a\\"}]{[","value":1}},{"key":["0x03"],"value":{"error":"No such \\"file\\""}}]`;
  for (const size of [1, 2, 1000]) {
    const {out, problems} = tokenize(tricky, size);
    assert.equal(problems, []);
    assert.is(out.length, 2);
    assert.is(out[0].keyHex, `01`);
    assert.is(out[0].formatted, true);
    assert.is(out[1].error, `No such "file"`);
  }
  assert.equal(tokenize(`null\n`, 2), {out: [], problems: [], outputError: null});
  assert.equal(tokenize(`[]\n`, 1), {out: [], problems: [], outputError: null});
  assert.is(tokenize(`{"error":"get map by id (9): No such file or directory"}\n`, 3).outputError, `get map by id (9): No such file or directory`);
  assert.is(tokenize(`{"error":"échec: карта"}`, 1).outputError, `échec: карта`, `UTF-8 split across chunks`);
  const cut = tokenize(`[{"key":["0x01"],"value":["0x02"]},{"key":["0x`, 4);
  assert.is(cut.out.length, 1);
  assert.match(cut.problems[0], /^fatal: output ended inside an element/);
  const bad = tokenize(`[{"key":["0x01"],"value":["0x02"]},{"key":[zz]},{"key":["0x05"],"value":["0x06"]}]`, 5);
  assert.is(bad.out.length, 2);
  assert.match(bad.problems[0], /^skip: element 2 is not JSON/);
});

test(`lossless JSON keeps u64 beyond 2^53 exact`, () => {
  const value = parseLossless(`{"a":18446744073709551615,"b":[9007199254740993,-5,1.5],"c":"x\\u0041"}`) as Record<string, any>;
  assert.is(value.a, 18446744073709551615n);
  assert.is(value.b[0], 9007199254740993n);
  assert.is(value.b[1], -5);
  assert.is(value.b[2], 1.5);
  assert.is(value.c, `xA`);
});

test.run();
