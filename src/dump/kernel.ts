// The `kernel` backend: maps read with the bpf() syscall itself (through the FFI of src/sys/),
// no bpftool and no text in between. Maps are enumerated with BPF_MAP_GET_NEXT_ID, opened with
// BPF_MAP_GET_FD_BY_ID and BPF_F_RDONLY (the kernel then refuses any update or delete through our
// descriptors), described by BPF_OBJ_GET_INFO_BY_FD, and read with BPF_MAP_LOOKUP_BATCH in chunks,
// or key by key (BPF_MAP_GET_NEXT_KEY + BPF_MAP_LOOKUP_ELEM) where the kernel has no batch lookup.
// Attr layouts: include/uapi/linux/bpf.h (64-bit ABI).
import {closeSync, readFileSync} from 'node:fs';
import type {ToolContext} from '../context.ts';
import {EnvironmentFault, errorMessage} from '../errors.ts';
import {parseBtf} from '../btf.ts';
import {
  callsKernelDirectly, EACCES, EINVAL, ENOENT, ENOSPC, ENOSYS, ENOTSUPP, EOPNOTSUPP, EPERM, errnoName, type Syscalls,
} from '../sys/syscalls.ts';
import {emptyRawEntry, type EntrySink, type KeyStore, type RawEntry} from './entry.ts';
import {mapHolders} from './holders.ts';
import {ReadAhead, type ChunkStream, type ReadChunk} from './readAhead.ts';
import {mapGone, type ListedMap, type MapReader, type MapSource, type ReadOutcome} from './source.ts';

const BPF_MAP_LOOKUP_ELEM = 1;
const BPF_MAP_GET_NEXT_KEY = 4;
const BPF_MAP_GET_NEXT_ID = 12;
const BPF_MAP_GET_FD_BY_ID = 14;
const BPF_OBJ_GET_INFO_BY_FD = 15;
const BPF_MAP_LOOKUP_BATCH = 24;
const BPF_BTF_GET_FD_BY_ID = 19;
/** struct bpf_btf_info: u64 btf (buffer), u32 btf_size, u32 id, ... */
const BTF_INFO_SIZE = 16;
/** open_flags of BPF_MAP_GET_FD_BY_ID: the fd can read, never update or delete. */
export const BPF_F_RDONLY = 1 << 3;
/** struct bpf_map_info up to map_extra; older kernels fill less (the tail stays zero). */
const MAP_INFO_SIZE = 88;
/**
 * Entries asked for per batch lookup (grown when one hash bucket holds more). Also how many
 * entry records wait between two yields: small enough that they die young (a 4,096-entry chunk
 * made them outlive V8's young generation: 40% more CPU, 60% more memory, at 100,000 entries).
 */
export const DEFAULT_BATCH_ENTRIES = 256;
/** Entries of a read-ahead chunk handed on at a time: fewer batches through the stages, fewer of them alive at a scavenge. */
const HANDED_ON = 1024;

/** bpftool's names of map types (libbpf's map_type_name), by number. */
const MAP_TYPE_NAMES = [
  `unspec`, `hash`, `array`, `prog_array`, `perf_event_array`, `percpu_hash`, `percpu_array`, `stack_trace`,
  `cgroup_array`, `lru_hash`, `lru_percpu_hash`, `lpm_trie`, `array_of_maps`, `hash_of_maps`, `devmap`, `sockmap`,
  `cpumap`, `xskmap`, `sockhash`, `cgroup_storage`, `reuseport_sockarray`, `percpu_cgroup_storage`, `queue`, `stack`,
  `sk_storage`, `devmap_hash`, `struct_ops`, `ringbuf`, `inode_storage`, `task_storage`, `bloom_filter`,
  `user_ringbuf`, `cgrp_storage`, `arena`,
];
const PER_CPU_TYPES = new Set([5, 6, 10, 21]);
/** Hash and array maps: the kernel has a batch lookup for them (5.6+). */
const BATCH_TYPES = new Set([1, 2, 5, 6, 9, 10]);

