// Run inside a fresh network namespace (`ip netns exec NS tsx test/helpers/sockDiagProbe.ts`) by
// test/sock-diag.test.ts: arranges sockets of every kind there, then snapshots the host with
// snapshotConns as root four ways, its own namespace (this one) read through NETLINK_SOCK_DIAG,
// with socket() refused, with one table's dump refused by the kernel, with a reply that would wait
// (EAGAIN) in the middle of a dump, and without the FFI, and
// prints what each gave for this namespace as one JSON object (with how many replies the
// first look's dumps took).
//
// The sockets: TCP listeners (IPv4, IPv6, dual-stack `::`), established pairs (IPv4, IPv6, an
// IPv4 client of the dual-stack listener: ::ffff:127.0.0.1 in tcp6), enough of them for a dump
// of several replies; TIME_WAIT (actively closed, both families); FIN_WAIT2 and CLOSE_WAIT (a
// half-closed pair); a request socket (SYN_RECV: a TCP_DEFER_ACCEPT listener keeps a connection
// whose client sent no data as a request) whose listener belongs to uid 65534; UDP bound and
// connected, IPv4, IPv6, and an IPv6 socket connected to ::ffff:127.0.0.1.
import {createRequire} from 'node:module';
import {createSocket, type Socket as UdpSocket} from 'node:dgram';
import {connect, createServer, type Server, type Socket} from 'node:net';
import {PassThrough} from 'node:stream';
import {readlinkSync} from 'node:fs';
import {defaultToolContext, createLogger, type ToolContext} from '../../src/context.ts';
import {snapshotConns} from '../../src/snapshot/conns.ts';
import {lazySyscalls, EPERM, type Syscalls} from '../../src/sys/syscalls.ts';

const EAGAIN = 11;

const PAIRS = 150;
const NOBODY = 65534;
const held: Array<Server | Socket | UdpSocket> = [];

const listen = (host: string, options: {ipv6Only?: boolean, allowHalfOpen?: boolean} = {}): Promise<Server> => new Promise((resolve, reject) => {
  const server = createServer({allowHalfOpen: options.allowHalfOpen ?? false}, socket => { held.push(socket); });
  server.once(`error`, reject);
  server.listen({host, port: 0, ipv6Only: options.ipv6Only ?? false}, () => resolve(server));
  held.push(server);
});

const dial = (host: string, port: number): Promise<Socket> => new Promise((resolve, reject) => {
  const socket = connect({host, port}, () => resolve(socket));
  socket.once(`error`, reject);
  held.push(socket);
});

const portOf = (server: Server) => (server.address() as {port: number}).port;
const settle = (ms: number) => new Promise(resolve => setTimeout(resolve, ms));

async function arrange(): Promise<void> {
  const v4 = await listen(`127.0.0.1`);
  const v6 = await listen(`::1`, {ipv6Only: true});
  const dual = await listen(`::`);
  for (let i = 0; i < PAIRS; i++) {
    await dial(`127.0.0.1`, portOf(v4));
    await dial(`::1`, portOf(v6));
  }
  await dial(`127.0.0.1`, portOf(dual));
  // TIME_WAIT on the side that closes first.
  for (const [host, server] of [[`127.0.0.1`, v4], [`::1`, v6]] as const) {
    const socket = await dial(host, portOf(server));
    await new Promise<void>(resolve => {
      socket.once(`close`, () => resolve());
      socket.end();
    });
  }
  // FIN_WAIT2 (the client) and CLOSE_WAIT (the server, which keeps its half open).
  const halfOpen = await listen(`127.0.0.1`, {allowHalfOpen: true});
  const half = await dial(`127.0.0.1`, portOf(halfOpen));
  half.end();
  // A request socket of a listener created as uid 65534.
  process.seteuid!(NOBODY);
  let deferred: Server;
  try {
    deferred = await listen(`127.0.0.1`);
  } finally {
    process.seteuid!(0);
  }
  const require = createRequire(import.meta.url);
  const koffi = require(`koffi`) as {load(name: string): {func(signature: string): (...args: Array<unknown>) => number}};
  const setsockopt = koffi.load(`libc.so.6`).func(`int setsockopt(int fd, int level, int name, const void *value, uint32_t length)`);
  const IPPROTO_TCP = 6;
  const TCP_DEFER_ACCEPT = 9;
  const fd = (deferred as unknown as {_handle: {fd: number}})._handle.fd;
  if (setsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, Buffer.from(new Int32Array([60]).buffer), 4) !== 0)
    throw new Error(`setsockopt(TCP_DEFER_ACCEPT) failed`);
  await dial(`127.0.0.1`, portOf(deferred));
  // UDP: bound, and connected pairs.
  const udp = async (type: `udp4` | `udp6`, address: string, ipv6Only = false): Promise<UdpSocket> => {
    const socket = createSocket({type, ipv6Only});
    held.push(socket);
    await new Promise<void>(resolve => socket.bind(0, address, () => resolve()));
    return socket;
  };
  const peer4 = await udp(`udp4`, `127.0.0.1`);
  const peer6 = await udp(`udp6`, `::1`, true);
  // Bound to `::`, dual-stack.
  await udp(`udp6`, `::`);
  for (const [type, address, peer] of [[`udp4`, `127.0.0.1`, peer4], [`udp6`, `::1`, peer6], [`udp6`, `::`, peer4]] as const) {
    const socket = await udp(type, address);
    const target = peer === peer4 ? `${type === `udp6` ? `::ffff:` : ``}127.0.0.1` : `::1`;
    await new Promise<void>(resolve => socket.connect(peer.address().port, target, () => resolve()));
  }
  await settle(100);
}

