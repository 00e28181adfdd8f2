import {Command} from 'clipanion';
import type {ToolContext} from '../src/context.ts';
import {BaseCommand} from './BaseCommand.ts';

export default class RecheckCommand extends BaseCommand {
  static override paths = [[`recheck`]];
  static override usage = Command.Usage({
    description: `wait, look again, and keep only the leaks that are still there`,
    details: `
      Reads verdicts; after a delay re-reads the maps and the system state, and turns each leaked verdict into \`resolved\` (gone from its map), \`alive\` (reason \`race\`), or a confirmed \`leaked\`.
    `,
    examples: [[`Filter races out of a live validation`, `$0 dump-maps | $0 validate | $0 recheck`]],
  });

  protected async run(_tool: ToolContext): Promise<number> {
    this.notBuilt(5);
  }
}
