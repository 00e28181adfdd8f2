// The one list of maps the tool knows. Adding a map is one line in CATALOGUE.
//
// Every line cites where its layout was read in DataDog/datadog-agent (paths under
// pkg/network/ebpf/c/ unless they start with pkg/; `@commit` = the version read; `newest` = the
// most recent version the source index holds). Kernel names are the first 15 characters
// (BPF_OBJ_NAME_LEN - 1). A map whose layout changed across agent versions lists each layout;
// the dump picks the one whose key size matches the real map (and BTF, when the map has it,
// gives exact offsets: src/btf.ts).
import {UsageFault} from './errors.ts';
import type {KeyKind} from './schema.ts';

/** How a map's key tuple relates to a socket's local/remote view (validate accepts both ways round anyway). */
export type Direction = `normalized` | `raw` | `socket`;

/** Key fields outside the tuple/pid: [name, offset, size, signed]. Sizes 4 or 8 (u64 → decimal string). */
export type ExtraFields = ReadonlyArray<readonly [string, number, 4 | 8, boolean?]>;

/** One layout of a map's key (and what in the value is judged). */
export interface KeyLayout {
  keyKind: KeyKind;
  /** Key size in bytes this layout has; checked against the real map. */
  keySize: number;
  /** conn_tuple keys: where conn_tuple_t starts. */
  tupleOffset?: number;
  /** Tail-call state keys: any size from tupleOffset + 48 up (the struct after the tuple grew across versions). */
  openSize?: boolean;
  /** pid_tgid: the u64; pid_fd / pid_goroutine: the u32 process id. */
  pidOffset?: number;
  /** pid_fd: the u32 fd. */
  fdOffset?: number;
  /** pid_goroutine: the s64 goroutine id. */
  goroutineOffset?: number;
  extra?: ExtraFields;
  /** The value holds a conn_tuple_t here: decoded into the entry's `valueTuple`. */
  valueTupleOffset?: number;
  /** The verdict is the value tuple's (the key, a pointer, says nothing checkable). */
  judgedBy?: `value`;
  /** Where the layout was read (agent source file @commit). */
  source: string;
  /** Said in the map record when this layout is only assumed (no BTF to confirm it). */
  assumption?: string;
}

/** CLOCK_MONOTONIC nanosecond fields (bpf_ktime_get_ns) in the value: names for BTF, offsets by value size without it. */
export interface AgeFields {
  names: ReadonlyArray<string>;
  bySize: {readonly [valueSize: number]: ReadonlyArray<readonly [string, number]>};
  source: string;
}

/** A userspace cleaner of the agent that deletes this map's entries. */
export interface Cleaner {
  what: string;
  /** `age`: entries older than ttlSeconds go at each pass; `dead_pid`: entries of dead processes go. */
  by: `age` | `dead_pid`;
  ttlSeconds?: number;
  intervalSeconds: number;
  source: string;
}

export interface CatalogueMap extends KeyLayout {
  /** The name in the C source. */
  name: string;
  /** Older layouts, told apart by key size. The map's own fields are the newest layout. */
  older?: ReadonlyArray<KeyLayout>;
  direction?: Direction;
  ages?: AgeFields;
  cleaner?: Cleaner;
  /** What it is judged against: the socket snapshot or the process snapshot (--conn-tuple-only / --pid-only). */
  judgedAgainst: `sockets` | `processes`;
  note?: string;
  /** Found through BTF (a conn_tuple_t in its key), not listed here. */
  discovered?: boolean;
}

/** BPF_OBJ_NAME_LEN is 16 including the NUL. */
export const KERNEL_NAME_MAX = 15;
export const kernelName = (name: string): string => name.slice(0, KERNEL_NAME_MAX);

export const CONN_TUPLE_SIZE = 48;

// --- the agent's cleaners (defaults) --------------------------------------------------------
const SETUP = `pkg/config/setup/system_probe.go (service_monitoring_config.http.idle_connection_ttl_seconds=30, map_cleaner_interval_seconds=300)`;
const HTTP_TTL: Cleaner = {what: `HTTP idle-connection TTL`, by: `age`, ttlSeconds: 30, intervalSeconds: 300, source: `pkg/network/protocols/http/protocol.go; ${SETUP}`};
const HTTP2_TTL: Cleaner = {...HTTP_TTL, source: `pkg/network/protocols/http2/protocol.go; ${SETUP}`};
/** Not re-read here: the in-flight cleaners of Redis and Postgres use the HTTP TTL (reference notes). */
const DB_TTL: Cleaner = {...HTTP_TTL, what: `in-flight TTL (HTTP idle-connection TTL)`, source: `pkg/ebpf/map_cleaner.go users (reference notes, not re-read); ${SETUP}`};
const CONN_PROTO: Cleaner = {what: `connection_protocol cleaner`, by: `age`, ttlSeconds: 180, intervalSeconds: 65, source: `pkg/network/tracer/tracer.go newest (connProtoTTL 3 min, every 65 s; pkg/network/usm/ebpf_main.go: every 5 min)`};
const TLS_DEAD_PID: Cleaner = {what: `native-TLS dead-PID scan`, by: `dead_pid`, intervalSeconds: 30, source: `pkg/network/usm/ebpf_ssl.go newest (nativeTLSScanTerminatedProcessesInterval = 30 s; cleanupDeadPids)`};

