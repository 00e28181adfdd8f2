// Entry lines in dump-maps' own layout, parsed without JSON.parse. validate reads a million of
// them and needs every field (the record check, the judging), but JSON.parse of the whole line
// was a third of its time. Here the line's bytes (an ASCII chunk's, which are its text one for
// one: src/lines.ts) are matched against the one layout dump-maps writes (src/dump/entryLine.ts,
// and JSON.stringify of its records: the same field order), the values are slices of the line's
// text, and the objects are made by literals of a fixed shape.
//
// The contract is strict: parseEntryLine gives either undefined (the caller then runs JSON.parse)
// or exactly what JSON.parse(line) gives: the same fields in the same order with the same values.
// It declines everything off the layout: whitespace, escapes, control characters, other field
// orders, unknown or missing fields, repeated fields, numbers it cannot read exactly, key kinds
// other than conn_tuple and pid_tgid, and keyHex or valueHex that are not lowercase hex of whole
// bytes. What it gives is then checked like any other record (checkEntryHexRead: checkRecord
// without the hex test it made), so a wrong value is refused with the same message either way.
// test/entry-line-parse.test.ts holds it equal to JSON.parse on adversarial and mutated lines.
import {Ascii} from './ascii.ts';
import {SCHEMA_VERSION} from './schema.ts';

/**
 * Where a constant text ends when the bytes at `at` are it; -1 when they are not (or the bytes
 * end first). Compared as little-endian 32-bit words, four bytes per load, by code generated for
 * each text with its words as constants: a loop over the words from a table (or a byte at a
 * time) cost several times as much, and a literal is most of an entry line.
 */
type Literal = (view: DataView, bytes: Uint8Array, at: number) => number;

function literal(text: string): Literal {
  const bytes = Buffer.from(text, `latin1`);
  const tests: Array<string> = [];
  let i = 0;
  for (; i + 4 <= bytes.length; i += 4)
    tests.push(`view.getInt32(at + ${i}, true) === ${bytes.readInt32LE(i)}`);
  for (; i < bytes.length; i++)
    tests.push(`bytes[at + ${i}] === ${bytes[i]}`);
  return new Function(`view`, `bytes`, `at`,
    `return at + ${bytes.length} <= bytes.length && ${tests.join(` && `)} ? at + ${bytes.length} : -1;`) as Literal;
}

const PREFIX = literal(`{"type":"entry","v":${SCHEMA_VERSION},"mapId":`);
const MAP = literal(`,"map":"`);
const KEY_HEX = literal(`,"keyHex":"`);
const KEY_TUPLE = literal(`,"key":{"kind":"conn_tuple","family":"`);
const KEY_PID = literal(`,"key":{"kind":"pid_tgid","pidTgid":"`);
const PROTO = literal(`,"proto":"`);
const SADDR = literal(`,"saddr":"`);
const SPORT = literal(`,"sport":`);
const DADDR = literal(`,"daddr":"`);
const DPORT = literal(`,"dport":`);
const SRC = literal(`,"src":"`);
const DST = literal(`,"dst":"`);
const NETNS = literal(`,"netns":`);
const PID = literal(`,"pid":`);
const METADATA = literal(`,"metadata":`);
const TGID = literal(`,"tgid":`);
const TID = literal(`,"tid":`);
const EXTRA = literal(`,"extra":{`);
const VALUE_HEX = literal(`,"valueHex":"`);
const VALUES_HEX = literal(`,"valuesHex":[`);
const AGE_SECONDS = literal(`,"ageSeconds":`);
const AGE_FIELD = literal(`,"ageField":"`);

/** Most digits of an integer read here: any 15-digit integer is exact as a double. */
const MAX_DIGITS = 15;

/**
 * The value the last integer() or jsonNumber() read (a typed array: the helpers return where
 * they stopped, and a module variable would cost a context load per use).
 */
const NUMBER = new Float64Array(1);

/**
 * Where a non-negative integer at `at` ends (its value in NUMBER[0]); -1 when there is none, it
 * has a leading zero or too many digits. What follows is the caller's to check (a `.` or an `e`
 * after it then fails the next literal).
 */
function integer(bytes: Uint8Array, at: number): number {
  let c = bytes[at];
  if (c === Ascii.Digit0) {
    NUMBER[0] = 0;
    return at + 1;
  }
  const start = at;
  let n = 0;
  while (c >= Ascii.Digit0 && c <= Ascii.Digit9) {
    n = 10 * n + (c - Ascii.Digit0);
    c = bytes[++at];
  }
  if (at === start || at - start > MAX_DIGITS)
    return -1;
  NUMBER[0] = n;
  return at;
}

/** Where the digits from `at` end. */
function digits(bytes: Uint8Array, at: number): number {
  let c = bytes[at];
  while (c >= Ascii.Digit0 && c <= Ascii.Digit9)
    c = bytes[++at];
  return at;
}

