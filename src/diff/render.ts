// diff's output: text (the answer, a table worst growth first, the persisting leaks' keys),
// markdown, one JSON document, or NDJSON (a header and one `mapdiff` record per map).
import {SCHEMA_VERSION, type HeaderRecord} from '../schema.ts';
import {alignRows, formatAge, fraction, markdownCell as cell, sampleCells} from '../report/format.ts';
import type {Style} from '../report/style.ts';
import type {DiffResult, MapDiff} from './index.ts';

export const DIFF_FORMATS = [`text`, `json`, `ndjson`, `markdown`] as const;
export type DiffFormat = (typeof DIFF_FORMATS)[number];

/** The wire form of one map's comparison (`diff --format ndjson`). */
export type MapDiffRecord = {type: `mapdiff`, v: number} & MapDiff;

export function renderDiff(result: DiffResult, format: DiffFormat, style: Style, header: HeaderRecord): string {
  switch (format) {
    case `json`: return `${JSON.stringify({type: `diff`, v: SCHEMA_VERSION, ...result}, null, 2)}\n`;
    case `ndjson`: return [header, ...result.maps.map((map): MapDiffRecord => ({type: `mapdiff`, v: SCHEMA_VERSION, ...map}))].map(record => JSON.stringify(record)).join(`\n`) + `\n`;
    case `markdown`: return diffMarkdown(result);
    default: return diffText(result, style);
  }
}

/** Exit 1 when the later capture has leaks (each one is new or persisting). */
export function diffLeaks(result: DiffResult): boolean {
  return result.totals.new + result.totals.persisting > 0;
}

/** The first line: the answer in words. */
export function diffAnswer(result: DiffResult): string {
  const t = result.totals;
  const apart = result.minutes === null ? `captures of unknown times` : `captures ${formatAge(result.minutes * 60)} apart`;
  const parts: Array<string> = [];
  if (diffLeaks(result)) {
    const leaky = result.maps.filter(map => map.leakedAfter > 0).length;
    parts.push(`LEAKING: ${t.persisting} persisting and ${t.new} new leaked entr${t.persisting + t.new === 1 ? `y` : `ies`} in ${leaky} of ${result.maps.length} map${result.maps.length === 1 ? `` : `s`}, ${apart}`);
  } else {
    parts.push(`NOT LEAKING: no leaked entry in the later capture, ${apart}`);
  }
  parts.push(`${t.gone} gone since the earlier one`);
  if (t.undetermined)
    parts.push(`${t.undetermined} not judged in the later one`);
  const fastest = result.maps.filter(map => map.leaksPerHour !== null && map.leaksPerHour > 0)
    .sort((a, b) => b.leaksPerHour! - a.leaksPerHour!)[0];
  if (fastest)
    parts.push(`${fastest.map} grows by ${rate(fastest.leaksPerHour!)} leaks an hour${fastest.hoursToFull !== null ? `, full in ${hours(fastest.hoursToFull)}` : ``}`);
  return parts.join(`; `);
}

const rate = (perHour: number) => perHour.toFixed(1);
const hours = (h: number) => h < 48 ? `${h.toFixed(1)} h` : `${(h / 24).toFixed(1)} d`;

function sideLine(label: string, side: DiffResult[`earlier`]): string {
  return `${label} ${side.host ?? `unknown host`}, data from ${side.time ?? `an unknown time`} (${side.path})`;
}

function tableRows(result: DiffResult): Array<Array<string>> {
  const rows = [[`map`, `leaked before`, `after`, `new`, `gone`, `persisting`, `fill before`, `fill after`, `leaks/hour`, `full in`]];
  for (const map of result.maps) {
    rows.push([
      map.map, String(map.leakedBefore), String(map.leakedAfter), String(map.new), String(map.gone), String(map.persisting),
      map.entriesBefore === null || map.maxEntries === null ? `-` : fraction(map.entriesBefore, map.maxEntries),
      map.entriesAfter === null || map.maxEntries === null ? `-` : fraction(map.entriesAfter, map.maxEntries),
      map.leaksPerHour === null ? `-` : rate(map.leaksPerHour),
      map.hoursToFull === null ? `-` : hours(map.hoursToFull),
    ]);
  }
  return rows;
}

function diffText(result: DiffResult, s: Style): string {
  const answer = diffAnswer(result);
  const out = [s.bold(diffLeaks(result) ? s.red(answer) : s.green(answer))];
  out.push(s.dim(sideLine(`Earlier:`, result.earlier)), s.dim(sideLine(`Later:  `, result.later)));
  if (result.swapped)
    out.push(s.yellow(`(the captures were given newest first: compared the other way round)`));
  out.push(``, s.bold(`Maps, worst growth first`));
  out.push(...alignRows(tableRows(result), new Set([1, 2, 3, 4, 5, 8])).map(line => `  ${line}`));
  const persisting = result.maps.filter(map => map.persisting > 0);
  if (persisting.length) {
    out.push(``, s.bold(`Persisting leaks (leaked in both captures: not races, not slow cleaners)`));
    for (const map of persisting) {
      out.push(`${map.map} (${map.persisting})`);
      out.push(...alignRows(map.persistingSamples.map(sampleCells)).map(line => `    ${line}`));
      if (map.persisting > map.persistingSamples.length)
        out.push(`    ... and ${map.persisting - map.persistingSamples.length} more`);
    }
  }
  return `${out.join(`\n`)}\n`;
}

function diffMarkdown(result: DiffResult): string {
  const answer = diffAnswer(result);
  const colon = answer.indexOf(`:`);
  const out = [`# USM eBPF map leak diff`, ``, `**${answer.slice(0, colon)}**${cell(answer.slice(colon))}`, ``];
  out.push(`- ${cell(sideLine(`Earlier:`, result.earlier))}`, `- ${cell(sideLine(`Later:`, result.later))}`, ``);
  const rows = tableRows(result);
  out.push(`## Maps, worst growth first`, ``, `| ${rows[0]!.join(` | `)} |`, `|---|${rows[0]!.slice(1).map(() => `---:`).join(`|`)}|`);
  for (const row of rows.slice(1))
    out.push(`| ${row.map(cell).join(` | `)} |`);
  const persisting = result.maps.filter(map => map.persisting > 0);
  if (persisting.length) {
    out.push(``, `## Persisting leaks`, ``);
    for (const map of persisting) {
      out.push(`### ${cell(map.map)} (${map.persisting})`, ``, `| ${[`proto`, `src`, ``, `dst`, `netns`, `process`, `reason`].join(` | `)} |`, `|---|---|---|---|---|---|---|`);
      for (const row of map.persistingSamples)
        out.push(`| ${sampleCells(row).slice(0, 7).map(cell).join(` | `)} |`);
      if (map.persisting > map.persistingSamples.length)
        out.push(``, `... and ${map.persisting - map.persistingSamples.length} more`);
      out.push(``);
    }
  }
  while (out.at(-1) === ``)
    out.pop();
  return `${out.join(`\n`)}\n`;
}
