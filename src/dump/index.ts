// dump-maps: find the USM maps on the host (or in saved files) and emit, per map, a `map` record,
// one `entry` record per unique key with the key decoded, and a closing `mapstats` record.
import {CATALOGUE, selectCatalogue, selectionDiscovers, type MapSelection} from '../catalogue.ts';
import type {Readable} from 'node:stream';
import type {ToolContext} from '../context.ts';
import {EnvironmentFault, errorMessage} from '../errors.ts';
import {DEFAULT_TIMEOUT_MS} from '../exec.ts';
import {SCHEMA_VERSION, type AnyRecord, type BackendName, type EntryRecord, type MapRecord, type MapStatsRecord, type VerdictRecord} from '../schema.ts';
import {selectSource} from './backend.ts';
import {ageFromBtf, ageFromBytes, decodeKey, encodeBtfKey, KeySet, LeanTuple, valueTupleFromBtf, valueTupleFromBytes} from './decode.ts';
import {KEY_SLOT, KEY_STORE, type LeanPool} from './leanPool.ts';
import {planTargets, type Target} from './layout.ts';
import {keyHexOf, valueHexOf, type EntrySink, type KeyStore, type RawEntry} from './entry.ts';
import {toWireJson} from './json.ts';
import {lineBound, linePlan, putEntryLine} from './entryLine.ts';
import {LineChunks} from './lineChunks.ts';
import {offlineSource} from './offline.ts';
import {recordLine} from './serialize.ts';
import type {ListedMap, MapSource} from './source.ts';
import type {ReadAhead} from './readAhead.ts';
import {ANY_VALUES, generalizeFields} from '../shapes.ts';

export interface DumpOptions {
  selection?: MapSelection;
  /** Force a backend; default: the kernel (bpf()), else bpftool, else system-probe, else a downloaded bpftool. */
  backend?: BackendName;
  bpftoolPath?: string;
  systemProbePath?: string;
  /** Per child process (list, each dump). */
  timeoutMs?: number;
  /** Saved outputs to read instead of the live host (files or directories). */
  from?: ReadonlyArray<string>;
  /** Standard input, for `from: ['-']`. */
  stdin?: Readable;
  /** Dump only these map ids (recheck re-reads the maps that had candidates). */
  mapIds?: ReadonlyArray<number>;
  /** Allow fetching a static bpftool when no backend is usable (default true). */
  download?: boolean;
  bpftoolUrl?: string;
  bpftoolSha256?: string;
  /** Kernel backend: entries per batch lookup (default 4096; grown when a hash bucket needs more). */
  batchEntries?: number;
  /** Kernel backend, read ahead: entries of a worker's chunk handed on at a time (default 1,024; tests make it small). */
  handedOn?: number;
  /** Kernel backend: make the batch lookups in a worker thread, ahead of the entries being judged: its own, or scan's (started before its snapshots). */
  readAhead?: boolean | ReadAhead;
  /**
   * Entry records carry their value as hex (`valueHex`, `valuesHex`, `valueBtf`); default true.
   * False only when nothing downstream reads them: a scan that prints just its report. Then
   * nothing sees a record whole either, and conn_tuple keys are LeanTuples (src/dump/decode.ts).
   */
  withValues?: boolean;
  /**
   * With withValues false: whether an entry of this map may still be shown whole (a report keeps
   * the first leaked ones as samples). Asked once per batch; once false for a map it must stay
   * false, and that map's entries then carry an empty keyHex (nothing reads it). While it is
   * true, an entry whose key stays readable (a read-ahead chunk's) leaves its hex for later too:
   * keyHexLeft says so, and fillKeyHex makes it (scan, for the verdicts the report keeps whole).
   */
  keyHexWanted?: (mapId: number) => boolean;
  /**
   * With withValues false: lean records given back by the one who took them (scan, once its
   * report counted them), taken again for later entries instead of new ones (./leanPool.ts).
   */
  leanPool?: LeanPool;
  /**
   * Stop reading each map once this many entries were read (at the end of the read that reached
   * it); its mapstats then says it is incomplete. Only scan's rehearsal (src/scan/rehearsal.ts).
   */
  entriesPerMap?: number;
  /** Live backends: find which processes hold each map (a /proc walk); default true. False only for rehearsals. */
  holders?: boolean;
  /**
   * Awaited once, as soon as the first map's reading has started (the kernel backend reading
   * ahead: its first chunks are being read in the worker) and before any of its entries is
   * handed on: scan rehearses meanwhile (src/scan/rehearsal.ts).
   */
  firstMapOpened?: () => Promise<void>;
}

