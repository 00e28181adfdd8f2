// The text report, for a person at a terminal: the answer first (LEAKING / CLEAN /
// INCONCLUSIVE), then one line per map worst first, one totals block, the detail of every map
// that leaks, leaks by cause, and what to do next.
import {MAP_SECTIONS} from './sections.ts';
import {alignRows, formatAge, fraction, sampleCells, NONE} from './format.ts';
import {fillText, mapName, type Conclusion, type GroupReport, type InconclusiveWhy, type MapReport, type ReportModel} from './model.ts';
import type {Style} from './style.ts';

export {ANSI_STYLE, NO_STYLE, type Style} from './style.ts';

const RULE = `=`.repeat(60);
/** Dead PIDs listed per map, then "... and K more". */
const DEAD_PIDS_SHOWN = 20;

export interface TextOptions {
  style: Style;
  /** List every network namespace. */
  verbose: boolean;
}

const WHY: {[W in InconclusiveWhy]: string} = {
  no_maps: `no USM maps in the input`,
  no_verdicts: `the input has map entries but no verdicts (judge them with validate first)`,
  unknown_entries: `entries could not be judged`,
  incomplete_dump: `a map was not dumped completely`,
  map_problem: `a map does not match the catalogue`,
};

/** The first line of every report: the answer in words. */
export function answerLine(model: ReportModel): string {
  const c = model.conclusion;
  const maps = `${c.mapsWithLeaks} of ${c.mapsChecked} map${c.mapsChecked === 1 ? `` : `s`}`;
  const parts: Array<string> = [];
  if (c.answer === `LEAKING`) {
    parts.push(`LEAKING: ${c.leaked} leaked entr${c.leaked === 1 ? `y` : `ies`} in ${maps}, ${confirmation(c)}`);
    if (c.unknown)
      parts.push(`${c.unknown} not judged`);
  } else if (c.answer === `CLEAN`) {
    parts.push(`CLEAN: 0 leaked of ${c.entries} entr${c.entries === 1 ? `y` : `ies`} in ${c.mapsChecked} map${c.mapsChecked === 1 ? `` : `s`}`);
  } else {
    const why = c.why.map(reason => reason === `unknown_entries` ? `${c.unknown} of ${c.entries} entries could not be judged` : WHY[reason]);
    parts.push(`INCONCLUSIVE: 0 leaked, but ${why.join(`; `)}`);
  }
  if (c.fullest && (c.fullest.nearFull || c.answer !== `CLEAN` || c.fullest.fill > 0))
    parts.push(`${c.fullest.map} is ${c.fullest.nearFull ? `nearly full` : `the fullest`}: ${fraction(c.fullest.entries, c.fullest.maxEntries)}`);
  return parts.join(`; `);
}

function confirmation(c: Conclusion): string {
  const apart = c.looksApartSeconds === null ? `` : ` ${formatSeconds(c.looksApartSeconds)} apart`;
  if (c.confirmed === c.leaked)
    return `confirmed at two looks${apart}`;
  if (c.confirmed === 0)
    return `seen at one look only (no recheck)`;
  return `${c.confirmed} confirmed at two looks${apart}, ${c.leaked - c.confirmed} seen at one look only`;
}

function formatSeconds(seconds: number): string {
  return seconds < 120 ? `${Number(seconds.toFixed(1))} s` : formatAge(seconds);
}

export function renderText(model: ReportModel, options: TextOptions): string {
  const s = options.style;
  const out: Array<string> = [];
  const answer = answerLine(model);
  out.push(s.bold(model.conclusion.answer === `LEAKING` ? s.red(answer) : model.conclusion.answer === `CLEAN` ? s.green(answer) : s.yellow(answer)));
  const about = sourceLine(model);
  if (about)
    out.push(s.dim(about));
  if (model.filter)
    out.push(s.dim(`Filtered: ${model.filter}`));
  out.push(``);
  for (const warning of model.warnings)
    out.push(s.yellow(`WARNING: ${warning.message}`));
  if (model.warnings.length)
    out.push(``);
  if (model.maps.length) {
    out.push(s.bold(`Maps, worst first`), ...mapTable(model).map(line => `  ${line}`), ``);
    out.push(...totalsLines(model, s), ``);
  }
  if (options.verbose && model.namespaces.length)
    out.push(...namespaceLines(model, s), ``);
  const detailed = model.maps.filter(map => map.leaked || map.unknown || map.problem || map.dumpComplete === false || Object.keys(map.sections).length);
  if (detailed.length) {
    out.push(s.bold(`Map detail`), RULE);
    for (const map of detailed)
      out.push(...mapDetail(map, s), ``);
  }
  const groups = model.groups.filter(group => group.total > 0);
  if (groups.length) {
    out.push(s.bold(`Leaks by cause`), RULE);
    for (const group of groups)
      out.push(...groupLines(group), ``);
  }
  if (model.hints.length || model.mapNotes.length) {
    out.push(s.bold(`What to do next`), RULE);
    out.push(...hintLines(model), ``);
  }
  while (out.at(-1) === ``)
    out.pop();
  return `${out.join(`\n`)}\n`;
}

