// Reads files of another network namespace without nsenter or sh: a worker thread opens the
// namespace's nsfs file (/run/netns/NAME, /proc/PID/ns/net), calls setns(fd, CLONE_NEWNET) on its
// own thread, reads /proc/thread-self/net/<table> synchronously (async reads would run on libuv's
// pool threads, which stay in our namespace), posts the texts back and ends. setns() changes only
// the calling thread's namespace: the main thread's never changes.
import {Worker} from 'node:worker_threads';
import {workerFfi} from './native.ts';
import {libcNames, type Syscalls} from './syscalls.ts';

const CLONE_NEWNET = 0x40000000;

export interface NetnsRead {
  /** One text per table, null when that table could not be read. */
  texts: Array<string | null>;
  /** Why the namespace could not be entered; absent when it was. */
  error?: string;
}

/** The worker's body: plain JavaScript run with `eval`, given the loader's text and its data. */
function workerBody(): void {
  /* eslint-disable @typescript-eslint/no-require-imports */
  const {parentPort, workerData} = require(`node:worker_threads`);
  const fsModule = require(`node:fs`);
  const data = workerData as {ffi: {libcFunction: string}, nsPath: string, netnsInode: number | null, tables: Array<string>, cloneNewnet: number};
  try {
    // eslint-disable-next-line no-new-func
    const {koffi, fn} = new Function(`return (${data.ffi.libcFunction})`)()(require, data.ffi, `int setns(int fd, int nstype)`);
    const setns = fn as (fd: number, nstype: number) => number;
    const cloneNewnet = data.cloneNewnet;
    const fd = fsModule.openSync(data.nsPath, `r`);
    let result: number;
    let errno = 0;
    try {
      result = setns(fd, cloneNewnet);
      if (result !== 0)
        errno = koffi.errno();
    } finally {
      fsModule.closeSync(fd);
    }
    if (result !== 0) {
      parentPort.postMessage({texts: data.tables.map(() => null), error: `setns(${data.nsPath}) failed: errno ${errno}${errno === 1 ? ` (EPERM: not root or no CAP_SYS_ADMIN)` : errno === 22 ? ` (EINVAL: not a network namespace)` : ``}`});
      return;
    }
    const inode = fsModule.statSync(`/proc/thread-self/ns/net`).ino;
    if (data.netnsInode !== null && inode !== data.netnsInode) {
      parentPort.postMessage({texts: data.tables.map(() => null), error: `setns(${data.nsPath}) entered netns ${inode}, not ${data.netnsInode}`});
      return;
    }
    const texts = data.tables.map(table => {
      try {
        return fsModule.readFileSync(`/proc/thread-self/net/${table}`, `latin1`);
      } catch {
        return null;
      }
    });
    parentPort.postMessage({texts});
  } catch (err) {
    parentPort.postMessage({texts: data.tables.map(() => null), error: (err as Error).message});
  }
}

/**
 * Reads `tables` (names under /proc/self/net) inside the namespace at `nsPath`, in a worker
 * thread that setns()es into it. `netnsInode`, when given, must be the namespace entered.
 */
export function readInNetns(sys: Syscalls, tmpDir: string, nsPath: string, netnsInode: number | null, tables: ReadonlyArray<string>, timeoutMs: number): Promise<NetnsRead> {
  return new Promise(resolve => {
    const worker = new Worker(`(${workerBody.toString()})()`, {
      eval: true,
      workerData: {ffi: workerFfi(sys.native, tmpDir, libcNames()), nsPath, netnsInode, tables: [...tables], cloneNewnet: CLONE_NEWNET},
      // Workers get their own copy of process.env otherwise; nothing here needs it.
      env: {},
      stdout: false,
      stderr: false,
    });
    let settled = false;
    const finish = (read: NetnsRead) => {
      if (settled)
        return;
      settled = true;
      clearTimeout(timer);
      void worker.terminate();
      resolve(read);
    };
    const timer = setTimeout(() => finish({texts: tables.map(() => null), error: `reading inside ${nsPath} timed out after ${timeoutMs / 1000} s`}), timeoutMs);
    worker.once(`message`, (message: NetnsRead) => finish(message));
    worker.once(`error`, err => finish({texts: tables.map(() => null), error: `the namespace reader failed: ${err.message}`}));
    worker.once(`exit`, code => finish({texts: tables.map(() => null), error: `the namespace reader exited (code ${code}) without an answer`}));
  });
}
