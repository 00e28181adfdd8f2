// The one way the tool reads a small file it did not write: /proc files and the files of a
// capture directory. A FIFO or a device (/dev/zero) planted where `stat`, `net/tcp` or `mountinfo`
// should be would block or never end: the file is opened non-blocking, must be a regular file,
// and is read up to a size bound. The last path component is opened with O_NOFOLLOW, so a
// capture whose `proc/1/stat` is a symlink to /etc/passwd is refused instead of printed (procfs
// itself has no symlinks at those names).
import {closeSync, constants, fstatSync, openSync, readSync} from 'node:fs';
import {open, type FileHandle} from 'node:fs/promises';

/** Default bound: far above any real proc file (a net/tcp of 1M sockets is ~150 MB). */
export const DEFAULT_MAX_READ_BYTES = 512 * 1024 * 1024;

const FLAGS = constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOFOLLOW;
const CHUNK = 64 * 1024;

/** A file that is not what a reader may read: not regular, a symlink, or larger than the bound. */
export class UnreadableFile extends Error {
  constructor(readonly path: string, readonly code: string, readonly reason: string) {
    super(`${path}: ${reason}`);
    this.name = `UnreadableFile`;
  }
}

function describeKind(mode: number): string {
  switch (mode & constants.S_IFMT) {
    case constants.S_IFIFO: return `a FIFO`;
    case constants.S_IFCHR: return `a character device`;
    case constants.S_IFBLK: return `a block device`;
    case constants.S_IFSOCK: return `a socket`;
    case constants.S_IFDIR: return `a directory`;
    default: return `not a regular file`;
  }
}

function symlinkRefusal(path: string, err: unknown): never {
  // O_NOFOLLOW on a symlink fails with ELOOP.
  if ((err as NodeJS.ErrnoException)?.code === `ELOOP`)
    throw new UnreadableFile(path, `ELOOP`, `is a symbolic link (not followed)`);
  throw err;
}

function tooLarge(path: string, maxBytes: number): UnreadableFile {
  return new UnreadableFile(path, `EFBIG`, `larger than ${maxBytes} bytes`);
}

/**
 * Where every synchronous read lands first. Most files (a process's stat or status) are a few
 * hundred bytes: a fresh 64 KiB buffer per file, kept alive by the slice returned, made 2.5 GB of
 * short-lived memory outside the heap for 20,000 processes (RSS grew with it until a full GC).
 */
let scratch: Buffer | null = null;

/**
 * Reads a regular file whole, up to `maxBytes`. Throws the open's errno error (ENOENT, EACCES,
 * ... with `code`, as fs does) or UnreadableFile (code ELOOP, EFTYPE or EFBIG) for what it refuses.
 */
export function readBoundedSync(path: string, maxBytes = DEFAULT_MAX_READ_BYTES): Buffer {
  // Copied out at its size: the scratch serves the next file.
  return readWhole(path, maxBytes, (buffer, length) => Buffer.from(buffer.subarray(0, length)));
}

/**
 * The file's bytes read into one buffer (the scratch, grown into a buffer of this read's own when
 * the file is bigger), handed to `take` while they are there. procfs gives a big table a page
 * per read(): hundreds of reads, each landing after the last, with no copy per read.
 */
function readWhole<T>(path: string, maxBytes: number, take: (buffer: Buffer, length: number) => T): T {
  let fd: number;
  try {
    fd = openSync(path, FLAGS);
  } catch (err) {
    symlinkRefusal(path, err);
  }
  try {
    const info = fstatSync(fd);
    if (!info.isFile())
      throw new UnreadableFile(path, `EFTYPE`, `is ${describeKind(info.mode)}, not a regular file`);
    scratch ??= Buffer.allocUnsafe(CHUNK);
    let buffer = scratch;
    let length = 0;
    for (;;) {
      if (length === buffer.length) {
        const grown = Buffer.allocUnsafe(Math.min(buffer.length * 2, maxBytes + 1));
        buffer.copy(grown, 0, 0, length);
        buffer = grown;
      }
      // Up to one byte past the bound, so a longer file is noticed.
      const n = readSync(fd, buffer, length, Math.min(buffer.length, maxBytes + 1) - length, null);
      if (n === 0)
        break;
      length += n;
      if (length > maxBytes)
        throw tooLarge(path, maxBytes);
    }
    return take(buffer, length);
  } finally {
    closeSync(fd);
  }
}

