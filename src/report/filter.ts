// The report's filters (`--map`, `--reason`, `--netns`, `--pid`, each repeatable): values of one
// filter are alternatives, different filters must all hold. They apply to the normal report and
// to `--list` alike.
import {kernelName} from '../catalogue.ts';
import {UsageFault} from '../errors.ts';
import {REASONS, type VerdictRecord} from '../schema.ts';
import {ownerPid} from './format.ts';

export interface LeakFilterOptions {
  maps?: ReadonlyArray<string>;
  reasons?: ReadonlyArray<string>;
  netns?: ReadonlyArray<string | number>;
  pids?: ReadonlyArray<string | number>;
}

const KNOWN_REASONS: ReadonlySet<string> = new Set(Object.values(REASONS).flat());

export class LeakFilter {
  private readonly maps: ReadonlySet<string>;
  private readonly mapNames: ReadonlyArray<string>;
  private readonly reasons: ReadonlySet<string>;
  private readonly netns: ReadonlySet<number>;
  private readonly pids: ReadonlySet<number>;

  constructor(options: LeakFilterOptions = {}) {
    const list = (values: ReadonlyArray<string | number> | undefined) =>
      (values ?? []).flatMap(value => String(value).split(`,`)).map(value => value.trim()).filter(Boolean);
    // A map is named by its full or its 15-character kernel name: keep the kernel form to compare.
    this.mapNames = list(options.maps);
    this.maps = new Set(this.mapNames.map(kernelName));
    const reasons = list(options.reasons);
    for (const reason of reasons) {
      if (!KNOWN_REASONS.has(reason))
        throw new UsageFault(`--reason ${reason}: unknown reason; known: ${[...KNOWN_REASONS].join(`, `)}`);
    }
    this.reasons = new Set(reasons);
    this.netns = new Set(list(options.netns).map(value => number(`--netns`, value)));
    this.pids = new Set(list(options.pids).map(value => number(`--pid`, value)));
  }

  /** Any filter given. */
  get active(): boolean {
    return this.maps.size > 0 || this.byEntry;
  }

  /** A filter on entries (not whole maps): per-map summary counts no longer apply. */
  get byEntry(): boolean {
    return this.reasons.size > 0 || this.netns.size > 0 || this.pids.size > 0;
  }

  /** Whether a map (by its catalogue or kernel name) passes `--map`. */
  map(name: string): boolean {
    return this.maps.size === 0 || this.maps.has(kernelName(name));
  }

  verdict(verdict: VerdictRecord): boolean {
    if (!this.map(verdict.map))
      return false;
    if (this.reasons.size > 0 && !this.reasons.has(verdict.reason))
      return false;
    if (this.netns.size > 0 && !(verdict.key?.kind === `conn_tuple` && this.netns.has(verdict.key.netns)))
      return false;
    if (this.pids.size > 0) {
      const pid = ownerPid(verdict);
      if (pid === null || !this.pids.has(pid))
        return false;
    }
    return true;
  }

  /** For the report's header: `--map connection_protocol --reason no_connection`. */
  describe(): string {
    const parts: Array<string> = [];
    for (const [flag, values] of [[`--map`, this.mapNames], [`--reason`, this.reasons], [`--netns`, this.netns], [`--pid`, this.pids]] as const) {
      for (const value of values)
        parts.push(`${flag} ${value}`);
    }
    return parts.join(` `);
  }
}

function number(flag: string, value: string): number {
  const parsed = Number(value);
  if (!/^[0-9]+$/.test(value) || !Number.isSafeInteger(parsed) || parsed > 0xffffffff)
    throw new UsageFault(`${flag} ${value}: expected a number`);
  return parsed;
}
