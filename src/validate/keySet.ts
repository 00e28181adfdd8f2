// A set of map keys given as hex (`keyHex`), stored as their raw bytes in one growing arena with
// an open-addressing table of indexes: ~60 bytes per 48-byte key where a Set of hex strings took
// ~200, and no object per key for the collector to walk. recheck keeps every leaked candidate's
// key until the second look (hundreds of thousands at a million entries: CandidateKeys, below,
// keeps them on disk past a limit) and marks the ones the re-read still has, one map at a time.

import {closeSync, fstatSync, openSync, readSync, writeSync} from 'node:fs';
import {join} from 'node:path';
import type {ToolContext} from '../context.ts';
import {EnvironmentFault, errorMessage} from '../errors.ts';
import {makeTempDir, openTempFile, type TempDir} from '../outputFile.ts';

const EMPTY = -1;
const LOWER_HEX = /^[0-9a-f]*$/;
const HEX_TAG = 0;
const TEXT_TAG = 1;

/**
 * Writes the stored form of a key at out[at] (room for keyHex.length * 3 + 1 bytes); returns its
 * length. Lowercase hex (what every stage writes) is stored as its bytes after a 0 tag; any other
 * text (never equal to lowercase hex) as UTF-8 after a 1 tag, so two different strings never meet.
 */
export function storeKey(keyHex: string, out: Buffer, at: number): number {
  if ((keyHex.length & 1) === 0 && LOWER_HEX.test(keyHex)) {
    out[at] = HEX_TAG;
    return 1 + out.write(keyHex, at + 1, `hex`);
  }
  out[at] = TEXT_TAG;
  return 1 + out.write(keyHex, at + 1, `utf8`);
}

export class HexKeySet {
  private arena: Buffer = Buffer.allocUnsafe(1 << 16);
  private used = 0;
  /** Per key (in insertion order): where its bytes start in the arena, and how many. */
  private starts: Int32Array = new Int32Array(1024);
  private lengths: Int32Array = new Int32Array(1024);
  /** Per key: set by mark(). */
  private marks: Uint8Array = new Uint8Array(1024);
  /** Open addressing, linear probing: key index or EMPTY; at most half full. */
  private slots = new Int32Array(2048).fill(EMPTY);
  private count = 0;
  /** Scratch for the bytes of a key being looked up. */
  private probe: Buffer = Buffer.allocUnsafe(256);

  get size(): number {
    return this.count;
  }

  /**
   * Makes this the set of the `count` keys in stored form (storeKey) in `stored`, each after its
   * length (u32 LE), indexed where they are: no copy, so `stored` must not change while the set
   * is in use, and nothing may be add()ed. Each key's index goes to indexOf (a repeated key gets
   * the index of its first time). The set's own arrays are reused (one set serves map after map).
   * Returns how many bytes of `stored` the keys took.
   */
  adopt(stored: Buffer, count: number, indexOf: Int32Array): number {
    if (this.starts.length < count) {
      this.starts = new Int32Array(count);
      this.lengths = new Int32Array(count);
      this.marks = new Uint8Array(count);
    } else {
      this.marks.fill(0, 0, count);
    }
    let capacity = 2048;
    while (capacity < 2 * count + 2)
      capacity *= 2;
    if (this.slots.length < capacity)
      this.slots = new Int32Array(capacity);
    this.slots.fill(EMPTY);
    this.arena = stored;
    this.used = stored.length;
    this.count = 0;
    const mask = this.slots.length - 1;
    let at = 0;
    for (let n = 0; n < count; n++) {
      const length = stored.readUInt32LE(at);
      const start = at + 4;
      at = start + length;
      let slot = hashBytes(stored, start, length) & mask;
      let index = this.slots[slot];
      while (index !== EMPTY && !(this.lengths[index] === length && stored.compare(stored, start, at, this.starts[index], this.starts[index] + length) === 0)) {
        slot = (slot + 1) & mask;
        index = this.slots[slot];
      }
      if (index === EMPTY) {
        index = this.count++;
        this.starts[index] = start;
        this.lengths[index] = length;
        this.slots[slot] = index;
      }
      indexOf[n] = index;
    }
    return at;
  }

  /** Adds a key; returns its index (the existing one when already present). */
  add(keyHex: string): number {
    return this.addProbe(this.load(keyHex));
  }