/** Where the data comes from and what it was judged against. */
export function sourceLine(model: ReportModel): string {
  const parts: Array<string> = [];
  if (model.source)
    parts.push(`Host ${model.source.host} (kernel ${model.source.kernel}), data from ${model.source.time}`);
  const against: Array<string> = [];
  if (model.snapshots.sockets !== null)
    against.push(`${model.snapshots.sockets} sockets in ${model.namespaceCount} network namespace${model.namespaceCount === 1 ? `` : `s`}`);
  if (model.snapshots.processes !== null)
    against.push(`${model.snapshots.processes} processes`);
  if (against.length)
    parts.push(`judged against ${against.join(` and `)}`);
  return parts.join(`; `);
}

/** One line per map, worst first: leaked, alive, unknown, fill. */
export function mapTable(model: ReportModel): Array<string> {
  const rows = [[`map`, `key`, `leaked`, `alive`, `unknown`, `fill`]];
  for (const map of model.maps) {
    rows.push([
      mapName(map), map.keyKind ?? `?`, fraction(map.leaked, map.total), String(map.alive), String(map.unknown),
      `${fillText(map)}${map.nearFull ? ` NEARLY FULL` : ``}`,
    ]);
  }
  return alignRows(rows, new Set([3, 4]));
}

function totalsLines(model: ReportModel, s: Style): Array<string> {
  const t = model.summary;
  const rows: Array<[string, string]> = [
    [`maps`, `${t.mapsChecked} checked, ${t.mapsWithLeaks} with leaks${t.nearFullMaps ? `, ${t.nearFullMaps} nearly full` : ``}`],
    [`entries judged`, `${t.judged}${t.entries > t.judged ? ` (of ${t.entries} map entries read)` : ``}`],
    [`leaked`, `${fraction(t.leaked, t.judged)}${t.leaked ? `, ${t.confirmed === t.leaked ? `all` : t.confirmed} confirmed at two looks` : ``}`],
    [`alive`, `${t.alive}${t.raceFiltered ? ` (${t.raceFiltered} of them looked leaked at the first look: ${t.raceFiltered === 1 ? `a race` : `races`} the recheck cleared)` : ``}`],
  ];
  if (t.resolved)
    rows.push([`removed`, `${t.resolved} (gone from their map before the recheck: not leaks)`]);
  rows.push([`not judged`, `${t.unknown}${t.unknown ? ` (unknown: neither alive nor leaked)` : ``}`]);
  return [s.bold(`Totals`), ...alignRows(rows).map(line => `  ${line}`)];
}

function namespaceLines(model: ReportModel, s: Style): Array<string> {
  const out = [s.bold(`Network namespaces (${model.namespaceCount})`)];
  for (const netns of model.namespaces) {
    const where = [netns.pids.length ? `pids ${netns.pids.slice(0, 5).join(`, `)}` : ``, ...netns.paths].filter(Boolean).join(`; `);
    out.push(`  ${netns.netnsInode}${where ? ` (${where})` : ``}${netns.complete ? `` : ` ${s.yellow(`[incomplete]`)}`}`);
  }
  return out;
}

