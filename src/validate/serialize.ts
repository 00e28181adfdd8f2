// Verdict lines, written without stringifying the entry a second time. validate emits one verdict
// per entry (a million for a full map); the entry's fields are already JSON in the line the entry
// was read from (ndjson SOURCE_LINE, which makeVerdict copies onto the verdict), so the
// verdict line is that text with the fields only a verdict has (status, reason, checks, match,
// owner: VERDICT_ONLY_FIELD_NAMES of the spec) appended. Copying the line instead of
// JSON.stringify saves ~2.5 µs per verdict, a sixth of validate's time.
//
// What comes out parses to the record JSON.stringify would give (test/validate-serialize.test.ts).
// Lines of another key order, or that already carry a verdict's field, and verdicts made
// in-process (scan) are stringified: every path keeps every field of the entry. A field validate
// computes for a verdict must therefore be a verdict-only field of the spec, never an entry field.
import {Ascii} from '../ascii.ts';
import {SOURCE_LINE} from '../ndjson.ts';
import {REASONS, SCHEMA_VERSION, VERDICT_ONLY_FIELD_NAMES, type VerdictStatus} from '../schema.ts';

export const ENTRY_LINE_PREFIX = `{"type":"entry","v":${SCHEMA_VERSION},`;
const VERDICT_LINE_PREFIX = `{"type":"verdict","v":${SCHEMA_VERSION},`;
const SAFE_STRING = /^[0-9A-Za-z_.:[\]-]*$/;

/**
 * Matches (one per socket) and owners (one per pid) are shared by many verdicts: each is
 * stringified once and its text kept on it under a symbol key (which JSON.stringify skips).
 * A WeakMap did the same at several times the cost per lookup.
 */
const JSON_TEXT: unique symbol = Symbol(`jsonText`);

export function jsonOf(value: unknown): string {
  if (typeof value === `number`)
    return String(value);
  if (typeof value === `string`)
    return SAFE_STRING.test(value) ? `"${value}"` : JSON.stringify(value);
  if (typeof value !== `object` || value === null)
    return JSON.stringify(value);
  let text = (value as {[JSON_TEXT]?: string})[JSON_TEXT];
  if (text === undefined) {
    text = JSON.stringify(value);
    // Not enumerable: a copy made by spreading a match or owner (given other fields) must not carry its text.
    Object.defineProperty(value, JSON_TEXT, {value: text});
  }
  return text;
}

/**
 * Where makeVerdict keeps the judgement of a verdict whose match's text the index handed over
 * (Judgement.matchText): writing it from there spares a read of the match object, a cache miss
 * per verdict in a large index. Trusted only while the verdict's match is still the judgement's
 * (a copy of the verdict given another match falls back to jsonOf).
 */
export const MATCH_TEXT: unique symbol = Symbol(`matchText`);

/**
 * Whether a verdict can be written from its entry's line: makeVerdict asks, verdictLine trusts it.
 * An entry that has one of the verdict's own fields is not ours (its line would then carry the
 * field twice): asked of the parsed entry, not by searching the line.
 */
export function lineCarriesEntry(entryLine: string, entry: object): boolean {
  return entryLine.startsWith(ENTRY_LINE_PREFIX) && entryLine.charCodeAt(entryLine.length - 1) === Ascii.CloseBrace && !hasVerdictField(entry);
}

/** Whether an object has one of a verdict's own fields: a read by name per field (generated, as writeLaterFields). */
const hasVerdictField = new Function(`entry`, `return ${VERDICT_ONLY_FIELD_NAMES.map(name => `entry[${JSON.stringify(name)}] !== undefined`).join(` || `)};`) as (entry: object) => boolean;

/**
 * `,"status":…,"reason":…,"checks":1` for every status and reason a verdict can have, built once:
 * what every verdict line of validate appends first (the fields in the spec's order).
 */
const [STATUS, REASON, CHECKS, ...LATER_FIELDS] = VERDICT_ONLY_FIELD_NAMES;
const FIRST_FIELDS = [STATUS, REASON, CHECKS];
const JUDGEMENT_TEXT: ReadonlyMap<unknown, ReadonlyMap<unknown, string>> = new Map(
  (Object.keys(REASONS) as Array<VerdictStatus>).map(status => [status, new Map(
    Object.values(REASONS).flat().map(reason => [reason, `,"${STATUS}":"${status}","${REASON}":"${reason}","${CHECKS}":1`]),
  )]),
);

/** VERDICT_LINE_PREFIX is this much longer than ENTRY_LINE_PREFIX. */
const PREFIX_GROWTH = VERDICT_LINE_PREFIX.length - ENTRY_LINE_PREFIX.length;
const VERDICT_PREFIX_BYTES = Buffer.from(VERDICT_LINE_PREFIX);
const JUDGEMENT_BYTES: ReadonlyMap<unknown, ReadonlyMap<unknown, Uint8Array>> = new Map([...JUDGEMENT_TEXT].map(([status, reasons]) =>
  [status, new Map([...reasons].map(([reason, text]) => [reason, Buffer.from(text)]))]));
