// The /proc fixture tree of the synthetic host, in the capture layout (proc/<pid>/...,
// netns/<INODE>/...), written by the snapshot stages' own generator (scripts/gen-proc-fixture.ts)
// so the benchmark and the snapshot tests read trees made the same way.
import {existsSync} from 'node:fs';
import {dirname, join} from 'node:path';
import {fileURLToPath} from 'node:url';
import type {SyntheticWorld} from './synthetic.ts';

const generator = join(dirname(fileURLToPath(import.meta.url)), `..`, `scripts`, `gen-proc-fixture.ts`);

export function fixtureTreeUnavailable(): string | null {
  return existsSync(generator) ? null : `the /proc fixture-tree generator scripts/gen-proc-fixture.ts (issue 4)`;
}

export async function writeFixtureTree(world: SyntheticWorld, dir: string): Promise<void> {
  const {writeProcTree} = await import(`../scripts/gen-proc-fixture.ts`);
  writeProcTree(dir, {processes: world.processes, sockets: world.sockets, namespaces: world.namespaces});
}
