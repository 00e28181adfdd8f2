// CLOCK_MONOTONIC readings a capture directory carries: meta/monotonic (taken just before the
// maps were dumped) and meta/monotonic-snapshot (just before /proc was copied). The capture
// script writes `<nanoseconds> <source>`: source `timer_list` is /proc/timer_list's `now at`
// (CLOCK_MONOTONIC itself, root only), `uptime` is /proc/uptime (CLOCK_BOOTTIME to 10 ms: the
// same clock unless the machine was suspended). A live run reads the clock itself (ToolContext).
import {join} from 'node:path';
import {readBoundedText} from '../boundedRead.ts';
import type {ToolContext} from '../context.ts';

export const CLOCK_SOURCES = [`timer_list`, `uptime`] as const;

export interface CaptureClock {
  ns: bigint;
  source: (typeof CLOCK_SOURCES)[number];
}

/** Parses `<nanoseconds> <source>`; null when the text is not that. */
export function parseClockFile(text: string): CaptureClock | null {
  const match = /^\s*0*(\d+)\s+(timer_list|uptime)\s*$/.exec(text);
  if (match === null)
    return null;
  return {ns: BigInt(match[1]), source: match[2] as CaptureClock[`source`]};
}

/** A capture directory's reading `name` (`monotonic` or `monotonic-snapshot`); null when absent or unreadable. */
export async function readCaptureClock(dir: string, name: `monotonic` | `monotonic-snapshot`): Promise<CaptureClock | null> {
  try {
    return parseClockFile(await readBoundedText(join(dir, `meta`, name), `utf8`, 4096));
  } catch {
    return null;
  }
}

/** When a snapshot was taken, in CLOCK_MONOTONIC ns as the wire carries it: the capture's, or now. */
export async function snapshotMonotonicNs(ctx: ToolContext, from: string | undefined): Promise<string | undefined> {
  if (from !== undefined)
    return (await readCaptureClock(from, `monotonic-snapshot`))?.ns.toString();
  return ctx.clock.monotonicNs?.().toString();
}

/** The map-dump reading of the first capture directory among `inputs` (dump-maps --from). */
export async function firstCaptureClock(inputs: ReadonlyArray<string>): Promise<CaptureClock | null> {
  for (const input of inputs) {
    const clock = await readCaptureClock(input, `monotonic`);
    if (clock !== null)
      return clock;
  }
  return null;
}
