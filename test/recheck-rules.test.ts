// recheck on hand-made records: the second look is injected (a fresh snapshot and a re-read
// written by the test), so what is resolved, raced or still leaked is known in advance.
import {mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {PassThrough} from 'node:stream';
import {test} from 'uvu';
import * as assert from 'uvu/assert';
import {defaultToolContext, type Clock, type ToolContext} from '../src/context.ts';
import {ExitCode} from '../src/exitCodes.ts';
import {SCHEMA_VERSION, checkRecord, type AnyRecord} from '../src/schema.ts';
import {recheck, type RecheckOptions} from '../src/validate/recheck.ts';
import {parseLines, runCommand} from './helpers/cli.ts';
import {mapStats, ndjson, netns, pidKey, processRecord, snapshotCloser, socketRecord, summary, tupleKey, verdict} from './helpers/records.ts';

const NS = 4026531840;

const socket = (laddr: string, lport: number, raddr: string, rport: number) => socketRecord({netns: NS, laddr, lport, raddr, rport, inode: 77});
const closer = snapshotCloser;

function entryOf(v: Record<string, any>): AnyRecord {
  return {type: `entry`, v: SCHEMA_VERSION, mapId: v.mapId, map: v.map, keyHex: v.keyHex, key: v.key};
}

/** A clock that records each sleep in `log` and runs `during` while "sleeping". */
function testClock(log: Array<string>, during: () => void = () => {}): Clock {
  return {
    now: () => 1_700_000_000_000,
    sleep: async ms => {
      log.push(`sleep ${ms}`);
      during();
    },
  };
}

function context(clock: Clock, warnings: Array<string> = []): ToolContext {
  const ctx = defaultToolContext(new PassThrough(), {clock});
  ctx.log = {...ctx.log, warn: message => warnings.push(message), info: () => {}, debug: () => {}};
  return ctx;
}

async function collect(ctx: ToolContext, records: Array<object>, options: RecheckOptions, log: Array<string> = []): Promise<Array<Record<string, any>>> {
  const out: Array<Record<string, any>> = [];
  async function* input() {
    yield* records as Array<AnyRecord>;
  }
  for await (const record of recheck(ctx, input(), options)) {
    log.push(`out ${record.type}${record.type === `verdict` ? ` ${record.status}` : ``}`);
    out.push(record);
  }
  for (const record of out.filter(record => record.type === `verdict` || record.type === `summary`))
    assert.is(checkRecord(record as AnyRecord), null, JSON.stringify(record));
  return out;
}

const aliveTuple = tupleKey({saddr: `10.0.0.1`, sport: 40000, daddr: `10.0.0.2`, dport: 80});
const raceTuple = tupleKey({saddr: `10.0.0.1`, sport: 40001, daddr: `10.0.0.2`, dport: 80});
const goneTuple = tupleKey({saddr: `10.0.0.1`, sport: 40002, daddr: `10.0.0.2`, dport: 80});
const stillTuple = tupleKey({saddr: `10.0.0.1`, sport: 40003, daddr: `10.0.0.2`, dport: 80});

test(`non-leaked verdicts stream through before the wait; one wait for all maps; resolved, race and confirmed leaks`, async () => {
  const log: Array<string> = [];
  const alive = verdict(10, `http_in_flight`, aliveTuple, `alive`, `established`);
  const race = verdict(10, `http_in_flight`, raceTuple, `leaked`, `no_connection_any_namespace`);
  const gone = verdict(10, `http_in_flight`, goneTuple, `leaked`, `no_connection_any_namespace`);
  const still = verdict(11, `connection_states`, stillTuple, `leaked`, `no_connection_any_namespace`);
  const threadRace = verdict(20, `ssl_read_args`, pidKey(300, 301), `leaked`, `thread_gone`);
  const unknown = verdict(20, `ssl_read_args`, null, `unknown`, `undecodable_key`);
  let lookedAt: ReadonlyArray<number> = [];
  const lookAgain = async function* (_ctx: ToolContext, mapIds: ReadonlyArray<number>) {
    lookedAt = mapIds;
    log.push(`look`);
    // Now: the race connection exists, thread 301 exists; gone's key left its map.
    yield* [netns(NS, [1]), socket(`10.0.0.1`, 40001, `10.0.0.2`, 80), closer(`conns`), processRecord(300, `app`, {tids: [300, 301]}), closer(`pids`)] as Array<AnyRecord>;
    yield* [entryOf(race), entryOf(still), entryOf(threadRace), mapStats(10, `http_in_flight`, 1), mapStats(11, `connection_states`, 1), mapStats(20, `ssl_read_args`, 1)] as Array<AnyRecord>;
  };
  const out = await collect(context(testClock(log)), [
    {type: `map`, v: SCHEMA_VERSION, mapId: 10, name: `http_in_flight`, catalogName: `http_in_flight`},
    race, alive, gone, still, threadRace, unknown,
    summary(`validate`, 10, `http_in_flight`, {total: 3, alive: 1, leaked: 2}),
  ], {delayMs: 1500, lookAgain}, log);
  assert.equal(log, [`out map`, `out verdict alive`, `out verdict unknown`, `sleep 1500`, `look`,
    `out verdict alive`, `out verdict resolved`, `out verdict leaked`, `out verdict alive`,
    `out summary`, `out summary`, `out summary`]);
  assert.equal([...lookedAt].sort(), [10, 11, 20]);
  const verdicts = out.filter(record => record.type === `verdict`);
  const byKey = new Map(verdicts.map(v => [v.keyHex, v]));
  assert.equal([byKey.get(race.keyHex)!.status, byKey.get(race.keyHex)!.reason, byKey.get(race.keyHex)!.checks], [`alive`, `race`, 2]);
  assert.is(byKey.get(race.keyHex)!.match.socket.lport, 40001);
  assert.equal([byKey.get(gone.keyHex)!.status, byKey.get(gone.keyHex)!.reason, byKey.get(gone.keyHex)!.checks], [`resolved`, `removed_from_map`, 2]);
  assert.equal([byKey.get(still.keyHex)!.status, byKey.get(still.keyHex)!.reason, byKey.get(still.keyHex)!.checks], [`leaked`, `no_connection_any_namespace`, 2]);
  assert.equal([byKey.get(threadRace.keyHex)!.status, byKey.get(threadRace.keyHex)!.reason], [`alive`, `race`]);
  assert.equal(byKey.get(alive.keyHex), alive, `alive verdicts pass untouched`);
  const summaries = out.filter(record => record.type === `summary`);
  assert.equal(summaries.map(s => [s.stage, s.mapId, s.total, s.alive, s.leaked, s.unknown, s.resolved, s.raceFiltered]), [
    [`recheck`, 10, 3, 2, 0, 0, 1, 1],
    [`recheck`, 11, 1, 0, 1, 0, 0, 0],
    [`recheck`, 20, 2, 1, 0, 1, 0, 1],
  ]);
});

test(`a map whose re-read did not finish resolves nothing; a second look without evidence leaves the verdict unconfirmed`, async () => {
  const warnings: Array<string> = [];
  const gone = verdict(10, `http_in_flight`, goneTuple, `leaked`, `no_connection_any_namespace`);
  const pid = verdict(20, `ssl_read_args`, pidKey(999, 999), `leaked`, `process_gone`);
  const lookAgain = async function* () {
    yield* [netns(NS, [1]), closer(`conns`), mapStats(10, `http_in_flight`, 0, {complete: false, error: `timed out`})] as Array<AnyRecord>;
  };
  const out = await collect(context(testClock([]), warnings), [gone, pid], {delayMs: 0, lookAgain});
  const verdicts = out.filter(record => record.type === `verdict`);
  assert.equal(verdicts.map(v => [v.status, v.reason, v.checks]), [[`leaked`, `no_connection_any_namespace`, 2], [`leaked`, `process_gone`, 1]]);
  assert.ok(warnings.some(w => /map 10 could not be re-read/.test(w)));
  assert.ok(warnings.some(w => /1 leaked verdict\(s\) could not be confirmed/.test(w)));
});

test(`a map that no longer exists (mapstats.gone) took its entries with it: resolved; the words alone prove nothing`, async () => {
  const gone = verdict(10, `http_in_flight`, goneTuple, `leaked`, `no_connection_any_namespace`);
  for (const [stats, status] of [[{gone: true}, `resolved`], [{}, `leaked`]] as const) {
    const lookAgain = async function* () {
      yield* [netns(NS, [1]), closer(`conns`), mapStats(10, ``, 0, {complete: false, error: `map 10 no longer exists`, ...stats})] as Array<AnyRecord>;
    };
    const out = await collect(context(testClock([])), [gone], {delayMs: 0, lookAgain});
    assert.equal(out.filter(record => record.type === `verdict`).map(v => v.status), [status]);
  }
});

test(`no leaked verdict: no wait and no second look; --delay 0 looks without waiting`, async () => {
  const log: Array<string> = [];
  let looks = 0;
  const lookAgain = async function* () {
    looks += 1;
  };
  await collect(context(testClock(log)), [verdict(10, `http_in_flight`, aliveTuple, `alive`, `established`)], {delayMs: 2000, lookAgain});
  assert.equal([log.filter(line => line.startsWith(`sleep`)), looks], [[], 0]);
  await collect(context(testClock(log)), [verdict(10, `http_in_flight`, goneTuple, `leaked`, `no_connection_any_namespace`)], {delayMs: 0, lookAgain});
  assert.equal([log.filter(line => line.startsWith(`sleep`)), looks], [[], 1]);
});

test(`CLI: --later FILE looks at a later capture (no wait); exit 1 while something is still leaked`, async () => {
  const dir = mkdtempSync(join(tmpdir(), `usmld-recheck-`));
  try {
    const race = verdict(10, `http_in_flight`, raceTuple, `leaked`, `no_connection_any_namespace`);
    const still = verdict(10, `http_in_flight`, stillTuple, `leaked`, `no_connection_any_namespace`);
    const gone = verdict(10, `http_in_flight`, goneTuple, `leaked`, `no_connection_any_namespace`);
    const later = join(dir, `later.ndjson`);
    writeFileSync(later, ndjson([
      netns(NS, [1]), socket(`10.0.0.2`, 80, `10.0.0.1`, 40001), closer(`conns`), closer(`pids`),
      entryOf(race), entryOf(still), mapStats(10, `http_in_flight`, 2),
    ]));
    const log: Array<string> = [];
    const run = await runCommand([`recheck`, `--later`, later], {stdin: ndjson([race, still, gone]), tool: {clock: testClock(log)}});
    assert.is(run.code, ExitCode.LeaksFound, run.stderr);
    assert.equal(log, [], `no wait with --later`);
    const records = parseLines(run.stdout);
    assert.is(records[0].stage, `recheck`);
    assert.equal(records.filter(r => r.type === `verdict`).map(v => `${v.status}/${v.reason}`), [`alive/race`, `leaked/no_connection_any_namespace`, `resolved/removed_from_map`]);

    // `--later -`: the later capture on stdin, the verdicts as a file.
    const verdicts = join(dir, `verdicts.ndjson`);
    writeFileSync(verdicts, ndjson([race, still, gone]));
    const fromStdin = await runCommand([`recheck`, `--later`, `-`, verdicts], {stdin: readFileSync(later, `utf8`)});
    assert.is(fromStdin.code, ExitCode.LeaksFound, fromStdin.stderr);
    assert.equal(parseLines(fromStdin.stdout).filter(r => r.type === `verdict`).map(v => `${v.status}/${v.reason}`), [`alive/race`, `leaked/no_connection_any_namespace`, `resolved/removed_from_map`]);
    const bothStdin = await runCommand([`recheck`, `--later`, `-`], {stdin: ``});
    assert.is(bothStdin.code, ExitCode.Usage);

    writeFileSync(later, ndjson([netns(NS, [1]), closer(`conns`), mapStats(10, `http_in_flight`, 0)]));
    const clean = await runCommand([`recheck`, `--later`, later], {stdin: ndjson([gone])});
    assert.is(clean.code, ExitCode.Ok, clean.stderr);
  } finally {
    rmSync(dir, {recursive: true, force: true});
  }
});

test(`CLI: verdicts from another host, from a replayed capture, or without a header are never rechecked live (exit 2, nothing on stdout)`, async () => {
  const header = {type: `header`, v: SCHEMA_VERSION, stage: `validate`, tool: `usm-leak-detector`, toolVersion: `0.1.0`, host: `customer-box-17`, kernel: `6.1`, time: ``, timeMs: 0};
  const leaked = verdict(10, `http_in_flight`, goneTuple, `leaked`, `no_connection_any_namespace`);
  const here = {hostname: `support-laptop`, kernel: `6.8`};
  // A proc root that does not exist: a live look, if one were taken, would fail with exit 3 instead.
  const noProc = [`--proc-root`, join(tmpdir(), `usmld-no-such-proc`), `--delay`, `0`];
  const foreign = await runCommand([`recheck`, ...noProc], {stdin: ndjson([header, leaked]), tool: {host: here}});
  assert.is(foreign.code, ExitCode.Usage);
  assert.is(foreign.stdout, ``);
  assert.match(foreign.stderr, /host customer-box-17 .*this is support-laptop.*--later/);
  const replayed = await runCommand([`recheck`, ...noProc], {stdin: ndjson([{...header, host: here.hostname, replayed: true, time: `2026-01-01T00:00:00.000Z`}, leaked]), tool: {host: here}});
  assert.is(replayed.code, ExitCode.Usage);
  assert.is(replayed.stdout, ``);
  assert.match(replayed.stderr, /a capture of this host replayed \(data from 2026-01-01T00:00:00.000Z\).*--later/);
  // Headerless (a jq filter dropped it): issue 16 case 4.
  const headerless = await runCommand([`recheck`, ...noProc], {stdin: ndjson([leaked]), tool: {host: here}});
  assert.is(headerless.code, ExitCode.Usage);
  assert.is(headerless.stdout, ``);
  assert.match(headerless.stderr, /no header record.*--later CAPTURE.*--local/);
  // --local says "these are this host's, live": the live look is taken (and fails here on the missing proc root).
  const local = await runCommand([`recheck`, `--local`, ...noProc], {stdin: ndjson([leaked]), tool: {host: here}});
  assert.is(local.code, ExitCode.Environment, local.stderr);
  // --local cannot vouch for a stream whose header says otherwise.
  const localForeign = await runCommand([`recheck`, `--local`, ...noProc], {stdin: ndjson([header, leaked]), tool: {host: here}});
  assert.is(localForeign.code, ExitCode.Usage);
});

test(`the recheck summaries say when the two looks were taken and the delay asked for`, async () => {
  const first = {type: `header`, v: SCHEMA_VERSION, stage: `validate`, tool: `usm-leak-detector`, toolVersion: `0.1.0`, host: `h`, kernel: `6.1`, time: ``, timeMs: 1_700_000_000_000 - 7000};
  const ctx = context(testClock([]));
  ctx.host = {hostname: `h`, kernel: `6.1`};
  const race = verdict(10, `http_in_flight`, raceTuple, `leaked`, `no_connection_any_namespace`);
  const lookAgain = async function* () {
    yield* [netns(NS, [1]), closer(`conns`), mapStats(10, `http_in_flight`, 0)] as Array<AnyRecord>;
  };
  const out = await collect(ctx, [first, race], {delayMs: 5000, lookAgain});
  const summaries = out.filter(record => record.type === `summary`);
  // lookAgain's closers carry timeMs 0: the earliest time of the second look's data.
  assert.equal(summaries.map(s => [s.firstLookMs, s.secondLookMs, s.delayMs]), [[1_700_000_000_000 - 7000, 0, 5000]]);
  // No leaked candidate: no second look.
  const none = await collect(ctx, [first, verdict(10, `http_in_flight`, aliveTuple, `alive`, `established`)], {delayMs: 5000, lookAgain});
  assert.equal(none.filter(record => record.type === `summary`).map(s => [s.firstLookMs, s.secondLookMs, s.delayMs]), [[1_700_000_000_000 - 7000, null, 5000]]);
});

test(`CLI: --later DIR that is not a capture names --later, and nothing is written`, async () => {
  const dir = mkdtempSync(join(tmpdir(), `usmld-recheck-later-`));
  try {
    const leaked = verdict(10, `http_in_flight`, goneTuple, `leaked`, `no_connection_any_namespace`);
    for (const later of [dir, join(dir, `missing`)]) {
      const run = await runCommand([`recheck`, `--later`, later], {stdin: ndjson([verdict(10, `http_in_flight`, aliveTuple, `alive`, `established`), leaked])});
      assert.is(run.code, ExitCode.Environment, run.stderr);
      assert.is(run.stdout, ``);
      assert.match(run.stderr, new RegExp(`--later ${later.replace(/[.*+?^${}()|[\]\\]/g, `\\$&`)}: `));
      assert.not.match(run.stderr, /--from/);
    }
  } finally {
    rmSync(dir, {recursive: true, force: true});
  }
});

test(`CLI: a bad --delay is a usage error`, async () => {
  for (const delay of [`-1`, `soon`, ``]) {
    const run = await runCommand([`recheck`, `--delay`, delay], {stdin: ``});
    assert.is(run.code, ExitCode.Usage, delay);
    assert.is(run.stdout, ``);
  }
});

test(`leaked candidates past the memory limit wait in a temp file and come back with the same outcomes`, async () => {
  const tmp = mkdtempSync(join(tmpdir(), `usmld-recheck-hold-`));
  try {
    const ctx = {...context(testClock([])), tmpDir: tmp};
    const race = verdict(10, `http_in_flight`, raceTuple, `leaked`, `no_connection_any_namespace`);
    const gone = verdict(10, `http_in_flight`, goneTuple, `leaked`, `no_connection_any_namespace`);
    const still = verdict(11, `connection_states`, stillTuple, `leaked`, `no_connection_any_namespace`);
    let spillSeen = false;
    const lookAgain = async function* () {
      // The candidates are on disk by now (limit 1, three candidates).
      spillSeen = readdirSync(tmp).length > 0;
      yield* [netns(NS, [1]), socket(`10.0.0.1`, 40001, `10.0.0.2`, 80), closer(`conns`), closer(`pids`)] as Array<AnyRecord>;
      yield* [entryOf(race), entryOf(still), mapStats(10, `http_in_flight`, 1), mapStats(11, `connection_states`, 1)] as Array<AnyRecord>;
    };
    const out = await collect(ctx, [race, gone, still], {delayMs: 0, lookAgain, holdInMemory: 1});
    assert.ok(spillSeen, `candidates were spilled`);
    const verdicts = out.filter(record => record.type === `verdict`);
    assert.equal(verdicts.map(v => [v.keyHex, v.status, v.reason, v.checks]), [
      [race.keyHex, `alive`, `race`, 2],
      [gone.keyHex, `resolved`, `removed_from_map`, 2],
      [still.keyHex, `leaked`, `no_connection_any_namespace`, 2],
    ]);
    assert.equal(readdirSync(tmp), [], `the spill file is removed`);
  } finally {
    rmSync(tmp, {recursive: true, force: true});
  }
});

test.run();
