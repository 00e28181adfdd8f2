// Printable IP addresses. dump-maps (key bytes) and snapshot-conns (/proc hex) both format
// through here, so validate can compare the strings they produce.

/** Dotted quad from 4 network-order bytes at `offset`. */
export function formatIPv4(bytes: Uint8Array, offset: number): string {
  // Three joins of ready-made pieces instead of seven (each join of a short string is a new one).
  return BYTE_DOT[bytes[offset]] + BYTE_DOT[bytes[offset + 1]] + BYTE_DOT[bytes[offset + 2]] + BYTE_TEXT[bytes[offset + 3]];
}

/** The same from the address as an int32 (first byte highest), as src/dump/decode.ts's LeanTuple keeps it. */
export function formatIPv4Number(address: number): string {
  return BYTE_DOT[address >>> 24] + BYTE_DOT[(address >>> 16) & 255] + BYTE_DOT[(address >>> 8) & 255] + BYTE_TEXT[address & 255];
}

/** `0`..`255`, and the same followed by a dot. */
const BYTE_TEXT = Array.from({length: 256}, (_, byte) => String(byte));
const BYTE_DOT = BYTE_TEXT.map(text => `${text}.`);

/**
 * RFC 5952 text for 16 network-order bytes at `offset`: lowercase, longest run of two or more
 * zero groups compressed to `::`, and ::ffff:a.b.c.d for IPv4-mapped addresses.
 */
export function formatIPv6(bytes: Uint8Array, offset: number): string {
  // Every key of a v6 map passes here: no arrays, one scratch for the groups.
  const groups = GROUPS;
  const run = ipv6Groups(bytes, offset, groups);
  if (run === V4_MAPPED)
    return `::ffff:${formatIPv4(bytes, offset + 12)}`;
  if (run === NO_RUN)
    return hexGroups(groups, 0, 8);
  return `${hexGroups(groups, 0, run >>> 4)}::${hexGroups(groups, (run >>> 4) + (run & 15), 8)}`;
}

const GROUPS = new Uint16Array(8);

/**
 * The same from 4 int32 words at words[at] (each 4 bytes in network order, first byte highest),
 * as src/dump/decode.ts's LeanTuple keeps an IPv6 address.
 */
export function formatIPv6Words(words: ArrayLike<number>, at: number): string {
  const bytes = WORD_BYTES;
  for (let i = 0; i < 4; i++) {
    const word = words[at + i];
    bytes[4 * i] = word >>> 24;
    bytes[4 * i + 1] = word >>> 16;
    bytes[4 * i + 2] = word >>> 8;
    bytes[4 * i + 3] = word;
  }
  return formatIPv6(bytes, 0);
}
const WORD_BYTES = new Uint8Array(16);

/**
 * Reads IPv6 text as formatIPv6 writes it (no IPv4-mapped form) into 4 int32 words at out[at];
 * false for any other text, canonical or not.
 */
export function parseIPv6Words(text: string, out: Int32Array, at: number): boolean {
  if (text.length < 2 || text.length > 39 || text.includes(`.`))
    return false;
  const gap = text.indexOf(`::`);
  const head = gap < 0 ? text : text.slice(0, gap);
  const tail = gap < 0 ? `` : text.slice(gap + 2);
  const left = head === `` ? [] : head.split(`:`);
  const right = tail === `` ? [] : tail.split(`:`);
  const zeros = 8 - left.length - right.length;
  if (gap < 0 ? zeros !== 0 : zeros < 1)
    return false;
  const groups = [...left, ...new Array<string>(zeros).fill(`0`), ...right];
  for (let i = 0; i < 8; i++) {
    if (!/^[0-9a-f]{1,4}$/.test(groups[i]))
      return false;
    GROUPS[i] = parseInt(groups[i], 16);
  }
  for (let i = 0; i < 4; i++)
    out[at + i] = (GROUPS[2 * i] << 16) | GROUPS[2 * i + 1];
  return formatIPv6Words(out, at) === text;
}
export const V4_MAPPED = -2;
export const NO_RUN = -1;

/**
 * Reads the 8 groups of 16 network-order bytes at `offset` into `groups`; returns V4_MAPPED for
 * ::ffff:a.b.c.d, NO_RUN when no two zero groups follow each other, else the longest (first)
 * run of zero groups RFC 5952 compresses to `::`, as start << 4 | length.
 */
export function ipv6Groups(bytes: Uint8Array, offset: number, groups: Uint16Array): number {
  for (let i = 0; i < 8; i++)
    groups[i] = (bytes[offset + 2 * i] << 8) | bytes[offset + 2 * i + 1];
  if (groups[0] === 0 && groups[1] === 0 && groups[2] === 0 && groups[3] === 0 && groups[4] === 0 && groups[5] === 0xffff)
    return V4_MAPPED;
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0)
      j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  return bestStart < 0 ? NO_RUN : (bestStart << 4) | bestLen;
}

/** Groups [from, to) in hex, colon-separated. */
function hexGroups(groups: Uint16Array, from: number, to: number): string {
  let text = ``;
  for (let i = from; i < to; i++) {
    // From byte tables: number.toString(16) cost about ten times as much.
    const group = groups[i];
    const hex = group < 256 ? BYTE_HEX[group] : BYTE_HEX[group >>> 8] + BYTE_HEX2[group & 255];
    text += i === from ? hex : `:${hex}`;
  }
  return text;
}

/** A byte in hex, without and with a leading zero. */
const BYTE_HEX = Array.from({length: 256}, (_, byte) => byte.toString(16));
const BYTE_HEX2 = BYTE_HEX.map(hex => hex.padStart(2, `0`));

/** `ip:port`, with brackets around IPv6. */
export function formatEndpoint(address: string, port: number): string {
  return address.includes(`:`) ? `[${address}]:${port}` : `${address}:${port}`;
}

/** True for the all-zero (wildcard) address in either family. */
export function isWildcard(address: string): boolean {
  return address === `0.0.0.0` || address === `::`;
}
