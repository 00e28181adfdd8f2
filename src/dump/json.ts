// A small JSON parser that never loses precision: integers outside ±2^53 become BigInt (JSON.parse
// would round them). system-probe prints u64 key fields (IPv6 halves, pid_tgid) as bare JSON
// numbers, and bpftool's `formatted` output does the same, so those elements go through here.
// Only the slow path uses it: bpftool's hex arrays are decoded by the tokenizer directly.
import {Ascii} from '../ascii.ts';

export type LosslessValue = null | boolean | number | bigint | string | Array<LosslessValue> | {[key: string]: LosslessValue};

export class JsonSyntaxError extends Error {
  constructor(message: string, readonly position: number) {
    super(`${message} at offset ${position}`);
    this.name = `JsonSyntaxError`;
  }
}

/** Parses one JSON document; integers beyond Number.MAX_SAFE_INTEGER come back as bigint. */
export function parseLossless(text: string): LosslessValue {
  const parser = new Parser(text);
  parser.skipSpace();
  const value = parser.value();
  parser.skipSpace();
  if (parser.pos !== text.length)
    throw new JsonSyntaxError(`unexpected text after the JSON value`, parser.pos);
  return value;
}

const NUMBER_RE = /-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/y;

class Parser {
  pos = 0;
  constructor(private readonly text: string) {}

  skipSpace(): void {
    const text = this.text;
    let pos = this.pos;
    for (;;) {
      const c = text.charCodeAt(pos);
      if (c === Ascii.Space || c === Ascii.LineFeed || c === Ascii.CarriageReturn || c === Ascii.Tab)
        pos++;
      else
        break;
    }
    this.pos = pos;
  }

  value(): LosslessValue {
    const c = this.text.charCodeAt(this.pos);
    switch (c) {
      case Ascii.OpenBrace: return this.object();
      case Ascii.OpenBracket: return this.array();
      case Ascii.Quote: return this.string();
      case Ascii.LowerT: return this.literal(`true`, true);
      case Ascii.LowerF: return this.literal(`false`, false);
      case Ascii.LowerN: return this.literal(`null`, null);
      default:
        if (c === Ascii.Minus || (c >= Ascii.Digit0 && c <= Ascii.Digit9))
          return this.number();
        throw new JsonSyntaxError(Number.isNaN(c) ? `unexpected end of JSON` : `unexpected character ${JSON.stringify(this.text[this.pos])}`, this.pos);
    }
  }

  private literal<T>(word: string, value: T): T {
    if (!this.text.startsWith(word, this.pos))
      throw new JsonSyntaxError(`unexpected token`, this.pos);
    this.pos += word.length;
    return value;
  }

  private number(): number | bigint {
    NUMBER_RE.lastIndex = this.pos;
    const match = NUMBER_RE.exec(this.text);
    if (!match)
      throw new JsonSyntaxError(`bad number`, this.pos);
    this.pos += match[0].length;
    if (match[1] !== undefined || match[2] !== undefined)
      return Number(match[0]);
    const asNumber = Number(match[0]);
    return Number.isSafeInteger(asNumber) ? asNumber : BigInt(match[0]);
  }

  private string(): string {
    const text = this.text;
    const start = this.pos + 1;
    let pos = start;
    for (;;) {
      const c = text.charCodeAt(pos);
      if (c === Ascii.Quote)
        break;
      if (c === Ascii.Backslash) {
        // Escapes are rare here (error messages): let JSON.parse handle the exact rules.
        let end = pos;
        for (;;) {
          const d = text.charCodeAt(end);
          if (Number.isNaN(d))
            throw new JsonSyntaxError(`unterminated string`, this.pos);
          if (d === Ascii.Backslash)
            end += 2;
          else if (d === Ascii.Quote)
            break;
          else
            end++;
        }
        const raw = text.slice(this.pos, end + 1);
        this.pos = end + 1;
        return JSON.parse(raw) as string;
      }
      if (Number.isNaN(c))
        throw new JsonSyntaxError(`unterminated string`, this.pos);
      pos++;
    }
    this.pos = pos + 1;
    return text.slice(start, pos);
  }

  private array(): Array<LosslessValue> {
    this.pos++;
    const out: Array<LosslessValue> = [];
    this.skipSpace();
    if (this.text.charCodeAt(this.pos) === Ascii.CloseBracket) {
      this.pos++;
      return out;
    }
    for (;;) {
      this.skipSpace();
      out.push(this.value());
      this.skipSpace();
      const c = this.text.charCodeAt(this.pos++);
      if (c === Ascii.CloseBracket)
        return out;
      if (c !== Ascii.Comma)
        throw new JsonSyntaxError(`expected , or ] in array`, this.pos - 1);
    }
  }

  private object(): {[key: string]: LosslessValue} {
    this.pos++;
    const out: {[key: string]: LosslessValue} = {};
    this.skipSpace();
    if (this.text.charCodeAt(this.pos) === Ascii.CloseBrace) {
      this.pos++;
      return out;
    }
    for (;;) {
      this.skipSpace();
      if (this.text.charCodeAt(this.pos) !== Ascii.Quote)
        throw new JsonSyntaxError(`expected a property name`, this.pos);
      const key = this.string();
      this.skipSpace();
      if (this.text.charCodeAt(this.pos++) !== Ascii.Colon)
        throw new JsonSyntaxError(`expected :`, this.pos - 1);
      this.skipSpace();
      const value = this.value();
      // A `__proto__` member must stay a plain property, not replace the prototype.
      Object.defineProperty(out, key, {value, enumerable: true, writable: true, configurable: true});
      this.skipSpace();
      const c = this.text.charCodeAt(this.pos++);
      if (c === Ascii.CloseBrace)
        return out;
      if (c !== Ascii.Comma)
        throw new JsonSyntaxError(`expected , or } in object`, this.pos - 1);
    }
  }
}

/** Makes a lossless value JSON-safe for our records: bigint → decimal string. */
export function toWireJson(value: LosslessValue): unknown {
  if (typeof value === `bigint`)
    return value.toString();
  if (Array.isArray(value))
    return value.map(toWireJson);
  if (value !== null && typeof value === `object`) {
    const out: {[key: string]: unknown} = {};
    for (const key of Object.keys(value))
      out[key] = toWireJson(value[key]);
    return out;
  }
  return value;
}

/** JSON text of a lossless value (bigint as bare digits, as the tools print them). */
export function toJsonText(value: LosslessValue): string {
  if (typeof value === `bigint`)
    return value.toString();
  if (Array.isArray(value))
    return `[${value.map(toJsonText).join(`,`)}]`;
  if (value !== null && typeof value === `object`)
    return `{${Object.keys(value).map(key => `${JSON.stringify(key)}:${toJsonText(value[key])}`).join(`,`)}}`;
  return JSON.stringify(value);
}
