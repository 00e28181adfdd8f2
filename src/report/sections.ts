// Per-map sections that plug into the report without touching its core: each folds the verdicts
// of one map into a small state, builds the data the model carries (`MapReport.sections[name]`,
// hence JSON/NDJSON), and renders it in text and markdown under the map's detail. An entry-age
// histogram or a "cleaner is not keeping up" comparison is one more object in MAP_SECTIONS.
import type {AnyRecord, VerdictRecord} from '../schema.ts';
import type {MapReport} from './model.ts';
import type {Style} from './style.ts';
import {AGE_SECTION} from './ages.ts';

export interface MapSection<State = unknown, Data = unknown> {
  /** Key in `MapReport.sections`: a JSON field name. */
  readonly name: string;
  /** A fresh state for one map. */
  start(): State;
  /** Every verdict of the map (all statuses), after the report's filters. */
  addVerdict(state: State, verdict: VerdictRecord): void;
  /** Other records of the map (`map`, `mapstats`, `entry`, `summary`): optional. */
  addRecord?(state: State, record: AnyRecord): void;
  /** The section's data for the model; null leaves it out. */
  build(state: State, map: Omit<MapReport, `sections`>): Data | null;
  /** Lines under the map's detail in the text report (indented by the caller). */
  text(data: Data, style: Style): Array<string>;
  /** Markdown lines under the map's heading. */
  markdown(data: Data): Array<string>;
}

/** The sections every report builds, in print order. */
export const MAP_SECTIONS: Array<MapSection<any, any>> = [AGE_SECTION];
