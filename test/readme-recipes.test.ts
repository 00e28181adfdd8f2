// Every recipe of the README's "jq recipes" section, run as written (bash, pipefail) on the
// recorded sample as capture.ndjson, with usm-leak-detector on PATH: no errors, and the output
// the sample's truth says. A recipe that names a map, namespace or field the sample lacks fails.
import {spawnSync} from 'node:child_process';
import {copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {test} from 'uvu';
import * as assert from 'uvu/assert';
import {runCommand} from './helpers/cli.ts';
import {requirePrivileges} from './helpers/privileges.ts';

const repo = new URL(`..`, import.meta.url).pathname;
const readme = readFileSync(join(repo, `README.md`), `utf8`);
const sample = readFileSync(join(repo, `samples/capture.ndjson`), `utf8`).split(`\n`).filter(Boolean).map(line => JSON.parse(line));
const leaked = sample.filter(record => record.type === `verdict` && record.status === `leaked`);

/** The recipes: each `# comment` line and the command lines after it, from the section's code block. */
function recipes(): Array<{title: string, command: string}> {
  const section = readme.slice(readme.indexOf(`## jq recipes`));
  const block = /```sh\n([^]*?)```/.exec(section)![1]!;
  const out: Array<{title: string, command: string}> = [];
  for (const chunk of block.split(/\n\s*\n/)) {
    const lines = chunk.split(`\n`).filter(Boolean);
    const title = lines.filter(line => line.startsWith(`#`)).map(line => line.slice(1).trim()).join(` `);
    const command = lines.filter(line => !line.startsWith(`#`)).join(`\n`);
    if (command)
      out.push({title, command});
  }
  return out;
}

/** What each recipe must print on the sample, by a word of its title. */
const EXPECT: Array<[RegExp, (stdout: string) => void]> = [
  [/^Leaked entries only/, out => assert.is(out.trim().split(`\n`).length, leaked.length)],
  [/^Leaks of one map/, out => assert.is(out.trim().split(`\n`).length, leaked.filter(v => v.map === `connection_protocol`).length)],
  [/^Leaks per map and reason/, out => assert.ok(JSON.parse(out).some((row: any) => row.map === `connection_protocol` && row.reason === `no_connection` && row.n === 27))],
  [/^Top remote ports/, out => assert.match(out, /^\s+27 5432\n/)],
  [/^Dead processes/, out => assert.is(out, `4595\n`)],
  [/^Fill of every map/, out => assert.match(out, /^connection_protocol 28\/30 93%\n/)],
  [/^A report on the entries of one namespace/, out => {
    const inNamespace = leaked.filter(v => v.key?.netns === 4026531833).length;
    assert.ok(inNamespace > 0, `the sample has leaks in the recipe's namespace`);
    assert.match(out, new RegExp(`^LEAKING: ${inNamespace} leaked entries`));
  }],
  [/^What the recheck settled/, out => assert.is(out.trim().split(`\n`).length, sample.filter(r => r.type === `verdict` && r.checks === 2 && r.status !== `leaked`).length)],
  [/^Gate a CI job/, out => assert.is(out, `leaks found\n`)],
];

const jq = spawnSync(`sh`, [`-c`, `command -v jq`]).status === 0;
if (requirePrivileges(`README jq recipes`, jq ? null : `jq is not installed (scripts/system-deps.sh installs it)`)) {
  const box = mkdtempSync(join(tmpdir(), `usmld-recipes-`));
  process.once(`exit`, () => rmSync(box, {recursive: true, force: true}));
  copyFileSync(join(repo, `samples/capture.ndjson`), join(box, `capture.ndjson`));
  mkdirSync(join(box, `bin`));
  // A wrapper, not a symlink: bin/usm-leak-detector finds the repository from its own path.
  writeFileSync(join(box, `bin/usm-leak-detector`), `#!/bin/sh\nexec '${join(repo, `bin/usm-leak-detector`)}' "$@"\n`, {mode: 0o755});

  // As a person's shell has it: the test runner's colour variables make node warn on stderr.
  const {FORCE_COLOR: _force, NO_COLOR: _no, ...env} = process.env;
  const recipeEnv = {...env, PATH: `${join(box, `bin`)}:${process.env.PATH}`};

  test(`the README has the jq recipes this test knows`, () => {
    const titles = recipes().map(recipe => recipe.title);
    assert.is(titles.length, EXPECT.length, titles.join(` | `));
    for (const title of titles)
      assert.ok(EXPECT.some(([pattern]) => pattern.test(title)), `no expectation for "${title}"`);
  });

  for (const recipe of recipes()) {
    test(`README recipe runs on the sample: ${recipe.title}`, () => {
      const run = spawnSync(`bash`, [`-o`, `pipefail`, `-c`, recipe.command], {
        cwd: box, encoding: `utf8`, timeout: 60_000,
        env: recipeEnv,
      });
      // 1 is `report` saying "leaks found" (the sample has leaks); anything else is a broken recipe.
      assert.ok(run.status === 0 || run.status === 1, `exit ${run.status}: ${run.stderr}`);
      assert.is(run.stderr, ``, `nothing on stderr`);
      assert.ok(run.stdout.length > 0, `prints something`);
      EXPECT.find(([pattern]) => pattern.test(recipe.title))?.[1](run.stdout);
    });
  }
}

test(`the README's excerpt of the text report is what report prints for the sample`, async () => {
  const start = readme.indexOf(`What it looks like, on the recorded sample`);
  const excerpt = /```\n([^]*?)```/.exec(readme.slice(start))![1]!;
  const [head, tail] = excerpt.split(`    [...]\n`);
  const run = await runCommand([`report`, join(repo, `samples/capture.ndjson`)]);
  assert.ok(run.stdout.startsWith(head!), `the README's excerpt starts as the report does`);
  assert.ok(run.stdout.includes(tail!), `the README's excerpt ends with lines of the report`);
});

test.run();
