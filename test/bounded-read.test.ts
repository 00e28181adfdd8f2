// boundedRead's synchronous reads land in one scratch buffer and are copied out at their size:
// every result must be its own file's bytes, whatever was read after it, and the bound still holds.
import {mkdtempSync, rmSync, writeFileSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {test} from 'uvu';
import * as assert from 'uvu/assert';
import {readBoundedSync, readBoundedTextSync, UnreadableFile} from '../src/boundedRead.ts';

test(`sync reads through the shared scratch give each file its own bytes, kept intact by later reads`, () => {
  const dir = mkdtempSync(join(tmpdir(), `usmld-bounded-`));
  try {
    const sizes = [0, 1, 300, 65_535, 65_536, 65_537, 200_000, 12];
    const contents = sizes.map((size, n) => Buffer.from(Array.from({length: size}, (_, i) => (i * 7 + n * 13) & 0xff)));
    const paths = contents.map((content, n) => {
      const path = join(dir, `f${n}`);
      writeFileSync(path, content);
      return path;
    });
    const results = paths.map(path => readBoundedSync(path));
    results.forEach((result, n) => assert.ok(result.equals(contents[n]), `file of ${sizes[n]} bytes`));
    writeFileSync(join(dir, `text`), `pid 42 (cat) S 1`);
    assert.is(readBoundedTextSync(join(dir, `text`)), `pid 42 (cat) S 1`);
    assert.throws(() => readBoundedSync(paths[6], 100_000), (err: unknown) => err instanceof UnreadableFile && err.code === `EFBIG`);
    assert.ok(readBoundedSync(paths[3], 65_535).equals(contents[3]), `exactly at the bound`);
  } finally {
    rmSync(dir, {recursive: true, force: true});
  }
});

test.run();
