// Hand-written checks for the record types validate reads by the million (entry) or the hundred
// thousand (socket, process): each accepts only what its typanion guard in schema.ts accepts, and
// when it says no the guard runs to word the message. ~10x cheaper per record than the guard.
import {REASONS, SCHEMA_VERSION, SOCKET_STATES, VERDICT_STATUSES, checkRecord, type AnyRecord} from '../schema.ts';

const HEX_RE = /^(?:[0-9a-f]{2})*$/;
const U64_RE = /^(?:0|[1-9][0-9]{0,19})$/;
const isU32Fast = (value: unknown): boolean => Number.isInteger(value) && (value as number) >= 0 && (value as number) <= 0xffffffff;
const isPortFast = (value: unknown): boolean => Number.isInteger(value) && (value as number) >= 0 && (value as number) <= 0xffff;
const isHexFast = (value: unknown): boolean => typeof value === `string` && HEX_RE.test(value);
const isStringFast = (value: unknown): boolean => typeof value === `string`;

function isKeyFast(key: Record<string, unknown>): boolean {
  if (key.kind === `pid_tgid`)
    return typeof key.pidTgid === `string` && U64_RE.test(key.pidTgid) && isU32Fast(key.tgid) && isU32Fast(key.tid);
  if (key.kind !== `conn_tuple`)
    return false;
  if (key.extra !== undefined) {
    if (key.extra === null || typeof key.extra !== `object` || Array.isArray(key.extra))
      return false;
    for (const value of Object.values(key.extra as object)) {
      if (typeof value !== `number` && typeof value !== `string`)
        return false;
    }
  }
  return (key.family === `v4` || key.family === `v6`) && (key.proto === `tcp` || key.proto === `udp`)
    && isStringFast(key.saddr) && isPortFast(key.sport) && isStringFast(key.daddr) && isPortFast(key.dport)
    && isStringFast(key.src) && isStringFast(key.dst) && isU32Fast(key.netns) && isU32Fast(key.pid) && isU32Fast(key.metadata);
}

const STATUSES: ReadonlySet<unknown> = new Set(VERDICT_STATUSES);
const ALL_REASONS: ReadonlySet<unknown> = new Set(Object.values(REASONS).flat());

/** An entry's fields, which verdicts carry too. */
function acceptsEntryFields(record: AnyRecord): boolean {
  const key = record.key;
  return record.v === SCHEMA_VERSION && isU32Fast(record.mapId) && isStringFast(record.map) && isHexFast(record.keyHex)
    && (record.valueHex === undefined || isHexFast(record.valueHex))
    && (record.valuesHex === undefined || (Array.isArray(record.valuesHex) && record.valuesHex.every(isHexFast)))
    && (record.keyError === undefined || isStringFast(record.keyError))
    && (key === null || (typeof key === `object` && key !== undefined && !Array.isArray(key) && isKeyFast(key as Record<string, unknown>)));
}

const isObjectFast = (value: unknown): boolean => typeof value === `object` && value !== null && !Array.isArray(value);

const ACCEPTS: Record<string, (record: AnyRecord) => boolean> = {
  // recheck reads verdicts by the million; `match` and `owner` are only checked for shape here
  // (their fields are read defensively), the rest as strictly as the guard.
  verdict: record => acceptsEntryFields(record) && STATUSES.has(record.status) && ALL_REASONS.has(record.reason)
    && typeof record.checks === `number` && (record.match === undefined || isObjectFast(record.match))
    && (record.owner === undefined || isObjectFast(record.owner)),
  entry: acceptsEntryFields,
  socket: record => record.v === SCHEMA_VERSION && isU32Fast(record.netnsInode)
    && (record.proto === `tcp` || record.proto === `udp`) && (record.family === `v4` || record.family === `v6`)
    && (record.listedFamily === `v4` || record.listedFamily === `v6`)
    && isStringFast(record.laddr) && isPortFast(record.lport) && isStringFast(record.raddr) && isPortFast(record.rport)
    && (SOCKET_STATES as ReadonlyArray<unknown>).includes(record.state) && typeof record.inode === `number` && typeof record.uid === `number`,
  process: record => record.v === SCHEMA_VERSION && isU32Fast(record.pid) && Array.isArray(record.tids) && record.tids.every(isU32Fast)
    && isStringFast(record.state) && typeof record.startTime === `number` && isStringFast(record.comm)
    && (record.netnsInode === null || isU32Fast(record.netnsInode)),
};

/** For readRecords' `fastChecks`: null when the record is fine, else what the guard says is wrong. */
export const FAST_CHECKS: ReadonlyMap<string, (record: AnyRecord) => string | null> = new Map(
  Object.entries(ACCEPTS).map(([type, accepts]) => [type, (record: AnyRecord) => {
    if (accepts(record))
      return null;
    // readRecords adds the "invalid TYPE record: " prefix itself.
    return checkRecord(record)?.replace(/^invalid \S+ record: /, ``) ?? null;
  }]),
);
