// docs/wire-format.md is generated from the record spec; this fails while it is stale.
import {readFileSync} from 'node:fs';
import {test} from 'uvu';
import * as assert from 'uvu/assert';
import {WIRE_FORMAT_DOC, wireFormatMarkdown} from '../scripts/wire-format.ts';

test(`docs/wire-format.md is what scripts/wire-format.ts generates from src/schema.ts`, () => {
  const committed = readFileSync(WIRE_FORMAT_DOC, `utf8`);
  assert.ok(committed === wireFormatMarkdown(), `docs/wire-format.md is stale: run node_modules/.bin/tsx scripts/wire-format.ts --write`);
});

test.run();
