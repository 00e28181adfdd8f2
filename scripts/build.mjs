// Bundles the CLI into one CommonJS file that runs on any Node 18+ with no node_modules.
import {build} from 'esbuild';
import {mkdirSync} from 'node:fs';

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
});
