// The library (src/) never imports the commands (commands/), the layer above it.
import {readdirSync, readFileSync} from 'node:fs';
import {join, relative} from 'node:path';
import {fileURLToPath} from 'node:url';
import {test} from 'uvu';
import * as assert from 'uvu/assert';

const root = fileURLToPath(new URL(`..`, import.meta.url));

function sources(dir: string): Array<string> {
  return readdirSync(dir, {withFileTypes: true}).flatMap(item => {
    const path = join(dir, item.name);
    return item.isDirectory() ? sources(path) : item.name.endsWith(`.ts`) ? [path] : [];
  });
}

test(`no file under src/ imports from commands/`, () => {
  const files = sources(join(root, `src`));
  assert.ok(files.length > 20);
  const offenders = files.filter(file => /(?:from|import)\s*\(?\s*['"`][^'"`]*\/commands\//.test(readFileSync(file, `utf8`)));
  assert.equal(offenders.map(file => relative(root, file)), []);
});

test.run();
