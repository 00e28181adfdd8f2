import {readFileSync} from 'node:fs';
import {PassThrough, Readable, Writable} from 'node:stream';
import {test} from 'uvu';
import * as assert from 'uvu/assert';
import ndjson from 'ndjson';
import {formatIPv4, formatIPv6} from '../src/addr.ts';
import {CATALOGUE, findCatalogueMap, kernelName, selectCatalogue} from '../src/catalogue.ts';
import {ExitCode} from '../src/exitCodes.ts';
import {OutputClosed, RecordWriter, readRecords} from '../src/ndjson.ts';
import {checkRecord, SCHEMA_VERSION} from '../src/schema.ts';
import {TOOL_VERSION} from '../src/version.ts';
import {ipv6Bytes} from './helpers/bpf.ts';
import {runCommand} from './helpers/cli.ts';

const SUBCOMMANDS = [`dump-maps`, `snapshot-conns`, `snapshot-pids`, `validate`, `recheck`, `report`, `scan`];

test(`--help lists the seven subcommands, each with a description`, async () => {
  const run = await runCommand([`--help`]);
  assert.is(run.code, 0);
  for (const name of SUBCOMMANDS)
    assert.match(run.stdout, new RegExp(`usm-leak-detector ${name} [^\\n]*\\n\\s+\\S`), name);
});

test(`a usage error prints nothing on stdout, the error on stderr, exit 2`, async () => {
  const run = await runCommand([`validate`, `--bogus`]);
  assert.is(run.code, ExitCode.Usage);
  assert.is(run.stdout, ``);
  assert.match(run.stderr, /--bogus/);
});

test(`an unknown subcommand is a usage error on stderr`, async () => {
  const run = await runCommand([`frobnicate`]);
  assert.is(run.code, ExitCode.Usage);
  assert.is(run.stdout, ``);
  assert.ok(run.stderr.length > 0);
});

test(`the tool version matches package.json`, () => {
  const pkg = JSON.parse(readFileSync(new URL(`../package.json`, import.meta.url), `utf8`));
  assert.is(TOOL_VERSION, pkg.version);
});

async function collect(text: string) {
  const problems: Array<string> = [];
  const records = [];
  for await (const record of readRecords(Readable.from([text]), `stdin`, {onProblem: p => problems.push(p)}))
    records.push(record);
  return {records, problems};
}

test(`bad lines are reported as stdin:LINE and the rest of the stream still flows`, async () => {
  const good = JSON.stringify({type: `other`, v: SCHEMA_VERSION, n: 1});
  const text = [good, ``, `{not json`, `[1,2]`, JSON.stringify({v: 1}), JSON.stringify({type: `x`, v: 99}), `   `, good, ``].join(`\n`);
  const {records, problems} = await collect(text);
  assert.is(records.length, 2);
  assert.is(problems.length, 4);
  assert.match(problems[0], /^stdin:3: not JSON/);
  assert.match(problems[1], /^stdin:4: expected a JSON object/);
  assert.match(problems[2], /^stdin:5: record has no "type"/);
  assert.match(problems[3], /^stdin:6: x record has schema version 99/);
});

test(`records of a checked type are validated against the schema`, async () => {
  const bad = JSON.stringify({type: `netns`, v: 1, netnsInode: `nope`});
  const {records, problems} = await collect(`${bad}\n`);
  assert.is(records.length, 0);
  assert.match(problems[0], /^stdin:1: invalid netns record: .*netnsInode/);
});

test(`schema guards accept a full entry and reject a u64 as a JSON number`, () => {
  const entry = {
    type: `entry`, v: 1, mapId: 7, map: `ssl_read_args`, keyHex: `0100000002000000`, valueHex: `00`,
    key: {kind: `pid_tgid`, pidTgid: `8589934593`, tgid: 2, tid: 1},
  };
  assert.is(checkRecord(entry), null);
  const broken = {...entry, key: {...entry.key, pidTgid: 8589934593}};
  assert.match(checkRecord(broken) ?? ``, /invalid entry record/);
  assert.match(checkRecord({...entry, keyHex: `ABC`}) ?? ``, /keyHex/);
});

