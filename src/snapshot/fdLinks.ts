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
 * Self-contained (scan's worker thread runs its text, see walkAllFdLinks), so it takes `fs`.
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
 * Walks the fd/ of every process under `procRoot` except `skipPid` (our own, whose fds change as
 * we work), each with `walk` (walkFdDir). Self-contained like it: both run in scan's worker.
 */
export function walkAllFdLinks(fsModule: Pick<typeof fs, `readdirSync` | `readlinkSync`>, walk: typeof walkFdDir, procRoot: string, skipPid: number): FdWalks {
  const walks: FdWalks = [];
  for (const name of fsModule.readdirSync(procRoot)) {
    if (!/^[0-9]+$/.test(name) || Number(name) === skipPid)
      continue;
    const fdDir = `${procRoot}/${name}/fd`;
    walks.push([fdDir, walk(fsModule, fdDir)]);
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
