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
  const http = doc.connTupleMaps.find((map: any) => map.mapId === 1);
  assert.is(http.leaked, 12);
  assert.is(http.samples.length, 2);
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
  assert.equal(lines.filter(line => line.type === `report-map`).map(line => line.map), [`ssl_write_args`, `http_in_flight`]);
  const groups = lines.filter(line => line.type === `report-group`);
  assert.is(groups.length, 1);
  assert.equal(groups[0].rows.map((row: any) => [row.value, row.count]), [[`10.0.0.1`, 4], [`10.0.0.2`, 4], [`10.0.0.3`, 4]]);
  assert.is(groups[0].notApplicable, 1);
  assert.is(lines.at(-1)!.type, `report-summary`);
  assert.is(lines.at(-1)!.leaked, 13);
});

test(`markdown: a table of maps, samples in code blocks, group tables`, async () => {
  const run = await runCommand([`report`, `--format`, `markdown`, `--group-by`, `dport,comm`], {stdin: ndjson(records())});
  assert.match(run.stdout, /^# USM eBPF map leak report\n/);
  assert.match(run.stdout, /\| http_in_flight \| 1 \| conn_tuple \| 1\/13 \| 12 \| 0 \| 0 \| 13\/100 \(13\.0%\) \|/);
  assert.match(run.stdout, /```\n10\.0\.0\.1:30000 -> 10\.9\.9\.9:5432 \(netns=4026531840, pid=4242\) \[no_connection\]\n/);
  assert.match(run.stdout, /\.\.\. and 2 more\n```/);
  assert.match(run.stdout, /### By destination port \(dport\)\n\n\| count \| dport \|\n\|---:\|---\|\n\| 8 \| 5432 \|\n\| 4 \| 6379 \|/);
  assert.match(run.stdout, /### By command \(comm\)\n\n\| count \| comm \|\n\|---:\|---\|\n\| 13 \| postgres \|/);
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
    for (const map of [...doc.pidMaps, ...doc.connTupleMaps])
      delete map.samples;
    return doc;
  };
  assert.equal(strip(backward.stdout), strip(forward.stdout));
});

test(`process gone from the snapshot shows as dead in the comm grouping`, async () => {
  const input = [mapRecord(1, `http_in_flight`), verdict(1, `http_in_flight`, tupleKey({saddr: `10.0.0.1`, sport: 9, daddr: `10.0.0.2`, dport: 80, netns: NS, pid: 31337}), `leaked`, `no_connection`)];
  const run = await runCommand([`report`, `--format`, `json`, `--group-by`, `comm,pid`], {stdin: ndjson(input)});
  const doc = JSON.parse(run.stdout);
  assert.equal(doc.groups[0].rows[0], {value: `dead`, label: `dead`, count: 1});
  assert.equal(doc.groups[1].rows[0], {value: `31337`, label: `31337 (dead)`, count: 1});
});

test.run();
