// The system calls the tool makes itself (bpf() for the kernel backend, a netlink socket for
// our own namespace's socket tables), behind an interface the tool context carries
// (src/context.ts), so tests can wrap them (force a fallback path, refuse bpf()) without globals.
import {decompressAhead, decompressedAhead, loadKoffi, type NativeSpec} from './native.ts';

export interface Syscalls {
  /** bpf(2): the result (≥ 0), or -errno. */
  bpf(cmd: number, attr: Buffer, size: number): number;
  /** Address of a buffer's bytes, for the pointer fields of a bpf_attr. */
  address(buffer: Buffer): bigint;
  /** socket(2): a file descriptor (≥ 0), or -errno. */
  socket(domain: number, type: number, protocol: number): number;
  /** send(2) of the first `length` bytes of `buffer` (no flags): bytes sent, or -errno. */
  send(fd: number, buffer: Buffer, length: number): number;
  /** recv(2) into `buffer` (no flags): bytes received, or -errno. */
  recv(fd: number, buffer: Buffer, length: number): number;
  /** close(2): 0, or -errno. */
  close(fd: number): number;
  /** How a worker thread loads the same FFI (to setns() there). */
  native: NativeSpec;
}

/** Why the syscall layer cannot be had (no FFI module for this platform, no libc, ...). */
export interface SyscallsUnavailable {
  unavailable: string;
}

/**
 * Returns the syscall layer, loading it on first use. `prepare`: starts what the load will need
 * off this thread (the bundle's FFI module decompressed), for a caller that will load it soon;
 * `prepared`: settles once that is done (a caller that may wait loads it without doing it again).
 */
export type SyscallAccess = (() => Syscalls | SyscallsUnavailable) & {prepare?(): void, prepared?(): Promise<void>};

export const SYS_BPF: Partial<Record<string, number>> = {x64: 321, arm64: 280};

/** libc's file name, glibc first, then musl's. */
export function libcNames(): Array<string> {
  const arch = process.arch === `x64` ? `x86_64` : process.arch === `arm64` ? `aarch64` : process.arch;
  return [`libc.so.6`, `libc.musl-${arch}.so.1`];
}

/** bpf()'s syscall number here; undefined where we do not call it (not Linux x86_64 or aarch64). */
function bpfSyscallNumber(): number | undefined {
  return process.platform === `linux` ? SYS_BPF[process.arch] : undefined;
}

function loadSyscalls(tmpDir: string): Syscalls | SyscallsUnavailable {
  const sysBpf = bpfSyscallNumber();
  if (sysBpf === undefined)
    return {unavailable: `bpf() is called only on Linux x86_64 and aarch64 (this is ${process.platform} ${process.arch})`};
  let loaded;
  try {
    loaded = loadKoffi(tmpDir);
  } catch (err) {
    return {unavailable: `the FFI module (koffi) cannot be loaded: ${(err as Error).message}`};
  }
  const {koffi, spec} = loaded;
  type Fn = (...args: Array<unknown>) => unknown;
  let libc: {syscall: Fn, socket: Fn, send: Fn, recv: Fn, close: Fn} | null = null;
  const errors: Array<string> = [];
  for (const name of libcNames()) {
    try {
      const lib = koffi.load(name);
      libc = {
        syscall: lib.func(`long syscall(long number, ...)`),
        socket: lib.func(`int socket(int domain, int type, int protocol)`),
        send: lib.func(`long send(int fd, const void *buf, size_t len, int flags)`),
        recv: lib.func(`long recv(int fd, void *buf, size_t len, int flags)`),
        close: lib.func(`int close(int fd)`),
      };
      break;
    } catch (err) {
      errors.push(`${name}: ${(err as Error).message}`);
    }
  }
  if (libc === null)
    return {unavailable: `libc cannot be opened through the FFI (${errors.join(`; `)})`};
  const {syscall: call, socket, send, recv, close} = libc;
  loadedSyscall = call;
  const result = (value: unknown) => {
    const number = Number(value);
    return number < 0 ? -koffi.errno() : number;
  };
  const bpf = (cmd: number, attr: Buffer, size: number) => result(call(sysBpf, `int`, cmd, `void *`, attr, `uint32_t`, size));
  DIRECT_BPF.add(bpf);
  return {
    bpf,
    address: buffer => koffi.address(buffer),
    socket: (domain, type, protocol) => result(socket(domain, type, protocol)),
    send: (fd, buffer, length) => result(send(fd, buffer, length, 0)),
    recv: (fd, buffer, length) => result(recv(fd, buffer, length, 0)),
    close: fd => result(close(fd)),
    native: spec,
  };
}

