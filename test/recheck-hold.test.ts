// recheck's leaked candidates wait for the second look in memory or on disk (verdicts in a spill
// file, keys in one file per map), and the re-read of a capture gives keys only (dumpMapKeys):
// each form must give exactly what the general path gives, and leave no temporary file behind.
import {cpSync, mkdtempSync, readdirSync, rmSync, writeFileSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {PassThrough} from 'node:stream';
import {fileURLToPath} from 'node:url';
import {test} from 'uvu';
import * as assert from 'uvu/assert';
import {defaultToolContext, type ToolContext} from '../src/context.ts';
import {dumpMapKeys, dumpMaps} from '../src/dump/index.ts';
import {SCHEMA_VERSION, type AnyRecord} from '../src/schema.ts';
import {liveSnapshots} from '../src/validate/index.ts';
import {recheck, type RecheckOptions} from '../src/validate/recheck.ts';
import {mapStats, netns, snapshotCloser, socketRecord, tupleKey} from './helpers/records.ts';

const NS = 4026531840;
const samples = (name: string) => fileURLToPath(new URL(`../samples/${name}`, import.meta.url));

function context(tmp: string): ToolContext {
  const ctx = defaultToolContext(new PassThrough(), {tmpDir: tmp});
  ctx.log = {...ctx.log, warn: () => {}, info: () => {}, debug: () => {}};
  return ctx;
}

async function lines(ctx: ToolContext, input: Array<object>, options: RecheckOptions): Promise<string> {
  async function* records() {
    yield* input as Array<AnyRecord>;
  }
  let out = ``;
  for await (const record of recheck(ctx, records(), options))
    out += `${JSON.stringify(record)}\n`;
  return out;
}

function withTmp<T>(run: (tmp: string) => Promise<T>): Promise<T> {
  const tmp = mkdtempSync(join(tmpdir(), `usmld-recheck-hold-`));
  return run(tmp).finally(() => rmSync(tmp, {recursive: true, force: true}));
}

for (const name of [`bpftool`, `bpftool-edge`, `bpftool-by-name`, `system-probe`]) {
  test(`dumpMapKeys (--from samples/dump/${name}) visits every entry's key, in order, around the same map and mapstats records as dumpMaps`, async () => {
    const ctx = context(tmpdir());
    const from = [samples(`dump/${name}`)];
    const general: Array<string> = [];
    for await (const record of dumpMaps(ctx, {from}))
      general.push(record.type === `entry` ? `key ${record.mapId} ${record.keyHex}` : JSON.stringify(record));
    const keysOnly: Array<string> = [];
    const visit = (mapId: number, bytes: Uint8Array, length: number) => keysOnly.push(`key ${mapId} ${Buffer.from(bytes.buffer, bytes.byteOffset, length).toString(`hex`)}`);
    for await (const batch of dumpMapKeys(ctx, {from}, visit)) {
      for (const record of batch)
        keysOnly.push(JSON.stringify(record));
    }
    assert.ok(general.filter(line => line.startsWith(`key `)).length >= 5);
    assert.equal(keysOnly, general);
  });
}

/**
 * Candidates that a held or spilled form could damage: unknown fields, unicode, a long key, an
 * empty one, a key twice in one map, 40 maps interleaved. (Records as the reader lets them in:
 * the spill file is read back with the same checks.)
 */
function awkwardCandidates(): Array<Record<string, any>> {
  const out: Array<Record<string, any>> = [];
  for (let n = 0; n < 400; n++) {
    const mapId = 100 + (n * 7) % 40;
    let keyHex = (n * 2654435761 >>> 0).toString(16).padStart(8, `0`).repeat(6);
    if (n % 50 === 3)
      keyHex = `ab`.repeat(20_000);
    else if (n % 50 === 6)
      keyHex = ``;
    else if (n % 50 === 7)
      keyHex = out.filter(c => c.mapId === mapId && c.status === `leaked`)[0]?.keyHex ?? keyHex;
    const key = tupleKey({saddr: `10.0.${n >> 8}.${n & 255}`, sport: 30000 + n, daddr: `10.9.9.9`, dport: 443});
    out.push({
      type: `verdict`, v: SCHEMA_VERSION, mapId, map: n % 3 === 0 ? `http_in_flight` : `карта ☃ ${mapId}`, keyHex, key,
      valueHex: `00`.repeat(n % 11), status: `leaked`, reason: `no_connection_any_namespace`, checks: 1,
      ...(n % 4 === 0 ? {futureField: {nested: [n, `ü`, null, true]}, zeta: `\u2028`} : {}),
      ...(n % 9 === 0 ? {owner: {pid: n, comm: `w\u00e9b\t"q"`}} : {}),
    });
    // Something to pass straight through between the candidates.
    if (n % 17 === 0)
      out.push({type: `verdict`, v: SCHEMA_VERSION, mapId, map: `http_in_flight`, keyHex: `ff${n.toString(16).padStart(4, `0`)}`, key: null, status: `unknown`, reason: `no_snapshot`, checks: 1});
  }
  return out;
}

test(`held in memory or spilled to disk, the candidates come back byte for byte, with the same outcomes`, async () => {
  const candidates = awkwardCandidates();
  const leaked = candidates.filter(c => c.status === `leaked`);
  // The re-read: every third candidate's key is still there, maps interleaved; map 139 stops early.
  const reread = leaked.filter((_, n) => n % 3 === 0);
  const mapIds = [...new Set(leaked.map(c => c.mapId))];
  const lookAgain = async function* () {
    yield* [netns(NS, [1]), socketRecord({laddr: `10.9.9.9`, lport: 443}), snapshotCloser(`conns`), snapshotCloser(`pids`)] as Array<AnyRecord>;
    for (const c of reread)
      yield {type: `entry`, v: SCHEMA_VERSION, mapId: c.mapId, map: c.map, keyHex: c.keyHex, key: null} as AnyRecord;
    for (const mapId of mapIds)
      yield mapStats(mapId, ``, 0, mapId === 139 ? {complete: false} : {}) as AnyRecord;
  };
  const outputs: Array<string> = [];
  for (const holdInMemory of [1_000_000, 0, 1, 37]) {
    await withTmp(async tmp => {
      outputs.push(await lines(context(tmp), candidates, {delayMs: 0, lookAgain, holdInMemory}));
      assert.equal(readdirSync(tmp), [], `nothing left in TMPDIR (hold ${holdInMemory})`);
    });
  }
  for (const output of outputs.slice(1))
    assert.ok(output === outputs[0], `the same bytes whatever was held where`);
  const verdicts = outputs[0].trim().split(`\n`).map(line => JSON.parse(line)).filter(r => r.type === `verdict` && r.checks === 2);
  assert.is(verdicts.length, leaked.length);
  const stillThere = new Set(reread.map(c => `${c.mapId} ${c.keyHex}`));
  verdicts.forEach((after, n) => {
    const before = leaked[n];
    assert.is(after.keyHex, before.keyHex);
    const resolved = before.mapId !== 139 && !stillThere.has(`${before.mapId} ${before.keyHex}`);
    assert.is(after.status === `resolved`, resolved, `${before.mapId} ${before.keyHex.slice(0, 40)}`);
    // Everything but the outcome is the record as it came in.
    assert.equal({...after, status: 0, reason: 0, checks: 0, match: 0, owner: 0}, {...before, status: 0, reason: 0, checks: 0, match: 0, owner: 0});
  });
});

test(`recheck --later CAPTURE_DIR (keys only) gives the same bytes as the same later look read as NDJSON records`, async () => {
  await withTmp(async tmp => {
    const ctx = context(tmp);
    const capture = join(tmp, `capture`);
    cpSync(samples(`proc/capture`), capture, {recursive: true, verbatimSymlinks: true});
    cpSync(samples(`dump/bpftool/maps`), join(capture, `maps`), {recursive: true});
    // Every entry of the capture leaked at the first look, plus keys it does not have, a key twice, and a map it does not have.
    const entries: Array<Record<string, any>> = [];
    for await (const record of dumpMaps(ctx, {from: [capture]})) {
      if (record.type === `entry`)
        entries.push(record);
    }
    const candidates: Array<Record<string, any>> = [];
    entries.forEach((entry, n) => {
      candidates.push({type: `verdict`, v: SCHEMA_VERSION, mapId: entry.mapId, map: entry.map, keyHex: entry.keyHex, key: entry.key, status: `leaked`, reason: `no_connection_any_namespace`, checks: 1});
      candidates.push({...candidates[candidates.length - 1], keyHex: n % 2 === 0 ? `00`.repeat(48) : entry.keyHex.replace(/.$/, (c: string) => (c === `0` ? `1` : `0`))});
    });
    candidates.push({...candidates[0]}, {...candidates[1], mapId: 4242});
    const mapIds = [...new Set(candidates.map(c => c.mapId))];
    // The same later look as records, in the order the capture directory gives it.
    let later = ``;
    for await (const record of liveSnapshots(ctx, capture))
      later += `${JSON.stringify(record)}\n`;
    for await (const record of dumpMaps(ctx, {from: [capture], mapIds}))
      later += `${JSON.stringify(record)}\n`;
    const laterFile = join(tmp, `later.ndjson`);
    writeFileSync(laterFile, later);
    const outputs: Array<string> = [];
    for (const holdInMemory of [1_000_000, 1]) {
      for (const look of [capture, laterFile])
        outputs.push(await lines(ctx, candidates, {later: look, holdInMemory}));
    }
    assert.equal(readdirSync(tmp).sort(), [`capture`, `later.ndjson`], `no temporary file left`);
    const statuses = outputs[0].trim().split(`\n`).map(line => JSON.parse(line)).filter(r => r.type === `verdict`).map(r => r.status);
    assert.ok(statuses.includes(`resolved`) && statuses.includes(`leaked`), statuses.join());
    for (const output of outputs.slice(1))
      assert.ok(output === outputs[0], `the same bytes`);
  });
});

test(`past the memory limit, the keys of maps first seen after it go to disk as well`, async () => {
  await withTmp(async tmp => {
    const candidate = (mapId: number, n: number) => ({
      type: `verdict`, v: SCHEMA_VERSION, mapId, map: `http_in_flight`, keyHex: n.toString(16).padStart(96, `0`), key: null,
      status: `leaked`, reason: `no_connection_any_namespace`, checks: 1,
    });
    // Map 1 passes the limit; maps 2 and 3 come after, with more than a write buffer of keys each.
    const candidates = [candidate(1, 0), candidate(1, 1), ...[2, 3].flatMap(mapId => Array.from({length: 3000}, (_, n) => candidate(mapId, n)))];
    let keyFiles: Array<string> = [];
    const lookAgain = async function* () {
      const dir = readdirSync(tmp).find(name => name.startsWith(`usmld-recheck-`))!;
      keyFiles = readdirSync(join(tmp, dir)).sort();
      yield* [snapshotCloser(`conns`), snapshotCloser(`pids`)] as Array<AnyRecord>;
    };
    await lines(context(tmp), candidates, {delayMs: 0, lookAgain, holdInMemory: 1});
    assert.equal(keyFiles, [`keys-1.bin`, `keys-2.bin`, `keys-3.bin`]);
    assert.equal(readdirSync(tmp), []);
  });
});

test(`a failure during the second look leaves no temporary file (verdicts and keys spilled)`, async () => {
  await withTmp(async tmp => {
    const candidates = awkwardCandidates();
    let sawSpill = false;
    const lookAgain = async function* () {
      sawSpill = readdirSync(tmp).length > 0;
      yield snapshotCloser(`conns`) as AnyRecord;
      throw new Error(`the second look broke`);
    };
    const failure = await lines(context(tmp), candidates, {delayMs: 0, lookAgain, holdInMemory: 3}).then(() => null, (err: Error) => err);
    assert.match(String(failure), /the second look broke/);
    assert.ok(sawSpill, `spilled before the failure`);
    assert.equal(readdirSync(tmp), []);
  });
});

test.run();
