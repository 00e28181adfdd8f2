// The wire contract: every NDJSON record any stage reads or writes. docs/wire-format.md
// describes the same records for people; the guards below are what the code enforces.
//
// Rules every record follows:
// - one JSON object per line, with `type` (the record type) and `v` (the schema version);
// - 64-bit values (pid_tgid, u64 key fields) are decimal strings, never JSON numbers;
// - map keys and values travel as lowercase hex of the raw bytes (`keyHex`, `valueHex`);
// - records may carry fields a reader does not know: readers ignore them (forward compatible).
import * as t from 'typanion';

export const SCHEMA_VERSION = 1;
export const TOOL_NAME = `usm-leak-detector`;

export const STAGES = [`dump-maps`, `snapshot-conns`, `snapshot-pids`, `validate`, `recheck`, `report`, `scan`, `capture`] as const;
export type Stage = (typeof STAGES)[number];

const isU32 = () => t.cascade(t.isNumber(), [t.isInteger(), t.isInInclusiveRange(0, 0xffffffff)]);
const isPort = () => t.cascade(t.isNumber(), [t.isInteger(), t.isInInclusiveRange(0, 0xffff)]);
const isHex = () => t.cascade(t.isString(), [t.matchesRegExp(/^(?:[0-9a-f]{2})*$/)]);
const isU64String = () => t.cascade(t.isString(), [t.matchesRegExp(/^(?:0|[1-9][0-9]{0,19})$/)]);
const isVersion = () => t.isLiteral(SCHEMA_VERSION);

// ---------------------------------------------------------------------------------------------
// header: first record of every stream a stage writes.
export const isHeaderRecord = t.isPartial({
  type: t.isLiteral(`header`),
  v: isVersion(),
  stage: t.isEnum(STAGES),
  tool: t.isLiteral(TOOL_NAME),
  toolVersion: t.isString(),
  host: t.isString(),
  kernel: t.isString(),
  /** ISO 8601, UTC. */
  time: t.isString(),
  /** Monotonic-ish milliseconds since the Unix epoch, for arithmetic (recheck delays). */
  timeMs: t.isNumber(),
});
export type HeaderRecord = t.InferType<typeof isHeaderRecord>;

// ---------------------------------------------------------------------------------------------
// dump-maps

export const KEY_KINDS = [`conn_tuple`, `pid_tgid`] as const;
export type KeyKind = (typeof KEY_KINDS)[number];
export const BACKENDS = [`bpftool`, `system-probe`] as const;
export type BackendName = (typeof BACKENDS)[number];

export const isMapHolder = t.isPartial({pid: isU32(), comm: t.isString()});

/** One map found on the host (emitted before its entries). */
export const isMapRecord = t.isPartial({
  type: t.isLiteral(`map`),
  v: isVersion(),
  mapId: isU32(),
  /** The kernel's name: at most 15 characters. */
  name: t.isString(),
  /** The catalogue's full name (src/catalogue.ts). */
  catalogName: t.isString(),
  keyKind: t.isEnum(KEY_KINDS),
  /** Where conn_tuple_t starts in the key (conn_tuple maps only). */
  tupleOffset: t.isOptional(t.isNumber()),
  /** As the backend names it: `hash`, `lru_hash`, `percpu_hash`, ... */
  mapType: t.isString(),
  keySize: isU32(),
  valueSize: isU32(),
  maxEntries: isU32(),
  /** Processes holding the map open (bpftool's `pids`); empty when the backend cannot tell. */
  holders: t.isArray(isMapHolder),
  backend: t.isEnum(BACKENDS),
  /** Set when the map cannot be judged (key size differs from the catalogue's, ...). */
  problem: t.isOptional(t.isString()),
});
export type MapRecord = t.InferType<typeof isMapRecord>;

