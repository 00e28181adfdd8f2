import {Command, Option} from 'clipanion';
import {open, stat} from 'node:fs/promises';
import type {ToolContext} from '../src/context.ts';
import {EnvironmentFault, UsageFault} from '../src/errors.ts';
import {judgedExit} from '../src/exitCodes.ts';
import {makeHeader} from '../src/header.ts';
import {writeText, render, wantColour} from '../src/report/index.ts';
import {scan} from '../src/scan/index.ts';
import {BaseCommand} from './BaseCommand.ts';
import {loaderCompilerTuning} from './earlyStart.ts';
import {WithBackend, WithMapSelection, WithReportFormat, WithSystemSource, isSeconds} from './options.ts';

export default class ScanCommand extends WithReportFormat(WithSystemSource(WithMapSelection(WithBackend(BaseCommand)))) {
  static override paths = [[`scan`]];
  static override usage = Command.Usage({
    description: `dump, snapshot, validate, recheck and report in one go (the original tool's job)`,
    details: `
      Runs dump-maps, snapshot-conns, snapshot-pids, validate, recheck and report in one process, with the same code as the subcommands, and prints the report. Takes the original tool's options (\`--maps\`, \`--conn-tuple-only\`, \`--pid-only\`, \`--system-probe\`, \`--recheck-delay\`, \`--proc-root\`, \`-v\`), the backend options of dump-maps and the format options of report.

      The system is snapshotted first and the maps dumped after, each entry judged as it streams, so memory stays flat however big the maps are. A connection opened during the dump looks leaked at the first look; the recheck (after --recheck-delay) takes fresh snapshots and re-reads the maps, and clears it as a race.

      \`--capture FILE\` also writes every record seen (maps, entries, namespaces, sockets, processes, snapshots, verdicts, recheck outcomes, summaries) to one NDJSON file: \`report < FILE\` prints the same report on any machine, and \`validate < FILE | report\` judges the entries again from the capture's snapshots.

      Needs root for live maps and /proc (exit 3 otherwise); \`--from DIR\` scans a capture directory instead, without root. Exits 1 when leaks were found, 0 when entries were judged and none is leaked, 5 when none is leaked but some could not be judged (unknown), 3 when there is nothing to scan or nothing could be judged.
    `,
    examples: [
      [`Scan this host`, `sudo $0 scan`],
      [`Scan and keep everything for a support ticket`, `sudo $0 scan --capture usm-capture.ndjson`],
      [`Only two maps, no recheck`, `sudo $0 scan --maps pid_fd_by_tuple,http_in_flight --recheck-delay 0`],
      [`From inside a container with the host's /proc`, `sudo $0 scan --proc-root /host/proc`],
      [`A capture directory taken elsewhere`, `$0 scan --from capture-dir/`],
    ],
  });

  recheckDelay = Option.String(`--recheck-delay`, `2`, {
    description: `Seconds before candidate leaks are checked again (default 2; 0, negative or NaN disable it)`,
    validator: isSeconds({min: -Infinity, nan: true, expected: `a number of seconds (0, a negative number or NaN disable the recheck)`}),
  });
  capture = Option.String(`--capture`, {description: `Also write every record seen to this NDJSON file (created mode 0600; an existing path is refused)`});
  force = Option.Boolean(`--force`, false, {description: `Replace an existing --capture file`});

  protected async run(tool: ToolContext): Promise<number> {
    const dump = {...this.backendOptions(), ...this.selectionOptions()};
    const ctx = this.systemContext(tool);
    if (this.from !== undefined && this.backendFlagsGiven().length > 0)
      throw new UsageFault(`--from reads a capture: ${this.backendFlagsGiven().join(`, `)} do${this.backendFlagsGiven().length === 1 ? `es` : ``} not apply`);
    const {format, samples, groupBy} = this.reportFormat();
    if (this.from !== undefined)
      await checkCaptureDir(this.from);
    const result = await scan(ctx, {
      dump,
      from: this.from,
      // The original disables the recheck for values <= 0 and NaN.
      recheckDelaySeconds: Number.isNaN(this.recheckDelay) ? 0 : this.recheckDelay,
      capture: this.capture,
      force: this.force,
      samples,
      groupBy,
      tuneCompiler: loaderCompilerTuning(),
    });
    const text = render(result.model, {
      format,
      samples,
      groupBy,
      colour: wantColour(this.stdoutIsTTY(), tool.env),
      verbose: this.verbose > 0,
      header: makeHeader(`report`, ctx, result.origin),
    });
    const exit = judgedExit(result.model);
    if (!exit.printReport)
      throw new EnvironmentFault(exit.message!);
    await writeText(this.context.stdout, text);
    if (this.capture !== undefined)
      tool.log.info(`capture written to ${this.capture} (${result.records} records)`);
    if (exit.message !== null)
      this.context.stderr.write(`usm-leak-detector scan: ${exit.message}\n`);
    return exit.code;
  }
}

/** `--from` takes a capture directory; an NDJSON file (a `scan --capture`, a stage's output) is report's input. */
async function checkCaptureDir(from: string): Promise<void> {
  const ndjsonHint = `to report on an NDJSON capture (scan --capture, or a stage's output) use \`usm-leak-detector report < FILE\` (or re-judge it: \`usm-leak-detector validate < FILE | usm-leak-detector report\`)`;
  if (from === `-`)
    throw new UsageFault(`--from -: scan --from takes a capture directory (from capture-script); ${ndjsonHint}`);
  let info;
  try {
    info = await stat(from);
  } catch (err) {
    throw new EnvironmentFault(`--from ${from}: ${(err as NodeJS.ErrnoException).code === `ENOENT` ? `no such file or directory` : (err as Error).message}`);
  }
  if (info.isDirectory())
    return;
  let head = ``;
  try {
    const handle = await open(from, `r`);
    try {
      const buffer = Buffer.alloc(256);
      head = buffer.toString(`utf8`, 0, (await handle.read(buffer, 0, buffer.length, 0)).bytesRead);
    } finally {
      await handle.close();
    }
  } catch {
    // unreadable: the message below still says what --from wants
  }
  if (/^\s*\{/.test(head))
    throw new UsageFault(`--from ${from} is an NDJSON file, not a capture directory: ${ndjsonHint}`);
  throw new UsageFault(`--from ${from}: not a capture directory (scan --from takes the directory capture-script writes; saved bpftool outputs go to \`usm-leak-detector dump-maps --from FILE\`)`);
}
