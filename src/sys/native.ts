// Loads koffi, the FFI through which we call bpf() and setns(). Three ways, by how we run:
// - from the source tree: the koffi package in node_modules (require);
// - from the .cjs bundle: the native modules are in a comment at the end of the bundle (brotli,
//   base64), the one needed read from the file only when needed, at the place the build wrote
//   into the code; their SHA-256 is in the code (scripts/build.mjs);
// - from the standalone executable: the native module is a single-executable asset.
// A native module can only be loaded from a file. The embedded bytes are checked against their
// SHA-256, written to a fresh directory only we can write (mkdtemp: 0700, owned by us), loaded
// with process.dlopen and removed at once (the loaded mapping stays valid).
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {brotliDecompress, brotliDecompressSync} from 'node:zlib';
import {EMBEDDED_NATIVE, readAsset, readTrailer, requireKoffi} from './embedded.ts';

/** One platform's native module as carried by the bundle or the executable. */
export interface EmbeddedNative {
  /** koffi's directory name: linux_x64, linux_arm64, musl_x64, ... */
  triplet: string;
  /** SHA-256 of the module's bytes (hex). */
  sha256: string;
  /** The bundle's trailing comment holds the compressed bytes (bundle). */
  inTrailer?: boolean;
  /** The asset's key (standalone executable). */
  asset?: string;
}

/** What a worker thread needs to load the same module: a package to require, or bytes to check and load. */
export type NativeSpec = {kind: `require`, path: string} | {kind: `bytes`, bytes: Uint8Array, sha256: string};

/** The parts of koffi's API we use. */
export interface Koffi {
  load(path: string): {func(signature: string): (...args: Array<unknown>) => unknown};
  errno(): number;
  address(value: unknown): bigint;
  version: string;
}

export const KOFFI_VERSION = `2.16.3`;

/**
 * Loads a native module from bytes: checks the hash, writes it into a fresh private directory,
 * dlopens it, removes the directory. Self-contained (its text is also run in worker threads),
 * so it takes its modules as arguments.
 */
export function dlopenBytes(fsModule: typeof fs, pathModule: typeof path, cryptoModule: typeof crypto, tmpDir: string, bytes: Uint8Array, sha256: string): unknown {
  const digest = cryptoModule.createHash(`sha256`).update(bytes).digest(`hex`);
  if (digest !== sha256)
    throw new Error(`the embedded FFI module does not match its SHA-256 (${digest}, expected ${sha256})`);
  const dir = fsModule.mkdtempSync(pathModule.join(tmpDir, `usmld-ffi-`));
  try {
    const info = fsModule.lstatSync(dir);
    const uid = typeof process.geteuid === `function` ? process.geteuid() : info.uid;
    if (!info.isDirectory() || info.uid !== uid || (info.mode & 0o077) !== 0)
      throw new Error(`${dir} is not a private directory of ours`);
    const file = pathModule.join(dir, `koffi.node`);
    const {O_WRONLY, O_CREAT, O_EXCL, O_NOFOLLOW} = fsModule.constants;
    const fd = fsModule.openSync(file, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o500);
    try {
      fsModule.writeSync(fd, bytes);
    } finally {
      fsModule.closeSync(fd);
    }
    const loaded = {exports: {} as unknown};
    process.dlopen(loaded as {exports: object}, file);
    return loaded.exports;
  } finally {
    fsModule.rmSync(dir, {recursive: true, force: true});
  }
}

/** What a worker thread needs to load koffi as this thread did and open libc through it. */
export interface WorkerFfi {
  native: NativeSpec;
  tmpDir: string;
  /** libc names to try, in order. */
  libc: Array<string>;
  /** Texts of dlopenBytes and workerLibcFunction: code a worker evaluates cannot import. */
  loader: string;
  libcFunction: string;
}

export function workerFfi(native: NativeSpec, tmpDir: string, libc: Array<string>): WorkerFfi {
  return {native, tmpDir, libc, loader: dlopenBytes.toString(), libcFunction: workerLibcFunction.toString()};
}

/**
 * In a worker: koffi loaded as `ffi` says, and one libc function declared through it (the first
 * libc name that opens); throws when none does. Self-contained (its text runs in worker threads,
 * see workerFfi), so it takes the worker's `require`.
 */
export function workerLibcFunction(load: (id: string) => unknown, ffi: WorkerFfi, declaration: string): {koffi: Koffi, fn: (...args: Array<unknown>) => unknown} {
  const koffi = (ffi.native.kind === `require`
    ? load(ffi.native.path)
    // eslint-disable-next-line no-new-func
    : new Function(`return (${ffi.loader})`)()(load(`node:fs`), load(`node:path`), load(`node:crypto`), ffi.tmpDir, ffi.native.bytes, ffi.native.sha256)) as Koffi;
  for (const name of ffi.libc) {
    try {
      return {koffi, fn: koffi.load(name).func(declaration)};
    } catch {
      // the next libc name
    }
  }
  throw new Error(`libc cannot be opened through the FFI`);
}