export type DumpRecord = MapRecord | EntryRecord | MapStatsRecord;

export const NO_USM_MAPS = `no USM maps found. Is system-probe running with USM enabled?`;

export async function* dumpMaps(ctx: ToolContext, options: DumpOptions = {}): AsyncGenerator<DumpRecord> {
  for await (const batch of dumpMapBatches(ctx, options))
    yield* batch;
}

/**
 * The same records in batches (one per chunk of dump output): the command writes them without
 * an await per record. dumpMaps is this, flattened.
 */
export async function* dumpMapBatches(ctx: ToolContext, options: DumpOptions = {}): AsyncGenerator<Array<DumpRecord>> {
  yield* dumpChunks(ctx, options, null);
}

/**
 * The same records as NDJSON bytes, in chunks of about CHUNK_BYTES: dump-maps' output. Entry
 * lines are written straight from the raw bytes into the chunks (./entryLine.ts), without record
 * objects or strings. Each chunk is the taker's until it gives it back to `out` (recycle).
 */
export async function* dumpMapText(ctx: ToolContext, options: DumpOptions = {}, out = new LineChunks()): AsyncGenerator<Buffer> {
  try {
    for await (const records of dumpChunks(ctx, options, out)) {
      for (const record of records)
        out.text(recordLine(record));
      yield* out.takeFull();
    }
  } catch (err) {
    // What was read before the failure still goes out, as it did line by line.
    yield* out.takeAll();
    throw err;
  }
  yield* out.takeAll();
}

/**
 * Each entry's key only, for recheck's re-read: the raw key bytes go to `onKey` (valid during
 * the call only; the key an entry record's keyHex is the hex of), and no entry record is made;
 * the map and mapstats records come as records.
 */
export async function* dumpMapKeys(ctx: ToolContext, options: DumpOptions, onKey: KeyVisitor): AsyncGenerator<Array<MapRecord | MapStatsRecord>> {
  for await (const chunk of dumpChunks(ctx, options, null, onKey))
    yield chunk as Array<MapRecord | MapStatsRecord>;
}

export type KeyVisitor = (mapId: number, bytes: Uint8Array, length: number) => void;

const NO_RECORDS: Array<DumpRecord> = [];

/**
 * Records in batches; with `out`, entries are written there as NDJSON bytes instead (map and
 * mapstats records stay records), and an empty batch says full chunks are waiting in `out`; with
 * `onKey`, only their keys, to it.
 */
async function* dumpChunks(ctx: ToolContext, options: DumpOptions, out: LineChunks | null, onKey: KeyVisitor | null = null): AsyncGenerator<Array<DumpRecord>> {
  const selected = selectCatalogue(options.selection ?? {});
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const source = await openSource(ctx, options, timeoutMs);
  ctx.log.info(`listing maps with ${source.backend} (${source.label})`);
  const listed = await source.list();
  const targets = await planTargets(source, listed, selected, {mapIds: options.mapIds, discover: selectionDiscovers(options.selection ?? {})}, ctx.log);
  ctx.log.info(`${targets.length} USM map(s) to dump among ${listed.length} listed`);

  if (options.mapIds) {
    // Asked-for ids that are gone (agent restarted, map freed): say so, the reader decides.
    const found = new Set(targets.map(target => target.listed.id));
    const gone: Array<DumpRecord> = [];
    for (const id of options.mapIds) {
      if (!found.has(id))
        gone.push(listed.some(map => map.id === id) ? missingMapStats(id, `map ${id} is not a selected USM map`) : {...missingMapStats(id, `map ${id} no longer exists`), gone: true});
    }
    if (gone.length > 0)
      yield gone;
  } else if (targets.length === 0) {
    const kind = selected.length < CATALOGUE.length ? ` matching the selection (${selected.map(map => map.name).join(`, `)})` : ``;
    throw new EnvironmentFault(`${listed.length === 0 ? `no eBPF maps listed at all` : `none of the ${listed.length} listed eBPF maps is a USM map${kind}`}: ${NO_USM_MAPS}`);
  }

  try {
    source.plan?.(targets.map(target => target.listed.id));
    const opened = {call: options.firstMapOpened ?? null};
    for (const target of targets)
      yield* dumpOne(ctx, source, target, out, onKey, options, opened);
    // No map could be opened (every one gone, or none asked for): it is still called once.
    const call = opened.call;
    opened.call = null;
    await call?.();
  } finally {
    source.close?.();
  }
}

