// Issue 12 (trust): a capture is judged from its own contents and says where and when it was
// taken; `-` is stdin wherever a file is taken; report and scan exit 0 only for a judged, clean
// run. Runs on recorded samples (no root needed).
import {cpSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync} from 'node:fs';
import {hostname, tmpdir} from 'node:os';
import {join} from 'node:path';
import {fileURLToPath} from 'node:url';
import {test} from 'uvu';
import * as assert from 'uvu/assert';
import {ExitCode} from '../src/exitCodes.ts';
import {parseLines, runCommand, withoutHeader} from './helpers/cli.ts';
import {mapRecord, mapStats, ndjson, summary, tupleKey, verdict} from './helpers/records.ts';

const sample = (path: string) => fileURLToPath(new URL(`../samples/${path}`, import.meta.url));
const CAPTURE_TIME = `2026-01-01T00:00:00.000Z`;

/** A capture directory of another host: the fixture proc tree and meta/, with recorded bpftool maps. */
function makeCapture(): string {
  const dir = mkdtempSync(join(tmpdir(), `usmld-trust-`));
  const capture = join(dir, `capture`);
  cpSync(sample(`proc/capture`), capture, {recursive: true, verbatimSymlinks: true});
  cpSync(sample(`dump/bpftool/maps`), join(capture, `maps`), {recursive: true});
  return capture;
}

const removeCapture = (capture: string) => rmSync(join(capture, `..`), {recursive: true, force: true});

test(`every stage reading --from stamps the capture's host, kernel and time, and marks the stream replayed`, async () => {
  const capture = makeCapture();
  try {
    for (const args of [[`snapshot-conns`, `--from`, capture], [`snapshot-pids`, `--from`, capture], [`dump-maps`, `--from`, capture], [`dump-maps`, `--from`, join(capture, `maps`)]]) {
      const run = await runCommand(args);
      assert.is(run.code, ExitCode.Ok, run.stderr);
      const header = parseLines(run.stdout)[0];
      assert.equal([header.type, header.stage, header.host, header.kernel, header.time, header.replayed, header.replayedOn?.host],
        [`header`, args[0], `fixture-host`, `6.1.0-fixture`, CAPTURE_TIME, true, hostname()], args.join(` `));
      // The snapshot closers say when the capture's snapshot was taken, not when it was replayed.
      for (const closer of parseLines(run.stdout).filter(record => record.type === `snapshot`))
        assert.is(closer.time, CAPTURE_TIME);
    }
  } finally {
    removeCapture(capture);
  }
});

test(`the issue's replay (dump-maps --from | validate | recheck | report) fails at validate, and the pipeline it shows works, "data from" the capture`, async () => {
  const capture = makeCapture();
  try {
    const dump = await runCommand([`dump-maps`, `--from`, capture]);
    const validated = await runCommand([`validate`], {stdin: dump.stdout});
    assert.is(validated.code, ExitCode.Usage, validated.stderr);
    assert.is(validated.stdout, ``);
    assert.match(validated.stderr, /host fixture-host \(data from 2026-01-01T00:00:00.000Z\)/);
    // What comes next in the shell pipe: an empty stream. recheck does not look live at it, report does not call it clean.
    const rechecked = await runCommand([`recheck`, `--delay`, `0`], {stdin: validated.stdout});
    assert.is(rechecked.code, ExitCode.Usage, rechecked.stderr);
    assert.is(rechecked.stdout, ``);
    const reported = await runCommand([`report`], {stdin: rechecked.stdout});
    assert.is(reported.code, ExitCode.Environment, reported.stderr);

    // The pipeline the message shows.
    const conns = await runCommand([`snapshot-conns`, `--from`, capture]);
    const pids = await runCommand([`snapshot-pids`, `--from`, capture]);
    const judged = await runCommand([`validate`], {stdin: conns.stdout + pids.stdout + dump.stdout});
    assert.ok(judged.code === ExitCode.LeaksFound || judged.code === ExitCode.Ok, judged.stderr);
    const verdicts = parseLines(judged.stdout).filter(record => record.type === `verdict`);
    assert.ok(verdicts.length > 0);
    const header = parseLines(judged.stdout)[0];
    assert.equal([header.stage, header.host, header.replayed], [`validate`, `fixture-host`, true]);
    const later = await runCommand([`recheck`, `--later`, capture], {stdin: judged.stdout});
    assert.ok(later.code === ExitCode.LeaksFound || later.code === ExitCode.Ok, later.stderr);
    const summaries = parseLines(later.stdout).filter(record => record.type === `summary`);
    assert.ok(summaries.length > 0 && summaries.every(s => s.stage === `recheck` && s.firstLookMs === Date.parse(CAPTURE_TIME)));
    const report = await runCommand([`report`], {stdin: later.stdout});
    assert.match(report.stdout, /Host fixture-host \(kernel 6\.1\.0-fixture\), data from 2026-01-01T00:00:00\.000Z/);
  } finally {
    removeCapture(capture);
  }
});

