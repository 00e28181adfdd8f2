// Where and when the data of a stream was taken. A stream read live on this machine is judged
// against this machine; one that came from a capture (`--from`), or from a stream that did, or
// from another host, never is: its header says `replayed`, with the capture's host, kernel and
// time, so every later stage (and the report's "data from") knows.
import {stat} from 'node:fs/promises';
import {readBoundedText} from './boundedRead.ts';
import {basename, dirname, join} from 'node:path';
import type {ToolContext} from './context.ts';
import type {AnyRecord, HeaderRecord} from './schema.ts';

/** Where and when data was taken. */
export interface Origin {
  host: string;
  kernel: string;
  time: string;
  timeMs: number;
}

/** A capture directory's meta/: the host, kernel and time of that look, and the delay asked for. */
export interface CaptureMeta extends Origin {
  /** `-d` of the capture script (seconds, meta/delay), when the capture says. */
  delaySeconds: number | null;
}

export const UNKNOWN_HOST = `unknown`;

async function readValue(dir: string, name: string): Promise<string | null> {
  try {
    const value = (await readBoundedText(join(dir, name), `utf8`, 4096)).trim();
    return value.length > 0 ? value : null;
  } catch {
    return null;
  }
}

/** The meta/ directory that describes `input` (a capture, its maps/ directory, or a file in one), if any. */
async function metaDirOf(input: string): Promise<string | null> {
  const candidates = [join(input, `meta`)];
  const parent = dirname(input);
  if (basename(input) === `maps` || basename(parent) === `maps`)
    candidates.push(join(basename(input) === `maps` ? parent : dirname(parent), `meta`));
  for (const candidate of candidates) {
    try {
      if ((await stat(candidate)).isDirectory())
        return candidate;
    } catch {
      // not this one
    }
  }
  return null;
}

/**
 * The origin of saved data: the capture's meta/ (hostname, kernel, time, delay). Saved files with
 * no meta/ (bpftool outputs copied by hand) come from an unknown host, at the time the file was
 * last written.
 */
export async function captureOrigin(input: string): Promise<CaptureMeta> {
  const meta = await metaDirOf(input);
  const [host, kernel, time, delay] = meta === null ? [null, null, null, null]
    : await Promise.all([`hostname`, `kernel`, `time`, `delay`].map(name => readValue(meta, name)));
  let timeMs = time !== null ? Date.parse(time) : Number.NaN;
  if (!Number.isFinite(timeMs)) {
    try {
      timeMs = (await stat(meta ?? input)).mtimeMs;
    } catch {
      timeMs = 0;
    }
  }
  const delaySeconds = delay !== null && /^\d+$/.test(delay) ? Number(delay) : null;
  return {host: host ?? UNKNOWN_HOST, kernel: kernel ?? UNKNOWN_HOST, time: new Date(timeMs).toISOString(), timeMs: Math.round(timeMs), delaySeconds};
}

/**
 * The origin several inputs share: the first one that has a meta/, else the first. Only stdin
 * (`-`): an unknown host, at `fallbackMs` (the replay's time: nothing says when it was taken).
 */
export async function capturesOrigin(inputs: ReadonlyArray<string>, fallbackMs: number): Promise<CaptureMeta> {
  let first: CaptureMeta | null = null;
  for (const input of inputs) {
    if (input === `-`)
      continue;
    const origin = await captureOrigin(input);
    first ??= origin;
    if (origin.host !== UNKNOWN_HOST)
      return origin;
  }
  return first ?? {host: UNKNOWN_HOST, kernel: UNKNOWN_HOST, time: new Date(fallbackMs).toISOString(), timeMs: fallbackMs, delaySeconds: null};
}

/** Whether a header says its data was not read live on this machine. */
export function isForeign(header: HeaderRecord, ctx: ToolContext): boolean {
  return header.replayed === true || header.host !== ctx.host.hostname;
}

/**
 * What the headers of a stage's input say about its data: whether there was one, and the first
 * that is replayed or from another host (its origin becomes the stage's own).
 */
export class Provenance {
  /** Headers seen on the input. */
  headers = 0;
  /** Of those, headers of data read live on this machine. */
  liveHeaders = 0;
  /** The data's origin when it is not this machine, live. */
  origin: Origin | null = null;
  /** Another foreign origin that disagrees with the first (data of two hosts mixed). */
  conflict: Origin | null = null;
  /** Earliest time any of the input's data was taken (headers, snapshot records). */
  earliestMs: number | null = null;

  constructor(private readonly ctx: ToolContext) {}

  /** Looks at one input record (cheap for every type but header and snapshot). */
  observe(record: AnyRecord): void {
    if (record.type === `snapshot`) {
      this.earliest(record.timeMs);
      return;
    }
    if (record.type !== `header`)
      return;
    const header = record;
    this.headers += 1;
    this.earliest(header.timeMs);
    if (!isForeign(header, this.ctx)) {
      this.liveHeaders += 1;
      return;
    }
    const origin: Origin = {host: header.host, kernel: header.kernel, time: header.time, timeMs: header.timeMs};
    if (this.origin === null)
      this.origin = origin;
    else if (this.conflict === null && origin.host !== this.origin.host)
      this.conflict = origin;
  }

  /** What is wrong with judging this input's records together, or null: two hosts, or live data with a capture's. */
  get mixture(): string | null {
    if (this.origin !== null && this.conflict !== null)
      return `the input mixes data of host ${this.origin.host} and host ${this.conflict.host}`;
    if (this.origin !== null && this.liveHeaders > 0)
      return `the input mixes data read live on this host (${this.ctx.host.hostname}) with data of ${this.origin.host === this.ctx.host.hostname ? `a capture` : `host ${this.origin.host}`} (data from ${this.origin.time})`;
    return null;
  }

  /** The input's data was read live on this machine: a header said so and none said otherwise. */
  get isLiveHere(): boolean {
    return this.headers > 0 && this.origin === null;
  }

  private earliest(timeMs: unknown): void {
    if (typeof timeMs === `number` && Number.isFinite(timeMs) && (this.earliestMs === null || timeMs < this.earliestMs))
      this.earliestMs = timeMs;
  }
}

/** "host X, data from TIME" for messages. */
export function describeOrigin(origin: Origin): string {
  return `host ${origin.host} (data from ${origin.time})`;
}
