// dump-maps writes its output as byte chunks (RecordWriter.writeBytes, src/dump/lineChunks.ts):
// in order after queued text, with the writer's error semantics, and a chunk is filled again only
// once a stream onto a file descriptor called back for it; any other stream keeps every chunk.
import {closeSync, createWriteStream, mkdtempSync, openSync, readFileSync, rmSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {PassThrough, Writable} from 'node:stream';
import {test} from 'uvu';
import * as assert from 'uvu/assert';
import {LineChunks} from '../src/dump/lineChunks.ts';
import {OutputClosed, RecordWriter, WriteFailed} from '../src/ndjson.ts';

const scratch = mkdtempSync(join(tmpdir(), `usmld-bytes-`));
test.after(() => rmSync(scratch, {recursive: true, force: true}));

/** Lines `i` for i in [from, to) into `chunks`; returns the chunks filled so far. */
function fill(chunks: LineChunks, from: number, to: number): Array<Buffer> {
  for (let i = from; i < to; i++)
    chunks.text(`{"type":"x","v":1,"i":${i}}\n`);
  return chunks.takeFull();
}

function expected(count: number): string {
  let text = `{"type":"header","v":1}\n`;
  for (let i = 0; i < count; i++)
    text += `{"type":"x","v":1,"i":${i}}\n`;
  return text;
}

async function writeAllChunks(writer: RecordWriter, chunks: LineChunks, count: number, recycled: Array<Buffer>): Promise<void> {
  await writer.write({type: `header`, v: 1});
  for (let from = 0; from < count; from += 100) {
    for (const chunk of fill(chunks, from, Math.min(count, from + 100)))
      await writer.writeBytes(chunk, () => {
        recycled.push(chunk);
        chunks.recycle(chunk);
      });
  }
  for (const chunk of chunks.takeAll())
    await writer.writeBytes(chunk);
  await writer.end();
}

test(`to a file: bytes in order after the text, chunks given back and filled again`, async () => {
  const path = join(scratch, `out.ndjson`);
  const stream = createWriteStream(path, {flags: `wx`});
  await new Promise(resolve => stream.once(`open`, resolve));
  const chunks = new LineChunks(4096);
  const recycled: Array<Buffer> = [];
  await writeAllChunks(new RecordWriter(stream), chunks, 20_000, recycled);
  await new Promise(resolve => stream.end(resolve));
  assert.is(readFileSync(path, `utf8`), expected(20_000));
  assert.ok(recycled.length > 50, `${recycled.length} chunks given back`);
  // Filled again: far fewer distinct buffers than chunks written.
  assert.ok(new Set(recycled.map(chunk => chunk.buffer)).size <= 5);
});

test(`to a stream that may keep its chunks (no file descriptor): never given back, output intact`, async () => {
  const sink = new PassThrough();
  const parts: Array<Buffer> = [];
  sink.on(`data`, (part: Buffer) => parts.push(part));
  sink.pause();
  const recycled: Array<Buffer> = [];
  const writing = writeAllChunks(new RecordWriter(sink), new LineChunks(4096), 20_000, recycled);
  setTimeout(() => sink.resume(), 20);
  await writing;
  assert.is(recycled.length, 0);
  assert.is(Buffer.concat(parts).toString(`utf8`), expected(20_000));
});

test(`writeBytes fails as the writer does: ENOSPC is WriteFailed, EPIPE on stdout OutputClosed`, async () => {
  const fd = openSync(`/dev/full`, `w`);
  try {
    const full = new RecordWriter(createWriteStream(``, {fd, autoClose: false}), JSON.stringify, `out.ndjson`);
    let thrown: unknown = null;
    try {
      for (let i = 0; i < 10 && thrown === null; i++)
        await full.writeBytes(Buffer.from(`{"type":"x","v":1}\n`), () => {});
    } catch (err) {
      thrown = err;
    }
    assert.instance(thrown, WriteFailed);
    assert.match(String((thrown as Error).message), /cannot write to out.ndjson: ENOSPC/);
    full.release();
  } finally {
    closeSync(fd);
  }
  const gone = new RecordWriter(new Writable({write(_chunk, _enc, cb) { cb(Object.assign(new Error(`EPIPE`), {code: `EPIPE`})); }}));
  let thrown: unknown = null;
  try {
    for (let i = 0; i < 10 && thrown === null; i++)
      await gone.writeBytes(Buffer.alloc(64 * 1024, 0x20));
  } catch (err) {
    thrown = err;
  }
  assert.instance(thrown, OutputClosed);
  await gone.end();
});

test(`a line longer than a chunk gets a chunk of its own`, () => {
  const chunks = new LineChunks(64);
  chunks.text(`short\n`);
  const long = `${`y`.repeat(200)}\n`;
  chunks.text(long);
  chunks.text(`after\n`);
  const all = chunks.takeAll().map(chunk => chunk.toString(`utf8`));
  assert.equal(all, [`short\n`, long, `after\n`]);
});

test.run();
