// scan without a capture (nothing sees a record whole) decodes tuples as LeanTuples, judges and
// counts IPv4 addresses by number and makes an entry's keyHex only while its map's samples are not
// all taken. Its report must be byte for byte the one of the general path: the same scan with
// --capture (every record whole, plain keys) and `report` of that capture. Offline, on a
// synthetic host big enough that the address tables overflow GROUP_CAP, with IPv6, IPv4-mapped
// sockets, UDP, several namespaces and pid_tgid maps, and on the hand-made sample capture
// (undecodable keys, a map problem, unknown verdicts).
import {cpSync, mkdtempSync, rmSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {test} from 'uvu';
import * as assert from 'uvu/assert';
import {writeFixtureTree} from '../bench/fixture.ts';
import {syntheticWorld, writeRecordedMaps} from '../bench/synthetic.ts';
import {scalePlan} from '../bench/world.ts';
import {GROUP_CAP, GROUP_FIELDS} from '../src/report/aggregate.ts';
import {runCommand} from './helpers/cli.ts';

const scratch = mkdtempSync(join(tmpdir(), `usmld-scan-lean-`));
process.once(`exit`, () => rmSync(scratch, {recursive: true, force: true}));

/** The report of `scan --from capture` alone, with --capture, and `report` of that capture: all equal. */
async function sameReports(capture: string, samples: number, format: string): Promise<string> {
  const args = [`scan`, `--from`, capture, `--recheck-delay`, `0`, `--samples`, String(samples), `--group-by`, GROUP_FIELDS.join(`,`), `--format`, format];
  const alone = await runCommand(args);
  const file = join(scratch, `capture-${samples}-${format}.ndjson`);
  const captured = await runCommand([...args, `--capture`, file, `--force`]);
  const replayed = await runCommand([`report`, `--samples`, String(samples), `--group-by`, GROUP_FIELDS.join(`,`), `--format`, format, file]);
  assert.is(alone.code, 1, alone.stderr);
  assert.is(captured.code, alone.code, captured.stderr);
  // ndjson's first line is a header stamped with the time of the run.
  const rest = (text: string) => (format === `ndjson` ? text.slice(text.indexOf(`\n`)) : text);
  assert.is(rest(alone.stdout), rest(captured.stdout), `scan alone and with --capture: ${format}, ${samples} samples`);
  // report prints its own header line (json/ndjson carry the stage): compare the rest.
  const body = (text: string) => rest(text).replace(/"stage": ?"(scan|report)"/g, ``);
  assert.is(body(replayed.stdout), body(alone.stdout), `scan and report of its capture: ${format}, ${samples} samples`);
  return alone.stdout;
}

test(`scan alone reports what scan --capture and report of the capture report (synthetic host, address tables past GROUP_CAP)`, async () => {
  const world = syntheticWorld({namespaces: 3, sockets: 600, processes: 60}, 5);
  const capture = join(scratch, `synthetic`);
  const plan = scalePlan(40_000);
  await writeRecordedMaps(capture, plan, plan.map(map => map.entries), world.alive, 9);
  await writeFixtureTree(world, capture);
  for (const [samples, format] of [[2, `json`], [0, `json`], [2, `text`]] as const) {
    const out = await sameReports(capture, samples, format);
    if (format !== `json`)
      continue;
    const json = JSON.parse(out);
    const group = (field: string) => json.groups.find((table: {field: string}) => table.field === field);
    for (const field of [`daddr`, `saddr`])
      assert.ok(group(field).capped && group(field).distinct === GROUP_CAP, `${field}'s table overflows`);
    const values = (field: string) => group(field).rows.map((row: {value: string}) => row.value);
    assert.ok(values(`family`).includes(`v6`) && values(`proto`).includes(`udp`), `IPv6 and UDP leaks`);
    assert.ok(values(`netns`).length > 1 && values(`reason`).includes(`process_gone`), `namespaces and pid_tgid maps`);
  }
});

test(`scan alone reports what scan --capture reports (sample capture: mapped addresses, undecodable keys, unknown verdicts)`, async () => {
  const capture = join(scratch, `sample`);
  cpSync(`samples/proc/capture`, capture, {recursive: true});
  cpSync(`samples/dump/bpftool/maps`, join(capture, `maps`), {recursive: true});
  for (const samples of [0, 1, 3, 1000]) {
    for (const format of [`json`, `text`, `ndjson`])
      await sameReports(capture, samples, format);
  }
});

test.run();