/**
 * Where a JSON number at `at` ends (any form of the grammar; its value, read by Number(), in
 * NUMBER[0]: the same correctly rounded double JSON.parse makes); -1 when there is none.
 */
function jsonNumber(bytes: Uint8Array, at: number, line: string, lineStart: number): number {
  const start = at;
  if (bytes[at] === Ascii.Minus)
    at += 1;
  if (bytes[at] === Ascii.Digit0) {
    at += 1;
  } else {
    const end = digits(bytes, at);
    if (end === at)
      return -1;
    at = end;
  }
  if (bytes[at] === Ascii.Dot) {
    const end = digits(bytes, at + 1);
    if (end === at + 1)
      return -1;
    at = end;
  }
  if (bytes[at] === 0x65 || bytes[at] === 0x45) { // e, E
    at += 1;
    if (bytes[at] === 0x2b || bytes[at] === Ascii.Minus) // +, -
      at += 1;
    const end = digits(bytes, at);
    if (end === at)
      return -1;
    at = end;
  }
  NUMBER[0] = Number(line.slice(start - lineStart, at - lineStart));
  return at;
}

/** 1 for the bytes a JSON string holds as they are (ASCII from space on, but `"` and `\`). */
const PLAIN = new Uint8Array(256);
PLAIN.fill(1, Ascii.Space, 0x80);
PLAIN[Ascii.Quote] = 0;
PLAIN[Ascii.Backslash] = 0;
/**
 * PLAIN of two bytes at once (a little-endian u16): half the steps over a long string. Made at
 * every start, so by rows: the pairs whose second byte is plain are PLAIN itself, the others 0
 * (a copy per row, not 65,536 steps of not yet compiled code: about 3 ms of each run).
 */
const PLAIN_PAIR = new Uint8Array(65536);
for (let second = 0; second < 256; second++) {
  if (PLAIN[second] === 1)
    PLAIN_PAIR.set(PLAIN, second << 8);
}

/**
 * Where the closing quote of a string whose text starts at `at` is; -1 when there is none before
 * `end`, or the text has an escape or a control character (its value would not be its text).
 * The bytes are ASCII (the caller's promise), so nothing else changes in JSON.parse.
 */
function closingQuote(view: DataView, bytes: Uint8Array, at: number, end: number): number {
  // Two bytes at a time while both are plain; neither can be past the line's end (a newline, a
  // carriage return, or past the chunk: getUint16 would throw).
  while (at + 1 < end && PLAIN_PAIR[view.getUint16(at, true)] === 1)
    at += 2;
  if (PLAIN[bytes[at]] === 1)
    at++;
  return at < end && bytes[at] === Ascii.Quote ? at : -1;
}

/** 1 for two bytes (a little-endian u16) that are both lowercase hex digits. */
const HEX_PAIR = new Uint8Array(65536);
for (const high of `0123456789abcdef`) {
  for (const low of `0123456789abcdef`)
    HEX_PAIR[low.charCodeAt(0) | (high.charCodeAt(0) << 8)] = 1;
}

/**
 * closingQuote for a hex field (keyHex, valueHex): -1 unless the text is lowercase hex digits,
 * two per byte. The reader then leaves out the spec's hex test (checkEntryHexRead); a line with
 * anything else there goes the general way, which says what is wrong with it.
 */
function closingHexQuote(view: DataView, bytes: Uint8Array, at: number, end: number): number {
  // Four bytes at a time while all four are hex digits (allHex), then two.
  while (at + 3 < end && allHex(view.getInt32(at, true)))
    at += 4;
  while (at + 1 < end && HEX_PAIR[view.getUint16(at, true)] === 1)
    at += 2;
  return at < end && bytes[at] === Ascii.Quote ? at : -1;
}

/**
 * Whether the four bytes of `word` are all lowercase hex digits, tested on all four at once. The
 * bytes are ASCII (below 0x80), so adding to or subtracting from each byte stays within it: bit 7
 * of `byte + 0x50` says byte >= 0x30, of `0xb9 - byte` byte <= 0x39, of `byte + 0x1f` byte >= 0x61,
 * of `0xe6 - byte` byte <= 0x66.
 */
function allHex(word: number): boolean {
  const digit = (word + 0x50505050) & (0xb9b9b9b9 - word);
  const letter = (word + 0x1f1f1f1f) & (0xe6e6e6e6 - word);
  return ((digit | letter) & 0x80808080) === (0x80808080 | 0);
}

/** The `extra` object read by extraFields (after the call, with where it ended in NUMBER[0]). */
let extraRead: Record<string, number | string> = {};

