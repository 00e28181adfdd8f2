// What a process's open fds are, from its fd/ links: the socket fds (snapshot-pids, for pid_fd
// maps) and the eBPF map fds (the dump's map holders). One readlink per open fd: thousands on
// a busy host, and the largest fixed cost of a live scan when each reader walked them itself.
import * as fs from 'node:fs';

export interface FdLinks {
  /** [fd, socket inode] of its socket fds (`socket:[INODE]`), in directory order. */
  sockets: Array<[number, number]>;
  /** Names of its fds that are eBPF maps (`anon_inode:bpf-map`), in directory order. */
  bpfMaps: Array<string>;
}

/**
 * Reads every link of `fdDir`; undefined when the directory cannot be listed (gone, or refused).
 * Self-contained (scan's worker thread runs its text, see walkSharedFdLinks), so it takes `fs`.
 */
export function walkFdDir(fsModule: Pick<typeof fs, `readdirSync` | `readlinkSync`>, fdDir: string): FdLinks | undefined {
  let names: Array<string>;
  try {
    names = fsModule.readdirSync(fdDir);
  } catch {
    return undefined;
  }
  const links: FdLinks = {sockets: [], bpfMaps: []};
  for (const name of names) {
    let target: string;
    try {
      target = fsModule.readlinkSync(`${fdDir}/${name}`);
    } catch {
      continue; // closed meanwhile
    }
    if (target.startsWith(`socket:[`))
      links.sockets.push([Number(name), Number(target.slice(8, -1))]);
    else if (target === `anon_inode:bpf-map`)
      links.bpfMaps.push(name);
  }
  return links;
}

/** Reads every link of `fdDir`; undefined when the directory cannot be listed (gone, or refused). */
export function readFdLinks(fdDir: string): FdLinks | undefined {
  return walkFdDir(fs, fdDir);
}

/** fd/ directory → its walk: the walks of every process under a proc root but one. */
export type FdWalks = Array<[string, FdLinks | undefined]>;

/**
 * One walk of every fd/ under a proc root shared by two threads (scan's worker, and the main
 * thread once it has nothing else to do): whichever comes first lists the processes into
 * `shared`, largest fd/ first, and walks them from the front; the other walks them from the
 * back; each process is claimed by one of them with a compare-and-exchange, so each fd/ is
 * walked once and the walk ends when they meet. Neither waits on the other: a thread that finds
 * every process claimed by itself has the whole walk (`all`).
 * Layout of `shared`: [state (0: not listed, -1: being listed, else processes listed + 1),
 * processes found, their pids, one claim per process]. Self-contained like walkFdDir (the
 * worker runs its text).
 */
export function walkSharedFdLinks(
  fsModule: Pick<typeof fs, `readdirSync` | `readlinkSync` | `statSync`>, walk: typeof walkFdDir, procRoot: string, skipPid: number, shared: Int32Array,
): {walks: FdWalks, all: boolean} {
  const room = (shared.length - 2) >> 1;
  const walks: FdWalks = [];
  if (Atomics.compareExchange(shared, 0, 0, -1) !== 0) {
    // Listed by the other thread (or being listed: a readdir and a stat per process): from the back.
    const deadline = Date.now() + 1000;
    let state = Atomics.load(shared, 0);
    for (; state === -1 && Date.now() < deadline; state = Atomics.load(shared, 0))
      Atomics.wait(shared, 0, -1, 20);
    // Still not listed (the other thread stopped): nothing walked here, the stages walk on demand.
    if (state <= 0)
      return {walks, all: false};
    const listed = state - 1;
    let claimed = 0;
    for (let i = listed - 1; i >= 0; i--) {
      if (Atomics.compareExchange(shared, 2 + room + i, 0, 2) !== 0)
        break;
      claimed += 1;
      const fdDir = `${procRoot}/${shared[2 + i]}/fd`;
      walks.push([fdDir, walk(fsModule, fdDir)]);
    }
    return {walks, all: claimed === Atomics.load(shared, 1)};
  }
  const found: Array<{name: string, size: number}> = [];
  let names: Array<string> = [];
  try {
    names = fsModule.readdirSync(procRoot);
  } catch {
    // No processes to list: none walked, the stages say why when they read them.
  }
  for (const name of names) {
    if (!/^[0-9]+$/.test(name) || Number(name) === skipPid)
      continue;
    // procfs gives an fd/ directory's open fds as its size (Linux 6.2+; 0 before, and then the
    // order stays the listing's): the largest are walked first, so that neither thread is left
    // on a process with thousands of fds at the end.
    let size = 0;
    try {
      size = fsModule.statSync(`${procRoot}/${name}/fd`).size;
    } catch {
      // gone, or refused: its walk says so
    }
    found.push({name, size});
  }
  // Stable: equal sizes keep the listing's order.
  found.sort((a, b) => b.size - a.size);
  const listed = Math.min(found.length, room);
  for (let i = 0; i < listed; i++)
    shared[2 + i] = Number(found[i].name);
  Atomics.store(shared, 1, found.length);
  Atomics.store(shared, 0, listed + 1);
  Atomics.notify(shared, 0);
  let claimed = 0;
  for (let i = 0; i < listed; i++) {
    // Claimed by the other thread: it took every process after this one.
    if (Atomics.compareExchange(shared, 2 + room + i, 0, 1) !== 0)
      break;
    claimed += 1;
    walks.push([`${procRoot}/${found[i].name}/fd`, walk(fsModule, `${procRoot}/${found[i].name}/fd`)]);
  }
  // More processes than `shared` has room for: the rest are the lister's alone.
  for (let i = listed; i < found.length; i++) {
    claimed += 1;
    walks.push([`${procRoot}/${found[i].name}/fd`, walk(fsModule, `${procRoot}/${found[i].name}/fd`)]);
  }
  return {walks, all: claimed === found.length};
}

/** The shared state of a walkSharedFdLinks walk listing up to `room` processes. */
export function sharedWalkState(room: number): Int32Array {
  return new Int32Array(new SharedArrayBuffer(4 * (2 + 2 * room)));
}

/**
 * The fd walks of one look at the host, shared by the stages that need them (scan's snapshot
 * and dump, milliseconds apart): each fd/ directory is walked once. Given through the context
 * (`ToolContext.fdLinks`) to one look only: a later look (recheck) walks afresh.
 */
export class FdLinksCache {
  private readonly walks = new Map<string, FdLinks | undefined>();
  /** Walks served from the cache (tests check the sharing really happens). */
  reused = 0;

  read(fdDir: string): FdLinks | undefined {
    if (this.walks.has(fdDir)) {
      this.reused++;
      return this.walks.get(fdDir);
    }
    const links = readFdLinks(fdDir);
    this.walks.set(fdDir, links);
    return links;
  }

  /** Walks made elsewhere in this look (scan's worker thread, while the sockets were read). */
  adopt(walks: FdWalks): void {
    for (const [fdDir, links] of walks)
      this.walks.set(fdDir, links);
  }
}
