// End-to-end: two real processes on 127.0.0.1 (memshift dest + memshift source), compared bit for bit
// with an uninterrupted replay of the same guest. One parameterised runMigration, thin named cases.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { deadline } from '../_support/deadline.js';
import type { Report } from '../../src/index.js';
import { SWITCHOVER_COST_MS } from '../../src/migration/eta.js';
import { assertMigratedExactly, diffAgainstReplay, explain, migrationFixture, nonZeroPages, type MigrationCase, type MigrationOutcome } from '../_support/migration.js';

const migrate = migrationFixture(test);

/** The oracle, and the destination really ran on after the switch; every run reports ETAs and step rates. */
function assertOracle(r: MigrationOutcome, c: MigrationCase): void {
  assertMigratedExactly(r, c);
  const ran = r.dest.report!.guestSteps - r.source.report!.guestSteps;
  assert.ok(ran >= (c.runSteps ?? 20000), `destination ran ${ran} steps after the switch`);
  assertVisibility(r);
}

const rate = (v: number | null | undefined, what: string): number => {
  assert.ok(typeof v === 'number' && Number.isFinite(v) && v >= 0, `${what}: ${v}`);
  return v!;
};

/**
 * What a completed stop-and-copy run reports beyond the oracle, by construction: an ETA at the end of
 * every pass, made in pass order within the run, the last one (every page out) the switchover's cost;
 * the simulated guest exposes steps, so there is a rate before, one per pass, and one after resume on
 * the destination; the stop-and-copy pass runs with the guest paused, so its rate is exactly 0.
 */
function assertVisibility(r: MigrationOutcome): void {
  const src = r.source.report!;
  const its = src.iterations;
  for (const it of its) rate(it.etaMs, `pass ${it.iteration} eta`);
  assert.is(its[its.length - 1].etaMs, SWITCHOVER_COST_MS, 'after the final pass only the switchover remains');
  for (let i = 0; i < its.length; i++) {
    assert.ok(its[i].endedAtMs > (i === 0 ? src.setupTimeMs : its[i - 1].endedAtMs) && its[i].endedAtMs <= src.totalTimeMs, `pass ${i + 1} ended at ${its[i].endedAtMs} ms`);
  }
  const done = src.completedAtMs;
  assert.ok(done !== null && done > its[its.length - 1].endedAtMs && done <= src.totalTimeMs, `completed at ${done} ms`);
  const g = src.guestStepsPerSec;
  rate(g.beforeMigration, 'source: before');
  assert.is(g.perPass.length, its.length, 'one rate per pass');
  g.perPass.forEach((v, i) => rate(v, `pass ${i + 1} step rate`));
  assert.is(g.perPass[g.perPass.length - 1], 0, 'the guest is paused during stop-and-copy');
  assert.is(g.afterResume, null, 'the source does not see the guest after resume');
  const d = r.dest.report!.guestStepsPerSec;
  assert.equal([d.beforeMigration, d.perPass], [null, []], 'the destination sees no pass');
  rate(d.afterResume, 'destination: after resume');
}

/**
 * The downtime breakdown's disjoint parts fit in the downtime: the source's pause, final pass and
 * device state happen one after another before SWITCHOVER goes out, and the destination's digest
 * check and resume after it arrives, all inside the source's pause → RESUMED window. (Not
 * destinationApplyMs: the destination reports its apply time for the whole final pass, which overlaps
 * the source's finalPagesMs, so adding it can exceed the downtime.)
 */
function assertBreakdownWithinDowntime(r: Report): void {
  const b = r.downtimeBreakdown!;
  const parts = b.pauseMs + b.finalPagesMs + b.deviceStateMs + b.digestCheckMs + b.resumeMs;
  assert.ok(r.downtimeMs !== null && r.downtimeMs > 0, `downtime ${r.downtimeMs}`);
  assert.ok(parts <= r.downtimeMs!, `disjoint parts sum to ${parts} ms, more than the downtime ${r.downtimeMs} ms`);
}

// Convergence made impossible by construction, so the iteration count is the cap. A uniform writer
// dirties at most 2500 pages/s (10 MB/s raw) over a link capped at 32 MiB/s: pass 1 (32 MiB) takes
// about a second, leaving ~2000 dirty pages, and every later pass leaves about a third of what it
// sent. The dirty rate stays well under the link (rule dirty-rate cannot fire), while the expected
// downtime stays tens of ms against a 1 ms limit (rule downtime-limit cannot fire), so rule
// max-iterations decides after exactly 3 pre-copy passes. Pass 2 fills the XBZRLE cache, so pass 3
// and the final pass send pages dirtied again as deltas.
const cappedIterations = (seed: number): MigrationCase => ({
  seed, memory: '32MiB', workload: 'uniform', dirtyRate: 2500, downtimeLimit: 1, maxBandwidth: '32MiB', maxIterations: 3, onStall: 'force',
  runSteps: 2000, // the destination runs the guest at its 2500 steps/s too
});

