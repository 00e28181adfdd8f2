// V8 keeps, per field of an object shape, what kind of value the field has held (small integers,
// numbers, objects of one class, anything) and whether it was ever rewritten, and optimises code
// on that knowledge. A record that breaks it later (the first map with dated values, the first
// entry with an owner, the first pid_tgid key, the first `unknown` count) throws away that code,
// in every per-entry function that read the field, and V8 compiles it all again (on two cores,
// beside the read-ahead worker). Made general on one throwaway object of the shape at start-up,
// before anything is optimised, the fields never change kind again.

/** Values of every kind a record's field may hold: a string, an object, a small integer, a fraction, nothing. */
export const ANY_VALUES: ReadonlyArray<unknown> = [``, {}, 1, 0.5, undefined];
/** Small integers only: a count stays a small integer, rewritten from the start. */
export const COUNT_VALUES: ReadonlyArray<unknown> = [1, 0];

/** Writes each named field of `object` (a throwaway of the shape) with each of `values` in turn. */
export function generalizeFields<T extends object>(object: T, names: ReadonlyArray<keyof T>, values: ReadonlyArray<unknown>): void {
  const fields = object as Record<PropertyKey, unknown>;
  for (const value of values) {
    for (const name of names)
      fields[name as PropertyKey] = value;
  }
}
