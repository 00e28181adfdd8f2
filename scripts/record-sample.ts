// Records samples/capture.ndjson: builds a small real world (USM-named eBPF maps filled with the
// tuples of real connections and of made-up ones, pid_tgid keys of live and gone threads, a
// network namespace of its own), scans it with --capture, and keeps the file. `make demo`
// replays it through `report`. Needs root, bpftool and `ip netns`.
//
//   node_modules/.bin/tsx scripts/record-sample.ts [OUT]     (default samples/capture.ndjson)
//
// During the recheck delay one leaked entry is deleted from its map (the report shows it as
// removed before the recheck) and a listener opens for another (a race condition false positive),
// so the sample shows every outcome. The host name is a neutral `demo-host`.
import {readFileSync} from 'node:fs';
import {createServer, type Server} from 'node:net';
import {release} from 'node:os';
import {fileURLToPath} from 'node:url';
import type {Clock} from '../src/context.ts';
import {connTupleBytes} from '../test/helpers/bpf.ts';
import {runCommand} from '../test/helpers/cli.ts';
import {bpfUnavailable, netnsUnavailable} from '../test/helpers/privileges.ts';
import {buildUsmWorld} from '../test/helpers/usmWorld.ts';

const out = process.argv[2] ?? fileURLToPath(new URL(`../samples/capture.ndjson`, import.meta.url));
const problem = bpfUnavailable() ?? netnsUnavailable();
if (problem) {
  process.stderr.write(`record-sample: cannot build the sample world: ${problem}\n`);
  process.exit(3);
}

const world = await buildUsmWorld(`sample`, {namespace: true, fakeConnections: 27});
let lateListener: Server | null = null;
try {
  const probe = createServer();
  await new Promise<void>(resolve => probe.listen({host: `127.0.0.1`, port: 0}, resolve));
  const racePort = (probe.address() as {port: number}).port;
  await new Promise(resolve => probe.close(resolve));
  const pidFd = world.maps.find(map => map.catalogName === `pid_fd_by_tuple`)!;
  world.bpf.fill(pidFd, [[connTupleBytes({saddr: `127.0.0.1`, sport: racePort, daddr: `0.0.0.0`, dport: 0, netns: world.holder.netnsInode, pid: world.holder.pid}), Buffer.alloc(8)]]);

  const clock: Clock = {
    now: () => Date.now(),
    sleep: async ms => {
      // scan sleeps in one-second steps (its countdown): change the world on the first.
      if (lateListener === null) {
        world.bpf.deleteKey(world.deletable!.map, world.deletable!.key);
        lateListener = createServer();
        await new Promise<void>(resolve => lateListener!.listen({host: `127.0.0.1`, port: racePort}, resolve));
      }
      await new Promise(resolve => setTimeout(resolve, Math.min(ms, 250)));
    },
  };
  const run = await runCommand([`scan`, ...world.mapIdArgs, `--recheck-delay`, `2`, `--capture`, out], {
    tool: {host: {hostname: `demo-host`, kernel: release()}, clock},
  });
  process.stderr.write(run.stderr);
  if (run.code !== 1) {
    process.stderr.write(`record-sample: expected leaks (exit 1), scan exited ${run.code}\n`);
    process.exitCode = 4;
  }
  const text = readFileSync(out, `utf8`);
  const lines = text.split(`\n`).filter(Boolean).length;
  process.stderr.write(`record-sample: wrote ${out} (${lines} records, ${text.length} bytes)\n`);
} finally {
  const listener = lateListener as Server | null;
  listener?.close();
  await world.cleanup();
}
