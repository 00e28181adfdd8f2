// Option groups, each declared once and mixed into every command that takes it:
//
//   class DumpMapsCommand extends WithMapSelection(WithBackend(BaseCommand)) { ... }
//
// A group is a class factory (a TypeScript mixin): its options are instance fields, which is
// what clipanion reads, plus a method turning them into what the library takes. To extend a group
// (a new backend, a new download flag), add the field and its line in the method here: every
// command with the group gets it. Numbers are checked by typanion validators (exit 2 on a bad one).
import {Option} from 'clipanion';
import * as t from 'typanion';
import type {ToolContext} from '../src/context.ts';
import type {DumpOptions} from '../src/dump/index.ts';
import {UsageFault} from '../src/errors.ts';
import {MAX_TIMEOUT_MS} from '../src/exec.ts';
import {REPORT_FORMATS, parseGroupBy, type ReportFormat} from '../src/report/index.ts';
import type {GroupField} from '../src/report/aggregate.ts';
import {BACKENDS} from '../src/schema.ts';
import type {BaseCommand} from './BaseCommand.ts';

// ---------------------------------------------------------------------------------------------
// Numeric option values (typanion validators with coercion from the command-line text)

/**
 * A number of seconds: decimal text as Number() reads it (`2`, `0.5`, `2.0`), at least `min`
 * (exclusive when `above`). `nan` accepts the text NaN too (scan's --recheck-delay, as the
 * original tool did).
 */
/** The longest wait a timer can take (2^31 - 1 ms); a longer one would fire after 1 ms. */
export const MAX_SECONDS = Math.floor(MAX_TIMEOUT_MS / 1000);

export function isSeconds(bound: {min: number, above?: boolean, nan?: boolean, expected?: string}) {
  const expected = bound.expected ?? `${bound.above ? `a positive` : `a`} number of seconds${bound.above ? `` : `, ${bound.min} or more`}`;
  return t.makeValidator<unknown, number>({
    // A type predicate as typanion's own validators declare: with coercion the option becomes a number.
    test: (value, state): value is number => {
      const text = typeof value === `string` ? value.trim() : ``;
      const seconds = typeof value === `number` ? value : text === `` ? Number.NaN : Number(text);
      const fine = Number.isNaN(seconds)
        ? bound.nan === true && text.toLowerCase() === `nan`
        : Number.isFinite(seconds) && (bound.above ? seconds > bound.min : seconds >= bound.min);
      if (fine && seconds > MAX_SECONDS) {
        state?.errors?.push(`${state.p ?? `.`}: expected at most ${MAX_SECONDS} seconds, the longest wait a timer can take (got ${JSON.stringify(value)})`);
        return false;
      }
      if (!fine) {
        state?.errors?.push(`${state.p ?? `.`}: expected ${expected} (got ${JSON.stringify(value)})`);
        return false;
      }
      if (typeof value !== `number` && state?.coercions !== undefined && state.coercion !== undefined)
        state.coercions.push([state.p ?? `.`, state.coercion.bind(null, seconds)]);
      return true;
    },
  });
}

/** A whole number 0..max from decimal digits (`12`; not `1e3`, `0x10`, `-1`). */
export function isCount(max = Number.MAX_SAFE_INTEGER) {
  return t.makeValidator<unknown, number>({
    test: (value, state): value is number => {
      const text = typeof value === `string` ? value.trim() : ``;
      const count = typeof value === `number` ? value : /^\d{1,16}$/.test(text) ? Number(text) : Number.NaN;
      if (!(Number.isInteger(count) && count >= 0 && count <= max)) {
        state?.errors?.push(`${state.p ?? `.`}: expected a whole number${max === Number.MAX_SAFE_INTEGER ? `, 0 or more` : ` from 0 to ${max}`} (got ${JSON.stringify(value)})`);
        return false;
      }
      if (typeof value !== `number` && state?.coercions !== undefined && state.coercion !== undefined)
        state.coercions.push([state.p ?? `.`, state.coercion.bind(null, count)]);
      return true;
    },
  });
}

// ---------------------------------------------------------------------------------------------
// The groups

type CommandClass = abstract new (...args: Array<any>) => BaseCommand;

/** `--proc-root`: the proc filesystem the live snapshots read. */
export function WithProcRoot<Base extends CommandClass>(base: Base) {
  abstract class ProcRootOptions extends base {
    procRoot = Option.String(`--proc-root`, {description: `Proc filesystem to read (default: /proc; /host/proc in a container)`});

    /** The tool context with --proc-root applied. */
    protected withProcRoot(tool: ToolContext): ToolContext {
      return this.procRoot !== undefined ? {...tool, procRoot: this.procRoot} : tool;
    }
  }
  return ProcRootOptions;
}

