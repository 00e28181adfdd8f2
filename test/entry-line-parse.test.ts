// parseEntryLine (src/entryLineParse.ts) against JSON.parse: for every line it either declines or
// gives exactly JSON.parse's object (fields, order, values, -0), and the reader gives the same
// records and the same problem messages with it and without it.
import {isDeepStrictEqual} from 'node:util';
import {Readable} from 'node:stream';
import {test} from 'uvu';
import * as assert from 'uvu/assert';
import {parseEntryLine} from '../src/entryLineParse.ts';
import {splitLines} from '../src/lines.ts';
import {SOURCE_LINE, readRecordBatches} from '../src/ndjson.ts';

const v4 = `{"type":"entry","v":1,"mapId":1201,"map":"connection_states","keyHex":"00000000000000000aadf1150000000000000000000000000a640502000000009d88901f000000000000000001000000","key":{"kind":"conn_tuple","family":"v4","proto":"tcp","saddr":"10.173.241.21","sport":34973,"daddr":"10.100.5.2","dport":8080,"src":"10.173.241.21:34973","dst":"10.100.5.2:8080","netns":0,"pid":0,"metadata":1},"valueHex":"356e3dd3"}`;
const v6 = `{"type":"entry","v":1,"mapId":7,"map":"http_in_flight","keyHex":"fd00d28300000000000000008e4e2f4cfd0089bb000000000000000000004ae507b0eb18000000000000000003000000","key":{"kind":"conn_tuple","family":"v6","proto":"udp","saddr":"fd00:d283::8e4e:2f4c","sport":45063,"daddr":"::ffff:10.1.2.3","dport":6379,"src":"[fd00:d283::8e4e:2f4c]:45063","dst":"[::ffff:10.1.2.3]:6379","netns":4026531840,"pid":4294967295,"metadata":3,"extra":{"stream_id":1139,"correlation_id":"18446744073709551615","index":-7}},"valueHex":"","ageSeconds":12.625,"ageField":"updated"}`;
const pid = `{"type":"entry","v":1,"mapId":4,"map":"ssl_read_args","keyHex":"0100000002000000","key":{"kind":"pid_tgid","pidTgid":"8589934593","tgid":2,"tid":1},"valuesHex":["00","0102",""]}`;
const pidExtra = `{"type":"entry","v":1,"mapId":5,"map":"ssl_sock_by_ctx","keyHex":"01","key":{"kind":"pid_tgid","pidTgid":"0","tgid":0,"tid":0,"extra":{}},"valuesHex":[]}`;
const bare = `{"type":"entry","v":1,"mapId":0,"map":"","keyHex":"","key":{"kind":"pid_tgid","pidTgid":"1","tgid":0,"tid":1}}`;
const GOOD = [v4, v6, pid, pidExtra, bare];

