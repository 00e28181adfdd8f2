// The kernel backend (bpf() through the FFI) on real maps: the same records as the bpftool
// backend's (BTF and hex maps, per-CPU values, 56-byte keys, a duplicate name, a key-size
// mismatch, a large LRU map read in chunks that must grow), the key-by-key path when batch lookup
// is refused, read-only descriptors, holders from fdinfo, fds closed on an early stop, and the
// fallback to bpftool when bpf() is refused.
import {spawn} from 'node:child_process';
import {closeSync} from 'node:fs';
import {PassThrough} from 'node:stream';
import {test} from 'uvu';
import * as assert from 'uvu/assert';
import {createLogger, defaultToolContext, type ToolContext} from '../src/context.ts';
import {dumpMaps, type DumpOptions} from '../src/dump/index.ts';
import {openMapReadOnly} from '../src/dump/kernel.ts';
import {lazySyscalls, EINVAL, ENOENT, EPERM, type Syscalls} from '../src/sys/syscalls.ts';
import {BpfTestSet, connTupleBytes, openMapFds, type TestMap} from './helpers/bpf.ts';
import {parseLines, runCommand} from './helpers/cli.ts';
import {bpfUnavailable, requirePrivileges} from './helpers/privileges.ts';
import {buildFixtureMaps, type FixtureMap} from './fixtures/bpf/maps.ts';
import {beforeAll} from './helpers/setUp.ts';

const runs = requirePrivileges(`dump-maps kernel backend`, bpfUnavailable());
let set: BpfTestSet;
let fixture: Array<FixtureMap> = [];
let big: TestMap;
let wide: TestMap;
let ids: Array<string> = [];

const realSyscalls = () => {
  const sys = lazySyscalls(process.env.TMPDIR ?? `/tmp`)();
  if (`unavailable` in sys)
    throw new Error(sys.unavailable);
  return sys;
};

/** The real syscall layer with one command refused with `errno` (cmd -1: every command). */
function refusing(cmd: number, errno: number): ToolContext[`syscalls`] {
  const sys = realSyscalls();
  const wrapped: Syscalls = {...sys, bpf: (c, attr, size) => (cmd === -1 || c === cmd ? -errno : sys.bpf(c, attr, size))};
  return () => wrapped;
}

beforeAll(test, () => {
  if (!runs)
    return;
  set = new BpfTestSet(`kernel`);
  fixture = buildFixtureMaps(set);
  // A large LRU map: many chunks, and hash buckets that overflow a chunk of one.
  big = set.createMap({name: `connection_stat`, type: `lru_hash`, keySize: 48, valueSize: 16, maxEntries: 40_000});
  const entries: Array<[Buffer, Buffer]> = [];
  for (let i = 0; i < 8_000; i++) {
    const value = Buffer.alloc(16);
    value.writeUInt32LE(i, 0);
    entries.push([connTupleBytes({saddr: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, sport: 1024 + (i % 50_000), daddr: `10.9.9.9`, dport: 443, netns: 4026531840, pid: i}), value]);
  }
  set.fill(big, entries);
  // 56-byte keys (a conn_tuple_t and a stream id) in a per-CPU map.
  wide = set.createMap({name: `http2_in_flight`, type: `percpu_hash`, keySize: 56, valueSize: 12, maxEntries: 64});
  const wideEntries: Array<[Buffer, Buffer]> = [];
  for (let i = 0; i < 5; i++) {
    const key = Buffer.concat([connTupleBytes({saddr: `2001:db8::${i + 1}`, sport: 40_000 + i, daddr: `2001:db8::ff`, dport: 8080}), Buffer.from([i, 0, 0, 0, 0, 0, 0, 0])]);
    wideEntries.push([key, Buffer.from(`value-${i}-abcd`).subarray(0, 12)]);
  }
  set.fill(wide, wideEntries);
  ids = [...fixture.map(f => f.map.id), big.id, wide.id].flatMap(id => [`--map-id`, String(id)]);
});

test.after(() => {
  set?.cleanup();
});

/** Records without the header, with the backend name and the read time of dated maps blanked: what must be equal across backends. */
function comparable(stdout: string): Array<string> {
  return parseLines(stdout).filter(record => record.type !== `header`)
    .map(record => JSON.stringify({...record, backend: record.type === `map` ? `-` : undefined, monotonicNs: undefined}));
}

