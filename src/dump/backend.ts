// Where map listings and dumps come from: bpftool or system-probe, run live (this file), or files
// saved earlier (offline.ts). Both give the same two things: a list of maps and, per map id, a
// stream of the dump's bytes.
import {constants as fsConstants} from 'node:fs';
import {access, readdir, stat} from 'node:fs/promises';
import {delimiter, join} from 'node:path';
import type {Readable} from 'node:stream';
import type {ToolContext} from '../context.ts';
import {EnvironmentFault, errorMessage} from '../errors.ts';
import type {RunResult} from '../exec.ts';
import type {BackendName} from '../schema.ts';

export interface ListedMap {
  id: number;
  /** Kernel name (≤15 chars); empty when the map has none. */
  name: string;
  /** bpftool's type names (`hash`, `lru_hash`, `percpu_hash`, ...), system-probe's mapped to them. */
  type: string;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  holders: Array<{pid: number, comm: string}>;
}

export interface DumpStream {
  stdout: Readable;
  /** Settles when the producer is finished; never rejects. */
  done: Promise<RunResult>;
  kill(): void;
}

export interface MapSource {
  backend: BackendName;
  /** What to call it in messages: the binary path, or the files read. */
  label: string;
  list(): Promise<Array<ListedMap>>;
  dump(mapId: number): DumpStream;
  /** Dumps it has no data for (offline sources); live sources always try. */
  has?(mapId: number): boolean;
}

// ---------------------------------------------------------------------------------------------
// Listing parsers (shared by live and offline sources)

/** `bpftool -j map show`: a JSON array (or one object for `show id N`, or `{"error":...}`). */
export function parseBpftoolList(text: string, source: string): Array<ListedMap> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new EnvironmentFault(`${source}: map list is not JSON (${errorMessage(err)})`);
  }
  if (value !== null && typeof value === `object` && !Array.isArray(value)) {
    const object = value as {error?: unknown};
    if (typeof object.error === `string`)
      throw new EnvironmentFault(`${source}: ${object.error}`);
    value = [value];
  }
  if (!Array.isArray(value))
    throw new EnvironmentFault(`${source}: map list is not a JSON array`);
  const maps: Array<ListedMap> = [];
  for (const item of value as Array<Record<string, unknown>>) {
    if (item === null || typeof item !== `object` || !Number.isInteger(item.id))
      continue;
    const pids = Array.isArray(item.pids) ? item.pids as Array<{pid?: unknown, comm?: unknown}> : [];
    maps.push({
      id: item.id as number,
      name: typeof item.name === `string` ? item.name : ``,
      type: typeof item.type === `string` ? item.type : String(item.type),
      keySize: Number(item.bytes_key ?? 0),
      valueSize: Number(item.bytes_value ?? 0),
      maxEntries: Number(item.max_entries ?? 0),
      holders: pids
        .filter(holder => Number.isInteger(holder?.pid))
        .map(holder => ({pid: holder.pid as number, comm: typeof holder.comm === `string` ? holder.comm : ``})),
    });
  }
  return maps;
}

/** cilium/ebpf MapType.String() → bpftool's names, so both backends describe maps alike. */
const SYSTEM_PROBE_TYPES: Record<string, string> = {
  Hash: `hash`, Array: `array`, ProgramArray: `prog_array`, PerfEventArray: `perf_event_array`,
  PerCPUHash: `percpu_hash`, PerCPUArray: `percpu_array`, StackTrace: `stack_trace`,
  CGroupArray: `cgroup_array`, LRUHash: `lru_hash`, LRUCPUHash: `lru_percpu_hash`,
  LPMTrie: `lpm_trie`, ArrayOfMaps: `array_of_maps`, HashOfMaps: `hash_of_maps`, DevMap: `devmap`,
  SockMap: `sockmap`, CPUMap: `cpumap`, XSKMap: `xskmap`, SockHash: `sockhash`, Queue: `queue`,
  Stack: `stack`, RingBuf: `ringbuf`,
};

