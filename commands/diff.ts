import {Command, Option} from 'clipanion';
import * as t from 'typanion';
import type {ToolContext} from '../src/context.ts';
import {diffCaptures} from '../src/diff/index.ts';
import {DIFF_FORMATS, diffLeaks, renderDiff, type DiffFormat} from '../src/diff/render.ts';
import {ExitCode} from '../src/exitCodes.ts';
import {makeHeader} from '../src/header.ts';
import {wantColour, writeText} from '../src/report/index.ts';
import {ANSI_STYLE, NO_STYLE} from '../src/report/style.ts';
import {BaseCommand} from './BaseCommand.ts';

export default class DiffCommand extends BaseCommand {
  static override paths = [[`diff`]];
  static override usage = Command.Usage({
    description: `compare two captures of one host: new, gone and persisting leaks per map, and how fast the maps fill`,
    details: `
      EARLIER and LATER are captures of the same host taken minutes or days apart: NDJSON files (\`scan --capture\`, or any stream with verdicts; entries with their snapshots are judged offline) or capture directories (from capture-script, judged like \`scan --from DIR\`). Each is judged from its own contents, never against this host.

      Maps are matched by name (ids change when the agent restarts). Per map: leaked entries before and after, \`new\` (leaked now, not before), \`gone\` (leaked before, absent or alive now), \`persisting\` (leaked in both, by key: the permanent leaks), fill before and after, leaks per hour and hours until full at that rate. The text output is a table, worst growth first, then the keys of the persisting leaks.

      Captures of different hosts are refused (exit 2) unless --force. A LATER older than EARLIER is compared the other way round, with a warning. Exits 1 when the later capture has persisting or new leaks, 0 otherwise.
    `,
    examples: [
      [`Two scans an hour apart`, `$0 diff monday.ndjson monday-later.ndjson`],
      [`Two capture directories, as records`, `$0 diff --format ndjson usmld-capture-a/ usmld-capture-b/`],
    ],
  });

  format = Option.String(`--format`, `text`, {
    description: `text (default), json (one document), ndjson (a header and one mapdiff record per map), markdown`,
    validator: t.isEnum(DIFF_FORMATS),
  });
  samples = Option.String(`--samples`, `10`, {
    description: `Persisting leaks shown per map (default 10)`,
    validator: t.cascade(t.isNumber(), [t.isInteger(), t.isAtLeast(0)]),
  });
  force = Option.Boolean(`--force`, false, {description: `Compare captures of two different hosts anyway`});
  earlier = Option.String({name: `EARLIER`});
  later = Option.String({name: `LATER`});

  protected async run(tool: ToolContext): Promise<number> {
    const result = await diffCaptures(tool, this.earlier, this.later, {samples: Number(this.samples), force: this.force});
    const style = wantColour(this.stdoutIsTTY(), tool.env) ? ANSI_STYLE : NO_STYLE;
    await writeText(this.context.stdout, renderDiff(result, this.format as DiffFormat, style, makeHeader(`diff`, tool)));
    return diffLeaks(result) ? ExitCode.LeaksFound : ExitCode.Ok;
  }
}
