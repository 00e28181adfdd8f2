// The POSIX sh capture script: generated from the catalogue, valid under dash and busybox sh,
// and, run under dash on the real world the other stages test against (real maps, real
// connections, a namespace with a process and one without), it writes the capture layout, and
// `scan --from` on that capture gives the verdicts a live scan gives.
import {parseClockFile} from '../src/capture/monotonic.ts';
import {execFileSync, spawnSync} from 'node:child_process';
import {existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync} from 'node:fs';
import {hostname, release, tmpdir} from 'node:os';
import {join} from 'node:path';
import {test} from 'uvu';
import * as assert from 'uvu/assert';
import {captureMapNames, captureScript} from '../src/capture/script.ts';
import {CATALOGUE, KERNEL_NAME_MAX, kernelName} from '../src/catalogue.ts';
import {ExitCode} from '../src/exitCodes.ts';
import {parseLines, runCommand, withoutHeader} from './helpers/cli.ts';
import {makeProcessLessNetns, netnsInodeOfPid, type ProcessLessNetns} from './helpers/netns.ts';
import {bpfUnavailable, netnsUnavailable, requirePrivileges} from './helpers/privileges.ts';
import {addProcessLessEntry, buildUsmWorld, entryId, type UsmWorld} from './helpers/usmWorld.ts';
import {beforeAll} from './helpers/setUp.ts';

const scratch = mkdtempSync(join(tmpdir(), `usmld-capture-`));
process.once(`exit`, () => rmSync(scratch, {recursive: true, force: true}));
const script = join(scratch, `capture.sh`);
writeFileSync(script, captureScript());

const has = (bin: string) => spawnSync(`sh`, [`-c`, `command -v ${bin}`]).status === 0;

/** Runs the script with a shell; never throws. */
function runScript(shell: string, args: Array<string>, env: NodeJS.ProcessEnv = process.env) {
  const result = spawnSync(shell, [script, ...args], {encoding: `utf8`, env, timeout: 120_000, maxBuffer: 1 << 26});
  return {code: result.status, stdout: result.stdout, stderr: result.stderr};
}

test(`the script selects maps by the catalogue's kernel names, filled in when printed`, async () => {
  const names = captureMapNames();
  assert.equal(names, [...new Set(CATALOGUE.map(map => kernelName(map.name)))]);
  for (const name of names)
    assert.ok(name.length <= KERNEL_NAME_MAX && /^[A-Za-z0-9_.]+$/.test(name), name);
  const text = captureScript();
  assert.ok(text.includes(`USM_MAPS='${names.join(` `)}'`));
  assert.not.ok(text.includes(`@USM_MAPS@`) || text.includes(`@VERSION@`));
  const run = await runCommand([`capture-script`]);
  assert.is(run.code, 0);
  assert.is(run.stdout, text);
});

test(`the template itself refuses to run`, () => {
  const template = join(scratch, `template.sh`);
  writeFileSync(template, readFileSync(new URL(`../src/capture/capture.sh`, import.meta.url), `utf8`));
  const result = spawnSync(`sh`, [template], {encoding: `utf8`});
  assert.is(result.status, 2);
  assert.match(result.stderr, /usm-leak-detector capture-script > capture\.sh/);
});

for (const shell of [`dash`, `busybox`]) {
  test(`parses under ${shell}; -h exits 0, a bad option 2, an unknown map 2`, () => {
    if (!has(shell)) {
      if (!requirePrivileges(`capture-script under ${shell}`, `${shell} is not installed`))
        return;
    }
    const sh = shell === `busybox` ? [`busybox`, `sh`] : [shell];
    const check = spawnSync(sh[0], [...sh.slice(1), `-n`, script], {encoding: `utf8`});
    assert.is(check.status, 0, check.stderr);
    const run = (args: Array<string>) => spawnSync(sh[0], [...sh.slice(1), script, ...args], {encoding: `utf8`});
    const help = run([`-h`]);
    assert.is(help.status, 0);
    assert.match(help.stderr, /Usage: sh capture\.sh/);
    assert.is(help.stdout, ``);
    assert.is(run([`--frobnicate`]).status, 2);
    assert.is(run([`-d`, `soon`]).status, 2);
    const unknown = run([`-m`, `nope_map`]);
    assert.is(unknown.status, 2);
    assert.match(unknown.stderr, /nope_map is not a catalogue map/);
    assert.is(run([`-m`, `,`]).status, 2, `a stray comma selects nothing, not everything`);
  });
}

