// A seeded pseudo-random sequence for tests that try many generated inputs: the same inputs on
// every run, so a failure can be reproduced.

export function rng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 0x100000000;
  };
}
