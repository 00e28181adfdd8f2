// The /proc fixture tree of the synthetic host, in the capture layout (proc/<pid>/...,
// netns/<INODE>/...), written by the snapshot stages' own writer (scripts/gen-proc-fixture.ts)
// so the benchmark and the snapshot tests read trees made the same way.
import {writeProcTree} from '../scripts/gen-proc-fixture.ts';
import type {SyntheticWorld} from './synthetic.ts';

export async function writeFixtureTree(world: SyntheticWorld, dir: string): Promise<void> {
  writeProcTree(dir, {processes: world.processes, sockets: world.sockets, namespaces: world.namespaces});
}