for (const seed of [1, 2, 3]) {
  test(`live migration runs exactly --max-iterations pre-copy passes when the limit is unreachable, then matches replay (seed ${seed})`, deadline(120_000, async () => {
    const c = cappedIterations(seed);
    const r = await migrate(c);
    assertOracle(r, c);
    const src = r.source.report!;
    assert.is(src.iterations.length, 3 + 1, '3 pre-copy passes and the stop-and-copy pass');
    assert.is(src.switchoverReason?.rule, 'max-iterations');
    assert.is(src.switchoverReason?.forced, true);
    assert.is(src.converged, false);
    for (const it of src.iterations.slice(0, 3)) assert.ok(it.expectedDowntimeMs > c.downtimeLimit!, `pass ${it.iteration} expected ${it.expectedDowntimeMs} ms`);
    assert.ok(src.pagesByEncoding.xbzrle > 0, 'later iterations send deltas');
    assert.is(src.downtimeBreakdown!.finalPages, src.iterations[3].pages, 'the final pass is what the downtime copied');
    assertBreakdownWithinDowntime(src);
  }));
}

test('an idle guest converges after one pass by the downtime limit, and the stop-and-copy pass sends nothing', deadline(120_000, async () => {
  const c: MigrationCase = { seed: 5, memory: '32MiB', workload: 'idle', maxBandwidth: '64MiB' };
  const r = await migrate(c);
  assertOracle(r, c);
  const src = r.source.report!;
  assert.is(src.switchoverReason?.rule, 'downtime-limit');
  assert.is(src.converged, true);
  assert.is(src.iterations.length, 2);
  assert.is(src.iterations[0].dirtyPages, 0, 'nothing dirtied during pass 1');
  assert.is(src.iterations[1].pages, 0, 'nothing left for the downtime');
  assert.is(src.predictedDowntimeMs, SWITCHOVER_COST_MS, 'nothing left to send: the switchover alone');
  assertBreakdownWithinDowntime(src);
  // Nothing is dirty after pass 1: the estimate is the switchover alone. An idle vCPU takes no steps.
  assert.is(src.iterations[0].etaMs, SWITCHOVER_COST_MS);
  assert.equal([src.guestStepsPerSec.beforeMigration, src.guestStepsPerSec.perPass], [0, [0, 0]]);
}));

test('live migration with LZ4 on raw pages is identical to replay', deadline(120_000, async () => {
  const c: MigrationCase = { ...cappedIterations(4), fill: 'mixed', sourceArgs: ['--compress', 'lz4'] };
  const r = await migrate(c);
  assertOracle(r, c);
  assert.ok(r.source.report!.pagesByEncoding.lz4 > 1000, `${r.source.report!.pagesByEncoding.lz4} pages went as LZ4 (text-like pages compress)`);
  assert.is(r.dest.report!.pagesByEncoding.lz4, r.source.report!.pagesByEncoding.lz4, 'the destination decoded every one');
}));

test('--compress auto on a 16 MiB/s link: LZ4 starts within the first pass for text-like pages, and the guest lands identical', deadline(120_000, async () => {
  const c: MigrationCase = { ...cappedIterations(21), fill: 'mixed', maxBandwidth: '16MiB', sourceArgs: ['--compress', 'auto'] };
  const r = await migrate(c);
  assertOracle(r, c);
  const src = r.source.report!;
  assert.is(src.iterations[0].compression.lz4, true, src.iterations[0].compression.reason);
  assert.match(src.iterations[0].compression.reason, /^LZ4 on: link 1\d MB\/s, LZ4 \d+ MB\/s( on the sending thread)? at \d+ % of the bytes/);
  assert.ok(src.pagesByEncoding.lz4 > 1000, `${src.pagesByEncoding.lz4} pages went as LZ4`);
  assert.is(r.dest.report!.pagesByEncoding.lz4, src.pagesByEncoding.lz4);
}));