export interface MapInfo {
  type: number;
  id: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags: number;
  name: string;
  btfId: number;
  btfKeyTypeId: number;
  btfValueTypeId: number;
}

/** The words for a refused or failed bpf() call: who to blame, not just the errno. */
export function bpfFailure(errno: number, doing: string): string {
  const name = errnoName(errno);
  switch (errno) {
    case EPERM:
    case EACCES:
      return `${doing}: bpf() refused (${name}): not root, or no CAP_BPF and CAP_SYS_ADMIN, or a seccomp profile denies bpf()`;
    case ENOSYS:
      return `${doing}: bpf() is not available (${name}): a seccomp profile blocks it, or the kernel has no BPF syscall`;
    case EINVAL:
      return `${doing}: the kernel does not accept this bpf() command (${name}): kernel too old`;
    case ENOENT:
      return `${doing}: map gone (${name})`;
    default:
      return `${doing}: bpf() failed (${name})`;
  }
}

/** Thin typed calls over bpf(2); each returns the result or -errno. One attr buffer, zeroed per call. */
class BpfCalls {
  private readonly attr = Buffer.alloc(64);

  constructor(readonly sys: Syscalls) {}

  private call(cmd: number, size: number): number {
    return this.sys.bpf(cmd, this.attr, size);
  }

  private reset(): Buffer {
    return this.attr.fill(0);
  }

  /** The next map id after `start`, or -errno (ENOENT after the last). */
  nextMapId(start: number): number {
    const attr = this.reset();
    attr.writeUInt32LE(start, 0);
    const result = this.call(BPF_MAP_GET_NEXT_ID, 8);
    return result < 0 ? result : attr.readUInt32LE(4);
  }

  /** A read-only fd of the map, or -errno. */
  openMap(id: number): number {
    const attr = this.reset();
    attr.writeUInt32LE(id, 0);
    attr.writeUInt32LE(BPF_F_RDONLY, 8);
    return this.call(BPF_MAP_GET_FD_BY_ID, 12);
  }

  mapInfo(fd: number): MapInfo | number {
    const info = Buffer.alloc(MAP_INFO_SIZE);
    const attr = this.reset();
    attr.writeUInt32LE(fd, 0);
    attr.writeUInt32LE(MAP_INFO_SIZE, 4);
    attr.writeBigUInt64LE(this.sys.address(info), 8);
    const result = this.call(BPF_OBJ_GET_INFO_BY_FD, 16);
    if (result < 0)
      return result;
    const nameEnd = info.indexOf(0, 24);
    return {
      type: info.readUInt32LE(0), id: info.readUInt32LE(4), keySize: info.readUInt32LE(8), valueSize: info.readUInt32LE(12),
      maxEntries: info.readUInt32LE(16), flags: info.readUInt32LE(20),
      name: info.toString(`utf8`, 24, nameEnd >= 24 && nameEnd < 40 ? nameEnd : 40),
      btfId: info.readUInt32LE(64), btfKeyTypeId: info.readUInt32LE(68), btfValueTypeId: info.readUInt32LE(72),
    };
  }

  /**
   * The raw BTF blob of BTF object `id` (BPF_BTF_GET_FD_BY_ID, then BPF_OBJ_GET_INFO_BY_FD twice:
   * once for its size, once into a buffer of that size), or -errno.
   */
  btfBlob(id: number): Buffer | number {
    let attr = this.reset();
    attr.writeUInt32LE(id, 0);
    const fd = this.call(BPF_BTF_GET_FD_BY_ID, 4);
    if (fd < 0)
      return fd;
    try {
      const info = Buffer.alloc(BTF_INFO_SIZE);
      const ask = (blob: Buffer | null) => {
        info.fill(0);
        if (blob !== null) {
          info.writeBigUInt64LE(this.sys.address(blob), 0);
          info.writeUInt32LE(blob.length, 8);
        }
        attr = this.reset();
        attr.writeUInt32LE(fd, 0);
        attr.writeUInt32LE(BTF_INFO_SIZE, 4);
        attr.writeBigUInt64LE(this.sys.address(info), 8);
        return this.call(BPF_OBJ_GET_INFO_BY_FD, 16);
      };
      let result = ask(null);
      if (result < 0)
        return result;
      const blob = Buffer.alloc(info.readUInt32LE(8));
      result = ask(blob);
      if (result < 0)
        return result;
      return blob.subarray(0, Math.min(blob.length, info.readUInt32LE(8)));
    } finally {
      closeFd(fd);
    }
  }

