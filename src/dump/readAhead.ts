// Batch lookups in a worker thread: while the main thread decodes and judges one chunk of a map,
// the worker is already in the kernel for the next ones (scan's 2nd core). The worker makes only
// the BPF_MAP_LOOKUP_BATCH calls, on the map's read-only fd the main thread opened (fds are the
// process's), and transfers each chunk's raw key and value bytes (ArrayBuffers, never records).
// It keeps at most AHEAD chunks unread per map, counted in shared memory (a message per chunk
// read cost the main thread more than the lookups it saved); the main thread decides everything
// else (errors, the key-by-key walk where the kernel has no batch lookup) as when it reads itself.
//
// scan starts the worker before its snapshots: the thread's start-up, and the walk of every
// process's fd/ (src/snapshot/fdLinks.ts), then run on the 2nd core while the main thread reads
// the socket tables. The FFI is handed over once the main thread has loaded it; no map entry is
// read before the dump asks for it, after the snapshots.
import {Worker} from 'node:worker_threads';
import * as fs from 'node:fs';
import {sharedWalkState, walkFdDir, walkSharedFdLinks, type FdWalks} from '../snapshot/fdLinks.ts';
import {workerFfi, type WorkerFfi} from '../sys/native.ts';
import {ENOSPC, libcNames, SYS_BPF, type Syscalls} from '../sys/syscalls.ts';

/** At most this long, close() waits for the worker to leave native code. */
const CLOSE_WAIT_MS = 2000;

/** Chunks read ahead of the one being judged, per map. */
const AHEAD = 2;
/** Entries per batch lookup in the worker: fewer messages than the main thread's chunk. */
export const READ_AHEAD_ENTRIES = 4096;

/** One chunk as the worker read it: the lookup's result (0 or -errno) and its entries. */
export interface ReadChunk {
  result: number;
  count: number;
  /** The lookup was the map's first (no batch token yet): EINVAL there means no batch lookup. */
  first: boolean;
  keys: ArrayBuffer;
  values: ArrayBuffer;
}

interface FfiRequest {
  op: `ffi`;
  ffi: WorkerFfi;
  sysBpf: number;
}

interface WalkRequest {
  op: `walk`;
  id: number;
  procRoot: string;
  skipPid: number;
  /** The walk's shared state (walkSharedFdLinks): the main thread walks it too, when it is idle. */
  shared: Int32Array;
}

/** Processes a shared walk lists for both threads (more are walked by the thread that lists them, alone). */
const SHARED_WALK_ROOM = 1 << 16;

/** The fd/ walks of a look, made in the worker; help() walks on this thread too until they meet. */
export interface SharedWalk {
  /** Every walk, the worker's and help()'s; null when the worker could not walk. */
  done: Promise<FdWalks | null>;
  /**
   * Walks, on this thread, the processes the worker has not got to yet (call once, when idle);
   * returns every walk when this thread made them all (done need not be waited for), else null.
   */
  help(): FdWalks | null;
}

interface ReadRequest {
  op: `read`;
  id: number;
  fd: number;
  keySize: number;
  valueBytes: number;
  tokenSize: number;
  room: number;
  ahead: number;
  /** [chunks the main thread has taken, stop flag]: the worker waits on the first. */
  control: Int32Array;
}

