// A guest whose RAM is cut into regions (--ram-regions) migrates like a one-region guest in every mode
// that touches regions differently: the destination receives every region, post-copy pushes every
// region and faults pages of each in by (region, page), and both RAM dumps (all regions, in order)
// equal the uninterrupted replay.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { deadline } from '../_support/deadline.js';
import { assertMigratedExactly, migrationFixture, type MigrationCase } from '../_support/migration.js';

const migrate = migrationFixture(test);

test('a live migration of a 2-region guest ends identical to replay', deadline(120_000, async () => {
  const c: MigrationCase = { seed: 81, memory: '16MiB', workload: 'uniform', ramRegions: 2, dirtyRate: 50_000, runSteps: 50_000 };
  const r = await migrate(c);
  assertMigratedExactly(r, c);
}));

test('a post-copy migration of a 3-region guest pushes and faults pages of every region and ends identical to replay', deadline(120_000, async () => {
  const c: MigrationCase = {
    seed: 82, mode: 'postcopy', memory: '16MiB', workload: 'uniform', ramRegions: 3, runSteps: 100_000,
    destArgs: ['--slab-size', '1MiB'],
  };
  const r = await migrate(c);
  assertMigratedExactly(r, c);
  const dst = r.dest.report!.postcopy!;
  assert.ok(dst.faults > 0, 'the resumed guest faulted');
  // Every page not faulted in was pushed: the push reached past the first region.
  const pages = (16 * 2 ** 20) / 4096;
  assert.ok(dst.pagesPushed + (dst.pagesAnswered ?? 0) >= pages - dst.duplicates!, `pushed ${dst.pagesPushed}, answered ${dst.pagesAnswered} of ${pages}`);
}));

test('an idle 2-region guest in post-copy completes by the push alone (no fault would ever fetch region 1)', deadline(120_000, async () => {
  const c: MigrationCase = { seed: 83, mode: 'postcopy', memory: '16MiB', workload: 'idle', ramRegions: 2, runSteps: 1000 };
  const r = await migrate(c);
  assertMigratedExactly(r, c);
  assert.is(r.dest.report!.postcopy!.faults, 0);
}));

test('a hybrid migration of a 2-region guest ends identical to replay', deadline(120_000, async () => {
  const c: MigrationCase = {
    seed: 84, mode: 'hybrid', memory: '16MiB', workload: 'hotset', hotSize: '2MiB', ramRegions: 2, dirtyRate: 20_000,
    sourceArgs: ['--postcopy-after', '2'], runSteps: 50_000,
  };
  assertMigratedExactly(await migrate(c), c);
}));

test.run();
