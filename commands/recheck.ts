import {Command, Option} from 'clipanion';
import type {ToolContext} from '../src/context.ts';
import {UsageFault} from '../src/errors.ts';
import {ExitCode} from '../src/exitCodes.ts';
import {Provenance} from '../src/provenance.ts';
import {DEFAULT_RECHECK_DELAY_MS, recheckBatches} from '../src/validate/recheck.ts';
import {BaseCommand} from './BaseCommand.ts';
import {WithBackend, WithProcRoot, isSeconds} from './options.ts';

export default class RecheckCommand extends WithBackend(WithProcRoot(BaseCommand)) {
  static override paths = [[`recheck`]];
  static override usage = Command.Usage({
    description: `wait, look again, and keep only the leaks that are still there`,
    details: `
      Reads verdicts (from \`validate\`). Verdicts other than \`leaked\` pass through at once. For the leaked ones it waits \`--delay\` seconds, once for the whole run, then looks again: fresh snapshots of sockets and processes, then a re-read of only the maps that had leaked entries (one dump per map). An entry gone from its map becomes \`resolved\` (\`removed_from_map\`), one that now matches becomes \`alive\` (\`race\`), the rest stay \`leaked\` with \`checks: 2\`. Ends with one \`summary\` record per map, counting the races filtered.

      \`--delay 0\` looks again at once (to skip the second look altogether, leave recheck out of the pipe). With \`--later\`, the second look reads a later capture instead of the host, and there is no wait.

      Exit code 1 when a leaked verdict was written. ${BaseCommand.stdinHint}
    `,
    examples: [
      [`Filter races out of a live validation`, `$0 dump-maps | $0 validate | $0 recheck`],
      [`Wait 5 seconds before the second look`, `$0 dump-maps | $0 validate | $0 recheck --delay 5`],
      [`Offline, against a later capture`, `$0 validate first.ndjson | $0 recheck --later later.ndjson`],
    ],
  });

  delay = Option.String(`--delay`, String(DEFAULT_RECHECK_DELAY_MS / 1000), {description: `Seconds to wait before looking again (default 2; 0 looks again at once)`, validator: isSeconds({min: 0})});
  later = Option.String(`--later`, {description: `Look at a later capture instead of the host: NDJSON (entries and snapshots) or a capture directory`});
  local = Option.Boolean(`--local`, false, {description: `The verdicts are this host's, made live, though the input has no header saying so: allow the live second look`});
  files = Option.Rest({name: `file`});

  protected async run(base: ToolContext): Promise<number> {
    const notApplying = [...(this.procRoot !== undefined ? [`--proc-root`] : []), ...this.backendFlagsGiven()];
    if (this.later !== undefined && notApplying.length > 0)
      throw new UsageFault(`--later reads a capture: ${notApplying.join(`, `)} do${notApplying.length === 1 ? `es` : ``} not apply`);
    if (this.later === `-` && (this.files.length === 0 || this.files.includes(`-`)))
      throw new UsageFault(`--later -: standard input carries the verdicts; give the later capture as a file or directory (or the verdicts as a file argument)`);
    if (this.later !== undefined && this.local)
      throw new UsageFault(`--local says the verdicts are this host's, live, for a live second look; --later looks at a capture instead: give one`);
    const tool = this.withProcRoot(base);
    const input = this.inputBatches(tool, this.files);
    let leaked = false;
    const provenance = new Provenance(tool);
    const batches = recheckBatches(tool, input, {
      delayMs: this.delay * 1000,
      later: this.later,
      local: this.local,
      provenance,
      stdin: this.context.stdin,
      dump: this.backendOptions(),
    });
    await this.emitBatches(`recheck`, tool, (async function* () {
      for await (const batch of batches) {
        if (!leaked)
          leaked = batch.some(record => record.type === `verdict` && record.status === `leaked`);
        yield batch;
      }
    })(), undefined, () => provenance.origin);
    return leaked ? ExitCode.LeaksFound : ExitCode.Ok;
  }
}
