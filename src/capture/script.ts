// The POSIX sh capture script, with the catalogue's kernel names and the tool version filled in,
// so the list of maps it dumps can never drift from src/catalogue.ts.
//
// The template is src/capture/capture.sh (see template.ts for how the bundle carries it).
import {CATALOGUE, kernelName} from '../catalogue.ts';
import {TOOL_VERSION} from '../version.ts';
import {CAPTURE_TEMPLATE} from './template.ts';

/** The kernel names (≤15 characters) the script selects maps by, in catalogue order. */
export function captureMapNames(): Array<string> {
  return [...new Set(CATALOGUE.map(map => kernelName(map.name)))];
}

export function captureScript(): string {
  // Kernel names are [A-Za-z0-9_.]: safe inside the script's single quotes.
  return CAPTURE_TEMPLATE
    .replace(`'@USM_MAPS@'`, `'${captureMapNames().join(` `)}'`)
    .replaceAll(`@VERSION@`, TOOL_VERSION);
}
