// Terminal styling for the text report: ANSI only on a terminal without NO_COLOR (index.ts).
export interface Style {
  bold(text: string): string;
  red(text: string): string;
  yellow(text: string): string;
  green(text: string): string;
  dim(text: string): string;
}

const plain = (text: string) => text;
export const NO_STYLE: Style = {bold: plain, red: plain, yellow: plain, green: plain, dim: plain};

const sgr = (code: string) => (text: string) => `\x1b[${code}m${text}\x1b[0m`;
export const ANSI_STYLE: Style = {bold: sgr(`1`), red: sgr(`31`), yellow: sgr(`33`), green: sgr(`32`), dim: sgr(`2`)};
