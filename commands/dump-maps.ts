import {Command, Option} from 'clipanion';
import type {ToolContext} from '../src/context.ts';
import {dumpMapText, type DumpOptions} from '../src/dump/index.ts';
import {kernelMayRead, rehearseDumpText} from '../src/dump/rehearsal.ts';
import {LineChunks} from '../src/dump/lineChunks.ts';
import {UsageFault} from '../src/errors.ts';
import {ExitCode} from '../src/exitCodes.ts';
import {makeHeader} from '../src/header.ts';
import {capturesOrigin} from '../src/provenance.ts';
import {RecordWriter} from '../src/ndjson.ts';
import {BaseCommand} from './BaseCommand.ts';
import {WithBackend, WithMapSelection} from './options.ts';

export default class DumpMapsCommand extends WithMapSelection(WithBackend(BaseCommand)) {
  static override paths = [[`dump-maps`]];
  static override usage = Command.Usage({
    description: `read every USM eBPF map and emit its entries, keys decoded, as NDJSON`,
    details: `
      Finds the USM maps on this host (with the bpf() syscall itself, or through bpftool or Datadog's system-probe) and writes one \`map\` record per map, one \`entry\` record per map entry with its key decoded, and one \`mapstats\` record when each map is done.

      Backend: the kernel itself (bpf() through an FFI, maps opened read-only) when the process may call bpf(); else, said on stderr, bpftool when a working one is found (PATH, /usr/sbin, linux-tools), else system-probe (agent install paths, PATH), else a static bpftool downloaded and checksum-verified (see --bpftool-url, --no-download). \`--backend\`, \`--bpftool\` and \`--system-probe\` choose explicitly.

      Maps sharing a name (two agents, a stale pinned map) are all dumped, each under its own id. Repeated keys within one dump are dropped and counted in \`mapstats.duplicates\`; failed lookups inside a dump are counted in \`mapstats.errors\`. A map whose dump fails is reported with \`complete: false\` and the others still run.

      \`--from\` reads outputs saved elsewhere instead of the live host: a capture directory, a directory holding list.json/list.txt and dump-<ID>.json files, or such files one by one; \`-\` is standard input (a listing, or a multi-map dump). The header then carries the capture's host, kernel and time (its meta/; \`unknown\` host and the file's time without one) and \`replayed: true\`.
    `,
    examples: [
      [`Dump every USM map`, `$0 dump-maps > entries.ndjson`],
      [`Only the HTTP/2 maps, through system-probe`, `$0 dump-maps --maps 'http2_*' --system-probe /opt/datadog-agent/embedded/bin/system-probe`],
      [`Read a capture taken on another host`, `$0 dump-maps --from capture/`],
      [`Saved bpftool outputs`, `$0 dump-maps --from list.json --from dump-42.json`],
    ],
  });

  from = Option.Array(`--from`, {description: `Read saved listing/dump files or a capture directory instead of the host (repeatable)`});

  protected async run(tool: ToolContext): Promise<number> {
    const options: DumpOptions = {...this.backendOptions(), ...this.selectionOptions(), from: this.from, stdin: this.context.stdin};
    if (options.from && this.backendFlagsGiven().length > 0)
      throw new UsageFault(`--from reads saved files: ${this.backendFlagsGiven().join(`, `)} do${this.backendFlagsGiven().length === 1 ? `es` : ``} not apply`);
    // The line writer compiled once for every map's kinds (src/dump/rehearsal.ts).
    if (kernelMayRead(options)) {
      const bytes = await rehearseDumpText(tool, options);
      tool.log.debug(`rehearsal: ${bytes} bytes of the maps' first entries written apart before the dump (none of them on stdout)`);
    }
    const chunks = new LineChunks();
    const records = dumpMapText(tool, options, chunks);
    // Whole chunks of bytes: one await per chunk of dump output, not per entry.
    // The first batch comes before the header: no backend, no maps → nothing on stdout, exit 3.
    let next = await records.next();
    const writer = new RecordWriter(this.context.stdout);
    try {
      await writer.write(makeHeader(`dump-maps`, tool, options.from && options.from.length > 0 ? await capturesOrigin(options.from, tool.clock.now()) : null));
      while (!next.done) {
        const chunk = next.value;
        await writer.writeBytes(chunk, () => chunks.recycle(chunk));
        next = await records.next();
      }
      await writer.end();
    } finally {
      writer.release();
      await records.return(undefined);
      tool.log.done();
    }
    return ExitCode.Ok;
  }
}
