// THE WIRE CONTRACT: every NDJSON record any stage reads or writes, declared once in RECORDS below.
//
// ADDING A FIELD is one line in its record's table: `name: req(kind, 'doc')` or
// `name: opt(kind, 'doc')` (kinds in src/fieldKinds.ts: u32, port, number, string, boolean, hex,
// u64 (decimal string), oneOf([...]), arrayOf(k), nullable(k), object(...), json). ADDING A RECORD
// TYPE is one entry in RECORDS (plus an exported type alias if code names it). Everything else
// follows from the table: the TypeScript types (inferred), the one check every reader runs
// (`checkRecord`, fast path and its message), the verdict serializer's field list, and
// docs/wire-format.md (regenerate with `node_modules/.bin/tsx scripts/wire-format.ts --write`;
// test/wire-format.test.ts fails while it is stale).
//
// Rules every record follows:
// - one JSON object per line, with `type` (the record type) and `v` (the schema version);
// - 64-bit values (pid_tgid, u64 key fields) are decimal strings, never JSON numbers;
// - map keys and values travel as lowercase hex of the raw bytes (`keyHex`, `valueHex`);
// - records may carry fields a reader does not know: readers ignore them and stages that pass a
//   record on keep them (forward compatible). Unknown record types pass through untouched.
import {
  arrayOf, boolean, dictOf, fieldsProblem, fieldsTest, hex, json, literal, nullable, number, object, oneOf, opt, port, req,
  string, u32, u64, unionOf, variants, type Fields, type ObjectOf, type TypeOf,
} from './fieldKinds.ts';

export const SCHEMA_VERSION = 1;
export const TOOL_NAME = `usm-leak-detector`;

export const STAGES = [`dump-maps`, `snapshot-conns`, `snapshot-pids`, `validate`, `recheck`, `report`, `scan`, `capture`, `diff`] as const;
export type Stage = (typeof STAGES)[number];

/** conn_tuple_t, u64 pid_tgid, pid_fd_t {pid, fd}, {pid, goroutine id}, a pointer (judged by the value's tuple). */
export const KEY_KINDS = [`conn_tuple`, `pid_tgid`, `pid_fd`, `pid_goroutine`, `pointer`] as const;
export type KeyKind = (typeof KEY_KINDS)[number];
export const BACKENDS = [`kernel`, `bpftool`, `system-probe`] as const;
export type BackendName = (typeof BACKENDS)[number];
export const NETNS_SOURCES = [`process`, `bind-mount`] as const;
export const SOCKET_STATES = [
  `ESTABLISHED`, `SYN_SENT`, `SYN_RECV`, `FIN_WAIT1`, `FIN_WAIT2`, `TIME_WAIT`, `CLOSE`,
  `CLOSE_WAIT`, `LAST_ACK`, `LISTEN`, `CLOSING`, `NEW_SYN_RECV`, `UNKNOWN`,
] as const;
export type SocketState = (typeof SOCKET_STATES)[number];
export const VERDICT_STATUSES = [`leaked`, `alive`, `unknown`, `resolved`] as const;
export type VerdictStatus = (typeof VERDICT_STATUSES)[number];

/** Every reason a verdict can carry, by status. README "Verdict reasons" explains each. */
export const REASONS = {
  leaked: [
    `no_connection`, `no_connection_any_namespace`, `wrong_namespace`, `unknown_namespace`,
    `no_listener`, `process_gone`, `thread_gone`, `zombie`, `fd_closed`, `fd_reused`,
  ],
  alive: [`established`, `listening`, `listening_wildcard`, `bound`, `process_alive`, `thread_alive`, `race`, `fd_socket`],
  unknown: [
    `namespace_unreadable`, `no_snapshot`, `undecodable_key`, `map_problem`, `updated_after_snapshot`,
    `no_fd_snapshot`, `incomplete_value_tuple`,
  ],
  resolved: [`removed_from_map`],
} as const;
export type Reason = (typeof REASONS)[keyof typeof REASONS][number];
const ALL_REASONS: ReadonlyArray<Reason> = Object.values(REASONS).flat();

