// Streaming reader for the JSON array a map dump prints (bpftool `-j map dump`, system-probe
// `ebpf map dump`). bpftool writes the whole array on ONE line, so nothing here splits on lines
// or buffers the output: bytes are scanned as they arrive and each element is handed on as soon
// as its closing brace is seen. Memory is one chunk plus at most one element straddling chunks.
//
// Two paths per element:
// - fast: bpftool's compact shape `{"key":["0x..",...],"value":[...](,"formatted":{...})?}` (and
//   `"values":[{"cpu":N,"value":[...]},...]` for per-CPU maps) is decoded in place, byte by byte,
//   with no intermediate strings: hex digits go straight into scratch buffers of key and value
//   bytes (a raw entry, src/dump/entry.ts), as the kernel backend gives them. `formatted` is skipped (the raw bytes say everything, exactly).
// - slow: anything else (whitespace, BTF-decoded keys from system-probe, error objects) is parsed
//   with the lossless JSON parser and interpreted field by field.
import {emptyRawEntry, resetRawEntry, type RawEntry} from './entry.ts';
import {parseLossless, type LosslessValue} from './json.ts';
import {Ascii} from '../ascii.ts';

export interface DumpSink {
  entry(entry: RawEntry): void;
  /** The whole output was an error object (`{"error":"..."}`, bpftool's JSON-mode errors). */
  outputError(message: string): void;
  /**
   * Something that is not a usable element. `fatal`: the output as a whole is unusable from here
   * on (truncated, not an array), so the dump is partial; otherwise one element was skipped.
   */
  problem(message: string, fatal: boolean): void;
}

const HEX_VALUE = new Int8Array(256).fill(-1);
for (let i = 0; i < 10; i++)
  HEX_VALUE[Ascii.Digit0 + i] = i;
for (let i = 0; i < 6; i++) {
  HEX_VALUE[Ascii.LowerA + i] = 10 + i;
  HEX_VALUE[Ascii.UpperA + i] = 10 + i;
}

const KEY_OPEN = Buffer.from(`{"key":[`, `latin1`);
const VALUE_OPEN = Buffer.from(`,"value":[`, `latin1`);
const VALUES_OPEN = Buffer.from(`,"values":[`, `latin1`);
const CPU_OPEN = Buffer.from(`{"cpu":`, `latin1`);
const CPU_VALUE_OPEN = Buffer.from(`,"value":[`, `latin1`);
const FORMATTED_OPEN = Buffer.from(`,"formatted":`, `latin1`);

/** An element bigger than this is not a map entry: reported and skipped, never buffered without end. */
export const MAX_ELEMENT_BYTES = 16 * 1024 * 1024;
/** A non-array output (an error object, `null`) is small. */
const MAX_TOP_TEXT = 1024 * 1024;

const enum State { Start, InArray, Done, TopValue, Broken }

function matchAt(buf: Buffer, pos: number, literal: Buffer): boolean {
  for (let i = 0; i < literal.length; i++) {
    if (buf[pos + i] !== literal[i])
      return false;
  }
  return true;
}

function isSpace(c: number): boolean {
  return c === Ascii.Space || c === Ascii.LineFeed || c === Ascii.CarriageReturn || c === Ascii.Tab;
}

export class DumpTokenizer {
  private state = State.Start;
  /**
   * The unfinished element, as the chunks it spans (joined once, when its end is found: joining
   * at every chunk made a 70 MB element cost a minute), or `skipping` once it is over the bound.
   */
  private pending: Array<Buffer> | null = null;
  private pendingBytes = 0;
  private skipping = false;
  /** Boundary scan of the pending element: where it stopped and what it was inside. */
  private scanPos = 0;
  private scanDepth = 0;
  private scanInString = false;
  private topChunks: Array<Buffer> = [];
  private topBytes = 0;
  private elementsSeen = 0;

  private keyBytes: Buffer = Buffer.alloc(128);
  private valueBytes: Buffer = Buffer.alloc(512);
  private hexCount = 0;

  private readonly element: RawEntry = emptyRawEntry();

  constructor(private readonly sink: DumpSink, private readonly maxElementBytes = MAX_ELEMENT_BYTES) {}

