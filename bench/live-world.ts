// A live benchmark world that stays up while you profile one stage by hand:
//   tsx bench/live-world.ts [--entries N] [--sized-for M] [--ids FILE]
// creates and fills the benchmark's USM-named maps (as `make bench` does, same seed), holds the
// real connections open, writes the `--map-id` arguments selecting them to FILE (default: stdout),
// and waits; Ctrl-C or SIGTERM removes the maps and closes the connections. --sized-for M makes
// the maps as large as for M entries, as `make bench` makes them for its largest size before
// filling the smaller sizes into them.
import {mkdtempSync, rmSync, writeFileSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {LiveMaps, RealConnections, liveThreads, liveUnavailable, ownNetns, sweepStalePins} from './live.ts';
import {FULL_ENTRIES, scalePlan, type AliveSet} from './world.ts';

const SEED = 20_240_601;
const arg = (name: string) => {
  const at = process.argv.indexOf(name);
  return at >= 0 ? process.argv[at + 1] : undefined;
};
const entries = Number(arg(`--entries`) ?? FULL_ENTRIES);
const problem = liveUnavailable();
if (problem !== null) {
  process.stderr.write(`live-world: ${problem}\n`);
  process.exit(3);
}
sweepStalePins();
const scratch = mkdtempSync(join(tmpdir(), `usmld-world-`));
const connections = new RealConnections();
const maps = new LiveMaps(scratch);
let done = false;
const cleanup = () => {
  if (done)
    return;
  done = true;
  // The maps first: they are what outlives us (pinned) if a second signal cuts the rest short.
  maps.cleanup();
  rmSync(scratch, {recursive: true, force: true});
  connections.close();
};
process.once(`exit`, cleanup);
// `on`, not `once`: a runner such as tsx passes the signal on too, and a second one must not
// kill the process before the pins are gone.
for (const signal of [`SIGINT`, `SIGTERM`, `SIGHUP`] as const)
  process.on(signal, () => { cleanup(); process.exit(0); });

await connections.open(2000);
const {threads, deadPids} = liveThreads();
const alive: AliveSet = {connections: connections.connections, threads, deadPids, netns: [ownNetns()]};
const sizedFor = scalePlan(Number(arg(`--sized-for`) ?? entries));
maps.create(sizedFor, sizedFor.map(map => map.entries));
maps.fill(scalePlan(entries).map(map => map.entries), alive, SEED);
const select = maps.maps.map(map => `--map-id ${map.id}`).join(` `);
const ids = arg(`--ids`);
if (ids)
  writeFileSync(ids, `${select}\n`);
else
  process.stdout.write(`${select}\n`);
process.stderr.write(`live-world: ${entries} entries in ${maps.maps.length} maps under ${maps.pinDir}; Ctrl-C removes them\n`);
setInterval(() => {}, 1 << 30);
