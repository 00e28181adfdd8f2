// Writes a /proc fixture tree in the capture layout (proc/<pid>/..., netns/<INODE>/...) for the
// benchmark and for tests that need many processes or sockets:
//
//   tsx scripts/gen-proc-fixture.ts OUT_DIR [--sockets N] [--namespaces M] [--processes P] [--seed S]
//
// then `snapshot-conns --from OUT_DIR` / `snapshot-pids --from OUT_DIR`. As in a real capture,
// one process per namespace (its lowest pid) carries net/{tcp,tcp6,udp,udp6}; a namespace with
// no process gets netns/<INODE>/ with a `paths` file. Rows are printed the way the kernel prints
// them (tcp4_seq_show / udp4_format_sock and their v6 twins): `%4d:` or `%5d:` slot, addresses as
// host-order (little-endian) u32 hex words, TIME_WAIT rows with uid and inode 0.
//
// writeProcTree() takes explicit processes and sockets; the command line writes the benchmark's
// seeded synthetic host (bench/synthetic.ts, the one generator of hosts).
import {mkdirSync, symlinkSync, writeFileSync} from 'node:fs';
import {join} from 'node:path';
import {pathToFileURL} from 'node:url';
import {syntheticWorld} from '../bench/synthetic.ts';

export interface FixtureProcess {
  pid: number;
  /** Thread ids, the pid first. */
  tids: Array<number>;
  state: string;
  comm: string;
  /** null: no ns/net link (a zombie). */
  netnsInode: number | null;
  startTime: number;
}

export interface FixtureSocket {
  netnsInode: number;
  table: `tcp` | `tcp6` | `udp` | `udp6`;
  /** Printable, as the table means it: tcp6/udp6 rows may be ::ffff:a.b.c.d. */
  laddr: string;
  lport: number;
  raddr: string;
  rport: number;
  /** The `st` number: 1 ESTABLISHED, 6 TIME_WAIT, 7 CLOSE, 10 LISTEN ... */
  state: number;
  inode: number;
  uid: number;
}

export interface FixtureWorld {
  processes: ReadonlyArray<FixtureProcess>;
  sockets: ReadonlyArray<FixtureSocket>;
  /** Every namespace (those with neither process nor socket are still written, empty). */
  namespaces?: ReadonlyArray<number>;
}

const HEADERS = {
  tcp: `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode`,
  tcp6: `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode`,
  udp: `   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops`,
  udp6: `   sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops`,
} as const;
const TABLE_NAMES = [`tcp`, `tcp6`, `udp`, `udp6`] as const;

function hex32(value: number, width = 8): string {
  return value.toString(16).toUpperCase().padStart(width, `0`);
}

function ipv4Bytes(text: string): Array<number> {
  const parts = text.split(`.`).map(Number);
  if (parts.length !== 4 || parts.some(part => !Number.isInteger(part) || part < 0 || part > 255))
    throw new Error(`not an IPv4 address: ${text}`);
  return parts;
}

function ipv6Bytes(text: string): Array<number> {
  let tail: Array<number> = [];
  let body = text;
  const lastColon = text.lastIndexOf(`:`);
  if (text.slice(lastColon + 1).includes(`.`)) {
    tail = ipv4Bytes(text.slice(lastColon + 1));
    body = `${text.slice(0, lastColon + 1)}0:0`;
  }
  const [head, rest] = body.includes(`::`) ? body.split(`::`) : [body, null];
  const groups = (part: string) => (part === `` ? [] : part.split(`:`).map(group => parseInt(group, 16)));
  const left = groups(head);
  const right = rest === null ? [] : groups(rest);
  const all = rest === null ? left : [...left, ...new Array(8 - left.length - right.length).fill(0), ...right];
  if (all.length !== 8 || all.some(group => !Number.isInteger(group) || group < 0 || group > 0xffff))
    throw new Error(`not an IPv6 address: ${text}`);
  const bytes = all.flatMap(group => [group >> 8, group & 0xff]);
  if (tail.length === 4)
    bytes.splice(12, 4, ...tail);
  return bytes;
}

/** An address as /proc/net prints it: each 4 network-order bytes as a little-endian u32. */
export function procHex(address: string, v6: boolean): string {
  const bytes = v6 ? ipv6Bytes(address.includes(`:`) ? address : `::ffff:${address}`) : ipv4Bytes(address);
  let out = ``;
  for (let i = 0; i < bytes.length; i += 4)
    out += hex32((bytes[i] | (bytes[i + 1] << 8) | (bytes[i + 2] << 16) | (bytes[i + 3] << 24)) >>> 0);
  return out;
}