test(`scan --from CAPTURE says "data from" the capture's time; the capture records the looks' times and the delay`, async () => {
  const capture = makeCapture();
  try {
    // A second look 5 s later, recorded as the capture script does (later/, meta/delay).
    cpSync(capture, join(capture, `..`, `later`), {recursive: true, verbatimSymlinks: true});
    cpSync(join(capture, `..`, `later`), join(capture, `later`), {recursive: true, verbatimSymlinks: true});
    writeFileSync(join(capture, `later`, `meta`, `time`), `2026-01-01T00:00:05Z\n`);
    writeFileSync(join(capture, `meta`, `delay`), `5\n`);
    const run = await runCommand([`scan`, `--from`, capture, `--format`, `ndjson`]);
    assert.ok(run.code === ExitCode.LeaksFound || run.code === ExitCode.Ok || run.code === ExitCode.Inconclusive, run.stderr);
    const header = parseLines(run.stdout)[0];
    assert.equal([header.host, header.time, header.replayed], [`fixture-host`, CAPTURE_TIME, true]);
    const text = await runCommand([`scan`, `--from`, capture]);
    assert.match(text.stdout, /Host fixture-host \(kernel 6\.1\.0-fixture\), data from 2026-01-01T00:00:00\.000Z/);
    // The looks' times come from the capture (meta/time of each look), not from the replay.
    assert.match(text.stdout, /confirmed at two looks 5 s apart/);
    const file = join(capture, `..`, `scan.ndjson`);
    await runCommand([`scan`, `--from`, capture, `--capture`, file]);
    const summaries = parseLines(readFileSync(file, `utf8`)).filter(record => record.type === `summary` && record.stage === `recheck`);
    // The recorded maps have leaked candidates, so the later/ look was taken.
    assert.ok(summaries.length > 0);
    assert.ok(summaries.every(s => s.firstLookMs === Date.parse(CAPTURE_TIME) && s.secondLookMs === Date.parse(CAPTURE_TIME) + 5000 && s.delayMs === 5000), JSON.stringify(summaries));
  } finally {
    removeCapture(capture);
  }
});

test(`scan --from FILE.ndjson says to use report < FILE`, async () => {
  for (const from of [sample(`capture.ndjson`), `-`]) {
    const run = await runCommand([`scan`, `--from`, from], {stdin: ``});
    assert.is(run.code, ExitCode.Usage, run.stderr);
    assert.is(run.stdout, ``);
    assert.match(run.stderr, /usm-leak-detector report < FILE/);
  }
});

test(`dump-maps --from - reads a listing (or a multi-map dump) from stdin`, async () => {
  const maps = sample(`dump/bpftool/maps`);
  const dumps = readdirSync(maps).filter(name => name.startsWith(`dump-`)).flatMap(name => [`--from`, join(maps, name)]);
  const run = await runCommand([`dump-maps`, `--from`, `-`, ...dumps], {stdin: readFileSync(join(maps, `list.json`), `utf8`)});
  assert.is(run.code, ExitCode.Ok, run.stderr);
  assert.equal(withoutHeader(parseLines(run.stdout)), parseLines(readFileSync(sample(`dump/bpftool/golden.ndjson`), `utf8`)));
  const header = parseLines(run.stdout)[0];
  assert.equal([header.host, header.replayed], [`unknown`, true]);
  const junk = await runCommand([`dump-maps`, `--from`, `-`], {stdin: `hello\n`});
  assert.is(junk.code, ExitCode.Usage);
  assert.match(junk.stderr, /--from -: standard input is neither a map listing/);
});

test(`report exit codes: 0 only when entries were judged and none leaked; all unknown is 3, some unknown 5`, async () => {
  const key = tupleKey({saddr: `10.0.0.1`, sport: 40000, daddr: `10.0.0.2`, dport: 80});
  const map = mapRecord(10, `http_in_flight`);
  const alive = verdict(10, `http_in_flight`, key, `alive`, `established`);
  const unknown = verdict(10, `http_in_flight`, key, `unknown`, `namespace_unreadable`);
  const leaked = verdict(10, `http_in_flight`, key, `leaked`, `no_connection`);
  const cases: Array<[string, Array<object>, number, RegExp | null]> = [
    [`judged, clean`, [map, alive, mapStats(10, `http_in_flight`, 1)], ExitCode.Ok, null],
    [`maps found empty`, [map, mapStats(10, `http_in_flight`, 0), summary(`validate`, 10, `http_in_flight`, {total: 0, alive: 0, leaked: 0})], ExitCode.Ok, null],
    [`all unknown`, [map, unknown, unknown], ExitCode.Environment, /none of the 2 entries could be judged/],
    [`some unknown`, [map, alive, unknown], ExitCode.Inconclusive, /1 of 2 entries could not be judged/],
    [`a dump that stopped early`, [map, alive, mapStats(10, `http_in_flight`, 1, {complete: false, error: `timed out`})], ExitCode.Inconclusive, /1 map\(s\) were not read completely/],
    [`leaks and unknown`, [map, leaked, unknown], ExitCode.LeaksFound, null],
    [`no records at all`, [], ExitCode.Environment, /nothing to report/],
  ];
  for (const [name, records, code, message] of cases) {
    const run = await runCommand([`report`], {stdin: records.length > 0 ? ndjson(records) : ``});
    assert.is(run.code, code, `${name}: ${run.stderr}`);
    if (message)
      assert.match(run.stderr, message, name);
  }
});

test.run();
