// A hand-written check of the verdict fields report reads. The typanion guard of src/schema.ts
// checks everything and costs more than the rest of report together on big streams; this one
// checks what the aggregator and the renderers use, so a bad record is still a message naming
// its line, never a crash.
import {VERDICT_STATUSES, type AnyRecord} from '../schema.ts';

const STATUSES: ReadonlySet<unknown> = new Set(VERDICT_STATUSES);
const isU32 = (value: unknown) => typeof value === `number` && Number.isInteger(value) && value >= 0 && value <= 0xffffffff;
const isPort = (value: unknown) => typeof value === `number` && Number.isInteger(value) && value >= 0 && value <= 0xffff;

export function checkVerdict(record: AnyRecord): string | null {
  if (!isU32(record.mapId))
    return `mapId must be a map id`;
  if (typeof record.map !== `string`)
    return `map must be a string`;
  if (typeof record.keyHex !== `string`)
    return `keyHex must be a hex string`;
  if (!STATUSES.has(record.status))
    return `status must be one of ${VERDICT_STATUSES.join(`, `)}`;
  if (typeof record.reason !== `string`)
    return `reason must be a string`;
  const owner = record.owner as {pid?: unknown, comm?: unknown} | undefined;
  if (owner !== undefined && (owner === null || typeof owner !== `object` || !isU32(owner.pid) || (owner.comm !== null && typeof owner.comm !== `string`)))
    return `owner must be {pid, comm}`;
  const key = record.key as Record<string, unknown> | null | undefined;
  if (key === null)
    return null;
  if (typeof key !== `object` || key === undefined)
    return `key must be an object or null`;
  if (key.kind === `conn_tuple`) {
    if (typeof key.saddr !== `string` || typeof key.daddr !== `string` || !isPort(key.sport) || !isPort(key.dport) || !isU32(key.netns) || !isU32(key.pid))
      return `conn_tuple key needs saddr, daddr, sport, dport, netns, pid`;
    if (key.extra !== undefined && (key.extra === null || typeof key.extra !== `object`))
      return `key.extra must be an object`;
    return null;
  }
  if (key.kind === `pid_tgid`) {
    if (typeof key.pidTgid !== `string` || !isU32(key.tgid) || !isU32(key.tid))
      return `pid_tgid key needs pidTgid, tgid, tid`;
    return null;
  }
  return `key.kind must be conn_tuple or pid_tgid`;
}
