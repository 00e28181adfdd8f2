// snapshot-conns / snapshot-pids on fixture proc trees (samples/proc/): golden output byte for
// byte (apart from the header line; the clock is fixed so the snapshot record is stable too),
// and the warnings a bad tree must produce. UPDATE_GOLDEN=1 rewrites the golden files.
import {appendFileSync, copyFileSync, cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {test} from 'uvu';
import * as assert from 'uvu/assert';
import type {Clock} from '../src/context.ts';
import {checkRecord} from '../src/schema.ts';
import {parseStat} from '../src/snapshot/pids.ts';
import {netTableInodes, parseNetTable, TABLES} from '../src/snapshot/nettable.ts';
import {parseNetnsMounts} from '../src/snapshot/mountinfo.ts';
import {parseLines, runCommand} from './helpers/cli.ts';
import {writeProcTree} from '../scripts/gen-proc-fixture.ts';
import {syntheticWorld} from '../bench/synthetic.ts';
import {PassThrough} from 'node:stream';
import {batched} from '../src/batch.ts';
import {defaultToolContext} from '../src/context.ts';
import {snapshotConns, snapshotConnsBatches} from '../src/snapshot/conns.ts';

const fixedClock: Clock = {now: () => Date.UTC(2026, 0, 2, 3, 4, 5), sleep: async () => {}};

async function runGolden(args: Array<string>, golden: string) {
  const run = await runCommand(args, {tool: {clock: fixedClock}});
  assert.is(run.code, 0, run.stderr);
  const lines = run.stdout.split(`\n`);
  assert.is(JSON.parse(lines[0]).type, `header`);
  const body = lines.slice(1).join(`\n`);
  if (process.env.UPDATE_GOLDEN === `1`)
    writeFileSync(golden, body);
  assert.fixture(body, readFileSync(golden, `utf8`), golden);
  for (const record of parseLines(body))
    assert.is(checkRecord(record as never), null, JSON.stringify(record));
  return {run, records: parseLines(body)};
}

test(`snapshot-conns --proc-root samples/proc/mixed reproduces the golden output`, async () => {
  const {run, records} = await runGolden([`snapshot-conns`, `--proc-root`, `samples/proc/mixed`], `samples/proc/mixed.conns.ndjson`);
  // Bad rows are reported with file and line, and the stream goes on.
  assert.match(run.stderr, /samples\/proc\/mixed\/7\/net\/tcp:5: malformed row skipped \(bad hex digit\)/);
  assert.match(run.stderr, /samples\/proc\/mixed\/7\/net\/tcp:6: malformed row skipped \(row too short\)/);
  assert.match(run.stderr, /samples\/proc\/mixed\/7\/net\/tcp6:6: malformed row skipped \(bad column layout/);
  // A missing table is a warning naming the file.
  assert.match(run.stderr, /cannot read samples\/proc\/mixed\/30\/net\/udp6: ENOENT/);
  const netns = records.filter(record => record.type === `netns`);
  assert.equal(netns.map(record => [record.netnsInode, record.readVia, record.complete]), [
    [4026531840, `proc-pid:7`, false],
    [4026532300, `proc-pid:30`, false],
    [4026532400, null, false],
  ]);
  assert.equal(netns[1].foundBy, [`process`, `bind-mount`]);
  assert.equal(netns[1].paths, [`/run/netns/usmld fixture b`]);
  assert.equal(netns[2].foundBy, [`bind-mount`]);
  // Pid 1 has no net/ files: the next process of the namespace is read (B2).
  assert.equal(netns[0].pids, [1, 7, 12]);
  const snapshot = records.at(-1)!;
  assert.equal([snapshot.type, snapshot.of, snapshot.count, snapshot.complete], [`snapshot`, `conns`, 15, false]);
});

test(`mapped rows of tcp6/udp6 are folded to IPv4 with listedFamily v6 (B3)`, async () => {
  const run = await runCommand([`snapshot-conns`, `--proc-root`, `samples/proc/mixed`], {tool: {clock: fixedClock}});
  const sockets = parseLines(run.stdout).filter(record => record.type === `socket`);
  const byInode = new Map(sockets.map(socket => [socket.inode, socket]));
  assert.equal(pick(byInode.get(2002)), [`tcp`, `v4`, `v6`, `10.0.0.5`, 8080, `10.0.0.9`, 40000, `ESTABLISHED`]);
  // A mapped listener: the unspecified remote end folds to 0.0.0.0, as the kernel side does.
  assert.equal(pick(byInode.get(2004)), [`tcp`, `v4`, `v6`, `127.0.0.1`, 9000, `0.0.0.0`, 0, `LISTEN`]);
  // The dual-stack wildcard listener stays IPv6.
  assert.equal(pick(byInode.get(2001)), [`tcp`, `v6`, `v6`, `::`, 8080, `::`, 0, `LISTEN`]);
  assert.equal(pick(byInode.get(2003)), [`tcp`, `v6`, `v6`, `2001:db8::5`, 443, `2001:db8::9`, 50123, `ESTABLISHED`]);
  assert.equal(pick(byInode.get(4001)), [`udp`, `v4`, `v6`, `10.0.0.5`, 5353, `224.0.0.251`, 5353, `ESTABLISHED`]);
  // A slot number wider than %4d (past 9999 rows) still parses.
  assert.equal(pick(byInode.get(1004)), [`tcp`, `v4`, `v4`, `127.0.0.1`, 5432, `127.0.0.1`, 40001, `ESTABLISHED`]);
  assert.is(byInode.get(1004)!.uid, 105);
  const timeWait = sockets.find(socket => socket.state === `TIME_WAIT`)!;
  assert.equal(pick(timeWait), [`tcp`, `v4`, `v4`, `10.0.0.5`, 22, `10.0.0.7`, 50000, `TIME_WAIT`]);
  assert.is(timeWait.inode, 0);
});

function pick(socket: Record<string, any> | undefined) {
  assert.ok(socket, `socket missing`);
  return [socket!.proto, socket!.family, socket!.listedFamily, socket!.laddr, socket!.lport, socket!.raddr, socket!.rport, socket!.state];
}

test(`snapshot-pids --proc-root samples/proc/mixed reproduces the golden output`, async () => {
  const {records} = await runGolden([`snapshot-pids`, `--proc-root`, `samples/proc/mixed`], `samples/proc/mixed.pids.ndjson`);
  const byPid = new Map(records.filter(record => record.type === `process`).map(record => [record.pid, record]));
  assert.equal([...byPid.keys()], [1, 7, 12, 20, 30, 31]);
  assert.is(byPid.get(12)!.comm, `a) b (c`);
  assert.equal(byPid.get(12)!.tids, [12, 13, 15]);
  assert.is(byPid.get(12)!.startTime, 2000);
  assert.equal([byPid.get(20)!.state, byPid.get(20)!.netnsInode], [`Z`, null]);
});

test(`--from a capture directory reads proc/ and netns/ (process-less namespaces)`, async () => {
  const {records} = await runGolden([`snapshot-conns`, `--from`, `samples/proc/capture`], `samples/proc/capture.conns.ndjson`);
  const netns = records.filter(record => record.type === `netns`);
  assert.equal(netns.map(record => [record.netnsInode, record.foundBy, record.readVia, record.complete]), [
    [4026531840, [`process`], `proc-pid:2`, true],
    [4026532300, [`process`], `proc-pid:40`, true],
    [4026532500, [`bind-mount`], `nsenter:/run/netns/cni-0f1e2d3c`, true],
  ]);
  const inProcessLess = records.filter(record => record.type === `socket` && record.netnsInode === 4026532500);
  assert.is(inProcessLess.length, 3);
  await runGolden([`snapshot-pids`, `--from`, `samples/proc/capture`], `samples/proc/capture.pids.ndjson`);
});

test(`--proc-root and --from together is a usage error`, async () => {
  const run = await runCommand([`snapshot-conns`, `--proc-root`, `/proc`, `--from`, `x`]);
  assert.is(run.code, 2);
  assert.is(run.stdout, ``);
});

test(`a proc root that does not exist is an environment fault (exit 3), not a crash`, async () => {
  for (const command of [`snapshot-conns`, `snapshot-pids`]) {
    const run = await runCommand([command, `--proc-root`, `samples/proc/no-such-tree`]);
    assert.is(run.code, 3, command);
    assert.match(run.stderr, /cannot list processes in samples\/proc\/no-such-tree: ENOENT/);
  }
});

test(`a process whose ns/net link is unusable is placed by its socket inodes, or makes the snapshot incomplete`, async () => {
  const dir = mkdtempSync(join(tmpdir(), `usmld-refused-`));
  try {
    const A = 4026531840;
    writeProcTree(dir, {
      processes: [{pid: 10, tids: [10], state: `S`, comm: `init`, netnsInode: A, startTime: 1}],
      sockets: [{netnsInode: A, table: `tcp`, laddr: `0.0.0.0`, lport: 22, raddr: `0.0.0.0`, rport: 0, state: 10, inode: 500, uid: 0}],
    });
    // A link that does not read as net:[INODE] stands in for one the kernel refuses.
    const refusedProcess = (pid: number, tcp: string | null) => {
      mkdirSync(join(dir, `proc`, String(pid), `ns`), {recursive: true});
      mkdirSync(join(dir, `proc`, String(pid), `net`), {recursive: true});
      symlinkSync(`refused`, join(dir, `proc`, String(pid), `ns`, `net`));
      for (const table of [`tcp`, `tcp6`, `udp`, `udp6`])
        copyFileSync(join(dir, `proc`, `10`, `net`, table), join(dir, `proc`, String(pid), `net`, table));
      if (tcp !== null)
        writeFileSync(join(dir, `proc`, String(pid), `net`, `tcp`), tcp);
    };
    refusedProcess(11, null);
    // No sockets at all: nothing it could hide.
    refusedProcess(13, `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n`);
    let run = await runCommand([`snapshot-conns`, `--from`, dir]);
    let records = parseLines(run.stdout);
    assert.equal(records.at(-1)!.complete, true, run.stderr);
    assert.is(run.stderr, ``);
    assert.equal(records.find(record => record.type === `netns`)!.pids, [10]);
    // Sockets no known namespace lists: a namespace is missing.
    refusedProcess(12, `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n`
      + `   0: 0100007F:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 999 1 0000000000000000 100 0 0 10 0\n`);
    run = await runCommand([`snapshot-conns`, `--from`, dir]);
    records = parseLines(run.stdout);
    assert.equal(records.at(-1)!.complete, false);
    assert.match(run.stderr, /cannot place their sockets in a known namespace: 12 \(unexpected link text "refused"\)/);
  } finally {
    rmSync(dir, {recursive: true, force: true});
  }
});

test(`parseStat splits at the last ')' whatever the command name holds`, () => {
  const fields = (comm: string) => `42 (${comm}) S 1 42 42 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 123456 1000 10 0 0`;
  for (const comm of [`sh`, `a b`, `x) y`, `((`, `) S 1 2 3`, `tab\there`, `new\nline`])
    assert.equal(parseStat(fields(comm)), {pid: 42, comm, state: `S`, startTime: 123456}, comm);
  assert.is(parseStat(`garbage`), null);
  assert.is(parseStat(`42 (x) S 1 2`), null);
});

test(`parseNetTable: every row of a table with odd widths and a missing header`, () => {
  const out: Array<Record<string, any>> = [];
  const text = [
    `12345: 0100007F:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 77 1 0000000000000000 100 0 0 10 0`,
    `   1: 0100007F:0050 0200007F:1F90 01 00000000:00000000 02:000000000000A1B2 00000000 123456        0 78`,
    `   2: 0100007F:0050 0200007F:1F90 0G 00000000:00000000 00:00000000 00000000     0        0 79`,
    `   3: 0100007F:0050 0200007F:1F90 01 00000000:00000000`,
    `   4: 0100007F:0050 0200007F:1F90 01`,
    ``,
  ].join(`\n`);
  const outcome = parseNetTable(text, TABLES[0], 7, socket => out.push(socket));
  assert.is(outcome.rows, 2);
  assert.equal(outcome.bad.map(bad => [bad.line, bad.reason]), [[3, `bad hex digit`], [4, `no uid or inode column`], [5, `no uid or inode column`]]);
  assert.equal(out.map(socket => [socket.laddr, socket.lport, socket.raddr, socket.rport, socket.state, socket.uid, socket.inode]), [
    [`127.0.0.1`, 80, `0.0.0.0`, 0, `LISTEN`, 0, 77],
    [`127.0.0.1`, 80, `127.0.0.2`, 8080, `ESTABLISHED`, 123456, 78],
  ]);
});

test(`netTableInodes: the inodes of exactly the rows parseNetTable emits, on odd rows and the host's own tables`, () => {
  const odd = [
    `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode`,
    `12345: 0100007F:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 77 1 0000000000000000 100 0 0 10 0`,
    `   1: 0100007F:0050 0200007F:1F90 01 00000000:00000000 02:000000000000A1B2 00000000 123456        0 78`,
    `   2: 0100007F:0050 0200007F:1F90 0G 00000000:00000000 00:00000000 00000000     0        0 79`,
    `   3: 0100007F:0050 0200007F:1F90 01 00000000:00000000`,
    `   4: 0100007F:0050 0200007F:1F90 06 00000000:00000000 00:00000000 00000000     0        0 0`,
    `   5: 0100007F:0050 0200007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 99999999999999999999`,
    `   6: 00000000000000000000000000000001:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 80`,
    ``,
  ].join(`\n`);
  const cases: Array<[string, (typeof TABLES)[number]]> = [[odd, TABLES[0]], [odd, TABLES[1]]];
  for (const table of TABLES) {
    try {
      cases.push([readFileSync(`/proc/net/${table.name}`, `latin1`), table]);
    } catch {
      // no such table on this kernel
    }
  }
  for (const [text, table] of cases) {
    const sockets: Array<number> = [];
    const full = parseNetTable(text, table, 7, socket => sockets.push(socket.inode));
    const inodes: Array<number> = [];
    const bare = netTableInodes(text, table, inode => inodes.push(inode));
    assert.equal(inodes, sockets, table.name);
    assert.equal(bare, full, table.name);
  }
  const inodes: Array<number> = [];
  netTableInodes(odd, TABLES[0], inode => inodes.push(inode));
  assert.equal(inodes, [77, 78, 0]);
});

test(`parseNetnsMounts: nsfs net mounts only, escapes undone`, () => {
  const text = [
    `44 43 0:4 net:[4026532177] /run/netns/a rw shared:2 - nsfs nsfs rw`,
    `45 43 0:4 net:[4026532178] /var/run/docker/netns/b\\040c rw - nsfs nsfs rw`,
    `46 43 0:4 mnt:[4026532179] /run/m rw - nsfs nsfs rw`,
    `47 43 0:4 net:[4026532180] /old rw - proc proc rw`,
    `48 43 0:4 net:[4026532181] /not-ns rw - ext4 /dev/x rw`,
  ].join(`\n`);
  assert.equal(parseNetnsMounts(text), [
    {netnsInode: 4026532177, mountPoint: `/run/netns/a`},
    {netnsInode: 4026532178, mountPoint: `/var/run/docker/netns/b c`},
    {netnsInode: 4026532180, mountPoint: `/old`},
  ]);
});


test(`a socket listed twice in one table (the kernel walks it over several reads) comes out once, in its later state`, async () => {
  const root = mkdtempSync(join(tmpdir(), `usmld-dup-`));
  try {
    cpSync(`samples/proc/mixed`, root, {recursive: true, verbatimSymlinks: true});
    // Inode 1002 is ESTABLISHED at row 1; the same socket seen again, now CLOSE_WAIT (08).
    appendFileSync(join(root, `7/net/tcp`), `   5: 0500000A:0016 0900000A:C738 08 00000000:00000000 00:00000000 00000000     0        0 1002 1 0000000000000000 100 0 0 10 0\n`);
    const run = await runCommand([`snapshot-conns`, `--proc-root`, root], {tool: {clock: fixedClock}});
    const rows = parseLines(run.stdout).filter(record => record.type === `socket` && record.inode === 1002);
    assert.is(rows.length, 1, JSON.stringify(rows));
    assert.is(rows[0].state, `CLOSE_WAIT`);
  } finally {
    rmSync(root, {recursive: true, force: true});
  }
});
test(`snapshot-conns in batches (scan's way) gives the records and batches of batched() over the record stream`, async () => {
  const dir = mkdtempSync(join(tmpdir(), `usmld-batches-`));
  try {
    // Namespaces with and without processes, ~900 sockets: batches end inside a namespace's sockets.
    writeProcTree(dir, syntheticWorld({sockets: 900, namespaces: 5, processes: 40}, 3));
    const ctx = defaultToolContext(new PassThrough(), {clock: fixedClock, syscalls: () => ({unavailable: `fixture`})});
    const batches: Array<Array<unknown>> = [];
    for await (const batch of snapshotConnsBatches(ctx, {from: dir}))
      batches.push(batch);
    const expected: Array<Array<unknown>> = [];
    for await (const batch of batched(snapshotConns(ctx, {from: dir})))
      expected.push(batch);
    assert.ok(expected.length >= 4, `several batches (${expected.length})`);
    assert.equal(batches.map(batch => batch.length), expected.map(batch => batch.length));
    assert.equal(batches, expected);
  } finally {
    rmSync(dir, {recursive: true, force: true});
  }
});

test.run();
