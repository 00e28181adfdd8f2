// dump-maps' rehearsal (src/dump/rehearsal.ts): before the real dump, the first entries of each
// map are read and written apart, so that V8 optimises the line writer once for every map's
// kinds. It must leave no trace: the same output as a dump without it, nothing on stdout, no map
// fd left open; and it must happen only when the dump itself reads with bpf().
import {PassThrough} from 'node:stream';
import {test} from 'uvu';
import * as assert from 'uvu/assert';
import {defaultToolContext} from '../src/context.ts';
import {dumpMapText, type DumpOptions} from '../src/dump/index.ts';
import {kernelMayRead, rehearseDumpText, REHEARSAL_ENTRIES} from '../src/dump/rehearsal.ts';
import {openMapFds} from './helpers/bpf.ts';
import {runCommand} from './helpers/cli.ts';
import {bpfUnavailable, requirePrivileges} from './helpers/privileges.ts';
import {buildUsmWorld} from './helpers/usmWorld.ts';

const HOST = {hostname: `dump-rehearsal-test-host`, kernel: `6.1.0-test`};

test(`kernelMayRead: only when the dump itself would read with bpf()`, () => {
  const cases: Array<[DumpOptions, boolean]> = [
    [{}, true],
    [{backend: `kernel`}, true],
    [{backend: `bpftool`}, false],
    [{backend: `system-probe`}, false],
    [{bpftoolPath: `/usr/sbin/bpftool`}, false],
    [{systemProbePath: `/opt/datadog-agent/embedded/bin/system-probe`}, false],
    [{backend: `kernel`, bpftoolPath: `/usr/sbin/bpftool`}, true],
    [{from: [`capture/`]}, false],
    [{from: []}, true],
  ];
  for (const [options, expected] of cases)
    assert.is(kernelMayRead(options), expected, JSON.stringify(options));
});

const canRun = requirePrivileges(`dump-rehearsal`, bpfUnavailable());

if (canRun) {
  test(`dump-maps: the rehearsal writes only the first entries, apart, and the dump after it is the same as without it`, async () => {
    // Made-up leaks fill connection_protocol: more entries than a rehearsal reads of it.
    const world = await buildUsmWorld(`dump-rehearsal`, {ipv6Edges: true, fakeConnections: 300});
    try {
      const mapIds = world.maps.map(map => map.id);
      const fdsBefore = openMapFds();
      const ctx = defaultToolContext(new PassThrough(), {host: HOST});
      const text = async () => {
        const chunks: Array<string> = [];
        for await (const chunk of dumpMapText(ctx, {mapIds, backend: `kernel`}))
          chunks.push(chunk.toString(`utf8`));
        // When they were read aside (the maps' values here are not dated).
        return chunks.join(``).replace(/,"monotonicNs":"\d+"/g, ``);
      };
      const plain = await text();
      const bytes = await rehearseDumpText(ctx, {mapIds});
      assert.is(openMapFds(), fdsBefore, `no map fd left open by the rehearsal`);
      const entryLines = plain.split(`\n`).filter(line => line.startsWith(`{"type":"entry"`));
      assert.ok(entryLines.length > world.maps.length * REHEARSAL_ENTRIES, `more entries than a rehearsal reads (${entryLines.length})`);
      assert.ok(bytes > 0, `the rehearsal wrote lines`);
      assert.ok(bytes < plain.length / 2, `the rehearsal wrote only the first entries of each map (${bytes} of ${plain.length} bytes)`);
      assert.is(await text(), plain, `the same dump after a rehearsal`);
      assert.is(openMapFds(), fdsBefore, `no map fd left open`);

      // The command: the rehearsal said on stderr, nothing of it on stdout; none with bpftool.
      const ids = world.mapIdArgs;
      const rehearsed = await runCommand([`dump-maps`, `-vv`, ...ids, `--no-download`]);
      assert.is(rehearsed.code, 0, rehearsed.stderr);
      assert.match(rehearsed.stderr, /rehearsal: [1-9]\d* bytes of the maps' first entries written apart/);
      const body = (stdout: string) => stdout.split(`\n`).slice(1).join(`\n`).replace(/,"monotonicNs":"\d+"/g, ``);
      assert.is(body(rehearsed.stdout), plain, `dump-maps prints the dump, and only the dump`);
      const viaBpftool = await runCommand([`dump-maps`, `-vv`, `--backend`, `bpftool`, ...ids, `--no-download`]);
      assert.is(viaBpftool.code, 0, viaBpftool.stderr);
      assert.not.match(viaBpftool.stderr, /rehearsal/, `no rehearsal with --backend bpftool`);
    } finally {
      await world.cleanup();
    }
  });
}

test.run();
