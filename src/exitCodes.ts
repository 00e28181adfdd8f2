// The one table of exit codes. README "Exit codes" mirrors it; keep both in step.
export const ExitCode = {
  /** Ran to the end and found no leaked entries (or the stage does not judge leaks). */
  Ok: 0,
  /** Ran to the end and found leaked entries: scripts and CI gate on this. */
  LeaksFound: 1,
  /** The command line was wrong. */
  Usage: 2,
  /** The environment stopped us: no permission, no backend, no USM maps, unreadable input file. */
  Environment: 3,
  /** A bug of ours. */
  Internal: 4,
} as const;

export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];