/** Saved files when --from is given, else the live host's maps the best way allowed. */
async function openSource(ctx: ToolContext, options: DumpOptions, timeoutMs: number): Promise<MapSource> {
  if (options.from && options.from.length > 0)
    return offlineSource(ctx, options.from, options.stdin);
  if (ctx.uid !== 0)
    ctx.log.warn(`not running as root: listing and dumping eBPF maps will probably fail`);
  return selectSource(ctx, {...options, timeoutMs});
}

function missingMapStats(mapId: number, error: string): MapStatsRecord {
  return {type: `mapstats`, v: SCHEMA_VERSION, mapId, map: ``, entries: 0, duplicates: 0, errors: 0, btf: false, complete: false, error};
}

function mapRecord(target: Target, backend: BackendName, readNs: bigint | null): MapRecord {
  const {listed, catalogue, layout} = target;
  const keyKind = layout?.keyKind ?? catalogue.keyKind;
  const record: MapRecord = {
    type: `map`, v: SCHEMA_VERSION, mapId: listed.id, name: listed.name, catalogName: catalogue.name,
    keyKind,
    ...(keyKind === `conn_tuple` ? {tupleOffset: layout?.tupleOffset ?? catalogue.tupleOffset ?? 0} : {}),
    mapType: listed.type, keySize: listed.keySize, valueSize: listed.valueSize, maxEntries: listed.maxEntries,
    holders: listed.holders, backend,
  };
  if (target.problem !== undefined)
    record.problem = target.problem;
  if (layout?.judgedBy !== undefined)
    record.judgedBy = layout.judgedBy;
  if (catalogue.discovered)
    record.discovered = true;
  if (target.assumption !== undefined)
    record.assumption = target.assumption;
  // Value bytes are dated at known offsets; system-probe's BTF-decoded values by field name.
  if (target.ages.length > 0)
    record.ageFields = target.ages.map(([name, offset]) => `${name}@${offset}`);
  const dated = backend === `system-probe` ? target.ageNames.length > 0 : target.ages.length > 0;
  if (dated && readNs !== null)
    record.monotonicNs = readNs.toString();
  return record;
}