test(`with no usable backend the script exits 3 and says why`, () => {
  const run = runScript(`dash`, [`-b`, `bpftool`, `-B`, join(scratch, `no-such-bpftool`), `-o`, join(scratch, `nothing`)]);
  assert.is(run.code, ExitCode.Environment);
  assert.match(run.stderr, /does not run 'bpftool version'/);
  assert.not.ok(existsSync(join(scratch, `nothing`)));
});

test(`through a system-probe that replays recorded output: list.txt, dumps of catalogue maps only, -m narrows`, async () => {
  // Recorded `system-probe ebpf map list` lines (two lines per map, double spaces), a decoy included.
  const bin = join(scratch, `sp-bin`);
  mkdirSync(bin, {recursive: true});
  const fake = join(bin, `system-probe`);
  writeFileSync(fake, [
    `#!/bin/sh`,
    `if [ "$1 $2 $3" = "ebpf map list" ]; then`,
    `  printf '%s\\n' '12: Hash  name pid_fd_by_tuple  flags 0x0' '    key 48B  value 8B  max_entries 1024'`,
    `  printf '%s\\n' '13: Hash  name decoy_map  flags 0x0' '    key 8B  value 8B  max_entries 16'`,
    `  printf '%s\\n' '14: Hash  name ssl_read_args  flags 0x0' '    key 8B  value 8B  max_entries 16'`,
    `  printf '%s\\n' '15: Array  name   flags 0x0' '    key 4B  value 4B  max_entries 1'`,
    `  exit 0`,
    `fi`,
    `if [ "$1 $2 $3 $4" = "ebpf map dump id" ]; then echo "[{\\"key\\":\\"dump of $5\\"}]"; exit 0; fi`,
    `echo "unexpected: $*" >&2; exit 1`,
  ].join(`\n`), {mode: 0o755});
  const out = join(scratch, `sp-capture`);
  const run = runScript(`dash`, [`-B`, fake, `-o`, out, `-d`, `0`]);
  assert.is(run.code, 0, run.stderr);
  assert.is(readFileSync(join(out, `meta/backend`), `utf8`), `system-probe\n`);
  assert.match(readFileSync(join(out, `maps/list.txt`), `utf8`), /^13: Hash {2}name decoy_map/m);
  assert.equal(readdirSync(join(out, `maps`)).sort(), [`dump-12.json`, `dump-14.json`, `list.txt`]);
  assert.is(readFileSync(join(out, `maps/dump-14.json`), `utf8`), `[{"key":"dump of 14"}]\n`);
  assert.not.ok(existsSync(join(out, `later`)), `-d 0 skips the second look`);

  const narrowed = join(scratch, `sp-narrowed`);
  assert.is(runScript(`dash`, [`-B`, fake, `-o`, narrowed, `-d`, `0`, `-m`, `ssl_read_args`]).code, 0);
  assert.equal(readdirSync(join(narrowed, `maps`)).sort(), [`dump-14.json`, `list.txt`]);
  const byId = join(scratch, `sp-by-id`);
  assert.is(runScript(`dash`, [`-B`, fake, `-o`, byId, `-d`, `0`, `-i`, `12,13`]).code, 0);
  assert.equal(readdirSync(join(byId, `maps`)).sort(), [`dump-12.json`, `list.txt`], `-i never dumps a map outside the catalogue`);
  // The selection is recorded, so a replay leaves the maps out instead of calling them failed dumps.
  assert.is(readFileSync(join(narrowed, `meta/selection`), `utf8`), `names ssl_read_args\n`);
  assert.is(readFileSync(join(byId, `meta/selection`), `utf8`), `ids 12,13\n`);
  assert.not.ok(existsSync(join(out, `meta/selection`)), `no selection, no file`);
  const replay = await runCommand([`dump-maps`, `--from`, narrowed]);
  const records = withoutHeader(parseLines(replay.stdout));
  assert.equal(records.filter(record => record.type === `map`).map(record => record.mapId), [14], replay.stderr);
  assert.not.match(replay.stderr, /no saved dump/);
  const whole = await runCommand([`dump-maps`, `--from`, out]);
  assert.equal(withoutHeader(parseLines(whole.stdout)).filter(record => record.type === `map`).map(record => record.mapId), [12, 14]);
  const again = runScript(`dash`, [`-B`, fake, `-o`, out]);
  assert.is(again.code, 2, `an existing capture is never overwritten`);
  assert.is(readFileSync(join(out, `meta/delay`), `utf8`), `0\n`, `the delay asked for is recorded`);
});

