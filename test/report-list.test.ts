// report --list and the filters (--map, --reason, --netns, --pid) on the recorded sample
// (samples/capture.ndjson): one row per leaked verdict, nothing else on stdout, filters that cut
// the list and the report alike.
import {readFileSync} from 'node:fs';
import {test} from 'uvu';
import * as assert from 'uvu/assert';
import {ExitCode} from '../src/exitCodes.ts';
import {parseLines, runCommand} from './helpers/cli.ts';

const SAMPLE = new URL(`../samples/capture.ndjson`, import.meta.url).pathname;
const records = parseLines(readFileSync(SAMPLE, `utf8`));
const leaked = records.filter(record => record.type === `verdict` && record.status === `leaked`);

/** The rows of a --list output, split on runs of two or more spaces (cells have no double spaces). */
function rows(stdout: string): Array<Array<string>> {
  return stdout.trimEnd().split(`\n`).map(line => line.split(/ {2,}/).map(cell => cell.trim()));
}

test(`--list: a header row, then exactly one aligned row per leaked entry`, async () => {
  const run = await runCommand([`report`, `--list`, SAMPLE]);
  assert.is(run.code, ExitCode.LeaksFound, run.stderr);
  const lines = run.stdout.trimEnd().split(`\n`);
  assert.is(lines.length, 1 + leaked.length);
  assert.is(leaked.length, 36);
  assert.match(lines[0]!, /^MAP +REASON +PROTO +SRC +DST +NETNS +PID +COMM +CHECKS$/);
  // columns line up: every row has its REASON where the header has it
  const reasonAt = lines[0]!.indexOf(`REASON`);
  for (const line of lines.slice(1))
    assert.is(line[reasonAt - 1], ` `, line);
  const table = rows(run.stdout);
  const byMap = new Map<string, number>();
  for (const row of table.slice(1))
    byMap.set(row[0]!, (byMap.get(row[0]!) ?? 0) + 1);
  assert.equal(Object.fromEntries(byMap), {pid_fd_by_tuple: 4, http2_in_flight: 1, connection_protocol: 27, tls_enhanced_tags: 1, ssl_read_args: 3});
  // a listener prints as *:*, an extra key field stays in its cell, a gone process says so
  assert.ok(table.some(row => row[1] === `no_listener` && row[4] === `*:*`));
  assert.ok(table.some(row => row[4] === `127.0.0.1:8443[stream_id=3]`));
  assert.ok(table.some(row => row[0] === `ssl_read_args` && row[6] === `4595/4596` && row[7] === `(gone)`));
});

test(`--list filters: --map (full or kernel name), --reason, --netns, --pid, repeatable, combined`, async () => {
  const count = async (...args: Array<string>) => {
    const run = await runCommand([`report`, `--list`, ...args, SAMPLE]);
    return {rows: rows(run.stdout).slice(1), code: run.code, stderr: run.stderr};
  };
  const expect = (pick: (verdict: Record<string, any>) => boolean) => leaked.filter(pick).length;
  const conn = await count(`--map`, `connection_protocol`);
  assert.is(conn.rows.length, expect(v => v.map === `connection_protocol`));
  assert.is(conn.rows.length, 27);
  assert.is((await count(`--map`, `connection_prot`)).rows.length, 27);
  assert.is((await count(`--map`, `connection_protocol`, `--map`, `ssl_read_args`)).rows.length, 30);
  assert.is((await count(`--reason`, `no_connection`)).rows.length, expect(v => v.reason === `no_connection`));
  assert.is((await count(`--reason`, `process_gone,thread_gone`)).rows.length, 3);
  const netns = await count(`--netns`, `4026530000`);
  assert.equal(netns.rows.map(row => [row[0], row[1]]), [[`pid_fd_by_tuple`, `unknown_namespace`]]);
  assert.is((await count(`--netns`, `4026531833`)).rows.length, expect(v => v.key?.netns === 4026531833));
  const pid = await count(`--pid`, `4595`);
  assert.is(pid.rows.length, 2);
  assert.ok(pid.rows.every(row => row[6]!.startsWith(`4595/`)));
  assert.is((await count(`--pid`, `4564`, `--map`, `connection_protocol`)).rows.length, expect(v => v.map === `connection_protocol` && v.key?.pid === 4564));
  // nothing matches: the header alone, and nothing was judged: exit 3, never a clean 0
  const none = await count(`--pid`, `1`);
  assert.is(none.rows.length, 0);
  assert.is(none.code, ExitCode.Environment);
  assert.match(none.stderr, /nothing to report: no entry of the input matches --pid 1/);
  // a filter that keeps only alive entries of a map: judged and clean, exit 0
  const clean = await count(`--map`, `connection_protocol`, `--reason`, `established`);
  assert.is(clean.rows.length, 0);
  assert.is(clean.code, ExitCode.Ok, clean.stderr);
});

