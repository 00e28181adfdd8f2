import {Command} from 'clipanion';
import type {ToolContext} from '../src/context.ts';
import {ExitCode} from '../src/exitCodes.ts';
import {captureOrigin} from '../src/provenance.ts';
import {snapshotConns} from '../src/snapshot/conns.ts';
import {BaseCommand} from './BaseCommand.ts';
import {WithSystemSource} from './options.ts';

export default class SnapshotConnsCommand extends WithSystemSource(BaseCommand) {
  static override paths = [[`snapshot-conns`]];
  static override usage = Command.Usage({
    description: `record every network namespace and its TCP/UDP sockets as NDJSON`,
    details: `
      Discovers every network namespace (from the ns/net link of every process, and from bind mounts such as /run/netns/NAME listed in mountinfo) and writes one \`netns\` record per namespace, one \`socket\` record per TCP/UDP socket in it, and a closing \`snapshot\` record.

      Each namespace's tcp, tcp6, udp and udp6 tables are read once, through /proc/PID/net of one of its processes (the next process is tried when one vanishes or cannot be read), or with \`nsenter --net=PATH\` for a namespace no process is in. Our own namespace is dumped through NETLINK_SOCK_DIAG instead when run as root (the same records; any table that cannot be dumped is read from /proc). IPv4-mapped rows of tcp6/udp6 (dual-stack sockets) are folded to IPv4, as the eBPF side does.

      \`--proc-root\` reads another proc tree: \`/host/proc\` in a container, or a fixture tree. \`--from\` reads a capture directory (its proc/ and netns/) instead of the live system.
    `,
    examples: [
      [`Snapshot the live sockets`, `$0 snapshot-conns > conns.ndjson`],
      [`From inside a container with the host's /proc mounted`, `$0 snapshot-conns --proc-root /host/proc`],
      [`From a capture made earlier`, `$0 snapshot-conns --from capture/`],
    ],
  });

  protected async run(tool: ToolContext): Promise<number> {
    const ctx = this.systemContext(tool);
    const origin = this.from !== undefined ? await captureOrigin(this.from) : null;
    await this.emit(`snapshot-conns`, ctx, snapshotConns(ctx, {from: this.from}), undefined, () => origin);
    return ExitCode.Ok;
  }
}
