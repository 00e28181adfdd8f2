import type {ToolContext} from './context.ts';
import type {Origin} from './provenance.ts';
import {SCHEMA_VERSION, TOOL_NAME, type HeaderRecord, type Stage} from './schema.ts';
import {TOOL_VERSION} from './version.ts';

/**
 * The record that opens every stream: which stage, tool, host, kernel and time produced it.
 * With `origin` (a capture, or input that was not live here), host, kernel and time are where
 * and when the data was taken, `replayed` is set and `replayedOn` names this machine and now.
 */
export function makeHeader(stage: Stage, ctx: ToolContext, origin?: Origin | null): HeaderRecord {
  const timeMs = ctx.clock.now();
  const header: HeaderRecord = {
    type: `header`,
    v: SCHEMA_VERSION,
    stage,
    tool: TOOL_NAME,
    toolVersion: TOOL_VERSION,
    host: origin?.host ?? ctx.host.hostname,
    kernel: origin?.kernel ?? ctx.host.kernel,
    time: origin?.time ?? new Date(timeMs).toISOString(),
    timeMs: origin?.timeMs ?? timeMs,
  };
  if (origin) {
    header.replayed = true;
    header.replayedOn = {host: ctx.host.hostname, time: new Date(timeMs).toISOString(), timeMs};
  }
  return header;
}
