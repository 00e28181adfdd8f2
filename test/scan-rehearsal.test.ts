// scan's rehearsal (src/scan/rehearsal.ts): before the real dump, the first entries of each map
// are read, judged and counted apart, so that V8 optimises the hot functions once for every
// map's kinds. It must leave no trace: the same report, the same verdicts, the same messages as
// a scan without it, no map fd left open; and the pieces it is made of (a validate that judges
// against an index already complete, a dump that stops each map early) must do what they say.
import {PassThrough} from 'node:stream';
import {test} from 'uvu';
import * as assert from 'uvu/assert';
import {defaultToolContext, createLogger} from '../src/context.ts';
import {dumpMapBatches} from '../src/dump/index.ts';
import {GROUP_FIELDS} from '../src/report/aggregate.ts';
import type {ReportModel} from '../src/report/model.ts';
import {scan, type ScanOptions} from '../src/scan/index.ts';
import {SCHEMA_VERSION, type AnyRecord, type EntryRecord} from '../src/schema.ts';
import {validateBatches} from '../src/validate/index.ts';
import {SnapshotIndex} from '../src/validate/snapshotIndex.ts';
import {openMapFds} from './helpers/bpf.ts';
import {bpfUnavailable, netnsUnavailable, requirePrivileges} from './helpers/privileges.ts';
import {assertArrangedVerdicts, buildUsmWorld} from './helpers/usmWorld.ts';

const HOST = {hostname: `rehearsal-test-host`, kernel: `6.1.0-test`};

/**
 * The model without what depends on when the run read the host, or on what else the host ran
 * meanwhile: times, ages, process and socket states, the socket and namespace counts.
 */
function untimed(model: ReportModel): string {
  return JSON.stringify(model, (key, value) => (/time|Ms$|Ns$|age|^state$|^snapshots$|^namespace/i.test(key) ? undefined : value));
}

/** Records without what depends on when they were read. */
function untimedRecords(records: ReadonlyArray<AnyRecord>): Array<string> {
  return records.map(record => JSON.stringify(record, (key, value) => (/time|Ms$|Ns$|age/i.test(key) ? undefined : value)));
}

test(`validate judges against an index given complete from the first entry, as after the same snapshot records in its input`, async () => {
  const snapshots: Array<AnyRecord> = [
    {type: `netns`, v: SCHEMA_VERSION, netnsInode: 4026531840, complete: true, pids: [1]} as unknown as AnyRecord,
    {type: `socket`, v: SCHEMA_VERSION, netnsInode: 4026531840, proto: `tcp`, family: `v4`, listedFamily: `v4`, laddr: `10.0.0.1`, lport: 40000, raddr: `10.0.0.2`, rport: 443, state: `ESTABLISHED`, inode: 77, uid: 0},
    {type: `snapshot`, v: SCHEMA_VERSION, of: `conns`, complete: true, count: 1, timeMs: 0} as unknown as AnyRecord,
    {type: `process`, v: SCHEMA_VERSION, pid: 1, tids: [1], state: `S`, comm: `init`, netnsInode: 4026531840} as unknown as AnyRecord,
    {type: `snapshot`, v: SCHEMA_VERSION, of: `pids`, complete: true, count: 1, timeMs: 0} as unknown as AnyRecord,
  ];
  const tuple = (sport: number) => ({
    kind: `conn_tuple`, family: `v4`, proto: `tcp`, saddr: `10.0.0.1`, sport, daddr: `10.0.0.2`, dport: 443, src: `10.0.0.1:${sport}`, dst: `10.0.0.2:443`,
    netns: 4026531840, pid: 1, metadata: 1,
  });
  const entries = (): Array<EntryRecord> => [40000, 40001].map(sport => ({
    type: `entry`, v: SCHEMA_VERSION, mapId: 7, map: `connection_stats`, keyHex: `00`, key: tuple(sport),
  }) as unknown as EntryRecord);
  const ctx = defaultToolContext(new PassThrough(), {host: HOST});
  const judge = async (input: Array<Array<AnyRecord>>, index?: SnapshotIndex) => {
    async function* batches() {
      yield* input;
    }
    const out: Array<AnyRecord> = [];
    for await (const batch of validateBatches(ctx, batches(), {live: `never`, index}))
      out.push(...batch.filter(record => record.type === `verdict`));
    return out;
  };
  const inline = await judge([snapshots, entries()]);
  const index = new SnapshotIndex();
  for (const record of snapshots)
    index.add(record);
  assert.ok(index.isComplete);
  const given = await judge([entries()], index);
  assert.equal(given.map(v => `${(v as {status: string}).status}/${(v as {reason: string}).reason}`), [`alive/established`, `leaked/no_connection`]);
  assert.equal(untimedRecords(given), untimedRecords(inline));
});

const canRun = requirePrivileges(`scan-rehearsal`, bpfUnavailable() ?? netnsUnavailable());