test(`no USM map in the listing: the script exits 3 and says so (never an empty capture with exit 0), also with -o -`, () => {
  const fake = join(scratch, `sp-bin`, `system-probe`);
  // Map 13 is listed but is no catalogue map: nothing to dump.
  const out = join(scratch, `sp-no-usm`);
  const run = runScript(`dash`, [`-B`, fake, `-o`, out, `-d`, `1`, `-i`, `13`]);
  assert.is(run.code, ExitCode.Environment, run.stderr);
  assert.match(run.stderr, /no USM map matches -i 13 in the map listing .*Nothing to capture/);
  assert.not.ok(existsSync(join(out, `later`)), `no second look`);
  const piped = spawnSync(`dash`, [`-s`, `--`, `-o`, `-`, `-d`, `0`, `-B`, fake, `-i`, `13`], {input: captureScript(), maxBuffer: 1 << 26, timeout: 120_000});
  assert.is(piped.status, ExitCode.Environment, String(piped.stderr));
  assert.is(piped.stdout.length, 0, `no tarball`);
});

test(`-o - through sh -s (nothing copied to the box): only a tar.gz on stdout, the layout inside`, () => {
  const fake = join(scratch, `sp-bin`, `system-probe`);
  const result = spawnSync(`dash`, [`-s`, `--`, `-o`, `-`, `-d`, `0`, `-B`, fake], {input: captureScript(), maxBuffer: 1 << 26, timeout: 120_000});
  assert.is(result.status, 0, String(result.stderr));
  assert.match(String(result.stderr), /wrote usmld-capture-\S+ as a tarball on stdout/);
  const unpacked = join(scratch, `unpacked`);
  mkdirSync(unpacked);
  execFileSync(`tar`, [`-xzf`, `-`, `-C`, unpacked], {input: result.stdout});
  const [name] = readdirSync(unpacked);
  assert.match(name, /^usmld-capture-/);
  assert.equal(readdirSync(join(unpacked, name)).sort(), [`maps`, `meta`, `netns`, `proc`].filter(part => part !== `netns` || existsSync(join(unpacked, name, `netns`))));
  assert.is(readFileSync(join(unpacked, name, `meta/backend`), `utf8`), `system-probe\n`);
  assert.ok(existsSync(join(unpacked, name, `maps/dump-12.json`)));
  assert.ok(existsSync(join(unpacked, name, `proc`, String(process.pid), `stat`)), `our own process is in proc/`);
});

const canRun = requirePrivileges(`capture-script on real maps`, bpfUnavailable() ?? netnsUnavailable() ?? (has(`dash`) ? null : `dash is not installed`));