/** Lines off the layout, or whose JSON value is not their text, or that are not JSON at all. */
const ODD = [
  // Escapes and characters JSON.parse turns into something else, or refuses.
  v4.replace(`"map":"connection_states"`, `"map":"connection\\u005fstates"`),
  v4.replace(`"keyHex":"0000`, `"keyHex":"\\u00300000`),
  v4.replace(`"saddr":"10.173.241.21"`, `"saddr":"10.173.241.21\\""`),
  v4.replace(`"src":"10.173.241.21:34973"`, `"src":"10.173.241.21:34973\\\\"`),
  v4.replace(`"map":"connection_states"`, `"map":"connection\tstates"`),
  v4.replace(`"map":"connection_states"`, `"map":"conn\u0001"`),
  v4.replace(`"map":"connection_states"`, `"map":"connéctión ☃ 𝄞"`),
  v4.replace(`"map":"connection_states"`, `"map":"\ud800"`),
  // Whitespace anywhere.
  ` ${v4}`, `${v4} `, `${v4}\t`, v4.replace(`"mapId":1201`, `"mapId": 1201`), v4.replace(`,"map"`, ` ,"map"`), v4.replace(`{"kind"`, `{ "kind"`),
  // Other orders, fields besides the layout's, missing fields, repeated fields.
  v4.replace(`{"type":"entry","v":1,`, `{"v":1,"type":"entry",`),
  v4.replace(`"sport":34973,"daddr":"10.100.5.2"`, `"daddr":"10.100.5.2","sport":34973`),
  v4.replace(`}`, `,"more":1}`),
  v4.replace(`"valueHex":"356e3dd3"}`, `"valueHex":"356e3dd3","keyError":"x"}`),
  v4.replace(`"valueHex":"356e3dd3"}`, `"valueHex":"356e3dd3","status":"alive"}`),
  v4.replace(`"valueHex":"356e3dd3"}`, `"valueHex":"356e3dd3","valueHex":"00"}`),
  v4.replace(`"mapId":1201,`, `"mapId":1201,"mapId":3,`),
  v4.replace(`"metadata":1}`, `"metadata":1,"metadata":2}`),
  v4.replace(`,"netns":0`, ``),
  v4.replace(`,"valueHex":"356e3dd3"`, `,"valueTuple":null`),
  v4.replace(`"metadata":1}`, `"metadata":1,"extra":{"a":1,"a":2,"b":"x","a":3}}`),
  v4.replace(`"metadata":1}`, `"metadata":1,"extra":{"__proto__":1}}`),
  v4.replace(`"metadata":1}`, `"metadata":1,"extra":{"2":1,"1":2}}`),
  v4.replace(`"metadata":1}`, `"metadata":1,"extra":{"":1}}`),
  v4.replace(`"metadata":1}`, `"metadata":1,"extra":{"a":1.5}}`),
  v4.replace(`"metadata":1}`, `"metadata":1,"extra":{"a":null}}`),
  v4.replace(`"metadata":1}`, `"metadata":1,"extra":{"a":-0}}`),
  v4.replace(`"metadata":1}`, `"metadata":1,"extra":{"a":1,}}`),
  v4.replace(`"metadata":1}`, `"metadata":1,"extra":[]}`),
  v4.replace(`"metadata":1}`, `"metadata":1,"extra":{"toString":1,"constructor":"x"}}`),
  // Numbers: exponents, fractions, signs, leading zeros, too many digits for an exact integer.
  v4.replace(`"sport":34973`, `"sport":3.4973e4`), v4.replace(`"sport":34973`, `"sport":34973.0`),
  v4.replace(`"sport":34973`, `"sport":1E3`), v4.replace(`"sport":34973`, `"sport":-1`),
  v4.replace(`"sport":34973`, `"sport":-0`), v4.replace(`"sport":34973`, `"sport":034973`),
  v4.replace(`"sport":34973`, `"sport":00`), v4.replace(`"sport":34973`, `"sport":+1`),
  v4.replace(`"mapId":1201`, `"mapId":1234567890123456789`), v4.replace(`"mapId":1201`, `"mapId":123456789012345`),
  v4.replace(`"mapId":1201`, `"mapId":9007199254740993`), v4.replace(`"mapId":1201`, `"mapId":4294967296`),
  v4.replace(`"v":1`, `"v":1.0`), v4.replace(`"v":1`, `"v":2`), v4.replace(`"v":1`, `"v":10`),
  ...[`0`, `-0`, `1.5`, `1E5`, `1e+2`, `1e-7`, `-12.5e-3`, `0.1000`, `123456789.123456789`, `1e400`, `-1e400`, `5e-324`, `2e-400`,
    `1.`, `.5`, `-`, `1e`, `1e+`, `01`, `-01.5`, `0x10`, `NaN`, `Infinity`, `null`, `"1"`, `true`].map(age => v6.replace(`"ageSeconds":12.625`, `"ageSeconds":${age}`)),
  // Nulls and other types where the layout has a string, a number or an object.
  v4.replace(`"key":{"kind":"conn_tuple"`, `"key":null,"x":{"kind":"conn_tuple"`),
  v4.replace(`"valueHex":"356e3dd3"`, `"valueHex":null`), v4.replace(`"sport":34973`, `"sport":null`),
  v4.replace(`"map":"connection_states"`, `"map":null`), v4.replace(`"saddr":"10.173.241.21"`, `"saddr":1`),
  v4.replace(`"family":"v4"`, `"family":"v5"`), v4.replace(`"sport":34973`, `"sport":65536`),
  v4.replace(`"keyHex":"0000`, `"keyHex":"ABCD`), v4.replace(`"valueHex":"356e3dd3"`, `"valueHex":"356e3dd"`),
  v4.replace(`"valueHex":"356e3dd3"`, `"valueHex":"356e3dd35"`), v4.replace(`"valueHex":"356e3dd3"`, `"valueHex":"5"`),
  bare.replace(`"keyHex":""`, `"keyHex":"0"`), bare.replace(`"keyHex":""`, `"keyHex":"abc"`), bare.replace(`"keyHex":""`, `"keyHex":"0g"`),
  bare.replace(`"keyHex":""`, `"keyHex":"g0"`), bare.replace(`"keyHex":""`, `"keyHex":" 0"`), bare.replace(`"keyHex":""`, `"keyHex":"00 "`),
  v4.replace(`"kind":"conn_tuple"`, `"kind":"pid_fd"`), v4.replace(`"kind":"conn_tuple"`, `"kind":"conn_tuplex"`),
  pid.replace(`"valuesHex":["00","0102",""]`, `"valuesHex":["00",1]`), pid.replace(`"valuesHex":["00","0102",""]`, `"valuesHex":["00",]`),
  pid.replace(`"valuesHex":["00","0102",""]`, `"valuesHex":["0g"]`), pid.replace(`"valuesHex":["00","0102",""]`, `"valuesHex":[null]`),
  // Cut short, or something after the record.
  v4.slice(0, -1), v4.slice(0, -2), v4.slice(0, 40), `${v4}}`, `${v4}x`, `${v4}{}`, v4.replace(`"356e3dd3"}`, `"356e3dd3"`), `{"type":"entry","v":1,"mapId":`,
];

