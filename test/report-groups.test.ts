// The report's group tables show their first rows without sorting every value (topRows): the
// rows must be those a stable sort of all the values puts first (most counted, then by value as
// numbers or text, equal ones in the order first seen), on values full of ties.
import {test} from 'uvu';
import * as assert from 'uvu/assert';
import {topRows} from '../src/report/model.ts';
import {rng} from './helpers/random.ts';

/** The full sort the group tables used before: count descending, then compareParsed, stable. */
function sortedRows(counts: Map<string, number>): Array<{value: string, count: number}> {
  return [...counts].map(([value, count]) => ({value, count, number: Number(value)}))
    .sort((a, b) => b.count - a.count || (Number.isFinite(a.number) && Number.isFinite(b.number) ? a.number - b.number : a.value < b.value ? -1 : a.value > b.value ? 1 : 0))
    .map(({value, count}) => ({value, count}));
}

test(`topRows gives the first rows of the full stable sort: numbers, texts, equal numbers written differently, ties everywhere`, () => {
  const next = rng(7);
  const kinds: Array<(i: number) => string> = [
    i => String(Math.floor(next() * 50)),
    i => `10.0.${Math.floor(next() * 4)}.${i % 7}`,
    i => [`1`, `01`, `1.0`, `0x1`, `2`, `10`][i % 6],
    i => (i % 3 === 0 ? `(gone)` : `comm-${Math.floor(next() * 9)}`),
  ];
  for (const [k, kind] of kinds.entries()) {
    for (const maxCount of [1, 2, 5, 1000]) {
      const counts = new Map<string, number>();
      for (let i = 0; i < 300; i++)
        counts.set(kind(i), 1 + Math.floor(next() * maxCount));
      for (const limit of [0, 1, 3, 10, 500])
        assert.equal(topRows(counts, limit), sortedRows(counts).slice(0, limit), `kind ${k}, counts up to ${maxCount}, limit ${limit}`);
    }
  }
  assert.equal(topRows(new Map(), 10), []);
});

test.run();
