// Re-records the dump-maps samples from real maps (root + bpftool needed):
//   node_modules/.bin/tsx samples/dump/record.ts
// It builds the test fixture's maps (test/fixtures/bpf/maps.ts), saves bpftool's own output for
// them, derives the system-probe and edge-case samples from those bytes, removes the maps, and
// rewrites every golden.ndjson with the current code (review the diff before committing).
import {execFileSync} from 'node:child_process';
import {mkdirSync, rmSync, writeFileSync} from 'node:fs';
import {join} from 'node:path';
import {fileURLToPath} from 'node:url';
import {BpfTestSet} from '../../test/helpers/bpf.ts';
import {buildFixtureMaps, type FixtureMap} from '../../test/fixtures/bpf/maps.ts';
import {runCommand, parseLines, withoutHeader} from '../../test/helpers/cli.ts';

const here = fileURLToPath(new URL(`.`, import.meta.url));

function reset(dir: string): string {
  rmSync(dir, {recursive: true, force: true});
  mkdirSync(join(dir, `maps`), {recursive: true});
  return join(dir, `maps`);
}

// ---------------------------------------------------------------------------------------------
// system-probe's format, written from the key/value bytes (its Go BTF dumper: struct members in
// alphabetical order, integers as bare JSON numbers, u64 included; hex string arrays without BTF).

type Field = readonly [name: string, offset: number, size: 2 | 4 | 8, signed?: boolean];
const TUPLE: Array<Field> = [[`daddr_h`, 16, 8], [`daddr_l`, 24, 8], [`dport`, 34, 2], [`metadata`, 44, 4], [`netns`, 36, 4], [`pid`, 40, 4], [`saddr_h`, 0, 8], [`saddr_l`, 8, 8], [`sport`, 32, 2]];

function int(b: Buffer, offset: number, size: number, signed = false): string {
  if (size === 8)
    return b.readBigUInt64LE(offset).toString();
  if (size === 4)
    return String(signed ? b.readInt32LE(offset) : b.readUInt32LE(offset));
  return String(b.readUInt16LE(offset));
}

function struct(b: Buffer, base: number, fields: Array<Field>): string {
  return `{${fields.map(([name, offset, size, signed]) => `"${name}":${int(b, base + offset, size, signed)}`).join(`,`)}}`;
}

const BTF_KEYS: Record<string, (b: Buffer) => string> = {
  connection_protocol: b => struct(b, 0, TUPLE),
  http2_incomplete_frames: b => struct(b, 0, TUPLE),
  http2_in_flight: b => `{"stream_id":${b.readUInt32LE(48)},"tup":${struct(b, 0, TUPLE)}}`,
  http2_dynamic_table: b => `{"index":${b.readBigUInt64LE(0)},"tup":${struct(b, 8, TUPLE)}}`,
  kafka_in_flight: b => `{"correlation_id":${b.readInt32LE(48)},"tuple":${struct(b, 0, TUPLE)}}`,
  ssl_ctx_by_pid_tgid: b => b.readBigUInt64LE(0).toString(),
};
const BTF_VALUES: Record<string, (b: Buffer) => string> = {
  connection_protocol: b => b.readBigUInt64LE(0).toString(),
  http2_incomplete_frames: b => String(b.readUInt32LE(0)),
  http2_in_flight: b => b.readBigUInt64LE(0).toString(),
  http2_dynamic_table: b => String(b.readUInt32LE(0)),
  kafka_in_flight: b => String(b.readUInt32LE(0)),
  ssl_ctx_by_pid_tgid: b => b.readBigUInt64LE(0).toString(),
};

const hexArray = (b: Buffer) => `[${[...b].map(byte => `"0x${byte.toString(16).padStart(2, `0`)}"`).join(`,`)}]`;

function systemProbeDump(f: FixtureMap, cpus: number): string {
  if (f.entries.length === 0)
    return `null\n`; // what `--pretty` prints for an empty map
  const name = f.catalogName!;
  const items = f.entries.map(entry => {
    const key = f.btf ? BTF_KEYS[name](entry.key) : hexArray(entry.key);
    const value = f.btf ? BTF_VALUES[name](entry.value) : hexArray(entry.value);
    const body = f.perCpu
      ? `"values": [${Array.from({length: cpus}, (_, cpu) => `{"cpu":${cpu},"value":${value}}`).join(`,`)}]`
      : `"value": ${value}`;
    return `{\n\t"key": ${key},\n\t${body}\n}`;
  });
  return `[${items.join(`,`)}]\n`;
}

const SP_TYPES: Record<string, string> = {hash: `Hash`, percpu_hash: `PerCPUHash`};

function systemProbeList(listing: Array<Record<string, any>>): string {
  return listing.map(m => `${m.id}: ${SP_TYPES[m.type] ?? m.type}  name ${m.name}  flags 0x${m.flags.toString(16)}\n    key ${m.bytes_key}B  value ${m.bytes_value}B  max_entries ${m.max_entries}\n`).join(``);
}

// ---------------------------------------------------------------------------------------------