function parse(line: string, chunk: Buffer, start: number) {
  return parseEntryLine(line, chunk, new DataView(chunk.buffer, chunk.byteOffset, chunk.byteLength), start);
}

/** What the fast path must be: JSON.parse's object, field for field and in the same order, or nothing. */
function assertSame(line: string, what: string) {
  const bytes = Buffer.from(line, `latin1`);
  const ascii = Buffer.from(line).length === line.length;
  // The bytes one for one with the text is the caller's promise (ASCII lines only).
  if (!ascii)
    return;
  // The line somewhere inside a bigger chunk, after another line and before one.
  const chunk = Buffer.concat([Buffer.from(`${v4}\n`), bytes, Buffer.from(`\n${v4}`)]);
  const start = v4.length + 1;
  const fast = parse(line, chunk, start);
  let general: unknown;
  try {
    general = JSON.parse(line);
  } catch {
    assert.is(fast, undefined, `${what}: not JSON, yet read: ${line}`);
    return;
  }
  if (fast === undefined)
    return;
  assert.ok(isDeepStrictEqual(fast, general), `${what}: differs from JSON.parse: ${line}`);
  assert.is(JSON.stringify(fast), JSON.stringify(general), `${what}: field order differs: ${line}`);
  assert.equal(keyOrder(fast), keyOrder(general), `${what}: field order differs: ${line}`);
}

function keyOrder(value: unknown): unknown {
  if (typeof value !== `object` || value === null)
    return Object.is(value, -0) ? `-0` : value;
  return Object.entries(value).map(([name, item]) => [name, keyOrder(item)]);
}

test(`parseEntryLine reads dump-maps' layouts as JSON.parse does`, () => {
  for (const line of GOOD) {
    const fast = parse(line, Buffer.from(line), 0);
    assert.ok(fast !== undefined, `declined its own layout: ${line}`);
    assertSame(line, `layout`);
  }
});

test(`parseEntryLine: consecutive lines of one map id with other names each get their own name`, () => {
  const name = `connection_states`;
  const names = [name, ...[...name].map((_, i) => `${name.slice(0, i)}X${name.slice(i + 1)}`), name, `${name}s`, name.slice(0, -1), name, ``];
  for (const map of names) {
    const line = v4.replace(`"map":"connection_states"`, `"map":"${map}"`);
    assert.is(parse(line, Buffer.from(line), 0)?.map, map);
    assertSame(line, `map ${map}`);
  }
  // One buffer read into again (as the file reader does): the next line's name where the last one's was.
  const chunk = Buffer.alloc(v4.length);
  for (const map of [`connection_states`, `connection_stateX`, `connection_states`]) {
    const line = v4.replace(`"map":"connection_states"`, `"map":"${map}"`);
    chunk.write(line, `latin1`);
    assert.is(parse(line, chunk, 0)?.map, map);
  }
});

test(`parseEntryLine: adversarial lines are declined or read exactly as JSON.parse reads them`, () => {
  let read = 0;
  for (const line of ODD) {
    assertSame(line, `odd`);
    if (Buffer.from(line).length === line.length && parse(line, Buffer.from(line, `latin1`), 0) !== undefined)
      read += 1;
  }
  // Some are in the layout and read (repeated extra names, numeric forms of ageSeconds, bad values the check then refuses).
  assert.ok(read >= 20, `only ${read} odd lines read`);
});