test('--compress auto on unthrottled loopback keeps LZ4 off: the link is faster than the compressor', deadline(120_000, async () => {
  // The destination is prepared: one that faults its memory in as pages arrive takes them at what its
  // host faults (~0.2 GB/s on these machines), which the source cannot tell from a slow link.
  const c: MigrationCase = {
    ...cappedIterations(22), memory: '64MiB', fill: 'mixed', maxBandwidth: undefined, sourceArgs: ['--compress', 'auto'],
    destArgs: ['--memory', '64MiB', '--prealloc'],
  };
  const r = await migrate(c);
  assertOracle(r, c);
  const src = r.source.report!;
  // A host busy elsewhere can make the first raw stretch slow enough for the sample to turn LZ4 on;
  // measured, it goes off again. Most pages go raw either way.
  assert.ok(src.pagesByEncoding.lz4 < src.pagesByEncoding.raw / 4, `${src.pagesByEncoding.lz4} pages LZ4, ${src.pagesByEncoding.raw} raw`);
  assert.ok(src.iterations.length >= 2);
  const last = src.iterations[src.iterations.length - 1].compression;
  assert.equal([last.lz4, /^LZ4 off: link \d+ MB\/s/.test(last.reason)], [false, true], JSON.stringify(src.iterations.map((i) => [i.pages, i.bytes, Math.round(i.ms), i.pagesByEncoding, i.compression.reason])));
}));

test('cold migration copies a stopped guest in one pass, identical to replay', deadline(120_000, async () => {
  const c: MigrationCase = { seed: 11, mode: 'cold', memory: '64MiB', workload: 'uniform' };
  const r = await migrate(c);
  assertOracle(r, c);
  const src = r.source.report!;
  assert.is(src.iterations.length, 1);
  assert.is(src.mode, 'cold');
  assert.ok(src.downtimeMs! >= src.setupTimeMs + src.iterations[0].ms, 'cold downtime covers the handshake and the whole copy');
  assert.equal(src.guestStepsPerSec.perPass, [0], 'the one pass runs with the guest paused');
}));

test('warm migration suspends after the handshake and copies RAM and state in one pass', deadline(120_000, async () => {
  const c: MigrationCase = { seed: 12, mode: 'warm', memory: '64MiB', workload: 'hotset' };
  const r = await migrate(c);
  assertOracle(r, c);
  const src = r.source.report!;
  assert.is(src.iterations.length, 1);
  // Every page the fill wrote, and those the vCPU wrote since; never one the guest never wrote.
  const filled = nonZeroPages(c, 0);
  assert.ok(src.iterations[0].pages >= filled && src.iterations[0].pages <= 16384, `one pass of ${src.iterations[0].pages} pages; the fill wrote ${filled} of 16384`);
  assert.ok(src.setupTimeMs > 0 && src.downtimeMs! + src.setupTimeMs <= src.totalTimeMs, 'setup is not downtime: the two are disjoint parts of the total');
  assertBreakdownWithinDowntime(src);
}));

test('guests split over several slabs, with different slab sizes on each side, migrate exactly', deadline(120_000, async () => {
  const c: MigrationCase = {
    ...cappedIterations(21), memory: '48MiB', workload: 'uniform',
    sourceArgs: ['--slab-size', '16MiB'], destArgs: ['--slab-size', '4MiB'],
  };
  const r = await migrate(c);
  assertOracle(r, c);
}));

// A stall forced by construction: a uniform writer at 50 000 steps/s over 16 MiB (4096 pages) without
// XBZRLE, on a link capped at 50 MiB/s. Each pass takes ~0.3 s and leaves nearly every page dirty
// again, so the expected downtime (~0.3 s) never meets the 10 ms limit. With --max-iterations 2 the
// cap decides at pass 2: rule max-iterations comes before dirty-rate and no-progress, which could not
// fire yet anyway (they need 2 and 5 passes of history).
const stuck = (seed: number, onStall: 'force' | 'abort'): MigrationCase => ({
  seed, memory: '16MiB', workload: 'uniform', dirtyRate: 50000, downtimeLimit: 10, maxBandwidth: '50MiB', onStall, maxIterations: 2,
  sourceArgs: ['--xbzrle', 'off'],
});

test('a guest that cannot converge is forced to stop-and-copy at the iteration cap under --on-stall force', deadline(120_000, async () => {
  const c = stuck(31, 'force');
  const r = await migrate(c);
  assertOracle(r, c);
  const src = r.source.report!;
  assert.equal(src.switchoverReason && { rule: src.switchoverReason.rule, action: src.switchoverReason.action, forced: src.switchoverReason.forced },
    { rule: 'max-iterations', action: 'switchover', forced: true });
  assert.is(src.converged, false);
  assert.is(src.iterations.length, 2 + 1);
  assertBreakdownWithinDowntime(src);
}));

