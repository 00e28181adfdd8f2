// Markdown, to paste into a support ticket: the answer first, one table of maps worst first,
// the totals, each leaking map's samples as a table, leaks by cause, what to do next.
import {leakColumns, markdownCell as cell} from './format.ts';
import {fillText, mapName, type MapReport, type ReportModel} from './model.ts';
import {MAP_SECTIONS} from './sections.ts';
import {answerLine, notApplicableWords, sourceLine} from './text.ts';
import {fraction} from './format.ts';

export function renderMarkdown(model: ReportModel): string {
  const out: Array<string> = [`# USM eBPF map leak report`, ``];
  const answer = answerLine(model);
  const colon = answer.indexOf(`:`);
  out.push(`**${answer.slice(0, colon)}**${cell(answer.slice(colon))}`, ``);
  const about = sourceLine(model);
  if (about)
    out.push(`${cell(about)}.`, ``);
  if (model.filter)
    out.push(`Filtered: \`${model.filter}\``, ``);
  if (model.warnings.length) {
    out.push(`## Warnings`, ``);
    for (const warning of model.warnings)
      out.push(`- ${cell(warning.message)}`);
    out.push(``);
  }
  if (model.maps.length) {
    out.push(`## Maps, worst first`, ``);
    out.push(`| map | id | key | leaked | alive | unknown | fill |`);
    out.push(`|---|---:|---|---:|---:|---:|---:|`);
    for (const map of model.maps)
      out.push(`| ${cell(map.map)} | ${map.mapId} | ${map.keyKind ?? `?`} | ${fraction(map.leaked, map.total)} | ${map.alive} | ${map.unknown} | ${fillText(map)}${map.nearFull ? ` **nearly full**` : ``} |`);
    out.push(``);
    const t = model.summary;
    out.push(`## Totals`, ``, `| | |`, `|---|---|`);
    out.push(`| maps | ${t.mapsChecked} checked, ${t.mapsWithLeaks} with leaks${t.nearFullMaps ? `, ${t.nearFullMaps} nearly full` : ``} |`);
    out.push(`| entries judged | ${t.judged} |`);
    out.push(`| leaked | ${fraction(t.leaked, t.judged)}${t.leaked ? `, ${t.confirmed === t.leaked ? `all` : t.confirmed} confirmed at two looks` : ``} |`);
    out.push(`| alive | ${t.alive}${t.raceFiltered ? ` (${t.raceFiltered} of them looked leaked at the first look: ${t.raceFiltered === 1 ? `a race` : `races`} the recheck cleared)` : ``} |`);
    if (t.resolved)
      out.push(`| removed before the recheck | ${t.resolved} |`);
    out.push(`| not judged | ${t.unknown} |`, ``);
  }
  const leaky = model.maps.filter(map => map.leaked > 0 || Object.keys(map.sections).length);
  if (leaky.length) {
    out.push(`## Leaked entries by map`, ``);
    for (const map of leaky)
      out.push(...mapSection(map));
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
      if (group.notApplicable)
        out.push(`| ${group.notApplicable} | (${notApplicableWords(group, group.notApplicable)}) |`);
      out.push(``);
    }
  }
  if (model.hints.length || model.mapNotes.length) {
    out.push(`## What to do next`, ``);
    for (const hint of model.hints)
      out.push(`- **${hint.reason}**: ${cell(hint.text)}`);
    for (const note of model.mapNotes) {
      const parts = [note.cleaner ? `the agent cleans it (${note.cleaner})` : ``, note.knownFix ? `a leak here was fixed in ${note.knownFix}: check the agent version` : ``].filter(Boolean);
      out.push(`- **${note.map}**: ${cell(parts.join(`; `))}`);
    }
    out.push(``);
  }
  while (out.at(-1) === ``)
    out.pop();
  return `${out.join(`\n`)}\n`;
}

function mapSection(map: MapReport): Array<string> {
  const ids = [`id ${map.mapId}`];
  if (map.kernelName !== map.map)
    ids.push(`kernel name \`${map.kernelName}\``);
  const out = [`### ${cell(mapName(map))} (${ids.join(`, `)})`, ``];
  const reasons = Object.entries(map.reasons.leaked ?? {}).map(([reason, n]) => `${reason} ${n}`).join(`, `);
  out.push(`Leaked ${fraction(map.leaked, map.total)}${reasons ? ` (${reasons})` : ``}; fill ${fillText(map)}.`, ``);
  if (map.deadPids.length)
    out.push(`Dead pids: ${map.deadPids.slice(0, 20).join(`, `)}${map.deadPids.length > 20 ? ` (and ${map.deadPids.length - 20} more)` : ``}`, ``);
  if (map.samples.length) {
    const age = map.samples.some(row => row.ageSeconds !== null);
    out.push(`| reason | proto | src | dst | netns | pid | comm | checks |${age ? ` age |` : ``}`);
    out.push(`|---|---|---|---|---:|---:|---|---:|${age ? `---:|` : ``}`);
    for (const row of map.samples) {
      const c = leakColumns(row);
      out.push(`| ${c.reason} | ${c.proto} | ${cell(c.src)} | ${cell(c.dst)} | ${c.netns} | ${c.pid} | ${cell(c.comm)} | ${c.checks} |${age ? ` ${c.age} |` : ``}`);
    }
    if (map.moreLeaked)
      out.push(``, `... and ${map.moreLeaked} more (\`report --list --map ${map.map}\` lists them all).`);
    out.push(``);
  }
  MAP_SECTIONS.forEach(section => {
    if (map.sections[section.name] !== undefined)
      out.push(...section.markdown(map.sections[section.name]), ``);
  });
  return out;
}
