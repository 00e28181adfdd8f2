// The record spec (src/schema.ts) is the one check every stage runs: what it accepts and rejects,
// field by field, and that report and recheck refuse the same bad verdicts.
import {mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {fileURLToPath} from 'node:url';
import {test} from 'uvu';
import * as assert from 'uvu/assert';
import {RECORDS, RECORD_TYPES, checkRecord, type RecordType} from '../src/schema.ts';
import {parseLines, runCommand} from './helpers/cli.ts';
import {mapRecord, mapStats, ndjson, netns, processRecord, summary, tupleKey, verdict} from './helpers/records.ts';

const samples = fileURLToPath(new URL(`../samples`, import.meta.url));

function sampleRecords(): Array<Record<string, unknown>> {
  const files = [`${samples}/capture.ndjson`, `${samples}/outputs/list-and-diff.ndjson`];
  for (const name of readdirSync(`${samples}/dump`, {withFileTypes: true})) {
    if (name.isDirectory())
      files.push(`${samples}/dump/${name.name}/golden.ndjson`);
  }
  return files.flatMap(file => {
    try {
      return parseLines(readFileSync(file, `utf8`)) as Array<Record<string, unknown>>;
    } catch {
      return [];
    }
  });
}

test(`every sample and golden record passes the spec`, () => {
  const records = sampleRecords();
  const types = new Set<string>();
  for (const record of records) {
    assert.is(checkRecord(record as {type: unknown, v: unknown}), null, JSON.stringify(record));
    types.add(String(record.type));
  }
  for (const type of [`header`, `map`, `entry`, `mapstats`, `netns`, `socket`, `process`, `snapshot`, `verdict`, `summary`])
    assert.ok(types.has(type), `the samples have a ${type} record`);
});

test(`each required field, removed or of the wrong kind, is named in the message`, () => {
  const byType = new Map<string, Record<string, unknown>>();
  for (const record of sampleRecords()) {
    if (!byType.has(String(record.type)))
      byType.set(String(record.type), record);
  }
  for (const type of RECORD_TYPES) {
    const sample = byType.get(type)!;
    for (const [name, field] of Object.entries(RECORDS[type as RecordType].fields)) {
      const wrong = {...sample, [name]: {not: `this`}};
      if (field.kind.test(wrong[name]))
        continue; // a field of any JSON value (valueBtf)
      assert.match(checkRecord(wrong as {type: unknown, v: unknown}) ?? ``, new RegExp(`^invalid ${type} record: ${name}`), `${type}.${name} of the wrong kind`);
      const {[name]: _dropped, ...without} = sample;
      if (field.optional)
        assert.is(checkRecord(without as {type: unknown, v: unknown}), null, `${type}.${name} may be absent`);
      else
        assert.match(checkRecord(without as {type: unknown, v: unknown}) ?? ``, new RegExp(`^invalid ${type} record: ${name}: missing`), `${type}.${name} is required`);
    }
  }
});

test(`nested fields: the message gives the path`, () => {
  const bad = verdict(1, `connection_states`, {...tupleKey({saddr: `10.0.0.1`, sport: 1, daddr: `10.0.0.2`, dport: 70000})}, `leaked`, `no_connection`);
  assert.match(checkRecord(bad) ?? ``, /key: expected decoded key|key\.dport: expected an integer 0\.\.65535, got 70000/);
  const badExtra = verdict(1, `m`, {...tupleKey({saddr: `10.0.0.1`, sport: 1, daddr: `10.0.0.2`, dport: 2}), extra: {stream_id: true as unknown as number}}, `leaked`, `no_connection`);
  assert.match(checkRecord(badExtra) ?? ``, /key\.extra\.stream_id: expected number or string/);
  assert.is(checkRecord({type: `something-new`, v: 1, anything: true}), null, `unknown types pass`);
  assert.is(checkRecord({...mapStats(1, `m`, 0), someNewField: [1, 2]}), null, `unknown fields pass`);
});

const badVerdicts = [
  [`keyHex`, verdict(7, `connection_states`, null, `leaked`, `no_connection`, {keyHex: `XYZ`})],
  [`reason`, verdict(7, `connection_states`, null, `leaked`, `no_connection`, {reason: `made_up`})],
  [`checks`, verdict(7, `connection_states`, null, `leaked`, `no_connection`, {checks: `two`})],
] as const;

test(`report and recheck reject the same bad verdicts, naming line and field`, async () => {
  for (const [field, bad] of badVerdicts) {
    const good = verdict(7, `connection_states`, null, `unknown`, `undecodable_key`, {keyError: `short`});
    const stdin = ndjson([mapRecord(7, `connection_states`), good, bad, summary(`validate`, 7, `connection_states`, {total: 2, alive: 0, leaked: 1, unknown: 1}), netns(4026531840, [1]), processRecord(1, `init`)]);
    const reported = await runCommand([`report`, `--format`, `json`], {stdin});
    assert.match(reported.stderr, new RegExp(`stdin:3: invalid verdict record: ${field}`), `report: ${reported.stderr}`);
    assert.is(JSON.parse(reported.stdout).summary.verdicts, 1, `report: the bad verdict is not counted`);
    // An empty later capture: no live look, and the input is read.
    const later = join(mkdtempSync(join(tmpdir(), `usmld-schema-`)), `later.ndjson`);
    writeFileSync(later, ``);
    const rechecked = await runCommand([`recheck`, `--later`, later], {stdin});
    rmSync(join(later, `..`), {recursive: true, force: true});
    assert.match(rechecked.stderr, new RegExp(`stdin:3: invalid verdict record: ${field}`), `recheck: ${rechecked.stderr}`);
  }
});

test.run();
