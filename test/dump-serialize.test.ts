// dump-maps writes entries with a template serializer: it must give exactly JSON.stringify's text.
import {readdirSync, readFileSync} from 'node:fs';
import {fileURLToPath} from 'node:url';
import {test} from 'uvu';
import * as assert from 'uvu/assert';
import {recordLine} from '../src/dump/serialize.ts';
import type {DumpRecord} from '../src/dump/index.ts';

const samples = fileURLToPath(new URL(`../samples/dump`, import.meta.url));

test(`recordLine equals JSON.stringify for every golden record`, () => {
  let count = 0;
  for (const name of readdirSync(samples)) {
    let text: string;
    try {
      text = readFileSync(`${samples}/${name}/golden.ndjson`, `utf8`);
    } catch {
      continue;
    }
    for (const line of text.split(`\n`).filter(Boolean)) {
      const record = JSON.parse(line) as DumpRecord;
      assert.is(recordLine(record), `${JSON.stringify(record)}\n`);
      count++;
    }
  }
  assert.ok(count > 50);
});

test(`odd strings fall back to JSON.stringify (escaping kept)`, () => {
  const entry = {
    type: `entry`, v: 1, mapId: 1, map: `x"y`, keyHex: `00`, key: null, valueHex: `01`, keyError: `bad "key"`,
  } as unknown as DumpRecord;
  assert.is(recordLine(entry), `${JSON.stringify(entry)}\n`);
  const withError = {type: `entry`, v: 1, mapId: 1, map: `m`, keyHex: `00`, key: null, keyError: `quote " and \\ slash`} as unknown as DumpRecord;
  assert.is(recordLine(withError), `${JSON.stringify(withError)}\n`);
});

test.run();