const family = oneOf([`v4`, `v6`]);
const proto = oneOf([`tcp`, `udp`]);

// ---------------------------------------------------------------------------------------------
// Nested objects

export const mapHolder = object(`holder`, {
  pid: req(u32),
  comm: req(string),
});

/** Key of a conn_tuple-keyed map, decoded. Addresses are printable (dotted quad / compressed v6). */
export const connTupleKey = object(`conn_tuple key`, {
  kind: req(literal(`conn_tuple`)),
  family: req(family),
  proto: req(proto),
  saddr: req(string),
  sport: req(port),
  daddr: req(string),
  dport: req(port),
  src: req(string, `\`ip:port\` (\`[v6]:port\`), for people and for grouping`),
  dst: req(string),
  netns: req(u32),
  pid: req(u32),
  metadata: req(u32),
  extra: opt(dictOf(unionOf(number, string, `number or string`)), `key fields outside the tuple: stream_id, correlation_id, index (u64 as string)`),
});

export const pidTgidKey = object(`pid_tgid key`, {
  kind: req(literal(`pid_tgid`)),
  pidTgid: req(u64, `the raw u64`),
  tgid: req(u32, `upper 32 bits: the process id`),
  tid: req(u32, `lower 32 bits: the thread id`),
  extra: opt(dictOf(unionOf(number, string, `number or string`)), `key fields besides pid_tgid (ssl_sock_by_ctx: ctx)`),
});

export const pidFdKey = object(`pid_fd key`, {
  kind: req(literal(`pid_fd`)),
  pid: req(u32, `the process id (TGID)`),
  fd: req(u32),
});

export const pidGoroutineKey = object(`pid_goroutine key`, {
  kind: req(literal(`pid_goroutine`)),
  pid: req(u32, `the process id (TGID)`),
  goroutineId: req(string, `s64, decimal`),
});

export const pointerKey = object(`pointer key`, {
  kind: req(literal(`pointer`)),
  pointer: req(string, `\`0x...\`: an address in some process; the entry is judged by its value's tuple`),
});

export const decodedKey = variants(`kind`, `decoded key`, [connTupleKey, pidTgidKey, pidFdKey, pidGoroutineKey, pointerKey]);

export const match = object(`match`, {
  netnsInode: opt(u32),
  socket: opt(object(`socket match`, {
    proto: req(string), laddr: req(string), lport: req(port), raddr: req(string), rport: req(port), state: req(string), inode: req(number),
  })),
  process: opt(object(`process match`, {pid: req(u32), comm: req(string), state: req(string)})),
});

export const owner = object(`owner`, {
  pid: req(u32),
  comm: req(nullable(string), `null when the process is gone`),
});

// ---------------------------------------------------------------------------------------------
// The fields an entry has; a verdict carries all of them too (and any the entry had beyond these).
const ENTRY_FIELDS = {
  mapId: req(u32),
  map: req(string, `catalogue name of the map (src/catalogue.ts)`),
  keyHex: req(hex),
  valueHex: opt(hex, `raw value bytes; absent for per-CPU maps (\`valuesHex\`) and for BTF-only values (\`valueBtf\`)`),
  valuesHex: opt(arrayOf(hex), `per-CPU maps: one value per CPU`),
  valueBtf: opt(json, `the BTF-decoded value (u64 as decimal strings) when system-probe printed no value bytes`),
  key: req(nullable(decodedKey), `decoded key; null when it could not be decoded (\`keyError\` says why)`),
  keyError: opt(string),
  valueTuple: opt(connTupleKey, `the conn_tuple_t in the value (tuple_by_pid_fd, conn_tup_by_go_tls_conn, ssl_sock_by_ctx), decoded`),
  ageSeconds: opt(number, `seconds from the newest CLOCK_MONOTONIC timestamp in the value to the map's \`monotonicNs\` (dated maps only)`),
  ageField: opt(string, `the value field that gave \`ageSeconds\` (\`updated\`, \`request_started\`, \`response_last_seen\`)`),
} as const satisfies Fields;

