// The per-map age section: how old the leaked entries of a dated map are (from the CLOCK_MONOTONIC
// timestamps in their values, `ageSeconds`), as a histogram, and how many are older than the
// agent's own cleaner for that map should ever let an entry get (TTL + one cleaning interval):
// those say the cleaner is not keeping up (or not running).
import {cleanerAllowance, describeCleaner, findCatalogueMap} from '../catalogue.ts';
import type {VerdictRecord} from '../schema.ts';
import {formatAge} from './format.ts';
import type {MapSection} from './sections.ts';

/** Upper bounds of the buckets, in seconds; the last bucket is everything older. */
export const AGE_BUCKETS: ReadonlyArray<readonly [string, number]> = [
  [`< 1 min`, 60], [`< 10 min`, 600], [`< 1 h`, 3600], [`< 1 day`, 86_400], [`older`, Infinity],
];

interface AgeState {
  counts: Array<number>;
  dated: number;
  oldest: number;
  beyond: number;
  allowance: number | null | undefined;
}

export interface AgeSectionData {
  /** Leaked entries that carry an age. */
  dated: number;
  /** Leaked entries per bucket, in AGE_BUCKETS order. */
  buckets: Array<{label: string, count: number}>;
  oldestSeconds: number;
  /** The agent's age-based cleaner for this map, and how many leaked entries are older than it allows. */
  cleaner: {what: string, allowanceSeconds: number, olderThanAllowed: number} | null;
}

export const AGE_SECTION: MapSection<AgeState, AgeSectionData> = {
  name: `ages`,
  start: () => ({counts: AGE_BUCKETS.map(() => 0), dated: 0, oldest: 0, beyond: 0, allowance: undefined}),
  addVerdict(state, verdict: VerdictRecord) {
    const age = verdict.ageSeconds;
    if (verdict.status !== `leaked` || typeof age !== `number`)
      return;
    state.allowance ??= cleanerAllowance(findCatalogueMap(verdict.map)?.cleaner);
    state.dated += 1;
    if (age > state.oldest)
      state.oldest = age;
    let bucket = 0;
    while (age >= AGE_BUCKETS[bucket][1])
      bucket++;
    state.counts[bucket] += 1;
    if (state.allowance !== null && age > state.allowance)
      state.beyond += 1;
  },
  build(state, map) {
    if (state.dated === 0)
      return null;
    const cleaner = findCatalogueMap(map.map)?.cleaner;
    const allowance = cleanerAllowance(cleaner);
    return {
      dated: state.dated,
      buckets: AGE_BUCKETS.map(([label], i) => ({label, count: state.counts[i]})),
      oldestSeconds: state.oldest,
      cleaner: cleaner === undefined || allowance === null ? null : {what: describeCleaner(cleaner), allowanceSeconds: allowance, olderThanAllowed: state.beyond},
    };
  },
  text(data, style) {
    const lines = [`ages of ${data.dated} dated leaked entr${data.dated === 1 ? `y` : `ies`}: ${histogram(data)}; oldest ${formatAge(data.oldestSeconds)}`];
    if (data.cleaner !== null && data.cleaner.olderThanAllowed > 0)
      lines.push(style.bold(`cleaner is not keeping up: ${cleanerWords(data)}`));
    else if (data.cleaner !== null)
      lines.push(`none older than the agent's cleaner allows (${data.cleaner.what})`);
    return lines;
  },
  markdown(data) {
    const lines = [
      `| age | ${data.buckets.map(b => b.label).join(` | `)} |`,
      `|---|${data.buckets.map(() => `---:`).join(`|`)}|`,
      `| leaked | ${data.buckets.map(b => b.count).join(` | `)} |`,
    ];
    if (data.cleaner !== null && data.cleaner.olderThanAllowed > 0)
      lines.push(``, `**Cleaner is not keeping up:** ${cleanerWords(data)}`);
    return lines;
  },
};

function histogram(data: AgeSectionData): string {
  return data.buckets.map(b => `${b.label} ${b.count}`).join(`, `);
}

function cleanerWords(data: AgeSectionData): string {
  const cleaner = data.cleaner!;
  return `${cleaner.olderThanAllowed} of ${data.dated} dated leaked entries are older than ${cleaner.allowanceSeconds} s (${cleaner.what}: TTL plus one interval)`;
}