  /** Elements parsed so far (including error elements). */
  get count(): number {
    return this.elementsSeen;
  }

  /** Takes the next chunk; keeps nothing of it once it returns (the caller may reuse its buffer). */
  feed(chunk: Buffer): void {
    if (this.state === State.Broken || chunk.length === 0)
      return;
    if (this.state === State.TopValue) {
      this.addTopText(chunk);
      return;
    }
    let buf = chunk;
    let pos = 0;
    if (this.pending !== null) {
      // Resume the boundary scan over this chunk alone (scanPos is 1 past its start when the
      // last chunk ended on a backslash inside a string).
      const end = this.scanEnd(chunk, this.scanPos);
      if (end < 0) {
        this.scanPos -= chunk.length;
        // Copied: the reader may refill the chunk's buffer once feed() returns.
        this.addPending(this.skipping ? chunk : Buffer.from(chunk));
        return;
      }
      if (this.skipping) {
        this.skipTooLarge(this.pendingBytes + end);
      } else {
        const whole = Buffer.concat([...this.pending, chunk.subarray(0, end)], this.pendingBytes + end);
        this.pending = null;
        this.pendingBytes = 0;
        this.elementAt(whole, 0, whole.length);
      }
      this.pending = null;
      this.pendingBytes = 0;
      this.skipping = false;
      pos = end;
    }
    const length = buf.length;
    while (pos < length) {
      const c = buf[pos];
      if (this.state === State.InArray) {
        if (c === Ascii.OpenBrace) {
          const end = this.fastElement(buf, pos);
          if (end > 0) {
            this.emit();
            pos = end;
            continue;
          }
          this.scanDepth = 0;
          this.scanInString = false;
          const scanned = this.scanEnd(buf, pos);
          if (scanned < 0) {
            this.keepPending(buf, pos);
            return;
          }
          this.slowElement(buf, pos, scanned);
          pos = scanned;
          continue;
        }
        if (c === Ascii.Comma || isSpace(c)) {
          pos++;
          continue;
        }
        if (c === Ascii.CloseBracket) {
          this.state = State.Done;
          pos++;
          continue;
        }
        this.broken(`unexpected ${JSON.stringify(String.fromCharCode(c))} between elements after ${this.elementsSeen} elements`);
        return;
      }
      if (this.state === State.Start) {
        if (isSpace(c)) {
          pos++;
          continue;
        }
        if (c === Ascii.OpenBracket) {
          this.state = State.InArray;
          pos++;
          continue;
        }
        // An error object or `null` (system-probe --pretty on an empty map): small, keep it whole.
        this.state = State.TopValue;
        this.addTopText(buf.subarray(pos));
        return;
      }
      if (this.state === State.Done) {
        if (!isSpace(c)) {
          this.broken(`unexpected text after the end of the array`);
          return;
        }
        pos++;
        continue;
      }
      return;
    }
  }

  /** Call once the output has ended. */
  end(): void {
    if (this.pending !== null) {
      this.pending = null;
      this.pendingBytes = 0;
      this.broken(`output ended inside an element (truncated after ${this.elementsSeen} elements)`);
      return;
    }
    switch (this.state) {
      case State.Start:
        this.sink.problem(`empty output (expected a JSON array)`, true);
        return;
      case State.InArray:
        this.broken(`output ended before the array was closed (truncated after ${this.elementsSeen} elements)`);
        return;
      case State.TopValue:
        this.finishTopValue();
        return;
      default:
        return;
    }
  }

  private broken(message: string): void {
    this.state = State.Broken;
    this.sink.problem(message, true);
  }

  private addTopText(chunk: Buffer): void {
    if (this.topBytes + chunk.length > MAX_TOP_TEXT) {
      this.broken(`output is neither a JSON array nor a short error object`);
      return;
    }
    // Kept as bytes and decoded once: a chunk boundary may split a UTF-8 character.
    this.topChunks.push(Buffer.from(chunk));
    this.topBytes += chunk.length;
  }