/** `,"name":` of each later field. */
const LATER_NAME_BYTES = LATER_FIELDS.map(name => Buffer.from(`,"${name}":`));
/**
 * Appends the later fields a verdict has (`,"name":` and the value's JSON); -1 when they do not
 * fit. Generated from the spec's names like fieldsTest (src/fieldKinds.ts): a read by name per
 * field, where reading `verdict[name]` in a loop was a third of verdictBytes' time.
 */
const writeLaterFields = new Function(`jsonOf`, `names`, `matchText`, `return function writeLaterFields(verdict, buffer, end) {
  let value, name, text, known;
  ${LATER_FIELDS.map((field, i) => `value = verdict[${JSON.stringify(field)}];
  if (value !== undefined) {
    name = names[${i}];
    ${field === `match` ? `known = verdict[matchText];
    text = known !== undefined && known.match === value ? known.matchText : jsonOf(value);` : `text = jsonOf(value);`}
    if (end + name.length + 3 * text.length > buffer.length)
      return -1;
    buffer.set(name, end);
    end += name.length;
    end += buffer.utf8Write(text, end);
  }`).join(`\n  `)}
  return end;
};`)(jsonOf, LATER_NAME_BYTES, MATCH_TEXT) as (verdict: object, buffer: Buffer, end: number) => number;

/** Buffer's own UTF-8 writer, without Buffer.write's argument handling (a sixth of the time here). */
interface Utf8Writer {
  utf8Write(text: string, offset: number): number;
}

/**
 * verdictLine's text (and the newline) written as UTF-8 straight into `buffer` at `at`, for the
 * verdicts it writes from their entry's line with a prebuilt judgement; returns where the bytes
 * end, or -1 when it leaves the record to verdictLine (another verdict, or too little room: what
 * it wrote past `at` is then overwritten). No verdict string is built: the entry's line (a slice
 * of the chunk it was read from) is copied once, the verdict's prefix written over the entry's,
 * the judgement copied from bytes made once, and a match's or owner's text (made once, jsonOf)
 * encoded after it. Building and then encoding a string per verdict cost several times that.
 */
export function verdictBytes(record: object, buffer: Buffer, at: number): number {
  const verdict = record as {type?: unknown, [SOURCE_LINE]?: string} & Record<string, unknown>;
  const entryLine = verdict[SOURCE_LINE];
  if (verdict.type !== `verdict` || entryLine === undefined || verdict[CHECKS] !== 1)
    return -1;
  const judgement = JUDGEMENT_BYTES.get(verdict[STATUS])?.get(verdict[REASON]);
  // At most 3 bytes per UTF-16 unit.
  if (judgement === undefined || at + PREFIX_GROWTH + 3 * entryLine.length + judgement.length > buffer.length)
    return -1;
  // The line without its closing brace, then the verdict's prefix over the entry's.
  let end = at + PREFIX_GROWTH + (buffer as unknown as Utf8Writer).utf8Write(entryLine, at + PREFIX_GROWTH) - 1;
  buffer.set(VERDICT_PREFIX_BYTES, at);
  buffer.set(judgement, end);
  end += judgement.length;
  end = writeLaterFields(verdict, buffer, end);
  if (end < 0 || end + 2 > buffer.length)
    return -1;
  buffer[end++] = Ascii.CloseBrace;
  buffer[end++] = Ascii.LineFeed;
  return end;
}

/** A verdict as NDJSON: from its entry's line when makeVerdict kept it (SOURCE_LINE), else stringified. */
export function verdictLine(record: object): string {
  const verdict = record as {type?: unknown, [SOURCE_LINE]?: string} & Record<string, unknown>;
  const entryLine = verdict[SOURCE_LINE];
  if (verdict.type !== `verdict` || entryLine === undefined)
    return JSON.stringify(record);
  const judgement = (verdict[CHECKS] === 1 ? JUDGEMENT_TEXT.get(verdict[STATUS])?.get(verdict[REASON]) : undefined)
    ?? fieldsText(verdict, FIRST_FIELDS);
  const tail = `${judgement}${fieldsText(verdict, LATER_FIELDS)}`;
  return `${VERDICT_LINE_PREFIX}${entryLine.slice(ENTRY_LINE_PREFIX.length, -1)}${tail}}`;
}

function fieldsText(verdict: Record<string, unknown>, names: ReadonlyArray<string>): string {
  let text = ``;
  for (let i = 0; i < names.length; i++) {
    const name = names[i];
    const value = verdict[name];
    if (value !== undefined)
      text += `,"${name}":${jsonOf(value)}`;
  }
  return text;
}
