// End-to-end: two real processes on 127.0.0.1 (memshift dest + memshift source), compared bit for bit
// with an uninterrupted replay of the same guest. One parameterised runMigration, thin named cases.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { assertMigratedExactly, diffAgainstReplay, explain, migrationFixture, type MigrationCase, type MigrationOutcome } from '../_support/migration.js';

const migrate = migrationFixture(test);

/** The oracle, and the destination really ran on after the switch. */
function assertOracle(r: MigrationOutcome, c: MigrationCase): void {
  assertMigratedExactly(r, c);
  const ran = r.dest.report!.guestSteps - r.source.report!.guestSteps;
  assert.ok(ran >= (c.runSteps ?? 20000), `destination ran ${ran} steps after the switch`);
}

// A hot set that keeps dirtying, a link capped at 200 MiB/s and a 20 ms limit: pass 1 leaves a few
// thousand dirty pages (> 20 ms of transfer), pass 2 a few hundred, then stop-and-copy.
const severalIterations = (seed: number): MigrationCase => ({
  seed, memory: '64MiB', workload: 'hotset', hotSize: '8MiB', dirtyRate: 10000, downtimeLimit: 20, maxBandwidth: '200MiB',
});

for (const seed of [1, 2, 3]) {
  test(`live migration over several iterations is identical to replay (seed ${seed})`, async () => {
    const c = severalIterations(seed);
    const r = await migrate(c);
    assertOracle(r, c);
    const src = r.source.report!;
    assert.ok(src.iterations.length >= 3, `only ${src.iterations.length} iterations`);
    assert.is(src.switchoverReason?.rule, 'downtime-limit');
    assert.ok(src.converged);
    assert.ok(src.downtimeMs !== null && src.downtimeMs > 0);
    assert.ok(src.pagesByEncoding.xbzrle > 0, 'later iterations send deltas');
  });
}

test('live migration with LZ4 on raw pages is identical to replay', async () => {
  const c: MigrationCase = { ...severalIterations(4), fill: 'mixed', sourceArgs: ['--compress', 'lz4'] };
  const r = await migrate(c);
  assertOracle(r, c);
  assert.ok(r.source.report!.pagesByEncoding.lz4 > 1000, `${r.source.report!.pagesByEncoding.lz4} pages went as LZ4 (text-like pages compress)`);
  assert.is(r.dest.report!.pagesByEncoding.lz4, r.source.report!.pagesByEncoding.lz4, 'the destination decoded every one');
});

test('cold migration copies a stopped guest in one pass, identical to replay', async () => {
  const c: MigrationCase = { seed: 11, mode: 'cold', memory: '64MiB', workload: 'uniform' };
  const r = await migrate(c);
  assertOracle(r, c);
  const src = r.source.report!;
  assert.is(src.iterations.length, 1);
  assert.is(src.mode, 'cold');
  assert.ok(src.downtimeMs! >= src.setupTimeMs + src.iterations[0].ms, 'cold downtime covers the handshake and the whole copy');
});

test('warm migration suspends after the handshake and copies RAM and state in one pass', async () => {
  const c: MigrationCase = { seed: 12, mode: 'warm', memory: '64MiB', workload: 'hotset' };
  const r = await migrate(c);
  assertOracle(r, c);
  const src = r.source.report!;
  assert.is(src.iterations.length, 1);
  assert.is(src.iterations[0].pages, 16384, 'one pass over every page');
  assert.ok(src.downtimeMs! < src.totalTimeMs, 'setup is not downtime');
});

test('guests split over several slabs, with different slab sizes on each side, migrate exactly', async () => {
  const c: MigrationCase = {
    ...severalIterations(21), memory: '48MiB', workload: 'uniform',
    sourceArgs: ['--slab-size', '16MiB'], destArgs: ['--slab-size', '4MiB'],
  };
  const r = await migrate(c);
  assertOracle(r, c);
});

// A uniform writer dirtying 200 MB/s worth of pages over a link capped at 50 MiB/s, without XBZRLE:
// every pass leaves about as many dirty pages as it sent, however fast the machine is.
const stuck = (seed: number, onStall: 'force' | 'throttle' | 'abort'): MigrationCase => ({
  seed, memory: '16MiB', workload: 'uniform', dirtyRate: 50000, downtimeLimit: 30, maxBandwidth: '50MiB', onStall, maxIterations: 40,
  sourceArgs: ['--xbzrle', 'off', '--throttle-initial', '60', '--throttle-step', '20'],
});

test('a guest that cannot converge is forced to stop-and-copy under --on-stall force', async () => {
  const c = stuck(31, 'force');
  const r = await migrate(c);
  assertOracle(r, c);
  const reason = r.source.report!.switchoverReason!;
  assert.ok(['dirty-rate', 'no-progress'].includes(reason.rule), `rule ${reason.rule}`);
  assert.ok(reason.forced);
  assert.is(r.source.report!.converged, false);
});

test('auto-converge throttles a guest that cannot converge until it does', async () => {
  const c = stuck(32, 'throttle');
  const r = await migrate(c);
  assertOracle(r, c);
  const src = r.source.report!;
  assert.ok(src.throttlePercent >= 60, `throttle ${src.throttlePercent}`);
  assert.is(src.switchoverReason!.rule, 'downtime-limit', 'throttling made it converge');
  assert.ok(src.converged);
});

test('--on-stall abort gives up, keeps the source guest running and never resumes the destination', async () => {
  const c = stuck(33, 'abort');
  const r = await migrate(c);
  assert.is(r.source.code, 1, explain(r.source));
  assert.match(r.source.stderr, /MS_ERR_MIGRATION_ABORTED/);
  const src = r.source.report!;
  assert.is(src.outcome, 'aborted');
  assert.is(src.throttlePercent, 0);
  assert.is(diffAgainstReplay(r.source.image, c, src.guestSteps), null, 'source guest ran on, exactly');
  const lastIteration = src.iterations.length;
  assert.ok(src.guestSteps > 0 && lastIteration >= 2);
  assert.is(r.dest.code, 1, explain(r.dest));
  assert.is(r.dest.report!.outcome, 'failed');
  assert.is(r.dest.report!.error!.code, 'MS_ERR_PEER_ERROR');
});

test.run();
