// The one list of maps the tool knows. Adding a map is one line in CATALOGUE.
//
// Facts from ../shared/reference/usm-maps-and-formats.md §3: key layouts come from the
// datadog-agent C definitions; kernel names are the first 15 characters (BPF_OBJ_NAME_LEN - 1).
import {UsageFault} from './errors.ts';
import type {KeyKind} from './schema.ts';

/** How a map's key tuple relates to a socket's local/remote view (validate accepts both ways round anyway). */
export type Direction = `normalized` | `raw` | `socket`;

export interface CatalogueMap {
  /** The name in the C source. */
  name: string;
  keyKind: KeyKind;
  /** Expected key size in bytes; checked against the real map. */
  keySize: number;
  /** Offset of conn_tuple_t in the key (conn_tuple maps). */
  tupleOffset?: number;
  /** Key fields outside the tuple: [name, offset, size, signed]. Sizes 4 or 8 (u64 → string). */
  extra?: ReadonlyArray<readonly [string, number, 4 | 8, boolean?]>;
  direction?: Direction;
  /** The agent has a userspace cleaner for it: leaks here are slow, not permanent. */
  cleaner?: string;
  note?: string;
}

/** BPF_OBJ_NAME_LEN is 16 including the NUL. */
export const KERNEL_NAME_MAX = 15;
export const kernelName = (name: string): string => name.slice(0, KERNEL_NAME_MAX);

export const CONN_TUPLE_SIZE = 48;

const tuple = (name: string, more: Partial<CatalogueMap> = {}): CatalogueMap =>
  ({name, keyKind: `conn_tuple`, keySize: CONN_TUPLE_SIZE, tupleOffset: 0, direction: `normalized`, ...more});
const pidTgid = (name: string, more: Partial<CatalogueMap> = {}): CatalogueMap =>
  ({name, keyKind: `pid_tgid`, keySize: 8, ...more});

export const CATALOGUE: ReadonlyArray<CatalogueMap> = [
  // conn_tuple_t-keyed maps (the original tool's CONN_TUPLE_MAPS, same order)
  tuple(`connection_states`, {direction: `raw`, note: `raw packet direction; both directions can exist`}),
  tuple(`pid_fd_by_tuple`, {direction: `socket`}),
  tuple(`ssl_ctx_by_tuple`, {direction: `socket`}),
  tuple(`http_in_flight`, {cleaner: `HTTPIdleConnectionTTL`}),
  tuple(`redis_in_flight`),
  tuple(`redis_key_in_flight`),
  tuple(`postgres_in_flight`),
  tuple(`http2_in_flight`, {keySize: 56, extra: [[`stream_id`, 48, 4]], cleaner: `HTTPIdleConnectionTTL`}),
  tuple(`http2_dynamic_counter_table`, {direction: `raw`}),
  tuple(`http2_dynamic_table`, {keySize: 56, tupleOffset: 8, extra: [[`index`, 0, 8]], direction: `raw`, cleaner: `dynamic table cleaner`}),
  tuple(`http2_incomplete_frames`, {direction: `raw`}),
  tuple(`kafka_response`, {direction: `raw`}),
  tuple(`kafka_in_flight`, {keySize: 56, extra: [[`correlation_id`, 48, 4, true]], direction: `raw`}),
  tuple(`go_tls_conn_by_tuple`, {direction: `socket`}),
  tuple(`connection_protocol`, {cleaner: `connection_protocol cleaner`}),
  tuple(`tls_enhanced_tags`, {cleaner: `tls_enhanced_tags cleaner`}),
  // u64 pid_tgid-keyed maps (PID_KEYED_MAPS)
  pidTgid(`ssl_read_args`),
  pidTgid(`ssl_read_ex_args`),
  pidTgid(`ssl_write_args`),
  pidTgid(`ssl_write_ex_args`),
  pidTgid(`bio_new_socket_args`),
  pidTgid(`ssl_ctx_by_pid_tgid`, {cleaner: `pidTgidCleanerCB (dead PIDs)`}),
];

const byKernelName = new Map(CATALOGUE.map(entry => [kernelName(entry.name), entry]));

/** The catalogue entry for a name as the kernel lists it (≤15 chars) or as written in C. */
export function findCatalogueMap(name: string): CatalogueMap | undefined {
  return byKernelName.get(kernelName(name));
}

export interface MapSelection {
  /** Names from --maps (full or kernel), or `prefix*` patterns. Empty = all. */
  names?: ReadonlyArray<string>;
  connTupleOnly?: boolean;
  pidOnly?: boolean;
}

/**
 * Resolves --maps / --conn-tuple-only / --pid-only to catalogue entries. Exact names (full or
 * 15-char) by default; `prefix*` for prefixes. Blank items are ignored (a stray comma never
 * selects everything); an unknown name throws with the list of known ones.
 */
export function selectCatalogue(selection: MapSelection): Array<CatalogueMap> {
  let maps = CATALOGUE.slice();
  if (selection.connTupleOnly && selection.pidOnly)
    throw new UsageFault(`--conn-tuple-only and --pid-only together select no map; use --maps to pick maps of both kinds`);
  if (selection.connTupleOnly)
    maps = maps.filter(map => map.keyKind === `conn_tuple`);
  if (selection.pidOnly)
    maps = maps.filter(map => map.keyKind === `pid_tgid`);
  const names = (selection.names ?? []).map(name => name.trim()).filter(name => name.length > 0);
  if (names.length === 0)
    return maps;
  const chosen = new Set<CatalogueMap>();
  for (const name of names) {
    const matches = name.endsWith(`*`)
      ? maps.filter(map => map.name.startsWith(name.slice(0, -1)) || kernelName(map.name).startsWith(name.slice(0, -1)))
      : maps.filter(map => map.name === name || kernelName(map.name) === name);
    if (matches.length === 0) {
      const known = maps.map(map => map.name).join(`, `);
      throw new UsageFault(`no catalogue map matches "${name}"; known maps: ${known} (use NAME* for a prefix)`);
    }
    for (const match of matches)
      chosen.add(match);
  }
  return maps.filter(map => chosen.has(map));
}
