// A set of map keys given as hex (`keyHex`), stored as their raw bytes in one growing arena with
// an open-addressing table of indexes: ~60 bytes per 48-byte key where a Set of hex strings took
// ~200, and no object per key for the collector to walk. recheck keeps every leaked candidate's
// key until the second look (hundreds of thousands at a million entries) and marks the ones the
// re-read still has.

const EMPTY = -1;
const LOWER_HEX = /^[0-9a-f]*$/;

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

  /** Adds a key; returns its index (the existing one when already present). */
  add(keyHex: string): number {
    const length = this.load(keyHex);
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

  isMarked(keyHex: string): boolean {
    const index = this.find(this.load(keyHex));
    return index >= 0 && this.marks[index] === 1;
  }

  /**
   * Puts the stored form of a key in the probe buffer; returns its length. Lowercase hex (what
   * every stage writes) is stored as its bytes after a 0 tag; any other text (never equal to
   * lowercase hex) as UTF-8 after a 1 tag, so two different strings never meet.
   */
  private load(keyHex: string): number {
    const needed = keyHex.length * 3 + 1;
    if (needed > this.probe.length)
      this.probe = Buffer.allocUnsafe(needed);
    if ((keyHex.length & 1) === 0 && LOWER_HEX.test(keyHex)) {
      this.probe[0] = 0;
      return 1 + this.probe.write(keyHex, 1, `hex`);
    }
    this.probe[0] = 1;
    return 1 + this.probe.write(keyHex, 1, `utf8`);
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