/** One leaked entry as the report lists it (`leak` records, diff's persisting samples). */
const LEAK_FIELDS = {
  mapId: req(u32),
  map: req(string, `catalogue name of the map`),
  reason: req(oneOf(ALL_REASONS)),
  keyHex: req(hex),
  key: req(nullable(decodedKey)),
  listener: req(boolean, `a listener tuple (no remote side): its destination prints as \`*:*\``),
  pid: req(nullable(u32), `the process behind the entry (tuple pid, pid_tgid's tgid); null when the key has none`),
  comm: req(nullable(string), `its command when known`),
  processGone: req(nullable(boolean), `true when the process snapshot shows it exited; null without a process snapshot`),
  checks: req(number, `2 when a recheck confirmed it`),
  ageSeconds: req(nullable(number), `age of the entry when the dump knew it`),
} as const satisfies Fields;

export const leakRow = object(`leak row`, LEAK_FIELDS);

/** What a record type is, who writes it, and its fields (`type` and `v` are implied). */
interface RecordSpec<F extends Fields = Fields> {
  readonly doc: string;
  readonly fields: F;
}

function record<const F extends Fields>(doc: string, fields: F): RecordSpec<F> {
  return {doc, fields};
}

// ---------------------------------------------------------------------------------------------
// THE TABLE. Order is the order of docs/wire-format.md.

