import {Command} from 'clipanion';
import type {ToolContext} from '../src/context.ts';
import {BaseCommand} from './BaseCommand.ts';

export default class ReportCommand extends BaseCommand {
  static override paths = [[`report`]];
  static override usage = Command.Usage({
    description: `turn verdicts into the report a person reads (text, json, ndjson, markdown)`,
    details: `
      Reads verdict, map and summary records and prints per-map fill and leak counts, leaked samples, and leaks grouped by cause. Exits 1 when leaks were found.
    `,
    examples: [[`Report on a saved capture`, `$0 report < capture.ndjson`]],
  });

  protected async run(_tool: ToolContext): Promise<number> {
    this.notBuilt(6);
  }
}
