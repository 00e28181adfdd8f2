// The text report: the original tool's two reports, line for line where it had them (wording,
// order, percentage formats), with this tool's additions (fill, unknowns, leaks by cause) marked
// off in their own lines and sections.
import {displayName, percent, type GroupReport, type MapReport, type ReportModel} from './model.ts';

export interface Style {
  bold(text: string): string;
  red(text: string): string;
  yellow(text: string): string;
  green(text: string): string;
  dim(text: string): string;
}

const plain = (text: string) => text;
export const NO_STYLE: Style = {bold: plain, red: plain, yellow: plain, green: plain, dim: plain};

const sgr = (code: string) => (text: string) => `\x1b[${code}m${text}\x1b[0m`;
export const ANSI_STYLE: Style = {bold: sgr(`1`), red: sgr(`31`), yellow: sgr(`33`), green: sgr(`32`), dim: sgr(`2`)};

const RULE = `=`.repeat(60);
const LINE = `-`.repeat(60);
/** The original prints 20 dead PIDs, then "... and K more". */
const DEAD_PIDS_SHOWN = 20;

export interface TextOptions {
  style: Style;
  /** List every namespace (the original's verbose output). */
  verbose: boolean;
}

export function renderText(model: ReportModel, options: TextOptions): string {
  const s = options.style;
  const out: Array<string> = [];
  if (model.source)
    out.push(s.dim(`Host ${model.source.host} (kernel ${model.source.kernel}), data from ${model.source.time}`), ``);
  for (const warning of model.warnings)
    out.push(s.yellow(`WARNING: ${warning}`));
  if (model.warnings.length)
    out.push(``);
  const hasPid = model.pidMaps.length > 0;
  const hasConn = model.connTupleMaps.length > 0;
  if (!hasPid && !hasConn)
    out.push(`No USM maps in the input.`, ``);
  if (hasPid)
    out.push(...pidSection(model, s));
  if (hasPid && hasConn)
    out.push(``);
  if (hasConn)
    out.push(...connTupleSection(model, options));
  out.push(...groupSections(model, s));
  out.push(...overall(model, s));
  return `${out.join(`\n`)}\n`;
}

function pidSection(model: ReportModel, s: Style): Array<string> {
  const out = [s.bold(`USM eBPF Map Leak Detection (PID-Keyed Maps)`), RULE, ``];
  for (const map of model.pidMaps) {
    const pct = map.total ? map.leaked / map.total : 0;
    const unknown = map.unknown ? `, ${map.unknown} unknown` : ``;
    const line = `${displayName(map)}: ${map.leaked}/${map.total} entries (${percent(pct, 1)}% leaked${unknown})`;
    out.push(map.leaked ? s.red(line) : line);
    out.push(...fillLines(map, s));
    if (!map.leaked) {
      out.push(s.green(`  No leaks detected`));
    } else {
      if (map.deadPids.length) {
        out.push(`  Dead PIDs: [${map.deadPids.slice(0, DEAD_PIDS_SHOWN).join(`, `)}]`);
        if (map.deadPids.length > DEAD_PIDS_SHOWN)
          out.push(`    ... and ${map.deadPids.length - DEAD_PIDS_SHOWN}${map.deadPidsCapped ? `+` : ``} more`);
      }
      if (map.threadsGone)
        out.push(`  Entries of exited threads (process still alive): ${map.threadsGone}`);
      out.push(...sampleLines(map));
    }
    out.push(...unknownLines(map));
    out.push(``);
  }
  out.push(`## Summary`, LINE);
  out.push(...summaryLines(model.summary.pid, false));
  return out;
}

function connTupleSection(model: ReportModel, options: TextOptions): Array<string> {
  const s = options.style;
  const out = [s.bold(`USM eBPF Map Leak Detection (ConnTuple-Keyed Maps)`), RULE, ``];
  out.push(`Network Namespaces Discovered: ${model.namespaceCount}`);
  if (options.verbose) {
    for (const netns of model.namespaces) {
      const where = [netns.pids.length ? `pids ${netns.pids.slice(0, 5).join(`, `)}` : ``, ...netns.paths].filter(Boolean).join(`; `);
      out.push(`  ${netns.netnsInode}${where ? ` (${where})` : ``}${netns.complete ? `` : ` ${s.yellow(`[incomplete]`)}`}`);
    }
  }
  out.push(``, `## Connection Tuple-Keyed Maps`, LINE);
  for (const map of model.connTupleMaps) {
    const name = displayName(map);
    if (!map.leaked && !map.unknown) {
      out.push(`${name}: ${map.total}/${map.total} entries (100% valid)`);
    } else {
      const validPct = map.total ? map.valid / map.total : 1;
      const unknown = map.unknown ? `, ${map.unknown} unknown` : ``;
      const line = `${name}: ${map.valid}/${map.total} entries (${percent(validPct, 2)}% valid, ${map.leaked} leaked${unknown})`;
      out.push(map.leaked ? s.red(line) : line);
    }
    out.push(...fillLines(map, s));
    if (!map.leaked) {
      out.push(s.green(`  No leaks detected`));
    } else {
      out.push(`  Leaked entries: ${map.leaked}`);
      out.push(...sampleLines(map));
    }
    if (map.raceFiltered)
      out.push(`  Race condition false positives filtered: ${map.raceFiltered}`);
    if (map.resolved)
      out.push(`  Removed from the map before the recheck (not leaks): ${map.resolved}`);
    out.push(...unknownLines(map));
    out.push(``);
  }
  out.push(`## Summary`, LINE);
  out.push(...summaryLines(model.summary.connTuple, true));
  return out;
}

