// report --list: one row per leaked entry, like `ss` or `conntrack -L`. Streams: rows are
// written as the verdicts arrive. Column widths come from the first LIST_ALIGN_ROWS rows (held
// until then); a later, wider value only pushes its own row's next columns right.
import {SCHEMA_VERSION, type AnyRecord} from '../schema.ts';
import {ReportAggregator} from './aggregate.ts';
import type {LeakFilter} from './filter.ts';
import {leakColumns, NONE, padRow, type LeakColumns, type LeakRow} from './format.ts';
import {buildReport, leakRow, type ReportModel} from './model.ts';

/** Rows held to compute the column widths before the first line is written. */
export const LIST_ALIGN_ROWS = 10_000;

export const LIST_COLUMNS: ReadonlyArray<keyof LeakColumns> = [`map`, `reason`, `proto`, `src`, `dst`, `netns`, `pid`, `comm`, `checks`, `age`];
const RIGHT: ReadonlySet<number> = new Set([LIST_COLUMNS.indexOf(`netns`), LIST_COLUMNS.indexOf(`checks`)]);

/** The wire form of a listed leak (`--list --format ndjson`). */
export type LeakRecord = {type: `leak`, v: number} & LeakRow;

export interface ListOptions {
  format: `text` | `ndjson`;
  filter: LeakFilter;
  /** Writes a chunk of output; resolves when it may continue. */
  write(text: string): Promise<void>;
  /** First line of ndjson output. */
  header?: object;
}

export interface ListResult {
  leaks: number;
  /** The report the listed records make (its answer and totals decide the exit code). */
  model: ReportModel;
}

export async function listLeaks(input: AsyncIterable<AnyRecord>, options: ListOptions): Promise<ListResult> {
  // The aggregator keeps what resolves a row (process records, owners, the process snapshot).
  const agg = new ReportAggregator({samples: 0, groupBy: [], filter: options.filter});
  const out = options.format === `ndjson` ? new NdjsonList(options) : new TextList(options);
  let leaks = 0;
  for await (const record of input) {
    agg.add(record);
    if (record.type !== `verdict` || record.status !== `leaked`)
      continue;
    const verdict = record;
    if (!options.filter.verdict(verdict))
      continue;
    leaks += 1;
    await out.add(leakRow(agg, verdict));
  }
  await out.end();
  return {leaks, model: buildReport(agg)};
}

/** Output lines written in batches of 512. */
class Lines {
  private lines: Array<string> = [];

  constructor(private readonly write: ListOptions[`write`]) {}

  async push(line: string): Promise<void> {
    this.lines.push(line);
    if (this.lines.length >= 512)
      await this.flush();
  }

  async flush(): Promise<void> {
    if (this.lines.length)
      await this.write(`${this.lines.join(`\n`)}\n`);
    this.lines = [];
  }
}

class NdjsonList {
  private readonly lines: Lines;

  constructor(options: ListOptions) {
    this.lines = new Lines(options.write);
    if (options.header)
      void this.lines.push(JSON.stringify(options.header));
  }

  async add(row: LeakRow): Promise<void> {
    const record: LeakRecord = {type: `leak`, v: SCHEMA_VERSION, ...row};
    await this.lines.push(JSON.stringify(record));
  }

  async end(): Promise<void> {
    await this.lines.flush();
  }
}

class TextList {
  private held: Array<Array<string>> = [];
  private widths: Array<number> | null = null;
  private readonly lines: Lines;
  /** The age column is left out when none of the first rows knows an age. */
  private columns = LIST_COLUMNS;

  constructor(options: ListOptions) {
    this.lines = new Lines(options.write);
  }

  async add(row: LeakRow): Promise<void> {
    const c = leakColumns(row);
    const cells = this.columns.map(column => c[column]);
    if (this.widths === null) {
      this.held.push(cells);
      if (this.held.length >= LIST_ALIGN_ROWS)
        await this.release();
      return;
    }
    await this.lines.push(padRow(cells, this.widths, RIGHT));
  }

  /** Widths from the header and the rows held; then the held rows go out. */
  private async release(): Promise<void> {
    const age = LIST_COLUMNS.indexOf(`age`);
    if (!this.held.some(cells => cells[age] !== NONE)) {
      this.columns = LIST_COLUMNS.filter(column => column !== `age`);
      for (const cells of this.held)
        cells.splice(age, 1);
    }
    const header = this.columns.map(column => column.toUpperCase());
    const widths = header.map(cell => cell.length);
    for (const cells of this.held)
      cells.forEach((cell, i) => { widths[i] = Math.max(widths[i]!, cell.length); });
    this.widths = widths;
    await this.lines.push(padRow(header, widths, RIGHT));
    for (const cells of this.held)
      await this.lines.push(padRow(cells, widths, RIGHT));
    this.held = [];
  }

  async end(): Promise<void> {
    if (this.widths === null)
      await this.release();
    await this.lines.flush();
  }
}
