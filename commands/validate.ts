import {Command} from 'clipanion';
import type {ToolContext} from '../src/context.ts';
import {BaseCommand} from './BaseCommand.ts';

export default class ValidateCommand extends BaseCommand {
  static override paths = [[`validate`]];
  static override usage = Command.Usage({
    description: `give every map entry a verdict (leaked, alive, unknown) against the snapshots`,
    details: `
      Reads entry and snapshot records and writes one \`verdict\` record per entry, then one \`summary\` record per map.
    `,
    examples: [[`Validate a live dump`, `$0 dump-maps | $0 validate`]],
  });

  protected async run(_tool: ToolContext): Promise<number> {
    this.notBuilt(5);
  }
}
