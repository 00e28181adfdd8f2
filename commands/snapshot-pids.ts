import {Command} from 'clipanion';
import type {ToolContext} from '../src/context.ts';
import {BaseCommand} from './BaseCommand.ts';

export default class SnapshotPidsCommand extends BaseCommand {
  static override paths = [[`snapshot-pids`]];
  static override usage = Command.Usage({
    description: `record every process and its threads as NDJSON`,
    details: `
      Writes one \`process\` record per process: pid, thread ids, state, start time, command name and network namespace.
    `,
    examples: [[`Snapshot the live processes`, `$0 snapshot-pids > pids.ndjson`]],
  });

  protected async run(_tool: ToolContext): Promise<number> {
    this.notBuilt(4);
  }
}
