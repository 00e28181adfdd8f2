// recheck end to end: a real map, `dump-maps | validate | recheck` in-process with an injected
// clock. While recheck "waits", the test opens the connection one leaked entry names (recheck must
// clear it: alive, race) and deletes another entry from the map (resolved); a third entry names a
// connection that never exists (still leaked, checks 2). The same is then done offline with
// `recheck --later FILE` against a later capture taken by the live stages.
import {execFileSync} from 'node:child_process';
import {cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs';
import {createServer, connect, type Server, type Socket} from 'node:net';
import {hostname, tmpdir} from 'node:os';
import {join} from 'node:path';
import {test} from 'uvu';
import * as assert from 'uvu/assert';
import type {Clock} from '../src/context.ts';
import {ExitCode} from '../src/exitCodes.ts';
import {BpfTestSet, connTupleBytes} from './helpers/bpf.ts';
import {parseLines, runCommand} from './helpers/cli.ts';
import {freePort} from './helpers/ports.ts';
import {bpfUnavailable, requirePrivileges} from './helpers/privileges.ts';

const enabled = requirePrivileges(`recheck-e2e`, bpfUnavailable());
/** Registered as skipped, not as passed, when the suite cannot run here. */
const privilegedTest = enabled ? test : test.skip;

function listen(): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = createServer(socket => socket.on(`error`, () => {}));
    server.once(`error`, reject);
    server.listen({host: `127.0.0.1`, port: 0}, () => resolve(server));
  });
}

const portOf = (server: Server) => (server.address() as {port: number}).port;


function open(port: number, localPort: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({host: `127.0.0.1`, port, localAddress: `127.0.0.1`, localPort}, () => resolve(socket));
    socket.once(`error`, reject);
  });
}

privilegedTest(`dump-maps | validate | recheck: a connection opened during the wait is a race, a deleted entry resolved, the rest confirmed`, async () => {
  const set = new BpfTestSet(`recheck-e2e`);
  const sockets: Array<Socket> = [];
  const server = await listen();
  const dir = mkdtempSync(join(tmpdir(), `usmld-recheck-e2e-`));
  try {
    const serverPort = portOf(server);
    sockets.push(await open(serverPort, await freePort()));
    const live = sockets[0];
    const lateClientPort = await freePort();
    const aliveKey = connTupleBytes({saddr: `127.0.0.1`, sport: live.localPort!, daddr: `127.0.0.1`, dport: serverPort});
    const raceKey = connTupleBytes({saddr: `127.0.0.1`, sport: lateClientPort, daddr: `127.0.0.1`, dport: serverPort});
    const deletedKey = connTupleBytes({saddr: `10.255.255.1`, sport: 41300, daddr: `10.255.255.2`, dport: 80});
    const stillKey = connTupleBytes({saddr: `10.255.255.1`, sport: 41301, daddr: `10.255.255.2`, dport: 80});
    const map = set.createMap({name: `http_in_flight`, keySize: 48, valueSize: 8});
    set.fill(map, [aliveKey, raceKey, deletedKey, stillKey].map(key => [key, Buffer.alloc(8)] as const));
    const dumpArgs = [`dump-maps`, `--backend`, `bpftool`, `--no-download`, `--map-id`, String(map.id)];

    const dump = await runCommand(dumpArgs);
    assert.is(dump.code, ExitCode.Ok, dump.stderr);
    const first = await runCommand([`validate`], {stdin: dump.stdout});
    const firstVerdicts = new Map(parseLines(first.stdout).filter(r => r.type === `verdict`).map(v => [v.keyHex, v]));
    assert.equal([aliveKey, raceKey, deletedKey, stillKey].map(key => firstVerdicts.get(key.toString(`hex`))?.status), [`alive`, `leaked`, `leaked`, `leaked`]);

    const sleeps: Array<number> = [];
    const clock: Clock = {
      now: () => Date.now(),
      sleep: async ms => {
        sleeps.push(ms);
        sockets.push(await open(serverPort, lateClientPort));
        set.deleteKey(map, deletedKey);
      },
    };
    const second = await runCommand([`recheck`, `--delay`, `1.5`, `--backend`, `bpftool`, `--no-download`], {stdin: first.stdout, tool: {clock}});
    assert.is(second.code, ExitCode.LeaksFound, second.stderr);
    assert.equal(sleeps, [1500], `one wait for the run`);
    const records = parseLines(second.stdout);
    const verdicts = new Map(records.filter(r => r.type === `verdict`).map(v => [v.keyHex, v]));
    assert.is(verdicts.size, 4);
    const outcome = (key: Buffer) => {
      const v = verdicts.get(key.toString(`hex`))!;
      return `${v.status}/${v.reason}/${v.checks}`;
    };
    assert.is(outcome(aliveKey), `alive/established/1`);
    assert.is(outcome(raceKey), `alive/race/2`);
    assert.is(verdicts.get(raceKey.toString(`hex`))!.match.socket.lport, lateClientPort);
    assert.is(outcome(deletedKey), `resolved/removed_from_map/2`);
    assert.is(outcome(stillKey), `leaked/no_connection_any_namespace/2`);
    const summaries = records.filter(r => r.type === `summary`);
    assert.equal(summaries.map(s => [s.stage, s.mapId, s.total, s.alive, s.leaked, s.resolved, s.raceFiltered]),
      [[`recheck`, map.id, 4, 2, 1, 1, 1]]);

    // Offline: a later capture of the same state (the late connection open, the key deleted).
    const later = join(dir, `later.ndjson`);
    const conns = await runCommand([`snapshot-conns`]);
    const pids = await runCommand([`snapshot-pids`]);
    const laterDump = await runCommand(dumpArgs);
    writeFileSync(later, conns.stdout + pids.stdout + laterDump.stdout);
    const offline = await runCommand([`recheck`, `--later`, later], {stdin: first.stdout, tool: {clock}});
    assert.is(offline.code, ExitCode.LeaksFound, offline.stderr);
    assert.equal(sleeps, [1500], `no wait with --later`);
    const offlineVerdicts = new Map(parseLines(offline.stdout).filter(r => r.type === `verdict`).map(v => [v.keyHex, v]));
    assert.equal([aliveKey, raceKey, deletedKey, stillKey].map(key => offlineVerdicts.get(key.toString(`hex`))!.status),
      [`alive`, `alive`, `resolved`, `leaked`]);
  } finally {
    for (const socket of sockets)
      socket.destroy();
    server.close();
    set.cleanup();
    rmSync(dir, {recursive: true, force: true});
  }
});