// --- timestamp fields -----------------------------------------------------------------------
const TX = [`request_started`, `response_last_seen`] as const;
const AGE_CONN_PROTO: AgeFields = {names: [`updated`], bySize: {16: [[`updated`, 8]]}, source: `protocols/classification/defs.h @0a1a8491 (protocol_stack_wrapper_t {stack; u64 updated}); shared-tracer-maps.h @0cee2741 sets it from bpf_ktime_get_ns()`};
const AGE_HTTP: AgeFields = {names: TX, bySize: {240: [[`request_started`, 0], [`response_last_seen`, 8]]}, source: `protocols/http/types.h @047faa35 (http_transaction_t); pkg/network/protocols/http/types_linux.go @047faa35 (EbpfTx)`};
const AGE_HTTP2: AgeFields = {names: TX, bySize: {232: [[`response_last_seen`, 48], [`request_started`, 56]], 192: [[`response_last_seen`, 48], [`request_started`, 56]]}, source: `protocols/http2/decoding-defs.h newest (http2_stream_t {u64 response_last_seen; u64 request_started; ...}: by BTF) and @d08878ef (tup first: 232 B); pkg/network/protocols/http2/types_linux.go @039a9004 (192 B)`};
const AGE_REDIS: AgeFields = {names: TX, bySize: {160: [[`request_started`, 136], [`response_last_seen`, 144]]}, source: `protocols/redis/types.h @237f7023 (redis_transaction_t {char buf[MAX_KEY_LEN=128] (redis/defs.h @26dad416); u8 error; u64 request_started; u64 response_last_seen; ...})`};
const AGE_POSTGRES: AgeFields = {names: TX, bySize: {184: [[`request_started`, 160], [`response_last_seen`, 168]]}, source: `protocols/postgres/types.h @03a24b84 (postgres_transaction_t {char request_fragment[160]; u64 request_started; u64 response_last_seen; ...})`};
const AGE_KAFKA: AgeFields = {names: TX, bySize: {}, source: `protocols/kafka/types.h newest (kafka_transaction_t {u64 request_started; u64 response_last_seen; ...}); older versions {conn_tuple_t tup; u64 request_started; ...}: offsets by BTF only`};

// --- layouts --------------------------------------------------------------------------------
const SOCKFD = `protocols/sockfd.h newest (sockfd_lookup_args, tuple_by_pid_fd, pid_fd_by_tuple); pid_fd.h (pid_fd_t {u32 pid; u32 fd})`;
const NATIVE_TLS = `protocols/tls/native-tls-maps.h @5b159f43; pkg/network/usm/ebpf_ssl.go newest`;
const GO_TLS = `protocols/tls/go-tls-maps.h newest (HASH, 10240 entries)`;
const HTTP2_MAPS = `protocols/http2/maps-defs.h @8fdcfbbc; decoding-defs.h`;
const KAFKA_MAPS = `protocols/kafka/parsing-maps.h newest; kafka/types.h`;
const TLS_CERTS = `protocols/tls/tls-certs-maps.h @7d530b6d`;
const STRUCTS = `protocols/classification/structs.h newest (dispatcher_arguments_t, tls_dispatcher_arguments_t: conn_tuple_t first)`;

const tuple = (name: string, source: string, more: Partial<CatalogueMap> = {}): CatalogueMap =>
  ({name, keyKind: `conn_tuple`, keySize: CONN_TUPLE_SIZE, tupleOffset: 0, direction: `normalized`, judgedAgainst: `sockets`, source, ...more});
const pidTgid = (name: string, source: string, more: Partial<CatalogueMap> = {}): CatalogueMap =>
  ({name, keyKind: `pid_tgid`, keySize: 8, pidOffset: 0, judgedAgainst: `processes`, source, ...more});
