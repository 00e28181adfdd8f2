// Choosing how to reach the live maps: the kernel itself (kernel.ts) when bpf() is allowed, else
// bpftool or system-probe run as children (this file), else a downloaded bpftool.
import {constants as fsConstants} from 'node:fs';
import {access, readdir, stat} from 'node:fs/promises';
import {dirname, join} from 'node:path';
import type {ToolContext} from '../context.ts';
import {EnvironmentFault, errorMessage} from '../errors.ts';
import type {RunResult} from '../exec.ts';
import type {BackendName} from '../schema.ts';
import {btfFromBpftoolJson} from '../btf.ts';
import {parseBpftoolList, parseSystemProbeList} from './formats.ts';
import {addHolders, kernelRefusal, kernelSource} from './kernel.ts';
import {streamReader, type MapSource} from './source.ts';
import type {Syscalls} from '../sys/syscalls.ts';
import type {ReadAhead} from './readAhead.ts';
import {findTrusted, requireTrusted} from '../trustedBinary.ts';

// ---------------------------------------------------------------------------------------------
// Live sources

const VERSION_TIMEOUT_MS = 5_000;

function childFailure(what: string, result: RunResult, timeoutMs: number): string {
  if (result.timedOut)
    return `${what} timed out after ${timeoutMs / 1000} s`;
  const stderr = result.stderr.trim();
  const quoted = /"error"\s*:\s*("(?:[^"\\]|\\.)*")/.exec(result.stdout)?.[1];
  let stdoutError: string | undefined;
  try {
    stdoutError = quoted === undefined ? undefined : JSON.parse(quoted) as string;
  } catch {
    stdoutError = quoted;
  }
  const detail = [stdoutError, stderr].filter(Boolean).join(`; `);
  return `${what} exited with code ${result.exitCode}${detail ? `: ${detail.slice(-2000)}` : ``}`;
}

export function bpftoolSource(ctx: ToolContext, path: string, timeoutMs: number): MapSource {
  return {
    backend: `bpftool`,
    label: path,
    async list() {
      const result = await ctx.runner.run(path, [`-j`, `map`, `show`], {timeoutMs});
      if (result.exitCode !== 0 || result.timedOut)
        throw new EnvironmentFault(`cannot list eBPF maps: ${childFailure(`${path} -j map show`, result, timeoutMs)}${rootHint(ctx)}`);
      return parseBpftoolList(result.stdout, `${path} -j map show`);
    },
    open(map, sink) {
      return streamReader(ctx.runner.stream(path, [`-j`, `map`, `dump`, `id`, String(map.id)], {timeoutMs}), sink, `bpftool`, map.id, timeoutMs, ctx.maxLineLength);
    },
    async btf(btfId) {
      const result = await ctx.runner.run(path, [`-j`, `btf`, `dump`, `id`, String(btfId)], {timeoutMs});
      if (result.exitCode !== 0 || result.timedOut) {
        ctx.log.info(`cannot read BTF ${btfId}: ${childFailure(`${path} -j btf dump id ${btfId}`, result, timeoutMs)}`);
        return null;
      }
      try {
        return btfFromBpftoolJson(JSON.parse(result.stdout));
      } catch (err) {
        ctx.log.info(`BTF ${btfId} from ${path} is unreadable: ${errorMessage(err)}`);
        return null;
      }
    },
  };
}

export function systemProbeSource(ctx: ToolContext, path: string, timeoutMs: number): MapSource {
  return {
    backend: `system-probe`,
    label: path,
    async list() {
      const result = await ctx.runner.run(path, [`ebpf`, `map`, `list`], {timeoutMs});
      if (result.exitCode !== 0 || result.timedOut)
        throw new EnvironmentFault(`cannot list eBPF maps: ${childFailure(`${path} ebpf map list`, result, timeoutMs)}${rootHint(ctx)}`);
      return parseSystemProbeList(result.stdout, `${path} ebpf map list`);
    },
    open(map, sink) {
      return streamReader(ctx.runner.stream(path, [`ebpf`, `map`, `dump`, `id`, String(map.id)], {timeoutMs}), sink, `system-probe`, map.id, timeoutMs, ctx.maxLineLength);
    },
  };
}

function rootHint(ctx: ToolContext): string {
  return ctx.uid !== 0 ? ` (not running as root: reading eBPF maps needs root or CAP_BPF + CAP_SYS_ADMIN)` : ``;
}

