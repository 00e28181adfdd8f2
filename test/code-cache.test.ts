// The bundle's V8 code cache (scripts/build.mjs): the built dist/usm-leak-detector.cjs compiles its
// code with the cache when V8 accepts it and without when V8 rejects it (other V8 flags; a cache
// of another V8 version), and gives the same output either way. A preloaded probe watches the
// loader's vm.Script: the tool itself has no switch for this.
import {spawnSync} from 'node:child_process';
import {cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {fileURLToPath} from 'node:url';
import {test} from 'uvu';
import * as assert from 'uvu/assert';
import {TOOL_VERSION} from '../src/version.ts';
import {PROBE_LINE, writeCodeCacheProbe} from './helpers/codeCacheProbe.ts';
import {beforeAll} from './helpers/setUp.ts';

const BUNDLE = fileURLToPath(new URL(`../dist/usm-leak-detector.cjs`, import.meta.url));
const repo = fileURLToPath(new URL(`..`, import.meta.url));
const scratch = mkdtempSync(join(tmpdir(), `usmld-code-cache-`));
process.once(`exit`, () => rmSync(scratch, {recursive: true, force: true}));

const PROBE = writeCodeCacheProbe(scratch);

/** A copy of the bundle whose cache V8 refuses: its first bytes (V8's magic number and version hash) changed. */
const FOREIGN = join(scratch, `foreign-cache.cjs`);
const capture = join(scratch, `capture`);

beforeAll(test, () => {
  assert.ok(existsSync(BUNDLE), `dist/usm-leak-detector.cjs is not built (make build)`);
  const text = readFileSync(BUNDLE, `latin1`);
  const loader = text.split(`\n`)[2];
  const cacheAt = Number(/cachedData=Buffer\.from\(data\.toString\("latin1", *(\d+)-/.exec(loader)?.[1]);
  assert.ok(cacheAt > 0, `the loader names where its cache is`);
  writeFileSync(FOREIGN, text.slice(0, cacheAt) + `AAAAAAAAAAAA` + text.slice(cacheAt + 12), `latin1`);
  cpSync(join(repo, `samples/proc/capture`), capture, {recursive: true, verbatimSymlinks: true});
  cpSync(join(repo, `samples/dump/bpftool/maps`), join(capture, `maps`), {recursive: true});
});

function run(bundle: string, args: Array<string>, nodeFlags: Array<string> = [], env: NodeJS.ProcessEnv = {}) {
  const {FORCE_COLOR: _forceColor, NODE_OPTIONS: _nodeOptions, ...inherited} = process.env;
  const result = spawnSync(process.execPath, [...nodeFlags, `--require`, PROBE, bundle, ...args],
    {cwd: scratch, encoding: `utf8`, timeout: 60_000, maxBuffer: 1 << 26, env: {...inherited, ...env}});
  const probe = PROBE_LINE.exec(result.stderr)?.[1];
  const stderr = result.stderr.replace(PROBE_LINE, ``).replace(/\(node:\d+\)/g, `(node)`);
  return {code: result.status, stdout: result.stdout, stderr, probe};
}

const stable = (text: string) => text.replace(/[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z/g, `TIME`).replace(/"(timeMs|monotonicNs)":[0-9]+/g, `"$1":0`);

const COMMANDS = [
  [`--version`],
  [`--help`],
  [`scan`, `--from`, `capture`, `--recheck-delay`, `0`],
  [`dump-maps`, `--from`, `capture`],
  [`snapshot-conns`, `--from`, `capture`],
  [`capture-script`],
];

test(`the bundle's code cache is taken by this node, and refused under other V8 flags or from another V8: same output every way`, () => {
  for (const args of COMMANDS) {
    const cached = run(BUNDLE, args);
    assert.is(cached.probe, `accepted`, `${args.join(` `)}: ${cached.stderr}`);
    assert.ok(cached.code === 0 || cached.code === 1, `${args.join(` `)}: ${cached.code} ${cached.stderr}`);
    assert.ok(cached.stdout.length > 0);
    // A V8 flag changes the hash of V8's flags that the cache carries.
    const otherFlags = run(BUNDLE, args, [`--max-old-space-size=1000`]);
    const foreign = run(FOREIGN, args);
    assert.is(otherFlags.probe, `rejected`, args.join(` `));
    assert.is(foreign.probe, `rejected`, args.join(` `));
    for (const other of [otherFlags, foreign]) {
      assert.is(other.code, cached.code, args.join(` `));
      assert.is(stable(other.stdout), stable(cached.stdout), args.join(` `));
      assert.is(other.stderr, cached.stderr, args.join(` `));
    }
  }
  assert.is(run(BUNDLE, [`--version`]).stdout.trim(), TOOL_VERSION);
});

test(`stack traces give lines and columns of the bundle file, with or without the cache`, () => {
  const lines = readFileSync(BUNDLE, `latin1`).split(`\n`);
  const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\/]/g, `\\$&`);
  // With the cache, V8 (11.3) names the script as the build's training run did: the file's name only.
  for (const [flags, name] of [[[], `usm-leak-detector.cjs`], [[`--max-old-space-size=1000`], BUNDLE]] as const) {
    const crashed = run(BUNDLE, [`--version`], [...flags], {PROBE_THROW_ON_WRITE: `1`});
    assert.match(crashed.stderr, /internal error: Error: probe/);
    // The frame that called stdout.write: the file holds the call at the place the trace names.
    const frame = new RegExp(`\\(${escape(name)}:(\\d+):(\\d+)\\)`).exec(crashed.stderr);
    assert.ok(frame !== null, crashed.stderr);
    const [line, column] = [Number(frame[1]), Number(frame[2])];
    assert.ok(line > 3, `a line of the code, not of the loader`);
    assert.is(lines[line - 1].slice(column - 1, column - 1 + `write(`.length), `write(`, `${line}:${column}`);
  }
});

test.run();
