// Issue 12, part 3: inside the agent's container. Emulated exactly as the README's deployment is:
// a mount namespace of its own (`unshare -m`), a tmpfs on /run (so no /run/netns), the host's
// /proc bind-mounted where the agent mounts it (a temp dir here, never a fixed path), and
// `scan --proc-root <that>`. A namespace no process is in (`ip netns add`, bind-mounted on the
// host) is then reachable neither at /run/netns/NAME (hidden) nor through
// <proc-root>/1/root + /run/netns/NAME when pid 1's root is refused (it is on this VM: pid 1 is not
// dumpable, EACCES even for root). The tool must reach it through another process's root, and
// judge the entries whose connection only that namespace holds, netns 0 keys included.
import {spawnSync} from 'node:child_process';
import {existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {fileURLToPath} from 'node:url';
import {test} from 'uvu';
import * as assert from 'uvu/assert';
import {BpfTestSet, connTupleBytes} from './helpers/bpf.ts';
import {captureScript} from '../src/capture/script.ts';
import {parseLines, runCommand} from './helpers/cli.ts';
import {cleanupNetns, makeProcessLessNetns} from './helpers/netns.ts';
import {bpfUnavailable, netnsUnavailable, requirePrivileges} from './helpers/privileges.ts';

const BIN = fileURLToPath(new URL(`../bin/usm-leak-detector`, import.meta.url));
const has = (bin: string) => spawnSync(`sh`, [`-c`, `command -v ${bin}`]).status === 0;

/** Runs `args` inside the emulated container; `$HOSTPROC` in args is the host's /proc there. */
function inContainer(hostProc: string, args: Array<string>) {
  // Private propagation: neither the tmpfs nor the bind mount reaches the host.
  const script = `mount -t tmpfs usmld-run /run && mount --bind /proc "$1" && shift && exec "$@"`;
  const result = spawnSync(`unshare`, [`-m`, `--propagation`, `private`, `sh`, `-c`, script, `sh`, hostProc, ...args],
    {encoding: `utf8`, timeout: 180_000, maxBuffer: 1 << 26});
  return {code: result.status, stdout: result.stdout, stderr: result.stderr};
}

const canRun = requirePrivileges(`container emulation`, bpfUnavailable() ?? netnsUnavailable() ?? (has(`unshare`) ? null : `unshare is not installed`));

if (canRun) {
  test(`in the agent's container (unshare -m, tmpfs /run, host /proc bind-mounted): a process-less namespace is reached through another process's root, its entries judged`, async () => {
    const lonely = await makeProcessLessNetns(`container`);
    const set = new BpfTestSet(`container`);
    const scratch = mkdtempSync(join(tmpdir(), `usmld-container-`));
    try {
      const hostProc = join(scratch, `host-proc`);
      mkdirSync(hostProc);
      // The emulation is what the issue describes: /run/netns hidden, pid 1's root refused.
      const probe = inContainer(hostProc, [`sh`, `-c`, `test -e "$1" && echo visible; ls "$2/1/root" > /dev/null 2>&1 && echo pid1-readable; echo checked`, `sh`, lonely.netns.path, hostProc]);
      assert.is(probe.code, 0, probe.stderr);
      assert.not.match(probe.stdout, /visible/, `/run/netns is hidden in the emulated container`);
      if (/pid1-readable/.test(probe.stdout)) {
        // Not a matter of privileges: on a machine whose pid 1 root can be read, the refusal cannot be emulated.
        process.stderr.write(`SKIP container emulation: pid 1's root is readable on this machine, the refusal cannot be reproduced\n`);
        return;
      }

      const tcp = lonely.connections.find(c => c.proto === `tcp` && c.kind === `v4`)!;
      const tuple = {saddr: tcp.client.address, sport: tcp.client.port, daddr: tcp.server.address, dport: tcp.server.port};
      const inNetns = connTupleBytes({...tuple, netns: lonely.netns.inode});
      // netns 0: the agent did not record the namespace; the tool looks in every namespace.
      const anyNetns = connTupleBytes({saddr: tcp.server.address, sport: tcp.server.port, daddr: tcp.client.address, dport: tcp.client.port});
      const map = set.createMap({name: `http_in_flight`, keySize: 48, valueSize: 8});
      set.fill(map, [[inNetns, Buffer.alloc(8)], [anyNetns, Buffer.alloc(8)]]);

      const capture = join(scratch, `scan.ndjson`);
      const run = inContainer(hostProc, [BIN, `scan`, `--proc-root`, hostProc, `--map-id`, String(map.id), `--recheck-delay`, `0`, `--capture`, capture]);
      assert.is(run.code, 0, `${run.stdout}\n${run.stderr}`);
      const records = parseLines(readFileSync(capture, `utf8`));
      const netns = records.find(record => record.type === `netns` && record.netnsInode === lonely.netns.inode);
      assert.ok(netns, `the process-less namespace is found`);
      assert.is(netns!.complete, true, JSON.stringify(netns));
      assert.match(netns!.readVia, new RegExp(`/root${lonely.netns.path}$`), `entered through a process's root: ${netns!.readVia}`);
      assert.not.match(netns!.readVia, new RegExp(`${hostProc}/1/root`), `not pid 1's (refused)`);
      const verdicts = new Map(records.filter(record => record.type === `verdict`).map(v => [v.keyHex, `${v.status}/${v.reason}`]));
      assert.is(verdicts.get(inNetns.toString(`hex`)), `alive/established`);
      assert.is(verdicts.get(anyNetns.toString(`hex`)), `alive/established`, `netns-0 entries are judged, not unknown`);

      // The capture script in the same container (-p the host's proc) reaches it the same way.
      const script = join(scratch, `capture.sh`);
      writeFileSync(script, captureScript());
      const out = join(scratch, `capture`);
      const captured = inContainer(hostProc, [`dash`, script, `-p`, hostProc, `-o`, out, `-d`, `0`, `-i`, String(map.id)]);
      assert.is(captured.code, 0, captured.stderr);
      assert.ok(existsSync(join(out, `netns`, String(lonely.netns.inode), `tcp`)), `the namespace's tables are captured: ${captured.stderr}`);
      const offline = await runCommand([`scan`, `--from`, out, `--map-id`, String(map.id), `--format`, `ndjson`, `--recheck-delay`, `0`]);
      assert.is(offline.code, 0, offline.stderr);
    } finally {
      set.cleanup();
      lonely.release();
      cleanupNetns();
      rmSync(scratch, {recursive: true, force: true});
    }
  });
}

test.run();
