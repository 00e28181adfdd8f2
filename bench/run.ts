// `make bench`: how fast each stage, `scan` and the piped pipeline go at a million map
// entries, against the floors nothing can beat (bpftool printing the maps; Node just parsing
// the NDJSON), and whether memory stays flat from 100k to 1M entries.
//
//   BENCH_RUNS=3       runs per measurement (medians are reported; the 225k rows at least 7); a measurement whose first
//                      run took over 40 s is not repeated (the table's runs column says so)
//   BENCH_SCALE=1      1 = 1,000,000 entries, 100,000 sockets, 20,000 processes; 0.1 for a quick look
//   --entries N        entries at the large size (the small size is a tenth)
//   --only live|recorded, --keep (leave the generated inputs in the scratch directory)
//
// Every measured command runs as a child process under GNU time (CPU and peak RSS from wait4),
// from the bundle dist/usm-leak-detector.cjs that `make build` makes.
import {execFileSync, spawn} from 'node:child_process';
import {cpus, hostname, release, tmpdir, totalmem} from 'node:os';
import {existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync} from 'node:fs';
import {dirname, join} from 'node:path';
import {fileURLToPath} from 'node:url';
import {LiveMaps, RealConnections, liveThreads, liveUnavailable, ownNetns, sweepStalePins} from './live.ts';
import {hotFunctions, type HotFunction} from './profile.ts';
import {haveGnuTime, killMeasured, measure, summarise, type Measurement, type RunSpec, type Step, type Summary} from './measure.ts';
import {FULL_WORLD, syntheticWorld, writeCaptureMeta, writeRecordedMaps, type SyntheticWorld, type WorldSize} from './synthetic.ts';
import {writeSnapshotRecords} from './snapshots.ts';
import {writeFixtureTree} from './fixture.ts';
import {FULL_ENTRIES, scalePlan, type AliveSet} from './world.ts';

const root = join(dirname(fileURLToPath(import.meta.url)), `..`);
const BUNDLE = join(root, `dist`, `usm-leak-detector.cjs`);
const SEED = 20_240_601;
/** Issue 11's measured world had 225,554 entries: the live maps are measured at that size too. */
const MID_SHARE = 0.225;
/** Runs of each of the middle size's rows, at least. */
const MID_RUNS = 7;

// ---------------------------------------------------------------------------------------------
// Configuration

interface Config {
  runs: number;
  scale: number;
  /** Entry counts measured, small first (the small one shows whether memory stays flat). */
  sizes: Array<number>;
  /** Live maps also at the issue's own world size (225k at full scale), between the two. */
  liveSizes: Array<number>;
  world: WorldSize;
  groups: Set<`live` | `recorded`>;
  keep: boolean;
  /** One more run of each measurement under `node --cpu-prof`. */
  profile: boolean;
}

function readConfig(argv: ReadonlyArray<string>): Config {
  const arg = (name: string) => {
    const at = argv.indexOf(name);
    return at >= 0 ? argv[at + 1] : undefined;
  };
  const positive = (text: string | undefined, what: string, fallback: number) => {
    if (text === undefined || text === ``)
      return fallback;
    const value = Number(text);
    if (!(value > 0))
      throw new Error(`${what} must be a positive number, got "${text}"`);
    return value;
  };
  const runs = Math.round(positive(arg(`--runs`) ?? process.env.BENCH_RUNS, `BENCH_RUNS`, 3));
  const scale = positive(arg(`--scale`) ?? process.env.BENCH_SCALE, `BENCH_SCALE`, 1);
  const large = Math.round(positive(arg(`--entries`) ?? process.env.BENCH_ENTRIES, `--entries`, FULL_ENTRIES * scale));
  const only = arg(`--only`);
  if (only !== undefined && only !== `live` && only !== `recorded`)
    throw new Error(`--only takes live or recorded, got "${only}"`);
  return {
    runs,
    scale,
    sizes: [Math.round(large / 10), large],
    liveSizes: [Math.round(large / 10), Math.round(large * MID_SHARE), large],
    world: {
      namespaces: FULL_WORLD.namespaces,
      sockets: Math.max(FULL_WORLD.namespaces * 4, Math.round(FULL_WORLD.sockets * scale)),
      processes: Math.max(FULL_WORLD.namespaces, Math.round(FULL_WORLD.processes * scale)),
    },
    groups: new Set(only ? [only] : [`live`, `recorded`]),
    keep: argv.includes(`--keep`),
    profile: argv.includes(`--profile`) || process.env.BENCH_PROFILE === `1`,
  };
}

// ---------------------------------------------------------------------------------------------
// How each stage is run

type StageCommand = `dump-maps` | `snapshot-conns` | `snapshot-pids` | `validate` | `recheck` | `report` | `scan`;

/** Set while the profiling run of a row builds its command lines. */
let profileDir: string | null = null;
let profileStep = 0;

function tool(command: StageCommand, ...args: Array<string>): Step {
  // validate, recheck, report and scan exit 1 when they found leaks: the inputs have leaks.
  const okCodes = command === `validate` || command === `recheck` || command === `report` || command === `scan` ? [0, 1] : [0];
  const profile = profileDir === null ? [] : [`--cpu-prof`, `--cpu-prof-dir`, join(profileDir, `${++profileStep}-${command}`)];
  return {argv: [process.execPath, ...profile, BUNDLE, command, `-q`, ...args], okCodes};
}