  /** One batch: returns 0 or -errno; the count filled is in `batchCount`. */
  lookupBatch(fd: number, inBatch: Buffer | null, outBatch: Buffer, keys: Buffer, values: Buffer, room: number): number {
    const attr = this.reset();
    if (inBatch !== null)
      attr.writeBigUInt64LE(this.sys.address(inBatch), 0);
    attr.writeBigUInt64LE(this.sys.address(outBatch), 8);
    attr.writeBigUInt64LE(this.sys.address(keys), 16);
    attr.writeBigUInt64LE(this.sys.address(values), 24);
    attr.writeUInt32LE(room, 32);
    attr.writeUInt32LE(fd, 36);
    const result = this.call(BPF_MAP_LOOKUP_BATCH, 56);
    this.batchCount = attr.readUInt32LE(32);
    return result;
  }

  batchCount = 0;

  nextKey(fd: number, key: Buffer | null, next: Buffer): number {
    const attr = this.reset();
    attr.writeUInt32LE(fd, 0);
    if (key !== null)
      attr.writeBigUInt64LE(this.sys.address(key), 8);
    attr.writeBigUInt64LE(this.sys.address(next), 16);
    return this.call(BPF_MAP_GET_NEXT_KEY, 24);
  }

  lookup(fd: number, key: Buffer, value: Buffer): number {
    const attr = this.reset();
    attr.writeUInt32LE(fd, 0);
    attr.writeBigUInt64LE(this.sys.address(key), 8);
    attr.writeBigUInt64LE(this.sys.address(value), 16);
    return this.call(BPF_MAP_LOOKUP_ELEM, 32);
  }
}

function closeFd(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // already closed: nothing held
  }
}

/** The number of possible CPUs: per-CPU values come one per possible CPU. */
export function possibleCpus(text: string): number {
  let count = 0;
  for (const range of text.trim().split(`,`)) {
    const [low, high] = range.split(`-`).map(Number);
    if (Number.isInteger(low))
      count += (Number.isInteger(high) ? high : low) - low + 1;
  }
  return Math.max(count, 1);
}

function typeName(type: number): string {
  return MAP_TYPE_NAMES[type] ?? String(type);
}

export interface KernelSourceOptions {
  /** Entries per batch lookup (tests make it small to force ENOSPC growth). */
  batchEntries?: number;
  /** Read ahead: entries of a worker's chunk handed on at a time (tests make it small). */
  handedOn?: number;
  /** The possible CPUs file (sysfs). */
  possibleCpusFile?: string;
  /**
   * Make the batch lookups in a worker thread, ahead of the chunk being processed (./readAhead.ts):
   * `true` for a worker of its own, or one already started (scan's; closed with the source).
   */
  readAhead?: boolean | ReadAhead;
}

/**
 * Whether bpf() may be called: null when it may, else the words saying why not. Asks for the
 * first map id, which needs the same privilege as everything else we do.
 */
/** A read-only fd of map `id` (BPF_F_RDONLY), or -errno; the caller closes it. */
export function openMapReadOnly(sys: Syscalls, id: number): number {
  return new BpfCalls(sys).openMap(id);
}

export function kernelRefusal(sys: Syscalls): string | null {
  const result = new BpfCalls(sys).nextMapId(0);
  if (result >= 0 || result === -ENOENT)
    return null;
  return bpfFailure(-result, `listing eBPF maps`);
}

