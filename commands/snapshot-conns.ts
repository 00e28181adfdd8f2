import {Command} from 'clipanion';
import type {ToolContext} from '../src/context.ts';
import {BaseCommand} from './BaseCommand.ts';

export default class SnapshotConnsCommand extends BaseCommand {
  static override paths = [[`snapshot-conns`]];
  static override usage = Command.Usage({
    description: `record every network namespace and its TCP/UDP sockets as NDJSON`,
    details: `
      Discovers every network namespace (from processes and from bind mounts such as /run/netns) and writes one \`netns\` record per namespace and one \`socket\` record per TCP/UDP socket in it.
    `,
    examples: [[`Snapshot the live sockets`, `$0 snapshot-conns > conns.ndjson`]],
  });

  protected async run(_tool: ToolContext): Promise<number> {
    this.notBuilt(4);
  }
}
