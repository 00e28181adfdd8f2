import type {ToolContext} from './context.ts';
import {SCHEMA_VERSION, TOOL_NAME, type HeaderRecord, type Stage} from './schema.ts';
import {TOOL_VERSION} from './version.ts';

/** The record that opens every stream: which stage, tool, host, kernel and time produced it. */
export function makeHeader(stage: Stage, ctx: ToolContext): HeaderRecord {
  const timeMs = ctx.clock.now();
  return {
    type: `header`,
    v: SCHEMA_VERSION,
    stage,
    tool: TOOL_NAME,
    toolVersion: TOOL_VERSION,
    host: ctx.host.hostname,
    kernel: ctx.host.kernel,
    time: new Date(timeMs).toISOString(),
    timeMs,
  };
}
