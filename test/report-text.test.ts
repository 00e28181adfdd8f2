// report on hand-made records: every section of the text report, the original tool's formats,
// the true "... and K more", unknowns apart from valid, groups, exit codes, colour rules.
import {test} from 'uvu';
import * as assert from 'uvu/assert';
import {ExitCode} from '../src/exitCodes.ts';
import {runCommand} from './helpers/cli.ts';
import {mapRecord, mapStats, ndjson, netns, pidKey, processRecord, summary, tupleKey, verdict} from './helpers/records.ts';

const NS = 4026531840;
const OTHER_NS = 4026532999;

/** A host with a PID map (alive, 2 dead threads of pid 999, pid 0, a gone thread) and two tuple maps. */
function world() {
  const records: Array<object> = [
    {type: `header`, v: 1, stage: `scan`, tool: `usm-leak-detector`, toolVersion: `0.1.0`, host: `demo-host`, kernel: `6.1.0`, time: `2024-01-01T00:00:00.000Z`, timeMs: 0},
    mapRecord(11, `ssl_read_args`, {maxEntries: 1024}),
    verdict(11, `ssl_read_args`, pidKey(100, 100), `alive`, `process_alive`),
    verdict(11, `ssl_read_args`, pidKey(999, 1000), `leaked`, `process_gone`),
    verdict(11, `ssl_read_args`, pidKey(999, 1001), `leaked`, `process_gone`),
    verdict(11, `ssl_read_args`, pidKey(0, 0), `leaked`, `process_gone`),
    verdict(11, `ssl_read_args`, pidKey(100, 123), `leaked`, `thread_gone`),
    verdict(11, `ssl_read_args`, null, `unknown`, `undecodable_key`),
    mapStats(11, `ssl_read_args`, 6),
    mapRecord(12, `ssl_write_args`, {maxEntries: 10}),
    verdict(12, `ssl_write_args`, pidKey(100, 100), `alive`, `process_alive`),
    mapStats(12, `ssl_write_args`, 1),
    // conn tuple: 9.5 of 10 full -> warning
    mapRecord(20, `pid_fd_by_tuple`, {maxEntries: 10}),
    verdict(20, `pid_fd_by_tuple`, tupleKey({saddr: `10.0.0.1`, sport: 40000, daddr: `10.0.0.2`, dport: 443, netns: NS, pid: 100}), `alive`, `established`),
    verdict(20, `pid_fd_by_tuple`, tupleKey({saddr: `10.0.0.1`, sport: 40001, daddr: `10.0.0.2`, dport: 443, netns: NS, pid: 100}), `leaked`, `no_connection`, {owner: {pid: 100, comm: `curl`}}),
    verdict(20, `pid_fd_by_tuple`, tupleKey({saddr: `2001:db8::1`, sport: 8080, daddr: `::`, dport: 0, netns: NS, pid: 555}), `leaked`, `no_listener`),
    verdict(20, `pid_fd_by_tuple`, tupleKey({saddr: `2001:db8::1`, sport: 5000, daddr: `2001:db8::2`, dport: 443, netns: OTHER_NS}), `leaked`, `unknown_namespace`),
    verdict(20, `pid_fd_by_tuple`, tupleKey({saddr: `10.0.0.1`, sport: 40002, daddr: `10.0.0.3`, dport: 5432, netns: NS}), `alive`, `race`, {checks: 2}),
    verdict(20, `pid_fd_by_tuple`, tupleKey({saddr: `10.0.0.1`, sport: 40003, daddr: `10.0.0.3`, dport: 5432, netns: NS}), `resolved`, `removed_from_map`, {checks: 2}),
    verdict(20, `pid_fd_by_tuple`, tupleKey({saddr: `10.0.0.1`, sport: 40004, daddr: `10.0.0.3`, dport: 5432, netns: NS}), `unknown`, `namespace_unreadable`),
    mapStats(20, `pid_fd_by_tuple`, 10, {}),
    mapRecord(21, `http_in_flight`, {maxEntries: 4096}),
    verdict(21, `http_in_flight`, tupleKey({saddr: `10.0.0.1`, sport: 40000, daddr: `10.0.0.2`, dport: 443, netns: NS, pid: 100}), `alive`, `established`),
    mapStats(21, `http_in_flight`, 1),
    netns(NS, [1, 100]),
    processRecord(100, `curl`),
    processRecord(1, `init`),
  ];
  return records;
}