/** Bundle older than the sources it is built from: rebuild it (as `make build` would). */
function ensureBundle(): void {
  const newest = [`src`, `commands`].flatMap(dir => listFiles(join(root, dir))).reduce((max, file) => Math.max(max, statSync(file).mtimeMs), 0);
  if (existsSync(BUNDLE) && statSync(BUNDLE).mtimeMs >= newest)
    return;
  log(`bundling ${BUNDLE} (older than the sources)`);
  execFileSync(process.execPath, [join(root, `scripts`, `build.mjs`)], {cwd: root, stdio: `inherit`});
}

function listFiles(dir: string): Array<string> {
  return readdirSync(dir, {withFileTypes: true}).flatMap(entry =>
    entry.isDirectory() ? listFiles(join(dir, entry.name)) : entry.name.endsWith(`.ts`) ? [join(dir, entry.name)] : []);
}

// ---------------------------------------------------------------------------------------------
// Rows of the result table

type Unit = `entries` | `sockets` | `processes`;

interface Row {
  group: `live` | `recorded`;
  /** Map entries in this set of inputs. */
  size: number;
  name: string;
  /** What is counted per second: map entries, sockets or processes. */
  units: number;
  unit: Unit;
  spec: (() => RunSpec) | null;
  /** `ok`, `skipped: ...`, `failed: ...`. */
  status: string;
  measurements: Array<Measurement>;
  summary?: Summary;
  /** Hottest functions per process of the profiling run. */
  hot?: Record<string, Array<HotFunction>>;
}

interface RowResult {
  group: string;
  size: number;
  name: string;
  status: string;
  unit: Unit;
  units: number;
  runs?: number;
  wallS?: number;
  cpuS?: number;
  peakRssMiB?: number;
  perSecond?: number;
  usPerUnit?: number;
  cpuUsPerUnit?: number;
  processes?: Array<{cpuS: number, rssMiB: number}>;
  hot?: Record<string, Array<HotFunction>>;
}

interface Ratio {
  group: string;
  size: number;
  name: string;
  value: number | null;
  target: string;
  met: boolean | null;
  note: string;
}

function row(group: Row[`group`], size: number, name: string, units: number, unit: Unit, spec: (() => RunSpec) | null, blocked: string | null = null): Row {
  const status = blocked ?? `ok`;
  return {group, size, name, units, unit, spec: status === `ok` ? spec : null, status, measurements: []};
}

/** A measurement slower than this once is not repeated: `make bench` must end in minutes. */
const SLOW_S = 40;

/** Runs every row `runs` times, interleaved, so slow drift on a busy machine hits all alike. */
async function measureRows(rows: Array<Row>, runs: number, profile: boolean): Promise<void> {
  for (let run = 1; run <= runs; run++) {
    for (const r of rows) {
      if (r.status !== `ok` || r.spec === null || (run > 1 && r.measurements[0].wallS > SLOW_S))
        continue;
      log(`${r.group} ${fmtCount(r.size)}: ${r.name} (run ${run}/${runs})`);
      try {
        r.measurements.push(await measure(r.spec()));
      } catch (err) {
        r.status = `failed: ${(err as Error).message.split(`\n`).slice(0, 6).join(` / `)}`;
        log(`  ${r.status}`);
      }
    }
  }
  for (const r of rows)
    if (r.status === `ok` && r.measurements.length > 0)
      r.summary = summarise(r.measurements);
  if (profile) {
    for (const r of rows) {
      if (r.summary === undefined || r.spec === null)
        continue;
      const dir = join(root, `bench`, `results`, `profiles`, `${r.group}-${r.size}-${slug(r.name)}`);
      rmSync(dir, {recursive: true, force: true});
      log(`${r.group} ${fmtCount(r.size)}: ${r.name} (profiling run, node --cpu-prof into ${dir})`);
      profileDir = dir;
      profileStep = 0;
      try {
        await measure(r.spec());
        r.hot = Object.fromEntries(readdirSync(dir).map(step => [step, hotFunctions(join(dir, step))]));
      } catch (err) {
        log(`  profiling run failed: ${(err as Error).message.split(`\n`)[0]}`);
      } finally {
        profileDir = null;
      }
    }
  }
}

function slug(text: string): string {
  return text.toLowerCase().replace(/[^a-z0-9]+/g, `-`).replace(/^-|-$/g, ``).slice(0, 60);
}

function result(r: Row): RowResult {
  const base: RowResult = {group: r.group, size: r.size, name: r.name, status: r.status, unit: r.unit, units: r.units};
  if (!r.summary)
    return base;
  const s = r.summary;
  return {
    ...base, runs: s.runs, wallS: s.wallS, cpuS: s.cpuS, peakRssMiB: s.rssMiB,
    perSecond: r.units / s.wallS, usPerUnit: s.wallS * 1e6 / r.units, cpuUsPerUnit: s.cpuS * 1e6 / r.units,
    processes: s.processes, hot: r.hot,
  };
}

// ---------------------------------------------------------------------------------------------
// Recorded inputs (no root needed): synthetic dumps in bpftool's format and a /proc fixture tree

