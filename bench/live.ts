// Real eBPF maps for the benchmark, named like USM's and filled through `bpftool batch file`,
// and the real connections whose tuples make some of their entries alive. Everything is removed
// when the run ends, on failure and Ctrl-C too (pins unlinked, so the kernel frees the maps),
// and pins left by a run that was killed outright are swept at the next start.
import {execFileSync} from 'node:child_process';
import {closeSync, existsSync, mkdirSync, openSync, readFileSync, readdirSync, readlinkSync, rmSync, writeSync} from 'node:fs';
import {createServer, connect, type Server, type Socket} from 'node:net';
import {join} from 'node:path';
import {kernelName} from '../src/catalogue.ts';
import {batchHex, mapEntries, maxEntriesFor, type AliveSet, type BenchMap, type Connection, type Thread} from './world.ts';

const PIN_ROOT = `/sys/fs/bpf`;
const PIN_PREFIX = `usmld-bench-`;

export interface LiveMap {
  plan: BenchMap;
  id: number;
  pin: string;
  /** Entries written so far. */
  filled: number;
}

/** Why live maps cannot be used here, or null when they can. */
export function liveUnavailable(): string | null {
  if (process.geteuid?.() !== 0)
    return `not root`;
  try {
    execFileSync(`bpftool`, [`version`], {stdio: `ignore`});
  } catch {
    return `bpftool is not installed`;
  }
  if (!/ \/sys\/fs\/bpf bpf /.test(readFileSync(`/proc/self/mounts`, `utf8`))) {
    try {
      mkdirSync(PIN_ROOT, {recursive: true});
      execFileSync(`mount`, [`-t`, `bpf`, `bpf`, PIN_ROOT], {stdio: `ignore`});
    } catch {
      return `bpffs is not mounted at ${PIN_ROOT} and could not be mounted`;
    }
  }
  return null;
}

/** Removes pin directories of earlier runs whose process is gone. */
export function sweepStalePins(): void {
  let names: Array<string> = [];
  try {
    names = readdirSync(PIN_ROOT).filter(name => name.startsWith(PIN_PREFIX));
  } catch {
    return;
  }
  for (const name of names) {
    const pid = Number(/^usmld-bench-(\d+)-/.exec(name)?.[1]);
    if (pid && pid !== process.pid && !existsSync(`/proc/${pid}`))
      rmSync(join(PIN_ROOT, name), {recursive: true, force: true});
  }
}

export class LiveMaps {
  readonly pinDir = join(PIN_ROOT, `${PIN_PREFIX}${process.pid}-${Math.random().toString(36).slice(2, 8)}`);
  readonly maps: Array<LiveMap> = [];

  constructor(private readonly scratch: string) {
    mkdirSync(this.pinDir, {recursive: true});
  }

  create(plan: ReadonlyArray<BenchMap>, fullCounts: ReadonlyArray<number>): void {
    plan.forEach((map, i) => {
      const pin = join(this.pinDir, map.name);
      execFileSync(`bpftool`, [
        `map`, `create`, pin, `type`, `hash`, `key`, String(map.keySize), `value`, String(map.valueSize),
        `entries`, String(maxEntriesFor(fullCounts[i])), `name`, kernelName(map.name),
      ], {stdio: [`ignore`, `ignore`, `pipe`]});
      const info = JSON.parse(execFileSync(`bpftool`, [`-j`, `map`, `show`, `pinned`, pin], {encoding: `utf8`}));
      this.maps.push({plan: map, id: info.id, pin, filled: 0});
    });
  }

  /** Fills each map up to `counts[i]` entries (continuing where the last fill stopped). */
  fill(counts: ReadonlyArray<number>, alive: AliveSet, seed: number): void {
    const batch = join(this.scratch, `fill.batch`);
    const chunk = 50_000;
    this.maps.forEach((map, i) => {
      const target = counts[i];
      if (map.filled >= target)
        return;
      const entries = mapEntries(map.plan, target, alive, seed + i);
      let index = 0;
      let fd = openSync(batch, `w`);
      let pending = 0;
      const flush = () => {
        closeSync(fd);
        if (pending > 0)
          execFileSync(`bpftool`, [`batch`, `file`, batch], {stdio: [`ignore`, `ignore`, `pipe`], maxBuffer: 1 << 26});
        pending = 0;
        fd = openSync(batch, `w`);
      };
      for (const [key, value] of entries) {
        // The first entries are the ones an earlier, smaller fill already wrote.
        if (index++ < map.filled)
          continue;
        writeSync(fd, `map update pinned ${map.pin} key hex ${batchHex(key)} value hex ${batchHex(value)}\n`);
        if (++pending >= chunk)
          flush();
      }
      flush();
      closeSync(fd);
      map.filled = target;
    });
    rmSync(batch, {force: true});
  }

  cleanup(): void {
    rmSync(this.pinDir, {recursive: true, force: true});
  }
}

/**
 * Real TCP connections over loopback (v4 and v6), held open while the maps are measured, so
 * the entries built from them are alive for validate and scan. Both ends are sockets of this
 * process, in this network namespace.
 */
export class RealConnections {
  private readonly servers: Array<Server> = [];
  private readonly sockets: Array<Socket> = [];
  readonly connections: Array<Connection> = [];

  async open(count: number): Promise<void> {
    const netns = ownNetns();
    for (const [host, v6] of [[`127.0.0.1`, false], [`::1`, true]] as const) {
      const server = createServer(socket => { this.sockets.push(socket); });
      try {
        await new Promise<void>((resolve, reject) => {
          server.once(`error`, reject);
          server.listen(0, host, () => resolve());
        });
      } catch {
        continue; // no IPv6 loopback here: v4 only
      }
      this.servers.push(server);
      const port = (server.address() as {port: number}).port;
      for (let i = 0; i < count / 2; i++) {
        const socket = connect({host, port});
        await new Promise<void>((resolve, reject) => {
          socket.once(`connect`, resolve);
          socket.once(`error`, reject);
        });
        this.sockets.push(socket);
        this.connections.push({
          saddr: socket.localAddress!, sport: socket.localPort!, daddr: host, dport: port, v6, netns, pid: process.pid,
        });
      }
    }
  }

  close(): void {
    for (const socket of this.sockets)
      socket.destroy();
    for (const server of this.servers)
      server.close();
  }
}

export function ownNetns(): number {
  return Number(/\[(\d+)\]/.exec(readlinkSync(`/proc/self/ns/net`))?.[1] ?? 0);
}

/** Threads that exist now, and pids that do not, for pid_tgid keys on live maps. */
export function liveThreads(): {threads: Array<Thread>, deadPids: Array<number>} {
  const threads: Array<Thread> = [];
  const pids = new Set<number>();
  for (const name of readdirSync(`/proc`)) {
    const tgid = Number(name);
    if (!Number.isInteger(tgid) || tgid <= 0)
      continue;
    pids.add(tgid);
    try {
      for (const tid of readdirSync(`/proc/${tgid}/task`))
        threads.push({tgid, tid: Number(tid)});
    } catch {
      // exited meanwhile
    }
  }
  const pidMax = Number(readFileSync(`/proc/sys/kernel/pid_max`, `utf8`).trim()) || 32768;
  const deadPids: Array<number> = [];
  // High pids are the least likely to be reused during the run.
  for (let pid = pidMax - 1; deadPids.length < 5000 && pid > 1; pid -= 7) {
    if (!pids.has(pid))
      deadPids.push(pid);
  }
  return {threads, deadPids};
}
