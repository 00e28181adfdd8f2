// report's other formats (json, ndjson, markdown), --group-by, and input in any order.
import {test} from 'uvu';
import * as assert from 'uvu/assert';
import {ExitCode} from '../src/exitCodes.ts';
import {runCommand, parseLines} from './helpers/cli.ts';
import {mapRecord, mapStats, ndjson, netns, pidKey, processRecord, tupleKey, verdict} from './helpers/records.ts';

const NS = 4026531840;

function records(): Array<object> {
  const out: Array<object> = [
    mapRecord(1, `http_in_flight`, {maxEntries: 100}),
    mapRecord(2, `ssl_write_args`, {maxEntries: 100}),
    netns(NS, [1]),
    processRecord(4242, `postgres`),
  ];
  for (let i = 0; i < 12; i++)
    out.push(verdict(1, `http_in_flight`, tupleKey({saddr: `10.0.0.${1 + (i % 3)}`, sport: 30000 + i, daddr: `10.9.9.9`, dport: i < 8 ? 5432 : 6379, netns: NS, pid: 4242}), `leaked`, `no_connection`));
  out.push(verdict(1, `http_in_flight`, tupleKey({saddr: `10.0.0.1`, sport: 1, daddr: `10.9.9.9`, dport: 80, netns: NS}), `alive`, `established`));
  out.push(verdict(2, `ssl_write_args`, pidKey(4242, 4243), `leaked`, `thread_gone`));
  out.push(mapStats(1, `http_in_flight`, 13), mapStats(2, `ssl_write_args`, 1));
  return out;
}

test(`json: one document with maps, groups and summary; true counts`, async () => {
  const run = await runCommand([`report`, `--format`, `json`, `--samples`, `2`], {stdin: ndjson(records())});
  assert.is(run.code, ExitCode.LeaksFound);
  const doc = JSON.parse(run.stdout);
  assert.is(doc.type, `report`);
  assert.is(doc.summary.leaked, 13);
  assert.is(doc.conclusion.answer, `LEAKING`);
  assert.is(doc.conclusion.leaked, 13);
  // worst first
  assert.equal(doc.maps.map((map: any) => map.map), [`http_in_flight`, `ssl_write_args`]);
  const http = doc.maps[0];
  assert.is(http.leaked, 12);
  assert.is(http.samples.length, 2);
  // samples are structured: map, key fields, reason, pid, comm, checks; no pre-rendered text
  assert.equal(http.samples[0], {
    mapId: 1, map: `http_in_flight`, reason: `no_connection`, keyHex: http.samples[0].keyHex,
    key: {kind: `conn_tuple`, family: `v4`, proto: `tcp`, saddr: `10.0.0.1`, sport: 30000, daddr: `10.9.9.9`, dport: 5432, src: `10.0.0.1:30000`, dst: `10.9.9.9:5432`, netns: NS, pid: 4242, metadata: 1},
    listener: false, pid: 4242, comm: `postgres`, processGone: false, checks: 1, ageSeconds: null,
  });
  assert.not.ok(JSON.stringify(doc.maps).includes(`"text"`));
  assert.equal(doc.hints.map((hint: any) => hint.reason), [`no_connection`, `thread_gone`, `seen_once`]);
  assert.is(http.moreLeaked, 10);
  assert.is(http.fill, 0.13);
  assert.is(http.reasons.leaked.no_connection, 12);
  const dport = doc.groups.find((group: any) => group.field === `dport`);
  assert.equal(dport.rows.map((row: any) => [row.value, row.count]), [[`5432`, 8], [`6379`, 4]]);
  const pid = doc.groups.find((group: any) => group.field === `pid`);
  assert.equal(pid.rows[0], {value: `4242`, label: `4242 (postgres)`, count: 13});
});

test(`ndjson: a header, one report-map per map, one report-group per grouping, one report-summary`, async () => {
  const run = await runCommand([`report`, `--format`, `ndjson`, `--group-by`, `saddr`], {stdin: ndjson(records())});
  const lines = parseLines(run.stdout);
  assert.is(lines[0].type, `header`);
  assert.is(lines[0].stage, `report`);
  assert.equal(lines.filter(line => line.type === `report-map`).map(line => line.map), [`http_in_flight`, `ssl_write_args`]);
  const groups = lines.filter(line => line.type === `report-group`);
  assert.is(groups.length, 1);
  assert.equal(groups[0].rows.map((row: any) => [row.value, row.count]), [[`10.0.0.1`, 4], [`10.0.0.2`, 4], [`10.0.0.3`, 4]]);
  assert.is(groups[0].notApplicable, 1);
  assert.is(lines.at(-1)!.type, `report-summary`);
  assert.is(lines.at(-1)!.leaked, 13);
  assert.is(lines.at(-1)!.conclusion.answer, `LEAKING`);
});

