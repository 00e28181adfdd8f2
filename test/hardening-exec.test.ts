// Children that misbehave (issue 16 case 5): a bpftool wrapper that forks a grandchild which
// hangs with our stdout pipe open. Only the direct child used to be killed, and the stage waited
// for the pipe forever; now the group is killed and reading stops when --timeout fires.
import {existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {test} from 'uvu';
import * as assert from 'uvu/assert';
import {ProcessGroupRunner} from '../src/exec.ts';
import {parseLines, runCommand} from './helpers/cli.ts';

const scratch = mkdtempSync(join(tmpdir(), `usmld-exec-`));
const grandchildren = join(scratch, `grandchildren`);

/** Marks our grandchildren's environment, so cleanup never kills a process that reused a pid. */
const MARK = `USMLD_EXEC_TEST=${process.pid}-${Math.random().toString(36).slice(2)}`;

test.after(() => {
  for (const pid of livePids()) {
    try {
      if (readFileSync(`/proc/${pid}/environ`, `latin1`).split(`\0`).includes(MARK))
        process.kill(pid, `SIGKILL`);
    } catch {
      // gone meanwhile
    }
  }
  rmSync(scratch, {recursive: true, force: true});
});

function livePids(): Array<number> {
  if (!existsSync(grandchildren))
    return [];
  return readFileSync(grandchildren, `utf8`).split(`\n`).filter(Boolean).map(Number).filter(pid => existsSync(`/proc/${pid}`) && !readFileSync(`/proc/${pid}/stat`, `utf8`).includes(`) Z `));
}

/** The grandchildren still running once SIGKILL had time to land (a bounded wait, not a timing check). */
async function settledPids(): Promise<Array<number>> {
  for (let i = 0; i < 100 && livePids().length > 0; i++)
    await new Promise(resolve => setTimeout(resolve, 50));
  return livePids();
}

const LIST = JSON.stringify([{id: 424242, type: `hash`, name: `http_in_flight`, flags: 0, bytes_key: 48, bytes_value: 8, max_entries: 16}]);

/**
 * A fake bpftool: `version` works; `map show` (when HANG_LIST) and `map dump` fork a grandchild
 * that sleeps with stdout open, print part of an answer, and wait for it (the direct child hangs
 * too) or exit at once (EXIT_EARLY: only the grandchild holds the pipe).
 */
function fakeBpftool(name: string, mode: {hangList: boolean, exitEarly: boolean}): string {
  const path = join(scratch, name);
  writeFileSync(path, `#!/bin/sh
case "$*" in
  version) echo "bpftool v7.4.0"; exit 0 ;;
  *"map show"*)
    ${mode.hangList ? `env ${MARK} sleep 600 & echo $! >> ${grandchildren}` : ``}
    echo '${LIST}'
    ${mode.hangList ? (mode.exitEarly ? `exit 0` : `wait`) : `exit 0`} ;;
  *"map dump"*)
    env ${MARK} sleep 600 & echo $! >> ${grandchildren}
    printf '[{"key":["0x01"'
    ${mode.exitEarly ? `exit 0` : `wait`} ;;
esac
`, {mode: 0o755});
  return path;
}

/** Fails instead of hanging the suite. */
async function within<T>(what: string, run: Promise<T>, ms = 60_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([run, new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: still waiting after ${ms / 1000} s (the grandchild's pipe)`)), ms);
    })]);
  } finally {
    clearTimeout(timer);
  }
}

test(`the listing ends at --timeout when a grandchild holds the pipe, and the group is killed`, async () => {
  const bpftool = fakeBpftool(`bpftool-hang-list`, {hangList: true, exitEarly: false});
  const run = await within(`dump-maps`, runCommand([`dump-maps`, `--bpftool`, bpftool, `--timeout`, `2`, `--no-download`]));
  assert.is(run.code, 3, run.stderr);
  assert.match(run.stderr, /cannot list eBPF maps: .*timed out/);
  assert.equal(await settledPids(), [], `grandchildren left running`);
});

test(`a dump ends at --timeout when a grandchild holds the pipe; the map is incomplete, the group killed`, async () => {
  const bpftool = fakeBpftool(`bpftool-hang-dump`, {hangList: false, exitEarly: false});
  const run = await within(`dump-maps`, runCommand([`dump-maps`, `--bpftool`, bpftool, `--timeout`, `2`, `--no-download`]));
  const stats = parseLines(run.stdout).find(record => record.type === `mapstats`);
  assert.is(stats?.complete, false, run.stdout + run.stderr);
  assert.match(String(stats?.error), /timed out/);
  assert.equal(await settledPids(), []);
});

test(`a child that exits while its grandchild keeps the pipe: the rest of the group is killed, no wait for the timeout`, async () => {
  const bpftool = fakeBpftool(`bpftool-exit-early`, {hangList: true, exitEarly: true});
  const result = await within(`run`, new ProcessGroupRunner().run(bpftool, [`-j`, `map`, `show`], {timeoutMs: 600_000}));
  assert.is(result.exitCode, 0);
  assert.is(result.stdout.trim(), LIST);
  assert.equal(await settledPids(), []);
});

test(`a timeout beyond setTimeout's range is capped, not turned into 1 ms`, async () => {
  const result = await new ProcessGroupRunner().run(`sh`, [`-c`, `sleep 0.2; echo done`], {timeoutMs: 3_000_000_000});
  assert.is(result.timedOut, false);
  assert.is(result.stdout, `done\n`);
});

test.run();