export function kernelSource(ctx: ToolContext, sys: Syscalls, options: KernelSourceOptions = {}): MapSource {
  const calls = new BpfCalls(sys);
  let cpus: number | null = null;
  const cpuCount = () => (cpus ??= possibleCpus(readFileSync(options.possibleCpusFile ?? `/sys/devices/system/cpu/possible`, `latin1`)));
  // A wrapped bpf() (a test's) must see every call: no worker then.
  const ahead = options.readAhead === undefined || options.readAhead === false || !callsKernelDirectly(sys) ? null
    : options.readAhead === true ? new ReadAhead(ctx.tmpDir, options.batchEntries) : options.readAhead;
  ahead?.useSyscalls(sys);
  // Read ahead, the map after the one being read is opened and its reading started in the worker
  // (queued behind the current map's): its first chunks are there when its turn comes, instead
  // of a round trip to the worker and a lookup at every map's start.
  let order: ReadonlyArray<number> = [];
  const openedAhead = new Map<number, OpenedMap>();
  const openNext = (mapId: number): void => {
    const at = order.indexOf(mapId);
    const next = at < 0 ? undefined : order[at + 1];
    if (ahead === null || next === undefined || openedAhead.has(next))
      return;
    const fd = calls.openMap(next);
    if (fd < 0)
      return; // opened again in its turn, which says why it failed
    const info = calls.mapInfo(fd);
    if (typeof info === `number`) {
      closeFd(fd);
      return;
    }
    const layout = readLayout(info, cpuCount);
    const stream = BATCH_TYPES.has(info.type) ? ahead.read(fd, info.keySize, layout.valueBytes, layout.tokenSize) : null;
    openedAhead.set(next, {fd, info, stream});
  };
  const takeOpened = (mapId: number): OpenedMap | null => {
    const opened = openedAhead.get(mapId) ?? null;
    openedAhead.delete(mapId);
    return opened;
  };
  const prepared = ahead === null ? null : {takeOpened, openNext};
  const slots = {keys: new SlotSets(), values: new SlotSets()};
  return {
    backend: `kernel`,
    label: `bpf()`,
    async list() {
      // The worker starts while the maps are listed and their BTF read.
      ahead?.start();
      const maps: Array<ListedMap> = [];
      let id = 0;
      for (;;) {
        const next = calls.nextMapId(id);
        if (next === -ENOENT)
          break;
        if (next < 0)
          throw new EnvironmentFault(`cannot list eBPF maps: ${bpfFailure(-next, `BPF_MAP_GET_NEXT_ID`)}`);
        id = next;
        const fd = calls.openMap(id);
        if (fd === -ENOENT)
          continue; // freed since: not listed, as bpftool would not list it
        if (fd < 0)
          throw new EnvironmentFault(`cannot list eBPF maps: ${bpfFailure(-fd, `BPF_MAP_GET_FD_BY_ID ${id}`)}`);
        try {
          const info = calls.mapInfo(fd);
          if (typeof info === `number`)
            throw new EnvironmentFault(`cannot list eBPF maps: ${bpfFailure(-info, `BPF_OBJ_GET_INFO_BY_FD of map ${id}`)}`);
          maps.push({
            id: info.id, name: info.name, type: typeName(info.type),
            keySize: info.keySize, valueSize: info.valueSize, maxEntries: info.maxEntries, holders: [],
            ...(info.btfId !== 0 ? {btfId: info.btfId, btfKeyTypeId: info.btfKeyTypeId, btfValueTypeId: info.btfValueTypeId} : {}),
          });
        } finally {
          closeFd(fd);
        }
      }
      return maps;
    },
    open(map, sink) {
      return new KernelReader(calls, map.id, sink, options.batchEntries ?? DEFAULT_BATCH_ENTRIES, cpuCount, ahead, prepared, options.handedOn ?? HANDED_ON, slots);
    },
    plan(mapIds) {
      order = mapIds;
    },
    close() {
      if (ahead !== null && ahead.chunks > 0)
        ctx.log.debug(`kernel backend: ${ahead.chunks} chunk(s) read ahead in a worker thread`);
      // Maps opened ahead whose turn never came (the dump stopped early).
      for (const opened of openedAhead.values())
        releaseOpened(opened);
      openedAhead.clear();
      ahead?.close();
    },
    async btf(btfId) {
      const blob = calls.btfBlob(btfId);
      if (typeof blob === `number`) {
        ctx.log.info(`cannot read BTF ${btfId}: ${bpfFailure(-blob, `BPF_BTF_GET_FD_BY_ID ${btfId}`)}`);
        return null;
      }
      try {
        return parseBtf(blob);
      } catch (err) {
        ctx.log.info(`BTF ${btfId} is unreadable: ${errorMessage(err)}`);
        return null;
      }
    },
  };
}

