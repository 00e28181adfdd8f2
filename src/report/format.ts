// How the report writes numbers, endpoints and leaks: one fraction style, one precision, one way
// to print a listener. Every renderer (text, markdown, --list, diff) goes through these.
import {isWildcard} from '../addr.ts';
import type {DecodedKey, VerdictRecord} from '../schema.ts';

/** Percentages are printed with one decimal, everywhere. */
export function percent(ratio: number): string {
  return `${(ratio * 100).toFixed(1)}%`;
}

/** `part/whole (P.P%)`: the one fraction style of the report. */
export function fraction(part: number, whole: number): string {
  return whole > 0 ? `${part}/${whole} (${percent(part / whole)})` : `${part}/${whole}`;
}

/** The printed destination of a listener tuple (no remote side: all-zero daddr, dport 0). */
export const LISTENER_DST = `*:*`;

export function isListenerKey(key: DecodedKey | null): boolean {
  return key?.kind === `conn_tuple` && key.dport === 0 && isWildcard(key.daddr);
}

/**
 * One leaked entry as the report shows it, structured: the same fields in the text samples, in
 * `report --list` (one row each) and in the JSON/NDJSON formats (`leak` records).
 */
export interface LeakRow {
  mapId: number;
  /** Catalogue (full) name of the map. */
  map: string;
  reason: string;
  keyHex: string;
  /** The decoded key as the verdict carries it; null when it could not be decoded. */
  key: DecodedKey | null;
  /** A listener tuple: its destination prints as `*:*`. */
  listener: boolean;
  /** The process behind the entry (tuple pid, or pid_tgid's tgid); null when the key has none (pid 0). */
  pid: number | null;
  /** Its command when known (null: gone, or no process snapshot). */
  comm: string | null;
  /** True when the process was looked for and is gone; null when nobody looked. */
  processGone: boolean | null;
  /** 1 after validate, 2 once recheck confirmed it. */
  checks: number;
  /** Age of the entry from its value's timestamp, when the dump knew it. */
  ageSeconds: number | null;
}

/** The columns of a leak, as text; pid_tgid keys have no proto/src/dst/netns. */
export interface LeakColumns {
  map: string;
  reason: string;
  proto: string;
  src: string;
  dst: string;
  netns: string;
  pid: string;
  comm: string;
  checks: string;
  age: string;
}

export const NONE = `-`;

export function leakColumns(row: LeakRow): LeakColumns {
  const key = row.key;
  let proto = NONE;
  let src = NONE;
  let dst = NONE;
  let netns = NONE;
  let pid = row.pid === null ? NONE : String(row.pid);
  if (key?.kind === `conn_tuple`) {
    proto = key.proto;
    src = key.src;
    dst = row.listener ? LISTENER_DST : key.dst;
    netns = String(key.netns);
    const extra = Object.entries(key.extra ?? {});
    if (extra.length)
      dst += `[${extra.map(([name, value]) => `${name}=${value}`).join(`,`)}]`;
  } else if (key?.kind === `pid_tgid`) {
    pid = `${key.tgid}/${key.tid}`;
  } else if (key?.kind === `pid_fd`) {
    src = `fd ${key.fd}`;
  } else if (key?.kind === `pid_goroutine`) {
    src = `goroutine ${key.goroutineId}`;
  } else if (key?.kind === `pointer`) {
    src = key.pointer;
  } else {
    src = `key ${row.keyHex}`;
  }
  return {
    map: row.map,
    reason: row.reason,
    proto,
    src,
    dst,
    netns,
    pid,
    comm: commText(row),
    checks: String(row.checks),
    age: row.ageSeconds === null ? NONE : formatAge(row.ageSeconds),
  };
}

/** A process's command, `(gone)` when it was looked for and not found, `-` when nobody knows. */
export function commText(row: Pick<LeakRow, `comm` | `processGone` | `pid`>): string {
  if (row.comm !== null)
    return row.comm;
  if (row.pid === null)
    return NONE;
  return row.processGone ? `(gone)` : NONE;
}

/** A sample as cells to align: `tcp  10.0.0.1:40000  ->  10.0.0.2:443  netns 4026531840  pid 100 (curl)  reason`. */
export function sampleCells(row: LeakRow): Array<string> {
  const c = leakColumns(row);
  const key = row.key;
  const comm = c.comm === NONE ? `` : c.comm.startsWith(`(`) ? ` ${c.comm}` : ` (${c.comm})`;
  const age = row.ageSeconds === null ? `` : `age ${c.age}`;
  if (key?.kind === `pid_tgid`)
    return [`pid_tgid`, key.pidTgid, ``, ``, ``, `pid ${key.tgid} tid ${key.tid}${comm}`, row.reason, age];
  if (key?.kind === `pid_fd` || key?.kind === `pid_goroutine` || key?.kind === `pointer`)
    return [key.kind, c.src, ``, ``, ``, c.pid === NONE ? `` : `pid ${c.pid}${comm}`, row.reason, age];
  if (key?.kind !== `conn_tuple`)
    return [`key`, row.keyHex, ``, ``, ``, ``, row.reason, age];
  return [c.proto, c.src, `->`, c.dst, `netns ${c.netns}`, c.pid === NONE ? `no pid in key` : `pid ${c.pid}${comm}`, row.reason, age];
}

/** `42 s`, `17 min`, `3.5 h`, `2.1 d`. */
export function formatAge(seconds: number): string {
  if (seconds < 120)
    return `${Math.round(seconds)} s`;
  if (seconds < 7200)
    return `${Math.round(seconds / 60)} min`;
  if (seconds < 172_800)
    return `${(seconds / 3600).toFixed(1)} h`;
  return `${(seconds / 86_400).toFixed(1)} d`;
}

/** The process behind an entry: the verdict's owner, else the tuple's pid or pid_tgid's tgid; null for pid 0. */
export function ownerPid(verdict: VerdictRecord): number | null {
  const key = verdict.key;
  let pid: number | null = null;
  if (verdict.owner)
    pid = verdict.owner.pid;
  else if (key?.kind === `conn_tuple`)
    pid = key.pid;
  else if (key?.kind === `pid_tgid`)
    pid = key.tgid;
  else if (key?.kind === `pid_fd` || key?.kind === `pid_goroutine`)
    pid = key.pid;
  // A tuple's pid 0 means the key carries no pid; a pid_tgid of 0 is a (gone) pid 0.
  return pid === 0 && key?.kind !== `pid_tgid` ? null : pid;
}

/** Pads columns to their widths; the last column is not padded. */
export function alignRows(rows: ReadonlyArray<ReadonlyArray<string>>, rightAligned: ReadonlySet<number> = new Set()): Array<string> {
  const widths: Array<number> = [];
  for (const row of rows)
    row.forEach((cell, i) => { widths[i] = Math.max(widths[i] ?? 0, cell.length); });
  return rows.map(row => padRow(row, widths, rightAligned));
}

export function padRow(row: ReadonlyArray<string>, widths: ReadonlyArray<number>, rightAligned: ReadonlySet<number> = new Set()): string {
  return row.map((cell, i) => {
    if (i === row.length - 1 && !rightAligned.has(i))
      return cell;
    return rightAligned.has(i) ? cell.padStart(widths[i] ?? 0) : cell.padEnd(widths[i] ?? 0);
  }).join(`  `).trimEnd();
}

/** Text safe inside a markdown table cell (and in running text: `*` and `_` would start emphasis). */
export function markdownCell(text: string): string {
  return text.replace(/\|/g, `\\|`).replace(/\*/g, `\\*`).replace(/_/g, `\\_`).replace(/\n/g, ` `);
}