  private addProbe(length: number): number {
    const found = this.find(length);
    if (found >= 0)
      return found;
    if (this.count * 2 >= this.slots.length)
      this.rehash(this.slots.length * 2);
    if (this.used + length > this.arena.length)
      this.arena = grow(this.arena, this.used + length);
    if (this.count === this.starts.length) {
      this.starts = growInt32(this.starts);
      this.lengths = growInt32(this.lengths);
      const marks = new Uint8Array(this.marks.length * 2);
      marks.set(this.marks);
      this.marks = marks;
    }
    this.probe.copy(this.arena, this.used, 0, length);
    const index = this.count++;
    this.starts[index] = this.used;
    this.lengths[index] = length;
    this.used += length;
    this.slots[this.freeSlot(hashBytes(this.arena, this.starts[index], length))] = index;
    return index;
  }

  /** Whether the key is in the set. */
  has(keyHex: string): boolean {
    return this.find(this.load(keyHex)) >= 0;
  }

  /** Marks the key when it is in the set; returns whether it was. */
  mark(keyHex: string): boolean {
    const index = this.find(this.load(keyHex));
    if (index < 0)
      return false;
    this.marks[index] = 1;
    return true;
  }

  /** mark() for a key given as its raw bytes (what its keyHex is the hex of). */
  markBytes(bytes: Uint8Array, length: number): boolean {
    if (length + 1 > this.probe.length)
      this.probe = Buffer.allocUnsafe(length + 1);
    this.probe[0] = HEX_TAG;
    this.probe.set(length === bytes.length ? bytes : bytes.subarray(0, length), 1);
    const index = this.find(length + 1);
    if (index < 0)
      return false;
    this.marks[index] = 1;
    return true;
  }

  isMarked(keyHex: string): boolean {
    const index = this.find(this.load(keyHex));
    return index >= 0 && this.marks[index] === 1;
  }

  /** Whether the key of this index (from add) was marked. */
  isMarkedAt(index: number): boolean {
    return this.marks[index] === 1;
  }

  /** Puts the stored form of a key (storeKey) in the probe buffer; returns its length. */
  private load(keyHex: string): number {
    const needed = keyHex.length * 3 + 1;
    if (needed > this.probe.length)
      this.probe = Buffer.allocUnsafe(needed);
    return storeKey(keyHex, this.probe, 0);
  }

  /** Index of the key in the probe buffer, or -1. */
  private find(length: number): number {
    const mask = this.slots.length - 1;
    for (let slot = hashBytes(this.probe, 0, length) & mask; ; slot = (slot + 1) & mask) {
      const index = this.slots[slot];
      if (index === EMPTY)
        return -1;
      if (this.lengths[index] === length && this.sameBytes(this.starts[index], length))
        return index;
    }
  }

  /** Whether the arena holds the probe's bytes at `start` (a loop: keys are short, a native compare per call costs more). */
  private sameBytes(start: number, length: number): boolean {
    const arena = this.arena;
    const probe = this.probe;
    for (let i = 0; i < length; i++) {
      if (arena[start + i] !== probe[i])
        return false;
    }
    return true;
  }

  private freeSlot(hash: number): number {
    const mask = this.slots.length - 1;
    let slot = hash & mask;
    while (this.slots[slot] !== EMPTY)
      slot = (slot + 1) & mask;
    return slot;
  }

  private rehash(capacity: number): void {
    this.slots = new Int32Array(capacity).fill(EMPTY);
    for (let index = 0; index < this.count; index++)
      this.slots[this.freeSlot(this.hashOf(index))] = index;
  }

  private hashOf(index: number): number {
    return hashBytes(this.arena, this.starts[index], this.lengths[index]);
  }
}

/** FNV-1a over bytes, 32 bits. */
function hashBytes(bytes: Uint8Array, start: number, length: number): number {
  let hash = 0x811c9dc5;
  for (let i = start, end = start + length; i < end; i++)
    hash = Math.imul(hash ^ bytes[i], 0x01000193);
  return hash >>> 0;
}

function grow(buffer: Buffer, atLeast: number): Buffer {
  const next = Buffer.allocUnsafe(Math.max(buffer.length * 2, atLeast));
  buffer.copy(next);
  return next;
}