  private finishTopValue(): void {
    const text = Buffer.concat(this.topChunks).toString(`utf8`);
    this.topChunks = [];
    let value: LosslessValue;
    try {
      value = parseLossless(text);
    } catch (err) {
      this.sink.problem(`output is not JSON: ${(err as Error).message}: ${clip(text)}`, true);
      return;
    }
    this.state = State.Done;
    if (value === null)
      return; // system-probe --pretty prints `null` for an empty map
    if (isObject(value) && typeof value.error === `string`) {
      this.sink.outputError(value.error);
      return;
    }
    if (isObject(value) && Array.isArray(value.elements)) {
      // `bpftool map dump name X` matching several maps: one object per map.
      this.sink.problem(`this output holds several maps (bpftool "map dump name"); dump each map by id instead`, true);
      return;
    }
    this.sink.problem(`expected a JSON array of map elements, got ${clip(text)}`, true);
  }

  /** Keeps the unfinished element that starts at `start` (copied: the chunk must not stay pinned). */
  private keepPending(buf: Buffer, start: number): void {
    this.scanPos -= buf.length;
    this.pending = [];
    this.pendingBytes = 0;
    this.skipping = false;
    this.addPending(Buffer.from(buf.subarray(start)));
  }

  private addPending(piece: Buffer): void {
    this.pendingBytes += piece.length;
    if (this.skipping)
      return;
    if (this.pendingBytes > this.maxElementBytes) {
      // Too big to be a map entry: count it through to its end, then report it and go on.
      this.skipping = true;
      this.pending = [];
      return;
    }
    this.pending!.push(piece);
  }

  private skipTooLarge(bytes: number): void {
    this.elementsSeen++;
    this.sink.problem(`element ${this.elementsSeen} is ${bytes} bytes, longer than the limit of ${this.maxElementBytes} (--max-line-length); skipped`, false);
  }

  /**
   * Finds the end (exclusive) of the element whose scan state is in scanDepth/scanInString,
   * continuing from `from`. Returns -1, with the state saved, when the buffer ends first.
   */
  private scanEnd(buf: Buffer, from: number): number {
    const end = scanToClose(buf, from, this.scanDepth, this.scanInString);
    if (end >= 0) {
      this.scanDepth = 0;
      this.scanInString = false;
      return end;
    }
    this.scanDepth = scanState.depth;
    this.scanInString = scanState.inString;
    // May be length + 1 when the last byte was a backslash: the next chunk's first byte is escaped.
    this.scanPos = scanState.pos;
    return -1;
  }

  private elementAt(buf: Buffer, start: number, end: number): void {
    const fastEnd = this.fastElement(buf, start);
    if (fastEnd === end) {
      this.emit();
      return;
    }
    this.slowElement(buf, start, end);
  }

  private resetElement(): RawEntry {
    const element = resetRawEntry(this.element);
    element.key = null;
    element.value = null;
    return element;
  }

  private emit(): void {
    this.elementsSeen++;
    this.sink.entry(this.element);
  }

  /** Decodes `["0x..",...]` at pos into the key or value bytes from `at`. Returns the end or -1; the count in hexCount. */
  private hexArray(buf: Buffer, pos: number, intoKey: boolean, at: number): number {
    let bytes = intoKey ? this.keyBytes : this.valueBytes;
    let count = 0;
    let p = pos + 1;
    if (buf[p] === Ascii.CloseBracket) {
      this.hexCount = 0;
      return p + 1;
    }
    for (;;) {
      if (buf[p] !== Ascii.Quote || buf[p + 1] !== Ascii.Digit0 || buf[p + 2] !== Ascii.LowerX || buf[p + 5] !== Ascii.Quote)
        return -1;
      const high = HEX_VALUE[buf[p + 3]];
      const low = HEX_VALUE[buf[p + 4]];
      if (!(high >= 0) || !(low >= 0))
        return -1;
      if (at + count >= bytes.length)
        bytes = this.grow(intoKey, (at + count + 1) * 2);
      bytes[at + count] = (high << 4) | low;
      count++;
      const next = buf[p + 6];
      p += 7;
      if (next === Ascii.Comma)
        continue;
      if (next === Ascii.CloseBracket)
        break;
      return -1;
    }
    this.hexCount = count;
    return p;
  }

  private grow(key: boolean, size: number): Buffer {
    if (key)
      return this.keyBytes = grow(this.keyBytes, size);
    return this.valueBytes = grow(this.valueBytes, size);
  }

