// A simulated guest whose RAM is cut into regions (--ram-regions) migrates like a one-region guest:
// the destination receives every region, runs the workload across them (post-copy faults name the
// right region), and both RAM dumps (all regions, in order) equal the uninterrupted replay.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { assertMigratedExactly, migrationFixture, type MigrationCase } from '../_support/migration.js';

const migrate = migrationFixture(test);

test('a live migration of a 2-region guest ends identical to replay', async () => {
  const c: MigrationCase = { seed: 81, memory: '16MiB', workload: 'uniform', ramRegions: 2, dirtyRate: 50_000, runSteps: 50_000 };
  const r = await migrate(c);
  assertMigratedExactly(r, c);
});

test('a post-copy migration of a 3-region guest faults pages of every region in and ends identical to replay', async () => {
  const c: MigrationCase = {
    seed: 82, mode: 'postcopy', memory: '16MiB', workload: 'uniform', ramRegions: 3, runSteps: 100_000,
    destArgs: ['--slab-size', '1MiB'],
  };
  const r = await migrate(c);
  assertMigratedExactly(r, c);
  assert.ok(r.dest.report!.postcopy!.faults > 0, 'the resumed guest faulted');
});

test.run();