interface RecordedSet {
  capture: string;
  entries: number;
  entriesFile: string;
  verdictsFile: string;
}

async function recordedRows(config: Config, scratch: string, world: SyntheticWorld): Promise<Array<Row>> {
  const rows: Array<Row> = [];
  // One fixture tree (sockets, processes) shared by every size, as capture/proc + capture/netns.
  const tree = join(scratch, `tree`);
  {
    log(`writing the /proc fixture tree: ${fmtCount(world.sockets.length)} sockets in ${world.namespaces.length} namespaces, ${fmtCount(world.processes.length)} processes`);
    await writeFixtureTree(world, tree);
  }
  // Snapshot records: from the real stages over the fixture tree when they are built, else
  // written from the same synthetic host (validate's input is the same records either way).
  const connsFile = join(scratch, `conns.ndjson`);
  const pidsFile = join(scratch, `pids.ndjson`);
  const treeCapture = join(scratch, `capture-tree`);
  mkdirSync(treeCapture, {recursive: true});
  linkTree(tree, treeCapture);
  writeCaptureMeta(treeCapture);
  let snapshotSource = `synthetic records`;
  {
    try {
      await measure({steps: [tool(`snapshot-conns`, `--from`, treeCapture)], stdout: connsFile, scratch});
      await measure({steps: [tool(`snapshot-pids`, `--from`, treeCapture)], stdout: pidsFile, scratch});
      snapshotSource = `snapshot-conns/pids over the fixture tree`;
    } catch (err) {
      log(`snapshot stages failed on the fixture tree (${(err as Error).message.split(`\n`)[0]}); validate gets synthetic snapshot records`);
    }
  }
  if (snapshotSource === `synthetic records`)
    writeSnapshotRecords(world, connsFile, pidsFile);
  log(`validate reads snapshots from ${snapshotSource}`);

  rows.push(row(`recorded`, 0, `snapshot-conns --from (fixture tree)`, world.sockets.length, `sockets`,
    () => ({steps: [tool(`snapshot-conns`, `--from`, treeCapture)], scratch})));
  rows.push(row(`recorded`, 0, `snapshot-pids --from (fixture tree)`, world.processes.length, `processes`,
    () => ({steps: [tool(`snapshot-pids`, `--from`, treeCapture)], scratch})));

  for (const size of config.sizes) {
    const set = await recordedSet(size, scratch, world, tree);
    // Inputs of the NDJSON stages: made once by the stage before (untimed), then read each run.
    let entriesReady = false;
    try {
      await measure({steps: [tool(`dump-maps`, `--from`, set.capture)], stdout: set.entriesFile, scratch});
      entriesReady = true;
    } catch (err) {
      log(`dump-maps --from failed, so validate has no input at ${fmtCount(size)}: ${(err as Error).message.split(`\n`)[0]}`);
    }
    let verdictsReady = false;
    if (entriesReady) {
      try {
        // The snapshots as input (not --snapshot): their header comes first, so the verdicts' header
        // names the capture's host, which recheck --later checks against the later look's.
        await measure({steps: [tool(`validate`, `--no-live`, connsFile, pidsFile, set.entriesFile)], stdout: set.verdictsFile, scratch});
        verdictsReady = true;
      } catch (err) {
        log(`validate failed at ${fmtCount(size)}: ${(err as Error).message.split(`\n`)[0]}`);
      }
    }
    const noEntries = entriesReady ? null : `no entries input (dump-maps --from did not run)`;
    const noVerdicts = verdictsReady ? null : `no verdicts input (validate did not run)`;
    // With live maps, the live scan and pipeline are the large-size figures; these two then run
    // at the small size only, which keeps a full `make bench` within minutes.
    const composite = size < config.sizes[config.sizes.length - 1] || !liveWillRun(config)
      ? null : `skipped: the live scan and pipeline cover this size (--only recorded measures it)`;
    rows.push(row(`recorded`, size, `dump-maps --from (recorded bpftool dumps)`, set.entries, `entries`,
      () => ({steps: [tool(`dump-maps`, `--from`, set.capture)], scratch})));
    rows.push(row(`recorded`, size, `floor: node read + JSON.parse of validate's input`, set.entries, `entries`,
      () => ({steps: [{argv: [process.execPath, join(root, `bench`, `parse-floor.mjs`), connsFile, pidsFile, set.entriesFile]}], scratch}), noEntries));
    rows.push(row(`recorded`, size, `validate (snapshot files + entries)`, set.entries, `entries`,
      () => ({steps: [tool(`validate`, `--no-live`, `--snapshot`, connsFile, `--snapshot`, pidsFile, set.entriesFile)], scratch}), noEntries));
    rows.push(row(`recorded`, size, `recheck --later (same capture)`, set.entries, `entries`,
      () => ({steps: [tool(`recheck`, `--delay`, `0`, `--later`, set.capture, set.verdictsFile)], scratch}), noVerdicts));
    rows.push(row(`recorded`, size, `report (text)`, set.entries, `entries`,
      () => ({steps: [tool(`report`, set.verdictsFile)], scratch}), noVerdicts));
    rows.push(row(`recorded`, size, `pipeline: dump-maps --from | validate | report`, set.entries, `entries`,
      () => ({steps: [
        tool(`dump-maps`, `--from`, set.capture),
        tool(`validate`, `--no-live`, `--snapshot`, connsFile, `--snapshot`, pidsFile),
        tool(`report`),
      ], scratch}), composite));
    rows.push(row(`recorded`, size, `scan --from (capture, no recheck)`, set.entries, `entries`,
      () => ({steps: [tool(`scan`, `--from`, set.capture, `--recheck-delay`, `0`)], scratch}), composite));
  }
  return rows;
}

