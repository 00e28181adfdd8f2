// Markdown, to paste into a support ticket: one table of maps, leaked samples in code blocks,
// one table per grouping.
import {displayName, percent, type MapReport, type ReportModel} from './model.ts';

export function renderMarkdown(model: ReportModel): string {
  const out: Array<string> = [`# USM eBPF map leak report`, ``];
  if (model.source)
    out.push(`Host \`${model.source.host}\`, kernel \`${model.source.kernel}\`, data from ${model.source.time}.`, ``);
  const sum = model.summary;
  out.push(`**${sum.leaked} leaked entries** in ${sum.mapsWithLeaks} of ${sum.mapsChecked} maps`
    + (sum.raceFiltered ? `; ${sum.raceFiltered} race condition false positives filtered` : ``)
    + (sum.resolved ? `; ${sum.resolved} removed from their map before the recheck` : ``)
    + (sum.unknown ? `; ${sum.unknown} not judged (unknown)` : ``)
    + `. Network namespaces discovered: ${model.namespaceCount}.`, ``);
  if (model.warnings.length) {
    out.push(`## Warnings`, ``);
    for (const warning of model.warnings)
      out.push(`- ${cell(warning)}`);
    out.push(``);
  }
  const maps = [...model.pidMaps, ...model.connTupleMaps];
  if (maps.length) {
    out.push(`## Maps`, ``);
    out.push(`| map | id | key | valid / total | leaked | unknown | race filtered | fill |`);
    out.push(`|---|---:|---|---:|---:|---:|---:|---:|`);
    for (const map of maps) {
      const fill = map.fill === null ? `n/a` : `${map.entries}/${map.maxEntries} (${percent(map.fill, 1)}%)${map.nearFull ? ` ⚠` : ``}`;
      out.push(`| ${cell(map.kernelName)} | ${map.mapId} | ${map.keyKind ?? `?`} | ${map.valid}/${map.total} | ${map.leaked} | ${map.unknown} | ${map.raceFiltered} | ${fill} |`);
    }
    out.push(``);
  }
  const leaky = maps.filter(map => map.leaked > 0);
  if (leaky.length) {
    out.push(`## Leaked samples`, ``);
    for (const map of leaky)
      out.push(...samples(map));
  }
  const groups = model.groups.filter(group => group.total > 0);
  if (groups.length) {
    out.push(`## Leaks by cause`, ``);
    for (const group of groups) {
      out.push(`### By ${group.title}`, ``, `| count | ${group.field} |`, `|---:|---|`);
      for (const row of group.rows)
        out.push(`| ${row.count} | ${cell(row.label)} |`);
      if (group.other)
        out.push(`| ${group.other} | (other values) |`);
      out.push(``);
    }
  }
  return `${out.join(`\n`)}\n`;
}

function samples(map: MapReport): Array<string> {
  const out = [`### ${cell(displayName(map))}: ${map.leaked} leaked`, ``];
  if (map.deadPids.length)
    out.push(`Dead PIDs: ${map.deadPids.slice(0, 20).join(`, `)}${map.deadPids.length > 20 ? ` (and ${map.deadPids.length - 20} more)` : ``}`, ``);
  out.push(`\`\`\``);
  for (const sample of map.samples)
    out.push(`${sample.text} [${sample.reason}]`);
  if (map.moreLeaked)
    out.push(`... and ${map.moreLeaked} more`);
  out.push(`\`\`\``, ``);
  return out;
}

/** Text safe inside a table cell. */
function cell(text: string): string {
  return text.replace(/\|/g, `\\|`).replace(/\n/g, ` `);
}
