// Fetches a static bpftool from the libbpf/bpftool releases when the host has no usable bpftool
// or system-probe, as the original tool does, but safely (original-tool-behaviour.md B10):
//   - the archive's SHA-256 is checked before anything is extracted, against the release's own
//     `.sha256sum` and, when there is one, against the operator's --bpftool-sha256 or a value
//     pinned here for that version and architecture; any mismatch refuses;
//   - the tar is read here (gunzip + a minimal ustar reader), taking only the regular file
//     `bpftool`; traversal, links and oversize members refuse the archive;
//   - the binary lives in a cache directory owned by us (root) and not writable by anyone else,
//     never a fixed world-writable path; a cached binary that fails those checks is refused;
//   - temporary files go under ctx.tmpDir and are removed on failure too.
import {createHash, randomBytes} from 'node:crypto';
import {rmSync, type Stats} from 'node:fs';
import {chmod, lstat, mkdir, open, readFile, realpath, rename, rm, writeFile} from 'node:fs/promises';
import {homedir} from 'node:os';
import {basename, dirname, join, resolve} from 'node:path';
import {promisify} from 'node:util';
import {gunzip} from 'node:zlib';
import {atExit} from '../cleanup.ts';
import type {ToolContext} from '../context.ts';
import {makeTempDir} from '../outputFile.ts';
import {STICKY, ownerName, unsafeAncestor} from '../trustedBinary.ts';
import {EnvironmentFault, UsageFault, errorMessage} from '../errors.ts';

export const DEFAULT_BPFTOOL_BASE_URL = `https://github.com/libbpf/bpftool/releases/download`;
/** The version the original tool downloads. */
export const DEFAULT_BPFTOOL_VERSION = `v7.5.0`;

export type BpftoolArch = `amd64` | `arm64`;

/**
 * SHA-256 of the release archives (`bpftool-<version>-<arch>.tar.gz`), by version then
 * architecture. Empty on purpose: this was written on a machine that cannot reach github.com, and
 * a hash copied from anywhere but the real asset would be a guess. Add verified values here (one
 * line per archive); until then the operator's --bpftool-sha256 is the independent check.
 */
export const PINNED_BPFTOOL_SHA256: Readonly<Record<string, Partial<Record<BpftoolArch, string>>>> = {};

export interface DownloadOptions {
  /** Release base URL (a mirror, or a test server); `<base>/<version>/bpftool-<version>-<arch>.tar.gz`. */
  baseUrl?: string;
  version?: string;
  /** Expected SHA-256 of the archive (hex), from the operator. */
  sha256?: string;
  cacheDir?: string;
  /** `amd64` or `arm64`; defaults from process.arch. */
  arch?: string;
  /** For each HTTP request, body included (default 60 s). */
  timeoutMs?: number;
}

const MAX_ARCHIVE_BYTES = 64 * 1024 * 1024;
const MAX_TAR_BYTES = 256 * 1024 * 1024;
const MAX_MEMBER_BYTES = 128 * 1024 * 1024;
const MAX_SUMFILE_BYTES = 4096;
const VERSION_CHECK_MS = 10_000;

/** Node's process.arch to the release's architecture name, or null when there is no build for it. */
export function bpftoolArch(nodeArch: string): BpftoolArch | null {
  if (nodeArch === `x64` || nodeArch === `amd64` || nodeArch === `x86_64`)
    return `amd64`;
  if (nodeArch === `arm64` || nodeArch === `aarch64`)
    return `arm64`;
  return null;
}

/** Root: /var/cache/usm-leak-detector; otherwise $XDG_CACHE_HOME (or ~/.cache)/usm-leak-detector. */
export function defaultCacheDir(ctx: ToolContext): string {
  if (ctx.uid === 0)
    return `/var/cache/usm-leak-detector`;
  const base = ctx.env.XDG_CACHE_HOME && ctx.env.XDG_CACHE_HOME.startsWith(`/`) ? ctx.env.XDG_CACHE_HOME : join(ctx.env.HOME ?? homedir(), `.cache`);
  return join(base, `usm-leak-detector`);
}