/** Fills in the holders of listed maps from /proc (every backend: bpftool's own list may lack them). */
export async function addHolders(ctx: ToolContext, maps: Array<ListedMap>): Promise<Array<ListedMap>> {
  const holders = await mapHolders(ctx.procRoot, process.pid, ctx.fdLinks);
  for (const map of maps)
    map.holders = holders.get(map.id) ?? [];
  return maps;
}

/** A map opened before its turn: its fd, what the kernel said of it, and its chunks (batch maps). */
interface OpenedMap {
  fd: number;
  info: MapInfo;
  stream: ChunkStream | null;
}

/** How the read-ahead source hands a reader its map opened ahead, and opens the next. */
interface OpenedAhead {
  takeOpened(mapId: number): OpenedMap | null;
  openNext(mapId: number): void;
}

function releaseOpened(opened: OpenedMap): void {
  if (opened.stream !== null)
    opened.stream.release(() => closeFd(opened.fd));
  else
    closeFd(opened.fd);
}

/** How the kernel lays a map's entries out in a read: per-CPU values, their stride, and the batch token's size. */
interface ReadLayout {
  perCpu: boolean;
  cpus: number;
  valueStride: number;
  /** Bytes of one entry's value as the kernel copies it (per-CPU: every CPU's slot). */
  valueBytes: number;
  tokenSize: number;
}

function readLayout(info: MapInfo, cpuCount: () => number): ReadLayout {
  const perCpu = PER_CPU_TYPES.has(info.type);
  const cpus = perCpu ? cpuCount() : 0;
  // Per-CPU values come one per possible CPU, each slot rounded up to 8 bytes.
  const valueStride = perCpu ? (info.valueSize + 7) & ~7 : info.valueSize;
  // The batch token: a bucket index for hash maps, an index for arrays; sized like libbpf's.
  return {perCpu, cpus, valueStride, valueBytes: perCpu ? valueStride * cpus : info.valueSize, tokenSize: Math.max(info.keySize, 8)};
}

const enum Mode { Opening, Batch, Walk, Done }

/** Slots for `capacity` elements of one size, and a view on each. */
interface Slots {
  bytes: Buffer<ArrayBuffer>;
  views: Array<Buffer>;
}

/**
 * A source's slots (keys, or values) by element size, taken again by each map of that size: the
 * views are made once per size (and room), not once per map (2 x 1,024 of them per map read
 * ahead). Its maps are read one at a time, and an entry is decoded before the next is handed on,
 * so no map still reads the slots another one is given.
 */
class SlotSets {
  private readonly bySize = new Map<number, Slots>();

  take(size: number, capacity: number): Slots {
    let slots = this.bySize.get(size);
    if (slots === undefined || slots.views.length < capacity) {
      const bytes = Buffer.alloc(capacity * size);
      // One view per slot, made once: entries are handed on without a copy or an allocation each.
      // Buffer.from(arrayBuffer, offset, length): the same view as subarray(), made in a third of
      // the time.
      const views = new Array<Buffer>(capacity);
      for (let i = 0; i < capacity; i++)
        views[i] = Buffer.from(bytes.buffer, bytes.byteOffset + i * size, size);
      slots = {bytes, views};
      this.bySize.set(size, slots);
    }
    return slots;
  }
}

