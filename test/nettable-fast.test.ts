// parseNetTable takes a well-formed row apart with one regular expression (the cold path of a
// scan: a table is parsed once) and leaves every other row to parseRow. The records and the bad
// row reports must be those of parseRow alone (`general`): on the tables of every namespace this
// host shows, and on rows of them broken in every way a fuzzer finds, plus hand-made odd ones.
import {readdirSync, readlinkSync} from 'node:fs';
import {test} from 'uvu';
import * as assert from 'uvu/assert';
import {readBoundedTextSync} from '../src/boundedRead.ts';
import type {SocketRecord} from '../src/schema.ts';
import {parseNetTable, TABLES, type TableSpec} from '../src/snapshot/nettable.ts';
import {rng} from './helpers/random.ts';

function parsed(text: string, table: TableSpec, general: boolean) {
  const sockets: Array<SocketRecord> = [];
  const outcome = parseNetTable(text, table, 4026531840, socket => sockets.push(socket), general);
  return {sockets, outcome};
}

function assertSame(text: string, table: TableSpec, what: string): number {
  const fast = parsed(text, table, false);
  const general = parsed(text, table, true);
  assert.equal(fast, general, what);
  return fast.outcome.rows;
}

/** One readable process per network namespace this host shows (ours at least). */
function tablesOfEveryNamespace(): Array<{pid: string, table: TableSpec, text: string}> {
  const seen = new Set<string>();
  const out: Array<{pid: string, table: TableSpec, text: string}> = [];
  for (const pid of [`self`, ...readdirSync(`/proc`).filter(name => /^\d+$/.test(name))]) {
    let link: string;
    try {
      link = readlinkSync(`/proc/${pid}/ns/net`);
    } catch {
      continue;
    }
    if (seen.has(link))
      continue;
    seen.add(link);
    for (const table of TABLES) {
      try {
        out.push({pid, table, text: readBoundedTextSync(`/proc/${pid}/net/${table.name}`, `latin1`)});
      } catch {
        // gone meanwhile
      }
    }
  }
  return out;
}

const HEADER = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n`;
const SAMPLE_ROWS: Record<string, Array<string>> = {
  v4: [
    `   0: 0100007F:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 77 1 0000000000000000 100 0 0 10 0`,
    `   1: 0100007F:0050 0200007F:1F90 01 00000000:00000000 02:000000000000A1B2 00000000 123456        0 78`,
    `12345: 0A00020F:D431 5DB8D822:01BB 06 00000000:00000000 03:00001770 00000000     0        0 0 3 0000000000000000`,
  ],
  v6: [
    `   0: 00000000000000000000000001000000:A531 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2889391 1 0000000072a9c14e 100 0 0 10 0`,
    `   1: 0000000000000000FFFF00000100007F:0050 0000000000000000FFFF00000200007F:1F90 01 00000000:00000000 00:00000000 00000000  1000        0 4242 1 0000000000000000 20 4 30 10 -1`,
    `   2: B80D0120000000000000000001000000:01BB 0000000000000000FFFF00000100007F:C350 08 00000000:00000000 00:00000000 00000000     0        0 99 1`,
  ],
};

test(`the tables of every namespace on this host: the same records as parseRow alone`, () => {
  const tables = tablesOfEveryNamespace();
  assert.ok(tables.length >= 4, `our own tables at least`);
  let rows = 0;
  for (const {pid, table, text} of tables)
    rows += assertSame(text, table, `/proc/${pid}/net/${table.name}`);
  assert.ok(rows > 0, `some socket on this host`);
});

test(`odd rows: widths, missing columns, huge numbers, tabs, no header, blank lines, CRLF`, () => {
  const odd = [
    `12345: 0100007F:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 77 1`,
    `   1: 0100007F:0050 0200007F:1F90 0G 00000000:00000000 00:00000000 00000000     0        0 79`,
    `   3: 0100007F:0050 0200007F:1F90 01 00000000:00000000`,
    `   4: 0100007F:0050 0200007F:1F90 01`,
    `   5: 0100007F:0050 0200007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 12345678901234567 1`,
    `   6: 0100007F:0050 0200007F:1F90 01 00000000:00000000 00:00000000 00000000     1234567890123456        0 7`,
    `   7: 0100007F:0050 0200007F:1F90 01 00000000:00000000 00:00000000 00000000     0x1        0 7x 1`,
    `   8: 0100007F:0050 0200007F:1F90 01\t00000000:00000000 00:00000000 00000000     0        0 7`,
    `   9: 0100007F:0050 0200007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 80\r`,
    `  10:  0100007F:0050 0200007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 81`,
    `  11: 0100007f:0050 0200007f:1f90 0a 00000000:00000000 00:00000000 00000000     0        0 82`,
    `:  0100007F:0050 0200007F:1F90 01`,
    `  12: 0100007F:0050 0200007F:1F90 01 a b c 999999999999999 d 999999999999999`,
    `  13: 0100007F:0050 0200007F:1F90 01 a b c 9999999999999999 d 1`,
    `   `,
  ];
  for (const [family, table] of [[`v4`, TABLES[0]], [`v6`, TABLES[1]]] as const) {
    const rows = family === `v4` ? odd : odd.map(row => row.replace(/([0-9A-Fa-f]{8}):/g, `0000000000000000FFFF0000$1:`));
    for (const text of [HEADER + rows.join(`\n`), rows.join(`\n`) + `\n`, `\n\n${rows.join(`\n\n`)}`, SAMPLE_ROWS[family].join(`\r\n`)])
      assertSame(text, table, `${family}: ${JSON.stringify(text.slice(0, 60))}`);
  }
});

test(`fuzzed rows of real and sample tables: every change of a character, a deletion, an insertion`, () => {
  const next = rng(11);
  const pick = <T>(items: ReadonlyArray<T>): T => items[Math.floor(next() * items.length)];
  const chars = [`0`, `9`, `a`, `F`, `G`, `:`, ` `, `  `, `\t`, `\n`, `x`, `-`, `1234567890123456789`];
  const real = tablesOfEveryNamespace();
  for (const table of TABLES) {
    const family = table.listedFamily;
    const rows = [...SAMPLE_ROWS[family]];
    for (const {table: other, text} of real) {
      if (other === table)
        rows.push(...text.split(`\n`).slice(1, 40).filter(row => row.trim().length > 0));
    }
    for (let i = 0; i < 3000; i++) {
      const lines = Array.from({length: 1 + Math.floor(next() * 4)}, () => pick(rows));
      const at = Math.floor(next() * lines.length);
      let line = lines[at];
      const position = Math.floor(next() * (line.length + 1));
      const change = Math.floor(next() * 4);
      if (change === 0)
        line = line.slice(0, position) + pick(chars) + line.slice(position + 1);
      else if (change === 1)
        line = line.slice(0, position) + line.slice(position + 1);
      else if (change === 2)
        line = line.slice(0, position) + pick(chars) + line.slice(position);
      else
        line = line.slice(0, position);
      lines[at] = line;
      assertSame((next() < 0.5 ? HEADER : ``) + lines.join(`\n`), table, `${table.name}: ${JSON.stringify(line)}`);
    }
  }
});

test.run();
