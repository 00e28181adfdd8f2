// The one generator of synthetic hosts (the benchmark, scripts/gen-proc-fixture.ts and
// scripts/bench-snapshot.ts use it). Inputs for runs without root: a synthetic host (namespaces, processes with threads, sockets)
// and recorded dumps of USM-named maps in bpftool's own JSON, laid out as a capture directory
// (see the README's capture layout), so `dump-maps --from`, `snapshot-* --from` and
// `scan --from` read them exactly as they would read a capture from a customer box.
import {createWriteStream, mkdirSync, writeFileSync} from 'node:fs';
import {once} from 'node:events';
import {join} from 'node:path';
import {kernelName} from '../src/catalogue.ts';
import type {FixtureProcess, FixtureSocket} from '../scripts/gen-proc-fixture.ts';
import {bpftoolHexArray, makeRng, mapEntries, maxEntriesFor, type AliveSet, type BenchMap, type Connection} from './world.ts';

export interface WorldSize {
  namespaces: number;
  sockets: number;
  processes: number;
}

export const FULL_WORLD: WorldSize = {namespaces: 200, sockets: 100_000, processes: 20_000};

/** A process as the fixture tree writes it. */
export type SyntheticProcess = FixtureProcess;

/** A socket as the fixture tree writes it, plus what the recorded map entries need. */
export interface SyntheticSocket extends FixtureSocket {
  proto: `tcp` | `udp`;
  /** The process that owns it (0: none, TIME_WAIT). */
  pid: number;
}

export interface SyntheticWorld {
  size: WorldSize;
  namespaces: Array<number>;
  processes: Array<SyntheticProcess>;
  sockets: Array<SyntheticSocket>;
  alive: AliveSet;
}

const COMMS = [`nginx`, `java`, `python3`, `node`, `envoy`, `postgres`, `redis-server`, `gunicorn`, `php-fpm`, `ruby`, `dotnet`, `kafka`];
const CLIENT_PORTS = [443, 5432, 6379, 9092, 3306, 8080];

/** A seeded host: sockets spread evenly over the namespaces, processes too. */
export function syntheticWorld(size: WorldSize, seed: number): SyntheticWorld {
  const rng = makeRng(seed);
  const pick = <T>(list: ReadonlyArray<T>): T => list[Math.floor(rng() * list.length)];
  const namespaces = Array.from({length: size.namespaces}, (_, k) => 4026532000 + k * 3 + (k === 0 ? 0 : 8));

  // Pids and tids come from one counter, as the kernel allocates them.
  const processes: Array<SyntheticProcess> = [];
  let nextId = 1000;
  let ticks = 5_000;
  for (let i = 0; i < size.processes; i++) {
    const pid = nextId;
    nextId += 1 + Math.floor(rng() * 4);
    const roll = rng();
    const threadCount = roll < 0.7 ? 1 : roll < 0.95 ? 2 + Math.floor(rng() * 7) : 20 + Math.floor(rng() * 30);
    const stateRoll = rng();
    const state = stateRoll < 0.01 ? `Z` : stateRoll < 0.03 ? `R` : `S`;
    const tids = [pid];
    for (let t = 1; t < threadCount && state !== `Z`; t++)
      tids.push(nextId++);
    ticks += Math.floor(rng() * 50);
    processes.push({pid, tids, state, comm: pick(COMMS), netnsInode: state === `Z` ? null : namespaces[i % namespaces.length], startTime: ticks});
  }

  const sockets: Array<SyntheticSocket> = [];
  const connections: Array<Connection> = [];
  let inode = 1_000_000;
  const perNamespace = Math.ceil(size.sockets / namespaces.length);
  namespaces.forEach((netnsInode, k) => {
    const owners = processes.filter((_, i) => i % namespaces.length === k && processes[i].state !== `Z`);
    const owner = () => (owners.length > 0 ? pick(owners).pid : 0);
    const podV4 = `10.${100 + (k >> 8)}.${k & 255}.2`;
    const podV6 = `fd00:100::${k.toString(16)}:2`;
    const push = (socket: Omit<SyntheticSocket, `netnsInode` | `inode` | `uid`>) => {
      if (sockets.length >= size.sockets)
        return;
      sockets.push({...socket, netnsInode, inode: socket.state === 6 ? 0 : inode++, uid: 1000 + (k % 7)});
      if (socket.state === 1 || (socket.proto === `udp` && socket.rport !== 0)) {
        const v4mapped = socket.laddr.startsWith(`::ffff:`);
        connections.push({
          saddr: v4mapped ? socket.laddr.slice(7) : socket.laddr, sport: socket.lport,
          daddr: v4mapped ? socket.raddr.slice(7) : socket.raddr, dport: socket.rport,
          v6: socket.table.endsWith(`6`) && !v4mapped, udp: socket.proto === `udp`, netns: netnsInode, pid: socket.pid,
        });
      }
    };
    // Listeners: wildcard v4, wildcard dual-stack v6, one on the pod address.
    push({proto: `tcp`, table: `tcp`, laddr: `0.0.0.0`, lport: 8080, raddr: `0.0.0.0`, rport: 0, state: 0x0a, pid: owner()});
    push({proto: `tcp`, table: `tcp6`, laddr: `::`, lport: 443, raddr: `::`, rport: 0, state: 0x0a, pid: owner()});
    push({proto: `tcp`, table: `tcp`, laddr: podV4, lport: 9090, raddr: `0.0.0.0`, rport: 0, state: 0x0a, pid: owner()});
    for (let n = 3; n < perNamespace; n++) {
      const roll = rng();
      const ephemeral = 32768 + Math.floor(rng() * 28232);
      const peer = `10.${1 + Math.floor(rng() * 250)}.${Math.floor(rng() * 256)}.${1 + Math.floor(rng() * 254)}`;
      if (roll < 0.6) // a client connected to our server
        push({proto: `tcp`, table: `tcp`, laddr: podV4, lport: 8080, raddr: peer, rport: ephemeral, state: 1, pid: owner()});
      else if (roll < 0.8) // we are the client
        push({proto: `tcp`, table: `tcp`, laddr: podV4, lport: ephemeral, raddr: peer, rport: pick(CLIENT_PORTS), state: 1, pid: owner()});
      else if (roll < 0.87) // a v4 client of the dual-stack listener
        push({proto: `tcp`, table: `tcp6`, laddr: `::ffff:${podV4}`, lport: 443, raddr: `::ffff:${peer}`, rport: ephemeral, state: 1, pid: owner()});
      else if (roll < 0.93) // native v6
        push({proto: `tcp`, table: `tcp6`, laddr: podV6, lport: ephemeral, raddr: `fd00:200::${Math.floor(rng() * 0xffff).toString(16)}`, rport: pick(CLIENT_PORTS), state: 1, pid: owner()});
      else if (roll < 0.97)
        push({proto: `tcp`, table: `tcp`, laddr: podV4, lport: 8080, raddr: peer, rport: ephemeral, state: 6, pid: 0});
      else // connected UDP (DNS)
        push({proto: `udp`, table: `udp`, laddr: podV4, lport: ephemeral, raddr: `10.96.0.10`, rport: 53, state: 1, pid: owner()});
    }
  });

  const threads = processes.filter(p => p.state !== `Z`).flatMap(p => p.tids.map(tid => ({tgid: p.pid, tid})));
  const deadPids: Array<number> = [];
  for (let pid = nextId + 10; deadPids.length < 5000; pid += 3 + Math.floor(rng() * 5))
    deadPids.push(pid);
  // A zombie's pid_tgid entries are leaks too: let a few dead keys point at zombies.
  for (const p of processes)
    if (p.state === `Z`)
      deadPids.push(p.pid);
  return {size, namespaces, processes, sockets, alive: {connections, threads, deadPids, netns: namespaces}};
}