class KernelReader implements MapReader {
  private fd = -1;
  private mode = Mode.Opening;
  private readonly failures: Array<string> = [];
  private gone = false;
  private readonly entry: RawEntry = emptyRawEntry();
  private keySize = 0;
  private valueSize = 0;
  /** Bytes of one entry's value as the kernel copies it (per-CPU: every CPU's slot). */
  private valueBytes = 0;
  private room: number;
  private keys = Buffer.alloc(0);
  private values = Buffer.alloc(0);
  private keyViews: Array<Buffer> = [];
  private valueViews: Array<Buffer> = [];
  /** The key and value of the key-by-key walk. */
  private keyScratch = Buffer.alloc(0);
  private valueScratch = Buffer.alloc(0);
  private inBatch: Buffer | null = null;
  private outBatch = Buffer.alloc(8);
  private walkKey: Buffer | null = null;
  private walkNext: Buffer = Buffer.alloc(0);
  /** Slots of keys/values (room, or a bigger chunk from the worker). */
  private capacity = 0;
  /** The worker's chunks of this map, when it reads ahead; the chunk being handed on, where, and its keys. */
  private stream: ChunkStream | null = null;
  private chunk: ReadChunk | null = null;
  private chunkAt = 0;
  private chunkKeys: KeyStore | null = null;
  private chunksReceived = 0;

  constructor(
    private readonly calls: BpfCalls, private readonly mapId: number, private readonly sink: EntrySink, batchEntries: number,
    private readonly cpuCount: () => number, private readonly ahead: ReadAhead | null, private readonly prepared: OpenedAhead | null,
    private readonly handedOn: number, private readonly slots: {keys: SlotSets, values: SlotSets},
  ) {
    this.room = Math.max(1, batchEntries);
  }

  async next(): Promise<boolean> {
    switch (this.mode) {
      case Mode.Opening:
        this.openMap();
        return (this.mode as Mode) !== Mode.Done;
      case Mode.Batch:
        if (this.stream !== null)
          await this.remoteBatch();
        else
          this.batch();
        return true;
      case Mode.Walk:
        this.walk();
        return true;
      default:
        return false;
    }
  }

  async finish(): Promise<ReadOutcome> {
    return {failures: this.failures, gone: this.gone};
  }

  close(): void {
    this.mode = Mode.Done;
    if (this.fd >= 0) {
      const fd = this.fd;
      this.fd = -1;
      this.releaseStream(() => closeFd(fd));
    }
  }

  /** No more chunks from the worker; `after` runs once the worker no longer uses the fd. */
  private releaseStream(after: () => void = () => {}): void {
    const stream = this.stream;
    this.stream = null;
    this.chunk = null;
    this.chunkKeys = null;
    if (stream !== null)
      stream.release(after);
    else
      after();
  }

  private fail(message: string): void {
    this.failures.push(message);
    this.close();
  }

  private openMap(): void {
    const opened = this.prepared?.takeOpened(this.mapId) ?? null;
    if (opened !== null) {
      this.fd = opened.fd;
      this.setUp(opened.info, readLayout(opened.info, this.cpuCount), opened.stream);
    } else {
      const fd = this.calls.openMap(this.mapId);
      if (fd < 0) {
        this.mode = Mode.Done;
        this.gone = fd === -ENOENT;
        this.failures.push(this.gone ? mapGone(this.mapId, `BPF_MAP_GET_FD_BY_ID: No such file or directory`) : bpfFailure(-fd, `opening map ${this.mapId}`));
        return;
      }
      this.fd = fd;
      const info = this.calls.mapInfo(fd);
      if (typeof info === `number`) {
        this.fail(bpfFailure(-info, `BPF_OBJ_GET_INFO_BY_FD of map ${this.mapId}`));
        return;
      }
      const layout = readLayout(info, this.cpuCount);
      const readAhead = BATCH_TYPES.has(info.type) && this.ahead !== null;
      this.setUp(info, layout, readAhead ? this.ahead!.read(fd, info.keySize, layout.valueBytes, layout.tokenSize) : null);
    }
    // This map's reading is queued in the worker: the next one's goes behind it.
    this.prepared?.openNext(this.mapId);
  }

