// Every file the tool writes is created here: exclusively (O_EXCL, so an existing file or a
// symlink planted at the path is never followed or overwritten), without following a final
// symlink (O_NOFOLLOW), mode 0600 (captures hold process names and connections). An existing
// path is refused unless the user said --force, and then it is unlinked (the link itself, never
// its target) and created afresh. Temporary directories come from makeTempDir: private (0700,
// mkdtemp) and registered for removal on every exit path.
import {constants, createWriteStream, mkdtempSync, openSync, rmSync, type WriteStream} from 'node:fs';
import {lstat, open, unlink} from 'node:fs/promises';
import {join} from 'node:path';
import {atExit} from './cleanup.ts';
import type {ToolContext} from './context.ts';
import {EnvironmentFault} from './errors.ts';

const CREATE = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;

function code(err: unknown): string {
  return (err as NodeJS.ErrnoException)?.code ?? (err as Error)?.message ?? String(err);
}

/**
 * Creates `path` for writing (see above). `what` names it in messages (`--capture FILE`).
 * Resolves once the file is open; the stream's errors are the caller's to watch.
 */
export async function createPrivateFile(path: string, options: {force?: boolean, what?: string} = {}): Promise<WriteStream> {
  const what = options.what ?? path;
  if (options.force) {
    const existing = await lstat(path).catch(() => null);
    if (existing?.isDirectory())
      throw new EnvironmentFault(`${what}: is a directory`);
    if (existing !== null) {
      try {
        await unlink(path);
      } catch (err) {
        throw new EnvironmentFault(`${what}: cannot replace the existing file: ${code(err)}`);
      }
    }
  }
  let handle;
  try {
    handle = await open(path, CREATE, 0o600);
  } catch (err) {
    const errno = code(err);
    if (errno === `EEXIST` || errno === `ELOOP`)
      throw new EnvironmentFault(`${what}: already exists${errno === `ELOOP` ? ` (a symbolic link)` : ``}; not overwriting it (give --force to replace it, or another path)`);
    throw new EnvironmentFault(`${what}: cannot write: ${errno}`);
  }
  return handle.createWriteStream();
}

export interface TempDir {
  path: string;
  /** Removes the directory now (idempotent) and forgets its exit action. */
  remove(): void;
}

/** A private temporary directory under ctx.tmpDir, removed at the latest when the process ends. */
export function makeTempDir(ctx: ToolContext, prefix: string): TempDir {
  let path: string;
  try {
    path = mkdtempSync(join(ctx.tmpDir, prefix));
  } catch (err) {
    throw new EnvironmentFault(`cannot create a temporary directory in ${ctx.tmpDir} (set TMPDIR to a writable directory): ${code(err)}`);
  }
  let removed = false;
  const remove = () => {
    if (removed)
      return;
    removed = true;
    forget();
    rmSync(path, {recursive: true, force: true});
  };
  const forget = atExit(remove);
  return {path, remove};
}

/** A new file in a private temporary directory (the directory was made by us, 0700). */
export function createTempFile(path: string): WriteStream {
  return createWriteStream(path, {fd: openTempFile(path)});
}

/** The same, as a descriptor for synchronous writes (the caller closes it). */
export function openTempFile(path: string): number {
  try {
    return openSync(path, CREATE, 0o600);
  } catch (err) {
    throw new EnvironmentFault(`cannot create ${path}: ${code(err)}`);
  }
}
