// Hostile input (issue 16): FIFOs, devices and symlinks where /proc or a capture has files,
// lines too long to split with split2, records nested deep enough to overflow the stack,
// control characters in process names, and binaries an unprivileged user planted on root's PATH.
import {spawn, spawnSync, type ChildProcess} from 'node:child_process';
import {chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {Readable} from 'node:stream';
import {StringDecoder} from 'node:string_decoder';
import {test} from 'uvu';
import * as assert from 'uvu/assert';
import {defaultToolContext} from '../src/context.ts';
import {createLogger} from '../src/context.ts';
import {splitLines} from '../src/lines.ts';
import {checkRecord} from '../src/schema.ts';
import {parseNetTable, TABLES} from '../src/snapshot/nettable.ts';
import {downloadBpftool} from '../src/dump/download.ts';
import {trustedCommand} from '../src/trustedBinary.ts';
import {parseLines, runCommand} from './helpers/cli.ts';
import {ndjson, pidKey, processRecord, verdict, mapRecord} from './helpers/records.ts';
import {requirePrivileges} from './helpers/privileges.ts';

const scratch = mkdtempSync(join(tmpdir(), `usmld-hardening-`));
const children = new Set<ChildProcess>();

test.after(() => {
  for (const child of children)
    child.kill(`SIGKILL`);
  rmSync(scratch, {recursive: true, force: true});
});

/** Fails (instead of hanging the suite) when a run does not finish. */
async function finishes<T>(what: string, run: Promise<T>, ms = 30_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const hang = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish (hung)`)), ms);
  });
  try {
    return await Promise.race([run, hang]);
  } finally {
    clearTimeout(timer);
  }
}

const STAT = (pid: number, comm: string) => `${pid} (${comm}) S 1 ${pid} ${pid} 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 ${100 + pid} 0 0\n`;

/** A proc tree: pid 1 fine, pid 2's stat a FIFO, pid 3's stat a device link, pid 1's net/tcp and mountinfo FIFOs. */
function hostileProcTree(name: string): string {
  const root = join(scratch, name);
  for (const pid of [1, 2, 3]) {
    mkdirSync(join(root, String(pid), `task`, String(pid)), {recursive: true});
    mkdirSync(join(root, String(pid), `ns`), {recursive: true});
    mkdirSync(join(root, String(pid), `net`), {recursive: true});
    symlinkSync(`net:[4026531840]`, join(root, String(pid), `ns`, `net`));
  }
  writeFileSync(join(root, `1`, `stat`), STAT(1, `init`));
  mkfifo(join(root, `2`, `stat`));
  symlinkSync(`/dev/zero`, join(root, `3`, `stat`));
  mkfifo(join(root, `1`, `net`, `tcp`));
  mkfifo(join(root, `1`, `mountinfo`));
  for (const table of [`tcp6`, `udp`, `udp6`])
    writeFileSync(join(root, `1`, `net`, table), `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n`);
  return root;
}

function mkfifo(path: string): void {
  const result = spawnSync(`mkfifo`, [path]);
  if (result.status !== 0)
    throw new Error(`mkfifo ${path}: ${result.stderr}`);
}

test(`snapshot-pids and snapshot-conns do not hang on a FIFO or a device where proc files should be`, async () => {
  const root = hostileProcTree(`fifo-proc`);
  const pids = await finishes(`snapshot-pids`, runCommand([`snapshot-pids`, `--proc-root`, root]));
  assert.is(pids.code, 0, pids.stderr);
  const records = parseLines(pids.stdout);
  assert.equal(records.filter(r => r.type === `process`).map(r => r.pid), [1]);
  assert.match(pids.stderr, /fifo-proc\/2: is a FIFO, not a regular file/);
  assert.match(pids.stderr, /fifo-proc\/3: is a symbolic link \(not followed\)/);
  assert.is(records.at(-1)!.complete, false);

  const conns = await finishes(`snapshot-conns`, runCommand([`snapshot-conns`, `--proc-root`, root]));
  assert.match(conns.stderr, /1\/net\/tcp: is a FIFO, not a regular file/);
  assert.equal(parseLines(conns.stdout).filter(r => r.type === `netns`).map(r => r.complete), [false]);
});

test(`a character device in place of a proc file is refused, not read forever`, async () => {
  if (!requirePrivileges(`device node test`, process.geteuid?.() === 0 ? null : `not root (mknod)`))
    return;
  const root = join(scratch, `device-proc`);
  mkdirSync(join(root, `4`, `task`, `4`), {recursive: true});
  const made = spawnSync(`mknod`, [join(root, `4`, `stat`), `c`, `1`, `5`]); // /dev/zero's numbers
  assert.is(made.status, 0, String(made.stderr));
  const run = await finishes(`snapshot-pids`, runCommand([`snapshot-pids`, `--proc-root`, root]));
  assert.match(run.stderr, /device-proc\/4: is a character device, not a regular file/);
});

test(`a capture whose proc/N/stat links to another file does not print that file`, async () => {
  const capture = join(scratch, `link-capture`);
  mkdirSync(join(capture, `proc`, `5`, `task`, `5`), {recursive: true});
  const secret = join(scratch, `secret.txt`);
  writeFileSync(secret, `root:SECRET-HASH:0:0:root:/root:/bin/bash\n`);
  symlinkSync(secret, join(capture, `proc`, `5`, `stat`));
  const run = await finishes(`snapshot-pids --from`, runCommand([`snapshot-pids`, `--from`, capture]));
  assert.not.match(run.stderr + run.stdout, /SECRET-HASH/);
  assert.match(run.stderr, /proc\/5: is a symbolic link \(not followed\)/);
});

test(`dump-maps --from: a FIFO named like a dump is refused, not waited on`, async () => {
  const dir = join(scratch, `fifo-dump`);
  mkdirSync(dir, {recursive: true});
  writeFileSync(join(dir, `list.json`), JSON.stringify([{id: 7, type: `hash`, name: `http_in_flight`, flags: 0, bytes_key: 48, bytes_value: 8, max_entries: 16}]));
  mkfifo(join(dir, `dump-7.json`));
  const run = await finishes(`dump-maps --from`, runCommand([`dump-maps`, `--from`, dir]));
  assert.match(run.stderr, /dump-7\.json: is a FIFO, not a regular file/);
  const stats = parseLines(run.stdout).find(r => r.type === `mapstats`);
  assert.is(stats?.complete, false);
});

async function collect(chunks: Array<string | Buffer>, max: number): Promise<Array<string | number>> {
  const out: Array<string | number> = [];
  for await (const batch of splitLines(Readable.from(chunks), max))
    out.push(...batch);
  return out;
}

test(`splitLines: pieces across chunks, CRLF, a split UTF-8 character, a last line without newline, too-long lines`, async () => {
  const euro = Buffer.from(`€`);
  assert.equal(await collect([`ab`, `c\nd`, `e\r\n`, `\n`, `fg`], 100), [`abc`, `de`, ``, `fg`]);
  assert.equal(await collect([Buffer.concat([Buffer.from(`x`), euro.subarray(0, 1)]), Buffer.concat([euro.subarray(1), Buffer.from(`\n`)])], 100), [`x€`]);
  assert.equal(await collect([`12345`, `678\nok\n`, `123456789`, `0`], 5), [8, `ok`, 10]);
  assert.equal(await collect([`1234567\nabc`], 5), [7, `abc`]);
});

test(`splitLines: ASCII chunks (decoded as latin1) give the lines the UTF-8 decoder gives, around characters split between chunks and invalid bytes`, async () => {
  const text = Buffer.concat([
    Buffer.from(`{"a":"plain"}\n{"b":"€uro ünïcode 𝄞"}\r\n`), Buffer.from([0xff, 0x41, 0x0a, 0xe2, 0x82]), Buffer.from(`x\nascii after a cut\n\nlast`),
  ]);
  // The general path: one decoder over every chunk.
  const reference = (chunks: Array<Buffer>) => {
    const decoder = new StringDecoder(`utf8`);
    return (chunks.map(chunk => decoder.write(chunk)).join(``) + decoder.end()).split(`\n`).map(line => line.replace(/\r$/, ``));
  };
  for (let size = 1; size <= 9; size++) {
    const chunks: Array<Buffer> = [];
    for (let at = 0; at < text.length; at += size)
      chunks.push(text.subarray(at, at + size));
    assert.equal(await collect(chunks, 1000), reference(chunks), `chunks of ${size}`);
  }
  // Chunks longer than the 64 KiB decoded at once: a character cut there, a line across it.
  const long = Buffer.concat([Buffer.from(`${`a`.repeat(65535)}€\n${`b`.repeat(70000)}\n`), text, Buffer.from(`\n${`c`.repeat(65536)}\nend`)]);
  for (const size of [long.length, 100_000, 65_537]) {
    const chunks: Array<Buffer> = [];
    for (let at = 0; at < long.length; at += size)
      chunks.push(long.subarray(at, at + size));
    // Compared as one text: a difference in lines this long would print megabytes.
    assert.ok(JSON.stringify(await collect(chunks, 1_000_000)) === JSON.stringify(reference(chunks)), `chunks of ${size}`);
  }
});

test(`dump-maps --from: an element over the limit and one nested 20,000 deep are reported and skipped, the entries around them kept`, async () => {
  const dir = join(scratch, `hostile-dump`);
  mkdirSync(dir, {recursive: true});
  writeFileSync(join(dir, `list.json`), JSON.stringify([{id: 7, type: `hash`, name: `http_in_flight`, flags: 0, bytes_key: 48, bytes_value: 8, max_entries: 16}]));
  const element = (first: string, extra = ``) => `{"key":[${[first, ...Array(47).fill(`"0x01"`)].join(`,`)}],"value":[${Array(8).fill(`"0x00"`).join(`,`)}]${extra}}`;
  const big = element(`"0x02"`, `,"pad":"${`a`.repeat(17 * 1024 * 1024)}"`);
  const deepElement = element(`"0x03"`, `,"x":${`[`.repeat(20_000)}${`]`.repeat(20_000)}`);
  writeFileSync(join(dir, `dump-7.json`), `[${[element(`"0x01"`), big, deepElement, element(`"0x04"`)].join(`,`)}]`);
  const run = await runCommand([`dump-maps`, `--from`, dir]);
  const records = parseLines(run.stdout);
  assert.equal(records.filter(r => r.type === `entry`).map(r => r.keyHex.slice(0, 2)), [`01`, `04`]);
  assert.match(run.stderr, /element 2 is \d+ bytes, longer than the limit of 16777216 \(--max-line-length\); skipped/);
  assert.match(run.stderr, /element 3 is nested too deeply to read/);
  const stats = records.find(r => r.type === `mapstats`)!;
  assert.equal([stats.entries, stats.errors], [2, 2]);
  const raised = await runCommand([`dump-maps`, `--from`, dir, `--max-line-length`, `32M`]);
  assert.equal(parseLines(raised.stdout).filter(r => r.type === `entry`).map(r => r.keyHex.slice(0, 2)), [`01`, `02`, `04`]);
});

test(`a line over --max-line-length is a bad line (named, skipped), the records after it flow, and the flag raises the limit`, async () => {
  const long = JSON.stringify({type: `note`, v: 1, x: `a`.repeat(17 * 1024 * 1024)});
  const input = `${long}\n${ndjson([{type: `note`, v: 1, x: `after`}])}`;
  const run = await runCommand([`validate`, `--no-live`], {stdin: input});
  assert.is(run.code, 0, run.stderr);
  assert.match(run.stderr, /stdin:1: line of \d+ characters is longer than the limit of 16777216 \(--max-line-length\); skipped/);
  assert.equal(parseLines(run.stdout).filter(r => r.type === `note`).map(r => r.x), [`after`]);
  const raised = await runCommand([`validate`, `--no-live`, `--max-line-length`, `32M`], {stdin: input});
  assert.is(raised.stderr, ``);
  assert.is(parseLines(raised.stdout).filter(r => r.type === `note`).length, 2);
  const bad = await runCommand([`validate`, `--no-live`, `--max-line-length`, `lots`], {stdin: input});
  assert.is(bad.code, 2);
});

const deep = (levels: number) => `{"type":"note","v":1,"x":${`[`.repeat(levels)}${`]`.repeat(levels)}}`;

test(`a record nested 6,000 levels deep is a bad line in validate, recheck and report; the stream goes on`, async () => {
  const records = [mapRecord(1, `http_in_flight`), verdict(1, `http_in_flight`, pidKey(10, 10), `leaked`, `process_gone`)];
  const input = `${deep(6000)}\n${ndjson(records)}`;
  const validated = await runCommand([`validate`, `--no-live`], {stdin: `${deep(6000)}\n${ndjson([{type: `note`, v: 1, x: `after`}])}`});
  assert.match(validated.stderr, /stdin:1: nested deeper than 512 levels; skipped/);
  assert.not.match(validated.stderr, /internal error|RangeError/);
  assert.ok(parseLines(validated.stdout).some(r => r.x === `after`));
  const reported = await runCommand([`report`, `--format`, `json`], {stdin: input});
  assert.match(reported.stderr, /stdin:1: nested deeper than 512 levels; skipped/);
  assert.is(reported.code, 1, reported.stderr);
  const rechecked = await runCommand([`recheck`, `--later`, `-`], {stdin: input});
  assert.not.match(rechecked.stderr, /internal error|RangeError/);
  // A nesting of 500 (deep, but within the bound) is still a record.
  const fine = await runCommand([`validate`, `--no-live`], {stdin: `${deep(500)}\n`});
  assert.equal(fine.stderr, ``);
});

test(`a process name with ESC and a newline (set by a real process) is escaped in the report and in messages`, async () => {
  // comm is at most 15 bytes: an ESC colour sequence, a newline and a forged heading.
  const comm = `\x1b[31m\n## Summ`;
  const child = spawn(`python3`, [`-c`, `import sys,time\nopen('/proc/self/comm','w').write(sys.argv[1])\nprint('ready', flush=True)\ntime.sleep(60)`, comm], {stdio: [`ignore`, `pipe`, `inherit`]});
  children.add(child);
  await new Promise<void>(resolve => child.stdout!.once(`data`, () => resolve()));
  const pid = child.pid!;
  const snapshot = await runCommand([`snapshot-pids`]);
  const record = parseLines(snapshot.stdout).find(r => r.type === `process` && r.pid === pid);
  assert.is(record?.comm, comm, `the process renamed itself`);
  const input = ndjson([record!, mapRecord(1, `http_in_flight`), verdict(1, `http_in_flight`, pidKey(pid, pid), `leaked`, `process_gone`, {owner: {pid, comm}})]);
  for (const format of [`text`, `markdown`]) {
    const run = await runCommand([`report`, `--format`, format, `--group-by`, `comm,pid`], {stdin: input});
    assert.not.ok(run.stdout.includes(`\x1b`), `${format}: raw ESC in the report`);
    assert.not.match(run.stdout, /^## Summ$/m);
    assert.ok(run.stdout.includes(`\\e[31m\\n## Summ`), `${format}: escaped name shown:\n${run.stdout}`);
  }
  child.kill(`SIGKILL`);
  children.delete(child);
  // Messages on stderr escape too.
  const chunks: Array<string> = [];
  const logger = createLogger(new (await import(`node:stream`)).Writable({write(chunk, _, done) { chunks.push(String(chunk)); done(); }}));
  logger.warn(`cannot read /proc/1/stat: (${comm})`);
  assert.is(chunks.join(``), `usm-leak-detector: cannot read /proc/1/stat: (\\e[31m\\n## Summ)\n`);
});

test(`as root, a bpftool or nsenter planted in a world-writable PATH directory by another user is not run`, async () => {
  if (!requirePrivileges(`planted binary test`, process.geteuid?.() === 0 ? null : `not root`))
    return;
  const planted = join(scratch, `planted-bin`);
  mkdirSync(planted);
  chmodSync(planted, 0o777);
  const marker = join(scratch, `planted-ran`);
  for (const name of [`bpftool`, `nsenter`]) {
    const path = join(planted, name);
    writeFileSync(path, `#!/bin/sh\necho "$0 $*" >> ${marker}\nexit 0\n`, {mode: 0o755});
    chownSync(path, 65534, 65534);
  }
  const PATH = `${planted}:${process.env.PATH}`;
  const run = await runCommand([`dump-maps`, `--backend`, `bpftool`, `--map-id`, `4294967295`, `--no-download`], {env: {...process.env, PATH}});
  assert.not.ok(existsSync(marker), `planted binary ran: ${existsSync(marker) ? readFileSync(marker, `utf8`) : ``}`);
  assert.match(run.stderr, /not running .*planted-bin\/bpftool as root: .*owned by uid 65534/);
  const ctx = defaultToolContext(process.stderr, {env: {PATH}, log: createLogger(new (await import(`node:stream`)).PassThrough())});
  const nsenter = await trustedCommand(ctx, `nsenter`);
  assert.not.ok(nsenter.startsWith(planted), nsenter);
  // A root-owned binary in a directory others can write (not sticky) is refused too.
  const rootOwned = join(planted, `bpftool`);
  chownSync(rootOwned, 0, 0);
  const given = await runCommand([`dump-maps`, `--bpftool`, rootOwned, `--map-id`, `1`]);
  assert.is(given.code, 3);
  assert.match(given.stderr, /--bpftool .*refusing to run it as root: .*writable by group or others and not sticky/);
  assert.not.ok(existsSync(marker));
});

test(`the capture script (under dash) never runs ./bpftool, nor, as root, a bpftool or any tool (cat, find, id, ...) planted in a world-writable PATH directory`, async () => {
  if (!requirePrivileges(`capture script trust test`, spawnSync(`sh`, [`-c`, `command -v dash`]).status === 0 ? null : `dash is not installed`))
    return;
  const dir = join(scratch, `capture-cwd`);
  mkdirSync(dir);
  const marker = join(scratch, `capture-planted-ran`);
  const fake = `#!/bin/sh\necho "$0 $*" >> ${marker}\nexit 0\n`;
  writeFileSync(join(dir, `bpftool`), fake, {mode: 0o755});
  writeFileSync(join(dir, `system-probe`), fake, {mode: 0o755});
  const planted = join(scratch, `capture-planted-bin`);
  mkdirSync(planted);
  chmodSync(planted, 0o777);
  // The tools the script itself runs, planted too: as root they must come from trusted directories only.
  for (const name of [`bpftool`, `cat`, `mkdir`, `date`, `ls`, `find`, `grep`, `sed`, `readlink`, `dirname`, `id`, `tar`, `rm`, `tr`, `head`]) {
    writeFileSync(join(planted, name), fake, {mode: 0o755});
    if (process.geteuid?.() === 0)
      chownSync(join(planted, name), 65534, 65534);
  }
  const script = join(scratch, `capture.sh`);
  writeFileSync(script, (await import(`../src/capture/script.ts`)).captureScript());
  const result = spawnSync(`dash`, [script, `-o`, join(scratch, `capture-out`), `-d`, `0`, `-i`, `4294967295`], {
    // The planted directory is refused only as root (the rule guards root; a user may run their own tools).
    cwd: dir, encoding: `utf8`, timeout: 120_000, env: {...process.env, PATH: process.geteuid?.() === 0 ? `.::${planted}:/usr/bin:/bin` : `.::/usr/bin:/bin`},
  });
  assert.not.ok(existsSync(marker), `a planted binary ran: ${existsSync(marker) ? readFileSync(marker, `utf8`) : ``}\n${result.stderr}`);
});

test(`the bpftool download cache reached through a symlink to a 0777 non-sticky directory is refused`, async () => {
  const shared = join(scratch, `shared-0777`);
  mkdirSync(shared);
  chmodSync(shared, 0o777);
  const home = join(scratch, `home`);
  mkdirSync(home, {mode: 0o700});
  symlinkSync(shared, join(home, `link`));
  const ctx = defaultToolContext(process.stderr, {log: createLogger(new (await import(`node:stream`)).PassThrough())});
  let message = ``;
  try {
    await downloadBpftool(ctx, {baseUrl: `http://127.0.0.1:9/`, arch: `x64`, cacheDir: join(home, `link`, `cache`)});
  } catch (err) {
    message = (err as Error).message;
  }
  assert.match(message, /refusing bpftool cache .*link\/cache \(really .*shared-0777\/cache\): directory .*shared-0777 is writable by group or others and not sticky/);
});

test(`loose numbers: pidTgid of 2^64, --map-id 1e20, --timeout beyond the timer, a socket inode past 2^53`, async () => {
  const at = (pidTgid: string) => checkRecord({...verdict(1, `http_in_flight`, {...pidKey(1, 1), pidTgid}, `leaked`, `process_gone`)} as never);
  assert.is(at(`18446744073709551615`), null);
  assert.ok(at(`18446744073709551616`) !== null, `2^64 accepted`);
  assert.ok(at(`99999999999999999999`) !== null, `20 nines accepted`);
  const mapId = await runCommand([`dump-maps`, `--map-id`, `99999999999999999999`]);
  assert.is(mapId.code, 2, mapId.stderr);
  assert.not.match(mapId.stdout, /1e\+?20/);
  for (const args of [[`dump-maps`, `--timeout`, `3000000`], [`recheck`, `--delay`, `3000000`], [`scan`, `--recheck-delay`, `3000000`]]) {
    const run = await runCommand(args);
    assert.is(run.code, 2, `${args.join(` `)}: ${run.stderr}`);
    assert.match(run.stderr, /at most 2147483/);
  }
  const sockets: Array<Record<string, unknown>> = [];
  const outcome = parseNetTable(`   1: 0100007F:0050 0200007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 99999999999999999999999 1\n`, TABLES[0], 7, socket => sockets.push(socket));
  assert.equal(sockets, []);
  assert.equal(outcome.bad.map(bad => bad.reason), [`uid or inode out of range`]);
});

test.run();
