// The one table of exit codes, and the policy that turns a judged run into one. README "Exit
// codes" mirrors both; keep them in step.
import type {ReportModel} from './report/model.ts';

export const ExitCode = {
  /** Ran to the end, judged entries, and none is leaked (or the stage does not judge leaks). */
  Ok: 0,
  /** Ran to the end and found leaked entries (diff: the later capture has new or persisting ones): scripts and CI gate on this. */
  LeaksFound: 1,
  /** The command line was wrong, or the input must not be used that way (a capture judged live; diff of two hosts' captures without --force). */
  Usage: 2,
  /**
   * The environment stopped us: no permission, no backend, no USM maps, unreadable input file,
   * nothing to judge (empty input, no verdicts, every entry unknown).
   */
  Environment: 3,
  /** A bug of ours. */
  Internal: 4,
  /** No leaked entry among those judged, but some could not be judged (unknown) or a map was not read completely. */
  Inconclusive: 5,
} as const;

export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

export interface JudgedExit {
  code: ExitCode;
  /** What is missing or could not be judged (stderr); null for a plain 0 or 1. */
  message: string | null;
  /** Whether the report is still worth printing (there is something in it). */
  printReport: boolean;
}

/**
 * report and scan: exit 0 only when entries were judged and none is leaked (the report's answer
 * CLEAN); 1 for LEAKING; INCONCLUSIVE is 3 or 5:
 * - any leaked entry: 1 (whatever else is unknown);
 * - nothing to judge (no verdict, summary or map record; or map entries never judged): 3;
 * - every entry `unknown`: 3 (nothing was judged; never read as clean);
 * - some entries `unknown`, a map whose dump stopped early or that could not be judged, no leak: 5;
 * - else 0 (maps found empty count as judged: there was nothing to leak).
 */
export function judgedExit(model: ReportModel): JudgedExit {
  const {summary, conclusion} = model;
  if (summary.leaked > 0)
    return {code: ExitCode.LeaksFound, message: null, printReport: true};
  if (summary.verdictsRead === 0 && summary.entries > 0)
    return {code: ExitCode.Environment, printReport: false, message: `the input has ${summary.entries} map entries but no verdicts: judge them first (usm-leak-detector dump-maps | usm-leak-detector validate | usm-leak-detector report)`};
  if (model.maps.length === 0)
    return {code: ExitCode.Environment, printReport: false, message: `nothing to report: the input has no verdict, summary or map records${model.source === null ? ` (not even a header: did the stage before this one fail? its message is above)` : ``}`};
  if (conclusion.why.includes(`no_verdicts`))
    return {code: ExitCode.Environment, printReport: true, message: `the maps have entries but the input has no verdicts: nothing was judged`};
  if (summary.judged > 0 && summary.unknown === summary.judged)
    return {code: ExitCode.Environment, printReport: true, message: `none of the ${summary.judged} entries could be judged (all unknown: see the reasons in the report): this is not a clean result`};
  if (conclusion.answer !== `CLEAN`) {
    const parts = [];
    if (summary.unknown > 0)
      parts.push(`${summary.unknown} of ${summary.judged} entries could not be judged (unknown)`);
    const incomplete = model.maps.filter(map => map.dumpComplete === false).length;
    if (incomplete > 0)
      parts.push(`${incomplete} map(s) were not read completely`);
    const problems = model.maps.filter(map => map.problem !== null).length;
    if (problems > 0)
      parts.push(`${problems} map(s) could not be judged`);
    return {code: ExitCode.Inconclusive, printReport: true, message: `no leaked entry among those judged, but ${parts.join(` and `) || conclusion.why.join(`, `)}: exit ${ExitCode.Inconclusive} (inconclusive)`};
  }
  return {code: ExitCode.Ok, message: null, printReport: true};
}