/** exit_group(2)'s number, by architecture (Linux). */
const SYS_EXIT_GROUP: Partial<Record<string, number>> = {x64: 231, arm64: 94};

/** libc's syscall(), once this process has loaded the FFI (a run that read the kernel directly). */
let loadedSyscall: ((...args: Array<unknown>) => unknown) | null = null;

/**
 * Ends the process with `code` through exit_group(2), when the FFI is loaded in this process
 * anyway: `beforeExit` runs first (the exit actions process.exit would run). Node's own exit then
 * does not happen: no ending of the worker threads, V8's threads and heaps one by one (about 20 ms
 * of a 225k scan, out of ~470). Only when nothing is owed to that teardown: not under Node options
 * whose output is written then (--cpu-prof, NODE_V8_COVERAGE, ...). Returns only when it cannot,
 * having done nothing.
 */
export function exitAtOnce(code: number, beforeExit: () => void): void {
  const exitGroup = process.platform === `linux` ? SYS_EXIT_GROUP[process.arch] : undefined;
  if (loadedSyscall === null || exitGroup === undefined || process.execArgv.length > 0 || process.env.NODE_OPTIONS || process.env.NODE_V8_COVERAGE)
    return;
  beforeExit();
  loadedSyscall(exitGroup, `int`, code);
}

/** The bpf() functions that call the kernel directly (not a test's wrapper). */
const DIRECT_BPF = new WeakSet<Syscalls[`bpf`]>();

/**
 * Whether `sys.bpf` is the kernel itself: a worker thread may then make the same calls with its
 * own FFI. A wrapped one (a test refusing a command) must see every call, on this thread.
 */
export function callsKernelDirectly(sys: Syscalls): boolean {
  return DIRECT_BPF.has(sys.bpf);
}

/** The real syscall layer, loaded once, on first use (most commands never need it). */
export function lazySyscalls(tmpDir: string): SyscallAccess {
  let loaded: Syscalls | SyscallsUnavailable | undefined;
  const access: SyscallAccess = () => (loaded ??= loadSyscalls(tmpDir));
  access.prepare = () => {
    if (loaded === undefined && bpfSyscallNumber() !== undefined)
      decompressAhead();
  };
  access.prepared = () => (loaded === undefined ? decompressedAhead() : Promise.resolve());
  return access;
}

// errno values (Linux, same on x86_64 and aarch64) and the words we say for them.
export const EPERM = 1;
export const ENOENT = 2;
export const EINTR = 4;
export const E2BIG = 7;
export const EBADF = 9;
export const EACCES = 13;
export const EFAULT = 14;
export const EINVAL = 22;
export const ENOSPC = 28;
export const ENOSYS = 38;
export const EOPNOTSUPP = 95;
/** The kernel's internal ENOTSUPP, which bpf() leaks to userspace for some map types. */
export const ENOTSUPP = 524;

const ERRNO_NAMES: Record<number, string> = {
  [EPERM]: `EPERM`, [ENOENT]: `ENOENT`, [EINTR]: `EINTR`, [E2BIG]: `E2BIG`, [EBADF]: `EBADF`, [EACCES]: `EACCES`, [EFAULT]: `EFAULT`,
  [EINVAL]: `EINVAL`, [ENOSPC]: `ENOSPC`, [ENOSYS]: `ENOSYS`, [EOPNOTSUPP]: `EOPNOTSUPP`, [ENOTSUPP]: `ENOTSUPP`, 11: `EAGAIN`, 12: `ENOMEM`, 24: `EMFILE`,
  93: `EPROTONOSUPPORT`, 97: `EAFNOSUPPORT`, 105: `ENOBUFS`,
};

export function errnoName(errno: number): string {
  return ERRNO_NAMES[errno] ?? `errno ${errno}`;
}