/** What the async reader has read so far, refusing more than maxBytes. */
class BoundedChunks {
  private readonly chunks: Array<Buffer> = [];
  private total = 0;

  constructor(private readonly path: string, private readonly maxBytes: number) {}

  /** The most the next read may ask for: one byte past the bound, so a longer file is noticed. */
  room(): number {
    return this.maxBytes - this.total + 1;
  }

  add(buffer: Buffer, bytesRead: number): void {
    this.total += bytesRead;
    if (this.total > this.maxBytes)
      throw tooLarge(this.path, this.maxBytes);
    this.chunks.push(bytesRead === buffer.length ? buffer : buffer.subarray(0, bytesRead));
  }

  joined(): Buffer {
    return this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks, this.total);
  }
}

/**
 * The chunks of a regular file (same refusals as readBoundedSync, no size bound: for the large
 * dumps of a capture, which the consumer bounds itself), all read into ONE buffer: a chunk is
 * the consumer's only until it asks for the next. (A read stream allocates a buffer per chunk,
 * and at hundreds of megabytes those pile up outside the heap until a full collection.)
 */
export async function* regularFileChunks(path: string, chunkBytes = 4 * CHUNK): AsyncGenerator<Buffer> {
  const {handle} = await openRegularFile(path);
  try {
    const buffer = Buffer.allocUnsafe(chunkBytes);
    for (;;) {
      const {bytesRead} = await handle.read(buffer, 0, buffer.length, null);
      if (bytesRead === 0)
        return;
      yield buffer.subarray(0, bytesRead);
    }
  } finally {
    await handle.close();
  }
}

/** Opens a regular file with the refusals of readBoundedSync; the handle is closed when it is not one. */
async function openRegularFile(path: string): Promise<{handle: FileHandle, size: number}> {
  let handle;
  try {
    handle = await open(path, FLAGS);
  } catch (err) {
    symlinkRefusal(path, err);
  }
  const info = await handle.stat();
  if (!info.isFile()) {
    await handle.close();
    throw new UnreadableFile(path, `EFTYPE`, `is ${describeKind(info.mode)}, not a regular file`);
  }
  return {handle, size: info.size};
}

/** At most the first `bytes` bytes of a regular file (same refusals, no error when it is longer). */
export async function readPrefix(path: string, bytes: number): Promise<Buffer> {
  const {handle} = await openRegularFile(path);
  try {
    const buffer = Buffer.alloc(bytes);
    const {bytesRead} = await handle.read(buffer, 0, bytes, 0);
    return buffer.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}

/** readBoundedSync, through the thread pool. */
export async function readBounded(path: string, maxBytes = DEFAULT_MAX_READ_BYTES): Promise<Buffer> {
  const {handle, size} = await openRegularFile(path);
  try {
    const chunks = new BoundedChunks(path, maxBytes);
    for (;;) {
      // procfs reports size 0: read until EOF, never trusting st_size.
      const buffer = Buffer.allocUnsafe(Math.min(Math.max(CHUNK, Math.min(size + 1, 16 * CHUNK)), chunks.room()));
      const {bytesRead} = await handle.read(buffer, 0, buffer.length, null);
      if (bytesRead === 0)
        break;
      chunks.add(buffer, bytesRead);
    }
    return chunks.joined();
  } finally {
    await handle.close();
  }
}

/** readBounded as text (`utf8`, or `latin1` for the ASCII proc tables). */
export async function readBoundedText(path: string, encoding: BufferEncoding = `utf8`, maxBytes?: number): Promise<string> {
  return (await readBounded(path, maxBytes)).toString(encoding);
}

/** readBoundedSync as text, made straight from the bytes read (no copy of them first). */
export function readBoundedTextSync(path: string, encoding: BufferEncoding = `utf8`, maxBytes = DEFAULT_MAX_READ_BYTES): string {
  return readWhole(path, maxBytes, (buffer, length) => buffer.toString(encoding, 0, length));
}