async function* dumpOne(
  ctx: ToolContext, source: MapSource, target: Target, out: LineChunks | null, onKey: KeyVisitor | null, options: DumpOptions,
  opened: {call: (() => Promise<void>) | null},
): AsyncGenerator<Array<DumpRecord>> {
  const withValues = options.withValues !== false;
  const leanPool = withValues ? null : options.leanPool ?? null;
  const keyHexWanted = options.withValues === false ? options.keyHexWanted : undefined;
  const entriesPerMap = options.entriesPerMap;
  const {listed, catalogue} = target;
  const mapId = listed.id;
  const mapName = catalogue.name;
  const problem = target.problem;
  if (problem)
    ctx.log.warn(`map ${mapId} (${listed.name}): ${problem}`);
  // The moment of reading, in the clock the values are dated with: a capture's own, else now.
  const readNs = source.readMonotonicNs !== undefined ? source.readMonotonicNs() : ctx.clock.monotonicNs?.() ?? null;
  const dating = readNs === null || (target.ages.length === 0 && target.ageNames.length === 0) ? null
    : {readNs: Number(readNs), ages: target.ages, names: target.ageNames};
  yield [mapRecord(target, source.backend, readNs)];

  const stats: MapStatsRecord = {
    type: `mapstats`, v: SCHEMA_VERSION, mapId, map: mapName, entries: 0, duplicates: 0, errors: 0, btf: false, complete: true,
  };
  if (source.has && !source.has(mapId)) {
    stats.complete = false;
    stats.error = `no saved dump for map ${mapId} (dump-${mapId}.json)`;
    ctx.log.warn(`map ${mapId} (${listed.name}): ${stats.error}`);
    yield [stats];
    return;
  }

  const keys = new KeySet();
  let batch: Array<DumpRecord> = [];
  // Bytes out: entry lines straight from the bytes when the map's entries have the usual shape.
  const plan = out !== null ? linePlan(mapId, mapName, target.layout, problem, dating) : null;
  const problems: Array<string> = [];
  let problemCount = 0;
  // Asked before each read: the entries of one read are all judged and counted before the next.
  let withKeyHex = true;
  const sink: EntrySink = {
    entry(entry) {
      if (entry.formatted || entry.keyBtf !== undefined)
        stats.btf = true;
      if (entry.error !== null) {
        stats.errors++;
        return;
      }
      const raw = rawKey(entry, target);
      if (!entry.uniqueKey && raw.length > 0 && !keys.add(raw.bytes, raw.length)) {
        stats.duplicates++;
        return;
      }
      stats.entries++;
      if (onKey !== null) {
        onKey(mapId, raw.bytes, raw.length);
        return;
      }
      if (out === null) {
        batch.push(toEntry(entry, raw, target, mapName, problem, dating, withValues, withKeyHex, leanPool));
        return;
      }
      if (plan !== null) {
        out.room(lineBound(plan, entry));
        const end = putEntryLine(out, out.at, plan, entry);
        if (end >= 0) {
          out.at = end;
          return;
        }
      }
      out.text(recordLine(toEntry(entry, raw, target, mapName, problem, dating)));
    },
    skipped(message) {
      // One unreadable element: counted with the failed lookups, the rest goes on.
      stats.errors++;
      if (problems.length < 3)
        problems.push(message);
      problemCount++;
    },
  };
  const reader = source.open(listed, sink);
  try {
    for (;;) {
      if (keyHexWanted !== undefined && withKeyHex)
        withKeyHex = keyHexWanted(mapId);
      if (!await reader.next())
        break;
      if (opened.call !== null) {
        // The map's reading has started (its first read was the opening): the caller's turn.
        const call = opened.call;
        opened.call = null;
        await call();
      }
      if (entriesPerMap !== undefined && stats.entries >= entriesPerMap) {
        stats.complete = false;
        stats.error = `stopped after the first ${stats.entries} entries (entriesPerMap)`;
        break;
      }
      if (batch.length > 0) {
        const records = batch;
        batch = [];
        yield records;
      } else if (out?.hasFull) {
        yield NO_RECORDS;
      }
    }
    const {failures, gone} = await reader.finish();
    if (problemCount > 0)
      ctx.log.warn(`map ${mapId} (${listed.name}): ${problemCount} unreadable element(s) skipped: ${problems.join(`; `)}`);
    if (failures.length > 0) {
      stats.complete = false;
      stats.error = failures.join(`; `);
      if (gone)
        stats.gone = true;
      ctx.log.warn(`map ${mapId} (${listed.name}): dump incomplete: ${stats.error}`);
    }
    if (stats.errors > problemCount)
      ctx.log.info(`map ${mapId} (${listed.name}): ${stats.errors - problemCount} failed lookup(s) inside the dump`);
    batch.push(stats);
    const records = batch;
    batch = [];
    yield records;
  } finally {
    reader.close();
  }
}

interface RawKey {
  bytes: Uint8Array;
  length: number;
  error: string | undefined;
}

const EMPTY = new Uint8Array(0);
/**
 * Reused for every entry: the key bytes as read, or re-encoded from a BTF key. Safe to share
 * because the sink's entry() takes it from rawKey() and is done with it (deduplicated, copied
 * into the entry record by toEntry) before returning, with no await in between; `bytes` is the
 * reader's buffer, valid only during that call, which is why nothing keeps it.
 */
