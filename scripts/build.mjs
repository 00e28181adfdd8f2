// Bundles the CLI into one CommonJS file that runs on any Node 18+ with no node_modules.
//   node scripts/build.mjs                 dist/usm-leak-detector.cjs: a short loader (line 3), the
//                                          esbuild bundle's code in a comment, its V8 code cache in
//                                          a comment, then koffi's native module for Linux x64/arm64
//                                          (glibc and musl), brotli-compressed, base64, in a comment
//                                          at the end of the file (never parsed into strings: 10 MB
//                                          less memory), with each one's SHA-256 in the code
//                                          (src/sys/native.ts loads it)
//   node scripts/build.mjs --sea DIR       DIR/bundle.cjs, the standalone executable's main script:
//                                          a loader whose code, code cache and native modules (this
//                                          machine's platform) are single-executable assets;
//                                          DIR/assets.json lists them for the SEA configuration
//                                          (scripts/dist.sh)
//
// The code cache: V8's bytecode for the bundle's functions (`vm.Script#createCachedData()`), so
// that a start does not compile again what the cache holds. It is made here, from our own code
// only, by a training run (scripts/train-code-cache.cjs, in the build's temporary directory: no
// root, no BPF, no network, nothing written elsewhere) that compiles the code exactly as the
// loader does, runs commands on samples/ and takes the cache of what they compiled: bytecode
// only, no data of the run. It lives inside the bundle (the executable: among its assets): the
// tool never reads or writes a cache file. The loader reads the code and the cache from its own
// file (the executable's: from its assets) and passes the cache to
// `new vm.Script(code, {cachedData})`. V8 checks the cache's V8 version, V8's flags and the code's
// length (not its text: the cache must be made from exactly this code, as here), and when it
// rejects it (another Node or V8 version, other V8 flags such as --max-old-space-size) compiles
// the code as usual: the same code runs either way (test/code-cache.test.ts). The loader drops
// the file's bytes and the cache once compiled, and runs the code with the bundle's path as
// __filename (src/sys/native.ts reads the bundle's own trailer through it). Stack traces give the
// file's lines and columns: with the cache they name the file as trained, without a directory.
//
// V8's inlining budget, for `scan` only: TurboFan's cumulative inlining budget (bytecode bytes
// inlined into one optimised function) goes from 920 to 200 once scan's snapshots are taken. On a
// 2-core host a 225k scan's optimising compiles run on V8's background threads and take the cores
// from the main thread; with the smaller budget, on top of scan's rehearsal (src/scan/rehearsal.ts),
// a scan takes 21 ms less wall and 49 ms less CPU (21 alternating runs each: 0.471 -> 0.450 s,
// 0.749 -> 0.700 s). Not for the other commands: their long single-threaded loops (validate,
// report) are the ones that gain from inlining, and validate's 1M ratio to its floor measured
// 1.59 and 1.75 in two bench runs with it for every command (1.42-1.51 before). A compiler
// heuristic only: the code computes the same results. Set at run time (v8.setFlagsFromString), not
// as a command-line flag, which would make V8 reject the cache; and not by the loader itself: V8
// checks every code cache against a hash of its flags, this one's changes it, and Node's own
// modules (their code caches are in the node binary) loaded after it were compiled from source,
// on the main thread and in the read-ahead worker (10 ms less of that on the main thread, 21 in
// the worker, once deferred). The loader leaves it under a global symbol; scan sets it after its
// snapshots, before the rehearsal and the dump, whose compiles it is for (ScanOptions.tuneCompiler).
//
// V8's scavenges, for `scan` only, on the thread that collects (--no-parallel-scavenge): a young-
// generation collection otherwise splits its work among V8's helper threads and waits for them,
// and on 2 cores they are busy with the read-ahead worker and the optimising compiles: single
// collections took 10-17 ms where 1-2 is usual. A 225k scan took 24, 37 and 17 ms less wall in
// three rounds of 21 alternating runs (0.525 -> 0.501 s, 0.556 -> 0.519 s, 0.460 -> 0.443 s). The
// flag is read at each collection, so it takes effect when set at run time (the marking flags,
// set so, abort V8: they are left alone). Memory management only: the same results.
import {build} from 'esbuild';
import {createHash} from 'node:crypto';
import {spawnSync} from 'node:child_process';
import {appendFileSync, cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs';
import {createRequire} from 'node:module';
import {tmpdir} from 'node:os';
import {basename, dirname, join, resolve} from 'node:path';
import {Script} from 'node:vm';
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

/**
 * The bundle's last lines: the trailing comment, and where each module's text is in it, counted
 * from the end of the file (the code before it does not move it): [from the end, length].
 */
async function trailerOf(triplets) {
  const texts = Object.fromEntries(await Promise.all(triplets.map(async triplet => [triplet, await compressed(nativeOf(triplet))])));
  // The modules go after the code, in a comment: base64 and JSON have no `*/`.
  const text = `\n${TRAILER_MARK}${JSON.stringify(texts)}*/\n`;
  const at = {};
  for (const triplet of triplets) {
    const start = text.indexOf(`"${triplet}":"`) + `"${triplet}":"`.length;
    at[triplet] = [text.length - start, texts[triplet].length];
  }
  return {text, at};
}
// Compressed while esbuild works (about a second each, in parallel).
const trailer = seaDir === null ? trailerOf(BUNDLED_TRIPLETS) : null;
/** The standalone executable's assets: key -> file (DIR/assets.json, for the SEA configuration). */
const seaAssets = {};

async function embeddedSource() {
  let entries;
  if (seaDir !== null) {
    const arch = process.arch === `x64` || process.arch === `arm64` ? process.arch : null;
    const triplets = arch === null ? [] : [`linux_${arch}`, `musl_${arch}`];
    entries = triplets.map(triplet => {
      const key = `koffi-${triplet}.node`;
      seaAssets[key] = join(koffiDir, `build`, `koffi`, triplet, `koffi.node`);
      return {triplet, sha256: sha256(nativeOf(triplet)), asset: key};
    });
  } else {
    entries = BUNDLED_TRIPLETS.map(triplet => ({triplet, sha256: sha256(nativeOf(triplet)), inTrailer: true}));
  }
  // A module's text is read from where the build put it (not the whole file: 3 MB), and checked
  // to be there: its key before it, its closing quote after.
  return [
    `// koffi ${koffiVersion}, native modules embedded by scripts/build.mjs.`,
    `export const EMBEDDED_NATIVE = ${JSON.stringify(entries)};`,
    `const TRAILER_AT = ${JSON.stringify(trailer === null ? {} : (await trailer).at)};`,
    `export function requireKoffi() { throw new Error('no node_modules in a bundle'); }`,
    `export function readAsset(key) { return new Uint8Array(require('node:sea').getAsset(key)); }`,
    `export function readTrailer(triplet) {`,
    `  const fs = require('node:fs');`,
    `  const key = '"' + triplet + '":"';`,
    `  const [fromEnd, length] = TRAILER_AT[triplet] ?? [0, 0];`,
    `  const data = Buffer.alloc(key.length + length + 1);`,
    `  const fd = fs.openSync(__filename, 'r');`,
    `  try {`,
    `    const start = fs.fstatSync(fd).size - fromEnd - key.length;`,
    `    for (let n = 0, read = 1; n < data.length && read > 0 && start >= 0; n += read)`,
    `      read = fs.readSync(fd, data, n, data.length - n, start + n);`,
    `  } finally {`,
    `    fs.closeSync(fd);`,
    `  }`,
    `  if (length === 0 || data.toString('latin1', 0, key.length) !== key || data[data.length - 1] !== 0x22)`,
    `    throw new Error(__filename + ' has no embedded module for ' + triplet);`,
    `  return data.toString('latin1', key.length, key.length + length);`,
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

/** The code as the loader compiles it: a CommonJS module function, the wrapper's head on a line of its own. */
const WRAPPER_HEAD = `(function (exports, require, module, __filename, __dirname) {`;
const wrapped = code => `${WRAPPER_HEAD}\n${code}\n})`;

/** What the training run runs, on a capture directory assembled from samples/ (`capture`). */
const TRAINING_RUNS = [
  {argv: [`scan`, `--from`, `capture`, `--recheck-delay`, `0`], exitCodes: [0, 1]},
  {argv: [`--version`], exitCodes: [0]},
];

/** The code cache made by the training run (scripts/train-code-cache.cjs) for `source`. */
function trainedCodeCache(source, options) {
  const dir = mkdtempSync(join(tmpdir(), `usmld-build-`));
  try {
    cpSync(`samples/proc/capture`, join(dir, `capture`), {recursive: true, verbatimSymlinks: true});
    cpSync(`samples/dump/bpftool/maps`, join(dir, `capture`, `maps`), {recursive: true});
    writeFileSync(join(dir, `source.js`), source);
    // The node that builds, with no V8 flags of ours or of NODE_OPTIONS: V8 accepts a cache only
    // under the flags it was made with.
    const env = {...process.env, TMPDIR: dir};
    delete env.NODE_OPTIONS;
    const run = spawnSync(process.execPath, [
      resolve(`scripts/train-code-cache.cjs`), join(dir, `source.js`), JSON.stringify(options), join(dir, `usm-leak-detector.cjs`), join(dir, `cache`), JSON.stringify(TRAINING_RUNS),
    ], {cwd: dir, env, stdio: [`ignore`, `ignore`, `pipe`], encoding: `utf8`, timeout: 120_000});
    if (run.status !== 0)
      throw new Error(`the code cache's training run failed (${run.status ?? run.signal}): ${run.stderr}`);
    return readFileSync(join(dir, `cache`));
  } finally {
    rmSync(dir, {recursive: true, force: true});
  }
}

// A comment ends at the first star-slash: the code's are written `*%`, the same length, so that
// the code keeps its lines and columns in the file (JavaScript has no `*%` outside strings and
// regular expressions, and this code has none: checked).
const COMMENT_END = /\*\//g;
const ESCAPED_COMMENT_END = `*%`;

/**
 * The bundle: the loader, then the code and its cache in comments, read back by the loader from
 * the file's bytes at offsets written into it. Against the code and the cache as string literals
 * of the loader (no second read, but V8 scans and copies 1.2 MB of literals): the same start-up
 * within the noise (--version, 30 alternating runs: medians 108.3 and 107.3 ms), 1-2 MiB more RSS
 * while starting; in comments the code keeps the file's lines and columns for stack traces.
 */
function withCodeCache(code) {
  const source = wrapped(code);
  if (!/^[\x00-\x7f]*$/.test(source) || source.includes(ESCAPED_COMMENT_END))
    throw new Error(`the bundle's code must be ASCII (esbuild's charset) and have no ${ESCAPED_COMMENT_END}`);
  const head = [
    `#!/usr/bin/env node`,
    `// usm-leak-detector ${JSON.parse(readFileSync(`package.json`, `utf8`)).version}, built by scripts/build.mjs: the code is in the comment below, compiled with the V8 code cache in the next one (bytecode of this code, made at build time), or without it when V8 rejects it.`,
  ];
  // The code's positions are its positions in the file: it starts 2 columns into line head.length + 2.
  const offsets = {lineOffset: head.length + 1, columnOffset: 2};
  // V8 11.3 (Node 20) takes the script's name from the cache, so stack traces name the file as
  // trained: the bundle's name, without a directory (the build's would be wrong where it runs).
  const cache = trainedCodeCache(source, {filename: basename(outfile), ...offsets});
  if (new Script(source, {filename: outfile, ...offsets, cachedData: cache}).cachedDataRejected)
    console.warn(`build.mjs: this node rejects the code cache it just made (V8 flags in NODE_OPTIONS?)`);
  // The loader reads the two comments' bytes only (not the FFI modules after them). Offsets are
  // padded to a fixed width, so that the loader's length does not depend on them.
  const loader = at => `"use strict";${EARLY_WORKER}{const fs=require("node:fs"),fd=fs.openSync(__filename,"r");let data=Buffer.allocUnsafe(${at[3]}-${at[0]});`
    + `try{for(let n=0,r=1;n<data.length&&r>0;n+=r)r=fs.readSync(fd,data,n,data.length-n,${at[0]}+n)}finally{fs.closeSync(fd)}`
    + `let cachedData=Buffer.from(data.toString("latin1",${at[2]}-${at[0]},${at[3]}-${at[0]}),"base64");`
    + `const script=new(require("node:vm").Script)(data.toString("latin1",0,${at[1]}-${at[0]}).replaceAll(${JSON.stringify(ESCAPED_COMMENT_END)},"*/"),`
    + `{filename:__filename,lineOffset:${offsets.lineOffset},columnOffset:${offsets.columnOffset},cachedData});`
    + `data=cachedData=undefined;${V8_TUNING}script.runInThisContext().call(exports,exports,require,module,__filename,__dirname)}`;
  const width = 10;
  const codeAt = [head.join(`\n`), loader(Array(4).fill(` `.repeat(width))), `/*`].join(`\n`).length;
  const escaped = source.replace(COMMENT_END, ESCAPED_COMMENT_END);
  if (escaped.replaceAll(ESCAPED_COMMENT_END, `*/`) !== source)
    throw new Error(`build.mjs: the code's comment escapes do not round-trip`);
  const cacheText = cache.toString(`base64`);
  const cacheAt = codeAt + escaped.length + `*/\n/*`.length;
  const at = [codeAt, codeAt + escaped.length, cacheAt, cacheAt + cacheText.length].map(offset => String(offset).padStart(width));
  const text = [...head, loader(at), `/*${escaped}*/`, `/*${cacheText}*/`, ``].join(`\n`);
  if (text.slice(codeAt, codeAt + escaped.length) !== escaped || text.slice(cacheAt, cacheAt + cacheText.length) !== cacheText)
    throw new Error(`build.mjs: the loader's offsets are wrong`);
  return text;
}

/**
 * The standalone executable's main script: the code and its cache are assets (a SEA cannot read
 * its own file), compiled as the bundle's loader does. Node's own SEA code cache (useCodeCache,
 * scripts/dist.sh) covers the main script's top level only, not the functions a run compiles.
 */
function seaMain(code) {
  const source = wrapped(code);
  const cache = trainedCodeCache(source, {filename: `usm-leak-detector`});
  if (new Script(source, {filename: `usm-leak-detector`, cachedData: cache}).cachedDataRejected)
    console.warn(`build.mjs: this node rejects the code cache it just made (V8 flags in NODE_OPTIONS?)`);
  writeFileSync(join(seaDir, `code.js`), source);
  writeFileSync(join(seaDir, `code.cache`), cache);
  seaAssets[`usmld-code.js`] = join(seaDir, `code.js`);
  seaAssets[`usmld-code.cache`] = join(seaDir, `code.cache`);
  return `"use strict";${EARLY_WORKER}{const sea=require("node:sea");let cachedData=Buffer.from(sea.getAsset("usmld-code.cache"));`
    + `const script=new(require("node:vm").Script)(sea.getAsset("usmld-code.js","utf8"),{filename:"usm-leak-detector",cachedData});`
    + `cachedData=undefined;${V8_TUNING}script.runInThisContext().call(exports,exports,require,module,__filename,__dirname)}\n`;
}

/**
 * Run by both loaders first of all: for a live scan as root (commands/earlyStart.ts's
 * wantsEarlyReadAhead), scan's read-ahead worker is started here, before the program's code is
 * read and compiled (about 20 ms before the program itself could), and left for the program under
 * a global symbol (src/dump/readAhead.ts, LOADER_STARTED). The worker's code and the predicate
 * are taken from the sources by a build of their own (earlyWorkerPreamble).
 */
const EARLY_WORKER = await earlyWorkerPreamble();

async function earlyWorkerPreamble() {
  const {outputFiles: [out]} = await build({
    stdin: {
      contents: `export {readAheadWorkerSpec} from './src/dump/readAhead.ts';\nexport {wantsEarlyReadAhead} from './commands/earlyStart.ts';`,
      resolveDir: process.cwd(), loader: `ts`,
    },
    bundle: true, platform: `node`, target: `node18`, format: `cjs`, write: false, legalComments: `none`, minifyWhitespace: true, logLevel: `warning`,
    // import.meta is read only by functions the build never calls (requireKoffi).
    logOverride: {'empty-import-meta': `silent`},
  });
  const dir = mkdtempSync(join(tmpdir(), `usmld-build-`));
  try {
    // Loaded here (by the build's node, whose command line is no scan: it starts no worker).
    writeFileSync(join(dir, `early.cjs`), out.text);
    const {readAheadWorkerSpec, wantsEarlyReadAhead} = createRequire(import.meta.url)(join(dir, `early.cjs`));
    const spec = readAheadWorkerSpec();
    return `{const a=process.argv.slice(2);if((${wantsEarlyReadAhead.toString()})(a,process.getuid?.()))try{`
      + `const s=new Int32Array(new SharedArrayBuffer(4)),h={worker:null,nativeState:s,failed:false};`
      + `h.worker=new(require("node:worker_threads").Worker)(${JSON.stringify(spec.code)},{eval:true,workerData:{walkFdDir:${JSON.stringify(spec.walkFdDir)},walkSharedFdLinks:${JSON.stringify(spec.walkSharedFdLinks)},nativeState:s},env:{},stdout:false,stderr:false});`
      + `h.worker.unref();h.worker.on("error",()=>{h.failed=true});h.worker.on("exit",()=>{h.failed=true});`
      + `globalThis[Symbol.for("usm-leak-detector.earlyReadAhead")]=h}catch{}}`;
  } finally {
    rmSync(dir, {recursive: true, force: true});
  }
}

/**
 * Run by both loaders once the code is compiled (see "V8's inlining budget" and "scavenges" above);
 * argv[2] is the command in both. The scavenge flag is set here; the inlining budget is left under
 * a global symbol for scan to set once its snapshots are taken (commands/earlyStart.ts).
 */
const V8_TUNING = `if(process.argv[2]==="scan"){require("node:v8").setFlagsFromString("--no-parallel-scavenge");`
  + `globalThis[Symbol.for("usm-leak-detector.compilerTuning")]="--max-inlined-bytecode-size-cumulative=200"}`;

const outfile = seaDir !== null ? join(seaDir, `bundle.cjs`) : `dist/usm-leak-detector.cjs`;
mkdirSync(dirname(outfile), {recursive: true});
const built = await build({
  entryPoints: [`commands/main.ts`],
  bundle: true,
  platform: `node`,
  target: `node18`,
  format: `cjs`,
  outfile,
  // The code is written below, with its loader.
  write: false,
  legalComments: `none`,
  // Whitespace and comments out (names and code as written): V8 scans every byte at each start
  // and again as each function is first compiled.
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
      build.onLoad({filter: /[\\/]src[\\/]sys[\\/]embedded\.ts$/}, async () => ({contents: await embeddedSource(), loader: `js`}));
    },
  }],
});
if (seaDir === null) {
  writeFileSync(outfile, withCodeCache(built.outputFiles[0].text));
} else {
  writeFileSync(outfile, seaMain(built.outputFiles[0].text));
  writeFileSync(join(seaDir, `assets.json`), JSON.stringify(seaAssets));
}
if (trailer !== null)
  appendFileSync(outfile, (await trailer).text);