  /** bpftool's compact element shape; returns the end, or -1 for anything else (or too few bytes). */
  private fastElement(buf: Buffer, start: number): number {
    if (!matchAt(buf, start, KEY_OPEN))
      return -1;
    const element = this.resetElement();
    let p = this.hexArray(buf, start + KEY_OPEN.length - 1, true, 0);
    if (p < 0)
      return -1;
    element.keyLength = this.hexCount;
    if (matchAt(buf, p, VALUE_OPEN)) {
      p = this.hexArray(buf, p + VALUE_OPEN.length - 1, false, 0);
      if (p < 0)
        return -1;
      element.valueLength = this.hexCount;
    } else if (matchAt(buf, p, VALUES_OPEN)) {
      element.perCpu = true;
      p += VALUES_OPEN.length;
      if (buf[p] === Ascii.CloseBracket) {
        p++;
      } else {
        let at = 0;
        for (;;) {
          if (!matchAt(buf, p, CPU_OPEN))
            return -1;
          p += CPU_OPEN.length;
          while (buf[p] >= Ascii.Digit0 && buf[p] <= Ascii.Digit9)
            p++;
          if (!matchAt(buf, p, CPU_VALUE_OPEN))
            return -1;
          p = this.hexArray(buf, p + CPU_VALUE_OPEN.length - 1, false, at);
          if (p < 0 || buf[p] !== Ascii.CloseBrace)
            return -1;
          if (element.cpus === 0)
            element.valueLength = element.valueStride = this.hexCount;
          else if (this.hexCount !== element.valueLength)
            return -1;
          element.cpus++;
          at += this.hexCount;
          const next = buf[p + 1];
          p += 2;
          if (next === Ascii.Comma)
            continue;
          if (next === Ascii.CloseBracket)
            break;
          return -1;
        }
      }
    } else {
      return -1;
    }
    if (matchAt(buf, p, FORMATTED_OPEN)) {
      p = skipValue(buf, p + FORMATTED_OPEN.length);
      if (p < 0)
        return -1;
      element.formatted = true;
    }
    if (buf[p] !== Ascii.CloseBrace)
      return -1;
    element.key = this.keyBytes;
    element.value = this.valueBytes;
    return p + 1;
  }

  private slowElement(buf: Buffer, start: number, end: number): void {
    const text = buf.toString(`utf8`, start, end);
    let value: LosslessValue;
    try {
      value = parseLossless(text);
    } catch (err) {
      const why = err instanceof RangeError ? `nested too deeply to read` : `not JSON (${(err as Error).message})`;
      this.sink.problem(`element ${this.elementsSeen + 1} is ${why}: ${clip(text)}`, false);
      return;
    }
    if (!isObject(value)) {
      this.sink.problem(`element ${this.elementsSeen + 1} is not an object: ${clip(text)}`, false);
      return;
    }
    const element = this.resetElement();
    if (!(`key` in value)) {
      if (typeof value.error === `string`) {
        element.error = value.error;
        this.emit();
        return;
      }
      this.sink.problem(`element ${this.elementsSeen + 1} has no "key": ${clip(text)}`, false);
      return;
    }
    element.formatted = `formatted` in value;
    if (!this.keyFrom(value.key)) {
      this.sink.problem(`element ${this.elementsSeen + 1} has a key that is neither hex bytes nor a decoded value: ${clip(text)}`, false);
      return;
    }
    if (`value` in value) {
      const raw = value.value;
      if (isObject(raw) && typeof raw.error === `string` && Object.keys(raw).length === 1)
        element.error = raw.error;
      else if (isHexArray(raw))
        element.valueLength = this.bytesInto(false, raw, 0);
      else
        element.valueBtf = raw;
    } else if (Array.isArray(value.values)) {
      const perCpu = value.values;
      const slots = perCpu.map(slot => (isObject(slot) && isHexArray(slot.value) ? slot.value : null));
      if (slots.every(slot => slot !== null && slot.length === slots[0]!.length)) {
        element.perCpu = true;
        element.cpus = slots.length;
        element.valueLength = element.valueStride = slots.length > 0 ? slots[0]!.length : 0;
        slots.forEach((slot, i) => this.bytesInto(false, slot!, i * element.valueStride));
      } else {
        const failed = perCpu.find(slot => isObject(slot) && isObject(slot.value) && typeof slot.value.error === `string`);
        if (failed)
          element.error = ((failed as {value: {error: string}}).value).error;
        else
          element.valueBtf = perCpu;
      }
    } else if (typeof value.error === `string`) {
      element.error = value.error;
    }
    this.emit();
  }

