// A file's set-up that fails its tests when it throws. uvu runs `test.before` hooks inside a
// try whose `finally` returns, so a hook's error is dropped: the file reports "0 / N", prints no
// error, and the run still exits 0 (the BPF worlds, the dist build). Here the error is kept and
// each test of the file fails with it.
import type {Test} from 'uvu';

export function beforeAll(test: Test, setUp: () => unknown): void {
  let failure: {error: unknown} | null = null;
  test.before(async () => {
    try {
      await setUp();
    } catch (error) {
      failure = {error};
    }
  });
  test.before.each(() => {
    if (failure !== null)
      throw failure.error;
  });
}
