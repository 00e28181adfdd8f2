// A small real world for scan tests and for recording samples/capture.ndjson: real eBPF maps
// named like USM's, filled with the tuples of real connections (held by a live process in our
// namespace and in a namespace of its own) and of made-up ones, and pid_tgid keys of live
// threads, of a reaped process and of a thread that never existed. Every entry's truth is
// arranged here and listed in `expected` (keyHex → status/reason), so tests can check verdicts.
import {spawnSync} from 'node:child_process';
import {readdirSync} from 'node:fs';
import {kernelName} from '../../src/catalogue.ts';
import {BpfTestSet, connTupleBytes, pidTgidBytes, type TestMap} from './bpf.ts';
import * as assert from 'uvu/assert';
import {cleanupNetns, createNetns, startSocketHolder, type HeldConnection, type ProcessLessNetns, type SocketHolder} from './netns.ts';

/** The key of `UsmWorld.expected` for a verdict or entry record: `map:keyHex` (one key can be in several maps). */
export function entryId(record: {map: string, keyHex: string}): string {
  return `${record.map}:${record.keyHex}`;
}

export interface Expectation {
  map: string;
  status: `alive` | `leaked` | `resolved`;
  reason: string;
  /** What the entry is, for failure messages. */
  note: string;
}

export interface UsmWorld {
  bpf: BpfTestSet;
  maps: Array<TestMap & {catalogName: string}>;
  /** `map:keyHex` (catalogue name) → what validate must say. */
  expected: Map<string, Expectation>;
  holder: SocketHolder;
  nsHolder: SocketHolder | null;
  /** `--map-id` arguments selecting only this world's maps (the host may have others). */
  mapIdArgs: Array<string>;
  /** A leaked entry that the race test deletes from its map during the recheck delay. */
  deletable: {map: TestMap, key: Buffer, id: string} | null;
  cleanup(): Promise<void>;
}

export interface WorldOptions {
  /** Leaked made-up tuples in connection_protocol (fills it past 90%). */
  fakeConnections?: number;
  /** Also make a namespace with its own socket holder. */
  namespace?: boolean;
  /** Only entries whose truth is "alive" (a world without leaks). */
  cleanOnly?: boolean;
  /**
   * Also go_tls_conn_by_tuple, of IPv6 keys of every kind scan judges by number: ::1 both ways
   * and in any namespace, listeners on ::1 and ::, IPv4-mapped forms of IPv4 sockets (the
   * dual-stack row among them), link-local, and (with `namespace`) another namespace's ::1.
   */
  ipv6Edges?: boolean;
}

const value8 = Buffer.alloc(8, 0x11);