/** The worker's body: plain JavaScript run with `eval` (see src/sys/netns.ts), given its data. */
function workerBody(): void {
  /* eslint-disable @typescript-eslint/no-require-imports */
  const {parentPort, workerData} = require(`node:worker_threads`);
  const fsModule = require(`node:fs`);
  const data = workerData as {walkFdDir: string, walkSharedFdLinks: string, nativeState: Int32Array};
  // [0: idle, 1: in native code (the FFI loading, a lookup), 2: closing]: the main thread ends
  // this thread only when it is not in native code (see ReadAhead.close()).
  const nativeState = data.nativeState;
  const ENOENT = 2;
  const ENOSPC = 28;
  const BPF_MAP_LOOKUP_BATCH = 24;
  let koffi: {address(buffer: Buffer): bigint, errno(): number} | null = null;
  let call: ((...args: Array<unknown>) => unknown) | null = null;
  let sysBpf = 0;
  const attr = Buffer.alloc(64);
  interface Stream {
    id: number;
    fd: number;
    keySize: number;
    valueBytes: number;
    room: number;
    ahead: number;
    sent: number;
    control: Int32Array;
    inBatch: Buffer | null;
    outBatch: Buffer;
  }
  // No named inner functions here: a bundler's name-keeping helper would not exist in the worker.
  parentPort.on(`message`, (request: FfiRequest | WalkRequest | ReadRequest) => {
    if (request.op === `ffi`) {
      // Closing: nothing more is loaded.
      if (Atomics.compareExchange(nativeState, 0, 0, 1) !== 0)
        return;
      try {
        // eslint-disable-next-line no-new-func
        const loaded = new Function(`return (${request.ffi.libcFunction})`)()(require, request.ffi, `long syscall(long number, ...)`);
        koffi = loaded.koffi;
        call = loaded.fn;
        sysBpf = request.sysBpf;
      } catch (err) {
        parentPort.postMessage({type: `failed`, error: (err as Error).message});
      } finally {
        Atomics.store(nativeState, 0, 0);
        Atomics.notify(nativeState, 0);
      }
      return;
    }
    if (request.op === `walk`) {
      let walks: FdWalks | null = null;
      try {
        // eslint-disable-next-line no-new-func
        const walkShared = new Function(`return (${data.walkSharedFdLinks})`)() as typeof walkSharedFdLinks;
        // eslint-disable-next-line no-new-func
        walks = walkShared(fsModule, new Function(`return (${data.walkFdDir})`)(), request.procRoot, request.skipPid, request.shared).walks;
      } catch {
        // the main thread walks them itself
      }
      parentPort.postMessage({type: `walked`, id: request.id, walks});
      return;
    }
    if (koffi === null || call === null) {
      parentPort.postMessage({type: `failed`, error: `no FFI in the read-ahead worker`});
      return;
    }
    const stream: Stream = {
      id: request.id, fd: request.fd, keySize: request.keySize, valueBytes: request.valueBytes, room: request.room,
      ahead: request.ahead, sent: 0, control: request.control, inBatch: null, outBatch: Buffer.alloc(request.tokenSize),
    };
    const control = stream.control;
    for (;;) {
      if (Atomics.load(control, 1) !== 0) {
        parentPort.postMessage({type: `stopped`, id: stream.id});
        return;
      }
      const taken = Atomics.load(control, 0);
      if (stream.sent - taken >= stream.ahead) {
        // Polled, not woken: a wake-up per chunk costs the main thread a syscall (and, on a busy
        // host, its time slice); a chunk takes the main thread far longer than this to judge.
        Atomics.wait(control, 0, taken, 1);
        continue;
      }
      const keys = new ArrayBuffer(stream.room * Math.max(stream.keySize, 1));
      const values = new ArrayBuffer(stream.room * Math.max(stream.valueBytes, 1));
      // Closing: no more lookups.
      if (Atomics.compareExchange(nativeState, 0, 0, 1) !== 0)
        return;
      let result: number;
      try {
        attr.fill(0);
        if (stream.inBatch !== null)
          attr.writeBigUInt64LE(koffi.address(stream.inBatch), 0);
        attr.writeBigUInt64LE(koffi.address(stream.outBatch), 8);
        attr.writeBigUInt64LE(koffi.address(Buffer.from(keys)), 16);
        attr.writeBigUInt64LE(koffi.address(Buffer.from(values)), 24);
        attr.writeUInt32LE(stream.room, 32);
        attr.writeUInt32LE(stream.fd, 36);
        const returned = Number(call(sysBpf, `int`, BPF_MAP_LOOKUP_BATCH, `void *`, attr, `uint32_t`, 56));
        result = returned < 0 ? -koffi.errno() : returned;
      } finally {
        Atomics.store(nativeState, 0, 0);
        Atomics.notify(nativeState, 0);
      }
      const count = result < 0 && result !== -ENOENT && result !== -ENOSPC ? 0 : attr.readUInt32LE(32);
      const first = stream.inBatch === null;
      if (result === 0 || (result === -ENOSPC && count > 0)) {
        stream.inBatch ??= Buffer.alloc(stream.outBatch.length);
        stream.outBatch.copy(stream.inBatch);
      }
      // One hash bucket holds more entries than there was room for: ask again with more room.
      if (result === -ENOSPC)
        stream.room *= 2;
      stream.sent += 1;
      parentPort.postMessage({type: `chunk`, id: stream.id, result, count, first, keys, values}, [keys, values]);
      if (result !== 0 && result !== -ENOSPC)
        return;
    }
  });
}

