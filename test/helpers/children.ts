import type {ChildProcess} from 'node:child_process';

/** SIGKILLs every child of the set still running (test clean-up, on failure too) and empties it. */
export function killChildren(children: Set<ChildProcess>): void {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
      try {
        process.kill(child.pid, `SIGKILL`);
      } catch {
        // Already gone.
      }
    }
  }
  children.clear();
}