/** Tail-call state keyed by a struct that starts with the tuple. */
const tailCall = (name: string, source: string): CatalogueMap =>
  tuple(name, source, {keySize: 64, openSize: true, direction: `raw`, note: `short-lived tail-call state: an entry that outlives its connection is a leak`});
const goroutine = (name: string): CatalogueMap => ({
  name, keyKind: `pid_goroutine`, keySize: 16, pidOffset: 0, goroutineOffset: 8, judgedAgainst: `processes`,
  source: `${GO_TLS}; go_tls_function_args_key_t {u32 pid; s64 goroutine_id} per reference notes (older go-tls-types.h @7612b5c6 has goroutine_id first: BTF tells them apart)`,
  assumption: `no BTF: pid assumed at offset 0 (the newest layout); agents built from go-tls-types.h @7612b5c6 have it at 8`,
});

export const CATALOGUE: ReadonlyArray<CatalogueMap> = [
  // conn_tuple_t-keyed maps (the original tool's CONN_TUPLE_MAPS, same order)
  tuple(`connection_states`, `protocols/classification/dispatcher-maps.h (conn_tuple_t → u32)`, {direction: `raw`, note: `raw packet direction; both directions can exist`}),
  tuple(`pid_fd_by_tuple`, `${SOCKFD} (conn_tuple_t → pid_fd_t)`, {direction: `socket`}),
  tuple(`ssl_ctx_by_tuple`, `protocols/tls/native-tls-maps.h newest (conn_tuple_t → void *); pkg/network/usm/ebpf_ssl.go newest`, {direction: `socket`, cleaner: TLS_DEAD_PID}),
  tuple(`http_in_flight`, `protocols/http/maps.h (conn_tuple_t → http_transaction_t)`, {ages: AGE_HTTP, cleaner: HTTP_TTL}),
  tuple(`redis_in_flight`, `protocols/redis/decoding-maps.h (conn_tuple_t → redis_transaction_t)`, {ages: AGE_REDIS, cleaner: DB_TTL}),
  tuple(`redis_key_in_flight`, `protocols/redis/decoding-maps.h (conn_tuple_t → redis_key_data_t)`),
  tuple(`postgres_in_flight`, `protocols/postgres/decoding-maps.h (conn_tuple_t → postgres_transaction_t)`, {ages: AGE_POSTGRES, cleaner: DB_TTL}),
  tuple(`http2_in_flight`, `${HTTP2_MAPS} (http2_stream_key_t {conn_tuple_t tup; u32 stream_id} + 4 pad → http2_stream_t)`, {keySize: 56, extra: [[`stream_id`, 48, 4]], ages: AGE_HTTP2, cleaner: HTTP2_TTL}),
  tuple(`http2_dynamic_counter_table`, `${HTTP2_MAPS} (conn_tuple_t → u64)`, {direction: `raw`}),
  tuple(`http2_dynamic_table`, `${HTTP2_MAPS} (dynamic_table_index_t {u64 index; conn_tuple_t tup})`, {keySize: 56, tupleOffset: 8, extra: [[`index`, 0, 8]], direction: `raw`}),
  tuple(`http2_incomplete_frames`, `${HTTP2_MAPS} (conn_tuple_t → incomplete_frame_t)`, {direction: `raw`}),
  tuple(`kafka_response`, `${KAFKA_MAPS} (conn_tuple_t → kafka_response_context_t)`, {direction: `raw`}),
  tuple(`kafka_in_flight`, `${KAFKA_MAPS} (kafka_transaction_key_t {conn_tuple_t tuple; s32 correlation_id} + 4 pad → kafka_transaction_t)`, {keySize: 56, extra: [[`correlation_id`, 48, 4, true]], direction: `raw`, ages: AGE_KAFKA}),
  tuple(`go_tls_conn_by_tuple`, `${GO_TLS} (conn_tuple_t → void *)`, {direction: `socket`}),
  tuple(`connection_protocol`, `protocols/classification/shared-tracer-maps.h @0cee2741 (conn_tuple_t → protocol_stack_wrapper_t)`, {ages: AGE_CONN_PROTO, cleaner: CONN_PROTO}),
  tuple(`tls_enhanced_tags`, `protocols/classification/shared-tracer-maps.h @0cee2741 (conn_tuple_t → tls_info_t)`, {note: `the network tracer has a cleaner for it (reference notes; defaults not read)`}),
  // u64 pid_tgid-keyed maps (the original tool's PID_KEYED_MAPS)
  pidTgid(`ssl_read_args`, NATIVE_TLS, {cleaner: TLS_DEAD_PID}),
  pidTgid(`ssl_read_ex_args`, NATIVE_TLS, {cleaner: TLS_DEAD_PID}),
  pidTgid(`ssl_write_args`, NATIVE_TLS, {cleaner: TLS_DEAD_PID}),
  pidTgid(`ssl_write_ex_args`, NATIVE_TLS, {cleaner: TLS_DEAD_PID}),
  pidTgid(`bio_new_socket_args`, NATIVE_TLS, {cleaner: TLS_DEAD_PID}),
  pidTgid(`ssl_ctx_by_pid_tgid`, NATIVE_TLS, {cleaner: TLS_DEAD_PID}),
  // Added from the newest agent source (issue 15).
  tuple(`http2_remainder`, `${HTTP2_MAPS} (conn_tuple_t → frame_header_remainder_t)`, {direction: `raw`}),
  tuple(`http2_interesting_dynamic_table_set`, `${HTTP2_MAPS} (dynamic_table_index_t {u64 index; conn_tuple_t tup} → bool; older agents)`, {keySize: 56, tupleOffset: 8, extra: [[`index`, 0, 8]], direction: `raw`}),
  tuple(`kafka_tcp_seq`, `${KAFKA_MAPS} (conn_tuple_t → u32)`, {direction: `raw`}),
  tuple(`java_tls_connections`, `protocols/tls/java/maps.h @64c6cb10 (conn_tuple_t → bool)`),
  tuple(`mongo_request_id`, `protocols/classification/maps.h @25a9bb64; structs.h (mongo_key {conn_tuple_t tup; s32 req_id} + 4 pad → bool)`, {keySize: 56, extra: [[`req_id`, 48, 4, true]], direction: `raw`}),
  tailCall(`http2_iterations`, `${HTTP2_MAPS}; ${STRUCTS} (dispatcher_arguments_t {conn_tuple_t tup; skb_info_t skb_info})`),
  tailCall(`tls_http2_iterations`, `${HTTP2_MAPS}; ${STRUCTS} (tls_dispatcher_arguments_t {conn_tuple_t tup; u64 tags; char *buffer_ptr; ...})`),
  tailCall(`kprobe_http2_iterations`, `protocols/http2/maps-defs.h newest (kprobe_dispatcher_arguments_t; tuple first per reference notes, not re-read)`),
  pidTgid(`sockfd_lookup_args`, `${SOCKFD} (u64 pid_tgid → u32 fd)`),
  pidTgid(`ssl_certs_statem_args`, `${TLS_CERTS} (u64 pid_tgid → void *)`),
  pidTgid(`ssl_certs_i2d_X509_args`, `${TLS_CERTS} (u64 pid_tgid → i2d_X509_args_t)`),
  {name: `tuple_by_pid_fd`, keyKind: `pid_fd`, keySize: 8, pidOffset: 0, fdOffset: 4, valueTupleOffset: 0, judgedAgainst: `processes`, direction: `socket`, source: `${SOCKFD} (pid_fd_t → conn_tuple_t)`},
  {name: `sock_by_pid_fd`, keyKind: `pid_fd`, keySize: 8, pidOffset: 0, fdOffset: 4, judgedAgainst: `processes`, source: `protocols/sockfd.h @19b74514 (pid_fd_t → struct sock *; older agents)`},
  goroutine(`go_tls_read_args`),
  goroutine(`go_tls_write_args`),
  {
    name: `conn_tup_by_go_tls_conn`, keyKind: `pointer`, keySize: 8, valueTupleOffset: 0, judgedBy: `value`, judgedAgainst: `sockets`, direction: `socket`,
    source: `${GO_TLS} (void * (*tls.Conn) → conn_tuple_t)`,
    older: [{keyKind: `pointer`, keySize: 4, valueTupleOffset: 0, judgedBy: `value`, source: `protocols/tls/go-tls-maps.h @08f71877 (__u32 → conn_tuple_t)`}],
  },
  {
    name: `ssl_sock_by_ctx`, keyKind: `pid_tgid`, keySize: 16, pidOffset: 0, extra: [[`ctx`, 8, 8]], valueTupleOffset: 0, judgedAgainst: `processes`, direction: `socket`, cleaner: TLS_DEAD_PID,
    source: `pkg/network/usm/ebpf_ssl.go newest (key ssl_ctx_pid_tgid_t {Tgid = pid_tgid, Ctx}, value ssl_sock_t; the cleaner judges key.Tgid >> 32)`,
    assumption: `no BTF: pid_tgid assumed at offset 0 and ctx at 8 (field order not confirmed in the C source)`,
    older: [{keyKind: `pointer`, keySize: 8, valueTupleOffset: 0, judgedBy: `value`, source: `${NATIVE_TLS.split(`;`)[0]} (void * → ssl_sock_t {conn_tuple_t tup; u32 fd}); protocols/http/types.h @047faa35`}],
  },
];