const SP_HEAD = /^(\d+): (\S+)\s+name (\S*)\s+flags 0x[0-9a-fA-F]+\s*$/;
const SP_SIZES = /^\s+key (\d+)B\s+value (\d+)B\s+max_entries (\d+)\s*$/;

/** `system-probe ebpf map list`: two text lines per map. */
export function parseSystemProbeList(text: string, source: string): Array<ListedMap> {
  const maps: Array<ListedMap> = [];
  let current: ListedMap | null = null;
  for (const line of text.split(`\n`)) {
    const head = SP_HEAD.exec(line);
    if (head) {
      current = {
        id: Number(head[1]), name: head[3], type: SYSTEM_PROBE_TYPES[head[2]] ?? head[2].toLowerCase(),
        keySize: 0, valueSize: 0, maxEntries: 0, holders: [],
      };
      maps.push(current);
      continue;
    }
    const sizes = SP_SIZES.exec(line);
    if (sizes && current) {
      current.keySize = Number(sizes[1]);
      current.valueSize = Number(sizes[2]);
      current.maxEntries = Number(sizes[3]);
      current = null;
    }
  }
  if (maps.length === 0 && text.trim() !== ``)
    throw new EnvironmentFault(`${source}: not a system-probe map list: ${text.trim().slice(0, 80)}`);
  return maps;
}

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
    dump(mapId) {
      return ctx.runner.stream(path, [`-j`, `map`, `dump`, `id`, String(mapId)], {timeoutMs});
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
    dump(mapId) {
      return ctx.runner.stream(path, [`ebpf`, `map`, `dump`, `id`, String(mapId)], {timeoutMs});
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
export async function checkExecutable(path: string, flag: string): Promise<void> {
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
}

async function isExecutableFile(path: string): Promise<boolean> {
  try {
    const info = await stat(path);
    if (!info.isFile())
      return false;
    await access(path, fsConstants.X_OK);
    return true;
  } catch {
    return false;
  }
}

async function onPath(ctx: ToolContext, name: string, extraDirs: ReadonlyArray<string> = []): Promise<Array<string>> {
  const dirs = [...(ctx.env.PATH ?? ``).split(delimiter).filter(dir => dir.startsWith(`/`)), ...extraDirs];
  const found: Array<string> = [];
  for (const dir of dirs) {
    const candidate = join(dir, name);
    if (!found.includes(candidate) && await isExecutableFile(candidate))
      found.push(candidate);
  }
  return found;
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
  const candidates = await onPath(ctx, `bpftool`, BPFTOOL_FALLBACK_DIRS);
  for (const base of LINUX_TOOLS_DIRS) {
    try {
      for (const version of (await readdir(base)).sort().reverse())
        candidates.push(join(base, version, `bpftool`));
    } catch {
      // no linux-tools installed
    }
  }
  for (const candidate of candidates) {
    if (await isExecutableFile(candidate) && await bpftoolWorks(ctx, candidate))
      return candidate;
    ctx.log.debug(`bpftool candidate ${candidate} is not usable`);
  }
  return null;
}

async function findSystemProbe(ctx: ToolContext): Promise<string | null> {
  for (const candidate of SYSTEM_PROBE_LOCATIONS) {
    if (await isExecutableFile(candidate))
      return candidate;
  }
  return (await onPath(ctx, `system-probe`))[0] ?? null;
}

export async function selectSource(ctx: ToolContext, choice: BackendChoice): Promise<MapSource> {
  const {timeoutMs} = choice;
  if (choice.bpftoolPath !== undefined)
    await checkExecutable(choice.bpftoolPath, `--bpftool`);
  if (choice.systemProbePath !== undefined)
    await checkExecutable(choice.systemProbePath, `--system-probe`);
  const wanted = choice.backend
    ?? (choice.systemProbePath !== undefined && choice.bpftoolPath === undefined ? `system-probe` : undefined)
    ?? (choice.bpftoolPath !== undefined ? `bpftool` : undefined);

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
  throw new EnvironmentFault(`no eBPF backend available: install bpftool, or give --bpftool PATH or --system-probe PATH${choice.download === false ? `` : ` (the bpftool download failed, see above)`}`);
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
