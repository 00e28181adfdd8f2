// Which processes hold each map open, for every backend: /proc/PID/fd links that read
// `anon_inode:bpf-map`, and the `map_id:` line of /proc/PID/fdinfo/FD (kernel 4.15+). Debian's
// bpftool does not say (it is built without the pids iterator), the kernel does.
import {readdirSync} from 'node:fs';
import {readBoundedTextSync} from '../boundedRead.ts';
import type {MapHolder} from './source.ts';
import {readFdLinks, type FdLinksCache} from '../snapshot/fdLinks.ts';
import {numericNames, yieldToLoop} from '../snapshot/procfs.ts';

/** Processes walked between two turns of the event loop. */
const BATCH = 64;

/**
 * Map id → the processes that hold it, ascending by pid. Our own process is left out. `cache`:
 * the fd walks of the same look (scan's snapshot-pids walked them a moment ago).
 */
export async function mapHolders(procRoot: string, selfPid: number, cache?: FdLinksCache): Promise<Map<number, Array<MapHolder>>> {
  const holders = new Map<number, Array<MapHolder>>();
  let pids: Array<number>;
  try {
    pids = numericNames(readdirSync(procRoot));
  } catch {
    return holders;
  }
  for (let i = 0; i < pids.length; i++) {
    if (i % BATCH === BATCH - 1)
      await yieldToLoop();
    const pid = pids[i];
    if (pid === selfPid)
      continue;
    const fdDir = `${procRoot}/${pid}/fd`;
    const links = cache !== undefined ? cache.read(fdDir) : readFdLinks(fdDir);
    if (links === undefined)
      continue; // gone, or not ours to read
    let comm: string | null = null;
    const seen = new Set<number>();
    for (const fd of links.bpfMaps) {
      let info: string;
      try {
        info = readBoundedTextSync(`${procRoot}/${pid}/fdinfo/${fd}`, `latin1`, 64 * 1024);
      } catch {
        continue;
      }
      const match = /^map_id:\s*(\d+)$/m.exec(info);
      if (!match)
        continue;
      const mapId = Number(match[1]);
      if (seen.has(mapId))
        continue;
      seen.add(mapId);
      if (comm === null) {
        try {
          comm = readBoundedTextSync(`${procRoot}/${pid}/comm`, `utf8`, 4096).replace(/\n$/, ``);
        } catch {
          comm = ``;
        }
      }
      const list = holders.get(mapId);
      if (list)
        list.push({pid, comm});
      else
        holders.set(mapId, [{pid, comm}]);
    }
  }
  return holders;
}