function growInt32(array: Int32Array): Int32Array {
  const next = new Int32Array(array.length * 2);
  next.set(array);
  return next;
}

/** Keys kept in memory before they go to disk, and the size of each map's write buffer after. */
const SPILL_BUFFER = 64 * 1024;

/** One map's candidate keys: stored forms, each after its length (u32 LE), in arrival order. */
interface MapKeys {
  count: number;
  buffer: Buffer;
  used: number;
  /** The file its keys go to past the memory limit (the buffer then holds what is not written yet). */
  file: {path: string, fd: number} | null;
  /** While the re-read looks at this map: its keys, each candidate's index among them, and whether they are in the shared read buffer. */
  loaded: {set: HexKeySet, indexOf: Int32Array, shared: boolean} | null;
  /** After: one byte per candidate, 1 when the re-read had its key. */
  marked: Uint8Array | null;
  /** Candidates already asked about by nextMarked(). */
  asked: number;
}

/**
 * recheck's candidate keys, per map, kept out of the heap until the re-read needs them: the first
 * `limit` in memory, then appended to one file per map in a private temporary directory (a
 * million candidates are ~50 MB of keys). The re-read loads one map's keys at a time into a
 * HexKeySet and marks the ones it still has; what it marked stays as one byte per candidate, asked
 * for in arrival order when the candidates come back (nextMarked).
 */
export class CandidateKeys {
  private readonly maps = new Map<number, MapKeys>();
  private dir: TempDir | null = null;
  private total = 0;
  /** The map whose keys are loaded for marking by bytes (the re-read gives one map at a time). */
  private current: MapKeys | null = null;
  /** A settled map's table, kept for the next map to load into, and the buffer key files are read into. */
  private spare: {set: HexKeySet, indexOf: Int32Array} | null = null;
  private readBuffer: Buffer | null = null;
  /** A loaded map's keys are in readBuffer (entry records may load several maps at once: the others get their own). */
  private readBufferInUse = false;

  constructor(private readonly ctx: ToolContext, private readonly limit: number) {}

  get mapIds(): Array<number> {
    return [...this.maps.keys()];
  }

  /** Adds one candidate's key (in arrival order). */
  add(mapId: number, keyHex: string): void {
    let keys = this.maps.get(mapId);
    if (keys === undefined) {
      keys = {count: 0, buffer: Buffer.allocUnsafe(1024), used: 0, file: null, loaded: null, marked: null, asked: 0};
      this.maps.set(mapId, keys);
    }
    const needed = 4 + keyHex.length * 3 + 1;
    if (keys.used + needed > keys.buffer.length) {
      // Past the limit, every map's keys go to disk a buffer at a time (maps first seen then too).
      if (this.total > this.limit && keys.used > 0)
        this.flush(mapId, keys);
      if (keys.used + needed > keys.buffer.length) {
        const grown = Buffer.allocUnsafe(Math.max(keys.buffer.length * 2, keys.used + needed));
        keys.buffer.copy(grown, 0, 0, keys.used);
        keys.buffer = grown;
      }
    }
    const length = storeKey(keyHex, keys.buffer, keys.used + 4);
    keys.buffer.writeUInt32LE(length, keys.used);
    keys.used += 4 + length;
    keys.count += 1;
    this.total += 1;
    if (this.total === this.limit + 1) {
      this.ctx.log.info(`holding more than ${this.limit} leaked candidates' keys in ${this.spillDir()}`);
      for (const [id, held] of this.maps)
        this.flush(id, held);
    }
  }

  /** Marks a key of the re-read given as raw bytes; the maps come one after another. */
  markBytes(mapId: number, bytes: Uint8Array, length: number): void {
    if (this.current === null || this.maps.get(mapId) !== this.current) {
      if (this.current !== null)
        this.settle(this.current);
      this.current = this.maps.get(mapId) ?? null;
      if (this.current === null)
        return;
      this.load(mapId, this.current);
    }
    this.current.loaded!.set.markBytes(bytes, length);
  }

  /** Marks a key of the re-read given as keyHex (entry records: maps may come in any order). */
  markHex(mapId: number, keyHex: string): void {
    const keys = this.maps.get(mapId);
    if (keys === undefined)
      return;
    if (keys.loaded === null)
      this.load(mapId, keys);
    keys.loaded!.set.mark(keyHex);
  }

