// Splitting an input stream into lines, linearly and with a bound. split2 re-scans its whole
// buffer for every chunk, so one 50 MB line cost 25 s and 545 MB; here each chunk is searched
// once from where the last search stopped, a partial line is kept as a list of pieces, and a
// line longer than the bound is counted, not kept, until its newline.
import {isAscii} from 'node:buffer';
import type {Readable} from 'node:stream';
import {StringDecoder} from 'node:string_decoder';
import {Ascii} from './ascii.ts';

/** Most bytes decoded into one string (see splitLines). */
const DECODE_PIECE = 64 * 1024;

/** Default longest line (in UTF-16 units, = bytes for the ASCII records the tool writes): 16 MiB. */
export const DEFAULT_MAX_LINE_LENGTH = 16 * 1024 * 1024;

/**
 * A batch of lines: a string is a line (without its `\n` or `\r\n`); a number is a line that was
 * longer than the bound and was skipped, giving its length.
 */
export type LineBatch = Array<string | number> & {
  /**
   * The chunk the lines came from, when it was ASCII: the text of line i is then its bytes from
   * starts[i] on, one for one (-1 for a line that is not all in it, or a skipped one). Parsers that
   * read bytes faster than text (src/entryLineParse.ts) use it.
   */
  bytes?: Uint8Array,
  starts?: Array<number>,
};

/** Yields the lines of `input` in batches (one batch per chunk read), in order. */
export async function* splitLines(input: AsyncIterable<Buffer | string>, maxLength = DEFAULT_MAX_LINE_LENGTH): AsyncGenerator<LineBatch> {
  const decoder = new StringDecoder(`utf8`);
  let pieces: Array<string> = [];
  let pending = 0;
  /** Length of the too-long line being skipped, or -1 when not skipping. */
  let skipped = -1;

  /** Where `text` starts in the chunk's bytes (-1: not one for one with them). */
  let textAt = -1;
  const finish = (batch: LineBatch, text: string, start: number, end: number) => {
    const length = end - start;
    const starts = batch.starts;
    if (skipped >= 0) {
      batch.push(skipped + length);
      starts?.push(-1);
      skipped = -1;
      return;
    }
    if (pending + length > maxLength) {
      batch.push(pending + length);
      starts?.push(-1);
    } else if (pieces.length > 0) {
      pieces.push(text.slice(start, end));
      batch.push(stripCr(pieces.join(``)));
      starts?.push(-1);
    } else {
      batch.push(stripCr(text.slice(start, end)));
      starts?.push(textAt < 0 ? -1 : textAt + start);
    }
    pieces = [];
    pending = 0;
  };

  const keep = (text: string, start: number) => {
    const length = text.length - start;
    if (length === 0)
      return;
    if (skipped >= 0) {
      skipped += length;
    } else if (pending + length > maxLength) {
      skipped = pending + length;
      pieces = [];
      pending = 0;
    } else {
      pieces.push(text.slice(start));
      pending += length;
    }
  };

  const split = (batch: LineBatch, text: string) => {
    let start = 0;
    for (let newline = text.indexOf(`\n`); newline >= 0; newline = text.indexOf(`\n`, start)) {
      finish(batch, text, start, newline);
      start = newline + 1;
    }
    keep(text, start);
  };

  // Whether the decoder holds no bytes of a character cut at the end of the last piece.
  let decoderEmpty = true;
  for await (const chunk of input) {
    const batch: LineBatch = [];
    if (typeof chunk === `string`) {
      split(batch, chunk);
    } else {
      const ascii = isAscii(chunk);
      if (ascii) {
        batch.bytes = chunk;
        batch.starts = [];
      }
      // Decoded in pieces of at most DECODE_PIECE bytes: V8 makes a longer string in its
      // large-object space (a mapping of its own each time), which cost several times the copy.
      for (let at = 0; at < chunk.length; at += DECODE_PIECE) {
        const end = Math.min(chunk.length, at + DECODE_PIECE);
        if (ascii && decoderEmpty) {
          // ASCII (every record the tool writes): its latin1 text is its UTF-8 text, made by a copy.
          textAt = at;
          split(batch, chunk.toString(`latin1`, at, end));
        } else {
          textAt = -1;
          split(batch, decoder.write(chunk.subarray(at, end)));
          // A piece that ends in an ASCII byte leaves nothing behind in the decoder.
          decoderEmpty = chunk[end - 1] < 0x80;
        }
      }
      textAt = -1;
    }
    if (batch.length > 0)
      yield batch;
  }
  const rest = decoder.end();
  keep(rest, 0);
  if (skipped >= 0 || pending > 0) {
    const batch: LineBatch = [];
    finish(batch, ``, 0, 0);
    yield batch;
  }
}

function stripCr(line: string): string {
  return line.length > 0 && line.charCodeAt(line.length - 1) === Ascii.CarriageReturn ? line.slice(0, -1) : line;
}

/** Deepest nesting a record may have; deeper values overflow the stack of JSON.stringify (~5,000). */
export const MAX_NESTING = 512;
/** A line shorter than this cannot nest deeper than MAX_NESTING (each level takes two brackets). */
const NESTING_CHECK_FROM = 2 * MAX_NESTING;

/**
 * Whether a JSON text nests arrays/objects deeper than MAX_NESTING. Only long lines can, so short
 * ones (every real record) cost one comparison; strings are skipped so brackets in them do not count.
 */
export function nestsTooDeep(text: string): boolean {
  if (text.length < NESTING_CHECK_FROM)
    return false;
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === Ascii.Quote) {
      for (i++; i < text.length; i++) {
        const d = text.charCodeAt(i);
        if (d === Ascii.Backslash) // skip the escaped character
          i++;
        else if (d === Ascii.Quote)
          break;
      }
    } else if (c === Ascii.OpenBracket || c === Ascii.OpenBrace) {
      if (++depth > MAX_NESTING)
        return true;
    } else if (c === Ascii.CloseBracket || c === Ascii.CloseBrace) {
      depth--;
    }
  }
  return false;
}

/** Parses a size like `16M`, `512k`, `1G` or a plain number (binary units). Null when it is not one. */
export function parseSize(text: string): number | null {
  const match = /^\s*(\d+)\s*([kKmMgG]?)i?[bB]?\s*$/.exec(text);
  if (!match)
    return null;
  const scale = {'': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3}[match[2].toLowerCase() as `` | `k` | `m` | `g`];
  const value = Number(match[1]) * scale;
  return Number.isSafeInteger(value) && value > 0 ? value : null;
}