/** Maps of the agent that are deliberately not catalogued, and why (README "Maps"). */
export const NOT_CATALOGUED: ReadonlyArray<readonly [string, string]> = [
  [`fd_by_ssl_bio`, `key is a BIO pointer (older: a u32 fd) with no pid: nothing on the host to judge it by`],
  [`pid_fd_by_sock`, `key is a kernel struct sock pointer (older agents): not visible from userspace`],
  [`offsets_data`, `one entry per Go binary (device, inode), not per connection or process`],
  [`java_conn_tuple_by_peer`, `key is the peer's domain and port: no pid or tuple to judge`],
  [`ssl_handshake_state`, `key is an SSL pointer with no pid`],
  [`ssl_cert_info`, `key is a certificate id`],
  [`tcp_kprobe_state`, `kprobe data-hook mode only; layout not confirmed in the source`],
  [`conn_tuple_to_socket_skb_conn_tuple`, `network tracer (NPM) map, not USM`],
];

const byKernelName = new Map(CATALOGUE.map(entry => [kernelName(entry.name), entry]));

/** The catalogue entry for a name as the kernel lists it (≤15 chars) or as written in C. */
export function findCatalogueMap(name: string): CatalogueMap | undefined {
  return byKernelName.get(kernelName(name));
}

/**
 * The layout of `map` that a key of `keySize` bytes has (newest first, then older ones), or
 * null when none does.
 */
