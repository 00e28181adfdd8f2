// A host with no bpftool at all (hidden in a private mount namespace) and no download: the kernel
// backend alone reads the maps. scan judges real maps in every namespace right (one of them has
// no process in it: entered with setns()), and dump-maps there prints the bpftool backend's
// records (read outside, where bpftool exists), backend name aside.
import {mkdtempSync, readFileSync, rmSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {fileURLToPath} from 'node:url';
import {test} from 'uvu';
import * as assert from 'uvu/assert';
import {ExitCode} from '../src/exitCodes.ts';
import {parseLines, runCommand} from './helpers/cli.ts';
import {runWithoutBpftool} from './helpers/hideBpftool.ts';
import {makeProcessLessNetns, type ProcessLessNetns} from './helpers/netns.ts';
import {bpfUnavailable, netnsUnavailable, requirePrivileges} from './helpers/privileges.ts';
import {addProcessLessEntry, assertArrangedVerdicts, buildUsmWorld, type UsmWorld} from './helpers/usmWorld.ts';
import {beforeAll} from './helpers/setUp.ts';

const canRun = requirePrivileges(`scan with no bpftool`, bpfUnavailable() ?? netnsUnavailable());
const bin = fileURLToPath(new URL(`../bin/usm-leak-detector`, import.meta.url));
const scratch = mkdtempSync(join(tmpdir(), `usmld-nobpftool-`));
process.once(`exit`, () => rmSync(scratch, {recursive: true, force: true}));

if (canRun) {
  let world: UsmWorld | null = null;
  let lonely: ProcessLessNetns | null = null;

  beforeAll(test, async () => {
    world = await buildUsmWorld(`nobpftool`, {namespace: true});
    lonely = await makeProcessLessNetns(`nobpftool-lonely`);
    addProcessLessEntry(world, lonely, `connection in a namespace no process is in`);
  });

  test.after(async () => {
    lonely?.release();
    await world?.cleanup();
  });

  test(`scan judges every arranged entry right with no bpftool on the host and --no-download`, () => {
    const capture = join(scratch, `scan.ndjson`);
    const run = runWithoutBpftool(bin, [`scan`, ...world!.mapIdArgs, `--no-download`, `--recheck-delay`, `0`, `--capture`, capture], {env: {PATH: process.env.PATH, HOME: scratch}});
    assert.is(run.status, ExitCode.LeaksFound, run.stderr);
    assert.not.match(run.stderr, /falling back/);
    const records = parseLines(readFileSync(capture, `utf8`));
    const maps = records.filter(record => record.type === `map`);
    assert.ok(maps.length > 0 && maps.every(record => record.backend === `kernel`), `read by the kernel backend`);
    const lonelyNs = records.find(record => record.type === `netns` && record.netnsInode === lonely!.netns.inode);
    assert.is(lonelyNs?.readVia, `setns:${lonely!.netns.path}`);
    assertArrangedVerdicts(world!, records);
  });

  test(`dump-maps with no bpftool equals the bpftool backend's records`, async () => {
    const hidden = runWithoutBpftool(bin, [`dump-maps`, ...world!.mapIdArgs, `--no-download`], {env: {PATH: process.env.PATH, HOME: scratch}});
    assert.is(hidden.status, 0, hidden.stderr);
    const bpftool = await runCommand([`dump-maps`, `--backend`, `bpftool`, ...world!.mapIdArgs]);
    assert.is(bpftool.code, 0, bpftool.stderr);
    const comparable = (text: string) => parseLines(text).filter(record => record.type !== `header`).map(record => ({...record, backend: undefined}) as Record<string, any>);
    const records = comparable(hidden.stdout);
    assert.ok(records.filter(record => record.type === `entry`).length >= 20);
    assert.equal(records, comparable(bpftool.stdout));
    // And bpftool really was not there: asking for it fails.
    const asked = runWithoutBpftool(bin, [`dump-maps`, `--backend`, `bpftool`, ...world!.mapIdArgs, `--no-download`], {env: {PATH: process.env.PATH, HOME: scratch}});
    assert.is(asked.status, ExitCode.Environment, asked.stderr);
    assert.match(asked.stderr, /no usable bpftool found/);
  });
}

test.run();