const rawKeyScratch: RawKey = {bytes: EMPTY, length: 0, error: undefined};

function rawKey(entry: RawEntry, target: Target): RawKey {
  const raw = rawKeyScratch;
  raw.error = undefined;
  if (entry.key !== null) {
    raw.bytes = entry.key;
    raw.length = entry.keyLength;
    return raw;
  }
  const encoded = encodeBtfKey(target.layout ?? target.catalogue, entry.keyBtf ?? null, target.listed.keySize);
  if (typeof encoded === `string`) {
    raw.bytes = EMPTY;
    raw.length = 0;
    raw.error = `cannot re-encode the BTF key: ${encoded}`;
  } else {
    raw.bytes = encoded;
    raw.length = encoded.length;
  }
  return raw;
}

export interface Dating {
  readNs: number;
  ages: ReadonlyArray<readonly [string, number]>;
  names: ReadonlyArray<string>;
}

/**
 * The entry record when nothing sees it whole (withValues false: scan without a capture): every
 * field it may get, and those of the verdict it becomes in place (src/validate/index.ts
 * judgeInPlace), declared from the start, undefined until set (absent, as JSON.stringify and every
 * reader take it). Every entry then has one shape: no store grows an object, and the code that
 * reads entries and verdicts sees that one shape.
 */
function leanEntry(mapId: number, map: string, keyHex: string, key: EntryRecord[`key`], keyStore: KeyStore | undefined, keySlot: number): EntryRecord {
  const record: EntryRecord & {[field: string]: unknown} & LaterKeyHex = {
    type: `entry`, v: SCHEMA_VERSION, mapId, map, keyHex, key, valueTuple: undefined, ageSeconds: undefined, ageField: undefined, keyError: undefined,
    status: undefined, reason: undefined, checks: undefined, judgedBy: undefined, match: undefined, owner: undefined,
    // In the literal, not added after: inside the object, not in a property array of its own.
    [KEY_STORE]: keyStore, [KEY_SLOT]: keySlot,
  };
  return record;
}

/** A lean record given back, made what leanEntry would make: every field written. */
function refillLean(reused: EntryRecord, mapId: number, map: string, keyHex: string, key: EntryRecord[`key`], keyStore: KeyStore | undefined, keySlot: number): EntryRecord {
  const record = reused as EntryRecord & {[field: string]: unknown} & LaterKeyHex;
  record.type = `entry`;
  record.mapId = mapId;
  record.map = map;
  record.keyHex = keyHex;
  record.key = key;
  record.valueTuple = undefined;
  record.ageSeconds = undefined;
  record.ageField = undefined;
  record.keyError = undefined;
  record.status = undefined;
  record.reason = undefined;
  record.checks = undefined;
  record.judgedBy = undefined;
  record.match = undefined;
  record.owner = undefined;
  record[KEY_STORE] = keyStore;
  record[KEY_SLOT] = keySlot;
  return record;
}

interface LaterKeyHex {
  [KEY_STORE]?: KeyStore | undefined;
  [KEY_SLOT]?: number;
}

// The fields toEntry, judging (judgeInPlace) and fillKeyHex write after the record is made, and
// the key (a LeanTuple, or another kind of key), made general before any is optimised (src/shapes.ts).
generalizeFields(leanEntry(0, ``, ``, null, undefined, 0) as EntryRecord & {[field: string]: unknown} & LaterKeyHex, [
  `type`, `keyHex`, `key`, `valueTuple`, `ageSeconds`, `ageField`, `keyError`, `status`, `reason`, `checks`, `judgedBy`, `match`, `owner`, KEY_STORE,
], ANY_VALUES);

/** Whether the record is a lean entry (or the verdict it became) whose keyHex was left for later. */
function keyHexLeft(record: EntryRecord | VerdictRecord): boolean {
  return (record as LaterKeyHex)[KEY_STORE] !== undefined;
}

