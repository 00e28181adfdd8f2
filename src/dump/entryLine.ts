// dump-maps' entry lines built straight from the raw bytes: no record object, no decoded-key
// object, no generic serializer, which were most of dump-maps' CPU per entry. The text is
// byte-for-byte JSON.stringify of the record toEntry builds (test/dump-entry-line checks every
// layout of the catalogue on random bytes); whatever is off the usual shapes (BTF-only keys or
// values, keys that do not decode, value tuples, names that would need escaping) returns null
// and goes the record way.
import {formatEndpoint, formatIPv4, formatIPv6} from '../addr.ts';
import {CONN_TUPLE_SIZE, type ExtraFields, type KeyLayout} from '../catalogue.ts';
import {SCHEMA_VERSION} from '../schema.ts';
import {ageFromBytes, u16, u32, u64String} from './decode.ts';
import type {RawEntry} from './entry.ts';

/** Names JSON.stringify prints as they are, and that no object reorders (not integer-like). */
const PLAIN_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** Map names printed as they are. */
const PLAIN_TEXT = /^[0-9A-Za-z_.:[\]-]*$/;

/** What is the same for every entry line of one map, worked out once. */
export interface LinePlan {
  /** `{"type":"entry",...,"keyHex":"` */
  prefix: string;
  layout: KeyLayout;
  tupleOffset: number;
  extra: ExtraFields | undefined;
  ages: ReadonlyArray<readonly [string, number]>;
  /** BTF age names without value bytes: such entries take the record way. */
  btfAges: boolean;
  readNs: number;
}

export interface LineDating {
  readNs: number;
  ages: ReadonlyArray<readonly [string, number]>;
  names: ReadonlyArray<string>;
}

/** The plan for a map's entry lines, or null when its entries must go the record way. */
export function linePlan(mapId: number, mapName: string, layout: KeyLayout | null, problem: string | undefined, dating: LineDating | null): LinePlan | null {
  if (layout === null || problem !== undefined || layout.valueTupleOffset !== undefined || !PLAIN_TEXT.test(mapName))
    return null;
  if (layout.keyKind !== `conn_tuple` && layout.keyKind !== `pid_tgid`)
    return null;
  const extra = layout.extra;
  if (extra !== undefined) {
    const names = new Set<string>();
    for (const [name] of extra) {
      if (!PLAIN_NAME.test(name) || names.has(name))
        return null;
      names.add(name);
    }
  }
  const ages = dating?.ages ?? [];
  if (ages.some(([name]) => !PLAIN_TEXT.test(name)))
    return null;
  return {
    prefix: `{"type":"entry","v":${SCHEMA_VERSION},"mapId":${mapId},"map":"${mapName}","keyHex":"`,
    layout, tupleOffset: layout.tupleOffset ?? 0, extra, ages: dating === null ? [] : ages,
    btfAges: dating !== null && dating.names.length > 0, readNs: dating?.readNs ?? 0,
  };
}

function extraJson(fields: ExtraFields, bytes: Uint8Array, length: number): string {
  let text = ``;
  for (let i = 0; i < fields.length; i++) {
    const [name, offset, size, signed] = fields[i];
    if (offset + size > length)
      continue;
    const value = size === 8 ? `"${u64String(bytes, offset)}"` : signed ? String(u32(bytes, offset) | 0) : String(u32(bytes, offset));
    text += `${text === `` ? `` : `,`}"${name}":${value}`;
  }
  return `,"extra":{${text}}`;
}

/** The key object's JSON, or null when it does not decode (the record way says why). */
function keyJson(plan: LinePlan, bytes: Uint8Array, length: number): string | null {
  const layout = plan.layout;
  if (layout.keyKind === `pid_tgid`) {
    if (length !== layout.keySize)
      return null;
    const at = layout.pidOffset ?? 0;
    const extra = plan.extra !== undefined ? extraJson(plan.extra, bytes, length) : ``;
    return `{"kind":"pid_tgid","pidTgid":"${u64String(bytes, at)}","tgid":${u32(bytes, at + 4)},"tid":${u32(bytes, at)}${extra}}`;
  }
  const off = plan.tupleOffset;
  if (length < off + CONN_TUPLE_SIZE)
    return null;
  const metadata = u32(bytes, off + 44);
  const v6 = (metadata & 2) !== 0;
  const saddr = v6 ? formatIPv6(bytes, off) : formatIPv4(bytes, off + 8);
  const daddr = v6 ? formatIPv6(bytes, off + 16) : formatIPv4(bytes, off + 24);
  const sport = u16(bytes, off + 32);
  const dport = u16(bytes, off + 34);
  const extra = plan.extra !== undefined ? extraJson(plan.extra, bytes, length) : ``;
  return `{"kind":"conn_tuple","family":"${v6 ? `v6` : `v4`}","proto":"${(metadata & 1) !== 0 ? `tcp` : `udp`}","saddr":"${saddr}","sport":${sport},"daddr":"${daddr}","dport":${dport},"src":"${formatEndpoint(saddr, sport)}","dst":"${formatEndpoint(daddr, dport)}","netns":${u32(bytes, off + 36)},"pid":${u32(bytes, off + 40)},"metadata":${metadata}${extra}}`;
}

/** One entry's NDJSON line (with its newline), or null when it must go the record way. */
export function entryLine(plan: LinePlan, entry: RawEntry): string | null {
  const key = entry.key;
  const value = entry.value;
  if (key === null || entry.keyBtf !== undefined || (value === null && (entry.valueBtf !== undefined || plan.btfAges)))
    return null;
  const keyText = keyJson(plan, key, entry.keyLength);
  if (keyText === null)
    return null;
  let valueText = ``;
  if (value !== null) {
    if (!entry.perCpu) {
      valueText = `,"valueHex":"${value.toString(`hex`, 0, entry.valueLength)}"`;
      if (plan.ages.length > 0) {
        const age = ageFromBytes(value, entry.valueLength, plan.ages, plan.readNs);
        if (age !== null) {
          if (!Number.isFinite(age.ageSeconds))
            return null;
          valueText += `,"ageSeconds":${age.ageSeconds},"ageField":"${age.ageField}"`;
        }
      }
    } else {
      valueText = `,"valuesHex":[`;
      for (let i = 0, at = 0; i < entry.cpus; i++, at += entry.valueStride)
        valueText += `${i === 0 ? `"` : `,"`}${value.toString(`hex`, at, at + entry.valueLength)}"`;
      valueText += `]`;
    }
  }
  return `${plan.prefix}${key.toString(`hex`, 0, entry.keyLength)}","key":${keyText}${valueText}}\n`;
}