/** Where `"name":value,...}` of a key's `extra` ends (the object in extraRead); -1 when off the layout. */
function extraFields(view: DataView, bytes: Uint8Array, at: number, end: number, line: string, lineStart: number): number {
  const fields: Record<string, number | string> = {};
  extraRead = fields;
  if (bytes[at] === Ascii.CloseBrace)
    return at + 1;
  for (;;) {
    if (bytes[at] !== Ascii.Quote)
      return -1;
    const close = closingQuote(view, bytes, at + 1, end);
    // Names that an object keeps where they are: not empty, not integer-like, not __proto__.
    const first = bytes[at + 1];
    if (close < 0 || close === at + 1 || (first >= Ascii.Digit0 && first <= Ascii.Digit9) || bytes[close + 1] !== Ascii.Colon)
      return -1;
    const name = line.slice(at + 1 - lineStart, close - lineStart);
    if (name === `__proto__`)
      return -1;
    at = close + 2;
    let value: number | string;
    if (bytes[at] === Ascii.Quote) {
      const closeValue = closingQuote(view, bytes, at + 1, end);
      if (closeValue < 0)
        return -1;
      value = line.slice(at + 1 - lineStart, closeValue - lineStart);
      at = closeValue + 1;
    } else {
      const negative = bytes[at] === Ascii.Minus;
      at = integer(bytes, negative ? at + 1 : at);
      if (at < 0)
        return -1;
      value = negative ? -NUMBER[0] : NUMBER[0];
    }
    // In order: a repeated name keeps its first place and its last value, as in JSON.parse.
    fields[name] = value;
    const c = bytes[at++];
    if (c === Ascii.CloseBrace)
      return at;
    if (c !== Ascii.Comma)
      return -1;
  }
}

/** The `valuesHex` list read by valuesList. */
let valuesRead: Array<string> = [];

/** Where `"h1","h2",...]` ends (the list in valuesRead); -1 when off the layout. */
function valuesList(view: DataView, bytes: Uint8Array, at: number, end: number, line: string, lineStart: number): number {
  const list: Array<string> = [];
  valuesRead = list;
  if (bytes[at] === Ascii.CloseBracket)
    return at + 1;
  for (;;) {
    if (bytes[at] !== Ascii.Quote)
      return -1;
    const close = closingQuote(view, bytes, at + 1, end);
    if (close < 0)
      return -1;
    list.push(line.slice(at + 1 - lineStart, close - lineStart));
    at = close + 1;
    const c = bytes[at++];
    if (c === Ascii.CloseBracket)
      return at;
    if (c !== Ascii.Comma)
      return -1;
  }
}

/** The last map name read, its bytes, and its map's id: the next entry's is most likely the same. */
let lastMap = ``;
let lastMapBytes = new Uint8Array(0);
let lastMapId = -1;

/**
 * The map name in bytes [from, to) (text [from - d, to - d) of the line): the same string as the
 * last entry's when the bytes are the same (entries come map by map; a string per entry was
 * garbage for the collector).
 */
function mapName(line: string, bytes: Uint8Array, from: number, to: number, d: number, mapId: number): string {
  const last = lastMapBytes;
  const length = last.length;
  if (mapId === lastMapId && to - from === length) {
    let i = 0;
    while (i < length && bytes[from + i] === last[i])
      i++;
    if (i === length)
      return lastMap;
  }
  lastMap = line.slice(from - d, to - d);
  // A copy (Buffer's slice would be a view of the chunk, which is read into again).
  lastMapBytes = Uint8Array.prototype.slice.call(bytes, from, to);
  lastMapId = mapId;
  return lastMap;
}

/**
 * JSON.parse(line) for an entry line in dump-maps' layout; undefined for any other line (the
 * caller parses it the general way). `bytes` from `start` on are the line's text one for one
 * (ASCII: the caller checked); `view` is a DataView of the same bytes.
 */
