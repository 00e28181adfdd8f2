// Text that came from outside (a process name anyone can set with prctl, a path, a map name, a
// capture's host name) must not reach a terminal raw: an ESC sequence could rewrite the screen
// and a newline could forge a line (`## Summary`) of the report. Every human-readable output
// (the text and markdown reports, messages on stderr) escapes control characters through here.

// C0 controls, DEL, C1 controls, and the Unicode line/paragraph separators and bidi overrides.
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

function escapeOne(char: string): string {
  switch (char) {
    case `\n`: return `\\n`;
    case `\r`: return `\\r`;
    case `\t`: return `\\t`;
    case `\x1b`: return `\\e`;
    default: {
      const code = char.charCodeAt(0);
      return code <= 0xff ? `\\x${code.toString(16).padStart(2, `0`)}` : `\\u${code.toString(16).padStart(4, `0`)}`;
    }
  }
}

/** `text` with every control character written as a visible escape (`\e`, `\n`, `\x07`, ...). */
export function escapeControl(text: string): string {
  CONTROL.lastIndex = 0;
  return CONTROL.test(text) ? text.replace(CONTROL, escapeOne) : text;
}

/** A copy of a JSON-like value with every string escaped (object keys included). */
export function escapeStrings<T>(value: T): T {
  if (typeof value === `string`)
    return escapeControl(value) as T;
  if (Array.isArray(value))
    return value.map(item => escapeStrings(item)) as T;
  if (value !== null && typeof value === `object` && Object.getPrototypeOf(value) === Object.prototype) {
    const copy: Record<string, unknown> = {};
    for (const [key, item] of Object.entries(value))
      copy[escapeControl(key)] = escapeStrings(item);
    return copy as T;
  }
  return value;
}
