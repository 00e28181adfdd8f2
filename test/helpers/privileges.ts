// Tests that need root, BPF or namespaces: in CI (CI=true) they must run, so missing privileges
// fail the run; elsewhere they skip with a message on stderr that says what was skipped and why.
import {execFileSync} from 'node:child_process';
import {existsSync, mkdirSync, readFileSync} from 'node:fs';

const inCI = process.env.CI === `true`;

function which(bin: string): string | null {
  try {
    return execFileSync(`sh`, [`-c`, `command -v ${bin}`], {encoding: `utf8`}).trim() || null;
  } catch {
    return null;
  }
}

let bpfProblem: string | null | undefined;

/** Mounts bpffs when it is missing (a fresh VM may not have it) and says whether BPF maps can be made. */
export function bpfUnavailable(): string | null {
  if (bpfProblem !== undefined)
    return bpfProblem;
  bpfProblem = (() => {
    if (process.geteuid?.() !== 0)
      return `not root`;
    if (!which(`bpftool`))
      return `bpftool is not installed (make test installs Debian's bpftool)`;
    const mounts = readFileSync(`/proc/self/mounts`, `utf8`);
    if (!/ \/sys\/fs\/bpf bpf /.test(mounts)) {
      try {
        if (!existsSync(`/sys/fs/bpf`))
          mkdirSync(`/sys/fs/bpf`, {recursive: true});
        execFileSync(`mount`, [`-t`, `bpf`, `bpf`, `/sys/fs/bpf`], {stdio: `ignore`});
      } catch {
        return `bpffs is not mounted at /sys/fs/bpf and could not be mounted`;
      }
    }
    try {
      execFileSync(`bpftool`, [`-j`, `map`, `show`], {stdio: `ignore`});
    } catch {
      return `bpftool cannot list maps (no CAP_BPF/CAP_SYS_ADMIN?)`;
    }
    return null;
  })();
  return bpfProblem;
}

let netnsProblem: string | null | undefined;

export function netnsUnavailable(): string | null {
  if (netnsProblem !== undefined)
    return netnsProblem;
  netnsProblem = (() => {
    if (process.geteuid?.() !== 0)
      return `not root`;
    if (!which(`ip`))
      return `iproute2 (ip) is not installed`;
    if (!which(`nsenter`))
      return `nsenter (util-linux) is not installed`;
    return null;
  })();
  return netnsProblem;
}

/**
 * Returns true when the suite may run. When it may not: in CI, throws (the run must fail);
 * elsewhere prints a visible skip line and returns false.
 */
export function requirePrivileges(suite: string, problem: string | null): boolean {
  if (problem === null)
    return true;
  if (inCI)
    throw new Error(`${suite}: cannot run in CI: ${problem}`);
  process.stderr.write(`SKIP ${suite}: ${problem}\n`);
  return false;
}