/** Returns the path of a verified bpftool, from the cache or freshly downloaded; throws EnvironmentFault saying why not. */
export async function downloadBpftool(ctx: ToolContext, options: DownloadOptions = {}): Promise<string> {
  const arch = options.arch !== undefined ? bpftoolArch(options.arch) : bpftoolArch(process.arch);
  if (!arch)
    throw new EnvironmentFault(`no bpftool release is built for architecture ${options.arch ?? process.arch} (only amd64 and arm64); install bpftool or use --system-probe`);
  const version = options.version ?? DEFAULT_BPFTOOL_VERSION;
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(version))
    throw new UsageFault(`bpftool version "${version}" is not a release tag`);
  const baseUrl = checkBaseUrl(options.baseUrl ?? DEFAULT_BPFTOOL_BASE_URL);
  const operatorHash = options.sha256 === undefined ? undefined : checkHash(options.sha256);
  const pinnedHash = PINNED_BPFTOOL_SHA256[version]?.[arch];
  const cacheDir = resolve(options.cacheDir ?? defaultCacheDir(ctx));
  const archiveName = `bpftool-${version}-${arch}.tar.gz`;
  const binaryPath = join(cacheDir, `bpftool-${version}-${arch}`);
  const hashPath = `${binaryPath}.sha256`;

  await prepareCacheDir(ctx, cacheDir);

  // A cached binary is used only when it passes the ownership checks (a bad one is refused, not
  // silently replaced: it means someone else could write there), came from an archive with the
  // hash we now expect, and still runs.
  const cached = await lstatOrNull(binaryPath);
  if (cached) {
    checkSafeFile(ctx, binaryPath, cached);
    const wanted = operatorHash ?? pinnedHash;
    const cachedHash = (await readFile(hashPath, `utf8`).catch(() => ``)).trim();
    if (wanted && cachedHash !== wanted)
      ctx.log.info(`cached ${binaryPath} came from archive ${cachedHash || `(unknown)`}, not ${wanted}: downloading again`);
    else if (await runsVersion(ctx, binaryPath))
      return binaryPath;
    else
      ctx.log.info(`cached ${binaryPath} does not run "version": downloading again`);
  }

  const url = `${baseUrl}/${version}/${archiveName}`;
  const scratchDir = makeTempDir(ctx, `usmld-bpftool-`);
  const scratch = scratchDir.path;
  const partPath = join(cacheDir, `.bpftool-${version}-${arch}.${process.pid}.${randomBytes(4).toString(`hex`)}.part`);
  const forgetPart = atExit(() => rmSync(partPath, {force: true}));
  try {
    const timeoutMs = options.timeoutMs ?? 60_000;
    ctx.log.info(`downloading ${url}`);
    const archivePath = join(scratch, archiveName);
    const actualHash = await fetchToFile(url, archivePath, timeoutMs);
    const sumText = await fetchText(`${url}.sha256sum`, timeoutMs);
    const published = parseSumFile(sumText, archiveName, `${url}.sha256sum`);
    if (published !== actualHash)
      throw new EnvironmentFault(`refusing ${url}: its SHA-256 is ${actualHash} but the release's .sha256sum says ${published} (corrupt or tampered download)`);
    if (operatorHash && operatorHash !== actualHash)
      throw new EnvironmentFault(`refusing ${url}: its SHA-256 is ${actualHash}, not the expected ${operatorHash} given with --bpftool-sha256`);
    if (pinnedHash && pinnedHash !== actualHash)
      throw new EnvironmentFault(`refusing ${url}: its SHA-256 is ${actualHash}, not ${pinnedHash} pinned in this tool for ${version} ${arch}`);
    if (!operatorHash && !pinnedHash)
      ctx.log.warn(`bpftool ${version} ${arch} was checked only against the .sha256sum from the same server, which catches corruption but not a compromised server or mirror; pass --bpftool-sha256 to pin it`);

    const tar = await gunzipCapped(await readFile(archivePath), url);
    const binary = extractTarMember(tar, `bpftool`, MAX_MEMBER_BYTES, url);

    await writeFile(partPath, binary, {flag: `wx`, mode: 0o700});
    if (!await runsVersion(ctx, partPath))
      throw new EnvironmentFault(`the bpftool in ${url} does not run "version" on this host`);
    await chmod(partPath, 0o755);
    await rename(partPath, binaryPath);
    await writeFile(hashPath, `${actualHash}\n`, {mode: 0o644});
    ctx.log.info(`bpftool ${version} ${arch} verified (sha256 ${actualHash}) and cached at ${binaryPath}`);
    return binaryPath;
  } finally {
    await rm(partPath, {force: true}).catch(() => {});
    forgetPart();
    scratchDir.remove();
  }
}