test(`RecordWriter output parses with the ndjson package, line for line`, async () => {
  const sink = new PassThrough();
  const writer = new RecordWriter(sink);
  const parsed: Array<unknown> = [];
  const done = new Promise(resolve => sink.pipe(ndjson.parse({strict: true})).on(`data`, (d: unknown) => parsed.push(d)).on(`end`, resolve));
  for (let i = 0; i < 5000; i++)
    await writer.write({type: `x`, v: 1, i, s: `line\nbreak "quoted"`});
  await writer.end();
  sink.end();
  await done;
  assert.is(parsed.length, 5000);
  assert.equal(parsed[4999], {type: `x`, v: 1, i: 4999, s: `line\nbreak "quoted"`});
});

test(`RecordWriter stops with OutputClosed once its reader is gone`, async () => {
  const sink = new Writable({write(_chunk, _enc, cb) { cb(Object.assign(new Error(`EPIPE`), {code: `EPIPE`})); }});
  const writer = new RecordWriter(sink);
  let thrown: unknown = null;
  try {
    for (let i = 0; i < 100000; i++)
      await writer.write({type: `x`, v: 1, pad: `y`.repeat(100)});
  } catch (err) {
    thrown = err;
  }
  assert.instance(thrown, OutputClosed);
  await writer.end();
});

test(`addresses format as dotted quad and RFC 5952 IPv6`, () => {
  assert.is(formatIPv4(Uint8Array.from([10, 0, 0, 5]), 0), `10.0.0.5`);
  assert.is(formatIPv6(ipv6Bytes(`2001:db8::1`), 0), `2001:db8::1`);
  assert.is(formatIPv6(ipv6Bytes(`::`), 0), `::`);
  assert.is(formatIPv6(ipv6Bytes(`::1`), 0), `::1`);
  assert.is(formatIPv6(ipv6Bytes(`fe80::1:0:0:2`), 0), `fe80::1:0:0:2`);
  assert.is(formatIPv6(ipv6Bytes(`2001:db8:0:1:1:1:1:1`), 0), `2001:db8:0:1:1:1:1:1`);
  assert.is(formatIPv6(ipv6Bytes(`::ffff:192.0.2.7`), 0), `::ffff:192.0.2.7`);
});

test(`catalogue: the original 22 maps first and unchanged, then the newer ones; kernel names unique at 15 chars`, () => {
  const original = CATALOGUE.slice(0, 22);
  assert.is(original.filter(map => map.keyKind === `conn_tuple`).length, 16);
  assert.is(original.filter(map => map.keyKind === `pid_tgid`).length, 6);
  assert.is(CATALOGUE.length, 39);
  const names = new Set(CATALOGUE.map(map => kernelName(map.name)));
  assert.is(names.size, CATALOGUE.length);
  assert.is(findCatalogueMap(`postgres_in_fli`)?.name, `postgres_in_flight`);
  assert.is(findCatalogueMap(`http2_dynamic_table`)?.tupleOffset, 8);
  assert.is(findCatalogueMap(`kafka_in_flight`)?.keySize, 56);
});

test(`map selection: exact names, prefixes, stray commas, unknown names`, () => {
  assert.equal(selectCatalogue({names: [`http_in_flight`, ``, ` `]}).map(m => m.name), [`http_in_flight`]);
  assert.equal(selectCatalogue({names: [`connection_stat`]}).map(m => m.name), [`connection_states`]);
  assert.equal(selectCatalogue({names: [`http2*`]}).map(m => m.name).sort(), [
    `http2_dynamic_counter_table`, `http2_dynamic_table`, `http2_in_flight`, `http2_incomplete_frames`,
    `http2_interesting_dynamic_table_set`, `http2_iterations`, `http2_remainder`,
  ]);
  // Judged against processes: the 6 TLS pid_tgid maps, 3 more pid_tgid, 2 pid_fd, 2 goroutine, ssl_sock_by_ctx.
  assert.is(selectCatalogue({pidOnly: true}).length, 14);
  assert.throws(() => selectCatalogue({names: [`nope`]}), /known maps: connection_states/);
  assert.throws(() => selectCatalogue({connTupleOnly: true, pidOnly: true}), /select no map/);
});

test.run();
