// The /proc fixture tree of the synthetic host (capture layout: proc/<pid>/..., netns/...).
// The tree writer belongs to the snapshot stages (issue 4); until it exists, the rows that need
// the tree say so.
import type {SyntheticWorld} from './synthetic.ts';

export function fixtureTreeUnavailable(): string | null {
  return `the /proc fixture-tree generator (issue 4)`;
}

export async function writeFixtureTree(_world: SyntheticWorld, _dir: string): Promise<void> {
  throw new Error(`not built yet: ${fixtureTreeUnavailable()}`);
}