export const RECORDS = {
  header: record(`first record of every stream a stage writes`, {
    stage: req(oneOf(STAGES)),
    tool: req(literal(TOOL_NAME)),
    toolVersion: req(string),
    host: req(string, `host name`),
    kernel: req(string, `\`uname -r\``),
    time: req(string, `when the stage started, ISO 8601 UTC`),
    timeMs: req(number, `the same in milliseconds since the Unix epoch, for arithmetic (recheck delays)`),
    replayed: opt(boolean, `true when the data was not read live by this run: a capture (\`--from\`, its meta/), a stream that came from one, or another host's. host, kernel and time are then where and when the data was taken`),
    replayedOn: opt(object(`replayed on`, {host: req(string), time: req(string), timeMs: req(number)}), `with \`replayed\`: the machine and time that replayed it`),
  }),

  map: record(`dump-maps: one per map found, before its entries`, {
    mapId: req(u32),
    name: req(string, `the kernel's name: at most 15 characters`),
    catalogName: req(string, `the catalogue's full name (src/catalogue.ts)`),
    keyKind: req(oneOf(KEY_KINDS)),
    tupleOffset: opt(number, `where conn_tuple_t starts in the key (conn_tuple maps only)`),
    mapType: req(string, `as the backend names it: \`hash\`, \`lru_hash\`, \`percpu_hash\`, ...`),
    keySize: req(u32),
    valueSize: req(u32),
    maxEntries: req(u32),
    holders: req(arrayOf(mapHolder), `processes holding the map open (bpftool's \`pids\`); empty when the backend cannot tell`),
    backend: req(oneOf(BACKENDS)),
    problem: opt(string, `set when the map cannot be judged (key size differs from the catalogue's, ...)`),
    judgedBy: opt(literal(`value`), `entries are judged by the conn_tuple_t in their value (the key is a pointer)`),
    discovered: opt(boolean, `not in the catalogue: found by a conn_tuple_t in its BTF key type (\`tupleOffset\` from BTF)`),
    assumption: opt(string, `the layout read is assumed (no BTF confirmed it): what was assumed`),
    ageFields: opt(arrayOf(string), `value fields that date entries (CLOCK_MONOTONIC ns), as \`name@offset\`: its entries carry \`ageSeconds\``),
    monotonicNs: opt(u64, `CLOCK_MONOTONIC nanoseconds when the map's dump started: what entry ages are measured from`),
  }),

  entry: record(`dump-maps: one per map entry`, ENTRY_FIELDS),

  mapstats: record(`dump-maps: one per map, after its entries`, {
    mapId: req(u32),
    map: req(string),
    entries: req(number, `entries emitted (unique keys)`),
    duplicates: req(number, `repeated keys dropped (iteration over a busy hash map can restart)`),
    errors: req(number, `error objects inside the dump (failed lookups)`),
    btf: req(boolean, `the dump carried BTF-formatted keys`),
    complete: req(boolean, `false when the dump stopped early (timeout, backend error): the entries are a subset`),
    error: opt(string, `what stopped it, for people`),
    gone: opt(boolean, `true when the map no longer exists (freed after the listing, or a --map-id not listed): its entries went with it`),
  }),

  netns: record(`snapshot-conns: one per network namespace`, {
    netnsInode: req(u32),
    foundBy: req(arrayOf(oneOf(NETNS_SOURCES)), `from a process's ns/net link, a bind mount (/run/netns/...), or both`),
    pids: req(arrayOf(u32), `a few processes in it (empty for a process-less namespace)`),
    paths: req(arrayOf(string), `bind-mount paths that hold it`),
    readVia: req(nullable(string), `\`proc-pid:<pid>\`, \`setns:<path>\`, \`nsenter:<path>\`, or \`sock-diag\` (our own namespace, through NETLINK_SOCK_DIAG); null when its tables could not be read`),
    complete: req(boolean, `false when a table could not be read: verdicts in it are \`unknown\`, not \`leaked\``),
    problems: opt(arrayOf(string)),
  }),

  socket: record(`snapshot-conns: one per TCP/UDP socket`, {
    netnsInode: req(u32),
    proto: req(proto),
    family: req(family, `after folding ::ffff:a.b.c.d to a.b.c.d (as the eBPF side does)`),
    listedFamily: req(family, `the table it was listed in: \`v6\` with family \`v4\` is a folded dual-stack row`),
    laddr: req(string),
    lport: req(port),
    raddr: req(string),
    rport: req(port),
    state: req(oneOf(SOCKET_STATES)),
    inode: req(number, `socket inode (0 for TIME_WAIT rows)`),
    uid: req(number),
  }),

  process: record(`snapshot-pids: one per process`, {
    pid: req(u32),
    tids: req(arrayOf(u32), `thread ids in /proc/PID/task (includes pid itself)`),
    state: req(string, `R, S, D, Z, T, t, X, I, ... as in /proc/PID/stat`),
    startTime: req(number, `field 22 of /proc/PID/stat: clock ticks since boot`),
    comm: req(string),
    netnsInode: req(nullable(u32)),
    socketFds: opt(arrayOf(arrayOf(number)), `its socket fds as [fd, socket inode] pairs; only with \`--socket-fds\` (pid_fd maps are judged by them)`),
  }),

  snapshot: record(`last record of snapshot-conns / snapshot-pids: what was snapshotted, and whether all of it was readable`, {
    of: req(oneOf([`conns`, `pids`])),
    procRoot: req(string),
    time: req(string),
    timeMs: req(number),
    monotonicNs: opt(u64, `CLOCK_MONOTONIC nanoseconds when the snapshot started: entries dated later are races`),
    count: req(number),
    complete: req(boolean),
  }),

  verdict: record(`validate / recheck: one per entry, with every field of the entry (including fields this table does not know)`, {
    ...ENTRY_FIELDS,
    status: req(oneOf(VERDICT_STATUSES)),
    reason: req(oneOf(ALL_REASONS), `README "Verdict reasons" explains each`),
    checks: req(number, `1 after validate, 2 after recheck looked again`),
    match: opt(match, `what made it alive, or the near miss that made it \`wrong_namespace\``),
    owner: opt(owner, `the process behind the entry (tuple pid or pid_tgid's tgid) when known: for grouping`),
    judgedBy: opt(literal(`value`), `judged by the conn_tuple_t in the value (\`valueTuple\`), not by the key`),
  }),

  summary: record(`validate / recheck: per-map tally, at the end`, {
    stage: req(oneOf([`validate`, `recheck`])),
    mapId: req(u32),
    map: req(string),
    total: req(number),
    alive: req(number),
    leaked: req(number),
    unknown: req(number),
    resolved: req(number),
    raceFiltered: req(number, `leaked at the first look, alive at the second (recheck only)`),
    firstLookMs: opt(nullable(number), `recheck only: when the first look was taken (the earliest time of the input's headers and snapshot records), ms since the epoch; null when the input does not say`),
    secondLookMs: opt(nullable(number), `recheck only: when the second look was taken (the fresh snapshots, or the later capture's time); null when no second look was needed`),
    delayMs: opt(nullable(number), `recheck only: the delay asked for between the looks (\`--delay\`, or the capture script's \`-d\` from meta/delay); null when unknown`),
  }),

  leak: record(`report --list --format ndjson: one per leaked entry, after a header`, LEAK_FIELDS),

  mapdiff: record(`diff --format ndjson: one per map (matched by name), after a header`, {
    map: req(string),
    leakedBefore: req(number),
    leakedAfter: req(number),
    new: req(number, `leaked in the later capture, not leaked (or absent) in the earlier one, by key`),
    gone: req(number, `leaked in the earlier capture, absent or not leaked in the later one`),
    persisting: req(number, `leaked in both: the permanent leaks`),
    undetermined: req(number, `leaked in the earlier capture, not judged (unknown) in the later one`),
    entriesBefore: req(nullable(number)),
    entriesAfter: req(nullable(number)),
    maxEntries: req(nullable(number)),
    fillBefore: req(nullable(number)),
    fillAfter: req(nullable(number)),
    minutes: req(nullable(number), `between the captures' headers`),
    leaksPerHour: req(nullable(number), `(leakedAfter - leakedBefore) per hour`),
    entriesPerHour: req(nullable(number), `(entriesAfter - entriesBefore) per hour`),
    hoursToFull: req(nullable(number), `hours until max_entries at leaksPerHour; null when not growing`),
    persistingSamples: req(arrayOf(leakRow), `a few of the persisting leaks (\`--samples\`)`),
  }),
} as const;