/** `--proc-root` or `--from DIR`: the live system, or a capture directory (capture-script's). */
export function WithSystemSource<Base extends CommandClass>(base: Base) {
  abstract class SystemSourceOptions extends WithProcRoot(base) {
    from = Option.String(`--from`, {description: `Read a capture directory (from capture-script: proc/, netns/, maps/) instead of the live system`});

    /** The tool context for the system looked at; throws when both --proc-root and --from are given. */
    protected systemContext(tool: ToolContext): ToolContext {
      if (this.procRoot !== undefined && this.from !== undefined)
        throw new UsageFault(`--proc-root and --from cannot be used together (a capture has its own proc/)`);
      return this.withProcRoot(tool);
    }
  }
  return SystemSourceOptions;
}

/** How maps are read: backend, binaries, child timeout, the bpftool download. */
export function WithBackend<Base extends CommandClass>(base: Base) {
  abstract class BackendOptions extends base {
    backend = Option.String(`--backend`, {
      description: `${BACKENDS.join(`, `)} (default: kernel when bpf() is allowed, else bpftool, else system-probe)`,
      validator: t.isEnum(BACKENDS),
    });
    bpftool = Option.String(`--bpftool`, {description: `Path of the bpftool binary to use`});
    systemProbe = Option.String(`--system-probe`, {description: `Path of the system-probe binary to use`});
    timeout = Option.String(`--timeout`, `120`, {description: `Seconds each bpftool/system-probe run may take (default 120)`, validator: isSeconds({min: 0, above: true})});
    download = Option.Boolean(`--download`, true, {description: `Download a verified static bpftool when no backend is usable (--no-download to refuse)`});
    bpftoolUrl = Option.String(`--bpftool-url`, {description: `Base URL of the bpftool releases (a mirror)`});
    bpftoolSha256 = Option.String(`--bpftool-sha256`, {description: `Expected SHA-256 of the downloaded bpftool archive`});

    /** The flags above as DumpOptions. */
    protected backendOptions(): DumpOptions {
      return {
        backend: this.backend,
        bpftoolPath: this.bpftool,
        systemProbePath: this.systemProbe,
        timeoutMs: this.timeout * 1000,
        download: this.download,
        bpftoolUrl: this.bpftoolUrl,
        bpftoolSha256: this.bpftoolSha256,
      };
    }

    /** The backend flags given, by name: for "does not apply" messages (--from, --later). */
    protected backendFlagsGiven(): Array<string> {
      const given: Array<[string, unknown]> = [[`--backend`, this.backend], [`--bpftool`, this.bpftool], [`--system-probe`, this.systemProbe]];
      return given.filter(([, value]) => value !== undefined).map(([name]) => name);
    }
  }
  return BackendOptions;
}

/** Which maps: by name, key kind, id. */
export function WithMapSelection<Base extends CommandClass>(base: Base) {
  abstract class MapSelectionOptions extends base {
    maps = Option.String(`--maps`, {description: `Comma-separated map names (full or 15-character kernel names; NAME* for a prefix)`});
    connTupleOnly = Option.Boolean(`--conn-tuple-only`, false, {description: `Only maps keyed by conn_tuple_t`});
    pidOnly = Option.Boolean(`--pid-only`, false, {description: `Only maps keyed by pid_tgid`});
    mapIds = Option.Array(`--map-id`, {description: `Only this map id (repeatable)`, validator: t.isArray(isCount(0xffffffff))});

    /** The flags above as DumpOptions; throws UsageFault on an empty --maps. */
    protected selectionOptions(): DumpOptions {
      if (this.maps !== undefined && this.maps.split(`,`).every(name => name.trim() === ``))
        throw new UsageFault(`--maps is empty`);
      return {
        selection: {names: this.maps?.split(`,`), connTupleOnly: this.connTupleOnly, pidOnly: this.pidOnly},
        mapIds: this.mapIds,
      };
    }
  }
  return MapSelectionOptions;
}

export interface ReportFormatChoice {
  format: ReportFormat;
  samples: number;
  groupBy: Array<GroupField>;
}

/** How the report is printed: format, samples per map, groupings. */
export function WithReportFormat<Base extends CommandClass>(base: Base) {
  abstract class ReportFormatOptions extends base {
    format = Option.String(`--format`, `text`, {description: `text (default), json (one document), ndjson (records), markdown`, validator: t.isEnum(REPORT_FORMATS)});
    samples = Option.String(`--samples`, `10`, {
      description: `Leaked entries shown per map (default 10); the "... and K more" line counts the rest`,
      validator: isCount(),
    });
    groupBy = Option.Array(`--group-by`, [], {description: `Group leaks by these fields (default: reason,dport,daddr,saddr,netns,pid,map)`});

    /** The flags above, --group-by parsed (UsageFault on an unknown field). */
    protected reportFormat(): ReportFormatChoice {
      return {format: this.format, samples: this.samples, groupBy: parseGroupBy(this.groupBy)};
    }
  }
  return ReportFormatOptions;
}