// ---------------------------------------------------------------------------------------------
// Choosing a backend (original-tool-behaviour.md §9.1, with B13 and B18 fixed)

export interface BackendChoice {
  backend?: BackendName;
  /** --bpftool PATH */
  bpftoolPath?: string;
  /** --system-probe PATH */
  systemProbePath?: string;
  timeoutMs: number;
  /** Fetch a verified static bpftool when nothing else is usable (default true). */
  download?: boolean;
  bpftoolUrl?: string;
  bpftoolSha256?: string;
  /** Kernel backend: entries per batch lookup (default 4096; grown when a hash bucket needs more). */
  batchEntries?: number;
  /** Kernel backend, read ahead: entries of a worker's chunk handed on at a time. */
  handedOn?: number;
  /** Kernel backend: batch lookups in a worker thread (src/dump/readAhead.ts), its own or one already started. */
  readAhead?: boolean | ReadAhead;
  /** Find the maps' holders in /proc (default true). */
  holders?: boolean;
}

/** Where system-probe lives in agent packages and dev trees (the original's list, minus `./system-probe`). */
export const SYSTEM_PROBE_LOCATIONS = [
  `/opt/datadog-agent/embedded/bin/system-probe`,
  `/usr/bin/system-probe`,
  `/git/datadog-agent/bin/system-probe/system-probe`,
];

/** Where bpftool hides when `bpftool` on PATH is Ubuntu's wrapper that fails for a kernel without linux-tools. */
const BPFTOOL_FALLBACK_DIRS = [`/usr/sbin`, `/usr/local/sbin`, `/sbin`, `/usr/local/bin`];
const LINUX_TOOLS_DIRS = [`/usr/lib/linux-tools`];

/** Checks a user-given binary path: exists, is a regular file, is executable. */
export async function checkExecutable(ctx: ToolContext, path: string, flag: string): Promise<void> {
  let info;
  try {
    info = await stat(path);
  } catch (err) {
    throw new EnvironmentFault(`${flag} ${path}: ${(err as NodeJS.ErrnoException).code === `ENOENT` ? `no such file` : errorMessage(err)}`);
  }
  if (!info.isFile())
    throw new EnvironmentFault(`${flag} ${path}: not a regular file`);
  try {
    await access(path, fsConstants.X_OK);
  } catch {
    throw new EnvironmentFault(`${flag} ${path}: not executable`);
  }
  await requireTrusted(ctx, path, flag);
}

/** `bpftool version` exits 0. Ubuntu's wrapper exits non-zero without linux-tools for this kernel. */
async function bpftoolWorks(ctx: ToolContext, path: string): Promise<boolean> {
  try {
    const result = await ctx.runner.run(path, [`version`], {timeoutMs: VERSION_TIMEOUT_MS});
    return result.exitCode === 0;
  } catch {
    return false;
  }
}

async function findBpftool(ctx: ToolContext): Promise<string | null> {
  const linuxTools: Array<string> = [];
  for (const base of LINUX_TOOLS_DIRS) {
    try {
      for (const version of (await readdir(base)).sort().reverse())
        linuxTools.push(join(base, version));
    } catch {
      // no linux-tools installed
    }
  }
  const candidates = await findTrusted(ctx, `bpftool`, {last: [...BPFTOOL_FALLBACK_DIRS, ...linuxTools]});
  for (const candidate of candidates) {
    if (await bpftoolWorks(ctx, candidate))
      return candidate;
    ctx.log.debug(`bpftool candidate ${candidate} is not usable`);
  }
  return null;
}

async function findSystemProbe(ctx: ToolContext): Promise<string | null> {
  const [found] = await findTrusted(ctx, `system-probe`, {first: SYSTEM_PROBE_LOCATIONS.map(path => dirname(path))});
  return found ?? null;
}

/** The syscall layer when bpf() may be called, else why it may not (no FFI, EPERM, seccomp). */
function kernelAccess(ctx: ToolContext): Syscalls | string {
  const sys = ctx.syscalls();
  if (`unavailable` in sys)
    return sys.unavailable;
  return kernelRefusal(sys) ?? sys;
}