// Auto-converge by construction: a uniform writer on a 1 MiB guest (256 pages) at 20 000 steps/s, on a
// link capped at 4 MiB/s without XBZRLE. Every pass takes ~250 ms, in which ~5000 steps dirty all 256
// pages again: the remaining count never shrinks and the expected downtime (~250 ms) never meets the
// 50 ms limit, so a stall rule fires (no-progress by pass 5 at the latest). The first stall throttles
// straight to 99 % (--throttle-initial 99): 200 steps/s then dirty a few dozen pages per pass, and the
// limit is met.
test('--max-time holds inside a pass: pass 1 stops at the cap with pages unsent, and the forced stop-and-copy sends them', deadline(120_000, async () => {
  // 64 MiB of random pages at 8 MiB/s: pass 1 alone would take about 8 s; the cap is 1 s (what is
  // already encoded when it strikes, a few 4 MiB chunks, still goes out).
  const c: MigrationCase = { seed: 66, memory: '64MiB', fill: 'random', workload: 'hotset', dirtyRate: 5000, maxBandwidth: '8MiB', onStall: 'force', sourceArgs: ['--max-time', '1'], runSteps: 2000 };
  const r = await migrate(c);
  assertMigratedExactly(r, c);
  const src = r.source.report!;
  assert.is(src.switchoverReason!.rule, 'max-time');
  assert.is(src.iterations.length, 2, 'the cut pass, then the final one');
  assert.ok(src.iterations[0].pages < 16384, `pass 1 sent ${src.iterations[0].pages} of 16384 pages before the cap`);
  assert.ok(src.iterations[1].pages >= 16384 - src.iterations[0].pages, 'the final pass sent what pass 1 had not');
}));

test('auto-converge throttles a guest that cannot converge, and the throttled guest converges by the downtime limit', deadline(120_000, async () => {
  const c: MigrationCase = {
    seed: 32, memory: '1MiB', workload: 'uniform', dirtyRate: 20000, downtimeLimit: 50, maxBandwidth: '4MiB', onStall: 'throttle', maxIterations: 30,
    sourceArgs: ['--xbzrle', 'off', '--throttle-initial', '99'],
  };
  const r = await migrate(c);
  assertOracle(r, c);
  const src = r.source.report!;
  assert.is(src.throttlePercent, 99, 'throttled to the initial 99 %');
  assert.is(src.iterations[0].throttlePercent, 0, 'pass 1 ran unthrottled');
  const firstThrottled = src.iterations.findIndex((it) => it.throttlePercent === 99);
  assert.ok(firstThrottled >= 2 && firstThrottled <= 5, `first throttled pass is ${firstThrottled + 1}: a stall needs 2 to 5 passes`);
  for (const it of src.iterations.slice(0, firstThrottled)) assert.is(it.dirtyPages, 256, `pass ${it.iteration} left every page dirty`);
  assert.is(src.switchoverReason!.rule, 'downtime-limit', 'throttling made it converge');
  assert.is(src.switchoverReason!.forced, false);
  assert.ok(src.converged);
}));

test('--on-stall abort gives up at the iteration cap, keeps the source guest running and never resumes the destination', deadline(120_000, async () => {
  const c = stuck(33, 'abort');
  const r = await migrate(c);
  assert.is(r.source.code, 1, explain(r.source));
  assert.match(r.source.stderr, /MS_ERR_MIGRATION_ABORTED: migration aborted by policy: 2 iterations reached the cap of 2/);
  const src = r.source.report!;
  assert.is(src.outcome, 'aborted');
  assert.is(src.throttlePercent, 0);
  assert.is(src.switchoverReason?.rule, 'max-iterations');
  assert.is(src.switchoverReason?.action, 'abort');
  assert.is(src.iterations.length, 2, 'two pre-copy passes and no stop-and-copy pass');
  assert.is(src.downtimeMs, null);
  assert.ok(src.guestSteps > 0);
  assert.is(diffAgainstReplay(r.source.image, c, src.guestSteps), null, 'source guest ran on, exactly');
  assert.is(r.dest.code, 1, explain(r.dest));
  assert.is(r.dest.report!.outcome, 'failed');
  assert.is(r.dest.report!.error!.code, 'MS_ERR_PEER_ERROR');
  assert.is(r.dest.report!.guestSteps, 0, 'the destination never ran the guest');
}));

test.run();