/** Key of a conn_tuple-keyed map, decoded. Addresses are printable (dotted quad / compressed v6). */
export const isConnTupleKey = t.isPartial({
  kind: t.isLiteral(`conn_tuple`),
  family: t.isEnum([`v4`, `v6`] as const),
  proto: t.isEnum([`tcp`, `udp`] as const),
  saddr: t.isString(),
  sport: isPort(),
  daddr: t.isString(),
  dport: isPort(),
  /** `ip:port` (`[v6]:port`), for people and for grouping. */
  src: t.isString(),
  dst: t.isString(),
  netns: isU32(),
  pid: isU32(),
  metadata: isU32(),
  /** Fields of the key outside the tuple: stream_id, correlation_id, index (u64 as string). */
  extra: t.isOptional(t.isDict(t.isOneOf([t.isNumber(), t.isString()]))),
});
export type ConnTupleKey = t.InferType<typeof isConnTupleKey>;

export const isPidTgidKey = t.isPartial({
  kind: t.isLiteral(`pid_tgid`),
  /** The raw u64, decimal. */
  pidTgid: isU64String(),
  /** Upper 32 bits: the process id. */
  tgid: isU32(),
  /** Lower 32 bits: the thread id. */
  tid: isU32(),
});
export type PidTgidKey = t.InferType<typeof isPidTgidKey>;

export const isDecodedKey = t.isOneOf([isConnTupleKey, isPidTgidKey]);
export type DecodedKey = ConnTupleKey | PidTgidKey;

/** One map entry. `key` is null when the key could not be decoded (`keyError` says why). */
export const isEntryRecord = t.isPartial({
  type: t.isLiteral(`entry`),
  v: isVersion(),
  mapId: isU32(),
  /** Catalogue name of the map. */
  map: t.isString(),
  keyHex: isHex(),
  /** Raw value bytes; absent for per-CPU maps, which have `valuesHex` (one per CPU). */
  valueHex: t.isOptional(isHex()),
  valuesHex: t.isOptional(t.isArray(isHex())),
  key: t.isNullable(isDecodedKey),
  keyError: t.isOptional(t.isString()),
});
export type EntryRecord = t.InferType<typeof isEntryRecord> & {key: DecodedKey | null};

/** End of one map's dump. */
export const isMapStatsRecord = t.isPartial({
  type: t.isLiteral(`mapstats`),
  v: isVersion(),
  mapId: isU32(),
  map: t.isString(),
  /** Entries emitted (unique keys). */
  entries: t.isNumber(),
  /** Repeated keys dropped (a busy hash map's iteration can restart). */
  duplicates: t.isNumber(),
  /** Error objects inside the dump (failed lookups). */
  errors: t.isNumber(),
  /** Whether the dump carried BTF-formatted keys. */
  btf: t.isBoolean(),
  /** False when the dump stopped early (timeout, backend error): the entries are a subset. */
  complete: t.isBoolean(),
  error: t.isOptional(t.isString()),
});
export type MapStatsRecord = t.InferType<typeof isMapStatsRecord>;

// ---------------------------------------------------------------------------------------------
// snapshot-conns

export const NETNS_SOURCES = [`process`, `bind-mount`] as const;

export const isNetnsRecord = t.isPartial({
  type: t.isLiteral(`netns`),
  v: isVersion(),
  netnsInode: isU32(),
  /** How it was discovered: from a process's ns/net link, a bind mount (/run/netns/...), or both. */
  foundBy: t.isArray(t.isEnum(NETNS_SOURCES)),
  /** A few processes in it (empty for a process-less namespace). */
  pids: t.isArray(isU32()),
  /** Bind-mount paths that hold it. */
  paths: t.isArray(t.isString()),
  /** How its tables were read: `proc-pid:<pid>` or `nsenter:<path>`; null when they could not be. */
  readVia: t.isNullable(t.isString()),
  /** False when a table could not be read: verdicts in it are `unknown`, not `leaked`. */
  complete: t.isBoolean(),
  problems: t.isOptional(t.isArray(t.isString())),
});
export type NetnsRecord = t.InferType<typeof isNetnsRecord>;

