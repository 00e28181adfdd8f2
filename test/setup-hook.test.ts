// test/helpers/setUp.ts: a file whose set-up throws must fail, loudly. uvu's own `test.before`
// drops the error (the file shows "0 / N" and the run exits 0): checked here on a throwaway test
// file run by uvu in a child process, with the helper and with uvu's hook as it is.
import {spawnSync} from 'node:child_process';
import {mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join, resolve} from 'node:path';
import {test} from 'uvu';
import * as assert from 'uvu/assert';

const repo = resolve(new URL(`..`, import.meta.url).pathname);

function runFixture(body: string): {status: number | null, output: string} {
  const dir = mkdtempSync(join(tmpdir(), `usmld-setup-hook-`));
  try {
    writeFileSync(join(dir, `fixture.test.ts`), `import {test} from 'uvu';\nimport {beforeAll} from ${JSON.stringify(join(repo, `test/helpers/setUp.ts`))};\n${body}\ntest.run();\n`);
    const result = spawnSync(join(repo, `node_modules/.bin/tsx`), [join(repo, `node_modules/uvu/bin.js`), dir, `fixture\\.test\\.ts$`],
      // The fixture lives outside the repo: its `uvu` is found through NODE_PATH.
      {cwd: repo, encoding: `utf8`, env: {...process.env, NODE_PATH: join(repo, `node_modules`), NO_COLOR: `1`, FORCE_COLOR: `0`}, timeout: 60_000});
    return {status: result.status, output: `${result.stdout}${result.stderr}`};
  } finally {
    rmSync(dir, {recursive: true, force: true});
  }
}

test(`a set-up that throws fails every test of its file, with its error`, () => {
  const run = runFixture(`beforeAll(test, () => { throw new Error('the world could not be built'); });\ntest('one', () => {});\ntest('two', () => {});`);
  assert.is(run.status, 1, run.output);
  assert.match(run.output, /the world could not be built/);
  assert.match(run.output, /\(0 \/ 2\)/);
});

test(`a set-up that works runs the tests after it, once`, () => {
  const run = runFixture(`let calls = 0;\nbeforeAll(test, async () => { calls += 1; });\ntest('one', () => { if (calls !== 1) throw new Error('calls ' + calls); });\ntest('two', () => { if (calls !== 1) throw new Error('calls ' + calls); });`);
  assert.is(run.status, 0, run.output);
  assert.match(run.output, /\(2 \/ 2\)/);
});

test(`(why) uvu's own test.before drops a thrown error: the file passes with none of its tests run`, () => {
  const run = runFixture(`test.before(() => { throw new Error('dropped'); });\ntest('one', () => {});`);
  assert.is(run.status, 0, run.output);
  assert.match(run.output, /\(0 \/ 1\)/);
  assert.not.match(run.output, /dropped/);
});

test(`no test file sets up with uvu's test.before (beforeAll instead)`, () => {
  const offenders = readdirSync(join(repo, `test`))
    .filter(name => name.endsWith(`.test.ts`) && name !== `setup-hook.test.ts`)
    .filter(name => /\btest\.before\(/.test(readFileSync(join(repo, `test`, name), `utf8`)));
  assert.equal(offenders, []);
});

test.run();
