// A simulated guest whose RAM is cut into regions (--ram-regions) migrates like a one-region guest:
// the destination receives every region and runs the workload across them, and both RAM dumps (all
// regions, in order) equal the uninterrupted replay. (Post-copy of several regions waits on the engine:
// its background push covers only the first region, and a fault read can mix two faults' fields.)

import { test } from 'uvu';
import { assertMigratedExactly, migrationFixture, type MigrationCase } from '../_support/migration.js';

const migrate = migrationFixture(test);

test('a live migration of a 2-region guest ends identical to replay', async () => {
  const c: MigrationCase = { seed: 81, memory: '16MiB', workload: 'uniform', ramRegions: 2, dirtyRate: 50_000, runSteps: 50_000 };
  const r = await migrate(c);
  assertMigratedExactly(r, c);
});

test.run();