function fillLines(map: MapReport, s: Style): Array<string> {
  if (map.fill === null)
    return [];
  const line = `  Fill: ${map.entries}/${map.maxEntries} entries (${percent(map.fill, 1)}% of max_entries)`;
  if (!map.nearFull)
    return [line];
  return [s.yellow(`${line}  WARNING: nearly full, USM drops new data when a map is full`)];
}

function sampleLines(map: MapReport): Array<string> {
  const out = map.samples.map(sample => `    ${sample.text} [${sample.reason}]`);
  if (map.moreLeaked)
    out.push(`    ... and ${map.moreLeaked} more`);
  return out;
}

function unknownLines(map: MapReport): Array<string> {
  const out: Array<string> = [];
  if (map.problem)
    out.push(`  Not judged: ${map.problem}`);
  const unknown = map.reasons.unknown;
  if (map.unknown && unknown)
    out.push(`  Unknown (not counted as valid): ${Object.entries(unknown).map(([reason, n]) => `${reason} ${n}`).join(`, `)}`);
  if (map.dumpComplete === false)
    out.push(`  Dump incomplete${map.dumpError ? `: ${map.dumpError}` : ``}`);
  return out;
}

function summaryLines(summary: ReportModel[`summary`][`pid`], race: boolean): Array<string> {
  const out = [
    `Total maps checked: ${summary.mapsChecked}`,
    `Maps with leaks: ${summary.mapsWithLeaks}`,
    `Total leaked entries: ${summary.leaked}`,
  ];
  if (race && summary.raceFiltered)
    out.push(`Race condition false positives filtered: ${summary.raceFiltered}`);
  if (summary.unknown)
    out.push(`Entries not judged (unknown): ${summary.unknown}`);
  return out;
}

function groupSections(model: ReportModel, s: Style): Array<string> {
  const groups = model.groups.filter(group => group.total > 0);
  if (!groups.length)
    return [];
  const out = [``, s.bold(`Leaks by cause`), RULE];
  for (const group of groups)
    out.push(``, ...groupLines(group));
  return out;
}

function groupLines(group: GroupReport): Array<string> {
  const out = [`## By ${group.title} (${group.distinct}${group.capped ? `+` : ``} distinct)`];
  const width = Math.max(...group.rows.map(row => String(row.count).length), String(group.other).length);
  for (const row of group.rows)
    out.push(`  ${String(row.count).padStart(width)}  ${row.label}`);
  if (group.other)
    out.push(`  ${String(group.other).padStart(width)}  (other values)`);
  if (group.capped)
    out.push(`  (only the first ${group.distinct} distinct values are counted one by one: the top rows are among those)`);
  if (group.notApplicable)
    out.push(`  (${group.notApplicable} leaked entries have no ${group.field})`);
  return out;
}

function overall(model: ReportModel, s: Style): Array<string> {
  const sum = model.summary;
  const out = [``, s.bold(`## Overall`), LINE];
  const leaked = `Leaked entries: ${sum.leaked} in ${sum.mapsWithLeaks} of ${sum.mapsChecked} maps`;
  out.push(sum.leaked ? s.red(leaked) : s.green(leaked));
  if (sum.raceFiltered)
    out.push(`Race condition false positives filtered: ${sum.raceFiltered}`);
  if (sum.resolved)
    out.push(`Removed from their map before the recheck: ${sum.resolved}`);
  if (sum.unknown)
    out.push(`Not judged (unknown): ${sum.unknown}`);
  if (sum.nearFullMaps)
    out.push(s.yellow(`Maps nearly full (>= 90% of max_entries): ${sum.nearFullMaps}`));
  return out;
}