test(`text: the answer first, then one line per map worst first, one totals block`, async () => {
  const run = await runCommand([`report`], {stdin: ndjson(world())});
  assert.is(run.code, ExitCode.LeaksFound, run.stderr);
  const lines = run.stdout.split(`\n`);
  assert.is(lines[0], `LEAKING: 7 leaked entries in 2 of 4 maps, seen at one look only (no recheck); 2 not judged; pid_fd_by_tuple is nearly full: 10/10 (100.0%)`);
  assert.is(lines[1], `Host demo-host (kernel 6.1.0), data from 2024-01-01T00:00:00.000Z`);
  // worst first: most leaked, then fullest; the full catalogue names; one fraction style
  const table = lines.slice(lines.indexOf(`Maps, worst first`) + 1, lines.indexOf(`Maps, worst first`) + 6);
  assert.equal(table, [
    `  map              key         leaked       alive  unknown  fill`,
    `  ssl_read_args    pid_tgid    4/6 (66.7%)      1        1  6/1024 (0.6%)`,
    `  pid_fd_by_tuple  conn_tuple  3/7 (42.9%)      2        1  10/10 (100.0%) NEARLY FULL`,
    `  ssl_write_args   pid_tgid    0/1 (0.0%)       1        0  1/10 (10.0%)`,
    `  http_in_flight   conn_tuple  0/1 (0.0%)       1        0  1/4096 (0.0%)`,
  ]);
  // one totals block, nothing of the old three
  assert.is(run.stdout.match(/^Totals$/gm)?.length, 1);
  assert.not.match(run.stdout, /## Summary|## Overall/);
  assert.match(run.stdout, /\n  leaked          7\/15 \(46\.7%\), 0 confirmed at two looks\n/);
  assert.match(run.stdout, /\n  not judged      2 \(unknown: neither alive nor leaked\)\n/);
  // every percentage has one decimal
  for (const pct of run.stdout.match(/\d+(?:\.\d+)?%/g) ?? [])
    assert.match(pct, /^\d+\.\d%$/);
});

test(`text: the detail of leaking maps, samples structured in columns, listeners as *:*, pid_tgid as pid and tid`, async () => {
  const run = await runCommand([`report`], {stdin: ndjson(world())});
  const out = run.stdout;
  assert.match(out, /\nssl_read_args \(id 11\)\n  leaked 4\/6 \(66\.7%\), seen at one look only; fill 6\/1024 \(0\.6%\)\n  reasons: process_gone 3, thread_gone 1\n  dead pids: 0, 999\n  entries of exited threads \(process still alive\): 1\n  not judged \(unknown\): undecodable_key 1\n/);
  assert.match(out, /    pid_tgid  4290672329704 +pid 999 tid 1000 \(gone\)  process_gone\n/);
  assert.match(out, /    pid_tgid  429496729723 +pid 100 tid 123 \(curl\) +thread_gone\n/);
  assert.match(out, /    tcp  10\.0\.0\.1:40001      ->  10\.0\.0\.2:443       netns 4026531840  pid 100 \(curl\)  no_connection\n/);
  assert.match(out, /    tcp  \[2001:db8::1\]:8080  ->  \*:\* +netns 4026531840  pid 555 \(gone\)  no_listener\n/);
  assert.match(out, /    tcp  \[2001:db8::1\]:5000  ->  \[2001:db8::2\]:443  netns 4026532999  no pid in key   unknown_namespace\n/);
  assert.match(out, /  races cleared by the recheck: 1\n/);
  assert.match(out, /  removed from the map before the recheck \(not leaks\): 1\n/);
  assert.match(out, /WARNING: pid_fd_by_tuple is nearly full: 10\/10 \(100\.0%\) of max_entries/);
  // clean maps are one line in the table, no detail
  assert.not.match(out, /\nhttp_in_flight \(id/);
  // a listener prints one way everywhere: *:* in samples, * in the dport and daddr groups
  assert.not.match(out, /:: ?0|\[::\]:0|0\.0\.0\.0:0/);
  assert.match(out, /By destination port \(dport\) \(2 distinct\)\n  2  443\n  1  \* \(listener\)\n/);
});

test(`text: leaks grouped by cause, processes named or gone, pid 0 apart, namespaces resolved`, async () => {
  const run = await runCommand([`report`], {stdin: ndjson(world())});
  const out = run.stdout;
  assert.match(out, /By reason \(5 distinct\)\n  3  process_gone\n  1  no_connection\n  1  no_listener\n  1  thread_gone\n  1  unknown_namespace\n/);
  // a tuple without a pid is not a process: counted apart, not as gone
  assert.match(out, /By process \(pid\) \(4 distinct\)\n  2  100 \(curl\)\n  2  999 \(gone\)\n  1  0 \(gone\)\n  1  555 \(gone\)\n  \(1 leaked entry has no pid in its key\)\n/);
  assert.match(out, /By network namespace \(2 distinct\)\n  2  4026531840 \(pid 1, 100\)\n  1  4026532999 \(not found on the host\)\n  \(4 leaked entries have no netns: keys without a tuple \(pid_tgid, pid_fd, goroutine, pointer\)\)\n/);
  assert.match(out, /By map \(2 distinct\)\n  4  ssl_read_args \(id 11\)\n  3  pid_fd_by_tuple \(id 20\)\n/);
});

test(`text: what to do next, once per reason that occurs, leaked reasons first`, async () => {
  const run = await runCommand([`report`], {stdin: ndjson(world())});
  const next = run.stdout.slice(run.stdout.indexOf(`What to do next`));
  const reasons = [...next.matchAll(/^- ([a-z_]+):/gm)].map(match => match[1]);
  // Then the maps' notes: ssl_read_args has the agent's dead-PID cleaner.
  assert.equal(reasons, [`process_gone`, `no_connection`, `no_listener`, `thread_gone`, `unknown_namespace`, `namespace_unreadable`, `undecodable_key`, `seen_once`, `ssl_read_args`]);
  assert.match(next, /--recheck-delay/);
});

test(`the "... and K more" count is the true count, past any cap (B7)`, async () => {
  const records: Array<object> = [mapRecord(30, `connection_protocol`, {maxEntries: 100_000})];
  for (let i = 0; i < 150; i++)
    records.push(verdict(30, `connection_protocol`, tupleKey({saddr: `10.1.0.1`, sport: 10000 + i, daddr: `10.1.0.2`, dport: 80, netns: NS}), `leaked`, `no_connection`, {checks: 2}));
  const run = await runCommand([`report`], {stdin: ndjson(records)});
  assert.is(run.code, ExitCode.LeaksFound);
  assert.match(run.stdout, /^LEAKING: 150 leaked entries in 1 of 1 map, confirmed at two looks; connection_protocol is the fullest: 150\/100000 \(0\.1%\)\n/);
  // the full name everywhere, the kernel name only beside it in the detail
  assert.match(run.stdout, /\nconnection_protocol \(id 30, kernel name connection_prot\)\n/);
  assert.is(run.stdout.match(/connection_prot\b/g)?.length, 1);
  assert.is(run.stdout.match(/^    tcp /gm)?.length, 10);
  assert.match(run.stdout, /    \.\.\. and 140 more \(usm-leak-detector report --list --map connection_protocol\)\n/);
  const few = await runCommand([`report`, `--samples`, `3`], {stdin: ndjson(records)});
  assert.is(few.stdout.match(/^    tcp /gm)?.length, 3);
  assert.match(few.stdout, /    \.\.\. and 147 more/);
});

test(`no leaks: CLEAN first, exit 0`, async () => {
  const records = [
    mapRecord(40, `http_in_flight`),
    verdict(40, `http_in_flight`, tupleKey({saddr: `10.0.0.1`, sport: 1, daddr: `10.0.0.2`, dport: 80, netns: NS}), `alive`, `established`),
    mapRecord(41, `redis_in_flight`),
  ];
  const run = await runCommand([`report`], {stdin: ndjson(records)});
  assert.is(run.code, ExitCode.Ok);
  assert.match(run.stdout, /^CLEAN: 0 leaked of 1 entry in 2 maps; http_in_flight is the fullest: 1\/1024 \(0\.1%\)\n/);
  assert.match(run.stdout, /  redis_in_flight  conn_tuple  0\/0 +0 +0  0\/1024 \(0\.0%\)\n/);
  assert.not.match(run.stdout, /Leaks by cause|Map detail/);
});

test(`no leaks but entries not judged: INCONCLUSIVE, with why`, async () => {
  const records = [
    mapRecord(40, `http_in_flight`),
    verdict(40, `http_in_flight`, tupleKey({saddr: `10.0.0.1`, sport: 1, daddr: `10.0.0.2`, dport: 80, netns: NS}), `alive`, `established`),
    verdict(40, `http_in_flight`, tupleKey({saddr: `10.0.0.1`, sport: 2, daddr: `10.0.0.2`, dport: 80, netns: NS}), `unknown`, `namespace_unreadable`),
  ];
  const run = await runCommand([`report`], {stdin: ndjson(records)});
  assert.match(run.stdout, /^INCONCLUSIVE: 0 leaked, but 1 of 2 entries could not be judged; http_in_flight is the fullest: 2\/1024 \(0\.2%\)\n/);
  assert.match(run.stdout, /- namespace_unreadable: /);
});

test(`maps sharing a name are reported per id`, async () => {
  const key = tupleKey({saddr: `10.0.0.1`, sport: 1, daddr: `10.0.0.2`, dport: 80, netns: NS});
  const records = [
    mapRecord(51, `connection_protocol`), mapRecord(52, `connection_protocol`),
    verdict(51, `connection_protocol`, key, `leaked`, `no_connection`),
    verdict(52, `connection_protocol`, key, `alive`, `established`),
  ];
  const run = await runCommand([`report`], {stdin: ndjson(records)});
  assert.match(run.stdout, /  connection_protocol \[id 51\]  conn_tuple  1\/1 \(100\.0%\)/);
  assert.match(run.stdout, /  connection_protocol \[id 52\]  conn_tuple  0\/1 \(0\.0%\)/);
});

test(`a stream filtered down to leaked verdicts takes its counts from the summary records`, async () => {
  const records = [
    verdict(60, `http_in_flight`, tupleKey({saddr: `10.0.0.1`, sport: 1, daddr: `10.0.0.2`, dport: 80, netns: NS}), `leaked`, `no_connection`, {checks: 2}),
    summary(`validate`, 60, `http_in_flight`, {total: 50, alive: 47, leaked: 3}),
    summary(`recheck`, 60, `http_in_flight`, {total: 50, alive: 48, leaked: 1, raceFiltered: 1, resolved: 1}),
  ];
  const run = await runCommand([`report`], {stdin: ndjson(records)});
  assert.match(run.stdout, /^LEAKING: 1 leaked entry in 1 of 1 map, confirmed at two looks\n/);
  assert.match(run.stdout, /  http_in_flight  conn_tuple  1\/50 \(2\.0%\)/);
  assert.match(run.stdout, /races cleared by the recheck: 1/);
});

test(`the answer says how far apart the two looks were, from recheck's summaries`, async () => {
  const records = [
    mapRecord(60, `http_in_flight`),
    verdict(60, `http_in_flight`, tupleKey({saddr: `10.0.0.1`, sport: 1, daddr: `10.0.0.2`, dport: 80, netns: NS}), `leaked`, `no_connection`, {checks: 2}),
    {...summary(`recheck`, 60, `http_in_flight`, {total: 1, alive: 0, leaked: 1}), firstLookMs: 1_000_000, secondLookMs: 1_012_500, delayMs: 10_000},
  ];
  const run = await runCommand([`report`], {stdin: ndjson(records)});
  assert.match(run.stdout, /^LEAKING: 1 leaked entry in 1 of 1 map, confirmed at two looks 12\.5 s apart;/);
  const json = JSON.parse((await runCommand([`report`, `--format`, `json`], {stdin: ndjson(records)})).stdout);
  assert.is(json.conclusion.looksApartSeconds, 12.5);
});

test(`colour only on a TTY and never with NO_COLOR`, async () => {
  const stdin = () => ndjson(world());
  const piped = await runCommand([`report`], {stdin: stdin()});
  assert.not.match(piped.stdout, /\x1b\[/);
  const tty = await runCommand([`report`], {stdin: stdin(), stdoutIsTTY: true, env: {...process.env, NO_COLOR: ``}});
  assert.match(tty.stdout, /\x1b\[31m/);
  const noColor = await runCommand([`report`], {stdin: stdin(), stdoutIsTTY: true, env: {...process.env, NO_COLOR: `1`}});
  assert.not.match(noColor.stdout, /\x1b\[/);
});

test(`bad lines are named and skipped, the report still comes out`, async () => {
  const text = `${ndjson(world())}{oops\n${JSON.stringify({type: `verdict`, v: 1, mapId: `x`})}\n`;
  const run = await runCommand([`report`], {stdin: text});
  assert.is(run.code, ExitCode.LeaksFound);
  assert.match(run.stderr, /stdin:\d+: not JSON/);
  assert.match(run.stderr, /stdin:\d+: invalid verdict record/);
  assert.match(run.stdout, /^LEAKING: 7 leaked entries/);
});

test(`an empty input (an upstream stage failed) is exit 3 saying what is missing, never a clean 0`, async () => {
  const run = await runCommand([`report`], {stdin: ``});
  assert.is(run.code, ExitCode.Environment);
  assert.is(run.stdout, ``);
  assert.match(run.stderr, /nothing to report: the input has no verdict, summary or map records \(not even a header/);
});

test(`map entries without verdicts (a dump piped straight in) are exit 3 that says what to do`, async () => {
  const entry = {type: `entry`, v: 1, mapId: 1, map: `http_in_flight`, keyHex: `00`, key: null};
  const run = await runCommand([`report`], {stdin: ndjson([mapRecord(1, `http_in_flight`), entry, entry])});
  assert.is(run.code, ExitCode.Environment);
  assert.is(run.stdout, ``);
  assert.match(run.stderr, /2 map entries but no verdicts: judge them first/);
});

test.run();
