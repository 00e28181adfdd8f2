// The training run of the bundle's V8 code cache (scripts/build.mjs runs it, in the build's
// temporary directory): compiles the bundle's code exactly as the bundle's loader does (the same
// source string, vm.Script), runs commands with it on recorded samples (no root, no BPF, no
// network; stdout goes to /dev/null, TMPDIR is the build's temporary directory), then writes
// script.createCachedData(): the bytecode V8 made for the functions those runs compiled.
//   node scripts/train-code-cache.cjs SOURCE OPTIONS_JSON BUNDLE CACHE RUNS_JSON
//     SOURCE        the wrapped code, as the loader compiles it
//     OPTIONS_JSON  vm.Script's options: {"filename", "lineOffset", "columnOffset"}; V8 (11.3,
//                   Node 20) keeps the script's name from the cache, not from the loader's
//                   compile: it is what stack traces show when the cache is taken
//     BUNDLE        the path the code believes it runs from (__filename)
//     CACHE         where to write the cache
//     RUNS_JSON     [{"argv": [...], "exitCodes": [0, 1]}, ...]: each run's arguments and accepted exit codes
'use strict';
const fs = require(`node:fs`);
const path = require(`node:path`);
const vm = require(`node:vm`);

const [sourceFile, optionsJson, bundleFile, cacheFile, runsJson] = process.argv.slice(2);
const script = new vm.Script(fs.readFileSync(sourceFile, `utf8`), JSON.parse(optionsJson));
const moduleFunction = script.runInThisContext();
const exit = process.exit;

/** Runs the bundle's main once with `argv`; resolves with the code it exits with. */
function run(argv) {
  return new Promise(resolve => {
    // Each call runs the module's top level afresh (its own scope); the functions it compiles
    // belong to the one script, so every run adds to the same cache.
    process.exit = code => resolve(code ?? process.exitCode);
    process.argv = [process.argv[0], bundleFile, ...argv];
    const module = {exports: {}};
    moduleFunction.call(module.exports, module.exports, require, module, bundleFile, path.dirname(bundleFile));
  });
}

(async () => {
  for (const {argv, exitCodes} of JSON.parse(runsJson)) {
    const code = await run(argv);
    if (!exitCodes.includes(code)) {
      process.stderr.write(`train-code-cache: ${argv.join(` `)} exited ${code}, expected ${exitCodes.join(` or `)}\n`);
      exit(1);
    }
  }
  fs.writeFileSync(cacheFile, script.createCachedData());
  exit(0);
})();