function mapDetail(map: MapReport, s: Style): Array<string> {
  const ids = [`id ${map.mapId}`];
  if (map.kernelName !== map.map)
    ids.push(`kernel name ${map.kernelName}`);
  const out = [s.bold(`${map.map} (${ids.join(`, `)})`)];
  const confirmed = !map.leaked ? `` : map.confirmed === map.leaked ? `, all confirmed at two looks` : map.confirmed ? `, ${map.confirmed} confirmed at two looks` : `, seen at one look only`;
  const leakLine = `  leaked ${fraction(map.leaked, map.total)}${confirmed}; fill ${fillText(map)}${map.nearFull ? `, nearly full` : ``}`;
  out.push(map.leaked ? s.red(leakLine) : leakLine);
  const reasons = Object.entries(map.reasons.leaked ?? {});
  if (reasons.length)
    out.push(`  reasons: ${reasons.map(([reason, n]) => `${reason} ${n}`).join(`, `)}`);
  if (map.countsFrom === `summary`)
    out.push(s.dim(`  (counts from the stage's summary: the input carries fewer verdicts than the map had entries)`));
  if (map.deadPids.length) {
    out.push(`  dead pids: ${map.deadPids.slice(0, DEAD_PIDS_SHOWN).join(`, `)}`
      + (map.deadPids.length > DEAD_PIDS_SHOWN ? ` ... and ${map.deadPids.length - DEAD_PIDS_SHOWN}${map.deadPidsCapped ? `+` : ``} more` : ``));
  }
  if (map.threadsGone)
    out.push(`  entries of exited threads (process still alive): ${map.threadsGone}`);
  if (map.raceFiltered)
    out.push(`  races cleared by the recheck: ${map.raceFiltered}`);
  if (map.resolved)
    out.push(`  removed from the map before the recheck (not leaks): ${map.resolved}`);
  if (map.problem)
    out.push(s.yellow(`  not judged: ${map.problem}`));
  const unknown = Object.entries(map.reasons.unknown ?? {});
  if (map.unknown && unknown.length)
    out.push(s.yellow(`  not judged (unknown): ${unknown.map(([reason, n]) => `${reason} ${n}`).join(`, `)}`));
  if (map.dumpComplete === false)
    out.push(s.yellow(`  dump incomplete${map.dumpError ? `: ${map.dumpError}` : ``}`));
  if (map.samples.length) {
    const rows = map.samples.map(sampleCells);
    out.push(...alignRows(rows).map(line => `    ${line}`));
    if (map.moreLeaked)
      out.push(`    ... and ${map.moreLeaked} more (usm-leak-detector report --list --map ${map.map})`);
  }
  MAP_SECTIONS.forEach(section => {
    if (map.sections[section.name] !== undefined)
      out.push(...section.text(map.sections[section.name], s).map(line => `  ${line}`));
  });
  return out;
}

function groupLines(group: GroupReport): Array<string> {
  const out = [`By ${group.title} (${group.distinct}${group.capped ? `+` : ``} distinct)`];
  const width = Math.max(...group.rows.map(row => String(row.count).length), String(group.other).length);
  for (const row of group.rows)
    out.push(`  ${String(row.count).padStart(width)}  ${row.label}`);
  if (group.other)
    out.push(`  ${String(group.other).padStart(width)}  (other values)`);
  if (group.capped)
    out.push(`  (only the first ${group.distinct} distinct values are counted one by one: the top rows are among those)`);
  if (group.notApplicable)
    out.push(`  (${group.notApplicable} leaked entr${group.notApplicable === 1 ? `y has` : `ies have`} ${notApplicableWords(group, group.notApplicable)})`);
  return out;
}

export function notApplicableWords(group: GroupReport, count: number): string {
  return group.field === `pid` || group.field === `comm` ? `no pid in ${count === 1 ? `its` : `their`} key` : `no ${group.field}: ${count === 1 ? `a key` : `keys`} without a tuple (pid_tgid, pid_fd, goroutine, pointer)`;
}


/** Hints once per reason, then the maps' cleaners and fixed leaks. */
export function hintLines(model: ReportModel): Array<string> {
  const out: Array<string> = [];
  for (const hint of model.hints)
    out.push(...wrap(`${hint.reason}: ${hint.text}`, `- `, `  `));
  for (const note of model.mapNotes) {
    const parts = [note.cleaner ? `the agent cleans it (${note.cleaner})` : ``, note.knownFix ? `a leak here was fixed in ${note.knownFix}: check the agent version` : ``].filter(Boolean);
    out.push(...wrap(`${note.map}: ${parts.join(`; `)}`, `- `, `  `));
  }
  return out;
}


/** Wraps words at 100 columns: hints are prose. */
function wrap(text: string, first: string, rest: string, width = 100): Array<string> {
  const out: Array<string> = [];
  let line = first;
  for (const word of text.split(` `)) {
    if (line.length + word.length + 1 > width && line.trim().length > first.trim().length) {
      out.push(line.trimEnd());
      line = rest;
    }
    line += `${word} `;
  }
  out.push(line.trimEnd());
  return out;
}

export {NONE};
