// Real network namespaces and real sockets for tests, cleaned up even when a test fails.
//
// - createNetns(label): `ip netns add` under a unique name (usmld-test-<pid>-<n>-<label>), with
//   `lo` up, so 127.0.0.1 and ::1 work inside it.
// - startSocketHolder({netns}): a node child (inside the namespace through `ip netns exec`, or in
//   ours) that opens real TCP listeners and connections: IPv4, IPv6, and an IPv4 client to a
//   dual-stack `::` listener (listed in tcp6 as ::ffff:127.0.0.1), plus a connected UDP pair. It
//   reports every endpoint over the IPC channel and holds them until stopped.
// - makeProcessLessNetns(label): a namespace that still holds an ESTABLISHED TCP pair and a
//   listener although no process is in it. How: a child started inside the namespace creates the
//   sockets, then hands the file descriptors to this (test) process over node's IPC channel (a
//   unix socket, SCM_RIGHTS) and exits. A socket keeps its namespace alive, and the bind mount at
//   /run/netns/NAME keeps it findable; the test process holding the descriptors is in another
//   namespace, so no /proc/PID/ns/net points at it. Closing the handles frees the sockets.
//
// Cleanup: cleanupNetns() kills our children (by pid), closes handed-over sockets and deletes
// our namespaces; it also runs from a process 'exit' hook. Namespaces left by a test process that
// died (its pid in the name is gone) are deleted on the next createNetns().
import {execFileSync, spawn, type ChildProcess} from 'node:child_process';
import {readlinkSync, statSync} from 'node:fs';
import type {Server, Socket} from 'node:net';
import {killChildren} from './children.ts';

export interface Netns {
  name: string;
  /** The bind mount that holds it: /run/netns/NAME. */
  path: string;
  /** Its inode, as `stat -L --format %i /run/netns/NAME` shows. */
  inode: number;
}

export interface Endpoint {
  address: string;
  port: number;
}

export interface HeldConnection {
  /** `v4`, `v6`, or `dual` (an IPv4 client accepted by a `::` listener). */
  kind: `v4` | `v6` | `dual`;
  proto: `tcp` | `udp`;
  /** The listener the client connected to (TCP only). */
  listener: Endpoint | null;
  client: Endpoint;
  /** The accepted socket's local end (TCP), or the peer socket (UDP). */
  server: Endpoint;
  /** Where the client connected to (equals server for TCP). */
  clientPeer: Endpoint;
}

export interface SocketHolder {
  pid: number;
  netnsInode: number;
  connections: Array<HeldConnection>;
  stop(): Promise<void>;
}

const PREFIX = `usmld-test-`;
const ownNamespaces = new Set<string>();
const ownChildren = new Set<ChildProcess>();
const heldHandles = new Set<Socket | Server>();
let counter = 0;

function run(file: string, args: Array<string>): string {
  return execFileSync(file, args, {encoding: `utf8`, stdio: [`ignore`, `pipe`, `pipe`]});
}

function deleteNetns(name: string): void {
  try {
    run(`ip`, [`netns`, `del`, name]);
  } catch {
    // Already gone.
  }
}

function cleanupNow(): void {
  killChildren(ownChildren);
  for (const handle of heldHandles) {
    if (`destroy` in handle)
      handle.destroy();
    else
      handle.close();
  }
  heldHandles.clear();
  for (const name of ownNamespaces)
    deleteNetns(name);
  ownNamespaces.clear();
}

process.once(`exit`, cleanupNow);
for (const signal of [`SIGINT`, `SIGTERM`] as const) {
  process.once(signal, () => {
    cleanupNow();
    process.exit(130);
  });
}

/** Deletes usmld-test-<pid>-* namespaces whose test process no longer exists. */
function sweepStale(): void {
  let names: Array<string>;
  try {
    names = run(`ip`, [`netns`, `list`]).split(`\n`).map(line => line.split(` `)[0]).filter(name => name.startsWith(PREFIX));
  } catch {
    return;
  }
  for (const name of names) {
    const pid = Number(name.slice(PREFIX.length).split(`-`)[0]);
    if (!Number.isInteger(pid) || pid === process.pid)
      continue;
    try {
      process.kill(pid, 0);
    } catch {
      deleteNetns(name);
    }
  }
}

