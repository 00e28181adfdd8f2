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
import {SCHEMA_VERSION, VERDICT_ONLY_FIELD_NAMES} from '../schema.ts';

export const ENTRY_LINE_PREFIX = `{"type":"entry","v":${SCHEMA_VERSION},`;
const VERDICT_LINE_PREFIX = `{"type":"verdict","v":${SCHEMA_VERSION},`;
/** An entry line that already has one of the verdict's own fields is not ours: fall back. */
const VERDICT_FIELDS_RE = new RegExp(`"(?:${VERDICT_ONLY_FIELD_NAMES.join(`|`)})":`);
const SAFE_STRING = /^[0-9A-Za-z_.:[\]-]*$/;

/**
 * Matches (one per socket) and owners (one per pid) are shared by many verdicts: each is
 * stringified once and its text kept on it under a symbol key (which JSON.stringify skips).
 * A WeakMap did the same at several times the cost per lookup.
 */
const JSON_TEXT: unique symbol = Symbol(`jsonText`);

function jsonOf(value: unknown): string {
  if (typeof value === `number`)
    return String(value);
  if (typeof value === `string`)
    return SAFE_STRING.test(value) ? `"${value}"` : JSON.stringify(value);
  if (typeof value !== `object` || value === null)
    return JSON.stringify(value);
  const cached = value as {[JSON_TEXT]?: string};
  return cached[JSON_TEXT] ??= JSON.stringify(value);
}

/** Whether a verdict can be written from its entry's line: makeVerdict asks, verdictLine trusts it. */
export function lineCarriesEntry(entryLine: string): boolean {
  return entryLine.startsWith(ENTRY_LINE_PREFIX) && entryLine.charCodeAt(entryLine.length - 1) === Ascii.CloseBrace
    && !VERDICT_FIELDS_RE.test(entryLine);
}

/** A verdict as NDJSON: from its entry's line when makeVerdict kept it (SOURCE_LINE), else stringified. */
export function verdictLine(record: object): string {
  const verdict = record as {type?: unknown, [SOURCE_LINE]?: string} & Record<string, unknown>;
  const entryLine = verdict[SOURCE_LINE];
  if (verdict.type !== `verdict` || entryLine === undefined)
    return JSON.stringify(record);
  let line = `${VERDICT_LINE_PREFIX}${entryLine.slice(ENTRY_LINE_PREFIX.length, -1)}`;
  for (const name of VERDICT_ONLY_FIELD_NAMES) {
    const value = verdict[name];
    if (value !== undefined)
      line += `,"${name}":${jsonOf(value)}`;
  }
  return `${line}}`;
}
