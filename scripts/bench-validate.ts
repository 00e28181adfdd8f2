// Throughput of `validate` on a million synthetic entries against the floor of merely reading and
// JSON.parse-ing the same NDJSON (both in this process, same split2 line splitting).
//   node_modules/.bin/tsx scripts/bench-validate.ts [ENTRIES]   (default 1,000,000)
// Prints CPU times (median of 3) and ratios against two floors: reading + JSON.parse alone, and a
// pass-through stage (read, parse, stringify, write through RecordWriter), which is the least any
// NDJSON-in, NDJSON-out stage can cost. The target is validate ≤ 2x the parse floor.
import {createReadStream, createWriteStream, mkdtempSync, rmSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {PassThrough} from 'node:stream';
import split2 from 'split2';
import {formatEndpoint} from '../src/addr.ts';
import {runCli} from '../commands/cli.ts';
import {RecordWriter, readRecords} from '../src/ndjson.ts';
import {SCHEMA_VERSION} from '../src/schema.ts';

const ENTRIES = Number(process.argv[2] ?? 1_000_000);
const SOCKETS = 100_000;
const PROCESSES = 20_000;
const NAMESPACES = 20;
const NS0 = 4026531840;

function ip(i: number): string {
  return `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
}

async function writeInput(path: string): Promise<void> {
  const out = createWriteStream(path);
  let buffer = ``;
  const put = async (record: object) => {
    buffer += `${JSON.stringify(record)}\n`;
    if (buffer.length > 1 << 20) {
      if (!out.write(buffer))
        await new Promise<void>(resolve => out.once(`drain`, () => resolve()));
      buffer = ``;
    }
  };
  for (let n = 0; n < NAMESPACES; n++)
    await put({type: `netns`, v: SCHEMA_VERSION, netnsInode: NS0 + n, foundBy: [`process`], pids: [n + 1], paths: [], readVia: `proc-pid:${n + 1}`, complete: true});
  for (let i = 0; i < SOCKETS; i++) {
    await put({type: `socket`, v: SCHEMA_VERSION, netnsInode: NS0 + (i % NAMESPACES), proto: `tcp`, family: `v4`, listedFamily: `v4`,
      laddr: ip(i), lport: 30000 + (i % 30000), raddr: ip(i + 1), rport: 443, state: `ESTABLISHED`, inode: 100000 + i, uid: 0});
  }
  await put({type: `snapshot`, v: SCHEMA_VERSION, of: `conns`, procRoot: `/proc`, time: ``, timeMs: 0, count: SOCKETS, complete: true});
  for (let p = 1; p <= PROCESSES; p++)
    await put({type: `process`, v: SCHEMA_VERSION, pid: p, tids: [p, p + 100000], state: `S`, startTime: 1, comm: `proc${p}`, netnsInode: NS0});
  await put({type: `snapshot`, v: SCHEMA_VERSION, of: `pids`, procRoot: `/proc`, time: ``, timeMs: 0, count: PROCESSES, complete: true});
  const hex = (n: number, bytes: number) => n.toString(16).padStart(bytes * 2, `0`);
  for (let e = 0; e < ENTRIES; e++) {
    if (e % 10 === 9) {
      const tgid = (e % (PROCESSES * 2)) + 1;
      const tid = e % 3 === 0 ? tgid + 100000 : tgid;
      await put({type: `entry`, v: SCHEMA_VERSION, mapId: 20, map: `ssl_ctx_by_pid_tgid`, keyHex: hex(tgid, 4) + hex(tid, 4), valueHex: hex(e, 8),
        key: {kind: `pid_tgid`, pidTgid: String(BigInt(tgid) << 32n | BigInt(tid)), tgid, tid}});
      continue;
    }
    // Half the tuples are live sockets (forward or reversed), half never existed.
    const i = e % (SOCKETS * 2);
    const saddr = ip(i), daddr = ip(i + 1), sport = 30000 + (i % 30000), dport = 443;
    const reversed = e % 4 === 0;
    const [s, sp, d, dp] = reversed ? [daddr, dport, saddr, sport] : [saddr, sport, daddr, dport];
    const netns = e % 3 === 0 ? 0 : NS0 + (i % NAMESPACES);
    await put({type: `entry`, v: SCHEMA_VERSION, mapId: 10 + (e % 4), map: `http_in_flight`, keyHex: hex(e, 24) + hex(i, 24), valueHex: hex(e, 8),
      key: {kind: `conn_tuple`, family: `v4`, proto: `tcp`, saddr: s, sport: sp, daddr: d, dport: dp, src: formatEndpoint(s, sp), dst: formatEndpoint(d, dp), netns, pid: 0, metadata: 1}});
  }
  out.end(buffer);
  await new Promise<void>(resolve => out.once(`finish`, () => resolve()));
}

async function parseFloor(path: string): Promise<number> {
  let records = 0;
  for await (const line of createReadStream(path).pipe(split2()) as AsyncIterable<string>) {
    if (line.length > 0 && JSON.parse(line))
      records++;
  }
  return records;
}

async function passThrough(path: string): Promise<void> {
  const writer = new RecordWriter(createWriteStream(`/dev/null`));
  for await (const record of readRecords(createReadStream(path), path, {onProblem: () => {}}))
    await writer.write(record);
  await writer.end();
}

async function runValidate(path: string): Promise<number> {
  const stdout = createWriteStream(`/dev/null`);
  const stderr = new PassThrough();
  stderr.resume();
  const code = await runCli([`validate`, `--no-live`, path], {stdin: new PassThrough(), stdout, stderr, env: process.env});
  stdout.end();
  return code;
}

/** CPU milliseconds (user + system) spent in fn: wall time is noise on a shared machine. */
async function time<T>(fn: () => Promise<T>): Promise<[number, T]> {
  const start = process.cpuUsage();
  const result = await fn();
  const used = process.cpuUsage(start);
  return [(used.user + used.system) / 1000, result];
}

const dir = mkdtempSync(join(tmpdir(), `usmld-bench-validate-`));
try {
  const input = join(dir, `input.ndjson`);
  await writeInput(input);
  const floors: Array<number> = [];
  const passes: Array<number> = [];
  const stages: Array<number> = [];
  for (let run = 0; run < 3; run++) {
    floors.push((await time(() => parseFloor(input)))[0]);
    passes.push((await time(() => passThrough(input)))[0]);
    const [ms, code] = await time(() => runValidate(input));
    if (code !== 0 && code !== 1)
      throw new Error(`validate exited ${code}`);
    stages.push(ms);
  }
  const median = (list: Array<number>) => list.slice().sort((a, b) => a - b)[Math.floor(list.length / 2)];
  const floor = median(floors);
  const stage = median(stages);
  const pass = median(passes);
  console.log(`entries ${ENTRIES}, sockets ${SOCKETS}, processes ${PROCESSES}, namespaces ${NAMESPACES}`);
  console.log(`read+JSON.parse: ${floor.toFixed(0)} ms CPU (${(ENTRIES / floor).toFixed(0)}k entries/s)`);
  console.log(`validate:        ${stage.toFixed(0)} ms CPU (${(ENTRIES / stage).toFixed(0)}k entries/s)`);
  console.log(`pass-through:    ${pass.toFixed(0)} ms CPU`);
  console.log(`ratio:           ${(stage / floor).toFixed(2)}x the parse floor, ${(stage / pass).toFixed(2)}x the pass-through floor`);
} finally {
  if (!process.env.KEEP) rmSync(dir, {recursive: true, force: true}); else console.log(dir);
}