  /** Ends the re-read: every loaded map's marks are kept, its keys let go (the shared table and buffer too). */
  settleAll(): void {
    for (const keys of this.maps.values())
      this.settle(keys);
    this.current = null;
    this.spare = null;
    this.readBuffer = null;
  }

  /** Whether the re-read had the key of the next candidate of this map (in arrival order). */
  nextMarked(mapId: number): boolean {
    const keys = this.maps.get(mapId);
    if (keys === undefined)
      return false;
    const at = keys.asked++;
    return keys.marked !== null && keys.marked[at] === 1;
  }

  /** Closes and removes the files (idempotent). */
  discard(): void {
    for (const keys of this.maps.values()) {
      if (keys.file !== null) {
        closeSync(keys.file.fd);
        keys.file = null;
      }
    }
    this.dir?.remove();
    this.dir = null;
  }

  private spillDir(): string {
    this.dir ??= makeTempDir(this.ctx, `usmld-recheck-`);
    return this.dir.path;
  }

  private flush(mapId: number, keys: MapKeys): void {
    if (keys.file === null) {
      const path = join(this.spillDir(), `keys-${mapId}.bin`);
      keys.file = {path, fd: openTempFile(path)};
    }
    try {
      for (let at = 0; at < keys.used;)
        at += writeSync(keys.file.fd, keys.buffer, at, keys.used - at);
    } catch (err) {
      throw new EnvironmentFault(`cannot write the leaked candidates' keys to ${keys.file.path}: ${(err as NodeJS.ErrnoException).code ?? errorMessage(err)}`);
    }
    keys.used = 0;
    if (keys.buffer.length > SPILL_BUFFER)
      keys.buffer = Buffer.allocUnsafe(SPILL_BUFFER);
  }

  private load(mapId: number, keys: MapKeys): void {
    const shared = keys.file !== null && !this.readBufferInUse;
    const stored = keys.file !== null ? this.readBack(mapId, keys, shared) : keys.buffer.subarray(0, keys.used);
    let {set, indexOf} = this.spare ?? {set: new HexKeySet(), indexOf: new Int32Array(0)};
    this.spare = null;
    if (indexOf.length < keys.count)
      indexOf = new Int32Array(keys.count);
    const at = keys.count * 4 <= stored.length ? set.adopt(stored, keys.count, indexOf) : -1;
    if (at !== stored.length)
      throw new Error(`the leaked candidates' keys of map ${mapId} did not read back (${stored.length} bytes, ${at} expected)`);
    keys.loaded = {set, indexOf, shared};
    if (shared)
      this.readBufferInUse = true;
  }

  /** The keys of a map that went to disk: in the buffer reused from map to map when `shared`. */
  private readBack(mapId: number, keys: MapKeys, shared: boolean): Buffer {
    const file = keys.file!;
    this.flush(mapId, keys);
    let fd: number | null = null;
    try {
      fd = openSync(file.path, `r`);
      const size = fstatSync(fd).size;
      let buffer = shared ? this.readBuffer : null;
      if (buffer === null || buffer.length < size)
        buffer = Buffer.allocUnsafe(shared ? Math.max(size, Math.floor(1.25 * (this.readBuffer?.length ?? 0))) : size);
      if (shared)
        this.readBuffer = buffer;
      let at = 0;
      for (let got = -1; at < size && got !== 0; at += got)
        got = readSync(fd, buffer, at, size - at, at);
      return buffer.subarray(0, at);
    } catch (err) {
      throw new EnvironmentFault(`cannot read the leaked candidates' keys back from ${file.path}: ${(err as NodeJS.ErrnoException).code ?? errorMessage(err)}`);
    } finally {
      if (fd !== null)
        closeSync(fd);
    }
  }

  /** Keeps what the re-read marked (added to earlier marks, if the map came twice) and lets the keys go. */
  private settle(keys: MapKeys): void {
    if (keys.loaded === null)
      return;
    const {set, indexOf, shared} = keys.loaded;
    keys.marked ??= new Uint8Array(keys.count);
    for (let n = 0; n < keys.count; n++) {
      if (set.isMarkedAt(indexOf[n]))
        keys.marked[n] = 1;
    }
    keys.loaded = null;
    if (shared)
      this.readBufferInUse = false;
    this.spare = {set, indexOf};
  }
}