test(`markdown: the answer first, a table of maps, samples as tables, group tables, hints`, async () => {
  const run = await runCommand([`report`, `--format`, `markdown`, `--group-by`, `dport,comm`], {stdin: ndjson(records())});
  assert.match(run.stdout, /^# USM eBPF map leak report\n\n\*\*LEAKING\*\*: 13 leaked entries in 2 of 2 maps, seen at one look only \(no recheck\); http\\_in\\_flight is the fullest: 13\/100 \(13\.0%\)\n/);
  assert.match(run.stdout, /\| http\\_in\\_flight \| 1 \| conn_tuple \| 12\/13 \(92\.3%\) \| 1 \| 0 \| 13\/100 \(13\.0%\) \|/);
  assert.match(run.stdout, /\| no_connection \| tcp \| 10\.0\.0\.1:30000 \| 10\.9\.9\.9:5432 \| 4026531840 \| 4242 \| postgres \| 1 \|\n/);
  assert.match(run.stdout, /\.\.\. and 2 more/);
  assert.match(run.stdout, /### By destination port \(dport\)\n\n\| count \| dport \|\n\|---:\|---\|\n\| 8 \| 5432 \|\n\| 4 \| 6379 \|/);
  assert.match(run.stdout, /### By command \(comm\)\n\n\| count \| comm \|\n\|---:\|---\|\n\| 13 \| postgres \|/);
  assert.match(run.stdout, /## What to do next\n\n- \*\*no_connection\*\*: /);
});

test(`--group-by rejects an unknown field with exit 2`, async () => {
  const run = await runCommand([`report`, `--group-by`, `colour`], {stdin: ndjson(records())});
  assert.is(run.code, ExitCode.Usage);
  assert.match(run.stderr, /--group-by colour: unknown field/);
  assert.is(run.stdout, ``);
});

test(`records in any order give the same report`, async () => {
  const forward = await runCommand([`report`, `--format`, `json`], {stdin: ndjson(records())});
  const backward = await runCommand([`report`, `--format`, `json`], {stdin: ndjson(records().reverse())});
  const strip = (text: string) => {
    const doc = JSON.parse(text);
    // sample choice follows stream order; everything else must agree
    for (const map of doc.maps)
      delete map.samples;
    return doc;
  };
  assert.equal(strip(backward.stdout), strip(forward.stdout));
});

test(`--group-by comm: only processes the snapshot shows gone are dead; no pid in the key is apart`, async () => {
  const tuple = (sport: number, pid: number) => tupleKey({saddr: `10.0.0.1`, sport, daddr: `10.0.0.2`, dport: 80, netns: NS, pid});
  const input = [
    mapRecord(1, `http_in_flight`),
    {type: `snapshot`, v: 1, of: `pids`, procRoot: `/proc`, time: `2024-01-01T00:00:00.000Z`, timeMs: 0, count: 1, complete: true},
    processRecord(4242, `postgres`),
    verdict(1, `http_in_flight`, tuple(1, 31337), `leaked`, `no_connection`, {owner: {pid: 31337, comm: null}}),
    verdict(1, `http_in_flight`, tuple(2, 31337), `leaked`, `no_connection`, {owner: {pid: 31337, comm: null}}),
    verdict(1, `http_in_flight`, tuple(3, 4242), `leaked`, `no_connection`),
    verdict(1, `http_in_flight`, tuple(4, 0), `leaked`, `no_connection`),
    verdict(1, `http_in_flight`, tuple(5, 0), `leaked`, `no_connection`),
    verdict(1, `http_in_flight`, tuple(6, 0), `leaked`, `no_connection`),
  ];
  const run = await runCommand([`report`, `--format`, `json`, `--group-by`, `comm,pid`], {stdin: ndjson(input)});
  const doc = JSON.parse(run.stdout);
  assert.equal(doc.groups[0].rows, [{value: `(gone)`, label: `(gone)`, count: 2}, {value: `postgres`, label: `postgres`, count: 1}]);
  assert.is(doc.groups[0].notApplicable, 3);
  assert.equal(doc.groups[1].rows, [{value: `31337`, label: `31337 (gone)`, count: 2}, {value: `4242`, label: `4242 (postgres)`, count: 1}]);
  const text = await runCommand([`report`, `--group-by`, `comm`], {stdin: ndjson(input)});
  assert.match(text.stdout, /By command \(comm\) \(2 distinct\)\n  2  \(gone\)\n  1  postgres\n  \(3 leaked entries have no pid in their key\)\n/);
});

test(`--group-by comm without a process snapshot: not known, never dead`, async () => {
  const input = [mapRecord(1, `http_in_flight`), verdict(1, `http_in_flight`, tupleKey({saddr: `10.0.0.1`, sport: 9, daddr: `10.0.0.2`, dport: 80, netns: NS, pid: 31337}), `leaked`, `no_connection`)];
  const run = await runCommand([`report`, `--format`, `json`, `--group-by`, `comm,pid`], {stdin: ndjson(input)});
  const doc = JSON.parse(run.stdout);
  assert.equal(doc.groups[0].rows[0], {value: `(not known)`, label: `(not known)`, count: 1});
  assert.equal(doc.groups[1].rows[0], {value: `31337`, label: `31337 (not known)`, count: 1});
});

test.run();