export function parseEntryLine(line: string, bytes: Uint8Array, view: DataView, start: number): Record<string, unknown> | undefined {
  const end = start + line.length;
  // Text positions are byte positions less d.
  const d = start;
  let at = PREFIX(view, bytes, start);
  if (at < 0 || (at = integer(bytes, at)) < 0)
    return undefined;
  const mapId = NUMBER[0];
  if ((at = MAP(view, bytes, at)) < 0)
    return undefined;
  let close = closingQuote(view, bytes, at, end);
  if (close < 0)
    return undefined;
  const map = mapName(line, bytes, at, close, d, mapId);
  if ((at = KEY_HEX(view, bytes, close + 1)) < 0 || (close = closingHexQuote(view, bytes, at, end)) < 0)
    return undefined;
  const keyHex = line.slice(at - d, close - d);
  at = close + 1;
  let key: Record<string, unknown>;
  if (bytes[at + 16] === 0x63) { // `c` of conn_tuple
    if ((at = KEY_TUPLE(view, bytes, at)) < 0 || (close = closingQuote(view, bytes, at, end)) < 0)
      return undefined;
    const family = close - at === 2 && bytes[at] === 0x76 && (bytes[at + 1] === 0x34 || bytes[at + 1] === 0x36) // v4, v6
      ? (bytes[at + 1] === 0x34 ? `v4` : `v6`) : line.slice(at - d, close - d);
    if ((at = PROTO(view, bytes, close + 1)) < 0 || (close = closingQuote(view, bytes, at, end)) < 0)
      return undefined;
    const proto = close - at === 3 && bytes[at + 2] === 0x70 && ((bytes[at] === 0x74 && bytes[at + 1] === 0x63) || (bytes[at] === 0x75 && bytes[at + 1] === 0x64)) // tcp, udp
      ? (bytes[at] === 0x74 ? `tcp` : `udp`) : line.slice(at - d, close - d);
    if ((at = SADDR(view, bytes, close + 1)) < 0 || (close = closingQuote(view, bytes, at, end)) < 0)
      return undefined;
    const saddr = line.slice(at - d, close - d);
    if ((at = SPORT(view, bytes, close + 1)) < 0 || (at = integer(bytes, at)) < 0)
      return undefined;
    const sport = NUMBER[0];
    if ((at = DADDR(view, bytes, at)) < 0 || (close = closingQuote(view, bytes, at, end)) < 0)
      return undefined;
    const daddr = line.slice(at - d, close - d);
    if ((at = DPORT(view, bytes, close + 1)) < 0 || (at = integer(bytes, at)) < 0)
      return undefined;
    const dport = NUMBER[0];
    if ((at = SRC(view, bytes, at)) < 0 || (close = closingQuote(view, bytes, at, end)) < 0)
      return undefined;
    const src = line.slice(at - d, close - d);
    if ((at = DST(view, bytes, close + 1)) < 0 || (close = closingQuote(view, bytes, at, end)) < 0)
      return undefined;
    const dst = line.slice(at - d, close - d);
    if ((at = NETNS(view, bytes, close + 1)) < 0 || (at = integer(bytes, at)) < 0)
      return undefined;
    const netns = NUMBER[0];
    if ((at = PID(view, bytes, at)) < 0 || (at = integer(bytes, at)) < 0)
      return undefined;
    const pid = NUMBER[0];
    if ((at = METADATA(view, bytes, at)) < 0 || (at = integer(bytes, at)) < 0)
      return undefined;
    key = {kind: `conn_tuple`, family, proto, saddr, sport, daddr, dport, src, dst, netns, pid, metadata: NUMBER[0]};
  } else {
    if ((at = KEY_PID(view, bytes, at)) < 0 || (close = closingQuote(view, bytes, at, end)) < 0)
      return undefined;
    const pidTgid = line.slice(at - d, close - d);
    if ((at = TGID(view, bytes, close + 1)) < 0 || (at = integer(bytes, at)) < 0)
      return undefined;
    const tgid = NUMBER[0];
    if ((at = TID(view, bytes, at)) < 0 || (at = integer(bytes, at)) < 0)
      return undefined;
    key = {kind: `pid_tgid`, pidTgid, tgid, tid: NUMBER[0]};
  }
  if (bytes[at] === Ascii.Comma) {
    if ((at = EXTRA(view, bytes, at)) < 0 || (at = extraFields(view, bytes, at, end, line, d)) < 0)
      return undefined;
    key.extra = extraRead;
  }
  if (bytes[at++] !== Ascii.CloseBrace)
    return undefined;
  const record: Record<string, unknown> = {type: `entry`, v: SCHEMA_VERSION, mapId, map, keyHex, key};
  if (bytes[at + 7] === 0x48) { // `H` of valueHex
    if ((at = VALUE_HEX(view, bytes, at)) < 0 || (close = closingHexQuote(view, bytes, at, end)) < 0)
      return undefined;
    record.valueHex = line.slice(at - d, close - d);
    at = close + 1;
  } else if (bytes[at + 7] === 0x73) { // `s` of valuesHex
    if ((at = VALUES_HEX(view, bytes, at)) < 0 || (at = valuesList(view, bytes, at, end, line, d)) < 0)
      return undefined;
    record.valuesHex = valuesRead;
  }
  if (bytes[at] === Ascii.Comma) {
    if ((at = AGE_SECONDS(view, bytes, at)) < 0 || (at = jsonNumber(bytes, at, line, d)) < 0)
      return undefined;
    const ageSeconds = NUMBER[0];
    if ((at = AGE_FIELD(view, bytes, at)) < 0 || (close = closingQuote(view, bytes, at, end)) < 0)
      return undefined;
    record.ageSeconds = ageSeconds;
    record.ageField = line.slice(at - d, close - d);
    at = close + 1;
  }
  return at + 1 === end && bytes[at] === Ascii.CloseBrace ? record : undefined;
}
