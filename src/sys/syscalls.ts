// The system calls the kernel backend makes, behind an interface the tool context carries
// (src/context.ts), so tests can wrap them (force a fallback path, refuse bpf()) without globals.
import {decompressAhead, loadKoffi, type NativeSpec} from './native.ts';

export interface Syscalls {
  /** bpf(2): the result (≥ 0), or -errno. */
  bpf(cmd: number, attr: Buffer, size: number): number;
  /** Address of a buffer's bytes, for the pointer fields of a bpf_attr. */
  address(buffer: Buffer): bigint;
  /** How a worker thread loads the same FFI (to setns() there). */
  native: NativeSpec;
}

/** Why the syscall layer cannot be had (no FFI module for this platform, no libc, ...). */
export interface SyscallsUnavailable {
  unavailable: string;
}

/**
 * Returns the syscall layer, loading it on first use. `prepare`: starts what the load will need
 * off this thread (the bundle's FFI module decompressed), for a caller that will load it soon.
 */
export type SyscallAccess = (() => Syscalls | SyscallsUnavailable) & {prepare?(): void};

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
  let syscall: ((...args: Array<unknown>) => unknown) | null = null;
  const errors: Array<string> = [];
  for (const name of libcNames()) {
    try {
      syscall = koffi.load(name).func(`long syscall(long number, ...)`);
      break;
    } catch (err) {
      errors.push(`${name}: ${(err as Error).message}`);
    }
  }
  if (syscall === null)
    return {unavailable: `libc cannot be opened through the FFI (${errors.join(`; `)})`};
  const call = syscall;
  loadedSyscall = call;
  const bpf = (cmd: number, attr: Buffer, size: number) => {
    const result = Number(call(sysBpf, `int`, cmd, `void *`, attr, `uint32_t`, size));
    return result < 0 ? -koffi.errno() : result;
  };
  DIRECT_BPF.add(bpf);
  return {bpf, address: buffer => koffi.address(buffer), native: spec};
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
 * whose output is written then (--cpu-prof, NODE_V8_COVERAGE, ...). Returns false, having done
 * nothing, when it cannot.
 */
export function exitAtOnce(code: number, beforeExit: () => void): boolean {
  const exitGroup = process.platform === `linux` ? SYS_EXIT_GROUP[process.arch] : undefined;
  if (loadedSyscall === null || exitGroup === undefined || process.execArgv.length > 0 || process.env.NODE_OPTIONS || process.env.NODE_V8_COVERAGE)
    return false;
  beforeExit();
  loadedSyscall(exitGroup, `int`, code);
  return false;
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
  return access;
}

// errno values (Linux, same on x86_64 and aarch64) and the words we say for them.
export const EPERM = 1;
export const ENOENT = 2;
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
  [EPERM]: `EPERM`, [ENOENT]: `ENOENT`, [E2BIG]: `E2BIG`, [EBADF]: `EBADF`, [EACCES]: `EACCES`, [EFAULT]: `EFAULT`,
  [EINVAL]: `EINVAL`, [ENOSPC]: `ENOSPC`, [ENOSYS]: `ENOSYS`, [EOPNOTSUPP]: `EOPNOTSUPP`, [ENOTSUPP]: `ENOTSUPP`, 12: `ENOMEM`, 24: `EMFILE`,
};

export function errnoName(errno: number): string {
  return ERRNO_NAMES[errno] ?? `errno ${errno}`;
}