test(`parseEntryLine: random edits of layout lines are declined or read exactly as JSON.parse reads them`, () => {
  // A fixed generator: the same cases every run.
  let seed = 0x2545f491;
  const random = (n: number) => {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return (seed >>> 0) % n;
  };
  const inserts = [`"`, `\\`, `,`, `:`, `{`, `}`, `[`, `]`, ` `, `0`, `1`, `-`, `.`, `e`, `a`, `\t`, `\r`, `null`, `"x":1,`, `\\u0041`, `\\"`];
  for (let i = 0; i < 40_000; i++) {
    let line = GOOD[random(GOOD.length)];
    for (let edits = 1 + random(3); edits > 0; edits--) {
      const at = random(line.length + 1);
      switch (random(4)) {
        case 0: line = line.slice(0, at) + line.slice(at + 1 + random(3)); break;
        case 1: line = line.slice(0, at) + inserts[random(inserts.length)] + line.slice(at); break;
        case 2: line = line.slice(0, at) + line.slice(random(line.length), random(line.length)) + line.slice(at); break;
        default: line = line.slice(0, at) + String.fromCharCode(0x20 + random(0x5f)) + line.slice(at + 1);
      }
    }
    assertSame(line, `edit ${i}`);
  }
});

async function readAll(text: Buffer, size: number, entryLines: boolean) {
  const chunks: Array<Buffer> = [];
  for (let at = 0; at < text.length; at += size)
    chunks.push(text.subarray(at, at + size));
  const problems: Array<string> = [];
  const records: Array<unknown> = [];
  for await (const batch of readRecordBatches(Readable.from(chunks), `in.ndjson`, {onProblem: p => problems.push(p), keepSourceLine: new Set([`entry`]), entryLines}))
    records.push(...batch.map(record => [record, (record as {[SOURCE_LINE]?: string})[SOURCE_LINE]]));
  return {records, problems};
}

test(`the reader gives the same records and messages with and without parseEntryLine, however the input is cut`, async () => {
  const text = Buffer.from(`${[...GOOD, ...ODD, ...GOOD.map(line => `${line}\r`), `{"type":"socket","v":1}`, ``, `[]`, ...GOOD].join(`\n`)}\n${v4}`);
  for (const size of [1, 7, 64, 333, 4096, text.length]) {
    const general = await readAll(text, size, false);
    const fast = await readAll(text, size, true);
    assert.ok(general.problems.length > 40, `${general.problems.length} problems`);
    assert.equal(fast.problems, general.problems, `problems, chunks of ${size}`);
    assert.ok(isDeepStrictEqual(fast.records, general.records), `records, chunks of ${size}`);
  }
});

test(`splitLines: each line's byte start in an ASCII chunk is where its text is`, async () => {
  const text = Buffer.from(`ab\r\n\ncd\n${`x`.repeat(70_000)}\n€uro\nef\r\ngh`);
  let found = 0;
  for (const size of [1, 3, 5, 65_536, 100_000]) {
    for (let at = 0; at < text.length; at += size) {
      const chunk = text.subarray(at, at + size);
      for await (const batch of splitLines(Readable.from([chunk]))) {
        if (batch.bytes === undefined)
          continue;
        batch.forEach((line, i) => {
          const start = batch.starts![i];
          if (start < 0 || typeof line !== `string`)
            return;
          found += 1;
          assert.is(Buffer.from(batch.bytes!.subarray(start, start + line.length)).toString(`latin1`), line);
        });
      }
    }
  }
  assert.ok(found >= 10, `only ${found} lines placed`);
  // Across chunks of one stream: only lines that lie whole in their chunk are placed.
  for (const size of [1, 2, 4, 9, 65_537]) {
    const chunks: Array<Buffer> = [];
    for (let at = 0; at < text.length; at += size)
      chunks.push(text.subarray(at, at + size));
    for await (const batch of splitLines(Readable.from(chunks))) {
      batch.forEach((line, i) => {
        const start = batch.starts?.[i] ?? -1;
        if (start >= 0 && typeof line === `string`)
          assert.is(Buffer.from(batch.bytes!.subarray(start, start + line.length)).toString(`latin1`), line);
      });
    }
  }
});

test.run();
