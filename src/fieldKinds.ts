// The vocabulary of the record spec (src/schema.ts): kinds of field values. Each kind knows how
// to test a value (the fast check every reader runs on every record), how to say what is wrong
// with one (only when the test failed), and how to describe itself (docs/wire-format.md). The
// TypeScript type of a field is inferred from its kind, so no type is written twice.

/** A kind of value. `T` is the TypeScript type of a value that passes `test`. */
export interface Kind<T> {
  /** True when the value is of this kind. Hot: runs on every field of every record read. */
  readonly test: (value: unknown) => boolean;
  /** What is wrong with a value that failed `test` (path-prefixed for nested fields). */
  readonly explain: (value: unknown, path: string) => string;
  /** The type as the wire-format doc prints it. */
  readonly doc: string;
  /** Type carrier only, never set. */
  readonly _type?: T;
}

export type TypeOf<K> = K extends Kind<infer T> ? T : never;

export interface Field<T = unknown, Optional extends boolean = boolean> {
  readonly kind: Kind<T>;
  readonly optional: Optional;
  /** One line for docs/wire-format.md (and the reader of the spec). */
  readonly doc: string;
}

export type Fields = Readonly<Record<string, Field>>;

type Simplify<T> = {[K in keyof T]: T[K]} & {};

/** The object type a field table describes: required fields, then optional ones (`?`). */
export type ObjectOf<F extends Fields> = Simplify<
  {-readonly [K in keyof F as F[K] extends Field<unknown, false> ? K : never]: F[K] extends Field<infer T> ? T : never}
  & {-readonly [K in keyof F as F[K] extends Field<unknown, false> ? never : K]?: F[K] extends Field<infer T> ? T : never}
>;

/** A field that must be present. */
export function req<T>(kind: Kind<T>, doc = ``): Field<T, false> {
  return {kind, optional: false, doc};
}

/** A field that may be absent (never null: use `nullable` for that). */
export function opt<T>(kind: Kind<T>, doc = ``): Field<T, true> {
  return {kind, optional: true, doc};
}

function show(value: unknown): string {
  const text = value === undefined ? `nothing` : JSON.stringify(value) ?? String(value);
  return text.length > 40 ? `${text.slice(0, 37)}...` : text;
}

function leaf<T>(doc: string, expected: string, test: (value: unknown) => boolean): Kind<T> {
  return {test, doc, explain: (value, path) => `${path}: expected ${expected}, got ${show(value)}`};
}

export const string: Kind<string> = leaf(`string`, `a string`, value => typeof value === `string`);
export const boolean: Kind<boolean> = leaf(`boolean`, `true or false`, value => typeof value === `boolean`);
export const number: Kind<number> = leaf(`number`, `a number`, value => typeof value === `number`);
export const u32: Kind<number> = leaf(`u32`, `an integer 0..4294967295`,
  value => typeof value === `number` && Number.isInteger(value) && value >= 0 && value <= 0xffffffff);
export const port: Kind<number> = leaf(`port`, `an integer 0..65535`,
  value => typeof value === `number` && Number.isInteger(value) && value >= 0 && value <= 0xffff);

const HEX_RE = /^(?:[0-9a-f]{2})*$/;
/** Raw bytes: lowercase hex, two digits per byte, no separators. */
export const hex: Kind<string> = leaf(`hex`, `lowercase hex bytes`, value => typeof value === `string` && HEX_RE.test(value));

const U64_RE = /^(?:0|[1-9][0-9]{0,19})$/;
/** A 64-bit unsigned integer as a decimal string (JSON numbers lose precision past 2^53). */
const U64_MAX = `18446744073709551615`;
/** Decimal digits of a value below 2^64 (20 digits may still be too big: compared as text). */
const isU64Text = (value: string) => U64_RE.test(value) && (value.length < 20 || value <= U64_MAX);
export const u64: Kind<string> = leaf(`u64 (decimal string)`, `a u64 as a decimal string`, value => typeof value === `string` && isU64Text(value));

/** Any JSON value (documented by its field; readers that use it check it themselves). */
export const json: Kind<unknown> = leaf(`JSON`, `a JSON value`, value => value !== undefined);

export function literal<const L extends string | number>(expected: L): Kind<L> {
  return leaf(JSON.stringify(expected), JSON.stringify(expected), value => value === expected);
}

export function oneOf<const V extends string>(values: ReadonlyArray<V>): Kind<V> {
  const set: ReadonlySet<unknown> = new Set(values);
  return leaf(values.map(value => `\`${value}\``).join(` | `), `one of ${values.join(`, `)}`, value => set.has(value));
}

export function nullable<T>(kind: Kind<T>): Kind<T | null> {
  return {
    test: value => value === null || kind.test(value),
    explain: (value, path) => kind.explain(value, path),
    doc: `${kind.doc} or null`,
  };
}

export function arrayOf<T>(kind: Kind<T>): Kind<Array<T>> {
  const test = kind.test;
  return {
    test: value => {
      if (!Array.isArray(value))
        return false;
      for (let i = 0; i < value.length; i++) {
        if (!test(value[i]))
          return false;
      }
      return true;
    },
    explain: (value, path) => {
      if (!Array.isArray(value))
        return `${path}: expected an array, got ${show(value)}`;
      const bad = value.findIndex(item => !test(item));
      return kind.explain(value[bad], `${path}[${bad}]`);
    },
    doc: `array of ${kind.doc}`,
  };
}