/** The chunks of one map, in order, as the worker reads them. */
export interface ChunkStream {
  /** The next chunk; null when the worker failed (read on the main thread then). */
  next(): Promise<ReadChunk | null>;
  /** Stops the reading; `closeFd` runs once the worker is done with the fd (at once when it is). */
  release(closeFd: () => void): void;
}

interface StreamState {
  chunks: Array<ReadChunk>;
  waiting: ((chunk: ReadChunk | null) => void) | null;
  /** The worker sent the last chunk, or acknowledged the stop: the fd is free. */
  finished: boolean;
  onFinished: (() => void) | null;
}

/**
 * The worker's code and the texts it is given, as spawnWorker starts it. scripts/build.mjs writes
 * them into the bundle's and the executable's loaders too, which start the worker even sooner
 * (LOADER_STARTED).
 */
export function readAheadWorkerSpec(): {code: string, walkFdDir: string, walkSharedFdLinks: string} {
  return {code: `(${workerBody.toString()})()`, walkFdDir: walkFdDir.toString(), walkSharedFdLinks: walkSharedFdLinks.toString()};
}

function spawnWorker(nativeState: Int32Array): Worker {
  const spec = readAheadWorkerSpec();
  return new Worker(spec.code, {
    eval: true,
    workerData: {walkFdDir: spec.walkFdDir, walkSharedFdLinks: spec.walkSharedFdLinks, nativeState},
    env: {},
    stdout: false,
    stderr: false,
  });
}

/** A worker started before the program was loaded, until a ReadAhead adopts it; who started it. */
interface EarlyWorker {
  worker: Worker;
  nativeState: Int32Array;
  failed: boolean;
  by: `loader` | `program`;
}
let early: EarlyWorker | null = null;

/**
 * Where the bundle's (or the executable's) loader leaves the worker it started, for a live scan
 * as root, before it read the program's code (scripts/build.mjs: tens of ms sooner than the
 * program itself can): an EarlyWorker, its `error` and `exit` already watched.
 */
const LOADER_STARTED = Symbol.for(`usm-leak-detector.earlyReadAhead`);

/**
 * Starts the next ReadAhead's worker now, before the rest of the program is loaded (a live scan:
 * the thread's start-up, tens of ms of CPU, then overlaps that and the command line's parsing);
 * ReadAhead.start() adopts it. Until then it loads nothing native (the FFI comes only through a
 * ReadAhead), so ending it at any moment is safe, and it never keeps the process alive.
 */
export function startReadAheadEarly(): void {
  if (early !== null)
    return;
  const holder = globalThis as {[LOADER_STARTED]?: Omit<EarlyWorker, `by`>};
  const fromLoader = holder[LOADER_STARTED];
  delete holder[LOADER_STARTED];
  if (fromLoader !== undefined) {
    // The loader's own object: its handlers of `error` and `exit` mark it failed.
    early = Object.assign(fromLoader, {by: `loader` as const});
    return;
  }
  const nativeState = new Int32Array(new SharedArrayBuffer(4));
  try {
    const started: EarlyWorker = {worker: spawnWorker(nativeState), nativeState, failed: false, by: `program`};
    started.worker.unref();
    started.worker.on(`error`, () => {
      started.failed = true;
    });
    started.worker.on(`exit`, () => {
      started.failed = true;
    });
    early = started;
  } catch {
    // the scan starts its own
  }
}

/** Ends the early worker when no ReadAhead adopted it (the run was no live scan after all). */
export function endEarlyReadAhead(): void {
  const unadopted = early;
  early = null;
  void unadopted?.worker.terminate();
}

