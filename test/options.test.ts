// Option groups (commands/options.ts) are declared once: every command that takes a group has all
// of its flags, and their values are checked the same way everywhere.
import {Cli} from 'clipanion';
import {PassThrough} from 'node:stream';
import {test} from 'uvu';
import * as assert from 'uvu/assert';
import type {CliContext} from '../commands/BaseCommand.ts';
import {buildCli, COMMANDS} from '../commands/cli.ts';
import {wantsEarlyReadAhead} from '../commands/earlyStart.ts';
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

test(`a command line that names a command parses, fails and helps as with every command registered`, async () => {
  const context = {...Cli.defaultContext, stdin: new PassThrough(), stdout: new PassThrough(), stderr: new PassThrough()};
  /** What clipanion makes of `argv`: the command and its options (help: the text it prints), or the error message. */
  const parse = async (cli: Cli<CliContext>, argv: Array<string>) => {
    let command;
    try {
      command = cli.process(argv, context) as unknown as Record<string, unknown>;
    } catch (err) {
      return {error: cli.error(err)};
    }
    if (command.constructor.name === `HelpCommand`) {
      const stdout = new PassThrough();
      let text = ``;
      stdout.on(`data`, chunk => (text += chunk));
      await cli.run(argv, {...context, stdout});
      return {command: `HelpCommand`, path: command.path, text};
    }
    const options = Object.entries(command).filter(([key]) => key !== `context` && key !== `cli`);
    return {command: command.constructor.name, path: command.path, options: JSON.stringify(options)};
  };
  const lines = [
    [`scan`], [`scan`, `--bogus`], [`scan`, `extra`], [`scan`, `--recheck-delay`], [`scan`, `--recheck-delay`, `soon`], [`scan`, `--help`],
    [`scan`, `-h`], [`scan`, `-vv`, `--maps`, `a,b`, `--map-id`, `3`, `--capture`, `x`, `--format`, `json`], [`scan`, `scan`], [`scan`, `--`, `--help`],
    [`dump-maps`, `--backend`, `foo`], [`dump-maps`, `--map-id`, `12x`], [`snapshot-pids`, `--socket-fds`, `extra`], [`validate`, `--snapshot`],
    [`recheck`, `--delay=-1`], [`report`, `--samples`, `-1`], [`diff`], [`diff`, `a`, `b`, `c`], [`capture-script`, `--bogus`], [`snapshot-conns`, `--from`],
    // Lines that name no command get every command: help, version, unknown names and their suggestions.
    [], [`--help`], [`-h`], [`--version`], [`-v`], [`scna`], [`Scan`], [`dump`], [`help`], [`--bogus`], [`-v`, `scan`],
  ];
  for (const argv of lines) {
    const all = await parse(buildCli(), argv);
    assert.equal(await parse(buildCli({}, argv), argv), all, argv.join(` `));
    assert.ok(`error` in all || all.path !== undefined, argv.join(` `));
  }
  // Help of a named command: the same text.
  for (const command of COMMANDS) {
    const name = command.paths![0][0];
    assert.is(buildCli({}, [name]).usage(command, {detailed: true}), buildCli().usage(command, {detailed: true}), name);
  }
});

test(`scan's worker is started before the program loads only for a live scan as root`, () => {
  assert.ok(wantsEarlyReadAhead([`scan`], 0));
  assert.ok(wantsEarlyReadAhead([`scan`, `--map-id`, `7`, `--capture`, `from.ndjson`, `--proc-root`, `/host/proc`], 0));
  for (const [args, uid] of [
    [[`scan`], 1000], [[`scan`], undefined], [[`scan`, `--from`, `dir`], 0], [[`scan`, `--from=dir`], 0], [[`scan`, `--help`], 0], [[`scan`, `-h`], 0],
    [[`dump-maps`], 0], [[`report`], 0], [[`recheck`], 0], [[], 0], [[`--help`], 0],
  ] as Array<[Array<string>, number | undefined]>)
    assert.not.ok(wantsEarlyReadAhead(args, uid), `${args.join(` `)} as ${uid}`);
});

test.run();