  /** `stream`: the worker's chunks of this map (read ahead), else it is read on this thread. */
  private setUp(info: MapInfo, layout: ReadLayout, stream: ChunkStream | null): void {
    const entry = this.entry;
    this.keySize = info.keySize;
    this.valueSize = info.valueSize;
    entry.perCpu = layout.perCpu;
    entry.cpus = layout.cpus;
    entry.valueLength = info.valueSize;
    entry.valueStride = layout.valueStride;
    entry.formatted = info.btfId !== 0;
    entry.keyLength = info.keySize;
    this.valueBytes = layout.valueBytes;
    this.keyScratch = Buffer.alloc(Math.max(info.keySize, 1));
    this.valueScratch = Buffer.alloc(Math.max(this.valueBytes, 1));
    if (BATCH_TYPES.has(info.type)) {
      this.mode = Mode.Batch;
      entry.uniqueKey = true;
      this.outBatch = Buffer.alloc(layout.tokenSize);
      this.stream = stream;
      // Read ahead, the slots are sized by the worker's first chunk.
      if (this.stream === null)
        this.sizeBatch(this.room);
    } else {
      this.startWalk();
    }
  }

  private sizeBatch(capacity: number): void {
    // The source's slots of these sizes, kept from an earlier map when it had them (SlotSets).
    const keys = this.slots.keys.take(Math.max(this.keySize, 1), capacity);
    const values = this.slots.values.take(Math.max(this.valueBytes, 1), capacity);
    this.capacity = Math.min(keys.views.length, values.views.length);
    this.keys = keys.bytes;
    this.values = values.bytes;
    this.keyViews = keys.views;
    this.valueViews = values.views;
  }

  private batch(): void {
    const calls = this.calls;
    const result = calls.lookupBatch(this.fd, this.inBatch, this.outBatch, this.keys, this.values, this.room);
    const count = result < 0 && result !== -ENOENT && result !== -ENOSPC ? 0 : calls.batchCount;
    this.emitBatch(count);
    if (result === 0) {
      this.advance();
      return;
    }
    if (result === -ENOENT) {
      this.close(); // that was the last of them
      return;
    }
    if (result === -ENOSPC) {
      // One bucket holds more entries than there was room for: ask again with more room.
      if (count > 0)
        this.advance();
      this.room *= 2;
      this.sizeBatch(this.room);
      return;
    }
    if ((result === -EINVAL || result === -ENOTSUPP || result === -EOPNOTSUPP) && this.inBatch === null) {
      // No batch lookup in this kernel (before 5.6) or for this map: walk key by key.
      this.startWalk();
      return;
    }
    this.fail(bpfFailure(-result, `BPF_MAP_LOOKUP_BATCH on map ${this.mapId}`));
  }

