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
 * Reads every link of `fdDir` (only those of `names` when given: the directory listed already,
 * or a part of it); undefined when the directory cannot be listed (gone, or refused).
 * Self-contained (scan's worker thread runs its text, see walkSharedFdLinks), so it takes `fs`.
 */
export function walkFdDir(
  fsModule: Pick<typeof fs, `readdirSync` | `readlinkSync`>, fdDir: string, names?: ReadonlyArray<string>,
): FdLinks | undefined {
  let listed: ReadonlyArray<string>;
  try {
    listed = names ?? fsModule.readdirSync(fdDir);
  } catch {
    return undefined;
  }
  const links: FdLinks = {sockets: [], bpfMaps: []};
  for (const name of listed) {
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

/** Parts of the large fd/ directories a shared walk split between its threads: [fd/ directory, slice, its links]. */
export type FdSlices = Array<[string, number, FdLinks]>;

/** What one thread walked of a shared walk (walkSharedFdLinks). */
export interface SharedWalkPart {
  /** The processes it walked whole. */
  walks: FdWalks;
  /** The slices of split fd/ directories it walked (mergeSharedWalks puts them together). */
  slices: FdSlices;
  /** It made the whole walk alone: every process, every slice. */
  all: boolean;
}

/** How a shared walk splits large fd/ directories (tests make it split small ones, and run out of room). */
export interface SplitLimits {
  /** Directories split at most. */
  slots: number;
  /** fd names of split directories held at most (a directory that does not fit is walked whole). */
  nameRoom: number;
  /** fds per slice: the unit the two threads share. */
  sliceFds: number;
  /** Directories of more fds than this are split. */
  splitFrom: number;
}

/**
 * A process's fd/ of thousands of links (the live world's: 4,000 sockets, 15-20 ms of readlinks)
 * would leave one thread walking it alone at the end while the other waits: it is split into
 * slices of 128 fds the two threads take in turn.
 */
export const SPLIT_LIMITS: SplitLimits = {slots: 8, nameRoom: 1 << 16, sliceFds: 128, splitFrom: 256};

/**
 * The shared state of a walkSharedFdLinks walk listing up to `room` processes. Layout: [0] 0: not
 * listed, -1: being listed, else processes listed + 1; [1] processes found (more than `room`
 * when they overflow it); [2] room; [3] split slots; [4] name room; [5] fds per slice; [6] split
 * from; [7] slots taken; [8] names taken; [9] fd/ directories being listed (a split may follow);
 * then `room` pids, `room` claims, 5 ints per split slot
 * ([ready, pid, first name, names, next slice]), the split directories' fd names. The walk's
 * functions, which must stay self-contained (the worker runs their text), spell these as numbers.
 */
export function sharedWalkState(room: number, limits: SplitLimits = SPLIT_LIMITS): Int32Array {
  const shared = new Int32Array(new SharedArrayBuffer(4 * (10 + 2 * room + 5 * limits.slots + limits.nameRoom)));
  shared[2] = room;
  shared[3] = limits.slots;
  shared[4] = limits.nameRoom;
  shared[5] = limits.sliceFds;
  shared[6] = limits.splitFrom;
  return shared;
}

/**
 * One walk of every fd/ under a proc root shared by two threads (scan's worker, and the main
 * thread once it has nothing else to do): whichever comes first lists the processes into
 * `shared`, largest fd/ first, and walks them from the front; the other walks them from the
 * back; each process is claimed by one of them with a compare-and-exchange, so each fd/ is
 * walked once and the walk ends when they meet. A thread that claims a large fd/ (more than
 * `splitFrom` fds) publishes its names in `shared` and takes slices of it with an atomic
 * counter, as the other does whenever it looks for work: both finish on small pieces.
 * Neither waits on the other: a thread that finds every process and slice claimed by itself has
 * the whole walk (`all`); else mergeSharedWalks puts both parts together. Layout of `shared`:
 * sharedWalkState. Self-contained like walkFdDir (the worker runs its text): no inner functions.
 */
export function walkSharedFdLinks(
  fsModule: Pick<typeof fs, `readdirSync` | `readlinkSync` | `statSync`>, walk: typeof walkFdDir, procRoot: string, skipPid: number, shared: Int32Array,
): SharedWalkPart {
  // The layout's indices (see sharedWalkState): header, pids, claims, split slots, names.
  const room = shared[2];
  const slots = shared[3];
  const nameRoom = shared[4];
  const sliceFds = shared[5];
  const splitFrom = shared[6];
  const claimsAt = 10 + room;
  const slotsAt = claimsAt + room;
  const namesAt = slotsAt + 5 * slots;
  const walks: FdWalks = [];
  const slices: FdSlices = [];
  const part = {walks, slices, all: false};
  /** The lister's pids, in order (more than `room` when it overflows); the other reads them from `shared`. */
  let pids: Array<string> | null = null;
  let listed: number;
  if (Atomics.compareExchange(shared, 0, 0, -1) !== 0) {
    // Listed by the other thread (or being listed: a readdir and a stat per process): from the back.
    const deadline = Date.now() + 1000;
    let state = Atomics.load(shared, 0);
    for (; state === -1 && Date.now() < deadline; state = Atomics.load(shared, 0))
      Atomics.wait(shared, 0, -1, 20);
    // Still not listed (the other thread stopped): nothing walked here, the stages walk on demand.
    if (state <= 0)
      return part;
    listed = state - 1;
  } else {
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
      // order stays the listing's): the largest are walked (and split) first, so that neither
      // thread is left on a process with thousands of fds at the end.
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
    pids = found.map(entry => entry.name);
    listed = Math.min(found.length, room);
    for (let i = 0; i < listed; i++)
      shared[10 + i] = Number(pids[i]);
    Atomics.store(shared, 1, found.length);
    Atomics.store(shared, 0, listed + 1);
    Atomics.notify(shared, 0);
  }
  // The lister from the front (past the room: the processes only it knows), the other from the back.
  const step = pids !== null ? 1 : -1;
  const end = pids !== null ? pids.length : -1;
  let next = pids !== null ? 0 : listed - 1;
  let claimed = 0;
  let slicesOwed = 0;
  let waitUntil = 0;
  for (let last = false; ;) {
    // Open slices first (this thread's split or the other's), then the next process.
    const taken = Math.min(Atomics.load(shared, 7), slots);
    for (let slot = 0; slot < taken; slot++) {
      const at = slotsAt + 5 * slot;
      if (Atomics.load(shared, at) !== 1)
        continue;
      const fdDir = `${procRoot}/${shared[at + 1]}/fd`;
      const first = namesAt + shared[at + 2];
      const count = shared[at + 3];
      for (let slice = Atomics.add(shared, at + 4, 1); slice * sliceFds < count; slice = Atomics.add(shared, at + 4, 1)) {
        const names: Array<string> = [];
        for (let i = slice * sliceFds; i < Math.min(count, (slice + 1) * sliceFds); i++)
          names.push(String(shared[first + i]));
        slices.push([fdDir, slice, walk(fsModule, fdDir, names)!]);
      }
    }
    if (last) {
      // Nothing left but what the other thread is listing: it may split it (its fd/ is large),
      // so this one waits for that (bounded: the other may have stopped) and joins the slices.
      const listing = Atomics.load(shared, 9);
      if (listing === 0 || Date.now() > waitUntil)
        break;
      Atomics.wait(shared, 9, listing, 5);
      continue;
    }
    // Counted as listing from before the claim: the other thread, finding it claimed, waits for it.
    if (next !== end)
      Atomics.add(shared, 9, 1);
    // Claimed by the other thread: it took every listed process after this one (in this thread's
    // order); the lister still has those past the room, which only it knows.
    if (next !== end && next < listed && Atomics.compareExchange(shared, claimsAt + next, 0, pids !== null ? 1 : 2) !== 0) {
      next = pids !== null ? listed : end;
      if (next === end) {
        Atomics.sub(shared, 9, 1);
        Atomics.notify(shared, 9);
      }
    }
    if (next === end) {
      last = true;
      waitUntil = Date.now() + 50;
      continue;
    }
    const pid = pids !== null ? pids[next] : String(shared[10 + next]);
    next += step;
    claimed += 1;
    const fdDir = `${procRoot}/${pid}/fd`;
    let names: Array<string>;
    try {
      names = fsModule.readdirSync(fdDir);
    } catch {
      Atomics.sub(shared, 9, 1);
      Atomics.notify(shared, 9);
      walks.push([fdDir, undefined]);
      continue;
    }
    // Large, and every name an fd number (as procfs gives them): split, if there is room.
    let split = names.length > splitFrom && Atomics.load(shared, 7) < slots;
    for (let i = 0; split && i < names.length; i++)
      split = /^(0|[1-9][0-9]{0,8})$/.test(names[i]);
    const slot = split ? Atomics.add(shared, 7, 1) : slots;
    let first = -1;
    for (let taken = Atomics.load(shared, 8); slot < slots && first < 0 && taken + names.length <= nameRoom; taken = Atomics.load(shared, 8)) {
      if (Atomics.compareExchange(shared, 8, taken, taken + names.length) === taken)
        first = taken;
    }
    if (first < 0) {
      Atomics.sub(shared, 9, 1);
      Atomics.notify(shared, 9);
      // A slot taken without the room for its names stays unready: nobody looks at it.
      walks.push([fdDir, walk(fsModule, fdDir, names)]);
      continue;
    }
    for (let i = 0; i < names.length; i++)
      shared[namesAt + first + i] = Number(names[i]);
    const at = slotsAt + 5 * slot;
    shared[at + 1] = Number(pid);
    shared[at + 2] = first;
    shared[at + 3] = names.length;
    Atomics.store(shared, at, 1);
    Atomics.sub(shared, 9, 1);
    Atomics.notify(shared, 9);
    slicesOwed += Math.ceil(names.length / sliceFds);
  }
  part.all = claimed === Atomics.load(shared, 1) && slices.length === slicesOwed;
  return part;
}

/**
 * A shared walk's parts put together: every process walked whole, and each split fd/ from its
 * slices in directory order, as walkFdDir gives it. With `fsModule` (the thread that adopts the
 * walks), a slice claimed but never returned (its thread failed mid-walk) is walked here; without
 * (the worker, before it sends its part: the waiting thread is spared the work), a split fd/ that
 * `parts` do not hold every slice of keeps its slices. Self-contained like walkFdDir (the worker
 * runs its text): the layout's indices spelt as numbers (see sharedWalkState).
 */
export function mergeSharedWalks(
  fsModule: Pick<typeof fs, `readdirSync` | `readlinkSync`> | null, walk: typeof walkFdDir, procRoot: string, shared: Int32Array,
  parts: ReadonlyArray<Pick<SharedWalkPart, `walks` | `slices`>>,
): Pick<SharedWalkPart, `walks` | `slices`> {
  const walks: FdWalks = [];
  const slices: FdSlices = [];
  const whole = new Set<string>();
  /** fd/ directory → its slices, by index. */
  const sliced = new Map<string, Array<FdLinks>>();
  for (const part of parts) {
    for (const walked of part.walks) {
      walks.push(walked);
      whole.add(walked[0]);
    }
    for (const [fdDir, slice, links] of part.slices) {
      let list = sliced.get(fdDir);
      if (list === undefined)
        sliced.set(fdDir, list = []);
      list[slice] = links;
    }
  }
  const slots = shared[3];
  const sliceFds = shared[5];
  const slotsAt = 10 + 2 * shared[2];
  const namesAt = slotsAt + 5 * slots;
  const taken = Math.min(Atomics.load(shared, 7), slots);
  for (let slot = 0; slot < taken; slot++) {
    const at = slotsAt + 5 * slot;
    const fdDir = `${procRoot}/${shared[at + 1]}/fd`;
    // Unready (its names did not fit), or put together already (by the worker).
    if (Atomics.load(shared, at) !== 1 || whole.has(fdDir))
      continue;
    const first = namesAt + shared[at + 2];
    const count = shared[at + 3];
    const list = sliced.get(fdDir) ?? [];
    let complete = true;
    for (let slice = 0; complete && slice * sliceFds < count; slice++) {
      if (list[slice] !== undefined)
        continue;
      if (fsModule === null) {
        complete = false;
        continue;
      }
      const names: Array<string> = [];
      for (let i = slice * sliceFds; i < Math.min(count, (slice + 1) * sliceFds); i++)
        names.push(String(shared[first + i]));
      list[slice] = walk(fsModule, fdDir, names)!;
    }
    if (!complete) {
      for (let slice = 0; slice < list.length; slice++) {
        if (list[slice] !== undefined)
          slices.push([fdDir, slice, list[slice]]);
      }
      continue;
    }
    // One concat each (native): thousands of sockets.
    const sockets: FdLinks[`sockets`] = [];
    const bpfMaps: FdLinks[`bpfMaps`] = [];
    walks.push([fdDir, {sockets: sockets.concat(...list.map(links => links.sockets)), bpfMaps: bpfMaps.concat(...list.map(links => links.bpfMaps))}]);
  }
  return {walks, slices};
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
