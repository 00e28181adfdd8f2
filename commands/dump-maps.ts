import {Command} from 'clipanion';
import type {ToolContext} from '../src/context.ts';
import {BaseCommand} from './BaseCommand.ts';

export default class DumpMapsCommand extends BaseCommand {
  static override paths = [[`dump-maps`]];
  static override usage = Command.Usage({
    description: `read every USM eBPF map and emit its entries, keys decoded, as NDJSON`,
    details: `
      Finds the USM maps on this host (through bpftool, or Datadog's system-probe) and writes one \`map\` record per map, one \`entry\` record per map entry with its key decoded, and one \`mapstats\` record when each map is done.
    `,
    examples: [[`Dump every USM map`, `$0 dump-maps > entries.ndjson`]],
  });

  protected async run(_tool: ToolContext): Promise<number> {
    this.notBuilt(3);
  }
}