async function golden(dir: string): Promise<void> {
  const run = await runCommand([`dump-maps`, `--from`, dir]);
  if (run.code !== 0)
    throw new Error(`dump-maps --from ${dir}: exit ${run.code}: ${run.stderr}`);
  const lines = withoutHeader(parseLines(run.stdout)).map(record => JSON.stringify(record));
  writeFileSync(join(dir, `golden.ndjson`), `${lines.join(`\n`)}\n`);
  console.log(`${dir}: ${lines.length} records${run.stderr ? `; stderr: ${run.stderr.trim()}` : ``}`);
}

async function main(): Promise<void> {
  const set = new BpfTestSet(`record`);
  try {
    const fixture = buildFixtureMaps(set);
    const ids = new Set(fixture.map(f => f.map.id));
    const listing = (JSON.parse(execFileSync(`bpftool`, [`-j`, `map`, `show`], {encoding: `utf8`})) as Array<Record<string, any>>)
      .filter(map => ids.has(map.id));
    const dumps = new Map<number, string>();
    for (const f of fixture)
      dumps.set(f.map.id, execFileSync(`bpftool`, [`-j`, `map`, `dump`, `id`, String(f.map.id)], {encoding: `utf8`}));

    // 1. bpftool, verbatim: hex maps, BTF `formatted` maps, per-CPU, duplicates, decoy, key-size mismatch.
    const bpftool = reset(join(here, `bpftool`));
    writeFileSync(join(bpftool, `list.json`), `${JSON.stringify(listing)}\n`);
    for (const [id, text] of dumps)
      writeFileSync(join(bpftool, `dump-${id}.json`), text);

    // 2. system-probe, written in its format from the same bytes (no system-probe binary here).
    const cpus = fixture.find(f => f.perCpu)!.entries.length > 0
      ? (JSON.parse(dumps.get(fixture.find(f => f.perCpu)!.map.id)!)[0].values as Array<unknown>).length
      : 2;
    const sp = reset(join(here, `system-probe`));
    writeFileSync(join(sp, `list.txt`), systemProbeList(listing));
    for (const f of fixture)
      writeFileSync(join(sp, `dump-${f.map.id}.json`), systemProbeDump(f, cpus));

    // 3. Edge cases, edited from the real bpftool output: holders (`pids`, which Debian's 7.1
    //    does not print), a failed lookup inside a dump, a repeated key, an error object instead of
    //    a dump, a truncated dump, and a listed map with no dump file.
    const edge = reset(join(here, `bpftool-edge`));
    const connStates = fixture.find(f => f.catalogName === `connection_states`)!;
    const readArgs = fixture.filter(f => f.catalogName === `ssl_read_args`);
    const h2 = fixture.find(f => f.catalogName === `http2_in_flight`)!;
    const dyn = fixture.find(f => f.catalogName === `http2_dynamic_table` && f.btf)!;
    const redis = fixture.find(f => f.catalogName === `redis_in_flight`)!;
    const chosen = [connStates, ...readArgs, h2, dyn, redis];
    const edgeListing = listing.filter(map => chosen.some(f => f.map.id === map.id)).map(map => ({
      ...map,
      pids: map.id === readArgs[1].map.id ? [{pid: 4321, comm: `system-probe`}] : [{pid: 1234, comm: `system-probe`}],
    }));
    writeFileSync(join(edge, `list.json`), `${JSON.stringify(edgeListing)}\n`);
    const cs = JSON.parse(dumps.get(connStates.map.id)!) as Array<Record<string, unknown>>;
    const withError = [cs[0], {key: cs[1].key, value: {error: `No such file or directory`}}, cs[2], cs[0], cs[3]];
    writeFileSync(join(edge, `dump-${connStates.map.id}.json`), `${JSON.stringify(withError)}\n`);
    writeFileSync(join(edge, `dump-${readArgs[0].map.id}.json`), dumps.get(readArgs[0].map.id)!);
    writeFileSync(join(edge, `dump-${readArgs[1].map.id}.json`), `{"error":"get map by id (${readArgs[1].map.id}): No such file or directory"}\n`);
    const h2Text = dumps.get(h2.map.id)!;
    writeFileSync(join(edge, `dump-${h2.map.id}.json`), h2Text.slice(0, Math.floor(h2Text.length * 0.6)));
    writeFileSync(join(edge, `dump-${redis.map.id}.json`), dumps.get(redis.map.id)!);
    // no dump-<dyn>.json: a capture that failed on that map

    // 4. `bpftool -j map dump name X` where two maps share the name: the one dump format that
    //    carries map ids in its content (so the file needs no dump-<ID> name), with the listing.
    const byName = reset(join(here, `bpftool-by-name`));
    writeFileSync(join(byName, `list.json`), `${JSON.stringify(listing.filter(map => readArgs.some(f => f.map.id === map.id)))}\n`);
    writeFileSync(join(byName, `ssl_read_args.json`), execFileSync(`bpftool`, [`-j`, `map`, `dump`, `name`, `ssl_read_args`], {encoding: `utf8`}));
  } finally {
    set.cleanup();
  }
  for (const name of [`bpftool`, `system-probe`, `bpftool-edge`, `bpftool-by-name`])
    await golden(join(here, name));
}

await main();