function platformTriplets(): Array<string> {
  const arch = process.arch === `x64` ? `x64` : process.arch === `arm64` ? `arm64` : process.arch;
  return [`linux_${arch}`, `musl_${arch}`];
}

/** The bundle's first module for this platform, being decompressed off this thread (decompressAhead); `done` settles when it is. */
let ahead: {triplet: string, bytes: Uint8Array | null, done: Promise<void>} | null = null;

/**
 * Starts decompressing the bundle's first module for this platform on the thread pool (brotli,
 * 1.6 MB: 5-7 ms), so that a load soon after finds it done (a live scan asks at its start, and
 * loads the FFI once its socket tables are read). Only the bundle's trailer, only once; a load
 * that comes first decompresses on its own thread as before. Either way the bytes are checked
 * against their SHA-256 when loaded.
 */
export function decompressAhead(): void {
  if (EMBEDDED_NATIVE === null || ahead !== null)
    return;
  const entry = EMBEDDED_NATIVE.find(candidate => candidate.triplet === platformTriplets()[0]);
  if (entry === undefined || entry.asset !== undefined)
    return;
  let settle = () => {};
  const slot: {triplet: string, bytes: Uint8Array | null, done: Promise<void>} = {triplet: entry.triplet, bytes: null, done: new Promise(resolve => { settle = resolve; })};
  ahead = slot;
  try {
    // One output chunk for the whole module: each chunk is a turn of this thread's event loop.
    brotliDecompress(Buffer.from(readTrailer(entry.triplet), `base64`), {chunkSize: 4 << 20}, (err, bytes) => {
      if (err === null)
        slot.bytes = bytes;
      settle();
    });
  } catch {
    // the load decompresses it, and says what is wrong
    settle();
  }
}

/** Settles once what decompressAhead started is done (at once when it started nothing). */
export function decompressedAhead(): Promise<void> {
  return ahead?.done ?? Promise.resolve();
}

function embeddedBytes(entry: EmbeddedNative): Uint8Array {
  if (entry.asset !== undefined)
    return readAsset(entry.asset);
  if (ahead !== null && ahead.triplet === entry.triplet && ahead.bytes !== null) {
    const bytes = ahead.bytes;
    ahead.bytes = null;
    return bytes;
  }
  return brotliDecompressSync(Buffer.from(readTrailer(entry.triplet), `base64`));
}

/**
 * The module's bytes in shared memory: the worker threads that load the FFI too (scan's
 * read-ahead worker, a setns reader) are handed them without a copy. A copy made by postMessage
 * (2.6 MB and its fresh pages) took 5-7 ms of a scan's main thread.
 */
function inSharedMemory(bytes: Uint8Array): Uint8Array {
  const shared = new Uint8Array(new SharedArrayBuffer(bytes.length));
  shared.set(bytes);
  return shared;
}

export interface LoadedKoffi {
  koffi: Koffi;
  spec: NativeSpec;
}

/** Loads koffi the way this build carries it; throws with the reason when it cannot. */
export function loadKoffi(tmpDir: string): LoadedKoffi {
  if (EMBEDDED_NATIVE === null) {
    const {koffi, path: packagePath} = requireKoffi();
    return {koffi: koffi as Koffi, spec: {kind: `require`, path: packagePath}};
  }
  const errors: Array<string> = [];
  for (const triplet of platformTriplets()) {
    const entry = EMBEDDED_NATIVE.find(candidate => candidate.triplet === triplet);
    if (entry === undefined)
      continue;
    try {
      const bytes = inSharedMemory(embeddedBytes(entry));
      const koffi = dlopenBytes(fs, path, crypto, tmpDir, bytes, entry.sha256) as Koffi;
      if (koffi.version !== KOFFI_VERSION)
        throw new Error(`the FFI module is version ${koffi.version}, expected ${KOFFI_VERSION}`);
      return {koffi, spec: {kind: `bytes`, bytes, sha256: entry.sha256}};
    } catch (err) {
      errors.push(`${triplet}: ${(err as Error).message}`);
    }
  }
  if (errors.length === 0)
    throw new Error(`this build carries no FFI module for ${process.platform} ${process.arch} (it has ${EMBEDDED_NATIVE.map(entry => entry.triplet).join(`, `)})`);
  throw new Error(errors.join(`; `));
}