export async function buildUsmWorld(label: string, options: WorldOptions = {}): Promise<UsmWorld> {
  const bpf = new BpfTestSet(label);
  const expected = new Map<string, Expectation>();
  const maps: UsmWorld[`maps`] = [];
  let holder: SocketHolder | null = null;
  let nsHolder: SocketHolder | null = null;
  const cleanup = async () => {
    await holder?.stop();
    await nsHolder?.stop();
    cleanupNetns();
    bpf.cleanup();
  };
  try {
    holder = await startSocketHolder();
    if (options.namespace) {
      const netns = createNetns(`${label}-ns`);
      nsHolder = await startSocketHolder({netns});
    }
    const create = (catalogName: string, keySize: number, maxEntries: number) => {
      const map = bpf.createMap({name: kernelName(catalogName), keySize, valueSize: 8, maxEntries});
      maps.push({...map, catalogName});
      return map;
    };
    const put = (map: TestMap, catalogName: string, entries: Array<[Buffer, Expectation[`status`], string, string]>) => {
      bpf.fill(map, entries.map(([key]) => [key, value8] as const));
      for (const [key, status, reason, note] of entries)
        expected.set(`${catalogName}:${key.toString(`hex`)}`, {map: catalogName, status, reason, note});
    };
    // The eBPF side stores an IPv4-mapped address (a dual-stack socket's) as plain IPv4.
    const fold = (address: string) => address.replace(/^::ffff:(\d+\.\d+\.\d+\.\d+)$/i, `$1`);
    const tuple = (c: HeldConnection, netns: number, pid: number, reversed = false) => connTupleBytes(reversed
      ? {saddr: fold(c.server.address), sport: c.server.port, daddr: fold(c.client.address), dport: c.client.port, netns, pid, udp: c.proto === `udp`}
      : {saddr: fold(c.client.address), sport: c.client.port, daddr: fold(c.server.address), dport: c.server.port, netns, pid, udp: c.proto === `udp`});
    const tcp = holder.connections.filter(c => c.proto === `tcp`);
    const v4 = tcp.find(c => c.kind === `v4`)!;
    const v6 = tcp.find(c => c.kind === `v6`)!;
    const dual = tcp.find(c => c.kind === `dual`);
    const udp = holder.connections.find(c => c.proto === `udp`);
    const ns = holder.netnsInode;
    const pid = holder.pid;

    // pid_fd_by_tuple: real connections (both directions, v6, dual-stack, UDP, a listener) and leaks.
    const pidFd = create(`pid_fd_by_tuple`, 48, 1024);
    const alive: Array<[Buffer, Expectation[`status`], string, string]> = [
      [tuple(v4, ns, pid), `alive`, `established`, `IPv4 connection, client side`],
      [tuple(v4, ns, pid, true), `alive`, `established`, `IPv4 connection, server side`],
      [tuple(v6, ns, pid), `alive`, `established`, `IPv6 connection`],
      [connTupleBytes({saddr: v4.listener!.address, sport: v4.listener!.port, daddr: `0.0.0.0`, dport: 0, netns: ns, pid}), `alive`, `listening`, `IPv4 listener`],
      [tuple(v4, 0, 0), `alive`, `established`, `IPv4 connection with netns 0 (found by search)`],
    ];
    if (dual)
      alive.push([tuple(dual, ns, pid), `alive`, `established`, `IPv4 client of a dual-stack listener (tcp6 ::ffff: row)`]);
    if (udp)
      alive.push([tuple(udp, ns, pid), `alive`, `established`, `connected UDP pair`]);
    const leaks: typeof alive = options.cleanOnly ? [] : [
      [connTupleBytes({saddr: `127.0.0.1`, sport: 1, daddr: `127.0.0.1`, dport: 9, netns: ns, pid}), `leaked`, `no_connection`, `closed IPv4 connection`],
      [connTupleBytes({saddr: `2001:db8::10`, sport: 44321, daddr: `2001:db8::20`, dport: 443, netns: ns, pid: 0}), `leaked`, `no_connection`, `closed IPv6 connection`],
      [connTupleBytes({saddr: `127.0.0.1`, sport: 2, daddr: `0.0.0.0`, dport: 0, netns: ns, pid}), `leaked`, `no_listener`, `closed listener`],
      [connTupleBytes({saddr: `10.20.30.40`, sport: 5555, daddr: `10.20.30.41`, dport: 6379, netns: 4026530000, pid: 0}), `leaked`, `unknown_namespace`, `namespace that does not exist`],
      [connTupleBytes({saddr: `10.20.30.40`, sport: 5556, daddr: `10.20.30.41`, dport: 6379, netns: 0, pid: 0}), `leaked`, `no_connection_any_namespace`, `netns 0, no namespace has it`],
    ];
    put(pidFd, `pid_fd_by_tuple`, [...alive, ...leaks]);

    // connection_protocol: small and nearly full of leaks to one port (the fill warning, groups).
    const fakes = options.cleanOnly ? 0 : options.fakeConnections ?? 27;
    const proto = create(`connection_protocol`, 48, fakes > 0 ? fakes + 3 : 64);
    const protoEntries: typeof alive = [[tuple(v6, ns, pid), `alive`, `established`, `IPv6 connection`]];
    for (let i = 0; i < fakes; i++)
      protoEntries.push([connTupleBytes({saddr: i < 25000 ? `127.0.0.1` : `127.1.${Math.floor(i / 25000)}.1`, sport: 40000 + (i % 25000), daddr: `127.0.0.${2 + (i % 3)}`, dport: 5432, netns: ns, pid: i % 2 ? pid : 0}), `leaked`, `no_connection`, `closed connection to 5432`]);
    put(proto, `connection_protocol`, protoEntries);

    // http2_in_flight: 56-byte keys (tuple + stream_id).
    const http2 = create(`http2_in_flight`, 56, 256);
    const streamKey = (t: Buffer, streamId: number) => {
      const key = Buffer.alloc(56);
      t.copy(key, 0);
      key.writeUInt32LE(streamId, 48);
      return key;
    };
    put(http2, `http2_in_flight`, [
      [streamKey(tuple(v4, ns, pid), 1), `alive`, `established`, `HTTP/2 stream on a live connection`],
      ...(options.cleanOnly ? [] : [[streamKey(connTupleBytes({saddr: `127.0.0.1`, sport: 3, daddr: `127.0.0.1`, dport: 8443, netns: ns, pid}), 3), `leaked`, `no_connection`, `HTTP/2 stream of a closed connection`] as [Buffer, Expectation[`status`], string, string]]),
    ]);

    // A connection in a namespace of its own.
    if (nsHolder) {
      const c = nsHolder.connections.find(conn => conn.proto === `tcp` && conn.kind === `v4`)!;
      const tls = create(`tls_enhanced_tags`, 48, 128);
      put(tls, `tls_enhanced_tags`, [
        [tuple(c, nsHolder.netnsInode, nsHolder.pid), `alive`, `established`, `connection in another namespace`],
        ...(options.cleanOnly ? [] : [[tuple(c, ns, nsHolder.pid), `leaked`, `wrong_namespace`, `that connection, tagged with our namespace`] as [Buffer, Expectation[`status`], string, string]]),
      ]);
    }

    if (options.ipv6Edges) {
      const edges = create(`go_tls_conn_by_tuple`, 48, 64);
      const key = (spec: {saddr: string, sport: number, daddr: string, dport: number}, netns = ns) => connTupleBytes({...spec, netns, pid});
      const entries: typeof alive = [
        [tuple(v6, ns, pid, true), `alive`, `established`, `IPv6 connection, server side`],
        [tuple(v6, 0, 0), `alive`, `established`, `IPv6 connection with netns 0 (found by search)`],
        [key({saddr: v6.listener!.address, sport: v6.listener!.port, daddr: `::`, dport: 0}), `alive`, `listening`, `IPv6 listener on ::1`],
        [key({saddr: `::ffff:127.0.0.1`, sport: v4.listener!.port, daddr: `::ffff:0.0.0.0`, dport: 0}), `alive`, `listening`, `IPv4 listener, key IPv4-mapped`],
        [key({saddr: `::ffff:${v4.client.address}`, sport: v4.client.port, daddr: `::ffff:${v4.server.address}`, dport: v4.server.port}), `alive`, `established`, `IPv4 connection, key IPv4-mapped`],
      ];
      if (dual) {
        entries.push(
          [key({saddr: `::ffff:127.0.0.1`, sport: dual.server.port, daddr: `::ffff:127.0.0.1`, dport: dual.client.port}), `alive`, `established`, `dual-stack row (tcp6 ::ffff:), key IPv4-mapped`],
          [key({saddr: dual.listener!.address, sport: dual.listener!.port, daddr: `::`, dport: 0}), `alive`, `listening`, `dual-stack listener on ::`],
          [key({saddr: `127.0.0.1`, sport: dual.listener!.port, daddr: `0.0.0.0`, dport: 0}), `alive`, `listening_wildcard`, `IPv4 listener key, taken by the dual-stack ::`],
          [key({saddr: `::1`, sport: dual.listener!.port, daddr: `::`, dport: 0}), `alive`, `listening_wildcard`, `IPv6 listener key on ::1, taken by ::`],
        );
      }
      const c6 = nsHolder?.connections.find(conn => conn.proto === `tcp` && conn.kind === `v6`);
      if (c6 && nsHolder)
        entries.push([tuple(c6, nsHolder.netnsInode, nsHolder.pid), `alive`, `established`, `IPv6 connection in another namespace`]);
      if (!options.cleanOnly) {
        entries.push(
          [key({saddr: `::1`, sport: 1, daddr: `::1`, dport: 9}), `leaked`, `no_connection`, `closed IPv6 connection on ::1`],
          [key({saddr: `::1`, sport: 2, daddr: `::`, dport: 0}), `leaked`, `no_listener`, `closed IPv6 listener`],
          [key({saddr: `fe80::1c2:3ff:fe04:506`, sport: 22, daddr: `fe80::aa:bbff:fecc:ddee`, dport: 51000}), `leaked`, `no_connection`, `closed link-local connection`],
          [key({saddr: `::ffff:10.20.30.40`, sport: 5557, daddr: `::ffff:10.20.30.41`, dport: 6379}, 0), `leaked`, `no_connection_any_namespace`, `IPv4-mapped, netns 0, no namespace has it`],
        );
        if (c6 && nsHolder)
          entries.push([tuple(c6, ns, nsHolder.pid), `leaked`, `wrong_namespace`, `that IPv6 connection, tagged with our namespace`]);
      }
      put(edges, `go_tls_conn_by_tuple`, entries);
    }

    // ssl_read_args: pid_tgid keys of live threads, of a reaped process, of a thread that never was.
    const sslRead = create(`ssl_read_args`, 8, 64);
    const deadPid = reapedPid();
    const ourTids = readdirSync(`/proc/${process.pid}/task`).map(Number);
    put(sslRead, `ssl_read_args`, [
      [pidTgidBytes(process.pid, process.pid), `alive`, `thread_alive`, `our main thread`],
      [pidTgidBytes(process.pid, ourTids[ourTids.length - 1]), `alive`, `thread_alive`, `one of our threads`],
      [pidTgidBytes(pid, pid), `alive`, `thread_alive`, `the holder's main thread`],
      ...(options.cleanOnly ? [] : [
        [pidTgidBytes(deadPid, deadPid), `leaked`, `process_gone`, `a reaped child`],
        [pidTgidBytes(deadPid, deadPid + 1), `leaked`, `process_gone`, `another thread of it`],
        [pidTgidBytes(pid, 4_000_000), `leaked`, `thread_gone`, `a thread id the holder never had`],
      ] as Array<[Buffer, Expectation[`status`], string, string]>),
    ]);
    // ssl_ctx_by_pid_tgid: empty.
    create(`ssl_ctx_by_pid_tgid`, 8, 64);

    const deletableKey = leaks.length ? leaks[0][0] : null;
    return {
      bpf, maps, expected, holder, nsHolder,
      mapIdArgs: maps.flatMap(map => [`--map-id`, String(map.id)]),
      deletable: deletableKey ? {map: pidFd, key: deletableKey, id: `pid_fd_by_tuple:${deletableKey.toString(`hex`)}`} : null,
      cleanup,
    };
  } catch (err) {
    await cleanup();
    throw err;
  }
}

