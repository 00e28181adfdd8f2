// dump-maps writes entry lines as bytes straight from the raw bytes (src/dump/entryLine.ts): each
// must be exactly the text of the record toEntry builds, JSON.stringify'd, for every layout of the
// catalogue, v4 and v6 tuples (zero runs, v4-mapped), per-CPU values, dated values (older and
// newer than the read), extras (signed, u64), pid keys with high halves past 2^53, and keys that do
// not decode (those must go the record way: -1). Lines are written at odd offsets of a dirty
// buffer, so a byte the writer forgets shows.
import {test} from 'uvu';
import * as assert from 'uvu/assert';
import {CATALOGUE, CONN_TUPLE_SIZE, type CatalogueMap, type KeyLayout} from '../src/catalogue.ts';
import {emptyRawEntry, type RawEntry} from '../src/dump/entry.ts';
import {lineBound, linePlan, putEntryLine, type LinePlan} from '../src/dump/entryLine.ts';
import {toEntry, type Dating} from '../src/dump/index.ts';
import type {Target} from '../src/dump/layout.ts';
import {rng} from './helpers/random.ts';

function target(map: CatalogueMap, layout: KeyLayout, keySize: number): Target {
  return {
    listed: {id: 7, name: map.name.slice(0, 15), type: `hash`, keySize, valueSize: 16, maxEntries: 1024, holders: []} as unknown as Target[`listed`],
    catalogue: map, order: 0, layout, ages: [], ageNames: [],
  };
}

/** Key bytes that exercise the decoder: random, zero runs in v6 addresses, v4-mapped, high u64 halves. */
function keyBytes(random: () => number, size: number, layout: KeyLayout): Buffer {
  const key = Buffer.alloc(size);
  for (let i = 0; i < size; i++)
    key[i] = random() < 0.4 ? 0 : Math.floor(random() * 256);
  if (layout.keyKind === `conn_tuple`) {
    const off = layout.tupleOffset ?? 0;
    if (off + CONN_TUPLE_SIZE <= size) {
      const shape = Math.floor(random() * 4);
      if (shape === 0)
        key.fill(0, off, off + 12);
      if (shape === 1) {
        key.fill(0, off, off + 10);
        key[off + 10] = 0xff;
        key[off + 11] = 0xff;
      }
      if (shape === 2)
        key.fill(0, off + 16, off + 32);
    }
  }
  return key;
}

function raw(key: Buffer, value: Buffer | null, perCpu: boolean, cpus: number, valueLength: number): RawEntry {
  const entry = emptyRawEntry();
  entry.key = key;
  entry.keyLength = key.length;
  entry.value = value;
  entry.valueLength = valueLength;
  entry.perCpu = perCpu;
  entry.cpus = cpus;
  entry.valueStride = (valueLength + 7) & ~7;
  entry.formatted = true;
  return entry;
}

const buffer = Buffer.alloc(64 * 1024);
const out = {buffer, view: new DataView(buffer.buffer, buffer.byteOffset, buffer.length)};

/** The line putEntryLine writes for `entry`, or null when it declines; checks it kept to lineBound. */
function entryLine(plan: LinePlan, entry: RawEntry, random: () => number = Math.random): string | null {
  buffer.fill(0xa5);
  const at = Math.floor(random() * 1000);
  const end = putEntryLine(out, at, plan, entry);
  if (end < 0)
    return null;
  assert.ok(end - at <= lineBound(plan, entry), `line of ${end - at} bytes, bound ${lineBound(plan, entry)}`);
  assert.is(buffer[at - 1] ?? 0xa5, 0xa5);
  return buffer.toString(`utf8`, at, end);
}

test(`entry lines equal the record's JSON for every layout of the catalogue`, () => {
  const random = rng(20261127);
  let lines = 0;
  for (const map of CATALOGUE) {
    for (const layout of [map, ...(map.older ?? [])]) {
      const sizes = [layout.keySize, layout.keySize + 8, Math.max(1, layout.keySize - 4)];
      for (const keySize of sizes) {
        const t = target(map, layout, keySize);
        const datings: Array<Dating | null> = [null, {readNs: 5e12, ages: [[`updated`, 0], [`request_started`, 8]], names: []}];
        for (const dating of datings) {
          const plan = linePlan(t.listed.id, map.name, layout, undefined, dating);
          for (let n = 0; n < 40; n++) {
            const key = keyBytes(random, keySize, layout);
            const valueLength = [0, 8, 16, 20][n % 4];
            const perCpu = n % 5 === 0;
            const cpus = perCpu ? [1, 2, 64, 0, 3][(n / 5) % 5] : 0;
            const value = n % 7 === 0 ? null : Buffer.alloc(perCpu ? cpus * ((valueLength + 7) & ~7) : valueLength);
            if (value !== null) {
              for (let i = 0; i < value.length; i++)
                value[i] = Math.floor(random() * 256);
              // Dated fields: older than the read, newer (age 0), or unset (no age).
              if (n % 3 === 0 && value.length >= 8)
                value.writeBigUInt64LE(BigInt(Math.floor(random() * 6e12)), 0);
              if (n % 3 === 1 && value.length >= 16)
                value.fill(0, 0, 16);
            }
            const entry = raw(key, value, perCpu, cpus, valueLength);
            const expected = `${JSON.stringify(toEntry(entry, {bytes: key, length: key.length, error: undefined}, t, map.name, undefined, dating))}\n`;
            const line = plan === null ? null : entryLine(plan, entry, random);
            if (line !== null) {
              assert.is(line, expected, `${map.name} key ${key.toString(`hex`)}`);
              lines++;
            } else {
              // The record way is taken only for keys that do not decode or shapes the plan excludes.
              assert.ok(plan === null || expected.includes(`"keyError"`), `${map.name}: a decodable entry went the record way`);
            }
          }
        }
      }
    }
  }
  assert.ok(lines > 1000, `${lines} lines compared`);
});

test(`maps whose entries need escaping or a problem go the record way`, () => {
  const map = CATALOGUE.find(entry => entry.keyKind === `conn_tuple`)!;
  assert.is(linePlan(1, `odd"name`, map, undefined, null), null);
  assert.is(linePlan(1, map.name, map, `key size mismatch`, null), null);
  assert.is(linePlan(1, map.name, null, undefined, null), null);
  const plan = linePlan(1, map.name, map, undefined, null)!;
  const btfKey = raw(Buffer.alloc(48), null, false, 0, 0);
  btfKey.key = null;
  btfKey.keyBtf = {saddr_h: 0};
  assert.is(entryLine(plan, btfKey), null);
});

test.run();