// ---------------------------------------------------------------------------------------------
// Derived: types, the check, the reader's union. Nothing below needs editing to add a field.

export type RecordType = keyof typeof RECORDS;
export const RECORD_TYPES = Object.keys(RECORDS) as Array<RecordType>;

/** The record of one type, as TypeScript sees it (inferred from the table). */
export type RecordOf<K extends RecordType> = {type: K, v: typeof SCHEMA_VERSION} & ObjectOf<(typeof RECORDS)[K][`fields`]>;

export type HeaderRecord = RecordOf<`header`>;
export type MapRecord = RecordOf<`map`>;
export type EntryRecord = RecordOf<`entry`>;
export type MapStatsRecord = RecordOf<`mapstats`>;
export type NetnsRecord = RecordOf<`netns`>;
export type SocketRecord = RecordOf<`socket`>;
export type ProcessRecord = RecordOf<`process`>;
export type SnapshotRecord = RecordOf<`snapshot`>;
export type VerdictRecord = RecordOf<`verdict`>;
export type SummaryRecord = RecordOf<`summary`>;
/** The fields of an entry, which a verdict carries too: what the rules judge. */
export type EntryFields = ObjectOf<typeof ENTRY_FIELDS>;
export type ConnTupleKey = TypeOf<typeof connTupleKey>;
export type PidTgidKey = TypeOf<typeof pidTgidKey>;
export type PidFdKey = TypeOf<typeof pidFdKey>;
export type PidGoroutineKey = TypeOf<typeof pidGoroutineKey>;
export type PointerKey = TypeOf<typeof pointerKey>;
export type DecodedKey = ConnTupleKey | PidTgidKey | PidFdKey | PidGoroutineKey | PointerKey;
export type Match = TypeOf<typeof match>;

