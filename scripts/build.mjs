// Bundles the CLI into one CommonJS file that runs on any Node 18+ with no node_modules.
import {build} from 'esbuild';
import {mkdirSync, readFileSync} from 'node:fs';

mkdirSync(`dist`, {recursive: true});
await build({
  entryPoints: [`src/main.ts`],
  bundle: true,
  platform: `node`,
  target: `node18`,
  format: `cjs`,
  outfile: `dist/usm-leak-detector.cjs`,
  banner: {js: `#!/usr/bin/env node`},
  legalComments: `none`,
  logLevel: `warning`,
  // The capture script's text travels inside the bundle, in place of src/capture/template.ts.
  plugins: [{
    name: `capture-template`,
    setup(build) {
      build.onLoad({filter: /[\\/]src[\\/]capture[\\/]template\.ts$/}, () => ({
        contents: `export const CAPTURE_TEMPLATE = ${JSON.stringify(readFileSync(`src/capture/capture.sh`, `utf8`))};`,
        loader: `ts`,
      }));
    },
  }],
});
