// The batch plumbing between stages: the NDJSON reader's batches (lines split across chunks, CRLF,
// a last line without newline) and recheck's compact candidate key set.
import {Readable} from 'node:stream';
import {test} from 'uvu';
import * as assert from 'uvu/assert';
import {batched, unbatched} from '../src/batch.ts';
import {readRecordBatches} from '../src/ndjson.ts';
import {SCHEMA_VERSION} from '../src/schema.ts';
import {HexKeySet, storeKey} from '../src/validate/keySet.ts';

async function readChunks(chunks: ReadonlyArray<string | Buffer>) {
  const problems: Array<string> = [];
  const batches = [];
  for await (const batch of readRecordBatches(Readable.from(chunks), `t`, {onProblem: p => problems.push(p)}))
    batches.push(batch);
  return {batches, records: batches.flat() as Array<Record<string, unknown>>, problems};
}

test(`lines split anywhere across chunks (even inside a UTF-8 character) read as whole records, in order`, async () => {
  const lines = Array.from({length: 50}, (_, n) => JSON.stringify({type: `x`, v: SCHEMA_VERSION, n, comm: `é€${n}`}));
  const bytes = Buffer.from(`${lines.join(`\n`)}\n`);
  for (const size of [1, 3, 7, 64, 1000, bytes.length]) {
    const chunks: Array<Buffer> = [];
    for (let at = 0; at < bytes.length; at += size)
      chunks.push(bytes.subarray(at, at + size));
    const {records, problems} = await readChunks(chunks);
    assert.equal(problems, []);
    assert.equal(records.map(r => r.n), lines.map((_, n) => n), `chunks of ${size} bytes`);
    assert.is(records[49].comm, `é€49`);
  }
});

test(`CRLF line ends, blank lines and a last line without newline; bad lines keep their line numbers`, async () => {
  const good = (n: number) => JSON.stringify({type: `x`, v: SCHEMA_VERSION, n});
  const {records, problems} = await readChunks([`${good(1)}\r\n\r\n{bad`, `\n${good(2)}\n  \n`, good(3)]);
  assert.equal(records.map(r => r.n), [1, 2, 3]);
  assert.is(problems.length, 1);
  assert.match(problems[0], /^t:3: not JSON/);
});

test(`one batch per chunk; batched/unbatched keep order and count`, async () => {
  const line = (n: number) => `${JSON.stringify({type: `x`, v: SCHEMA_VERSION, n})}\n`;
  const {batches} = await readChunks([line(1) + line(2), line(3), line(4) + line(5) + line(6)]);
  assert.equal(batches.map(b => b.length), [2, 1, 3]);
  const groups = [];
  for await (const group of batched([1, 2, 3, 4, 5, 6, 7], 3))
    groups.push(group);
  assert.equal(groups, [[1, 2, 3], [4, 5, 6], [7]]);
  const flat = [];
  for await (const n of unbatched((async function* () { yield* groups; })()))
    flat.push(n);
  assert.equal(flat, [1, 2, 3, 4, 5, 6, 7]);
});

test(`HexKeySet: exact membership and marks across growth; non-hex and uppercase text never meet hex`, () => {
  const keys = new HexKeySet();
  const hex = (n: number) => n.toString(16).padStart(8, `0`).repeat(12);
  for (let n = 0; n < 5000; n++)
    assert.is(keys.add(hex(n)), n);
  assert.is(keys.add(hex(42)), 42, `adding again gives the same index`);
  assert.is(keys.size, 5000);
  for (let n = 0; n < 5000; n += 7)
    assert.ok(keys.mark(hex(n)));
  assert.not.ok(keys.mark(hex(5000)));
  for (let n = 0; n < 5000; n++) {
    assert.ok(keys.has(hex(n)));
    assert.is(keys.isMarked(hex(n)), n % 7 === 0);
  }
  assert.not.ok(keys.has(hex(5001)));
  assert.not.ok(keys.has(`${hex(1)}00`), `a longer key`);
  assert.not.ok(keys.has(hex(1).slice(2)), `a shorter key`);
  keys.add(`abc`);
  keys.add(`00FF`);
  keys.add(``);
  assert.ok(keys.has(`abc`));
  assert.ok(keys.has(`00FF`));
  assert.not.ok(keys.has(`00ff`), `uppercase is a different key`);
  assert.ok(keys.has(``));
  assert.not.ok(keys.has(`00`));
  // Made the set of keys already stored (length, then storeKey's form), where they are; then of other keys.
  const stored = (texts: Array<string>) => {
    const buffer = Buffer.alloc(texts.reduce((sum, text) => sum + 5 + 3 * text.length, 0));
    let at = 0;
    for (const text of texts) {
      const length = storeKey(text, buffer, at + 4);
      buffer.writeUInt32LE(length, at);
      at += 4 + length;
    }
    return buffer.subarray(0, at);
  };
  const first = [hex(1), hex(2), hex(1), `abc`, ``];
  const indexOf = new Int32Array(first.length);
  assert.is(keys.adopt(stored(first), first.length, indexOf), stored(first).length);
  assert.equal([...indexOf], [0, 1, 0, 2, 3], `a repeated key gets its first index`);
  assert.is(keys.size, 4);
  assert.ok(keys.mark(hex(2)));
  assert.ok(keys.has(`abc`) && keys.has(``) && !keys.has(hex(3)) && !keys.has(`00FF`));
  assert.equal([0, 1, 2, 3].map(index => keys.isMarkedAt(index)), [false, true, false, false]);
  const second = Array.from({length: 3000}, (_, n) => hex(n + 10_000));
  const more = new Int32Array(second.length);
  keys.adopt(stored(second), second.length, more);
  assert.equal([...more], second.map((_, n) => n));
  assert.not.ok(keys.has(hex(2)), `the first keys are gone`);
  assert.not.ok(keys.isMarkedAt(1), `and their marks`);
  assert.ok(keys.markBytes(Buffer.from(hex(10_042), `hex`), 48));
  assert.ok(keys.isMarked(hex(10_042)));
});

test.run();