/**
 * CAPTURE/meta of the synthetic host: every capture of one bench run (the recorded dumps and the
 * /proc tree) says it was taken on the same host, as one capture would, so recheck --later
 * accepts the first look's verdicts against it.
 */
export function writeCaptureMeta(capture: string): void {
  mkdirSync(join(capture, `meta`), {recursive: true});
  writeFileSync(join(capture, `meta`, `hostname`), `bench-synthetic\n`);
  writeFileSync(join(capture, `meta`, `kernel`), `6.1.0-bench\n`);
  writeFileSync(join(capture, `meta`, `time`), `2025-01-01T00:00:00Z\n`);
}

/** First map id of the recorded dumps (ids look like a real host's). */
const FIRST_MAP_ID = 1201;

/**
 * Writes CAPTURE/maps/list.json and CAPTURE/maps/dump-<ID>.json as `bpftool -j map show` and
 * `bpftool -j map dump id N` print them (one JSON array on one line), plus CAPTURE/meta.
 * Returns the number of entries written.
 */
export async function writeRecordedMaps(capture: string, plan: ReadonlyArray<BenchMap>, fullCounts: ReadonlyArray<number>, alive: AliveSet, seed: number): Promise<number> {
  const mapsDir = join(capture, `maps`);
  mkdirSync(mapsDir, {recursive: true});
  writeCaptureMeta(capture);
  writeFileSync(join(capture, `meta`, `backend`), `bpftool\n`);
  const list = plan.map((map, i) => ({
    id: FIRST_MAP_ID + i, type: `hash`, name: kernelName(map.name), flags: 0, bytes_key: map.keySize,
    bytes_value: map.valueSize, max_entries: maxEntriesFor(fullCounts[i]), bytes_memlock: 0, frozen: 0,
  }));
  writeFileSync(join(mapsDir, `list.json`), `${JSON.stringify(list)}\n`);
  let total = 0;
  for (const [i, map] of plan.entries()) {
    const out = createWriteStream(join(mapsDir, `dump-${FIRST_MAP_ID + i}.json`));
    let chunk = `[`;
    let first = true;
    for (const [key, value] of mapEntries(map, map.entries, alive, seed + i)) {
      chunk += `${first ? `` : `,`}{"key":${bpftoolHexArray(key)},"value":${bpftoolHexArray(value)}}`;
      first = false;
      total++;
      if (chunk.length > 1 << 20) {
        if (!out.write(chunk))
          await once(out, `drain`);
        chunk = ``;
      }
    }
    out.end(`${chunk}]\n`);
    await once(out, `finish`);
  }
  return total;
}
