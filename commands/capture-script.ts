import {Command} from 'clipanion';
import {captureScript} from '../src/capture/script.ts';
import type {ToolContext} from '../src/context.ts';
import {BaseCommand} from './BaseCommand.ts';

export default class CaptureScriptCommand extends BaseCommand {
  static override paths = [[`capture-script`]];
  static override usage = Command.Usage({
    description: `print a POSIX sh script that captures maps and /proc on a box without this tool`,
    details: `
      Prints a shell script (dash, bash or busybox sh) that needs only bpftool or system-probe and the basic utilities. It writes the raw map listing, dumps of the USM catalogue maps, the processes, threads and every network namespace's socket tables into one directory, then a second look into \`later/\` after a delay, optionally packed as a tarball. Analyse the capture anywhere with \`scan --from DIR\` (or \`dump-maps\`, \`snapshot-conns\`, \`snapshot-pids --from DIR\`).

      Run \`sh capture.sh -h\` for the script's options.
    `,
    examples: [
      [`Write the script`, `$0 capture-script > capture.sh`],
      [`Capture into a directory, second look after 5 s`, `sudo sh capture.sh -o /tmp/capture -d 5`],
      [`Capture in a pod, tarball on stdout`, `kubectl exec -i -n NS POD -c system-probe -- sh -s -- -o - < capture.sh > capture.tar.gz`],
    ],
  });

  protected async run(_tool: ToolContext): Promise<number> {
    this.context.stdout.write(captureScript());
    return 0;
  }
}