function checkBaseUrl(text: string): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new UsageFault(`bpftool download URL "${text}" is not a URL`);
  }
  if (url.protocol !== `https:` && url.protocol !== `http:`)
    throw new UsageFault(`bpftool download URL "${text}" must be http or https`);
  return text.replace(/\/+$/, ``);
}

function checkHash(text: string): string {
  const hash = text.trim().toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(hash))
    throw new UsageFault(`--bpftool-sha256 must be 64 hex digits (a SHA-256 of the .tar.gz), got "${text}"`);
  return hash;
}

async function lstatOrNull(path: string): Promise<Stats | null> {
  try {
    return await lstat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === `ENOENT`)
      return null;
    throw new EnvironmentFault(`cannot inspect ${path}: ${errorMessage(err)}`);
  }
}


/**
 * Creates the cache directory 0700 when missing, then checks it and every ancestor: owned by root
 * or by us, not writable by group/others (an ancestor may be if it is sticky, like /tmp).
 */
async function prepareCacheDir(ctx: ToolContext, cacheDir: string): Promise<void> {
  try {
    await mkdir(cacheDir, {recursive: true, mode: 0o700});
  } catch (err) {
    throw new EnvironmentFault(`cannot create the bpftool cache directory ${cacheDir}: ${errorMessage(err)}`);
  }
  const own = await lstat(cacheDir);
  if (!own.isDirectory())
    throw new EnvironmentFault(`refusing bpftool cache ${cacheDir}: not a directory (a symlink?)`);
  if (own.uid !== ctx.uid)
    throw new EnvironmentFault(`refusing bpftool cache ${cacheDir}: owned by ${ownerName(own.uid)}, not ${ownerName(ctx.uid)}`);
  if (own.mode & 0o022)
    throw new EnvironmentFault(`refusing bpftool cache ${cacheDir}: writable by group or others (mode ${(own.mode & 0o7777).toString(8)}); chmod 700 it or remove it`);
  // The path as given (a symlink on the way could be swapped by whoever owns its directory)...
  for (let dir = dirname(cacheDir); ; dir = dirname(dir)) {
    const stats = await lstat(dir);
    if (!stats.isSymbolicLink()) {
      if (stats.uid !== 0 && stats.uid !== ctx.uid)
        throw new EnvironmentFault(`refusing bpftool cache ${cacheDir}: its parent ${dir} is owned by ${ownerName(stats.uid)}`);
      if ((stats.mode & 0o022) && !(stats.mode & STICKY))
        throw new EnvironmentFault(`refusing bpftool cache ${cacheDir}: its parent ${dir} is writable by group or others and not sticky`);
    }
    if (dir === dirname(dir))
      break;
  }
  // ...and the directories it really is in: a symlink to another user's 0777 directory is that directory.
  let real: string;
  try {
    real = await realpath(cacheDir);
  } catch (err) {
    throw new EnvironmentFault(`cannot resolve the bpftool cache directory ${cacheDir}: ${errorMessage(err)}`);
  }
  const unsafe = await unsafeAncestor(dirname(real), ctx.uid);
  if (unsafe !== null)
    throw new EnvironmentFault(`refusing bpftool cache ${cacheDir}${real === cacheDir ? `` : ` (really ${real})`}: ${unsafe}`);
}

function checkSafeFile(ctx: ToolContext, path: string, stats: Stats): void {
  if (!stats.isFile())
    throw new EnvironmentFault(`refusing cached bpftool ${path}: not a regular file (a symlink?); remove it`);
  if (stats.uid !== ctx.uid)
    throw new EnvironmentFault(`refusing cached bpftool ${path}: owned by ${ownerName(stats.uid)}, not ${ownerName(ctx.uid)}; remove it`);
  if (stats.mode & 0o022)
    throw new EnvironmentFault(`refusing cached bpftool ${path}: writable by group or others (mode ${(stats.mode & 0o7777).toString(8)}); remove it`);
}