/** An object whose values are all of one kind (names are free). */
export function dictOf<T>(kind: Kind<T>): Kind<Record<string, T>> {
  const test = kind.test;
  return {
    test: value => {
      if (typeof value !== `object` || value === null || Array.isArray(value))
        return false;
      for (const name in value) {
        if (!test((value as Record<string, unknown>)[name]))
          return false;
      }
      return true;
    },
    explain: (value, path) => {
      if (typeof value !== `object` || value === null || Array.isArray(value))
        return `${path}: expected an object, got ${show(value)}`;
      const bad = Object.keys(value).find(name => !test((value as Record<string, unknown>)[name]))!;
      return kind.explain((value as Record<string, unknown>)[bad], `${path}.${bad}`);
    },
    doc: `object of ${kind.doc}`,
  };
}

export function unionOf<A, B>(a: Kind<A>, b: Kind<B>, doc: string): Kind<A | B> {
  return {
    test: value => a.test(value) || b.test(value),
    explain: (value, path) => `${path}: expected ${doc}, got ${show(value)}`,
    doc,
  };
}

/** Field tables compiled for testing: arrays, so the hot loop touches no Object.entries. */
interface Compiled {
  names: Array<string>;
  tests: Array<(value: unknown) => boolean>;
  optional: Array<boolean>;
}

function compile(fields: Fields): Compiled {
  const names = Object.keys(fields);
  return {names, tests: names.map(name => fields[name].kind.test), optional: names.map(name => fields[name].optional)};
}

/**
 * Tests the fields of an object (fields it does not list are allowed: forward compatibility).
 * The test is generated from the table, one statement per field: each field's load and test is
 * then a site of its own, which V8 specialises (a named load, the kind's test inlined), where one
 * loop over the table made every load and call megamorphic (an entry's check took ~0.75 µs).
 */
export function fieldsTest(fields: Fields): (value: Record<string, unknown>) => boolean {
  const {names, tests, optional} = compile(fields);
  const statements = names.map((name, i) => optional[i]
    ? `value = record[${JSON.stringify(name)}]; if (value !== undefined && !test${i}(value)) return false;`
    : `value = record[${JSON.stringify(name)}]; if (value === undefined || !test${i}(value)) return false;`);
  const make = new Function(...names.map((_, i) => `test${i}`), `return function fieldsTest(record) {\n  let value;\n  ${statements.join(`\n  `)}\n  return true;\n};`);
  return make(...tests) as (value: Record<string, unknown>) => boolean;
}

/** The first problem with an object's fields, or null. */
export function fieldsProblem(fields: Fields, record: Record<string, unknown>, path: string): string | null {
  for (const name of Object.keys(fields)) {
    const field = fields[name];
    const value = record[name];
    const at = path === `` ? name : `${path}.${name}`;
    if (value === undefined) {
      if (!field.optional)
        return `${at}: missing`;
    } else if (!field.kind.test(value)) {
      return field.kind.explain(value, at);
    }
  }
  return null;
}

/** A nested object described by a field table (see `ObjectKind.fields` for the doc). */
export interface ObjectKind<F extends Fields> extends Kind<ObjectOf<F>> {
  readonly fields: F;
  readonly name: string;
}

export function object<const F extends Fields>(name: string, fields: F): ObjectKind<F> {
  const testFields = fieldsTest(fields);
  return {
    name,
    fields,
    test: value => typeof value === `object` && value !== null && !Array.isArray(value) && testFields(value as Record<string, unknown>),
    explain: (value, path) => {
      if (typeof value !== `object` || value === null || Array.isArray(value))
        return `${path}: expected ${name} (an object), got ${show(value)}`;
      return fieldsProblem(fields, value as Record<string, unknown>, path) ?? `${path}: not ${name}`;
    },
    doc: name,
  };
}

/**
 * One of several object kinds told apart by a literal field (`kind` of a decoded key): the
 * test dispatches on it, so a value is tested against one variant only.
 */
export function variants<const V extends ReadonlyArray<ObjectKind<Fields>>>(by: string, name: string, options: V): Kind<TypeOf<V[number]>> {
  const byTag = new Map<unknown, ObjectKind<Fields>>();
  for (const option of options) {
    const tag = option.fields[by]?.kind as Kind<unknown> | undefined;
    const literalValue = tag !== undefined ? JSON.parse(tag.doc) as unknown : undefined;
    byTag.set(literalValue, option);
  }
  return {
    test: value => {
      if (typeof value !== `object` || value === null)
        return false;
      const option = byTag.get((value as Record<string, unknown>)[by]);
      return option !== undefined && option.test(value);
    },
    explain: (value, path) => {
      const option = typeof value === `object` && value !== null ? byTag.get((value as Record<string, unknown>)[by]) : undefined;
      if (option === undefined)
        return `${path}: expected ${name} (${by} one of ${[...byTag.keys()].join(`, `)}), got ${show(value)}`;
      return option.explain(value, path);
    },
    doc: name,
  };
}
