import {Command, Option} from 'clipanion';
import * as t from 'typanion';
import type {ToolContext} from '../src/context.ts';
import {UsageFault} from '../src/errors.ts';
import {ExitCode} from '../src/exitCodes.ts';
import {makeHeader} from '../src/header.ts';
import {REPORT_FORMATS, parseGroupBy, writeText, report, wantColour, type ReportFormat} from '../src/report/index.ts';
import {BaseCommand} from './BaseCommand.ts';

export default class ReportCommand extends BaseCommand {
  static override paths = [[`report`]];
  static override usage = Command.Usage({
    description: `turn verdicts into the report a person reads (text, json, ndjson, markdown)`,
    details: `
      Reads verdict, map, mapstats, summary, netns and process records (in any order) and prints, per map, valid/total entries, leaked samples with their reason, race condition false positives filtered, the map's fill against max_entries (with a warning from 90%), then leaks grouped by cause.

      \`--group-by\` picks the groupings (repeat it or separate with commas): ${`reason, dport, sport, daddr, saddr, netns, pid, comm, map, proto, family`}, or \`all\`.

      Colour is used only when stdout is a terminal and NO_COLOR is not set. Exits 1 when leaks were found, 0 when none were. ${BaseCommand.stdinHint}
    `,
    examples: [
      [`Report on a saved capture`, `$0 report < capture.ndjson`],
      [`Re-judge a capture, then report`, `$0 validate < capture.ndjson | $0 report`],
      [`Markdown for a support ticket, leaks by remote port and process`, `$0 report --format markdown --group-by dport,pid < capture.ndjson`],
    ],
  });

  format = Option.String(`--format`, `text`, {
    description: `text (default), json (one document), ndjson (records), markdown`,
    validator: t.isEnum(REPORT_FORMATS),
  });
  samples = Option.String(`--samples`, `10`, {
    description: `Leaked entries shown per map (default 10); the "... and K more" line counts the rest`,
    validator: t.cascade(t.isNumber(), [t.isInteger(), t.isAtLeast(0)]),
  });
  groupBy = Option.Array(`--group-by`, [], {description: `Group leaks by these fields (default: reason,dport,daddr,saddr,netns,pid,map)`});
  files = Option.Rest({name: `file`});

  protected async run(tool: ToolContext): Promise<number> {
    const groupBy = parseGroupBy(this.groupBy);
    const input = this.input(tool, this.files);
    const result = await report(input, {
      format: this.format as ReportFormat,
      samples: Number(this.samples),
      groupBy,
      colour: wantColour(this.stdoutIsTTY(), tool.env),
      verbose: this.verbose > 0,
      header: makeHeader(`report`, tool),
    });
    if (result.model.summary.verdicts === 0 && result.model.summary.entries > 0)
      throw new UsageFault(`the input has ${result.model.summary.entries} map entries but no verdicts: judge them first (usm-leak-detector dump-maps | usm-leak-detector validate | usm-leak-detector report)`);
    if (result.model.summary.verdicts === 0 && result.model.summary.mapsChecked === 0)
      tool.log.warn(`no verdict or map records in the input: pipe map entries through \`validate\` first`);
    await writeText(this.context.stdout, result.text);
    return result.leaks > 0 ? ExitCode.LeaksFound : ExitCode.Ok;
  }
}