async function runsVersion(ctx: ToolContext, path: string): Promise<boolean> {
  try {
    const result = await ctx.runner.run(path, [`version`], {timeoutMs: VERSION_CHECK_MS});
    if (result.exitCode !== 0)
      ctx.log.debug(`${path} version: exit ${result.exitCode}${result.timedOut ? ` (timed out)` : ``}: ${result.stderr.trim().slice(-500)}`);
    return result.exitCode === 0;
  } catch (err) {
    ctx.log.debug(`${path} version: ${errorMessage(err)}`);
    return false;
  }
}

function fetchFailure(url: string, err: unknown): EnvironmentFault {
  if (err instanceof EnvironmentFault)
    return err;
  const name = (err as Error)?.name;
  if (name === `TimeoutError` || name === `AbortError`)
    return new EnvironmentFault(`cannot download ${url}: timed out`);
  // undici reports "fetch failed" with the socket error as the cause.
  const cause = (err as {cause?: unknown})?.cause;
  return new EnvironmentFault(`cannot download ${url}: ${cause ? errorMessage(cause) : errorMessage(err)}`);
}

async function startFetch(url: string, timeoutMs: number): Promise<Response> {
  let response: Response;
  try {
    response = await fetch(url, {signal: AbortSignal.timeout(timeoutMs), redirect: `follow`});
  } catch (err) {
    throw fetchFailure(url, err);
  }
  if (!response.ok) {
    await response.body?.cancel().catch(() => {});
    throw new EnvironmentFault(`cannot download ${url}: HTTP ${response.status} ${response.statusText}`.trim());
  }
  return response;
}

/** Streams the body into `path` (created exclusively, 0600) and returns its SHA-256. */
async function fetchToFile(url: string, path: string, timeoutMs: number): Promise<string> {
  const response = await startFetch(url, timeoutMs);
  const declared = Number(response.headers.get(`content-length`) ?? NaN);
  if (declared > MAX_ARCHIVE_BYTES) {
    await response.body?.cancel().catch(() => {});
    throw new EnvironmentFault(`refusing ${url}: ${declared} bytes is more than a bpftool archive can be (${MAX_ARCHIVE_BYTES})`);
  }
  const hash = createHash(`sha256`);
  const file = await open(path, `wx`, 0o600);
  let total = 0;
  try {
    for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
      total += chunk.length;
      if (total > MAX_ARCHIVE_BYTES)
        throw new EnvironmentFault(`refusing ${url}: more than ${MAX_ARCHIVE_BYTES} bytes`);
      hash.update(chunk);
      await file.write(chunk);
    }
  } catch (err) {
    throw fetchFailure(url, err);
  } finally {
    await file.close();
  }
  if (Number.isFinite(declared) && total !== declared)
    throw new EnvironmentFault(`cannot download ${url}: got ${total} of ${declared} bytes`);
  return hash.digest(`hex`);
}

async function fetchText(url: string, timeoutMs: number): Promise<string> {
  const response = await startFetch(url, timeoutMs);
  const chunks: Array<Uint8Array> = [];
  let total = 0;
  try {
    for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
      total += chunk.length;
      if (total > MAX_SUMFILE_BYTES)
        throw new EnvironmentFault(`refusing ${url}: too long for a checksum file`);
      chunks.push(chunk);
    }
  } catch (err) {
    throw fetchFailure(url, err);
  }
  return Buffer.concat(chunks).toString(`utf8`);
}

/** `<64 hex>  <file name>` as sha256sum writes it; the name, when present, must be the archive's. */
export function parseSumFile(text: string, archiveName: string, source: string): string {
  const line = text.split(`\n`).map(l => l.trim()).find(l => l.length > 0) ?? ``;
  const match = /^([0-9a-fA-F]{64})(?:\s+\*?(\S+))?$/.exec(line);
  if (!match)
    throw new EnvironmentFault(`refusing the download: ${source} does not hold a SHA-256 ("${line.slice(0, 80)}")`);
  if (match[2] !== undefined && basename(match[2]) !== archiveName)
    throw new EnvironmentFault(`refusing the download: ${source} is the checksum of ${match[2]}, not ${archiveName}`);
  return match[1].toLowerCase();
}

async function gunzipCapped(archive: Buffer, source: string): Promise<Buffer> {
  try {
    return await promisify(gunzip)(archive, {maxOutputLength: MAX_TAR_BYTES});
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === `ERR_BUFFER_TOO_LARGE`)
      throw new EnvironmentFault(`refusing ${source}: it unpacks to more than ${MAX_TAR_BYTES} bytes`);
    throw new EnvironmentFault(`refusing ${source}: not a complete gzip file (${errorMessage(err)})`);
  }
}