interface Look {
  records: Array<Record<string, unknown>>;
  stderr: string;
}

async function look(syscalls: ToolContext[`syscalls`], own: number): Promise<Look> {
  const stderr = new PassThrough();
  const chunks: Array<Buffer> = [];
  stderr.on(`data`, chunk => chunks.push(chunk));
  const ctx = defaultToolContext(stderr, {syscalls, log: createLogger(stderr, {verbosity: 2})});
  const records: Array<Record<string, unknown>> = [];
  for await (const record of snapshotConns(ctx)) {
    if ((record.type === `socket` || record.type === `netns`) && record.netnsInode === own)
      records.push(record as unknown as Record<string, unknown>);
  }
  return {records, stderr: Buffer.concat(chunks).toString(`utf8`)};
}

async function main(): Promise<void> {
  await arrange();
  const own = Number(/\d+/.exec(readlinkSync(`/proc/self/ns/net`))![0]);
  const real = lazySyscalls(process.env.TMPDIR ?? `/tmp`)();
  if (`unavailable` in real)
    throw new Error(real.unavailable);
  const refused: Syscalls = {...real, socket: () => -EPERM};
  // The request for udp (AF_INET, IPPROTO_UDP) sent for a protocol no handler serves: the kernel
  // answers that one dump with an error (ENOENT), the others as usual.
  const unservedUdp: Syscalls = {...real, send: (fd, buffer, length) => {
    if (buffer[16] === 2 && buffer[17] === 17) {
      const altered = Buffer.from(buffer);
      altered[17] = 253;
      return real.send(fd, altered, length);
    }
    return real.send(fd, buffer, length);
  }};
  // The second reply (tcp's second part) would wait: the socket cannot be trusted after it.
  let recvs = 0;
  const stalled: Syscalls = {...real, recv: (fd, buffer, length) => (++recvs === 2 ? -EAGAIN : real.recv(fd, buffer, length))};
  let replies = 0;
  const counting: Syscalls = {...real, recv: (fd, buffer, length) => {
    replies++;
    return real.recv(fd, buffer, length);
  }};
  const looks = {
    diag: await look(() => counting, own),
    refused: await look(() => refused, own),
    unservedUdp: await look(() => unservedUdp, own),
    stalled: await look(() => stalled, own),
    text: await look(() => ({unavailable: `no FFI in this look`}), own),
  };
  // Written whole before the exit below (a pipe's writes are asynchronous).
  await new Promise<void>(resolve => process.stdout.write(`${JSON.stringify({own, replies, looks})}\n`, () => resolve()));
}

main().then(() => {
  for (const handle of held) {
    if (`destroy` in handle)
      handle.destroy();
    else
      handle.close();
  }
  process.exit(0);
}, err => {
  process.stderr.write(`${(err as Error).stack}\n`);
  process.exit(1);
});
