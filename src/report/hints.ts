// "What to do next": one hint per verdict reason, shown once per reason that occurs in the
// report. Facts from the agent's source (cleaners, fixed leaks): see the catalogue's `cleaner`
// and KNOWN_FIXES below.
import {describeCleaner, findCatalogueMap, kernelName} from '../catalogue.ts';

export interface Hint {
  reason: string;
  /** What the reason means and what to do about it. */
  text: string;
}

/** The hint for leaks no recheck confirmed. */
export const ONE_LOOK = `seen_once`;

/** The one table of hints, by reason. Reasons without a row get no hint. */
export const HINTS: {readonly [reason: string]: string} = {
  no_connection: `no socket carries the tuple any more. In a map the agent cleans (see the cleaner notes), `
    + `entries that outlive their connection are removed later, so a few are expected; many, or old ones, `
    + `mean the cleaner is not keeping up or the close path was missed. Run the scan again later: `
    + `the same keys again (\`usm-leak-detector diff\`) are permanent leaks.`,
  no_connection_any_namespace: `the key has no namespace (netns 0) and no namespace has the connection: `
    + `as no_connection.`,
  wrong_namespace: `the tuple exists, but in another namespace than the key's: usually a reused port in `
    + `another container. The entry itself is stale; check the match shown by --format json.`,
  unknown_namespace: `the namespace of the key no longer exists (its container is gone): nothing can `
    + `remove this entry except a cleaner.`,
  no_listener: `a listener tuple and no socket listens there any more: the server closed or moved.`,
  process_gone: `the process of the pid_tgid key has exited. In the TLS maps, the agent's dead-PID scan `
    + `(every 30 s) should remove these: many of them, or the same ones in two scans, mean it does not run `
    + `(check system-probe's logs and the ebpf__maps__cleaner telemetry).`,
  thread_gone: `the process lives, but the thread that made the entry has exited: the agent's dead-PID `
    + `scan checks processes only, so these stay until the process exits.`,
  zombie: `the process has exited and waits for its parent to reap it: its entries go once it is reaped.`,
  namespace_unreadable: `a namespace could not be read completely, so these entries were not judged: `
    + `run as root (CAP_SYS_ADMIN, CAP_SYS_PTRACE), or with --proc-root /host/proc in a container.`,
  no_snapshot: `there was no snapshot of sockets or processes to judge against: run the whole scan, `
    + `or put snapshot-conns/snapshot-pids output before the entries.`,
  undecodable_key: `the key could not be decoded (its keyError says why): usually an agent version whose `
    + `key layout the catalogue does not know.`,
  // Not a verdict reason: leaks seen at one look only (validate without recheck).
  [ONE_LOOK]: `some leaks were seen at one look only: a connection opened or closed during the dump `
    + `looks leaked. Rerun the scan with a longer --recheck-delay (for example 10) to settle them.`,
  map_problem: `the map does not look like the catalogue's (key size): upgrade usm-leak-detector, or `
    + `report the agent version.`,
};


/** Leaks the agent fixed, by map: worth checking the agent version against. */
export const KNOWN_FIXES: {readonly [map: string]: string} = {
  connection_states: `DataDog/datadog-agent#35970`,
  connection_protocol: `DataDog/datadog-agent#31153 and #32718 (leak when protocol classification is off)`,
  ssl_sock_by_ctx: `DataDog/datadog-agent#38069 and #36620 (TLS contexts freed without SSL_shutdown)`,
  fd_by_ssl_bio: `DataDog/datadog-agent#45877 (the map filling its 1024 entries)`,
};

export interface MapNote {
  map: string;
  /** The agent's cleaner for this map, if it has one. */
  cleaner: string | null;
  /** A leak fixed in the agent for this map. */
  knownFix: string | null;
}

/** Hints for the reasons that occur, in order of the counts given. */
export function hintsFor(reasons: ReadonlyArray<string>): Array<Hint> {
  const out: Array<Hint> = [];
  for (const reason of new Set(reasons)) {
    const text = HINTS[reason];
    if (text !== undefined)
      out.push({reason, text});
  }
  return out;
}

/** Cleaner and fixed-leak notes for the maps that leak. */
export function mapNotes(maps: ReadonlyArray<string>): Array<MapNote> {
  const out: Array<MapNote> = [];
  for (const map of new Set(maps)) {
    const found = findCatalogueMap(map)?.cleaner;
    const cleaner = found === undefined ? null : describeCleaner(found);
    const knownFix = KNOWN_FIXES[map] ?? Object.entries(KNOWN_FIXES).find(([name]) => kernelName(name) === map)?.[1] ?? null;
    if (cleaner !== null || knownFix !== null)
      out.push({map, cleaner, knownFix});
  }
  return out;
}