test(`--list --format ndjson: a header, then one leak record per leaked entry`, async () => {
  const run = await runCommand([`report`, `--list`, `--format`, `ndjson`, `--reason`, `no_listener`, SAMPLE]);
  const lines = parseLines(run.stdout);
  assert.is(lines[0]!.type, `header`);
  assert.is(lines.length, 2);
  const leak = lines[1]!;
  assert.is(leak.type, `leak`);
  assert.is(leak.map, `pid_fd_by_tuple`);
  assert.is(leak.reason, `no_listener`);
  assert.is(leak.listener, true);
  assert.is(leak.pid, 4564);
  assert.is(leak.comm, `node`);
  assert.is(leak.checks, 2);
  assert.is(leak.key.sport, 2);
  const all = parseLines((await runCommand([`report`, `--list`, `--format`, `ndjson`, SAMPLE])).stdout);
  assert.is(all.filter(record => record.type === `leak`).length, 36);
});

test(`the filters cut the normal report too`, async () => {
  const run = await runCommand([`report`, `--map`, `ssl_read_args`, `--reason`, `process_gone`, SAMPLE]);
  assert.is(run.code, ExitCode.LeaksFound);
  assert.match(run.stdout, /^LEAKING: 2 leaked entries in 1 of 1 map, confirmed at two looks; ssl_read_args is the fullest: 6\/64 \(9\.4%\)\n/);
  assert.match(run.stdout, /\nFiltered: --map ssl_read_args --reason process_gone\n/);
  assert.not.match(run.stdout, /connection_protocol/);
  const json = JSON.parse((await runCommand([`report`, `--format`, `json`, `--netns`, `4026531833`, SAMPLE])).stdout);
  assert.is(json.summary.leaked, leaked.filter(v => v.key?.netns === 4026531833).length);
});

test(`bad filter values are usage errors`, async () => {
  const reason = await runCommand([`report`, `--list`, `--reason`, `leaky`, SAMPLE]);
  assert.is(reason.code, ExitCode.Usage);
  assert.match(reason.stderr, /--reason leaky: unknown reason/);
  const pid = await runCommand([`report`, `--pid`, `abc`, SAMPLE]);
  assert.is(pid.code, ExitCode.Usage);
  const format = await runCommand([`report`, `--list`, `--format`, `markdown`, SAMPLE]);
  assert.is(format.code, ExitCode.Usage);
  assert.is(format.stdout, ``);
});

test(`samples/outputs/list-and-diff.ndjson is what --list and diff print for the sample`, async () => {
  const list = await runCommand([`report`, `--list`, `--format`, `ndjson`, SAMPLE]);
  const diff = await runCommand([`diff`, `--format`, `ndjson`, `--samples`, `2`, SAMPLE, SAMPLE]);
  const body = (text: string) => text.split(`\n`).slice(1).join(`\n`);
  const golden = readFileSync(new URL(`../samples/outputs/list-and-diff.ndjson`, import.meta.url), `utf8`);
  assert.ok(`${body(list.stdout)}${body(diff.stdout)}` === golden, `samples/outputs/list-and-diff.ndjson is stale: regenerate it as samples/outputs/README.md says`);
});

test(`--list shows an AGE column when the entries carry their age, and the samples say it too`, async () => {
  const key = (sport: number) => ({kind: `conn_tuple`, family: `v4`, proto: `tcp`, saddr: `10.0.0.1`, sport, daddr: `10.0.0.2`, dport: 80, src: `10.0.0.1:${sport}`, dst: `10.0.0.2:80`, netns: 1, pid: 0, metadata: 1});
  const verdict = (sport: number, ageSeconds?: number) => JSON.stringify({
    type: `verdict`, v: 1, mapId: 3, map: `http_in_flight`, keyHex: sport.toString(16).padStart(4, `0`), key: key(sport),
    status: `leaked`, reason: `no_connection`, checks: 2, ...(ageSeconds === undefined ? {} : {ageSeconds, ageField: `request_started`}),
  });
  const stdin = `${[verdict(1, 7200), verdict(2, 45), verdict(3)].join(`\n`)}\n`;
  const run = await runCommand([`report`, `--list`], {stdin});
  const table = rows(run.stdout);
  assert.equal(table[0]!.at(-1), `AGE`);
  assert.equal(table.slice(1).map(row => row.at(-1)), [`2.0 h`, `45 s`, `-`]);
  const text = await runCommand([`report`], {stdin});
  assert.match(text.stdout, /no_connection  age 2\.0 h\n/);
  const without = await runCommand([`report`, `--list`], {stdin: `${verdict(4)}\n`});
  assert.not.match(without.stdout, /AGE/);
});

test(`the sample's first line gives the answer`, async () => {
  const run = await runCommand([`report`, SAMPLE]);
  assert.is(run.stdout.split(`\n`)[0], `LEAKING: 36 leaked entries in 5 of 6 maps, confirmed at two looks; connection_protocol is nearly full: 28/30 (93.3%)`);
});

test.run();
