import {Command, Option} from 'clipanion';
import * as t from 'typanion';
import type {ToolContext} from '../src/context.ts';
import {dumpMapBatches, type DumpOptions} from '../src/dump/index.ts';
import {recordLine} from '../src/dump/serialize.ts';
import {UsageFault} from '../src/errors.ts';
import {ExitCode} from '../src/exitCodes.ts';
import {makeHeader} from '../src/header.ts';
import {RecordWriter} from '../src/ndjson.ts';
import {BACKENDS, type BackendName} from '../src/schema.ts';
import {BaseCommand} from './BaseCommand.ts';

export default class DumpMapsCommand extends BaseCommand {
  static override paths = [[`dump-maps`]];
  static override usage = Command.Usage({
    description: `read every USM eBPF map and emit its entries, keys decoded, as NDJSON`,
    details: `
      Finds the USM maps on this host (through bpftool, or Datadog's system-probe) and writes one \`map\` record per map, one \`entry\` record per map entry with its key decoded, and one \`mapstats\` record when each map is done.

      Backend: bpftool when a working one is found (PATH, /usr/sbin, linux-tools), else system-probe (agent install paths, PATH), else a static bpftool downloaded and checksum-verified (see --bpftool-url, --no-download). \`--backend\`, \`--bpftool\` and \`--system-probe\` choose explicitly.

      Maps sharing a name (two agents, a stale pinned map) are all dumped, each under its own id. Repeated keys within one dump are dropped and counted in \`mapstats.duplicates\`; failed lookups inside a dump are counted in \`mapstats.errors\`. A map whose dump fails is reported with \`complete: false\` and the others still run.

      \`--from\` reads outputs saved elsewhere instead of the live host: a capture directory, a directory holding list.json/list.txt and dump-<ID>.json files, or such files one by one.
    `,
    examples: [
      [`Dump every USM map`, `$0 dump-maps > entries.ndjson`],
      [`Only the HTTP/2 maps, through system-probe`, `$0 dump-maps --maps 'http2_*' --system-probe /opt/datadog-agent/embedded/bin/system-probe`],
      [`Read a capture taken on another host`, `$0 dump-maps --from capture/`],
      [`Saved bpftool outputs`, `$0 dump-maps --from list.json --from dump-42.json`],
    ],
  });

  maps = Option.String(`--maps`, {description: `Comma-separated map names (full or 15-character kernel names; NAME* for a prefix)`});
  connTupleOnly = Option.Boolean(`--conn-tuple-only`, false, {description: `Only maps keyed by conn_tuple_t`});
  pidOnly = Option.Boolean(`--pid-only`, false, {description: `Only maps keyed by pid_tgid`});
  mapIds = Option.Array(`--map-id`, {description: `Dump only this map id (repeatable)`});
  backend = Option.String(`--backend`, {description: `bpftool or system-probe`, validator: t.isEnum(BACKENDS)});
  bpftool = Option.String(`--bpftool`, {description: `Path of the bpftool binary to use`});
  systemProbe = Option.String(`--system-probe`, {description: `Path of the system-probe binary to use`});
  timeout = Option.String(`--timeout`, `120`, {description: `Seconds each bpftool/system-probe run may take (default 120)`});
  from = Option.Array(`--from`, {description: `Read saved listing/dump files or a capture directory instead of the host (repeatable)`});
  download = Option.Boolean(`--download`, true, {description: `Download a verified static bpftool when no backend is usable (--no-download to refuse)`});
  bpftoolUrl = Option.String(`--bpftool-url`, {description: `Base URL of the bpftool releases (a mirror)`});
  bpftoolSha256 = Option.String(`--bpftool-sha256`, {description: `Expected SHA-256 of the downloaded bpftool archive`});

  options(): DumpOptions {
    const timeout = Number(this.timeout);
    if (!Number.isFinite(timeout) || timeout <= 0)
      throw new UsageFault(`--timeout ${this.timeout}: expected a positive number of seconds`);
    const mapIds = this.mapIds?.map(text => {
      if (!/^\d+$/.test(text.trim()))
        throw new UsageFault(`--map-id ${text}: expected a map id (a number)`);
      return Number(text);
    });
    return {
      selection: {
        names: this.maps === undefined ? undefined : this.maps.split(`,`),
        connTupleOnly: this.connTupleOnly,
        pidOnly: this.pidOnly,
      },
      backend: this.backend as BackendName | undefined,
      bpftoolPath: this.bpftool,
      systemProbePath: this.systemProbe,
      timeoutMs: timeout * 1000,
      from: this.from,
      mapIds,
      download: this.download,
      bpftoolUrl: this.bpftoolUrl,
      bpftoolSha256: this.bpftoolSha256,
    };
  }

  protected async run(tool: ToolContext): Promise<number> {
    const options = this.options();
    if (options.from && (options.backend || options.bpftoolPath || options.systemProbePath))
      throw new UsageFault(`--from reads saved files: --backend, --bpftool and --system-probe do not apply`);
    if (this.maps !== undefined && options.selection?.names?.every(name => name.trim() === ``))
      throw new UsageFault(`--maps is empty`);
    const records = dumpMapBatches(tool, options);
    // Whole batches as text: one await per chunk of dump output, not per entry.
    // The first batch comes before the header: no backend, no maps → nothing on stdout, exit 3.
    let next = await records.next();
    const writer = new RecordWriter(this.context.stdout);
    try {
      await writer.write(makeHeader(`dump-maps`, tool));
      while (!next.done) {
        let text = ``;
        for (const record of next.value)
          text += recordLine(record);
        await writer.writeText(text);
        next = await records.next();
      }
    } finally {
      await records.return(undefined);
      await writer.end();
      tool.log.done();
    }
    return ExitCode.Ok;
  }
}
