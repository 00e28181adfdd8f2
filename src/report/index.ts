// report: records in, the answer out. Streams its input once; memory is bounded by the number
// of maps, samples and distinct group values, not by the number of entries.
import {SCHEMA_VERSION, type AnyRecord, type HeaderRecord} from '../schema.ts';
import {DEFAULT_GROUPS, GROUP_FIELDS, ReportAggregator, type GroupField} from './aggregate.ts';
import type {LeakFilter} from './filter.ts';
import {renderMarkdown} from './markdown.ts';
import {buildReport, type ReportModel} from './model.ts';
import {ANSI_STYLE, NO_STYLE} from './style.ts';
import {renderText} from './text.ts';
import {UsageFault} from '../errors.ts';
import {escapeStrings} from '../escape.ts';
import type {Writable} from 'node:stream';
import {writeWhole} from '../ndjson.ts';

export const REPORT_FORMATS = [`text`, `json`, `ndjson`, `markdown`] as const;
export type ReportFormat = (typeof REPORT_FORMATS)[number];

export interface ReportRunOptions {
  format: ReportFormat;
  samples: number;
  groupBy: ReadonlyArray<GroupField>;
  colour: boolean;
  verbose: boolean;
  /** Header written first in ndjson format. */
  header?: HeaderRecord;
  filter?: LeakFilter;
}

export interface ReportResult {
  text: string;
  leaks: number;
  model: ReportModel;
}

/** Folds records into the report. Resolves once the input ends. */
export async function report(input: AsyncIterable<AnyRecord>, options: ReportRunOptions): Promise<ReportResult> {
  const aggregator = new ReportAggregator({samples: options.samples, groupBy: options.groupBy, filter: options.filter});
  for await (const record of input)
    aggregator.add(record);
  const model = buildReport(aggregator);
  return {text: render(model, options), leaks: model.summary.leaked, model};
}

export function render(model: ReportModel, options: ReportRunOptions): string {
  switch (options.format) {
    case `json`: return `${JSON.stringify(model, null, 2)}\n`;
    case `ndjson`: return ndjsonLines(model, options.header);
    // The human formats get every string from the input with its control characters escaped.
    case `markdown`: return renderMarkdown(escapeStrings(model));
    default: return renderText(escapeStrings(model), {style: options.colour ? ANSI_STYLE : NO_STYLE, verbose: options.verbose});
  }
}

/** ndjson: one `report-map` record per map (worst first), one `report-group` per grouping, one `report-summary`. */
function ndjsonLines(model: ReportModel, header?: HeaderRecord): string {
  const lines: Array<string> = [];
  if (header)
    lines.push(JSON.stringify(header));
  for (const map of model.maps)
    lines.push(JSON.stringify({type: `report-map`, v: SCHEMA_VERSION, ...map}));
  for (const group of model.groups)
    lines.push(JSON.stringify({type: `report-group`, v: SCHEMA_VERSION, ...group}));
  lines.push(JSON.stringify({
    type: `report-summary`, v: SCHEMA_VERSION, conclusion: model.conclusion, source: model.source, filter: model.filter,
    namespaceCount: model.namespaceCount, hints: model.hints, mapNotes: model.mapNotes, warnings: model.warnings, ...model.summary,
  }));
  return `${lines.join(`\n`)}\n`;
}

/** Parses `--group-by` values (repeatable, comma-separated); none means the default set. */
export function parseGroupBy(values: ReadonlyArray<string>): Array<GroupField> {
  const fields = values.flatMap(value => value.split(`,`)).map(field => field.trim()).filter(Boolean);
  if (!fields.length)
    return [...DEFAULT_GROUPS];
  const out: Array<GroupField> = [];
  for (const field of fields) {
    if (field === `all`) {
      out.push(...GROUP_FIELDS);
      continue;
    }
    if (!(GROUP_FIELDS as ReadonlyArray<string>).includes(field))
      throw new UsageFault(`--group-by ${field}: unknown field; known: ${GROUP_FIELDS.join(`, `)}, all`);
    out.push(field as GroupField);
  }
  return [...new Set(out)];
}

/** Colour only on a terminal, and never when NO_COLOR is set (https://no-color.org). */
export function wantColour(stdoutIsTTY: boolean, env: NodeJS.ProcessEnv): boolean {
  return stdoutIsTTY && (env.NO_COLOR === undefined || env.NO_COLOR === ``);
}

/** Writes the rendered report; a reader that left (`| head`) is a normal end, any other error exit 3. */
export async function writeText(stream: NodeJS.WritableStream, text: string): Promise<void> {
  await writeWhole(stream as Writable, text);
}

export {DEFAULT_GROUPS, GROUP_FIELDS, type GroupField};
