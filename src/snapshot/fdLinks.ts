// What a process's open fds are, from its fd/ links: the socket fds (snapshot-pids, for pid_fd
// maps) and the eBPF map fds (the dump's map holders). One readlink per open fd: thousands on
// a busy host, and the largest fixed cost of a live scan when each reader walked them itself.
import {readdirSync, readlinkSync} from 'node:fs';

export interface FdLinks {
  /** [fd, socket inode] of its socket fds (`socket:[INODE]`), in directory order. */
  sockets: Array<[number, number]>;
  /** Names of its fds that are eBPF maps (`anon_inode:bpf-map`), in directory order. */
  bpfMaps: Array<string>;
}

/** Reads every link of `fdDir`; undefined when the directory cannot be listed (gone, or refused). */
export function readFdLinks(fdDir: string): FdLinks | undefined {
  let names: Array<string>;
  try {
    names = readdirSync(fdDir);
  } catch {
    return undefined;
  }
  const links: FdLinks = {sockets: [], bpfMaps: []};
  for (const name of names) {
    let target: string;
    try {
      target = readlinkSync(`${fdDir}/${name}`);
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
}