export function layoutFor(map: CatalogueMap, keySize: number): KeyLayout | null {
  for (const layout of [map, ...(map.older ?? [])]) {
    if (layout.keySize === keySize)
      return layout;
    if (layout.openSize && keySize >= (layout.tupleOffset ?? 0) + CONN_TUPLE_SIZE)
      return layout;
  }
  return null;
}

/** Key sizes the catalogue knows for `map`, for messages. */
export function knownKeySizes(map: CatalogueMap): string {
  return [map, ...(map.older ?? [])].map(layout => `${layout.keySize}${layout.openSize ? `+` : ``}`).join(` or `);
}

/** A catalogue entry for a map found through BTF: a conn_tuple_t at `tupleOffset` in its key. */
export function discoveredMap(name: string, keySize: number, tupleOffset: number, source: string): CatalogueMap {
  return {
    name, keyKind: `conn_tuple`, keySize, tupleOffset, judgedAgainst: `sockets`, discovered: true,
    source: `BTF of the map (${source})`, note: `not in the catalogue: found by the conn_tuple_t in its key type`,
  };
}

export interface MapSelection {
  /** Names from --maps (full or kernel), or `prefix*` patterns. Empty = all. */
  names?: ReadonlyArray<string>;
  /** Only maps judged against sockets (a conn_tuple_t in the key, or in the value for pointer keys). */
  connTupleOnly?: boolean;
  /** Only maps judged against processes (pid_tgid, pid_fd, pid + goroutine keys). */
  pidOnly?: boolean;
}

/** Whether maps found through BTF (conn_tuple_t keys, judged against sockets) belong to the selection. */
export function selectionDiscovers(selection: MapSelection): boolean {
  const names = (selection.names ?? []).filter(name => name.trim().length > 0);
  return names.length === 0 && !selection.pidOnly;
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
    maps = maps.filter(map => map.judgedAgainst === `sockets`);
  if (selection.pidOnly)
    maps = maps.filter(map => map.judgedAgainst === `processes`);
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

/** Whether the selection has maps judged by processes' socket fds (snapshot-pids --socket-fds). */
export function selectionNeedsSocketFds(selection: MapSelection): boolean {
  return selectCatalogue(selection).some(map => map.keyKind === `pid_fd`);
}

/** The cleaner in a few words, for reports: `HTTP idle-connection TTL: idle 30 s, every 300 s`. */
export function describeCleaner(cleaner: Cleaner): string {
  return cleaner.by === `age`
    ? `${cleaner.what}: entries older than ${cleaner.ttlSeconds} s, every ${cleaner.intervalSeconds} s`
    : `${cleaner.what}: entries of exited processes, every ${cleaner.intervalSeconds} s`;
}

/** The age past which a leaked entry shows the cleaner is not keeping up (TTL + one interval); null without an age cleaner. */
export function cleanerAllowance(cleaner: Cleaner | undefined): number | null {
  return cleaner?.by === `age` && cleaner.ttlSeconds !== undefined ? cleaner.ttlSeconds + cleaner.intervalSeconds : null;
}
