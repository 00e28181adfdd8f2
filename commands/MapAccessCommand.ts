// The options of every command that reads USM maps (dump-maps, scan): which maps, through which
// backend, how long a child may take, and the bpftool download. One place, so both commands
// take the same flags and turn them into the same DumpOptions.
import {Option} from 'clipanion';
import * as t from 'typanion';
import type {DumpOptions} from '../src/dump/index.ts';
import {UsageFault} from '../src/errors.ts';
import {BACKENDS, type BackendName} from '../src/schema.ts';
import {BaseCommand} from './BaseCommand.ts';

export abstract class MapAccessCommand extends BaseCommand {
  maps = Option.String(`--maps`, {description: `Comma-separated map names (full or 15-character kernel names; NAME* for a prefix)`});
  connTupleOnly = Option.Boolean(`--conn-tuple-only`, false, {description: `Only maps keyed by conn_tuple_t`});
  pidOnly = Option.Boolean(`--pid-only`, false, {description: `Only maps keyed by pid_tgid`});
  mapIds = Option.Array(`--map-id`, {description: `Only this map id (repeatable)`});
  backend = Option.String(`--backend`, {description: `kernel, bpftool or system-probe (default: kernel when bpf() is allowed, else bpftool, else system-probe)`, validator: t.isEnum(BACKENDS)});
  bpftool = Option.String(`--bpftool`, {description: `Path of the bpftool binary to use`});
  systemProbe = Option.String(`--system-probe`, {description: `Path of the system-probe binary to use`});
  timeout = Option.String(`--timeout`, `120`, {description: `Seconds each bpftool/system-probe run may take (default 120)`});
  download = Option.Boolean(`--download`, true, {description: `Download a verified static bpftool when no backend is usable (--no-download to refuse)`});
  bpftoolUrl = Option.String(`--bpftool-url`, {description: `Base URL of the bpftool releases (a mirror)`});
  bpftoolSha256 = Option.String(`--bpftool-sha256`, {description: `Expected SHA-256 of the downloaded bpftool archive`});

  /** The flags above as DumpOptions; throws UsageFault on a bad value. */
  protected dumpOptions(): DumpOptions {
    const timeout = Number(this.timeout);
    if (!Number.isFinite(timeout) || timeout <= 0)
      throw new UsageFault(`--timeout ${this.timeout}: expected a positive number of seconds`);
    if (this.maps !== undefined && this.maps.split(`,`).every(name => name.trim() === ``))
      throw new UsageFault(`--maps is empty`);
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
      mapIds,
      backend: this.backend as BackendName | undefined,
      bpftoolPath: this.bpftool,
      systemProbePath: this.systemProbe,
      timeoutMs: timeout * 1000,
      download: this.download,
      bpftoolUrl: this.bpftoolUrl,
      bpftoolSha256: this.bpftoolSha256,
    };
  }
}
