// The capture script template, read from capture.sh next to this file. The esbuild bundle
// replaces this whole module with the text itself (scripts/build.mjs), so the bundle and the
// standalone executable carry the script and never look for the file.
import {readFileSync} from 'node:fs';
import {fileURLToPath} from 'node:url';

export const CAPTURE_TEMPLATE: string = readFileSync(fileURLToPath(new URL(`./capture.sh`, import.meta.url)), `utf8`);