export const SOCKET_STATES = [
  `ESTABLISHED`, `SYN_SENT`, `SYN_RECV`, `FIN_WAIT1`, `FIN_WAIT2`, `TIME_WAIT`, `CLOSE`,
  `CLOSE_WAIT`, `LAST_ACK`, `LISTEN`, `CLOSING`, `NEW_SYN_RECV`, `UNKNOWN`,
] as const;
export type SocketState = (typeof SOCKET_STATES)[number];

export const isSocketRecord = t.isPartial({
  type: t.isLiteral(`socket`),
  v: isVersion(),
  netnsInode: isU32(),
  proto: t.isEnum([`tcp`, `udp`] as const),
  /** Family after folding ::ffff:a.b.c.d to a.b.c.d (as the eBPF side does). */
  family: t.isEnum([`v4`, `v6`] as const),
  /** The table it was listed in: `v6` with family `v4` means a folded dual-stack row. */
  listedFamily: t.isEnum([`v4`, `v6`] as const),
  laddr: t.isString(),
  lport: isPort(),
  raddr: t.isString(),
  rport: isPort(),
  state: t.isEnum(SOCKET_STATES),
  /** Socket inode (0 for TIME_WAIT rows). */
  inode: t.isNumber(),
  uid: t.isNumber(),
});
export type SocketRecord = t.InferType<typeof isSocketRecord>;

// ---------------------------------------------------------------------------------------------
// snapshot-pids

export const isProcessRecord = t.isPartial({
  type: t.isLiteral(`process`),
  v: isVersion(),
  pid: isU32(),
  /** Thread ids in /proc/PID/task (includes pid itself). */
  tids: t.isArray(isU32()),
  /** R, S, D, Z, T, t, X, I, ... as in /proc/PID/stat. */
  state: t.isString(),
  /** Field 22 of /proc/PID/stat: clock ticks since boot. */
  startTime: t.isNumber(),
  comm: t.isString(),
  netnsInode: t.isNullable(isU32()),
});
export type ProcessRecord = t.InferType<typeof isProcessRecord>;

/** Last record of a snapshot stage: what was snapshotted, and whether all of it was readable. */
export const isSnapshotRecord = t.isPartial({
  type: t.isLiteral(`snapshot`),
  v: isVersion(),
  of: t.isEnum([`conns`, `pids`] as const),
  procRoot: t.isString(),
  time: t.isString(),
  timeMs: t.isNumber(),
  count: t.isNumber(),
  complete: t.isBoolean(),
});
export type SnapshotRecord = t.InferType<typeof isSnapshotRecord>;

// ---------------------------------------------------------------------------------------------
// validate / recheck

export const VERDICT_STATUSES = [`leaked`, `alive`, `unknown`, `resolved`] as const;
export type VerdictStatus = (typeof VERDICT_STATUSES)[number];

/** Every reason a verdict can carry, by status. README "Verdict reasons" explains each. */
export const REASONS = {
  leaked: [
    `no_connection`, `no_connection_any_namespace`, `wrong_namespace`, `unknown_namespace`,
    `no_listener`, `process_gone`, `thread_gone`, `zombie`,
  ],
  alive: [`established`, `listening`, `listening_wildcard`, `bound`, `process_alive`, `thread_alive`, `race`],
  unknown: [`namespace_unreadable`, `no_snapshot`, `undecodable_key`, `map_problem`],
  resolved: [`removed_from_map`],
} as const;
export type Reason = (typeof REASONS)[keyof typeof REASONS][number];
const ALL_REASONS = Object.values(REASONS).flat() as Array<Reason>;

