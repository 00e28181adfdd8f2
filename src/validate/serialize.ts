// Verdict lines, written without stringifying the entry a second time. validate emits one verdict
// per entry (a million for a full map); the entry's fields (mapId, map, keyHex, key, value) are
// already JSON in the line the entry was read from (ndjson SOURCE_LINE), so the verdict line is
// that text with the verdict's own fields appended. What comes out parses to the same record that
// JSON.stringify would give (test/validate-serialize.test.ts); when the entry line is not of our
// own shape, or the verdict carries fields this does not know, JSON.stringify does the work.
import {SOURCE_LINE} from '../ndjson.ts';
import {SCHEMA_VERSION, fieldNames, type VerdictRecord} from '../schema.ts';

export const ENTRY_LINE_PREFIX = `{"type":"entry","v":${SCHEMA_VERSION},`;
const VERDICT_LINE_PREFIX = `{"type":"verdict","v":${SCHEMA_VERSION},`;
/** Fields the verdict adds; an entry line that already has one of them is not ours: fall back. */
const VERDICT_FIELDS_RE = /"(?:status|reason|checks|match|owner)":/;
/** Fields a verdict may have beyond the entry's own. */
const KNOWN: ReadonlySet<string> = new Set(fieldNames(`verdict`));

/**
 * Matches (one per socket) and owners (one per pid) are shared by many verdicts: each is
 * stringified once and its text kept on it under a symbol key (which JSON.stringify skips).
 * A WeakMap did the same at several times the cost per lookup.
 */
const JSON_TEXT: unique symbol = Symbol(`jsonText`);

function jsonOf(value: object): string {
  const cached = value as {[JSON_TEXT]?: string};
  return cached[JSON_TEXT] ??= JSON.stringify(value);
}

export type VerdictWithLine = VerdictRecord & {[SOURCE_LINE]?: string};

export function verdictLine(record: object): string {
  const verdict = record as VerdictWithLine;
  const entryLine = verdict[SOURCE_LINE];
  if (verdict.type !== `verdict` || entryLine === undefined || !entryLine.startsWith(ENTRY_LINE_PREFIX)
    || entryLine.charCodeAt(entryLine.length - 1) !== 125 /* } */ || VERDICT_FIELDS_RE.test(entryLine))
    return JSON.stringify(record);
  let fields = 0;
  for (const name in verdict) {
    if (!KNOWN.has(name))
      return JSON.stringify(record);
    fields += 1;
  }
  let line = `${VERDICT_LINE_PREFIX}${entryLine.slice(ENTRY_LINE_PREFIX.length, -1)},"status":"${verdict.status}","reason":"${verdict.reason}","checks":${verdict.checks}`;
  if (verdict.match !== undefined)
    line += `,"match":${jsonOf(verdict.match)}`;
  if (verdict.owner !== undefined)
    line += `,"owner":${jsonOf(verdict.owner)}`;
  return fields > 0 ? `${line}}` : JSON.stringify(record);
}
