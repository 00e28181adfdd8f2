// Bundles the CLI into one CommonJS file that runs on any Node 18+ with no node_modules.
//   node scripts/build.mjs                 dist/usm-leak-detector.cjs, carrying koffi's native
//                                          module for Linux x64/arm64 (glibc and musl), brotli-
//                                          compressed, base64, in a comment at the end of the file
//                                          (never parsed into strings: 10 MB less memory), with
//                                          each one's SHA-256 in the code (src/sys/native.ts loads it)
//   node scripts/build.mjs --sea DIR       DIR/bundle.cjs for the standalone executable: the native
//                                          module of this machine's platform is a single-executable
//                                          asset instead; DIR/assets.json lists the assets for the
//                                          SEA configuration (scripts/dist.sh)
import {build} from 'esbuild';
import {createHash} from 'node:crypto';
import {appendFileSync, mkdirSync, readFileSync, writeFileSync} from 'node:fs';
import {createRequire} from 'node:module';
import {dirname, join, resolve} from 'node:path';
import {promisify} from 'node:util';
import {brotliCompress, constants as zlibConstants} from 'node:zlib';

const seaIndex = process.argv.indexOf(`--sea`);
const seaDir = seaIndex >= 0 ? resolve(process.argv[seaIndex + 1]) : null;

// koffi's prebuilt modules (koffi 2.x ships them inside the package: see README "Kernel backend").
const koffiDir = dirname(createRequire(import.meta.url).resolve(`koffi/package.json`));
const koffiVersion = JSON.parse(readFileSync(join(koffiDir, `package.json`), `utf8`)).version;
const BUNDLED_TRIPLETS = [`linux_x64`, `linux_arm64`, `musl_x64`, `musl_arm64`];
const nativeOf = triplet => readFileSync(join(koffiDir, `build`, `koffi`, triplet, `koffi.node`));
const sha256 = bytes => createHash(`sha256`).update(bytes).digest(`hex`);

/** The bundle's trailing comment: `/*usmld-native {"linux_x64":"<brotli base64>",...}*\/`. */
const TRAILER_MARK = `/*usmld-native `;
let trailer = null;

function embeddedSource() {
  let entries;
  if (seaDir !== null) {
    const arch = process.arch === `x64` || process.arch === `arm64` ? process.arch : null;
    const triplets = arch === null ? [] : [`linux_${arch}`, `musl_${arch}`];
    const assets = {};
    entries = triplets.map(triplet => {
      const key = `koffi-${triplet}.node`;
      assets[key] = join(koffiDir, `build`, `koffi`, triplet, `koffi.node`);
      return {triplet, sha256: sha256(nativeOf(triplet)), asset: key};
    });
    writeFileSync(join(seaDir, `assets.json`), JSON.stringify(assets));
  } else {
    trailer = {};
    entries = BUNDLED_TRIPLETS.map(triplet => {
      const bytes = nativeOf(triplet);
      trailer[triplet] = compressed(bytes);
      return {triplet, sha256: sha256(bytes), inTrailer: true};
    });
  }
  return [
    `// koffi ${koffiVersion}, native modules embedded by scripts/build.mjs.`,
    `export const EMBEDDED_NATIVE = ${JSON.stringify(entries)};`,
    `export function requireKoffi() { throw new Error('no node_modules in a bundle'); }`,
    `export function readAsset(key) { return new Uint8Array(require('node:sea').getAsset(key)); }`,
    `export function readTrailer(triplet) {`,
    `  const data = require('node:fs').readFileSync(__filename);`,
    `  const key = Buffer.from('"' + triplet + '":"', 'latin1');`,
    `  const at = data.lastIndexOf(key);`,
    `  if (at < data.lastIndexOf(${JSON.stringify(TRAILER_MARK)}) || at < 0) throw new Error(__filename + ' has no embedded module for ' + triplet);`,
    `  return data.toString('latin1', at + key.length, data.indexOf(0x22, at + key.length));`,
    `}`,
  ].join(`\n`);
}

/**
 * Brotli: a third smaller than gzip -9, and Node reads (and V8 scans) the whole file, trailer
 * included, at every start. Quality 10, not 11: about a second per module, not three, for 10%
 * more bytes; the four compress in parallel.
 */
function compressed(bytes) {
  return promisify(brotliCompress)(bytes, {params: {
    [zlibConstants.BROTLI_PARAM_QUALITY]: 10,
    [zlibConstants.BROTLI_PARAM_LGWIN]: 24,
    [zlibConstants.BROTLI_PARAM_SIZE_HINT]: bytes.length,
  }}).then(data => data.toString(`base64`));
}

const outfile = seaDir !== null ? join(seaDir, `bundle.cjs`) : `dist/usm-leak-detector.cjs`;
mkdirSync(dirname(outfile), {recursive: true});
await build({
  entryPoints: [`commands/main.ts`],
  bundle: true,
  platform: `node`,
  target: `node18`,
  format: `cjs`,
  outfile,
  banner: {js: `#!/usr/bin/env node`},
  legalComments: `none`,
  // Whitespace and comments out (names and code as written): V8 scans every byte at each start
  // and again as each function is first compiled. Stack traces then give columns of line 2.
  minifyWhitespace: true,
  logLevel: `warning`,
  plugins: [{
    name: `embedded-files`,
    setup(build) {
      // The capture script's text travels inside the bundle, in place of src/capture/template.ts.
      build.onLoad({filter: /[\\/]src[\\/]capture[\\/]template\.ts$/}, () => ({
        contents: `export const CAPTURE_TEMPLATE = ${JSON.stringify(readFileSync(`src/capture/capture.sh`, `utf8`))};`,
        loader: `ts`,
      }));
      // The FFI's native module, in place of src/sys/embedded.ts (which requires it from node_modules).
      build.onLoad({filter: /[\\/]src[\\/]sys[\\/]embedded\.ts$/}, () => ({contents: embeddedSource(), loader: `js`}));
    },
  }],
});
// The modules go after the code, in a comment: base64 and JSON have no `*/`.
if (trailer !== null) {
  const texts = {};
  for (const [triplet, text] of Object.entries(trailer))
    texts[triplet] = await text;
  appendFileSync(outfile, `\n${TRAILER_MARK}${JSON.stringify(texts)}*/\n`);
}
