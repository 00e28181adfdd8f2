// Builds the command line and runs it with errors on stderr: clipanion 3 prints parse errors to
// stdout (arcanis/clipanion#176), which would feed usage text into the next stage of a pipe.
import {Builtins, Cli} from 'clipanion';
import type {CliContext} from './BaseCommand.ts';
import CaptureScriptCommand from './capture-script.ts';
import DiffCommand from './diff.ts';
import DumpMapsCommand from './dump-maps.ts';
import RecheckCommand from './recheck.ts';
import ReportCommand from './report.ts';
import ScanCommand from './scan.ts';
import SnapshotConnsCommand from './snapshot-conns.ts';
import SnapshotPidsCommand from './snapshot-pids.ts';
import ValidateCommand from './validate.ts';
import {ExitCode} from '../src/exitCodes.ts';
import {TOOL_VERSION} from '../src/version.ts';

export const COMMANDS = [
  DumpMapsCommand, SnapshotConnsCommand, SnapshotPidsCommand, ValidateCommand, RecheckCommand, ReportCommand, ScanCommand,
  DiffCommand, CaptureScriptCommand,
];

/**
 * The command line parser. With `argv`, a command line that starts with a command's name gets
 * that command alone (and the built-in help and version): clipanion builds its parser from
 * every registered command's options (about 10 ms and 9 MiB of a short run of the bundle), and
 * such a line can only be that command's. Any other line (no command, an option first, an
 * unknown name) gets them all, for the help and the suggestions.
 */
export function buildCli(options: {enableColors?: boolean} = {}, argv?: ReadonlyArray<string>): Cli<CliContext> {
  const cli = new Cli<CliContext>({
    binaryLabel: `usm-leak-detector`,
    binaryName: `usm-leak-detector`,
    binaryVersion: TOOL_VERSION,
    enableColors: options.enableColors ?? false,
  });
  cli.register(Builtins.HelpCommand);
  cli.register(Builtins.VersionCommand);
  const named = argv === undefined ? [] : COMMANDS.filter(command => command.paths?.some(path => path[0] === argv[0]));
  for (const command of named.length > 0 ? named : COMMANDS)
    cli.register(command);
  return cli;
}

/** Parses then runs `argv`; usage errors go to stderr with exit 2. */
export async function runCli(argv: Array<string>, context: Partial<CliContext> & Pick<CliContext, `stdin` | `stdout` | `stderr`>, options: {enableColors?: boolean} = {}): Promise<number> {
  const cli = buildCli(options, argv);
  const fullContext = {...Cli.defaultContext, ...context} as CliContext;
  let command;
  try {
    command = cli.process(argv, fullContext);
  } catch (err) {
    fullContext.stderr.write(cli.error(err));
    if (argv.length === 0)
      fullContext.stderr.write(`\n${cli.usage(null)}`);
    return ExitCode.Usage;
  }
  try {
    return await cli.run(command, fullContext);
  } catch (err) {
    fullContext.stderr.write(`usm-leak-detector: internal error: ${(err as Error)?.stack ?? String(err)}\n`);
    return ExitCode.Internal;
  }
}