/** One table row as the kernel prints it. */
export function procRow(slot: number, socket: FixtureSocket): string {
  const v6 = socket.table.endsWith(`6`);
  const local = `${procHex(socket.laddr, v6)}:${hex32(socket.lport, 4)}`;
  const remote = `${procHex(socket.raddr, v6)}:${hex32(socket.rport, 4)}`;
  const state = hex32(socket.state, 2);
  if (socket.table.startsWith(`udp`))
    return `${String(slot).padStart(5)}: ${local} ${remote} ${state} 00000000:00000000 00:00000000 00000000 ${String(socket.uid).padStart(5)}        0 ${socket.inode} 2 0000000000000000 0`;
  if (socket.state === 6)
    return `${String(slot).padStart(4)}: ${local} ${remote} ${state} 00000000:00000000 03:00000F9E 00000000     0        0 0 3 0000000000000000`;
  return `${String(slot).padStart(4)}: ${local} ${remote} ${state} 00000000:00000000 00:00000000 00000000 ${String(socket.uid).padStart(5)}        0 ${socket.inode} 1 0000000000000000 100 0 0 10 0`;
}

function statLine(pid: number, process: FixtureProcess): string {
  // pid (comm) state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt utime
  // stime cutime cstime priority nice num_threads itrealvalue starttime vsize rss ... (52 fields)
  const fields = [
    `${pid}`, `(${process.comm})`, process.state, `1`, `${process.pid}`, `${process.pid}`, `0`, `-1`, `4194560`, `120`, `0`, `0`, `0`,
    `7`, `3`, `0`, `0`, `20`, `0`, `${process.tids.length}`, `0`, `${process.startTime}`, `12345678`, `400`,
  ];
  while (fields.length < 52)
    fields.push(`0`);
  return `${fields.join(` `)}\n`;
}

/** Writes DIR/proc and DIR/netns for `world`. */
export function writeProcTree(dir: string, world: FixtureWorld): void {
  const procDir = join(dir, `proc`);
  mkdirSync(procDir, {recursive: true});
  const representative = new Map<number, number>();
  for (const process of [...world.processes].sort((a, b) => a.pid - b.pid)) {
    const base = join(procDir, String(process.pid));
    mkdirSync(join(base, `ns`), {recursive: true});
    writeFileSync(join(base, `stat`), statLine(process.pid, process));
    writeFileSync(join(base, `comm`), `${process.comm}\n`);
    for (const tid of process.tids) {
      mkdirSync(join(base, `task`, String(tid)), {recursive: true});
      writeFileSync(join(base, `task`, String(tid), `stat`), statLine(tid, process));
    }
    if (process.netnsInode !== null) {
      symlinkSync(`net:[${process.netnsInode}]`, join(base, `ns`, `net`));
      if (!representative.has(process.netnsInode))
        representative.set(process.netnsInode, process.pid);
    }
  }
  const rows = new Map<number, {[table: string]: Array<string>}>();
  const tablesOf = (netnsInode: number) => {
    let tables = rows.get(netnsInode);
    if (!tables) {
      tables = {tcp: [HEADERS.tcp], tcp6: [HEADERS.tcp6], udp: [HEADERS.udp], udp6: [HEADERS.udp6]};
      rows.set(netnsInode, tables);
    }
    return tables;
  };
  for (const netnsInode of world.namespaces ?? [])
    tablesOf(netnsInode);
  for (const socket of world.sockets) {
    const lines = tablesOf(socket.netnsInode)[socket.table];
    lines.push(procRow(lines.length - 1, socket));
  }
  for (const [netnsInode, tables] of rows) {
    const pid = representative.get(netnsInode);
    const target = pid !== undefined ? join(procDir, String(pid), `net`) : join(dir, `netns`, String(netnsInode));
    mkdirSync(target, {recursive: true});
    for (const name of TABLE_NAMES)
      writeFileSync(join(target, name), `${tables[name].join(`\n`)}\n`);
    if (pid === undefined)
      writeFileSync(join(target, `paths`), `/run/netns/fixture-${netnsInode}\n`);
  }
}

function main(argv: Array<string>): void {
  const out = argv[0];
  if (!out || out.startsWith(`-`)) {
    process.stderr.write(`usage: gen-proc-fixture.ts OUT_DIR [--sockets N] [--namespaces M] [--processes P] [--seed S]\n`);
    process.exit(2);
  }
  const option = (name: string, fallback: number) => {
    const at = argv.indexOf(`--${name}`);
    return at > 0 ? Number(argv[at + 1]) : fallback;
  };
  const size = {sockets: option(`sockets`, 100_000), namespaces: option(`namespaces`, 200), processes: option(`processes`, 2_000)};
  writeProcTree(out, syntheticWorld(size, option(`seed`, 1)));
  process.stderr.write(`wrote ${size.sockets} sockets over ${size.namespaces} namespaces and ${size.processes} processes to ${out}\n`);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? ``).href)
  main(process.argv.slice(2));
