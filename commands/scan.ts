import {Command} from 'clipanion';
import type {ToolContext} from '../src/context.ts';
import {BaseCommand} from './BaseCommand.ts';

export default class ScanCommand extends BaseCommand {
  static override paths = [[`scan`]];
  static override usage = Command.Usage({
    description: `dump, snapshot, validate, recheck and report in one go (the original tool's job)`,
    details: `
      Runs every stage in-process and prints the report. Needs root for live maps and /proc.
    `,
    examples: [[`Scan this host`, `sudo $0 scan`]],
  });

  protected async run(_tool: ToolContext): Promise<number> {
    this.notBuilt(6);
  }
}
