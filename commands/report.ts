import {Command, Option} from 'clipanion';
import type {ToolContext} from '../src/context.ts';
import {EnvironmentFault, UsageFault} from '../src/errors.ts';
import {ExitCode, judgedExit} from '../src/exitCodes.ts';
import {makeHeader} from '../src/header.ts';
import {LeakFilter} from '../src/report/filter.ts';
import {writeText, report, wantColour} from '../src/report/index.ts';
import {listLeaks} from '../src/report/list.ts';
import type {ReportModel} from '../src/report/model.ts';
import {BaseCommand} from './BaseCommand.ts';
import {WithReportFormat} from './options.ts';

export default class ReportCommand extends WithReportFormat(BaseCommand) {
  static override paths = [[`report`]];
  static override usage = Command.Usage({
    description: `turn verdicts into the report a person reads (text, json, ndjson, markdown)`,
    details: `
      Reads verdict, map, mapstats, summary, netns and process records (in any order). The first line is the answer: LEAKING, CLEAN or INCONCLUSIVE, with counts, whether the leaks were confirmed at two looks, and the fullest map. Then one line per map, worst first (leaked entries, then fill), the totals, each leaking map's samples, leaks grouped by cause, and what to do next for each reason that occurs.

      \`--list\` prints only a header row and one aligned row per leaked entry (map, reason, proto, src, dst, netns, pid, comm, checks, age when known); with \`--format ndjson\`, one \`leak\` record per leaked entry. \`--map\`, \`--reason\`, \`--netns\` and \`--pid\` (repeatable, or comma-separated) keep only the entries that match, in the list and in the report.

      \`--group-by\` picks the groupings (repeat it or separate with commas): ${`reason, dport, sport, daddr, saddr, netns, pid, comm, map, proto, family`}, or \`all\`.

      Colour is used only when stdout is a terminal and NO_COLOR is not set. Exits 1 when leaks were found, 0 when entries were judged and none is leaked, 5 when none is leaked but some could not be judged (unknown), 3 when there is nothing to judge (empty input, no verdicts, every entry unknown). ${BaseCommand.stdinHint}
    `,
    examples: [
      [`Report on a saved capture`, `$0 report < capture.ndjson`],
      [`Re-judge a capture, then report`, `$0 validate < capture.ndjson | $0 report`],
      [`Markdown for a support ticket, leaks by remote port and process`, `$0 report --format markdown --group-by dport,pid < capture.ndjson`],
      [`One row per leak of one map`, `$0 report --list --map connection_protocol capture.ndjson`],
      [`Leaks of two processes, as records`, `$0 report --list --pid 4564 --pid 4595 --format ndjson capture.ndjson`],
    ],
  });

  list = Option.Boolean(`--list`, false, {description: `Only a header row and one row per leaked entry (text), or one leak record each (ndjson)`});
  maps = Option.Array(`--map`, [], {description: `Only this map (full or 15-character kernel name; repeatable)`});
  reasons = Option.Array(`--reason`, [], {description: `Only entries with this reason (repeatable)`});
  netns = Option.Array(`--netns`, [], {description: `Only entries of this network namespace inode (repeatable)`});
  pids = Option.Array(`--pid`, [], {description: `Only entries of this process id (repeatable)`});
  files = Option.Rest({name: `file`});

  protected async run(tool: ToolContext): Promise<number> {
    const {format, samples, groupBy} = this.reportFormat();
    const filter = new LeakFilter({maps: this.maps, reasons: this.reasons, netns: this.netns, pids: this.pids});
    const input = this.input(tool, this.files);
    if (this.list) {
      if (format !== `text` && format !== `ndjson`)
        throw new UsageFault(`--list prints text or ndjson, not ${format}`);
      const listed = await listLeaks(input, {
        format,
        filter,
        write: text => writeText(this.context.stdout, text),
        header: makeHeader(`report`, tool),
      });
      return this.exitOf(listed.model, filter);
    }
    const result = await report(input, {
      format,
      samples,
      groupBy,
      colour: wantColour(this.stdoutIsTTY(), tool.env),
      verbose: this.verbose > 0,
      header: makeHeader(`report`, tool),
      filter,
    });
    this.exitOf(result.model, filter, true);
    await writeText(this.context.stdout, result.text);
    return this.exitOf(result.model, filter);
  }

  /** The exit code policy of src/exitCodes.ts; `check` only throws when there is nothing to print. */
  private exitOf(model: ReportModel, filter: LeakFilter, check = false): number {
    if (filter.active && model.maps.length === 0 && model.summary.verdictsRead > 0)
      throw new EnvironmentFault(`nothing to report: no entry of the input matches ${filter.describe()}`);
    const exit = judgedExit(model);
    if (!exit.printReport)
      throw new EnvironmentFault(exit.message!);
    if (check)
      return exit.code;
    if (exit.message !== null)
      this.context.stderr.write(`usm-leak-detector report: ${exit.message}\n`);
    return exit.code;
  }
}