/**
 * The worker that reads ahead (and walks fd/ for scan), started on first use and ended by
 * close(). A worker that cannot start or load the FFI answers null to every read (and walk): the
 * caller then does it on its own thread.
 */
export class ReadAhead {
  /** Who started its worker: the bundle's loader or the program before this was made (early), or this (on first use). */
  startedBy: `loader` | `program` | `reader` | null = null;
  private worker: Worker | null = null;
  private failed = false;
  /** The FFI was handed to the worker (reads wait for it there). */
  private ffi = false;
  private nextId = 1;
  private readonly streams = new Map<number, StreamState>();
  private readonly walks = new Map<number, (walks: FdWalks | null) => void>();
  /** Chunks received from the worker (said at debug level). */
  chunks = 0;
  /** Whether the worker is in native code: see close(). */
  private nativeState: Int32Array = new Int32Array(new SharedArrayBuffer(4));

  /** `room`: entries per lookup (tests make it small, to make hash buckets overflow it). */
  constructor(private readonly tmpDir: string, private readonly room = READ_AHEAD_ENTRIES) {}

  /** Starts the worker now (its start-up overlaps with what the main thread does meanwhile). */
  start(): void {
    if (this.worker !== null || this.failed)
      return;
    // The worker started before the program was loaded (startReadAheadEarly), when there is one.
    const adopted = early;
    early = null;
    if (adopted !== null && !adopted.failed) {
      this.worker = adopted.worker;
      this.nativeState = adopted.nativeState;
      this.startedBy = adopted.by;
    } else {
      void adopted?.worker.terminate();
      try {
        this.worker = spawnWorker(this.nativeState);
        this.startedBy = `reader`;
      } catch {
        this.failed = true;
        return;
      }
    }
    this.worker.unref();
    this.worker.on(`message`, (message: {type: string, id?: number, walks?: FdWalks | null} & Partial<ReadChunk>) => this.receive(message));
    this.worker.on(`error`, () => this.fail());
    this.worker.on(`exit`, () => this.fail());
  }

  /** Hands the worker the FFI `sys` was loaded with: it can then make batch lookups. */
  useSyscalls(sys: Syscalls): void {
    this.start();
    const sysBpf = SYS_BPF[process.arch];
    if (this.ffi || this.failed || this.worker === null || sysBpf === undefined)
      return;
    this.ffi = true;
    const request: FfiRequest = {op: `ffi`, ffi: workerFfi(sys.native, this.tmpDir, libcNames()), sysBpf};
    this.worker.postMessage(request);
  }

  /**
   * The fd/ walks of every process under `procRoot` but `skipPid`, made in the worker
   * (walkSharedFdLinks), with this thread's help once it calls help(); null when the worker cannot.
   */
  walkFdLinks(procRoot: string, skipPid: number): SharedWalk {
    this.start();
    if (this.failed || this.worker === null)
      return {done: Promise.resolve(null), help: () => null};
    const id = this.nextId++;
    this.worker.ref();
    const shared = sharedWalkState(SHARED_WALK_ROOM);
    const request: WalkRequest = {op: `walk`, id, procRoot, skipPid, shared};
    this.worker.postMessage(request);
    const theirs = new Promise<FdWalks | null>(resolve => this.walks.set(id, resolve));
    let mine: FdWalks = [];
    return {
      done: theirs.then(walks => (walks === null ? null : mine.length === 0 ? walks : walks.concat(mine))),
      help: () => {
        try {
          const part = walkSharedFdLinks(fs, walkFdDir, procRoot, skipPid, shared);
          mine = part.walks;
          return part.all ? mine : null;
        } catch {
          return null; // the worker's walks, and what the stages walk on demand
        }
      },
    };
  }