const BLOCK = 512;

function cString(block: Buffer, start: number, length: number): string {
  const end = block.indexOf(0, start);
  return block.toString(`utf8`, start, end === -1 || end > start + length ? start + length : end);
}

function tarNumber(block: Buffer, start: number, length: number): number {
  // GNU base-256 for values that do not fit the octal field.
  if (block[start] & 0x80) {
    let value = block[start] & 0x7f;
    for (let i = start + 1; i < start + length; i++)
      value = value * 256 + block[i];
    return value;
  }
  const text = cString(block, start, length).trim();
  return text === `` ? 0 : parseInt(text, 8);
}

/**
 * Returns the data of the one regular file called `wanted` (or `./wanted`) in a tar. Refuses the
 * whole archive on a bad header checksum, a member path that is absolute or climbs with `..`, a
 * link or other non-file under that name, two such members, an oversize member, or truncation.
 */
export function extractTarMember(tar: Buffer, wanted: string, maxSize: number, source: string): Buffer {
  const refuse = (why: string) => new EnvironmentFault(`refusing ${source}: ${why}`);
  let found: Buffer | null = null;
  let longName: string | null = null;
  let offset = 0;
  for (;;) {
    if (offset + BLOCK > tar.length)
      throw refuse(`the tar ends without its end-of-archive blocks (truncated)`);
    const header = tar.subarray(offset, offset + BLOCK);
    if (header.every(byte => byte === 0))
      break;
    let sum = 0;
    for (let i = 0; i < BLOCK; i++)
      sum += i >= 148 && i < 156 ? 0x20 : header[i];
    if (sum !== tarNumber(header, 148, 8))
      throw refuse(`a tar header at byte ${offset} has a bad checksum (corrupt)`);
    const type = String.fromCharCode(header[156] || 0x30);
    const size = tarNumber(header, 124, 12);
    const dataStart = offset + BLOCK;
    if (!Number.isSafeInteger(size) || size < 0 || dataStart + size > tar.length)
      throw refuse(`a tar member at byte ${offset} runs past the end of the archive (truncated)`);
    const data = tar.subarray(dataStart, dataStart + size);
    offset = dataStart + Math.ceil(size / BLOCK) * BLOCK;

    // Extension headers name the next member.
    if (type === `L` || type === `x`) {
      if (size > 64 * 1024)
        throw refuse(`an oversize extended header`);
      longName = type === `L` ? cString(data, 0, data.length) : paxPath(data) ?? longName;
      continue;
    }
    if (type === `g` || type === `K`)
      continue;

    let name = longName ?? cString(header, 0, 100);
    longName = null;
    if (header.toString(`latin1`, 257, 262) === `ustar` && header[345] !== 0 && name === cString(header, 0, 100))
      name = `${cString(header, 345, 155)}/${name}`;
    if (name.startsWith(`/`) || name.split(`/`).includes(`..`))
      throw refuse(`member "${name}" has an absolute or climbing path`);
    const normalized = name.replace(/^(\.\/)+/, ``).replace(/\/+$/, ``);
    if (normalized !== wanted)
      continue;
    if (type === `1` || type === `2`)
      throw refuse(`"${name}" is a link, not a file`);
    if (type !== `0` && type !== `7`)
      throw refuse(`"${name}" is not a regular file (tar type ${type})`);
    if (found)
      throw refuse(`it holds "${wanted}" twice`);
    if (size > maxSize)
      throw refuse(`"${name}" is ${size} bytes, more than ${maxSize}`);
    if (size === 0)
      throw refuse(`"${name}" is empty`);
    found = data;
  }
  if (!found)
    throw refuse(`it holds no "${wanted}" file`);
  return found;
}

function paxPath(data: Buffer): string | null {
  // Records are "<len> key=value\n".
  let path: string | null = null;
  let pos = 0;
  while (pos < data.length) {
    const space = data.indexOf(0x20, pos);
    if (space === -1)
      break;
    const length = parseInt(data.toString(`latin1`, pos, space), 10);
    if (!(length > 0))
      break;
    const record = data.toString(`utf8`, space + 1, pos + length - 1);
    if (record.startsWith(`path=`))
      path = record.slice(5);
    pos += length;
  }
  return path;
}
