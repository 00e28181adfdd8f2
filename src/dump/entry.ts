// What every source of map contents hands to dump-maps: one raw entry at a time, as bytes. The
// bpftool/system-probe tokenizer, the kernel reader and saved files all produce these; the
// decoder and the record builder take them without any text in between.
import type {LosslessValue} from './json.ts';

export interface RawEntry {
  /** Scratch buffer holding the key bytes (first keyLength bytes); null for a BTF-only key. Valid only during the callback. */
  key: Buffer | null;
  keyLength: number;
  /** The BTF-decoded key when the source had no raw bytes (system-probe with BTF). */
  keyBtf: LosslessValue | undefined;
  /** Scratch buffer holding the value bytes; null when the source had none. */
  value: Buffer | null;
  /** Bytes of one value (of each per-CPU slot). */
  valueLength: number;
  /** One value per possible CPU (slot i at i * valueStride, cpus of them). */
  perCpu: boolean;
  cpus: number;
  valueStride: number;
  /** The BTF-decoded value when the source had no raw bytes. */
  valueBtf: LosslessValue | undefined;
  /** The map has BTF (bpftool printed `formatted`; the kernel gave a btf id). */
  formatted: boolean;
  /** A failed lookup reported by the source (the element exists, its value could not be read). */
  error: string | null;
  /**
   * The source guarantees this key comes once in the dump, so it needs no duplicate check: the
   * kernel's batch lookup walks a cursor over hash buckets (a key lives in one bucket, read whole
   * under its lock) or array indexes. A key-by-key walk restarts when its key is deleted: false.
   */
  uniqueKey: boolean;
  /**
   * Where the key bytes stay readable after the callback (a chunk nobody writes again: the
   * read-ahead worker's), the key being slot `keySlot` of it; null when they do not.
   */
  keyStore: KeyStore | null;
  keySlot: number;
}

/** Keys of keySize bytes each, one after another, never written again. */
export interface KeyStore {
  keys: Buffer;
  keySize: number;
}

export function emptyRawEntry(): RawEntry {
  return {
    key: null, keyLength: 0, keyBtf: undefined, value: null, valueLength: 0, perCpu: false, cpus: 0, valueStride: 0,
    valueBtf: undefined, formatted: false, error: null, uniqueKey: false, keyStore: null, keySlot: 0,
  };
}

export function resetRawEntry(entry: RawEntry): RawEntry {
  entry.keyLength = 0;
  entry.keyBtf = undefined;
  entry.valueLength = 0;
  entry.perCpu = false;
  entry.cpus = 0;
  entry.valueStride = 0;
  entry.valueBtf = undefined;
  entry.formatted = false;
  entry.error = null;
  entry.uniqueKey = false;
  entry.keyStore = null;
  entry.keySlot = 0;
  return entry;
}

export interface EntrySink {
  entry(entry: RawEntry): void;
  /** One element could not be read (counted with the failed lookups); the rest goes on. */
  skipped(message: string): void;
}

/**
 * buffer.toString('hex', start, end) through Node's own hexSlice when the Buffer has it: the same
 * string without toString's argument handling and encoding lookup, for the key and value of every
 * entry (the wrapper cost about as much as the hex itself).
 */
function hexOf(buffer: Buffer, start: number, end: number): string {
  const sliced = buffer as Buffer & {hexSlice?(start: number, end: number): string};
  return sliced.hexSlice !== undefined && end <= buffer.length ? sliced.hexSlice(start, end) : buffer.toString(`hex`, start, end);
}

/** The key as lowercase hex ('' when the entry has no key bytes). */
export function keyHexOf(entry: RawEntry): string {
  return entry.key === null ? `` : hexOf(entry.key, 0, entry.keyLength);
}

/** The value (`valueHex`) or per-CPU values (`valuesHex`) as the entry record carries them; null when the entry has no value bytes. */
export function valueHexOf(entry: RawEntry): string | Array<string> | null {
  const value = entry.value;
  if (value === null)
    return null;
  if (!entry.perCpu)
    return hexOf(value, 0, entry.valueLength);
  const values = new Array<string>(entry.cpus);
  for (let i = 0, at = 0; i < entry.cpus; i++, at += entry.valueStride)
    values[i] = hexOf(value, at, at + entry.valueLength);
  return values;
}