if (canRun) {
  test(`scan: the rehearsal leaves no trace (the same report, verdicts and messages as without it, no map fd left open)`, async () => {
    // Made-up leaks fill connection_protocol: more entries than a rehearsal reads of it.
    const world = await buildUsmWorld(`rehearsal`, {namespace: true, ipv6Edges: true, fakeConnections: 300});
    try {
      const mapIds = world.maps.map(map => map.id);
      const fdsBefore = openMapFds();
      const run = async (rehearse: boolean, observe: boolean) => {
        const stderr = new PassThrough();
        let said = ``;
        stderr.on(`data`, chunk => { said += String(chunk); });
        const records: Array<AnyRecord> = [];
        const ctx = defaultToolContext(stderr, {host: HOST, log: createLogger(stderr, {verbosity: 2})});
        const options: ScanOptions = {
          dump: {mapIds}, recheckDelaySeconds: 0, samples: 3, groupBy: [...GROUP_FIELDS], rehearse,
          ...(observe ? {observe: (record: AnyRecord) => { records.push(record); }} : {}),
        };
        const result = await scan(ctx, options);
        assert.is(openMapFds(), fdsBefore, `no map fd left open (rehearse ${rehearse})`);
        return {result, said, records};
      };
      // What other runs on the host (namespaces, processes coming and going between the two
      // scans) may change is left out; a pair that still differs is run again, twice at most: a
      // rehearsal that leaves a trace differs every time.
      const messages = (text: string) => text.split(`\n`).filter(line => !/^debug: (rehearsal|validate: snapshots complete)|\d+ ?ms\b|fd\/ of \d+ process/.test(line));
      const verdicts = (records: ReadonlyArray<AnyRecord>) => records.flatMap(record => (record.type === `verdict` && mapIds.includes(record.mapId) ? [`${record.map}:${record.keyHex}:${record.status}/${record.reason}`] : []));
      for (const observe of [false, true]) {
        const differences: Array<string> = [];
        for (let attempt = 0; attempt < 3; attempt++) {
          differences.length = 0;
          const plain = await run(false, observe);
          const rehearsed = await run(true, observe);
          const judged = /rehearsal: (\d+) entries read, judged and counted apart/.exec(rehearsed.said);
          assert.ok(judged !== null && Number(judged[1]) > 0, `the rehearsal ran: ${rehearsed.said}`);
          assert.ok(Number(judged![1]) < 300, `the rehearsal read only the first entries of each map (${judged![1]})`);
          if (untimed(rehearsed.result.model) !== untimed(plain.result.model))
            differences.push(`report: ${untimed(rehearsed.result.model)}\n  vs ${untimed(plain.result.model)}`);
          if (rehearsed.result.records !== plain.result.records)
            differences.push(`records: ${rehearsed.result.records} vs ${plain.result.records}`);
          if (JSON.stringify(messages(rehearsed.said)) !== JSON.stringify(messages(plain.said)))
            differences.push(`messages: ${JSON.stringify(messages(rehearsed.said))}\n  vs ${JSON.stringify(messages(plain.said))}`);
          if (observe) {
            assertArrangedVerdicts(world, rehearsed.records as Array<Record<string, any>>);
            assert.is(verdicts(rehearsed.records).length, world.expected.size);
            if (JSON.stringify(verdicts(rehearsed.records)) !== JSON.stringify(verdicts(plain.records)))
              differences.push(`verdicts differ`);
          }
          if (differences.length === 0)
            break;
        }
        assert.equal(differences, [], `the same report, records, messages and verdicts with and without the rehearsal (observe ${observe})`);
      }
      // Told to use bpftool, scan makes no bpf() call of its own: no rehearsal.
      const stderr = new PassThrough();
      let said = ``;
      stderr.on(`data`, chunk => { said += String(chunk); });
      const viaBpftool = defaultToolContext(stderr, {host: HOST, log: createLogger(stderr, {verbosity: 2})});
      await scan(viaBpftool, {dump: {mapIds, backend: `bpftool`}, recheckDelaySeconds: 0, samples: 3, groupBy: [`reason`]});
      assert.not.match(said, /rehearsal/, `no rehearsal with --backend bpftool`);
      assert.match(said, /listing maps with bpftool/);
    } finally {
      await world.cleanup();
    }
  });

  test(`dump: entriesPerMap stops each map after the read that reached it, and says the map is incomplete`, async () => {
    const world = await buildUsmWorld(`per-map`, {fakeConnections: 300});
    try {
      const fdsBefore = openMapFds();
      const ctx = defaultToolContext(new PassThrough(), {host: HOST});
      const counts = new Map<number, number>();
      const stats: Array<Record<string, any>> = [];
      for await (const batch of dumpMapBatches(ctx, {mapIds: world.maps.map(map => map.id), backend: `kernel`, batchEntries: 16, entriesPerMap: 16})) {
        for (const record of batch) {
          if (record.type === `entry`)
            counts.set(record.mapId, (counts.get(record.mapId) ?? 0) + 1);
          else if (record.type === `mapstats`)
            stats.push(record);
        }
      }
      const big = world.maps.find(map => map.catalogName === `connection_protocol`)!;
      assert.ok(counts.get(big.id)! >= 16 && counts.get(big.id)! < 300, `the first read of a 300+ entry map only (${counts.get(big.id)})`);
      const bigStats = stats.find(record => record.mapId === big.id)!;
      assert.is(bigStats.complete, false);
      assert.match(bigStats.error, /stopped after the first \d+ entries \(entriesPerMap\)/);
      assert.is(openMapFds(), fdsBefore, `no map fd left open`);
    } finally {
      await world.cleanup();
    }
  });
}

test.run();
