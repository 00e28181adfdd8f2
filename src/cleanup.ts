// One registry of what must be undone however the process ends: temporary files and directories,
// and child process groups. `process.exit` (a reader that closed our stdout) skips every `finally`,
// and SIGINT/SIGTERM end the process without one: src/main.ts runs these actions on `exit` and
// on those signals. Actions are synchronous (nothing asynchronous runs during `exit`) and each is
// removed by its owner once the normal path has done the work.

type Action = () => void;

const actions = new Set<Action>();

/** Registers `action` to run at exit; returns a function that unregisters it (without running it). */
export function atExit(action: Action): () => void {
  actions.add(action);
  return () => {
    actions.delete(action);
  };
}

/** Runs (and forgets) every registered action; one failing does not stop the others. */
export function runExitActions(): void {
  const pending = [...actions];
  actions.clear();
  for (const action of pending.reverse()) {
    try {
      action();
    } catch {
      // best effort: the process is ending
    }
  }
}

/** How many actions are registered (tests check that normal paths unregister theirs). */
export function pendingExitActions(): number {
  return actions.size;
}

const SIGNALS = {SIGINT: 2, SIGTERM: 15, SIGHUP: 1} as const;

/** Makes SIGINT, SIGTERM and SIGHUP run the exit actions, then exit with 128 + the signal number. */
export function installSignalCleanup(): void {
  for (const [name, number] of Object.entries(SIGNALS)) {
    process.once(name as NodeJS.Signals, () => {
      runExitActions();
      process.exit(128 + number);
    });
  }
  process.on(`exit`, runExitActions);
}