/** Holders from /proc for every live backend (bpftool's own list lacks them when built without its pids iterator). */
function withHolders(ctx: ToolContext, source: MapSource): MapSource {
  return {
    ...source,
    async list() {
      const maps = await source.list();
      const told = new Map(maps.map(map => [map.id, map.holders]));
      await addHolders(ctx, maps);
      for (const map of maps) {
        if (map.holders.length === 0)
          map.holders = told.get(map.id) ?? [];
      }
      return maps;
    },
  };
}

export async function selectSource(ctx: ToolContext, choice: BackendChoice): Promise<MapSource> {
  const source = await chooseSource(ctx, choice);
  return choice.holders === false ? source : withHolders(ctx, source);
}

async function chooseSource(ctx: ToolContext, choice: BackendChoice): Promise<MapSource> {
  const {timeoutMs} = choice;
  if (choice.bpftoolPath !== undefined)
    await checkExecutable(ctx, choice.bpftoolPath, `--bpftool`);
  if (choice.systemProbePath !== undefined)
    await checkExecutable(ctx, choice.systemProbePath, `--system-probe`);
  const wanted = choice.backend
    ?? (choice.systemProbePath !== undefined && choice.bpftoolPath === undefined ? `system-probe` : undefined)
    ?? (choice.bpftoolPath !== undefined ? `bpftool` : undefined);

  if (wanted === `kernel`) {
    const access = kernelAccess(ctx);
    if (typeof access === `string`)
      throw new EnvironmentFault(`--backend kernel: ${access}`);
    return kernelSource(ctx, access, {batchEntries: choice.batchEntries, handedOn: choice.handedOn, readAhead: choice.readAhead});
  }
  if (wanted === `system-probe`) {
    const path = choice.systemProbePath ?? await findSystemProbe(ctx);
    if (path === null)
      throw new EnvironmentFault(`system-probe not found (looked in ${SYSTEM_PROBE_LOCATIONS.join(`, `)} and PATH); give its path with --system-probe`);
    return systemProbeSource(ctx, path, timeoutMs);
  }
  if (wanted === `bpftool`) {
    const path = choice.bpftoolPath ?? await findBpftool(ctx) ?? await download(ctx, choice, true);
    if (path === null)
      throw new EnvironmentFault(`no usable bpftool found; give its path with --bpftool`);
    return bpftoolSource(ctx, path, timeoutMs);
  }
  const access = kernelAccess(ctx);
  if (typeof access !== `string`)
    return kernelSource(ctx, access, {batchEntries: choice.batchEntries, handedOn: choice.handedOn, readAhead: choice.readAhead});
  const fallback = await childSource(ctx, choice);
  ctx.log.warn(`the kernel backend cannot be used (${access}); falling back to ${fallback.backend} (${fallback.label})`);
  return fallback;
}

/** bpftool, else system-probe, else a downloaded bpftool. */
async function childSource(ctx: ToolContext, choice: BackendChoice): Promise<MapSource> {
  const {timeoutMs} = choice;
  const bpftool = await findBpftool(ctx);
  if (bpftool !== null)
    return bpftoolSource(ctx, bpftool, timeoutMs);
  const systemProbe = await findSystemProbe(ctx);
  if (systemProbe !== null) {
    ctx.log.info(`no usable bpftool; using ${systemProbe}`);
    return systemProbeSource(ctx, systemProbe, timeoutMs);
  }
  const downloaded = await download(ctx, choice, false);
  if (downloaded !== null)
    return bpftoolSource(ctx, downloaded, timeoutMs);
  throw new EnvironmentFault(`no eBPF backend available: bpf() cannot be used, and no bpftool or system-probe was found: give --bpftool PATH or --system-probe PATH${choice.download === false ? `` : ` (the bpftool download failed, see above)`}`);
}

/** The last resort: a verified static bpftool (src/dump/download.ts). Null when off or failed (and not required). */
async function download(ctx: ToolContext, choice: BackendChoice, required: boolean): Promise<string | null> {
  if (choice.download === false)
    return null;
  // Loaded only when needed: most runs never download anything.
  const {downloadBpftool} = await import(`./download.ts`);
  try {
    ctx.log.warn(`no usable bpftool or system-probe found; downloading a static bpftool${choice.bpftoolUrl ? ` from ${choice.bpftoolUrl}` : ``}`);
    return await downloadBpftool(ctx, {baseUrl: choice.bpftoolUrl, sha256: choice.bpftoolSha256});
  } catch (err) {
    if (required)
      throw err;
    ctx.log.warn(`bpftool download failed: ${errorMessage(err)}`);
    return null;
  }
}
