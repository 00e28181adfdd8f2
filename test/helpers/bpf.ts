// Real eBPF maps for tests: created with bpftool, pinned under a test-only directory in
// /sys/fs/bpf, filled with `bpftool batch file`, and removed (pins unlinked, so the kernel frees
// the maps) when the test ends, on failure too.
import {execFileSync} from 'node:child_process';
import {mkdirSync, mkdtempSync, readdirSync, readlinkSync, rmSync, writeFileSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';

export interface TestMap {
  id: number;
  pin: string;
  name: string;
}

export interface MapSpec {
  name: string;
  keySize: number;
  valueSize: number;
  maxEntries?: number;
  type?: string;
}

const liveSets = new Set<BpfTestSet>();
process.once(`exit`, () => {
  for (const set of liveSets)
    set.cleanup();
});

export class BpfTestSet {
  readonly pinDir: string;
  private readonly scratch: string;

  constructor(label: string) {
    this.pinDir = `/sys/fs/bpf/usmld-test-${label}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
    mkdirSync(this.pinDir, {recursive: true});
    this.scratch = mkdtempSync(join(tmpdir(), `usmld-bpf-`));
    liveSets.add(this);
  }

  createMap(spec: MapSpec): TestMap {
    const pin = join(this.pinDir, `${spec.name}-${Math.random().toString(36).slice(2, 8)}`);
    execFileSync(`bpftool`, [
      `map`, `create`, pin, `type`, spec.type ?? `hash`, `key`, String(spec.keySize), `value`, String(spec.valueSize),
      `entries`, String(spec.maxEntries ?? 1024), `name`, spec.name,
    ], {stdio: [`ignore`, `ignore`, `pipe`]});
    const info = JSON.parse(execFileSync(`bpftool`, [`-j`, `map`, `show`, `pinned`, pin], {encoding: `utf8`}));
    return {id: info.id, pin, name: info.name};
  }

  /** Writes entries with one bpftool process (batch file), however many there are. */
  fill(map: TestMap, entries: Iterable<readonly [Uint8Array, Uint8Array]>): number {
    const file = join(this.scratch, `batch-${map.id}.txt`);
    const lines: Array<string> = [];
    for (const [key, value] of entries)
      lines.push(`map update pinned ${map.pin} key hex ${hexWords(key)} value hex ${hexWords(value)}`);
    if (lines.length === 0)
      return 0;
    writeFileSync(file, `${lines.join(`\n`)}\n`);
    execFileSync(`bpftool`, [`batch`, `file`, file], {stdio: [`ignore`, `ignore`, `pipe`], maxBuffer: 1 << 26});
    return lines.length;
  }

  deleteKey(map: TestMap, key: Uint8Array): void {
    execFileSync(`bpftool`, [`map`, `delete`, `pinned`, map.pin, `key`, `hex`, ...hexWords(key).split(` `)], {stdio: `ignore`});
  }

  cleanup(): void {
    rmSync(this.pinDir, {recursive: true, force: true});
    rmSync(this.scratch, {recursive: true, force: true});
    liveSets.delete(this);
  }
}

function hexWords(bytes: Uint8Array): string {
  let out = ``;
  for (let i = 0; i < bytes.length; i++)
    out += (i ? ` ` : ``) + bytes[i].toString(16).padStart(2, `0`);
  return out;
}

/** Builds a conn_tuple_t (48 bytes) as the agent stores it. Addresses as text; v4 or v6 by form. */
export function connTupleBytes(t: {saddr: string, sport: number, daddr: string, dport: number, netns?: number, pid?: number, udp?: boolean}): Buffer {
  const buf = Buffer.alloc(48);
  const v6 = t.saddr.includes(`:`) || t.daddr.includes(`:`);
  writeAddr(buf, 0, t.saddr, v6);
  writeAddr(buf, 16, t.daddr, v6);
  buf.writeUInt16LE(t.sport, 32);
  buf.writeUInt16LE(t.dport, 34);
  buf.writeUInt32LE(t.netns ?? 0, 36);
  buf.writeUInt32LE(t.pid ?? 0, 40);
  buf.writeUInt32LE((t.udp ? 0 : 1) | (v6 ? 2 : 0), 44);
  return buf;
}

function writeAddr(buf: Buffer, offset: number, address: string, v6: boolean): void {
  if (!v6) {
    // IPv4: network-order octets at the start of the _l half (offset + 8).
    address.split(`.`).forEach((octet, i) => { buf[offset + 8 + i] = Number(octet); });
    return;
  }
  const bytes = ipv6Bytes(address);
  bytes.copy(buf, offset);
}

export function ipv6Bytes(address: string): Buffer {
  const out = Buffer.alloc(16);
  let text = address;
  let tailV4: Array<number> = [];
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4) {
    tailV4 = v4[1].split(`.`).map(Number);
    text = `${text.slice(0, -v4[1].length)}0:0`;
  }
  const [head, tail] = text.includes(`::`) ? text.split(`::`) : [text, null];
  const headGroups = head ? head.split(`:`).filter(g => g.length > 0) : [];
  const tailGroups = tail ? tail.split(`:`).filter(g => g.length > 0) : [];
  const groups = tail === null ? headGroups : [...headGroups, ...new Array(8 - headGroups.length - tailGroups.length).fill(`0`), ...tailGroups];
  groups.forEach((group, i) => out.writeUInt16BE(parseInt(group, 16), i * 2));
  if (tailV4.length)
    tailV4.forEach((octet, i) => { out[12 + i] = octet; });
  return out;
}

/** A pid_tgid key: tgid in the upper 32 bits, tid in the lower, little-endian u64. */
export function pidTgidBytes(tgid: number, tid: number): Buffer {
  const buf = Buffer.alloc(8);
  buf.writeUInt32LE(tid, 0);
  buf.writeUInt32LE(tgid, 4);
  return buf;
}

/** This process's open eBPF map fds (a reader must close every one it opened). */
export function openMapFds(): number {
  let count = 0;
  for (const fd of readdirSync(`/proc/self/fd`)) {
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`) === `anon_inode:bpf-map`)
        count++;
    } catch {
      // closed while listing (readdir's own fd)
    }
  }
  return count;
}
