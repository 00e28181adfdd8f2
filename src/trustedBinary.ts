// Which binaries the tool may run. As root, a binary an unprivileged user could have planted or
// replaced (a `bpftool` in a world-writable directory early on PATH, owned by `nobody`) would run
// with root's privileges. So, as root, a binary runs only when it and every directory above it
// (after resolving symlinks, and also every directory above the path it was found at) are owned
// by root or by us and are not writable by group or others; a directory may be writable if it is
// sticky (like /tmp), since then nobody else can replace what is in it. The same rule guards the
// bpftool download cache (src/dump/download.ts). Every PATH lookup goes through findTrusted.
import {constants, type Stats} from 'node:fs';
import {access, realpath, stat} from 'node:fs/promises';
import {delimiter, dirname, join} from 'node:path';
import type {ToolContext} from './context.ts';
import {EnvironmentFault, errorMessage} from './errors.ts';

export const STICKY = 0o1000;

export const ownerName = (uid: number): string => uid === 0 ? `root` : `uid ${uid}`;

function badOwner(stats: Stats, uid: number): boolean {
  return stats.uid !== 0 && stats.uid !== uid;
}

/**
 * Why `dir` and every directory above it are unsafe to hold a file root trusts (null when safe):
 * owned by someone other than root or `uid`, or writable by group/others without the sticky bit.
 * `dir` should be a real path (resolve symlinks first: a link to another user's 0777 directory
 * is that directory).
 */
export async function unsafeAncestor(dir: string, uid: number): Promise<string | null> {
  for (let current = dir; ; current = dirname(current)) {
    let stats: Stats;
    try {
      stats = await stat(current);
    } catch (err) {
      return `cannot inspect ${current}: ${(err as NodeJS.ErrnoException).code ?? errorMessage(err)}`;
    }
    if (badOwner(stats, uid))
      return `directory ${current} is owned by ${ownerName(stats.uid)}`;
    if ((stats.mode & 0o022) && !(stats.mode & STICKY))
      return `directory ${current} is writable by group or others and not sticky (mode ${(stats.mode & 0o7777).toString(8)})`;
    if (current === dirname(current))
      return null;
  }
}

/** Why running `path` as `uid` could run someone else's code (null when it could not). */
export async function untrustedReason(path: string, uid: number): Promise<string | null> {
  let real: string;
  let stats: Stats;
  try {
    real = await realpath(path);
    stats = await stat(real);
  } catch (err) {
    return `cannot inspect ${path}: ${(err as NodeJS.ErrnoException).code ?? errorMessage(err)}`;
  }
  const shown = real === path ? path : `${path} (${real})`;
  if (!stats.isFile())
    return `${shown} is not a regular file`;
  if (badOwner(stats, uid))
    return `${shown} is owned by ${ownerName(stats.uid)}`;
  if (stats.mode & 0o022)
    return `${shown} is writable by group or others (mode ${(stats.mode & 0o7777).toString(8)})`;
  const realParent = await unsafeAncestor(dirname(real), uid);
  if (realParent !== null)
    return `${shown}: ${realParent}`;
  // The directory it was found in matters too: a symlink there could be swapped for another.
  let foundIn: string;
  try {
    foundIn = await realpath(dirname(path));
  } catch (err) {
    return `cannot inspect ${dirname(path)}: ${(err as NodeJS.ErrnoException).code ?? errorMessage(err)}`;
  }
  if (foundIn !== dirname(real)) {
    const parent = await unsafeAncestor(foundIn, uid);
    if (parent !== null)
      return `${path}: ${parent}`;
  }
  return null;
}

/** The rule applies to root only: anyone else runs with no more privilege than the planter. */
function enforced(ctx: ToolContext): boolean {
  return ctx.uid === 0;
}

async function isExecutableFile(path: string): Promise<boolean> {
  try {
    const info = await stat(path);
    if (!info.isFile())
      return false;
    await access(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

export interface SearchDirs {
  /** Looked in before PATH. */
  first?: ReadonlyArray<string>;
  /** Looked in after PATH. */
  last?: ReadonlyArray<string>;
}

/**
 * Executable files named `name` in `first`, the PATH directories (absolute ones only: never `.`),
 * then `last`, that may run. Candidates refused by the rule are skipped with a warning.
 */
export async function findTrusted(ctx: ToolContext, name: string, extra: SearchDirs = {}): Promise<Array<string>> {
  const dirs = [...extra.first ?? [], ...(ctx.env.PATH ?? ``).split(delimiter).filter(dir => dir.startsWith(`/`)), ...extra.last ?? []];
  const found: Array<string> = [];
  for (const dir of dirs) {
    const candidate = join(dir, name);
    if (found.includes(candidate) || !await isExecutableFile(candidate))
      continue;
    if (await isTrusted(ctx, candidate))
      found.push(candidate);
  }
  return found;
}

/** Whether `path` may run; when it may not (as root), says why on stderr. */
export async function isTrusted(ctx: ToolContext, path: string): Promise<boolean> {
  if (!enforced(ctx))
    return true;
  const reason = await untrustedReason(path, ctx.uid);
  if (reason === null)
    return true;
  ctx.log.warn(`not running ${path} as root: ${reason} (another user could have planted or changed it)`);
  return false;
}

/** A binary the user named (`--bpftool PATH`): refused with exit 3 when the rule says no. */
export async function requireTrusted(ctx: ToolContext, path: string, flag: string): Promise<void> {
  if (!enforced(ctx))
    return;
  const reason = await untrustedReason(path, ctx.uid);
  if (reason !== null)
    throw new EnvironmentFault(`${flag} ${path}: refusing to run it as root: ${reason}; make it and its directories owned by root and not writable by group or others`);
}

/** The first trusted `name` (in `extra.first`, PATH, `extra.last`), or exit 3 saying none was found. */
export async function trustedCommand(ctx: ToolContext, name: string, extra: SearchDirs = {}): Promise<string> {
  const [path] = await findTrusted(ctx, name, extra);
  if (path === undefined)
    throw new EnvironmentFault(`${name}: not found on PATH${enforced(ctx) ? ` (as root, only in directories owned by root and not writable by others)` : ``}`);
  return path;
}