function liveWillRun(config: Config): boolean {
  return config.groups.has(`live`) && liveUnavailable() === null;
}

async function recordedSet(size: number, scratch: string, world: SyntheticWorld, tree: string): Promise<RecordedSet> {
  const capture = join(scratch, `capture-${size}`);
  mkdirSync(capture, {recursive: true});
  const plan = scalePlan(size);
  log(`writing recorded bpftool dumps: ${fmtCount(size)} entries over ${plan.length} maps`);
  const written = await writeRecordedMaps(capture, plan, scalePlan(Math.max(size, FULL_ENTRIES)).map(map => map.entries), world.alive, SEED);
  linkTree(tree, capture);
  return {capture, entries: written, entriesFile: join(scratch, `entries-${size}.ndjson`), verdictsFile: join(scratch, `verdicts-${size}.ndjson`)};
}

/** capture/proc and capture/netns point at the one fixture tree. */
function linkTree(tree: string, capture: string): void {
  for (const part of [`proc`, `netns`]) {
    if (existsSync(join(tree, part)) && !existsSync(join(capture, part)))
      execFileSync(`ln`, [`-s`, join(tree, part), join(capture, part)]);
  }
}

// ---------------------------------------------------------------------------------------------
// Live maps (root): real maps named like USM's, filled with bpftool batch

const LIVE_CONNECTIONS = 2000;

async function liveRows(config: Config, scratch: string, cleanups: Array<() => void>): Promise<Array<Row>> {
  const problem = liveUnavailable();
  if (problem !== null) {
    log(`live maps skipped: ${problem} (the recorded inputs still run)`);
    return config.liveSizes.map(size => row(`live`, size, `live maps`, size, `entries`, null, `skipped: ${problem}`));
  }
  sweepStalePins();
  const connections = new RealConnections();
  cleanups.push(() => connections.close());
  await connections.open(Math.min(LIVE_CONNECTIONS, Math.max(0, (fdLimit() - 400) / 2)));
  const {threads, deadPids} = liveThreads();
  const alive: AliveSet = {connections: connections.connections, threads, deadPids, netns: [ownNetns()]};
  const maps = new LiveMaps(scratch);
  cleanups.push(() => maps.cleanup());
  const plan = scalePlan(config.liveSizes[config.liveSizes.length - 1]);
  maps.create(plan, plan.map(map => map.entries));
  const ids = maps.maps.map(map => String(map.id));
  const foreign = foreignUsmMaps(new Set(maps.maps.map(map => map.id)));
  if (foreign.length > 0)
    log(`note: ${foreign.length} other USM-named maps exist on this host (ids ${foreign.slice(0, 10).join(`, `)}); the live runs select the benchmark's own maps by id`);

  const rows: Array<Row> = [];
  const [small, mid, large] = config.liveSizes;
  for (const size of config.liveSizes) {
    const counts = scalePlan(size).map(map => map.entries);
    const started = Date.now();
    maps.fill(counts, alive, SEED);
    const entries = counts.reduce((a, b) => a + b, 0);
    log(`filled ${maps.maps.length} live maps to ${fmtCount(entries)} entries in ${((Date.now() - started) / 1000).toFixed(1)} s (pinned under ${maps.pinDir})`);
    // The benchmark's own maps, by id: other USM-named maps on this host are not measured.
    const select = ids.flatMap(id => [`--map-id`, id]);
    const all = [
      row(`live`, size, `floor: bpftool -j map dump id N > /dev/null, every map`, entries, `entries`,
        () => ({steps: maps.maps.map(map => ({argv: [`bpftool`, `-j`, `map`, `dump`, `id`, String(map.id)]})), sequential: true, scratch})),
      row(`live`, size, `dump-maps --backend kernel (live maps)`, entries, `entries`,
        () => ({steps: [tool(`dump-maps`, `--backend`, `kernel`, ...select)], scratch})),
      row(`live`, size, `dump-maps --backend bpftool (live maps)`, entries, `entries`,
        () => ({steps: [tool(`dump-maps`, `--backend`, `bpftool`, ...select)], scratch})),
      row(`live`, size, `scan (live maps, kernel backend, live /proc, no recheck)`, entries, `entries`,
        () => ({steps: [tool(`scan`, `--backend`, `kernel`, ...select, `--recheck-delay`, `0`)], scratch})),
      row(`live`, size, `scan --backend bpftool (live maps, live /proc, no recheck)`, entries, `entries`,
        () => ({steps: [tool(`scan`, `--backend`, `bpftool`, ...select, `--recheck-delay`, `0`)], scratch})),
      row(`live`, size, `pipeline: dump-maps | validate | report (live)`, entries, `entries`,
        () => ({steps: [tool(`dump-maps`, ...select), tool(`validate`), tool(`report`)], scratch})),
      // validate takes its live snapshots first and streams, instead of waiting for the input's end.
      row(`live`, size, `pipeline: dump-maps | validate --live | report (live)`, entries, `entries`,
        () => ({steps: [tool(`dump-maps`, ...select), tool(`validate`, `--live`), tool(`report`)], scratch})),
    ];
    // The middle size: only what its ratios need (bpftool's dump, dump-maps and scan with the kernel backend).
    const sizeRows = size === mid && mid !== small && mid !== large
      ? all.filter(r => r.name.startsWith(`floor`) || r.name.startsWith(`dump-maps --backend kernel`) || r.name.startsWith(`scan (live`))
      : all;
    // What Node takes to start the bundle and exit, for the per-entry figures beyond it.
    if (size === small)
      sizeRows.unshift(row(`live`, 0, `floor: node start-up of the bundle (--version)`, 1, `entries`,
        () => ({steps: [{argv: [process.execPath, BUNDLE, `--version`]}], scratch})));
    // The middle size's few rows take seconds: at least MID_RUNS runs each, so that its ratio (scan
    // against bpftool's dump, both about a second or less) is a median of more than three.
    const midOnly = size === mid && mid !== small && mid !== large;
    await measureRows(sizeRows, midOnly ? Math.max(config.runs, MID_RUNS) : config.runs, config.profile);
    rows.push(...sizeRows);
    if (size === large)
      log(`records of dump-maps --backend kernel and --backend bpftool at ${fmtCount(entries)} entries (holders and read time aside): ${await compareBackends(select)}`);
  }
  return rows;
}