privilegedTest(`recheck --later CAPTURE_DIR: the later/ part of a capture (bpftool listing and dump, proc tree) is the second look`, async () => {
  const set = new BpfTestSet(`recheck-later`);
  const dir = mkdtempSync(join(tmpdir(), `usmld-recheck-later-`));
  try {
    // The fixture proc tree holds 127.0.0.1:45000 <-> 127.0.0.1:5000 in namespace 4026531840.
    const laterDir = join(dir, `capture`, `later`);
    cpSync(new URL(`../samples/proc/capture`, import.meta.url), laterDir, {recursive: true, verbatimSymlinks: true});
    const raceKey = connTupleBytes({saddr: `127.0.0.1`, sport: 45000, daddr: `127.0.0.1`, dport: 5000, netns: 4026531840});
    const deletedKey = connTupleBytes({saddr: `10.255.255.1`, sport: 41400, daddr: `10.255.255.2`, dport: 80});
    const stillKey = connTupleBytes({saddr: `10.255.255.1`, sport: 41401, daddr: `10.255.255.2`, dport: 80});
    const map = set.createMap({name: `http_in_flight`, keySize: 48, valueSize: 8});
    set.fill(map, [raceKey, deletedKey, stillKey].map(key => [key, Buffer.alloc(8)] as const));
    const dump = await runCommand([`dump-maps`, `--backend`, `bpftool`, `--no-download`, `--map-id`, String(map.id)]);
    // The first look: the namespace, with none of these connections in it yet.
    const emptySnapshot = [
      {type: `netns`, v: 1, netnsInode: 4026531840, foundBy: [`process`], pids: [1], paths: [], readVia: `proc-pid:1`, complete: true},
      {type: `snapshot`, v: 1, of: `conns`, procRoot: `/proc`, time: ``, timeMs: 0, count: 0, complete: true},
      {type: `snapshot`, v: 1, of: `pids`, procRoot: `/proc`, time: ``, timeMs: 0, count: 0, complete: true},
    ].map(record => `${JSON.stringify(record)}\n`).join(``);
    const first = await runCommand([`validate`, `--no-live`], {stdin: emptySnapshot + dump.stdout});
    assert.is(parseLines(first.stdout).filter(r => r.type === `verdict` && r.status === `leaked`).length, 3, first.stderr);
    // The later capture (of this host, as a second look must be): the map without deletedKey, as bpftool prints it.
    writeFileSync(join(laterDir, `meta`, `hostname`), `${hostname()}\n`);
    set.deleteKey(map, deletedKey);
    mkdirSync(join(laterDir, `maps`), {recursive: true});
    writeFileSync(join(laterDir, `maps`, `list.json`), execFileSync(`bpftool`, [`-j`, `map`, `show`, `id`, String(map.id)], {encoding: `utf8`}).replace(/^\{/, `[{`).replace(/\}\s*$/, `}]`));
    writeFileSync(join(laterDir, `maps`, `dump-${map.id}.json`), execFileSync(`bpftool`, [`-j`, `map`, `dump`, `id`, String(map.id)], {encoding: `utf8`}));
    const run = await runCommand([`recheck`, `--later`, join(dir, `capture`)], {stdin: first.stdout});
    assert.is(run.code, ExitCode.LeaksFound, run.stderr);
    const verdicts = new Map(parseLines(run.stdout).filter(r => r.type === `verdict`).map(v => [v.keyHex, v]));
    assert.equal([raceKey, deletedKey, stillKey].map(key => `${verdicts.get(key.toString(`hex`))?.status}/${verdicts.get(key.toString(`hex`))?.reason}`),
      [`alive/race`, `resolved/removed_from_map`, `leaked/no_connection_any_namespace`]);
  } finally {
    set.cleanup();
    rmSync(dir, {recursive: true, force: true});
  }
});

test.run();
