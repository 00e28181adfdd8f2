import {Command, Option} from 'clipanion';
import type {ToolContext} from '../src/context.ts';
import {UsageFault} from '../src/errors.ts';
import {ExitCode} from '../src/exitCodes.ts';
import {readInputBatches} from '../src/ndjson.ts';
import {Provenance} from '../src/provenance.ts';
import {validateBatches} from '../src/validate/index.ts';
import {verdictBytes, verdictLine} from '../src/validate/serialize.ts';
import {BaseCommand} from './BaseCommand.ts';
import {WithProcRoot} from './options.ts';

export default class ValidateCommand extends WithProcRoot(BaseCommand) {
  static override paths = [[`validate`]];
  static override usage = Command.Usage({
    description: `give every map entry a verdict (leaked, alive, unknown) against the snapshots`,
    details: `
      Reads entry records (from \`dump-maps\`) and snapshot records (from \`snapshot-conns\` and \`snapshot-pids\`), in any order, and writes one \`verdict\` record per entry, then one \`summary\` record per map. Records it does not consume pass through, so \`cat a b | validate\` composes.

      When the snapshots come first (or from \`--snapshot\` files, or live with \`--live\`), entries are judged as they stream in. Entries that arrive before the snapshots are held in memory until the snapshots are in or the input ends. With no snapshot records at all, validate takes live snapshots itself (of \`--proc-root\`).

      Exit code 1 when a leaked verdict was written. ${BaseCommand.stdinHint}
    `,
    examples: [
      [`Validate a live dump against live snapshots`, `$0 dump-maps | $0 validate`],
      [`Validate recorded stages`, `cat conns.ndjson pids.ndjson entries.ndjson | $0 validate`],
      [`Snapshots from files, entries on stdin`, `$0 dump-maps | $0 validate --snapshot conns.ndjson --snapshot pids.ndjson`],
    ],
  });

  snapshotFiles = Option.Array(`--snapshot`, [], {description: `Read snapshot records from FILE first (repeatable); the input's own snapshot records are then ignored`});
  live = Option.Boolean(`--live`, {description: `Take live snapshots first and stream (ignores snapshot records in the input); --no-live never looks at this host`});
  files = Option.Rest({name: `file`});

  protected async run(base: ToolContext): Promise<number> {
    const tool = this.withProcRoot(base);
    if (this.live === true && this.snapshotFiles.length > 0)
      throw new UsageFault(`--live and --snapshot both say where the snapshots come from: give one`);
    const read = {onProblem: (message: string) => tool.log.warn(message), maxLineLength: tool.maxLineLength, keepSourceLine: new Set([`entry`])};
    const snapshots = this.snapshotFiles.length > 0 ? readInputBatches(this.snapshotFiles, this.context.stdin, read) : undefined;
    const input = readInputBatches(this.files, this.context.stdin, read);
    const live = this.live === undefined ? `auto` : this.live ? `always` : `never`;
    const counts = {leaked: 0};
    const provenance = new Provenance(tool);
    await this.emitBatches(`validate`, tool, validateBatches(tool, input, {snapshots, live, counts, provenance}), verdictLine, () => provenance.origin, verdictBytes);
    return counts.leaked > 0 ? ExitCode.LeaksFound : ExitCode.Ok;
  }
}