async function dump(args: Array<string>, tool: Partial<ToolContext> = {}) {
  const run = await runCommand([`dump-maps`, ...args], {tool});
  return {...run, records: comparable(run.stdout)};
}

if (runs) {
  test(`kernel backend: the same map, entry and mapstats records as the bpftool backend's`, async () => {
    const kernel = await dump([`--backend`, `kernel`, ...ids]);
    const bpftool = await dump([`--backend`, `bpftool`, ...ids]);
    assert.is(kernel.code, 0, kernel.stderr);
    assert.is(bpftool.code, 0, bpftool.stderr);
    assert.ok(kernel.records.length > 8_000, `the large map is there`);
    assert.equal(kernel.records, bpftool.records);
    const maps = parseLines(kernel.stdout).filter(record => record.type === `map`);
    assert.ok(maps.every(map => map.backend === `kernel`));
    assert.ok(maps.some(map => map.mapType === `lru_hash`) && maps.some(map => map.mapType === `percpu_hash`));
    const stats = parseLines(kernel.stdout).filter(record => record.type === `mapstats`);
    assert.ok(stats.some(record => record.btf === true) && stats.some(record => record.btf === false), `BTF and non-BTF maps`);
  });

  test(`kernel backend is the default when bpf() is allowed; chunks of one grow on ENOSPC`, async () => {
    const sys = realSyscalls();
    let enospc = 0;
    const counting: Syscalls = {...sys, bpf: (cmd, attr, size) => {
      const result = sys.bpf(cmd, attr, size);
      if (cmd === 24 && result === -28)
        enospc++;
      return result;
    }};
    const ctx = defaultToolContext(new PassThrough(), {syscalls: () => counting});
    const records: Array<Record<string, any>> = [];
    for await (const record of dumpMaps(ctx, {mapIds: [big.id, wide.id], batchEntries: 1}))
      records.push(record);
    assert.ok(enospc > 0, `a bucket held more than one entry`);
    assert.ok(records.filter(record => record.type === `map`).every(record => record.backend === `kernel`));
    const stats = records.filter(record => record.type === `mapstats`);
    assert.equal(stats.map(record => [record.mapId, record.entries, record.duplicates, record.complete]), [[big.id, 8_000, 0, true], [wide.id, 5, 0, true]]);
  });

  test(`batch lookups give each key once while keys are deleted and re-added under the read (no duplicate check is made for them)`, async () => {
    const sys = realSyscalls();
    // A writable fd of the test's own map (the tool's are read-only), to change it between batches.
    const attr = Buffer.alloc(32);
    attr.writeUInt32LE(big.id, 0);
    const fd = sys.bpf(14 /* BPF_MAP_GET_FD_BY_ID */, attr, 12);
    assert.ok(fd >= 0, `opened map ${big.id} for writing`);
    const keys = Array.from({length: 8_000}, (_, i) => connTupleBytes({saddr: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, sport: 1024 + (i % 50_000), daddr: `10.9.9.9`, dport: 443, netns: 4026531840, pid: i}));
    const value = Buffer.alloc(16);
    const change = (cmd: number, key: Buffer) => {
      attr.fill(0);
      attr.writeUInt32LE(fd, 0);
      attr.writeBigUInt64LE(sys.address(key), 8);
      if (cmd === 2)
        attr.writeBigUInt64LE(sys.address(value), 16);
      return sys.bpf(cmd, attr, 32);
    };
    let batches = 0;
    let next = 0;
    const churning: Syscalls = {...sys, bpf: (cmd, callAttr, size) => {
      const result = sys.bpf(cmd, callAttr, size);
      if (cmd === 24) {
        batches++;
        // Keys read already and keys still to come: each deleted and added back.
        for (let i = 0; i < 40; i++, next = (next + 197) % keys.length) {
          value.writeUInt32LE(next, 0);
          change(3 /* BPF_MAP_DELETE_ELEM */, keys[next]);
          assert.is(change(2 /* BPF_MAP_UPDATE_ELEM */, keys[next]), 0);
        }
      }
      return result;
    }};
    try {
      const ctx = defaultToolContext(new PassThrough(), {syscalls: () => churning});
      const seen = new Set<string>();
      let twice = 0;
      let stats: Record<string, any> | undefined;
      for await (const record of dumpMaps(ctx, {backend: `kernel`, mapIds: [big.id], batchEntries: 64})) {
        if (record.type === `entry`) {
          if (seen.has(record.keyHex))
            twice++;
          seen.add(record.keyHex);
        } else if (record.type === `mapstats`) {
          stats = record;
        }
      }
      assert.ok(batches > 50, `${batches} batches`);
      assert.is(twice, 0, `keys read twice`);
      assert.equal([stats!.entries, stats!.duplicates, stats!.complete], [seen.size, 0, true]);
      assert.ok(seen.size > 7_000, `${seen.size} keys read`);
    } finally {
      closeSync(fd);
    }
  });

  test(`kernel backend walks key by key when the kernel refuses batch lookup: same records`, async () => {
    const walked = await dump([`--backend`, `kernel`, ...ids], {syscalls: refusing(24, EINVAL)});
    const bpftool = await dump([`--backend`, `bpftool`, ...ids]);
    assert.is(walked.code, 0, walked.stderr);
    assert.equal(walked.records, bpftool.records);
  });

  test(`key by key: an entry deleted between next-key and lookup is a failed lookup, as bpftool counts it`, async () => {
    const sys = realSyscalls();
    let lookups = 0;
    const racing: Syscalls = {...sys, bpf: (cmd, attr, size) => {
      if (cmd === 24)
        return -EINVAL;
      if (cmd === 1 && ++lookups === 2)
        return -ENOENT;
      return sys.bpf(cmd, attr, size);
    }};
    const ctx = defaultToolContext(new PassThrough(), {syscalls: () => racing});
    const records: Array<Record<string, any>> = [];
    for await (const record of dumpMaps(ctx, {backend: `kernel`, mapIds: [wide.id]}))
      records.push(record);
    const stats = records.find(record => record.type === `mapstats`)!;
    assert.equal([stats.entries, stats.errors, stats.duplicates, stats.complete], [4, 1, 0, true]);
  });

  test(`a map fd opened by the kernel backend refuses an update with EPERM`, () => {
    const sys = realSyscalls();
    const fd = openMapReadOnly(sys, wide.id);
    assert.ok(fd >= 0, `opened map ${wide.id}`);
    try {
      const key = Buffer.alloc(56, 7);
      const value = Buffer.alloc(16 * 1024);
      const attr = Buffer.alloc(32);
      attr.writeUInt32LE(fd, 0);
      attr.writeBigUInt64LE(sys.address(key), 8);
      attr.writeBigUInt64LE(sys.address(value), 16);
      assert.is(sys.bpf(2 /* BPF_MAP_UPDATE_ELEM */, attr, 32), -EPERM);
      attr.fill(0, 16);
      assert.is(sys.bpf(3 /* BPF_MAP_DELETE_ELEM */, attr, 32), -EPERM);
    } finally {
      closeSync(fd);
    }
  });

  test(`holders come from fdinfo, the same for both backends`, async () => {
    const sys = realSyscalls();
    const fd = openMapReadOnly(sys, wide.id);
    const child = spawn(`sleep`, [`30`], {stdio: [`ignore`, `ignore`, `ignore`, fd]});
    closeSync(fd);
    try {
      await new Promise(resolve => setTimeout(resolve, 100));
      for (const backend of [`kernel`, `bpftool`]) {
        const run = await runCommand([`dump-maps`, `--backend`, backend, `--map-id`, String(wide.id)]);
        const map = parseLines(run.stdout).find(record => record.type === `map`)!;
        assert.equal(map.holders, [{pid: child.pid, comm: `sleep`}], backend);
      }
    } finally {
      child.kill();
    }
  });

  test(`an early stop closes every map fd`, async () => {
    const before = openMapFds();
    const ctx = defaultToolContext(new PassThrough());
    let seen = 0;
    for await (const record of dumpMaps(ctx, {backend: `kernel`, mapIds: [big.id], batchEntries: 64})) {
      if (record.type === `entry` && ++seen === 3)
        break;
    }
    assert.is(seen, 3);
    assert.is(openMapFds(), before);
  });

  test(`read ahead in a worker thread: the same records as read on this thread (chunks of one and seven growing on ENOSPC; each map opened ahead of its turn); an early stop closes every fd, the next map's too`, async () => {
    const mapIds = [...fixture.map(f => f.map.id), big.id, wide.id];
    const read = async (options: Partial<DumpOptions>) => {
      let said = ``;
      const stderr = new PassThrough();
      stderr.on(`data`, chunk => (said += chunk));
      const ctx = defaultToolContext(stderr, {log: createLogger(stderr, {verbosity: 2})});
      const records: Array<string> = [];
      for await (const record of dumpMaps(ctx, {backend: `kernel`, mapIds, ...options}))
        records.push(JSON.stringify({...record, monotonicNs: undefined, ageSeconds: undefined}));
      return {records, worker: /chunk\(s\) read ahead in a worker thread/.test(said)};
    };
    const here = await read({});
    assert.not.ok(here.worker);
    assert.ok(here.records.length > 8_000);
    for (const [batchEntries, handedOn] of [[undefined, undefined], [1, undefined], [7, undefined], [7, 3], [undefined, 1000]]) {
      const ahead = await read({readAhead: true, batchEntries, handedOn});
      assert.ok(ahead.worker, `read in the worker (batchEntries ${batchEntries}, handedOn ${handedOn})`);
      assert.equal(ahead.records, here.records, `batchEntries ${batchEntries}, handedOn ${handedOn}`);
    }
    // A wrapped bpf() (refusing batch lookup here) sees every call: no worker, the walk's records.
    const stderr = new PassThrough();
    const walked: Array<string> = [];
    const ctx = defaultToolContext(stderr, {syscalls: refusing(24, EINVAL)});
    for await (const record of dumpMaps(ctx, {backend: `kernel`, mapIds, readAhead: true}))
      walked.push(JSON.stringify({...record, monotonicNs: undefined, ageSeconds: undefined}));
    assert.equal(walked, here.records);

    const before = openMapFds();
    let seen = 0;
    let open = 0;
    // The map after the one being read is opened ahead (its first chunks read in the worker): an
    // early stop closes it too.
    for await (const record of dumpMaps(defaultToolContext(new PassThrough()), {backend: `kernel`, mapIds: [big.id, wide.id], batchEntries: 64, readAhead: true})) {
      if (record.type === `entry` && ++seen === 3) {
        open = openMapFds() - before;
        break;
      }
    }
    assert.is(seen, 3);
    assert.is(open, 2, `the map being read and the next one, opened ahead`);
    // The worker gives the fd back once it has stopped reading.
    for (let i = 0; i < 50 && openMapFds() !== before; i++)
      await new Promise(resolve => setTimeout(resolve, 20));
    assert.is(openMapFds(), before);
  });

  test(`bpf() refused: said on stderr, bpftool is the fallback; --backend kernel names the reason`, async () => {
    const fallback = await dump(ids, {syscalls: refusing(-1, EPERM)});
    const bpftool = await dump([`--backend`, `bpftool`, ...ids]);
    assert.is(fallback.code, 0, fallback.stderr);
    assert.match(fallback.stderr, /the kernel backend cannot be used \(listing eBPF maps: bpf\(\) refused \(EPERM\): not root, or no CAP_BPF and CAP_SYS_ADMIN, or a seccomp profile denies bpf\(\)\); falling back to bpftool/);
    assert.equal(fallback.records, bpftool.records);
    assert.ok(parseLines(fallback.stdout).filter(record => record.type === `map`).every(record => record.backend === `bpftool`));
    const noFfi = await dump(ids, {syscalls: () => ({unavailable: `the FFI module (koffi) cannot be loaded: test`})});
    assert.is(noFfi.code, 0);
    assert.match(noFfi.stderr, /the kernel backend cannot be used \(the FFI module \(koffi\) cannot be loaded: test\); falling back to bpftool/);
    const forced = await dump([`--backend`, `kernel`, ...ids], {syscalls: refusing(-1, 38)});
    assert.is(forced.code, 3);
    assert.match(forced.stderr, /--backend kernel: listing eBPF maps: bpf\(\) is not available \(ENOSYS\): a seccomp profile blocks it/);
  });
}

test.run();