export const isMatch = t.isPartial({
  netnsInode: t.isOptional(isU32()),
  socket: t.isOptional(t.isPartial({
    proto: t.isString(), laddr: t.isString(), lport: isPort(), raddr: t.isString(), rport: isPort(),
    state: t.isString(), inode: t.isNumber(),
  })),
  process: t.isOptional(t.isPartial({pid: isU32(), comm: t.isString(), state: t.isString()})),
});
export type Match = t.InferType<typeof isMatch>;

export const isVerdictRecord = t.isPartial({
  type: t.isLiteral(`verdict`),
  v: isVersion(),
  mapId: isU32(),
  map: t.isString(),
  keyHex: isHex(),
  valueHex: t.isOptional(isHex()),
  /** As in the entry: per-CPU values, and why the key could not be decoded. */
  valuesHex: t.isOptional(t.isArray(isHex())),
  keyError: t.isOptional(t.isString()),
  key: t.isNullable(isDecodedKey),
  status: t.isEnum(VERDICT_STATUSES),
  reason: t.isEnum(ALL_REASONS),
  /** What made it alive, or the near miss that made it `wrong_namespace`. */
  match: t.isOptional(isMatch),
  /** The process behind the entry (tuple pid or pid_tgid's tgid) when known: for grouping. */
  owner: t.isOptional(t.isPartial({pid: isU32(), comm: t.isNullable(t.isString())})),
  /** 1 after validate, 2 after recheck looked again. */
  checks: t.isNumber(),
});
export type VerdictRecord = t.InferType<typeof isVerdictRecord> & {key: DecodedKey | null};

/** Per-map tally that closes validate's and recheck's output. */
export const isSummaryRecord = t.isPartial({
  type: t.isLiteral(`summary`),
  v: isVersion(),
  stage: t.isEnum([`validate`, `recheck`] as const),
  mapId: isU32(),
  map: t.isString(),
  total: t.isNumber(),
  alive: t.isNumber(),
  leaked: t.isNumber(),
  unknown: t.isNumber(),
  resolved: t.isNumber(),
  /** Leaked at the first look, alive at the second (recheck only). */
  raceFiltered: t.isNumber(),
});
export type SummaryRecord = t.InferType<typeof isSummaryRecord>;

// ---------------------------------------------------------------------------------------------

export type WireRecord =
  | HeaderRecord | MapRecord | EntryRecord | MapStatsRecord
  | NetnsRecord | SocketRecord | ProcessRecord | SnapshotRecord
  | VerdictRecord | SummaryRecord;
export type RecordType = WireRecord[`type`];

/** Anything read off a pipe: known fields guaranteed only for the types a stage checks. */
export type AnyRecord = {type: string, v: number, [field: string]: unknown};

export const GUARDS: {[K in RecordType]: t.StrictValidator<unknown, Extract<WireRecord, {type: K}>>} = {
  header: isHeaderRecord,
  map: isMapRecord,
  entry: isEntryRecord as t.StrictValidator<unknown, EntryRecord>,
  mapstats: isMapStatsRecord,
  netns: isNetnsRecord,
  socket: isSocketRecord,
  process: isProcessRecord,
  snapshot: isSnapshotRecord,
  verdict: isVerdictRecord as t.StrictValidator<unknown, VerdictRecord>,
  summary: isSummaryRecord,
};

/**
 * Checks a record against its type's guard. Returns null when it is fine, else a message
 * naming the fields that are wrong. Records of types we do not know pass (they are passed through).
 */
export function checkRecord(record: AnyRecord): string | null {
  const guard = (GUARDS as Record<string, t.StrictValidator<unknown, unknown>>)[record.type];
  if (!guard)
    return null;
  const errors: Array<string> = [];
  const value: unknown = record;
  if (guard(value, {errors}))
    return null;
  return `invalid ${String(record.type)} record: ${errors.slice(0, 3).join(`; `)}`;
}

export function isRecordOf<K extends RecordType>(record: AnyRecord, type: K): record is AnyRecord & Extract<WireRecord, {type: K}> {
  return record.type === type;
}