/**
 * Issue 11: the kernel backend's records equal the bpftool backend's on the same maps (the
 * backend's name and the read time aside). Both outputs are read in lockstep, line by line, as
 * they are printed: nothing held but one line of each.
 */
async function compareBackends(select: ReadonlyArray<string>): Promise<string> {
  const {createInterface} = await import(`node:readline`);
  const children = [`kernel`, `bpftool`].map(backend => spawn(process.execPath, [BUNDLE, `dump-maps`, `-q`, `--backend`, backend, ...select], {stdio: [`ignore`, `pipe`, `inherit`]}));
  const [kernel, bpftool] = children.map(child => createInterface({input: child.stdout!, crlfDelay: Infinity})[Symbol.asyncIterator]());
  // Holders aside too: each run sees the other one holding the maps it reads at that moment.
  const comparable = (line: string) => line.replace(/"backend":"(?:kernel|bpftool)"/, `"backend":"-"`).replace(/,"monotonicNs":"\d+"/, ``).replace(/"holders":\[[^\]]*\]/, `"holders":-`);
  let lines = 0;
  let verdict: string | null = null;
  try {
    for (;;) {
      const [a, b] = await Promise.all([kernel.next(), bpftool.next()]);
      if (a.done || b.done) {
        if (!a.done || !b.done)
          verdict = `DIFFER: ${a.done ? `the kernel backend` : `the bpftool backend`} printed fewer lines (${lines})`;
        break;
      }
      lines++;
      if (lines === 1)
        continue; // the header: time and stage facts
      const [x, y] = [comparable(a.value), comparable(b.value)];
      if (x !== y) {
        let at = 0;
        while (x[at] === y[at])
          at++;
        verdict = `DIFFER at line ${lines}, column ${at}: …${x.slice(Math.max(0, at - 60), at + 60)}… / …${y.slice(Math.max(0, at - 60), at + 60)}…`;
        break;
      }
    }
  } finally {
    for (const child of children)
      child.kill();
  }
  return verdict ?? `equal (${fmtCount(lines - 1)} records)`;
}

function fdLimit(): number {
  try {
    return Number(execFileSync(`sh`, [`-c`, `ulimit -n`], {encoding: `utf8`}).trim()) || 1024;
  } catch {
    return 1024;
  }
}

function foreignUsmMaps(ours: ReadonlySet<number>): Array<number> {
  const kernelNames = new Set(scalePlan(1).map(map => map.name.slice(0, 15)));
  try {
    const list = JSON.parse(execFileSync(`bpftool`, [`-j`, `map`, `show`], {encoding: `utf8`, maxBuffer: 1 << 26})) as Array<{id: number, name?: string}>;
    return list.filter(map => map.name !== undefined && kernelNames.has(map.name) && !ours.has(map.id)).map(map => map.id);
  } catch {
    return [];
  }
}

// ---------------------------------------------------------------------------------------------
// Ratios and targets

/**
 * The Python tool this one replaces cannot run here (only its README and a description of its
 * behaviour exist on this machine), so its row is its published figure: 100,000 entries (48-byte
 * keys, 64-byte values, ~92 MB of bpftool JSON) in about 7.6 s wall with a fake bpftool, ~75 µs
 * per entry, ~90% of it in a per-character JSON splitting loop (reference: original-tool-behaviour,
 * "Performance profile"). 100,000 / 7.6 s = 13,158/s; issue 8 rounds it to 13,000.
 */
const PYTHON_TOOL = {entries: 100_000, wallS: 7.6, entriesPerSecond: 13_000};