export type WireRecord = {[K in RecordType]: RecordOf<K>}[RecordType];

/**
 * A record of a type this tool does not know (a newer producer's): passed on untouched. Its
 * `type` is typed `never` so that narrowing on `type` (`switch (record.type)`) leaves it out of
 * every known case; at run time it is a string none of the known types.
 */
export interface ForeignRecord {
  type: never;
  v: number;
  [field: string]: unknown;
}

/** What readers yield and stages pass on: a checked record of a known type, or a foreign one. */
export type AnyRecord = WireRecord | ForeignRecord;

/** The fields of an entry record, which verdicts carry too (in this order). */
export const ENTRY_FIELD_NAMES: ReadonlyArray<string> = Object.keys(ENTRY_FIELDS);
/** The fields a verdict adds to its entry's (in this order): what validate's verdictLine appends. */
export const VERDICT_ONLY_FIELD_NAMES: ReadonlyArray<string> = Object.keys(RECORDS.verdict.fields).filter(name => !(name in ENTRY_FIELDS));
/** Every field the table gives a record type, `type` and `v` first. */
export function fieldNames(type: RecordType): ReadonlyArray<string> {
  return [`type`, `v`, ...Object.keys(RECORDS[type].fields)];
}

type RecordTest = (record: Record<string, unknown>) => boolean;

/**
 * Each record type's test, generated on the first check: code generated at load is made at every
 * start, and most runs (scan, a live dump) never check a record they did not make.
 */
let tests: ReadonlyMap<string, RecordTest> | null = null;

function recordTests(): ReadonlyMap<string, RecordTest> {
  return tests ??= new Map(RECORD_TYPES.map(type => [type, fieldsTest(RECORDS[type].fields)]));
}

const KNOWN_TYPES: ReadonlySet<string> = new Set(RECORD_TYPES);

/** True when `type` is one the table declares. */
export function isKnownType(type: unknown): type is RecordType {
  return KNOWN_TYPES.has(type as string);
}

/**
 * THE check of a record, used by every stage. Returns null when it is fine (or of a type this
 * tool does not know: those pass through), else a message naming the first wrong field.
 */
export function checkRecord(record: {type: unknown, v: unknown} & Record<string, unknown>): string | null {
  const test = recordTests().get(record.type as string);
  if (test === undefined || (record.v === SCHEMA_VERSION && test(record)))
    return null;
  const fields = RECORDS[record.type as RecordType].fields as Fields;
  const problem = record.v !== SCHEMA_VERSION
    ? `v: expected ${SCHEMA_VERSION}, got ${JSON.stringify(record.v)}`
    : fieldsProblem(fields, record, ``) ?? `does not match its spec`;
  return `invalid ${String(record.type)} record: ${problem}`;
}

/**
 * The entry table's test for an entry whose hex fields (`keyHex`, `valueHex`) are known to be hex:
 * src/entryLineParse.ts read them so. The same table with those fields' regex left out (a third
 * of an entry's check).
 */
let entryTestHexRead: RecordTest | null = null;

function entryTestHexReadOf(): RecordTest {
  return entryTestHexRead ??= fieldsTest(Object.fromEntries(Object.entries(ENTRY_FIELDS).map(([name, field]) =>
    [name, field.kind === hex ? {...field, kind: string} : field])));
}

/** checkRecord of an entry record whose `keyHex` and `valueHex` (when it has one) are lowercase hex of whole bytes. */
export function checkEntryHexRead(record: {type: unknown, v: unknown} & Record<string, unknown>): string | null {
  return record.type === `entry` && record.v === SCHEMA_VERSION && entryTestHexReadOf()(record) ? null : checkRecord(record);
}

/** Narrows a record to one known type after checking it; for records not read through readRecords. */
export function asRecordOf<K extends RecordType>(record: {type: unknown}, type: K): RecordOf<K> | null {
  if (record.type !== type)
    return null;
  return checkRecord(record as {type: unknown, v: unknown}) === null ? record as RecordOf<K> : null;
}
