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

test(`text: the original's PID section, with dead PIDs, gone threads and unknowns apart`, async () => {
  const run = await runCommand([`report`], {stdin: ndjson(world())});
  assert.is(run.code, ExitCode.LeaksFound, run.stderr);
  const out = run.stdout;
  assert.match(out, /USM eBPF Map Leak Detection \(PID-Keyed Maps\)\n={60}\n\n/);
  // 4 leaked of 6 entries: the undecodable key is neither valid nor leaked
  assert.match(out, /\nssl_read_args: 4\/6 entries \(66\.7% leaked, 1 unknown\)\n/);
  assert.match(out, /  Dead PIDs: \[0, 999\]\n/);
  assert.match(out, /  Entries of exited threads \(process still alive\): 1\n/);
  assert.match(out, /  Unknown \(not counted as valid\): undecodable_key 1\n/);
  assert.match(out, /\nssl_write_args: 0\/1 entries \(0\.0% leaked\)\n  Fill: 1\/10 entries \(10\.0% of max_entries\)\n  No leaks detected\n/);
  assert.match(out, /## Summary\n-{60}\nTotal maps checked: 2\nMaps with leaks: 1\nTotal leaked entries: 4\n/);
});

test(`text: the ConnTuple section, IPv6 printed right, listeners as *:*, fill warning, race and resolved`, async () => {
  const run = await runCommand([`report`], {stdin: ndjson(world())});
  const out = run.stdout;
  assert.match(out, /USM eBPF Map Leak Detection \(ConnTuple-Keyed Maps\)\n={60}\n\nNetwork Namespaces Discovered: 1\n\n## Connection Tuple-Keyed Maps\n-{60}\n/);
  assert.match(out, /\nhttp_in_flight: 1\/1 entries \(100% valid\)\n/);
  // 7 entries: 2 valid (alive, race) + 1 resolved, 3 leaked, 1 unknown
  assert.match(out, /\npid_fd_by_tuple: 3\/7 entries \(42\.86% valid, 3 leaked, 1 unknown\)\n/);
  assert.match(out, /  Fill: 10\/10 entries \(100\.0% of max_entries\)  WARNING: nearly full/);
  assert.match(out, /  Leaked entries: 3\n    10\.0\.0\.1:40001 -> 10\.0\.0\.2:443 \(netns=4026531840, pid=100\) \[no_connection\]\n/);
  assert.match(out, /    \[2001:db8::1\]:8080 -> \*:\* \(netns=4026531840, pid=555\) \[no_listener\]\n/);
  assert.match(out, /    \[2001:db8::1\]:5000 -> \[2001:db8::2\]:443 \(netns=4026532999, pid=0\) \[unknown_namespace\]\n/);
  assert.match(out, /  Race condition false positives filtered: 1\n/);
  assert.match(out, /  Removed from the map before the recheck \(not leaks\): 1\n/);
  assert.match(out, /Total maps checked: 2\nMaps with leaks: 1\nTotal leaked entries: 3\nRace condition false positives filtered: 1\n/);
  assert.match(out, /WARNING: pid_fd_by_tuple is 100\.0% full \(10\/10\)/);
  assert.match(out, /Host demo-host \(kernel 6\.1\.0\)/);
});

test(`text: leaks grouped by cause, top groups first, processes dead or named, namespaces resolved`, async () => {
  const run = await runCommand([`report`], {stdin: ndjson(world())});
  const out = run.stdout;
  assert.match(out, /## By reason \(5 distinct\)\n  3  process_gone\n  1  no_connection\n  1  no_listener\n  1  thread_gone\n  1  unknown_namespace\n/);
  assert.match(out, /## By process \(pid\) \(4 distinct\)\n  2  0 \(no pid in key\)\n  2  100 \(curl\)\n  2  999 \(dead\)\n  1  555 \(dead\)\n/);
  assert.match(out, /## By network namespace \(2 distinct\)\n  2  4026531840 \(pid 1, 100\)\n  1  4026532999 \(not found on the host\)\n  \(4 leaked entries have no netns\)\n/);
  assert.match(out, /## By destination port \(dport\) \(2 distinct\)\n  2  443\n  1  0\n/);
  assert.match(out, /## By map id \(2 distinct\)\n  4  ssl_read_args \(id 11\)\n  3  pid_fd_by_tuple \(id 20\)\n/);
  assert.match(out, /Leaked entries: 7 in 2 of 4 maps/);
});

test(`the "... and K more" count is the true count, past any cap (B7)`, async () => {
  const records: Array<object> = [mapRecord(30, `connection_protocol`, {maxEntries: 100_000})];
  for (let i = 0; i < 150; i++)
    records.push(verdict(30, `connection_protocol`, tupleKey({saddr: `10.1.0.1`, sport: 10000 + i, daddr: `10.1.0.2`, dport: 80, netns: NS}), `leaked`, `no_connection`));
  const run = await runCommand([`report`], {stdin: ndjson(records)});
  assert.is(run.code, ExitCode.LeaksFound);
  assert.match(run.stdout, /connection_prot: 0\/150 entries \(0\.00% valid, 150 leaked\)/);
  assert.is(run.stdout.match(/\[no_connection\]/g)?.length, 10);
  assert.match(run.stdout, /    \.\.\. and 140 more\n/);
  const few = await runCommand([`report`, `--samples`, `3`], {stdin: ndjson(records)});
  assert.is(few.stdout.match(/\[no_connection\]/g)?.length, 3);
  assert.match(few.stdout, /    \.\.\. and 147 more\n/);
});

test(`no leaks: exit 0, the original's "No leaks detected" lines`, async () => {
  const records = [
    mapRecord(40, `http_in_flight`),
    verdict(40, `http_in_flight`, tupleKey({saddr: `10.0.0.1`, sport: 1, daddr: `10.0.0.2`, dport: 80, netns: NS}), `alive`, `established`),
    mapRecord(41, `redis_in_flight`),
  ];
  const run = await runCommand([`report`], {stdin: ndjson(records)});
  assert.is(run.code, ExitCode.Ok);
  assert.match(run.stdout, /http_in_flight: 1\/1 entries \(100% valid\)\n/);
  // an empty map, as the original prints it
  assert.match(run.stdout, /redis_in_flight: 0\/0 entries \(100% valid\)\n/);
  assert.not.match(run.stdout, /Leaks by cause/);
});

test(`maps sharing a name are reported per id`, async () => {
  const key = tupleKey({saddr: `10.0.0.1`, sport: 1, daddr: `10.0.0.2`, dport: 80, netns: NS});
  const records = [
    mapRecord(51, `connection_protocol`), mapRecord(52, `connection_protocol`),
    verdict(51, `connection_protocol`, key, `leaked`, `no_connection`),
    verdict(52, `connection_protocol`, key, `alive`, `established`),
  ];
  const run = await runCommand([`report`], {stdin: ndjson(records)});
  assert.match(run.stdout, /connection_prot \[id 51\]: 0\/1 entries \(0\.00% valid, 1 leaked\)/);
  assert.match(run.stdout, /connection_prot \[id 52\]: 1\/1 entries \(100% valid\)/);
});

test(`a stream filtered down to leaked verdicts takes its counts from the summary records`, async () => {
  const records = [
    verdict(60, `http_in_flight`, tupleKey({saddr: `10.0.0.1`, sport: 1, daddr: `10.0.0.2`, dport: 80, netns: NS}), `leaked`, `no_connection`, {checks: 2}),
    summary(`validate`, 60, `http_in_flight`, {total: 50, alive: 47, leaked: 3}),
    summary(`recheck`, 60, `http_in_flight`, {total: 50, alive: 48, leaked: 1, raceFiltered: 1, resolved: 1}),
  ];
  const run = await runCommand([`report`], {stdin: ndjson(records)});
  assert.match(run.stdout, /http_in_flight: 49\/50 entries \(98\.00% valid, 1 leaked\)/);
  assert.match(run.stdout, /Race condition false positives filtered: 1/);
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
  assert.match(run.stdout, /Total leaked entries: 3/);
});

test(`an input with no verdicts says what to do`, async () => {
  const run = await runCommand([`report`], {stdin: ``});
  assert.is(run.code, ExitCode.Ok);
  assert.match(run.stderr, /pipe map entries through `validate` first/);
});

test(`map entries without verdicts (a dump piped straight in) are a usage error that says what to do`, async () => {
  const entry = {type: `entry`, v: 1, mapId: 1, map: `http_in_flight`, keyHex: `00`, key: null};
  const run = await runCommand([`report`], {stdin: ndjson([mapRecord(1, `http_in_flight`), entry, entry])});
  assert.is(run.code, ExitCode.Usage);
  assert.is(run.stdout, ``);
  assert.match(run.stderr, /2 map entries but no verdicts: judge them first/);
});

test.run();
