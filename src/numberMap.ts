// Integers (-1 to 2^32 - 1: ports, pids, namespace inodes) to values, by open addressing, keys in
// the order first set. On the per-entry path (a leak's ports and pids counted, an entry's owner
// found) a Map's get() cost more than the rest of the lookup.

export class NumberMap<V> {
  /** The keys in the order first set, and their values. */
  readonly keys: Array<number> = [];
  readonly values: Array<V> = [];
  /**
   * Per cell: its key, and its index in keys + 1 (0: empty); at most half full. Set by allocate(),
   * here and when the table grows: fields written once would be taken by V8 as constants, and
   * the code that relied on it (every owner and count looked up) thrown away at the first growth.
   */
  private cellKeys = EMPTY_KEYS;
  private slots = EMPTY_SLOTS;
  private mask = -1;

  constructor() {
    this.allocate(64);
  }

  get size(): number {
    return this.keys.length;
  }

  get(key: number): V | undefined {
    const slot = this.slots[this.cellOf(key)];
    return slot === 0 ? undefined : this.values[slot - 1];
  }

  set(key: number, value: V): void {
    const cell = this.cellOf(key);
    const slot = this.slots[cell];
    if (slot !== 0) {
      this.values[slot - 1] = value;
      return;
    }
    this.cellKeys[cell] = key;
    this.keys.push(key);
    this.values.push(value);
    this.slots[cell] = this.keys.length;
    if (2 * this.keys.length > this.mask + 1)
      this.grow();
  }

  /** The key's cell, or the empty one where it goes. */
  private cellOf(key: number): number {
    // The low and high 32 bits mixed (-1 and 2^32 - 1 have the same low bits).
    let hash = Math.imul((key | 0) ^ Math.floor(key / 0x100000000), 0x9e3779b1);
    hash ^= hash >>> 16;
    const {cellKeys, slots, mask} = this;
    for (let i = hash & mask; ; i = (i + 1) & mask) {
      if (slots[i] === 0 || cellKeys[i] === key)
        return i;
    }
  }

  /** Empty cells, `cells` of them (a power of 2). */
  private allocate(cells: number): void {
    this.mask = cells - 1;
    this.cellKeys = new Float64Array(cells);
    this.slots = new Int32Array(cells);
  }

  private grow(): void {
    this.allocate(2 * (this.mask + 1));
    for (let i = 0; i < this.keys.length; i++) {
      const cell = this.cellOf(this.keys[i]);
      this.cellKeys[cell] = this.keys[i];
      this.slots[cell] = i + 1;
    }
  }
}

const EMPTY_KEYS = new Float64Array(0);
const EMPTY_SLOTS = new Int32Array(0);