/** The Python tool's published rate, as a row of the table (status text: it is not measured). */
function pythonToolRow(): RowResult {
  return {
    group: `reference`, size: PYTHON_TOOL.entries, unit: `entries`, units: PYTHON_TOOL.entries,
    name: `the Python tool (published: ${fmtCount(PYTHON_TOOL.entries)} entries in ${PYTHON_TOOL.wallS} s, ~${fmtCount(PYTHON_TOOL.entriesPerSecond)} entries/s)`,
    status: `not run here (the original is not on this machine): published figure, ${(PYTHON_TOOL.wallS * 1e6 / PYTHON_TOOL.entries).toFixed(0)} µs/entry`,
  };
}

function ratios(results: ReadonlyArray<RowResult>, sizes: ReadonlyArray<number>): Array<Ratio> {
  const find = (group: string, size: number, prefix: string) =>
    results.find(r => r.group === group && r.size === size && r.name.startsWith(prefix) && r.wallS !== undefined);
  const out: Array<Ratio> = [];
  const add = (group: string, size: number, name: string, value: number | null, target: string, limit: number | null, note: string, atLeast = false) =>
    out.push({group, size, name, value, target, met: value === null || limit === null ? null : atLeast ? value >= limit : value <= limit, note});
  for (const size of sizes) {
    const bpftool = find(`live`, size, `floor: bpftool`);
    const dump = find(`live`, size, `dump-maps --backend kernel`);
    const dumpBpftool = find(`live`, size, `dump-maps --backend bpftool`);
    const scan = find(`live`, size, `scan (live`);
    const scanBpftool = find(`live`, size, `scan --backend bpftool`);
    const pipe = find(`live`, size, `pipeline: dump-maps | validate | report`);
    if (dump) {
      // Issue 11: the kernel backend reads without bpftool; its whole CPU per entry.
      add(`live`, size, `dump-maps --backend kernel CPU µs/entry`, dump.cpuS! * 1e6 / size, `≤ 1.5`, 1.5, `whole process, start-up included`);
      const startup = find(`live`, 0, `floor: node start-up`);
      if (startup)
        add(`live`, size, `dump-maps --backend kernel CPU µs/entry beyond start-up`, (dump.cpuS! - startup.cpuS!) * 1e6 / size, `(info)`, null, `start-up: ${startup.cpuS!.toFixed(2)} s CPU`);
      if (dump.peakRssMiB !== undefined)
        add(`live`, size, `dump-maps --backend kernel peak RSS MiB`, dump.peakRssMiB, `< 150`, 150, `largest process`);
    }
    if (bpftool && dump)
      add(`live`, size, `dump-maps --backend kernel time / bpftool dump time`, dump.wallS! / bpftool.wallS!, `(info)`, null, `wall, medians`);
    if (bpftool && dumpBpftool) {
      add(`live`, size, `dump-maps --backend bpftool time / bpftool dump time`, dumpBpftool.wallS! / bpftool.wallS!, `≤ 1.5`, 1.5, `wall, medians`);
      add(`live`, size, `dump-maps --backend bpftool CPU µs/entry beyond bpftool`, (dumpBpftool.cpuS! - bpftool.cpuS!) * 1e6 / size, `(info)`, null, `its bpftool children included`);
    }
    if (bpftool && scan)
      add(`live`, size, `scan (kernel backend) time / bpftool dump time`, scan.wallS! / bpftool.wallS!, `≤ 0.3`, 0.3, `wall, medians`);
    if (bpftool && scanBpftool) {
      add(`live`, size, `scan --backend bpftool time / bpftool dump time`, scanBpftool.wallS! / bpftool.wallS!, `(info)`, null, `wall, medians`);
      add(`live`, size, `scan --backend bpftool CPU µs/entry beyond bpftool`, (scanBpftool.cpuS! - bpftool.cpuS!) * 1e6 / size, `< 2`, 2, `its bpftool children included`);
    }
    if (bpftool && pipe)
      add(`live`, size, `pipeline time / bpftool dump time`, pipe.wallS! / bpftool.wallS!, `(info)`, null, `wall, medians`);
    // The Python tool this replaces: its published rate (PYTHON_TOOL), not run here.
    for (const [name, r, target] of [[`scan (kernel backend)`, scan, 15], [`scan --backend bpftool`, scanBpftool, 10], [`pipeline`, pipe, null]] as const) {
      if (r)
        add(`live`, size, `${name} entries/s ÷ ${fmtCount(PYTHON_TOOL.entriesPerSecond)} (the Python tool, published)`, r.perSecond! / PYTHON_TOOL.entriesPerSecond,
          target === null ? `(info)` : `≥ ${target}`, target, `wall, medians; the Python tool's rate is not measured here`, true);
    }
    const floor = find(`recorded`, size, `floor: node read`);
    const validate = find(`recorded`, size, `validate`);
    if (floor && validate)
      add(`recorded`, size, `validate time / read-and-parse time`, validate.wallS! / floor.wallS!, `≤ 2`, 2, `same NDJSON input, wall, medians`);
  }
  // Memory: every streaming stage under 200 MiB at the large size, and flat from small to large.
  const [small, large] = [sizes[0], sizes[sizes.length - 1]];
  for (const r of results) {
    if (r.size !== large || r.peakRssMiB === undefined || r.name.startsWith(`floor`) || r.name.startsWith(`report`))
      continue;
    add(r.group, large, `peak RSS MiB: ${r.name}`, r.peakRssMiB, `< 200`, 200, `largest process`);
    const before = results.find(s => s.group === r.group && s.size === small && s.name === r.name && s.peakRssMiB !== undefined);
    if (before)
      add(r.group, large, `RSS growth ${fmtCount(small)} → ${fmtCount(large)}: ${r.name}`, r.peakRssMiB / before.peakRssMiB!, `≤ 1.25 (flat)`, 1.25, `${before.peakRssMiB!.toFixed(0)} → ${r.peakRssMiB.toFixed(0)} MiB`);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Output

function machine(): Record<string, string | number> {
  const bpftool = (() => {
    try {
      return execFileSync(`bpftool`, [`version`], {encoding: `utf8`}).split(`\n`)[0].trim();
    } catch {
      return `not installed`;
    }
  })();
  return {
    host: hostname(),
    nproc: cpus().length,
    cpu: cpus()[0]?.model.trim() ?? `unknown`,
    memGiB: Math.round(totalmem() / 2 ** 30),
    kernel: release(),
    node: process.version,
    bpftool,
    loadavg: readFileSync(`/proc/loadavg`, `utf8`).split(` `).slice(0, 3).join(` `),
  };
}

function table(results: ReadonlyArray<RowResult>, ratioList: ReadonlyArray<Ratio>): string {
  const lines: Array<string> = [];
  const head = [`group`, `entries`, `measurement`, `runs`, `wall s`, `items/s`, `µs/item`, `CPU s`, `CPU µs/item`, `peak RSS MiB`];
  const body = results.map(r => r.wallS === undefined
    ? [r.group, sizeText(r.size), r.name, clip(r.status, 100)]
    : [r.group, sizeText(r.size), `${r.name} [${fmtCount(r.units)} ${r.unit}]`, String(r.runs), r.wallS.toFixed(2), fmtCount(Math.round(r.perSecond!)),
      r.usPerUnit!.toFixed(2), r.cpuS!.toFixed(2), r.cpuUsPerUnit!.toFixed(2), rssText(r)]);
  lines.push(...align([head, ...body]));
  lines.push(``);
  const ratioBody = ratioList.map(r => [r.group, fmtCount(r.size), r.name, r.value === null ? `-` : r.value.toFixed(2), r.target,
    r.met === null ? `` : r.met ? `met` : `MISSED`, r.note]);
  lines.push(...align([[`group`, `entries`, `ratio`, `value`, `target`, ``, `note`], ...ratioBody]));
  return lines.join(`\n`);
}

function markdown(results: ReadonlyArray<RowResult>, ratioList: ReadonlyArray<Ratio>, facts: Record<string, string | number>, config: Config): string {
  const out: Array<string> = [];
  out.push(`Machine: ${facts.nproc} × ${facts.cpu}, ${facts.memGiB} GiB, Linux ${facts.kernel}, Node ${facts.node}, ${facts.bpftool}; medians of ${config.runs} run${config.runs === 1 ? `` : `s`}.`, ``);
  out.push(`| inputs | entries | measurement | wall s | items/s | µs/item | CPU µs/item | peak RSS MiB |`, `|---|---:|---|---:|---:|---:|---:|---:|`);
  for (const r of results) {
    out.push(r.wallS === undefined
      ? `| ${r.group} | ${sizeText(r.size)} | ${cell(r.name)} | ${cell(r.status)} | | | | |`
      : `| ${r.group} | ${sizeText(r.size)} | ${cell(r.name)} (${fmtCount(r.units)} ${r.unit}) | ${r.wallS.toFixed(2)} | ${fmtCount(Math.round(r.perSecond!))} | ${r.usPerUnit!.toFixed(2)} | ${r.cpuUsPerUnit!.toFixed(2)} | ${rssText(r)} |`);
  }
  out.push(``, `| ratio | entries | value | target | |`, `|---|---:|---:|---|---|`);
  for (const r of ratioList)
    out.push(`| ${cell(r.name)} (${r.group}) | ${fmtCount(r.size)} | ${r.value === null ? `-` : r.value.toFixed(2)} | ${r.target} | ${r.met === null ? `` : r.met ? `met` : `**missed**`} |`);
  return `${out.join(`\n`)}\n`;
}

/** Columns padded to their widest cell; a short row (a status instead of figures) runs on unpadded. */
function align(rows: ReadonlyArray<ReadonlyArray<string>>): Array<string> {
  const widths = rows[0].map((_, i) => Math.max(...rows.map(r => (r.length === rows[0].length || i < r.length - 1 ? (r[i] ?? ``).length : 0))));
  return rows.map(r => r.map((cell, i) => (i === r.length - 1 && r.length < rows[0].length ? cell
    : i >= 3 && /^[\d.,-]+$/.test(cell) ? cell.padStart(widths[i]) : cell.padEnd(widths[i]))).join(`  `).trimEnd());
}

/** Peak RSS; for a pipeline, each process's (dump-maps / validate / report). */
function rssText(r: RowResult): string {
  const each = r.processes ?? [];
  return each.length > 1 && !r.name.startsWith(`floor`) ? each.map(p => p.rssMiB.toFixed(0)).join(` / `) : r.peakRssMiB!.toFixed(0);
}

/** A markdown table cell: pipes escaped. */
function cell(text: string): string {
  return text.replace(/\|/g, `\\|`);
}

/** Entries of the inputs; the snapshot rows do not depend on them. */
function sizeText(size: number): string {
  return size === 0 ? `-` : fmtCount(size);
}

function clip(text: string, width: number): string {
  return text.length > width ? `${text.slice(0, width - 3)}...` : text;
}

function fmtCount(n: number): string {
  return n.toLocaleString(`en-US`);
}

function log(message: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<number> {
  const config = readConfig(process.argv.slice(2));
  if (!haveGnuTime()) {
    process.stderr.write(`make bench: GNU time (/usr/bin/time) is needed to read each child's CPU time and peak RSS; install it (Debian: apt-get install time)\n`);
    return 3;
  }
  ensureBundle();
  const startedAt = new Date();
  const scratch = mkdtempSync(join(tmpdir(), `usmld-bench-`));
  const cleanups: Array<() => void> = [];
  let cleaned = false;
  const cleanup = () => {
    if (cleaned)
      return;
    cleaned = true;
    void killMeasured();
    for (const step of cleanups.reverse()) {
      try {
        step();
      } catch (err) {
        process.stderr.write(`cleanup: ${(err as Error).message}\n`);
      }
    }
    if (!config.keep)
      rmSync(scratch, {recursive: true, force: true});
  };
  process.once(`exit`, cleanup);
  let stopping = false;
  // `on`, not `once`: a runner such as tsx passes the signal on too, and a second one must not
  // kill the harness before its maps and files are removed.
  for (const signal of [`SIGINT`, `SIGTERM`, `SIGHUP`] as const) {
    process.on(signal, () => {
      if (stopping)
        return;
      stopping = true;
      log(`${signal}: removing the benchmark's maps and files`);
      // Children first: a measured process still running could write into the scratch directory.
      void killMeasured().then(() => {
        cleanup();
        process.exit(130);
      });
    });
  }

  log(`sizes ${config.sizes.map(fmtCount).join(` and `)} entries (live maps also ${fmtCount(config.liveSizes[1])}); ${config.runs} runs each; scratch ${scratch}`);

  const rows: Array<Row> = [];
  if (config.groups.has(`recorded`)) {
    log(`generating a synthetic host: ${fmtCount(config.world.sockets)} sockets, ${config.world.namespaces} namespaces, ${fmtCount(config.world.processes)} processes`);
    const world = syntheticWorld(config.world, SEED);
    const recorded = await recordedRows(config, scratch, world);
    await measureRows(recorded, config.runs, config.profile);
    rows.push(...recorded);
  }
  if (config.groups.has(`live`))
    rows.push(...await liveRows(config, scratch, cleanups));
  // The generated files (a million-entry dump, a 150,000-file /proc tree) take long to
  // delete: a detached `rm -rf` does it while the results are printed.
  if (!config.keep) {
    spawn(`rm`, [`-rf`, scratch], {detached: true, stdio: `ignore`}).unref();
    config.keep = true;
  }
  cleanup();

  const results = [...rows.map(result), pythonToolRow()];
  const ratioList = ratios(results, [...new Set([...config.sizes, ...config.liveSizes])].sort((a, b) => a - b));
  const facts = machine();
  process.stdout.write(`\n${table(results, ratioList)}\n\n`);
  for (const r of results.filter(r => r.hot !== undefined)) {
    process.stdout.write(`CPU profile, ${r.group} ${fmtCount(r.size)}: ${r.name}\n`);
    for (const [step, hot] of Object.entries(r.hot!))
      process.stdout.write(`  ${step}: ${hot.slice(0, 8).map(h => `${(h.share * 100).toFixed(0)}% ${h.where}`).join(`; `)}\n`);
  }
  process.stdout.write(`machine: ${Object.entries(facts).map(([k, v]) => `${k}=${v}`).join(`, `)}\n`);
  const document = {
    tool: `usm-leak-detector bench`,
    startedAt: startedAt.toISOString(),
    durationS: Math.round((Date.now() - startedAt.getTime()) / 1000),
    machine: facts,
    config: {runs: config.runs, scale: config.scale, sizes: config.sizes, world: config.world, seed: SEED, liveConnections: LIVE_CONNECTIONS},
    results,
    ratios: ratioList,
  };
  const outDir = join(root, `bench`, `results`);
  mkdirSync(outDir, {recursive: true});
  const stamp = startedAt.toISOString().replace(/[:.]/g, `-`);
  const json = `${JSON.stringify(document, null, 2)}\n`;
  writeFileSync(join(outDir, `${stamp}.json`), json);
  writeFileSync(join(outDir, `latest.json`), json);
  writeFileSync(join(outDir, `latest.md`), markdown(results, ratioList, facts, config));
  process.stdout.write(`results: bench/results/${stamp}.json (also latest.json, latest.md)\n`);
  return 0;
}

main().then(code => { process.exitCode = code; }, err => {
  process.stderr.write(`make bench: ${(err as Error).stack ?? String(err)}\n`);
  void killMeasured();
  process.exitCode = 1;
});