  /**
   * The same as batch(), from the worker's chunks: a chunk is copied into this reader's slots
   * and handed on whole (a sixteenth of the batches through every stage, each an await per
   * stage), then its result. Its keys stay readable in the chunk the worker sent (keyStore).
   */
  private async remoteBatch(): Promise<void> {
    let chunk = this.chunk;
    if (chunk === null) {
      chunk = await this.stream!.next();
      if (chunk === null) {
        // The worker could not start: read here instead, from the start (nothing was read yet).
        if (this.chunksReceived === 0) {
          this.releaseStream();
          this.sizeBatch(this.room);
          this.batch();
        } else {
          this.fail(`reading map ${this.mapId}: the read-ahead worker stopped`);
        }
        return;
      }
      this.chunksReceived += 1;
      this.chunk = chunk;
      this.chunkAt = 0;
      // The chunk the worker sent is this thread's now, and nothing writes it again.
      this.chunkKeys = {keys: Buffer.from(chunk.keys, 0, chunk.count * Math.max(this.keySize, 1)), keySize: this.keySize};
    }
    const from = this.chunkAt;
    const to = Math.min(chunk.count, from + this.handedOn);
    // HANDED_ON entries at a time into the slots: a slot's two views are made once per map, and
    // a fourth as many of them as for the worker's whole chunk.
    if (to - from > this.capacity)
      this.sizeBatch(Math.min(chunk.count, this.handedOn));
    const keySize = Math.max(this.keySize, 1);
    const valueBytes = Math.max(this.valueBytes, 1);
    this.keys.set(new Uint8Array(chunk.keys, from * keySize, (to - from) * keySize));
    this.values.set(new Uint8Array(chunk.values, from * valueBytes, (to - from) * valueBytes));
    this.entry.keyStore = this.chunkKeys;
    try {
      // The keys stay readable in the chunk, at their place there.
      this.emitSlots(0, to - from, from);
    } finally {
      this.entry.keyStore = null;
    }
    this.chunkAt = to;
    if (to < chunk.count)
      return;
    this.chunk = null;
    this.chunkKeys = null;
    const result = chunk.result;
    if (result === 0 || result === -ENOSPC)
      return; // more to come (the worker grows its room itself)
    if (result === -ENOENT) {
      this.close(); // that was the last of them
      return;
    }
    if ((result === -EINVAL || result === -ENOTSUPP || result === -EOPNOTSUPP) && chunk.first) {
      // No batch lookup in this kernel (before 5.6) or for this map: walk key by key.
      this.releaseStream();
      this.startWalk();
      return;
    }
    this.fail(bpfFailure(-result, `BPF_MAP_LOOKUP_BATCH on map ${this.mapId}`));
  }

  /** The next batch starts where this one ended. */
  private advance(): void {
    this.inBatch ??= Buffer.alloc(this.outBatch.length);
    this.outBatch.copy(this.inBatch);
  }

  private emitBatch(count: number): void {
    this.emitSlots(0, count, 0);
  }

  /** Hands on the entries in slots [from, to); `keySlot` is the first one's key slot in entry.keyStore. */
  private emitSlots(from: number, to: number, keySlot: number): void {
    const entry = this.entry;
    const {keyViews, valueViews, sink} = this;
    for (let i = from; i < to; i++) {
      entry.key = keyViews[i];
      entry.value = valueViews[i];
      entry.keySlot = keySlot + i;
      sink.entry(entry);
    }
  }

  private startWalk(): void {
    this.mode = Mode.Walk;
    this.entry.uniqueKey = false;
    this.entry.key = this.keyScratch;
    this.entry.value = this.valueScratch;
    this.walkKey = null;
    this.walkNext = Buffer.alloc(Math.max(this.keySize, 1));
  }

  /** Up to `room` entries key by key. An entry deleted between next-key and lookup is a failed lookup, as bpftool reports it. */
  private walk(): void {
    const calls = this.calls;
    const entry = this.entry;
    for (let n = 0; n < this.room; n++) {
      const result = calls.nextKey(this.fd, this.walkKey, this.walkNext);
      if (result === -ENOENT) {
        this.close();
        return;
      }
      if (result < 0) {
        this.fail(bpfFailure(-result, `BPF_MAP_GET_NEXT_KEY on map ${this.mapId}`));
        return;
      }
      this.walkNext.copy(entry.key!, 0, 0, this.keySize);
      const lookup = calls.lookup(this.fd, this.walkNext, entry.value!);
      entry.error = lookup === 0 ? null : lookup === -ENOENT ? `No such file or directory` : bpfFailure(-lookup, `lookup`);
      this.sink.entry(entry);
      entry.error = null;
      const done = this.walkKey ?? Buffer.alloc(this.walkNext.length);
      this.walkKey = this.walkNext;
      this.walkNext = done;
    }
  }
}
