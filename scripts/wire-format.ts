// Generates docs/wire-format.md from the record spec (src/schema.ts). test/wire-format.test.ts
// fails while the committed file differs from what this prints.
//   node_modules/.bin/tsx scripts/wire-format.ts           print it
//   node_modules/.bin/tsx scripts/wire-format.ts --write   rewrite docs/wire-format.md
import {writeFileSync} from 'node:fs';
import {fileURLToPath} from 'node:url';
import type {Field, Fields, Kind, ObjectKind} from '../src/fieldKinds.ts';
import {RECORDS, RECORD_TYPES, SCHEMA_VERSION, connTupleKey, leakRow, match, owner, pidTgidKey, mapHolder} from '../src/schema.ts';

export const WIRE_FORMAT_DOC = fileURLToPath(new URL(`../docs/wire-format.md`, import.meta.url));

const INTRO = `# Wire format (schema version ${SCHEMA_VERSION})

<!-- Generated from src/schema.ts by scripts/wire-format.ts: edit the spec, then run
     node_modules/.bin/tsx scripts/wire-format.ts --write -->

Every record is one line of JSON with \`type\` and \`v\` (= ${SCHEMA_VERSION}). The record spec in
\`src/schema.ts\` is what every stage checks; a reader skips (and reports on stderr as
\`source:line: ...\`) any line that is not JSON, not an object, lacks \`type\`, has another \`v\`, or
has a known \`type\` whose fields do not match the spec. Unknown record types and unknown fields are
passed through untouched (a verdict keeps every field of its entry), so newer producers stay
readable.

Conventions: 64-bit integers are decimal strings (\`u64\`); raw bytes are lowercase hex without
separators (\`hex\`); \`u32\` and \`port\` are non-negative integers that fit; addresses are printable
(\`10.0.0.5\`, RFC 5952 \`2001:db8::1\`); \`src\`/\`dst\` are \`ip:port\` with IPv6 in brackets
(\`[2001:db8::1]:443\`); times are ISO 8601 UTC plus \`timeMs\` (ms since the epoch).
`;

/** Nested objects documented once each, after the records. */
const OBJECTS: ReadonlyArray<ObjectKind<Fields>> = [mapHolder, connTupleKey, pidTgidKey, match, owner, leakRow];

function cell(text: string): string {
  return text.replace(/\|/g, `\\|`);
}

function table(fields: Fields): Array<string> {
  const rows = [`| field | type | required | |`, `|---|---|---|---|`];
  for (const [name, field] of Object.entries(fields) as Array<[string, Field]>)
    rows.push(`| \`${name}\` | ${cell((field.kind as Kind<unknown>).doc)} | ${field.optional ? `no` : `yes`} | ${cell(field.doc)} |`);
  return rows;
}

export function wireFormatMarkdown(): string {
  const parts = [INTRO.trimEnd()];
  for (const type of RECORD_TYPES) {
    const spec = RECORDS[type];
    parts.push([`## ${type}`, ``, `${spec.doc}.`, ``, ...table(spec.fields)].join(`\n`));
  }
  parts.push(`## Nested objects`);
  for (const kind of OBJECTS)
    parts.push([`### ${kind.name}`, ``, ...table(kind.fields)].join(`\n`));
  return `${parts.join(`\n\n`)}\n`;
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const text = wireFormatMarkdown();
  if (process.argv.includes(`--write`))
    writeFileSync(WIRE_FORMAT_DOC, text);
  else
    process.stdout.write(text);
}
