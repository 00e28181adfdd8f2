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
 * One walk of every fd/ under a proc root shared by two threads (scan's worker and, once it has
 * nothing else to do, the main thread): the worker lists the processes into `shared` and walks
 * them from the front, the other thread from the back, each process claimed by one of them with
 * a compare-and-exchange, so each fd/ is walked once and the walk ends when they meet.
 * Layout of `shared`: [processes listed (0 until then), their pids, one claim per process].
 * Self-contained like walkFdDir (the worker runs its text).
 */
export function walkSharedFdLinks(
  fsModule: Pick<typeof fs, `readdirSync` | `readlinkSync`>, walk: typeof walkFdDir, procRoot: string, skipPid: number, shared: Int32Array,
): FdWalks {
  const names: Array<string> = [];
  for (const name of fsModule.readdirSync(procRoot)) {
    if (/^[0-9]+$/.test(name) && Number(name) !== skipPid)
      names.push(name);
  }
  const room = (shared.length - 1) >> 1;
  const listed = Math.min(names.length, room);
  for (let i = 0; i < listed; i++)
    shared[1 + i] = Number(names[i]);
  Atomics.store(shared, 0, listed);
  const walks: FdWalks = [];
  for (let i = 0; i < listed; i++) {
    // Claimed by the other thread: it took every process after this one.
    if (Atomics.compareExchange(shared, 1 + room + i, 0, 1) !== 0)
      break;
    walks.push([`${procRoot}/${names[i]}/fd`, walk(fsModule, `${procRoot}/${names[i]}/fd`)]);
  }
  // More processes than `shared` has room for: the rest are this thread's alone.
  for (let i = listed; i < names.length; i++)
    walks.push([`${procRoot}/${names[i]}/fd`, walk(fsModule, `${procRoot}/${names[i]}/fd`)]);
  return walks;
}

/**
 * The other thread's part of a shared walk (walkSharedFdLinks): the processes listed in `shared`,
 * from the last back to where the worker has got. None when the worker has not listed them yet.
 */
export function helpSharedWalk(procRoot: string, shared: Int32Array): FdWalks {
  const room = (shared.length - 1) >> 1;
  const listed = Atomics.load(shared, 0);
  const walks: FdWalks = [];
  for (let i = listed - 1; i >= 0; i--) {
    if (Atomics.compareExchange(shared, 1 + room + i, 0, 2) !== 0)
      break;
    const fdDir = `${procRoot}/${shared[1 + i]}/fd`;
    walks.push([fdDir, readFdLinks(fdDir)]);
  }
  return walks;
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
