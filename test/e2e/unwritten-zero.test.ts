// Pages never written since allocation are zero on both ends, and the simulated guest marks every
// write (its fill included): the first pass sends only written pages, and the result is still exactly
// the replay.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { deadline } from '../_support/deadline.js';
import { assertMigratedExactly, migrationFixture, nonZeroPages, type MigrationCase } from '../_support/migration.js';

const migrate = migrationFixture(test);
const PAGES = (64 * 2 ** 20) / 4096;

test('an idle zero-filled guest: the first pass sends nothing, and the destination is exactly the replay', deadline(120_000, async () => {
  const c: MigrationCase = { seed: 101, memory: '64MiB', fill: 'zero', workload: 'idle', runSteps: 1000 };
  const r = await migrate(c);
  assertMigratedExactly(r, c);
  assert.is(r.source.report!.iterations[0].pages, 0);
}));

test('a zero-filled guest with a hot set: only pages the vCPU wrote go, in every mode that starts with a full pass', deadline(180_000, async () => {
  for (const mode of ['live', 'warm', 'postcopy'] as const) {
    const c: MigrationCase = { seed: 102, mode, memory: '64MiB', fill: 'zero', workload: 'hotset', hotSize: '4MiB', dirtyRate: 50_000, runSteps: 20_000 };
    const r = await migrate(c);
    assertMigratedExactly(r, c);
    const first = r.source.report!.iterations[0];
    const sentFirst = mode === 'postcopy' ? r.dest.report!.postcopy!.pagesPushed + (r.dest.report!.postcopy!.pagesAnswered ?? 0) : first.pages;
    assert.ok(sentFirst > 0 && sentFirst < PAGES / 2, `${mode}: ${sentFirst} of ${PAGES} pages in the first pass`);
  }
}));

test('a mixed-filled guest sends exactly the pages its fill wrote, and not its zero pages', deadline(120_000, async () => {
  const c: MigrationCase = { seed: 103, memory: '16MiB', fill: 'mixed', workload: 'idle', runSteps: 1000 };
  const r = await migrate(c);
  assertMigratedExactly(r, c);
  const written = nonZeroPages(c, 0);
  assert.ok(written > 0 && written < 4096, `${written} of 4096 pages hold something`);
  assert.is(r.source.report!.iterations[0].pages, written);
}));

test.run();