/** A new namespace with `lo` up. */
export function createNetns(label: string): Netns {
  if (counter === 0)
    sweepStale();
  const name = `${PREFIX}${process.pid}-${++counter}-${label}`;
  run(`ip`, [`netns`, `add`, name]);
  ownNamespaces.add(name);
  run(`ip`, [`netns`, `exec`, name, `ip`, `link`, `set`, `lo`, `up`]);
  const path = `/run/netns/${name}`;
  return {name, path, inode: statSync(path).ino};
}

/** Deletes a namespace made by createNetns (it lives on while sockets still hold it). */
export function deleteTestNetns(netns: Netns): void {
  deleteNetns(netns.name);
  ownNamespaces.delete(netns.name);
}

/** The inode in /proc/PID/ns/net (`net:[INODE]`). */
export function netnsInodeOfPid(pid: number): number {
  const match = /^net:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/ns/net`));
  if (!match)
    throw new Error(`unexpected ns/net link of pid ${pid}`);
  return Number(match[1]);
}

// The child: opens the sockets, reports them over IPC; with HAND_OVER set, sends the socket
// handles to the parent and exits instead of holding them.
const HOLDER_SCRIPT = `
const net = require('net');
const dgram = require('dgram');
const handOver = process.env.USMLD_HAND_OVER === '1';
const listen = (host, options = {}) => new Promise((resolve, reject) => {
  const server = net.createServer();
  server.on('error', reject);
  server.listen({host, port: 0, ...options}, () => resolve(server));
});
const connect = (server, host) => new Promise((resolve, reject) => {
  const accepted = new Promise(resolveAccepted => server.once('connection', resolveAccepted));
  const client = net.connect({host, port: server.address().port}, async () => resolve([client, await accepted]));
  client.on('error', reject);
});
const ep = (address, port) => ({address, port});
(async () => {
  const keep = [];
  const connections = [];
  const pairs = handOver ? [['v4', '127.0.0.1', '127.0.0.1', {}]] : [
    ['v4', '127.0.0.1', '127.0.0.1', {}],
    ['v6', '::1', '::1', {ipv6Only: true}],
    ['dual', '::', '127.0.0.1', {ipv6Only: false}],
  ];
  for (const [kind, listenHost, connectHost, options] of pairs) {
    const server = await listen(listenHost, options);
    const [client, accepted] = await connect(server, connectHost);
    keep.push(server, client, accepted);
    connections.push({kind, proto: 'tcp',
      listener: ep(server.address().address, server.address().port),
      client: ep(client.localAddress, client.localPort),
      server: ep(accepted.localAddress, accepted.localPort),
      clientPeer: ep(client.remoteAddress, client.remotePort)});
  }
  if (!handOver) {
    const a = dgram.createSocket('udp4');
    const b = dgram.createSocket('udp4');
    await new Promise(resolve => a.bind(0, '127.0.0.1', resolve));
    await new Promise(resolve => b.bind(0, '127.0.0.1', resolve));
    await new Promise(resolve => a.connect(b.address().port, '127.0.0.1', resolve));
    keep.push(a, b);
    connections.push({kind: 'v4', proto: 'udp', listener: null,
      client: ep(a.address().address, a.address().port),
      server: ep(b.address().address, b.address().port),
      clientPeer: ep(a.remoteAddress().address, a.remoteAddress().port)});
  }
  process.send({type: 'ready', pid: process.pid, connections});
  if (handOver) {
    // Each send passes the descriptor (SCM_RIGHTS) and closes ours once it is sent.
    for (const handle of keep)
      await new Promise((resolve, reject) => process.send({type: 'handle'}, handle, error => error ? reject(error) : resolve()));
    process.send({type: 'done'}, () => process.exit(0));
    return;
  }
  setInterval(() => {}, 1 << 30);
})().catch(error => { console.error(error); process.exit(1); });
`;

interface ReadyMessage {
  type: `ready`;
  pid: number;
  connections: Array<HeldConnection>;
}

function spawnHolder(netns: Netns | null, handOver: boolean): ChildProcess {
  const node = process.execPath;
  const argv = netns ? [`ip`, [`netns`, `exec`, netns.name, node, `-e`, HOLDER_SCRIPT]] as const : [node, [`-e`, HOLDER_SCRIPT]] as const;
  const child = spawn(argv[0], [...argv[1]], {
    stdio: [`ignore`, `ignore`, `inherit`, `ipc`],
    env: {...process.env, USMLD_HAND_OVER: handOver ? `1` : `0`},
  });
  ownChildren.add(child);
  return child;
}

function waitFor<T>(child: ChildProcess, type: string, timeoutMs = 15_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => fail(new Error(`socket holder sent no ${type} message in ${timeoutMs} ms`)), timeoutMs);
    const onMessage = (message: {type: string}) => {
      if (message?.type !== type)
        return;
      done();
      resolve(message as T);
    };
    const onExit = (code: number | null) => fail(new Error(`socket holder exited (${code}) before its ${type} message`));
    const fail = (error: Error) => {
      done();
      reject(error);
    };
    const done = () => {
      clearTimeout(timer);
      child.off(`message`, onMessage);
      child.off(`exit`, onExit);
    };
    child.on(`message`, onMessage);
    child.once(`exit`, onExit);
  });
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode === null && child.signalCode === null) {
    const exited = new Promise(resolve => child.once(`exit`, resolve));
    child.kill(`SIGKILL`);
    await exited;
  }
  ownChildren.delete(child);
}

/** A live process holding real connections, in `netns` or in our own namespace. */
export async function startSocketHolder(options: {netns?: Netns} = {}): Promise<SocketHolder> {
  const child = spawnHolder(options.netns ?? null, false);
  try {
    const ready = await waitFor<ReadyMessage>(child, `ready`);
    return {
      pid: ready.pid,
      netnsInode: netnsInodeOfPid(ready.pid),
      connections: ready.connections,
      stop: () => stopChild(child),
    };
  } catch (err) {
    await stopChild(child);
    throw err;
  }
}

export interface ProcessLessNetns {
  netns: Netns;
  /** The ESTABLISHED pair (and its listener) that the namespace still holds. */
  connections: Array<HeldConnection>;
  /** Closes the handed-over sockets (the namespace then holds only what lingers in TIME_WAIT). */
  release(): void;
}

/** A namespace with sockets in it and no process in it (see the comment at the top). */
export async function makeProcessLessNetns(label: string): Promise<ProcessLessNetns> {
  const netns = createNetns(label);
  const child = spawnHolder(netns, true);
  const handles: Array<Socket | Server> = [];
  child.on(`message`, (message: {type: string}, handle: Socket | Server | undefined) => {
    if (message?.type === `handle` && handle) {
      handles.push(handle);
      heldHandles.add(handle);
      // The handed-over sockets are ours now; ignore resets when they are closed.
      handle.on(`error`, () => {});
    }
  });
  try {
    const ready = await waitFor<ReadyMessage>(child, `ready`);
    await waitFor(child, `done`);
    await new Promise(resolve => child.exitCode !== null ? resolve(null) : child.once(`exit`, resolve));
    ownChildren.delete(child);
    if (handles.length !== 3)
      throw new Error(`expected 3 handed-over sockets, got ${handles.length}`);
    return {
      netns,
      connections: ready.connections,
      release: () => {
        for (const handle of handles) {
          if (`destroy` in handle)
            handle.destroy();
          else
            handle.close();
          heldHandles.delete(handle);
        }
      },
    };
  } catch (err) {
    await stopChild(child);
    throw err;
  }
}

/** Stops every holder, closes handed-over sockets and deletes every namespace this process made. */
export function cleanupNetns(): void {
  cleanupNow();
}