  /** Reads the map behind `fd` in the worker; null when the worker is not available. */
  read(fd: number, keySize: number, valueBytes: number, tokenSize: number): ChunkStream | null {
    if (this.failed || this.worker === null || !this.ffi)
      return null;
    const id = this.nextId++;
    const state: StreamState = {chunks: [], waiting: null, finished: false, onFinished: null};
    this.streams.set(id, state);
    this.worker.ref();
    const control = new Int32Array(new SharedArrayBuffer(8));
    const request: ReadRequest = {op: `read`, id, fd, keySize, valueBytes, tokenSize, room: this.room, ahead: AHEAD, control};
    this.worker.postMessage(request);
    /** One chunk taken: the worker may read one more (it looks every millisecond while it waits). */
    const taken = () => {
      Atomics.add(control, 0, 1);
    };
    return {
      next: () => {
        const chunk = state.chunks.shift();
        if (chunk !== undefined) {
          taken();
          return Promise.resolve(chunk);
        }
        if (this.failed)
          return Promise.resolve(null);
        return new Promise(resolve => {
          state.waiting = (next: ReadChunk | null) => {
            if (next !== null)
              taken();
            resolve(next);
          };
        });
      },
      release: closeFd => {
        if (state.finished || this.failed) {
          this.forget(id);
          closeFd();
          return;
        }
        state.onFinished = closeFd;
        Atomics.store(control, 1, 1);
        Atomics.notify(control, 0);
      },
    };
  }

  /**
   * Ends the worker, once it is out of native code: a worker ended inside koffi (its module's
   * loading, a lookup through it) aborts the whole process (koffi's napi_throw fails in a thread
   * being ended), and a worker ended while loading it leaves its temp directory behind. The
   * worker enters native code only from idle, so once marked closing it enters none; the wait
   * is one lookup or one module load at most (bounded all the same).
   */
  close(): void {
    const worker = this.worker;
    this.worker = null;
    this.failed = true;
    if (worker !== null) {
      const deadline = Date.now() + CLOSE_WAIT_MS;
      while (Atomics.compareExchange(this.nativeState, 0, 0, 2) === 1 && Date.now() < deadline)
        Atomics.wait(this.nativeState, 0, 1, 50);
      void worker.terminate();
    }
    this.fail();
  }

  private receive(message: {type: string, id?: number, walks?: FdWalks | null} & Partial<ReadChunk>): void {
    if (message.type === `failed`) {
      this.close();
      return;
    }
    if (message.type === `walked`) {
      const done = this.walks.get(message.id!);
      this.walks.delete(message.id!);
      this.unrefWhenIdle();
      done?.(message.walks ?? null);
      return;
    }
    const state = message.id === undefined ? undefined : this.streams.get(message.id);
    if (state === undefined)
      return;
    if (message.type === `stopped`) {
      this.finish(message.id!, state);
      return;
    }
    if (message.type !== `chunk`)
      return;
    const chunk = message as ReadChunk;
    this.chunks += 1;
    // The last chunk of the map (end, or an error): the worker no longer uses the fd.
    if (chunk.result !== 0 && chunk.result !== -ENOSPC)
      state.finished = true;
    const waiting = state.waiting;
    if (waiting !== null) {
      state.waiting = null;
      waiting(chunk);
    } else {
      state.chunks.push(chunk);
    }
    if (state.finished)
      this.finish(message.id!, state);
  }

  private finish(id: number, state: StreamState): void {
    state.finished = true;
    if (state.onFinished !== null) {
      const closeFd = state.onFinished;
      state.onFinished = null;
      this.forget(id);
      closeFd();
    }
    this.unrefWhenIdle();
  }

  private forget(id: number): void {
    this.streams.delete(id);
    this.unrefWhenIdle();
  }

  private unrefWhenIdle(): void {
    if (this.walks.size > 0)
      return;
    for (const state of this.streams.values()) {
      if (!state.finished)
        return;
    }
    this.worker?.unref();
  }

  /** The worker is gone: waiting readers (and walks) get null, deferred fds are closed. */
  private fail(): void {
    this.failed = true;
    for (const [id, done] of this.walks) {
      this.walks.delete(id);
      done(null);
    }
    for (const [id, state] of this.streams) {
      const waiting = state.waiting;
      state.waiting = null;
      waiting?.(null);
      if (state.onFinished !== null) {
        const closeFd = state.onFinished;
        state.onFinished = null;
        closeFd();
      }
      this.streams.delete(id);
    }
  }
}