/**
 * Makes the keyHex of a leaked verdict whose hex was left for later, when the report may still
 * keep it as a sample of its map (`report.samplesWanted`): scan and its rehearsal, for the
 * verdicts they count.
 */
export function fillSampleKeyHex(record: AnyRecord, report: {samplesWanted(mapId: number): boolean}): void {
  if (record.type === `verdict` && record.status === `leaked` && keyHexLeft(record) && report.samplesWanted(record.mapId))
    fillKeyHex(record);
}

/** Makes the keyHex left for later (keyHexLeft), the same as made at once; lets the key's chunk go. */
function fillKeyHex(record: EntryRecord | VerdictRecord): void {
  const later = record as (EntryRecord | VerdictRecord) & LaterKeyHex;
  const store = later[KEY_STORE];
  if (store === undefined)
    return;
  const at = later[KEY_SLOT]! * Math.max(store.keySize, 1);
  record.keyHex = store.keys.toString(`hex`, at, at + store.keySize);
  later[KEY_STORE] = undefined;
}

/** The entry record of one raw entry (exported for the test that holds entryLine to it). */
export function toEntry(
  entry: RawEntry, raw: RawKey, target: Target, mapName: string, problem: string | undefined, dating: Dating | null, withValues = true, withKeyHex = true,
  leanPool: LeanPool | null = null,
): EntryRecord {
  // A lean record given back (withValues false only): rewritten whole below, its tuple refilled.
  const reused = leanPool?.take();
  let keyError = raw.error;
  let key: EntryRecord[`key`] = null;
  const layout = target.layout;
  if (problem !== undefined || layout === null) {
    keyError ??= problem;
  } else if (keyError === undefined) {
    // Without the values nothing sees the record whole: its tuple's text is made only if read.
    const decoded = decodeKey(layout, raw.bytes, raw.length, !withValues, reused?.key instanceof LeanTuple ? reused.key : null);
    if (typeof decoded === `string`)
      keyError = decoded;
    else
      key = decoded;
  }
  // A lean entry whose key stays readable gets its hex only if a report sample needs it.
  const keyStore = withKeyHex && !withValues && entry.keyStore !== null ? entry.keyStore : undefined;
  const keyHex = !withKeyHex || keyStore !== undefined ? `` : entry.key !== null ? keyHexOf(entry) : Buffer.from(raw.bytes.buffer, raw.bytes.byteOffset, raw.length).toString(`hex`);
  const record: EntryRecord & {valueBtf?: unknown} = withValues
    ? {type: `entry`, v: SCHEMA_VERSION, mapId: target.listed.id, map: mapName, keyHex, key}
    : reused !== undefined ? refillLean(reused, target.listed.id, mapName, keyHex, key, keyStore, entry.keySlot)
    : leanEntry(target.listed.id, mapName, keyHex, key, keyStore, entry.keySlot);
  const value = withValues ? valueHexOf(entry) : null;
  if (typeof value === `string`)
    record.valueHex = value;
  else if (value !== null)
    record.valuesHex = value;
  else if (withValues && entry.valueBtf !== undefined)
    record.valueBtf = toWireJson(entry.valueBtf);
  // One value's bytes (not per-CPU): the tuple and timestamps some values carry.
  const bytes = entry.value !== null && !entry.perCpu ? entry.value : null;
  if (layout?.valueTupleOffset !== undefined) {
    const tuple = bytes !== null ? valueTupleFromBytes(bytes, entry.valueLength, layout.valueTupleOffset) : valueTupleFromBtf(entry.valueBtf);
    if (tuple !== null)
      record.valueTuple = tuple;
  }
  if (dating !== null) {
    const age = bytes !== null
      ? (dating.ages.length > 0 ? ageFromBytes(bytes, entry.valueLength, dating.ages, dating.readNs) : null)
      : (dating.names.length > 0 && entry.value === null ? ageFromBtf(entry.valueBtf, dating.names, dating.readNs) : null);
    if (age !== null) {
      record.ageSeconds = age.ageSeconds;
      record.ageField = age.ageField;
    }
  }
  if (keyError !== undefined)
    record.keyError = keyError;
  return record;
}