if (canRun) {
  let world: UsmWorld | null = null;
  let lonely: ProcessLessNetns | null = null;
  const dir = join(scratch, `real`);

  beforeAll(test, async () => {
    world = await buildUsmWorld(`capture`, {namespace: true});
    lonely = await makeProcessLessNetns(`capture-lonely`);
    // An entry only the process-less namespace can prove alive: the capture must read it via nsenter.
    addProcessLessEntry(world, lonely, `connection in a namespace no process is in`);
    const decoy = world.bpf.createMap({name: `usmld_decoy`, keySize: 48, valueSize: 8});
    world.bpf.fill(decoy, [[Buffer.alloc(48, 1), Buffer.alloc(8)]]);
    const ids = [...world.maps.map(map => map.id), decoy.id];
    const run = runScript(`dash`, [`-o`, dir, `-d`, `1`, `-i`, ids.join(`,`)]);
    assert.is(run.code, 0, run.stderr);
  });

  test.after(async () => {
    lonely?.release();
    await world?.cleanup();
  });

  test(`meta/ holds the host facts and the backend`, () => {
    assert.is(readFileSync(join(dir, `meta/hostname`), `utf8`), `${hostname()}\n`);
    assert.is(readFileSync(join(dir, `meta/kernel`), `utf8`), `${release()}\n`);
    assert.is(readFileSync(join(dir, `meta/backend`), `utf8`), `bpftool\n`);
    assert.match(readFileSync(join(dir, `meta/time`), `utf8`), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\n$/);
    // CLOCK_MONOTONIC before the dumps, then before proc/: as root, /proc/timer_list's `now at`.
    const dumped = parseClockFile(readFileSync(join(dir, `meta/monotonic`), `utf8`));
    const snapshotted = parseClockFile(readFileSync(join(dir, `meta/monotonic-snapshot`), `utf8`));
    assert.ok(dumped !== null && snapshotted !== null);
    assert.is(dumped!.source, process.geteuid?.() === 0 ? `timer_list` : `uptime`);
    assert.ok(dumped!.ns <= snapshotted!.ns && snapshotted!.ns <= process.hrtime.bigint(), `taken in order, in this clock`);
  });

  test(`maps/: the JSON listing, and a raw dump of each catalogue map, none of the decoy`, () => {
    const listed = JSON.parse(readFileSync(join(dir, `maps/list.json`), `utf8`)) as Array<{id: number, name?: string}>;
    for (const map of world!.maps)
      assert.ok(listed.some(entry => entry.id === map.id), `map ${map.id} listed`);
    const dumps = readdirSync(join(dir, `maps`)).filter(name => name.startsWith(`dump-`)).sort();
    assert.equal(dumps, world!.maps.map(map => `dump-${map.id}.json`).sort());
    for (const map of world!.maps) {
      const saved = JSON.parse(readFileSync(join(dir, `maps/dump-${map.id}.json`), `utf8`));
      const live = JSON.parse(execFileSync(`bpftool`, [`-j`, `map`, `dump`, `id`, String(map.id)], {encoding: `utf8`, maxBuffer: 1 << 26}));
      assert.equal(saved, live, `dump of ${map.name}`);
    }
  });

  test(`proc/: stat, comm, the ns/net link and every thread, tables for one process per namespace`, () => {
    const pid = world!.holder.pid;
    const own = join(dir, `proc`, String(pid));
    assert.is(readFileSync(join(own, `comm`), `utf8`), readFileSync(`/proc/${pid}/comm`, `utf8`));
    assert.is(readFileSync(join(own, `stat`), `utf8`).split(` `).slice(0, 5).join(` `), readFileSync(`/proc/${pid}/stat`, `utf8`).split(` `).slice(0, 5).join(` `));
    assert.ok(lstatSync(join(own, `ns/net`)).isSymbolicLink());
    assert.is(readlinkSync(join(own, `ns/net`)), readlinkSync(`/proc/${pid}/ns/net`));
    assert.equal(readdirSync(join(own, `task`)).sort(), readdirSync(`/proc/${pid}/task`).sort());
    for (const tid of readdirSync(join(own, `task`)))
      assert.match(readFileSync(join(own, `task`, tid, `stat`), `utf8`), new RegExp(`^${tid} \\(`));

    // Exactly one process per namespace carries net/, and it is the lowest pid there.
    const carriers = new Map<string, Array<number>>();
    const members = new Map<string, Array<number>>();
    for (const name of readdirSync(join(dir, `proc`))) {
      let link: string;
      try {
        link = readlinkSync(join(dir, `proc`, name, `ns/net`));
      } catch {
        continue;
      }
      if (!link.startsWith(`net:[`))
        continue;
      members.set(link, [...members.get(link) ?? [], Number(name)]);
      if (existsSync(join(dir, `proc`, name, `net/tcp`)))
        carriers.set(link, [...carriers.get(link) ?? [], Number(name)]);
    }
    for (const [ns, pids] of members) {
      assert.is(carriers.get(ns)?.length, 1, `${ns}: one process carries the tables`);
      assert.is(carriers.get(ns)![0], Math.min(...pids), `${ns}: the lowest pid carries them`);
    }
    // The namespaced holder's listener is in its namespace's table.
    const nsHolder = world!.nsHolder!;
    const nsLink = `net:[${netnsInodeOfPid(nsHolder.pid)}]`;
    const carrier = carriers.get(nsLink)![0];
    const port = nsHolder.connections.find(c => c.proto === `tcp` && c.kind === `v4`)!.listener!.port;
    assert.match(readFileSync(join(dir, `proc`, String(carrier), `net/tcp`), `utf8`), new RegExp(`:${port.toString(16).toUpperCase().padStart(4, `0`)} 00000000:0000 0A `));
  });

  test(`netns/: a bind-mounted namespace no process is in, read through nsenter, with its paths`, () => {
    const ns = join(dir, `netns`, String(lonely!.netns.inode));
    assert.is(readFileSync(join(ns, `paths`), `utf8`), `${lonely!.netns.path}\n`);
    const port = lonely!.connections[0].listener!.port;
    assert.match(readFileSync(join(ns, `tcp`), `utf8`), new RegExp(`:${port.toString(16).toUpperCase().padStart(4, `0`)} 00000000:0000 0A `));
    for (const table of [`tcp6`, `udp`, `udp6`])
      assert.ok(existsSync(join(ns, table)), table);
    // A mounted namespace that has a process keeps only its paths there; its tables come via proc/.
    const withProcess = join(dir, `netns`, String(world!.nsHolder!.netnsInode));
    assert.ok(existsSync(join(withProcess, `paths`)));
    assert.not.ok(existsSync(join(withProcess, `tcp`)));
  });

  test(`later/: the same layout again`, () => {
    for (const part of [`meta/time`, `maps/list.json`, `proc`, `netns`])
      assert.ok(existsSync(join(dir, `later`, part)), part);
    for (const map of world!.maps)
      assert.ok(existsSync(join(dir, `later/maps/dump-${map.id}.json`)));
  });

  test(`snapshot-conns --from the capture equals a live snapshot for the arranged namespaces`, async () => {
    // Only what the test arranged: other tests open sockets and processes meanwhile.
    const ours = new Set([world!.holder.netnsInode, world!.nsHolder!.netnsInode, lonely!.netns.inode]);
    // Port pairs, not ports: an ephemeral port is reused by other connections to other peers.
    const pairs = new Set([...world!.holder.connections, ...world!.nsHolder!.connections, ...lonely!.connections]
      .flatMap(c => [`${c.client.port}>${c.server.port}`, `${c.server.port}>${c.client.port}`, ...(c.listener ? [`${c.listener.port}>0`] : [])]));
    // The script enters a process-less namespace with nsenter, the live run with setns(): the
    // same namespace, through the same path.
    const pick = (text: string) => withoutHeader(parseLines(text))
      .filter(record => ours.has(record.netnsInode) && (record.type === `netns` || (record.type === `socket` && pairs.has(`${record.lport}>${record.rport}`))))
      .map(record => record.type === `netns` && typeof record.readVia === `string` ? {...record, readVia: record.readVia.replace(/^setns:/, `nsenter:`)} : record)
      .map(record => record.netnsInode === world!.holder.netnsInode && record.type === `netns` ? {...record, pids: record.pids.slice(0, 1), readVia: `ours`} : record);
    const live = await runCommand([`snapshot-conns`]);
    const offline = await runCommand([`snapshot-conns`, `--from`, dir]);
    assert.is(offline.code, 0, offline.stderr);
    // Our own namespace (the holder's) is read live through NETLINK_SOCK_DIAG, from the capture's proc/ text.
    const ownVia = (text: string) => parseLines(text).find(record => record.type === `netns` && record.netnsInode === world!.holder.netnsInode)?.readVia;
    assert.is(ownVia(live.stdout), `sock-diag`);
    assert.match(ownVia(offline.stdout), /^proc-pid:\d+$/);
    const expected = pick(live.stdout);
    assert.ok(expected.filter(record => record.type === `socket`).length >= 6, `the arranged sockets are there`);
    assert.equal(pick(offline.stdout), expected);
  });

  test(`scan --from the capture gives the verdicts of a live scan, and the arranged truth`, async () => {
    const verdictsOf = async (args: Array<string>, name: string) => {
      const file = join(scratch, `${name}.ndjson`);
      const run = await runCommand([`scan`, ...world!.mapIdArgs, `--recheck-delay`, `1`, `--capture`, file, ...args]);
      assert.is(run.code, ExitCode.LeaksFound, `${name}: ${run.stderr}`);
      const verdicts = parseLines(readFileSync(file, `utf8`)).filter(record => record.type === `verdict` && world!.expected.has(entryId(record as {map: string, keyHex: string})));
      return new Map(verdicts.map(verdict => [entryId(verdict as {map: string, keyHex: string}), `${verdict.status}/${verdict.reason}`]));
    };
    const offline = await verdictsOf([`--from`, dir], `offline`);
    const live = await verdictsOf([], `live`);
    assert.is(offline.size, world!.expected.size);
    assert.equal(offline, live);
    for (const [id, want] of world!.expected)
      assert.is(offline.get(id), `${want.status}/${want.reason}`, `${want.map}: ${want.note}`);
  });
}

test.run();