/** The pid of a child that has exited and been reaped: a process that is certainly gone. */
function reapedPid(): number {
  const child = spawnSync(`sh`, [`-c`, `echo $$`], {encoding: `utf8`});
  return Number(child.stdout.trim());
}

/** Adds an entry only `lonely` (a namespace no process is in) can prove alive: its connection's tuple. */
export function addProcessLessEntry(world: UsmWorld, lonely: ProcessLessNetns, note: string): void {
  const c = lonely.connections[0];
  const pidFd = world.maps.find(map => map.catalogName === `pid_fd_by_tuple`)!;
  const key = connTupleBytes({saddr: c.client.address, sport: c.client.port, daddr: c.server.address, dport: c.server.port, netns: lonely.netns.inode});
  world.bpf.fill(pidFd, [[key, Buffer.alloc(8)]]);
  world.expected.set(entryId({map: `pid_fd_by_tuple`, keyHex: key.toString(`hex`)}), {map: `pid_fd_by_tuple`, status: `alive`, reason: `established`, note});
}

/**
 * Every arranged entry has one verdict, the arranged one. When the run saw a namespace it could
 * not read completely (another run's namespace vanished mid-read), an entry that no known
 * namespace holds is rightly `unknown` instead.
 */
export function assertArrangedVerdicts(world: UsmWorld, records: ReadonlyArray<Record<string, any>>): void {
  const incomplete = records.some(record => (record.type === `netns` || record.type === `snapshot`) && record.complete === false);
  const verdicts = records.filter(record => record.type === `verdict` && world.expected.has(entryId(record as {map: string, keyHex: string})));
  assert.is(verdicts.length, world.expected.size, `one verdict per arranged entry`);
  for (const verdict of verdicts) {
    const want = world.expected.get(entryId(verdict as {map: string, keyHex: string}))!;
    if (incomplete && (want.reason === `no_connection_any_namespace` || want.reason === `unknown_namespace`) && verdict.reason === `namespace_unreadable`)
      continue;
    assert.is(`${verdict.status}/${verdict.reason}`, `${want.status}/${want.reason}`, `${verdict.map}: ${want.note}`);
  }
}
