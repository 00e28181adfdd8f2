// The floor for an NDJSON stage: Node reading every line of the given files (or stdin) and
// JSON.parse-ing it, nothing else. `make bench` compares validate's time against this.
import {createReadStream} from 'node:fs';

let records = 0;
async function parseAll(stream) {
  let rest = ``;
  stream.setEncoding(`utf8`);
  for await (const chunk of stream) {
    const text = rest + chunk;
    let start = 0;
    for (let end = text.indexOf(`\n`); end !== -1; end = text.indexOf(`\n`, start)) {
      if (end > start) {
        JSON.parse(text.slice(start, end));
        records++;
      }
      start = end + 1;
    }
    rest = text.slice(start);
  }
  if (rest.length > 0) {
    JSON.parse(rest);
    records++;
  }
}

const files = process.argv.slice(2);
if (files.length === 0)
  await parseAll(process.stdin);
for (const file of files)
  await parseAll(createReadStream(file, {highWaterMark: 1 << 16}));
process.stderr.write(`${records} records\n`);