  /** Writes a JSON array of byte items into the key or value bytes at `at`; returns how many. */
  private bytesInto(intoKey: boolean, items: Array<LosslessValue>, at: number): number {
    let bytes = intoKey ? this.keyBytes : this.valueBytes;
    if (at + items.length > bytes.length)
      bytes = this.grow(intoKey, (at + items.length) * 2);
    items.forEach((item, i) => {
      bytes[at + i] = typeof item === `number` ? item : parseInt((item as string).slice(2), 16);
    });
    if (intoKey)
      this.element.key = bytes;
    else
      this.element.value = bytes;
    return items.length;
  }

  private keyFrom(key: LosslessValue): boolean {
    const element = this.element;
    if (isHexArray(key)) {
      element.keyLength = this.bytesInto(true, key, 0);
      return true;
    }
    if (key === null || key === undefined || Array.isArray(key))
      return false;
    element.keyBtf = key;
    return true;
  }
}

function grow(buf: Buffer, size: number): Buffer {
  const bigger = Buffer.alloc(size);
  buf.copy(bigger);
  return bigger;
}

/** Skips one JSON value at pos; returns its end, or -1 when the buffer ends first. */
function skipValue(buf: Buffer, pos: number): number {
  const first = buf[pos];
  if (first !== Ascii.OpenBrace && first !== Ascii.OpenBracket) {
    // A scalar: up to the next delimiter (strings are not expected here; be safe anyway).
    let p = pos;
    if (first === Ascii.Quote) {
      p++;
      while (p < buf.length && buf[p] !== Ascii.Quote)
        p += buf[p] === Ascii.Backslash ? 2 : 1;
      return p < buf.length ? p + 1 : -1;
    }
    while (p < buf.length && buf[p] !== Ascii.Comma && buf[p] !== Ascii.CloseBrace && buf[p] !== Ascii.CloseBracket)
      p++;
    return p < buf.length ? p : -1;
  }
  return scanToClose(buf, pos, 0, false);
}

/** Where scanToClose stopped when the buffer ended first (read right after a -1). */
const scanState = {depth: 0, inString: false, pos: 0};

/**
 * Walks JSON text from `from`, with `depth` brackets open and `inString` as given, to the byte
 * after the bracket that closes the outermost one. Returns that end, or -1 with scanState holding
 * where the buffer ran out (so a caller can resume over the next chunk).
 */
function scanToClose(buf: Buffer, from: number, depth: number, inString: boolean): number {
  const length = buf.length;
  let p = from;
  while (p < length) {
    const c = buf[p++];
    if (inString) {
      if (c === Ascii.Backslash)
        p++;
      else if (c === Ascii.Quote)
        inString = false;
    } else if (c === Ascii.Quote) {
      inString = true;
    } else if (c === Ascii.OpenBrace || c === Ascii.OpenBracket) {
      depth++;
    } else if (c === Ascii.CloseBrace || c === Ascii.CloseBracket) {
      if (--depth === 0)
        return p;
    }
  }
  scanState.depth = depth;
  scanState.inString = inString;
  scanState.pos = p;
  return -1;
}

function isObject(value: LosslessValue | undefined): value is {[key: string]: LosslessValue} {
  return value !== null && typeof value === `object` && !Array.isArray(value);
}

const HEX_ITEM = /^0x[0-9a-fA-F]{1,2}$/;

function isHexArray(value: LosslessValue | undefined): value is Array<LosslessValue> {
  if (!Array.isArray(value))
    return false;
  for (const item of value) {
    if (typeof item === `string` ? !HEX_ITEM.test(item) : !(typeof item === `number` && Number.isInteger(item) && item >= 0 && item <= 255))
      return false;
  }
  return true;
}

function clip(text: string): string {
  const flat = text.replace(/\s+/g, ` `);
  return flat.length > 100 ? `${flat.slice(0, 97)}...` : flat;
}
