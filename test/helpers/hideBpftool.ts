// A host with no bpftool at all, for one child process: `unshare -m` gives the child a private
// mount namespace in which /dev/null is bind-mounted over every bpftool binary (a character
// device is not an executable file: the tool finds none). Our own mount namespace is untouched,
// and the private one ends with the child.
import {spawnSync, type SpawnSyncReturns} from 'node:child_process';
import {existsSync, realpathSync} from 'node:fs';

const BPFTOOL_PLACES = [`/usr/sbin/bpftool`, `/usr/bin/bpftool`, `/sbin/bpftool`, `/bin/bpftool`, `/usr/local/sbin/bpftool`, `/usr/local/bin/bpftool`];

/** Every bpftool binary on this host (real paths, each once). */
export function bpftoolPaths(): Array<string> {
  const found = new Set<string>();
  for (const place of BPFTOOL_PLACES) {
    if (existsSync(place))
      found.add(realpathSync(place));
  }
  return [...found];
}

/** Runs `file args` with every bpftool hidden; `env` is the child's whole environment. */
export function runWithoutBpftool(file: string, args: Array<string>, options: {env: NodeJS.ProcessEnv, cwd?: string, timeoutMs?: number}): SpawnSyncReturns<string> {
  const mounts = bpftoolPaths().map(path => `mount --bind /dev/null '${path}' || exit 125;`).join(` `);
  // The mounts need a shell; the tool under test then replaces it (exec), with the given env.
  const script = `${mounts} exec env -i "$@"`;
  const envArgs = Object.entries(options.env).filter(([, value]) => value !== undefined).map(([key, value]) => `${key}=${value}`);
  return spawnSync(`unshare`, [`-m`, `--propagation`, `private`, `sh`, `-c`, script, `sh`, ...envArgs, file, ...args], {
    cwd: options.cwd, encoding: `utf8`, timeout: options.timeoutMs ?? 180_000, maxBuffer: 1 << 28,
  });
}
