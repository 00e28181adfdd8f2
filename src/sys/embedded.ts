// Where the FFI's native module comes from when running from the source tree: the koffi package
// in node_modules. scripts/build.mjs replaces this file in the bundle with the module's bytes
// (brotli-compressed, with their SHA-256), or, for the standalone executable, with the names of its assets.
import {createRequire} from 'node:module';
import type {EmbeddedNative} from './native.ts';

export const EMBEDDED_NATIVE: ReadonlyArray<EmbeddedNative> | null = null;

/** The koffi package from node_modules, and where its entry point is (for worker threads). */
export function requireKoffi(): {koffi: unknown, path: string} {
  const require = createRequire(import.meta.url);
  const path = require.resolve(`koffi`);
  return {koffi: require(path), path};
}

/** The compressed module of `triplet` (brotli), base64, from the bundle's trailing comment (only the bundle has one). */
export function readTrailer(_triplet: string): string {
  throw new Error(`not a bundle: no embedded modules`);
}

/** A single-executable asset (only the standalone executable has them). */
export function readAsset(_key: string): Uint8Array {
  throw new Error(`not a standalone executable: no assets`);
}
