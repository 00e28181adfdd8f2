// Option groups (commands/options.ts) are declared once: every command that takes a group has all
// of its flags, and their values are checked the same way everywhere.
import {test} from 'uvu';
import * as assert from 'uvu/assert';
import {runCommand} from './helpers/cli.ts';

const BACKEND_FLAGS = [`--backend`, `--bpftool`, `--system-probe`, `--timeout`, `--download`, `--bpftool-url`, `--bpftool-sha256`];

async function flagsOf(command: string): Promise<Set<string>> {
  const help = await runCommand([command, `--help`]);
  return new Set(help.stdout.match(/--[a-z0-9-]+/g) ?? []);
}

test(`dump-maps, scan and recheck take the whole backend group (recheck too: --bpftool-sha256, --bpftool-url)`, async () => {
  for (const command of [`dump-maps`, `scan`, `recheck`]) {
    const flags = await flagsOf(command);
    for (const flag of BACKEND_FLAGS)
      assert.ok(flags.has(flag), `${command} ${flag}`);
  }
  for (const command of [`snapshot-conns`, `snapshot-pids`, `scan`]) {
    const flags = await flagsOf(command);
    assert.ok(flags.has(`--proc-root`) && flags.has(`--from`), `${command} --proc-root/--from`);
  }
  for (const command of [`report`, `scan`]) {
    const flags = await flagsOf(command);
    assert.ok([`--format`, `--samples`, `--group-by`].every(flag => flags.has(flag)), `${command} report format group`);
  }
});

test(`numeric options are checked alike in every command: usage error (2) naming the option`, async () => {
  for (const command of [`dump-maps`, `scan`, `recheck`]) {
    const run = await runCommand([command, `--timeout`, `0`]);
    assert.is(run.code, 2, `${command}: ${run.stderr}`);
    assert.match(run.stderr, /Invalid value for --timeout: expected a positive number of seconds \(got "0"\)/);
  }
  for (const command of [`report`, `scan`]) {
    const run = await runCommand([command, `--samples`, `-1`]);
    assert.is(run.code, 2, `${command}: ${run.stderr}`);
    assert.match(run.stderr, /--samples/);
  }
  const mapId = await runCommand([`dump-maps`, `--map-id`, `12x`]);
  assert.is(mapId.code, 2);
  assert.match(mapId.stderr, /Invalid value for --map-id\[0\]: expected a whole number from 0 to 4294967295 \(got "12x"\)/);
  const delay = await runCommand([`recheck`, `--delay=-1`]);
  assert.is(delay.code, 2);
  assert.match(delay.stderr, /--delay: expected a number of seconds, 0 or more/);
  const recheckDelay = await runCommand([`scan`, `--recheck-delay`, `soon`]);
  assert.is(recheckDelay.code, 2);
  assert.match(recheckDelay.stderr, /--recheck-delay: expected a number of seconds \(0, a negative number or NaN disable the recheck\)/);
});

test(`--proc-root and --from together are refused by every command that takes both`, async () => {
  for (const command of [`snapshot-conns`, `snapshot-pids`, `scan`]) {
    const run = await runCommand([command, `--proc-root`, `/proc`, `--from`, `/nonexistent-capture`]);
    assert.is(run.code, 2, `${command}: ${run.stderr}`);
    assert.match(run.stderr, /--proc-root and --from cannot be used together/);
  }
});

test.run();
