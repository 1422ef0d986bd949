// report: percentile is nearest-rank (the smallest value with at least p % of the values at or
// below it); formatReport is what an operator reads, so each test checks that a fact of the Report
// (outcome, switchover rule and reason, iteration rows, downtime breakdown) appears in the text,
// from Report literals built by hand.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { formatReport, hex64, percentile, type Report } from '../../src/migration/report.js';
import type { IterationRecord } from '../../src/migration/metrics.js';
import { queryMigrate } from '../../src/migration/qmp-view.js';
import { reportSchemaErrors } from '../_support/report-schema.js';

// ---- percentile ----------------------------------------------------------------------------------

test('percentile of no values is 0, for any p', () => {
  assert.equal([0, 50, 99, 100].map((p) => percentile([], p)), [0, 0, 0, 0]);
});

test('percentile of one value is that value, for any p', () => {
  assert.equal([0, 1, 50, 99, 100].map((p) => percentile([42], p)), [42, 42, 42, 42, 42]);
});

test('percentile sorts numerically, not as strings, and leaves the input alone', () => {
  const values = [100, 9, 20, 3];
  assert.equal([0, 25, 50, 75, 100].map((p) => percentile(values, p)), [3, 3, 9, 20, 100]);
  assert.equal(values, [100, 9, 20, 3]);
});

test('percentile is nearest rank: the ceil(p/100 × n)-th smallest', () => {
  const ten = [10, 1, 9, 2, 8, 3, 7, 4, 6, 5];
  assert.equal(
    [1, 10, 11, 50, 51, 90, 91, 99, 100].map((p) => [p, percentile(ten, p)]),
    [[1, 1], [10, 1], [11, 2], [50, 5], [51, 6], [90, 9], [91, 10], [99, 10], [100, 10]],
  );
  // Three values: p50 → rank ceil(1.5) = 2; p33 → rank ceil(0.99) = 1; p34 → rank ceil(1.02) = 2.
  assert.equal([percentile([30, 10, 20], 50), percentile([30, 10, 20], 33), percentile([30, 10, 20], 34)], [20, 10, 20]);
});

test('percentile p0 is the minimum and out-of-range p clamps to min / max', () => {
  const v = [5, 1, 4];
  assert.equal([percentile(v, 0), percentile(v, -10), percentile(v, 250)], [1, 1, 5]);
});

test('percentile counts duplicates as separate ranks', () => {
  const v = [7, 7, 7, 1];
  assert.equal([percentile(v, 25), percentile(v, 26), percentile(v, 100)], [1, 7, 7]);
});

test('percentile p28 of 25 values is the 7th (28 % of 25 is exactly 7)', () => {
  // Nearest rank: ceil(0.28 × 25) = 7. Computed as (28 / 100) × 25 in floating point this is
  // 7.000000000000001, whose ceil is 8; p56 of 25 (rank 14) and p7 of 100 (rank 7) fail the same way.
  const v = Array.from({ length: 25 }, (_, i) => i + 1);
  assert.equal([percentile(v, 28), percentile(v, 56)], [7, 14]);
  assert.is(percentile(Array.from({ length: 100 }, (_, i) => i + 1), 7), 7);
});

// ---- formatReport --------------------------------------------------------------------------------

const ITERATIONS: IterationRecord[] = [
  {
    iteration: 1, pages: 262_144, bytes: 1_073_741_824, ms: 8589.9, bandwidthBytesPerSec: 125e6, dirtyPages: 65_536, dirtyPagesPerSec: 7629.4,
    expectedDowntimeMs: 2147.5, throttlePercent: 0, pagesByEncoding: { zero: 200_000, raw: 62_144, xbzrle: 0, lz4: 0 },
    endedAtMs: 8602.4, etaMs: 2260.25, guestStepsPerSec: 198_765.4, compression: { lz4: false, reason: 'link not measured yet' },
  },
  {
    iteration: 2, pages: 65_536, bytes: 268_435_456, ms: 2147.5, bandwidthBytesPerSec: 2.5e9, dirtyPages: 600, dirtyPagesPerSec: 279.4,
    expectedDowntimeMs: Infinity, throttlePercent: 20, pagesByEncoding: { zero: 0, raw: 1000, xbzrle: 64_536, lz4: 0 },
    endedAtMs: 10_750, etaMs: null, guestStepsPerSec: 0, compression: { lz4: true, reason: 'LZ4 on: …' },
  },
];

function report(over: Partial<Report> = {}): Report {
  return {
    schemaVersion: 2,
    sessionId: '0123456789abcdef0123456789abcdef',
    startedAt: '2026-12-01T18:00:00.000Z',
    endedAt: '2026-12-01T18:00:10.800Z',
    role: 'source',
    mode: 'live',
    outcome: 'completed',
    error: null,
    totalTimeMs: 10_800.25,
    downtimeMs: 26.1,
    pausedAtEpochMs: 1796170000000.25,
    resumedAtEpochMs: null,
    downtimeBreakdown: {
      pauseMs: 0.4, finalPagesMs: 12.3, finalPages: 42, deviceStateMs: 0.7, destinationApplyMs: 3.1, digestCheckMs: 5.6, resumeMs: 2.2, otherMs: 1.8,
    },
    guestBytes: 64 * 2 ** 20,
    receivedPasses: [],
    setupTimeMs: 12.5,
    bytesTransferred: 1_342_177_280,
    pagesTransferred: 327_722,
    pagesByEncoding: { zero: 200_000, raw: 63_186, xbzrle: 64_536, lz4: 0 },
    iterations: ITERATIONS,
    converged: true,
    switchoverReason: {
      rule: 'downtime-limit', action: 'switchover', forced: false,
      reason: 'expected downtime 85.9 ms (2621 pages, 10735616 B at 125 MB/s) ≤ limit 300 ms',
    },
    predictedDowntimeMs: 85.9,
    throttlePercent: 20,
    guestSteps: 123_456,
    digest: hex64(0xdeadbeefn),
    throughputBytesPerSec: 124e6,
    postcopy: null,
    recoveries: [],
    prealloc: null,
    contentDigest: null,
    cpuMs: null,
    peakRssBytes: null,
    completedAtMs: 10_790,
    guestStepsPerSec: { beforeMigration: 201_000, perPass: [198_765.4, 0], afterResume: 150_000 },
    ...over,
  };
}

const lines = (r: Report): string[] => formatReport(r).split('\n');
const lineWith = (r: Report, s: string): string | undefined => lines(r).find((l) => l.includes(s));

test('the first line names role, mode and outcome', () => {
  assert.is(lines(report())[0], 'source live migration: completed');
  assert.is(lines(report({ role: 'destination', mode: 'hybrid', outcome: 'in-doubt' }))[0], 'destination hybrid migration: in-doubt');
});

test('a failed report shows the error code and message on the first line', () => {
  const r = report({ outcome: 'failed', error: { code: 'MS_ERR_DIGEST_MISMATCH', message: 'memory digest differs' } });
  assert.is(lines(r)[0], 'source live migration: failed (MS_ERR_DIGEST_MISMATCH: memory digest differs)');
});

test('the times line shows total, setup, downtime and predicted downtime to 0.1 ms', () => {
  assert.is(lines(report())[1], '  total 10800.3 ms, setup 12.5 ms, downtime 26.1 ms (predicted 85.9 ms)');
});

test('a hypervisor destination\'s own downtime is shown beside memshift\'s; without one there is no such line', () => {
  const r = report({ role: 'destination', hypervisor: { kind: 'qemu', stopToResumeMs: 59.04, deviceLoadMs: 7.66, deviceStateBytes: 412_345 } });
  assert.is(lineWith(r, 'QEMU:'), '  QEMU: stop → resume 59.0 ms by its own clocks (device state 412345 B, loaded in 7.7 ms)');
  assert.is(lineWith(report(), 'stop → resume'), undefined);
});

test('no switchover shows downtime and predicted downtime as —', () => {
  assert.is(lines(report({ downtimeMs: null, predictedDowntimeMs: null }))[1], '  total 10800.3 ms, setup 12.5 ms, downtime — ms (predicted — ms)');
});

test('the transfer line shows GB, pages, throughput and pages by encoding', () => {
  assert.is(lines(report())[2], '  1.342 GB in 327722 pages, 0.12 GB/s; zero 200000, raw 63186, xbzrle 64536, lz4 0');
});

test('the switchover line shows action, rule and the decision\'s reason verbatim', () => {
  assert.is(lineWith(report(), 'switchover:'),
    '  switchover: switchover by rule downtime-limit: expected downtime 85.9 ms (2621 pages, 10735616 B at 125 MB/s) ≤ limit 300 ms');
});

test('a forced switchover is marked (forced); an unforced one is not', () => {
  const forced = report({ converged: false, switchoverReason: { rule: 'max-iterations', action: 'switchover', forced: true, reason: '30 iterations reached the cap of 30' } });
  assert.is(lineWith(forced, 'switchover:'), '  switchover: switchover by rule max-iterations (forced): 30 iterations reached the cap of 30');
  assert.not.ok(lineWith(report(), 'switchover:')!.includes('(forced)'));
});

test('an aborted report names the abort action and its rule', () => {
  const r = report({ outcome: 'aborted', switchoverReason: { rule: 'dirty-rate', action: 'abort', forced: false, reason: 'guest dirties 150 MB/s' } });
  assert.is(lineWith(r, 'by rule'), '  switchover: abort by rule dirty-rate: guest dirties 150 MB/s');
});

test('no switchover reason, no switchover line', () => {
  assert.is(lineWith(report({ switchoverReason: null }), 'by rule'), undefined);
});

test('the iteration table has a header and one row per iteration, in order, with every column', () => {
  const ls = lines(report());
  const header = ls.findIndex((l) => l.includes('iter') && l.includes('exp.downtime'));
  assert.ok(header > 0, 'no table header');
  const rows = ls.slice(header + 1, header + 3).map((l) => l.trim().split(/\s+/));
  assert.equal(rows, [
    ['1', '262144', '1073.7', '8589.9', '0.13', '65536', '7629', '2147.5', '0%', '2.26', '198765'],
    ['2', '65536', '268.4', '2147.5', '2.50', '600', '279', '∞', '20%', '∞', '0'],
  ]);
});

test('no iterations (cold migration), no iteration table', () => {
  assert.is(lineWith(report({ iterations: [] }), 'exp.downtime'), undefined);
});

test('the downtime breakdown lists every part with the final page count', () => {
  assert.is(lineWith(report(), 'downtime:'),
    '  downtime: pause 0.4 + final pages 12.3 (42 pages) + device state 0.7 + apply 3.1 + digest 5.6 + resume 2.2 + other 1.8 ms');
});

test('no breakdown, no breakdown line', () => {
  assert.is(lineWith(report({ downtimeBreakdown: null }), 'downtime:'), undefined);
});

test('post-copy stats show faults, latency percentiles, pages and time to all present', () => {
  const r = report({ mode: 'postcopy', postcopy: { faults: 10, faultLatencyUs: { p50: 120.4, p99: 900.6, max: 1500 }, pagesRequested: 300, pagesPushed: 65_000, postcopyTimeMs: 250 } });
  assert.is(lineWith(r, 'post-copy:'),
    '  post-copy: 10 faults (latency p50 120 µs, p99 901 µs, max 1500 µs), 300 pages requested, 65000 pushed, 250.0 ms to all present');
  assert.is(lineWith(report(), 'post-copy:'), undefined);
});

test('pre-touch is reported only when enabled, saying whether it was before the migration or in its setup', () => {
  assert.is(lineWith(report({ prealloc: { enabled: true, ms: 33.33, beforeMigration: false } }), 'pre-touched'), '  destination memory pre-touched in 33.3 ms during setup, before receiving');
  assert.is(lineWith(report({ prealloc: { enabled: true, ms: 1234.5, beforeMigration: true } }), 'pre-touched'), '  destination memory pre-touched in 1234.5 ms before the migration began');
  assert.is(lineWith(report({ prealloc: { enabled: false, ms: 33.33, beforeMigration: false } }), 'pre-touched'), undefined);
});

test('the iteration table shows — for a pass whose guest exposes no steps', () => {
  const its = ITERATIONS.map((it) => ({ ...it, guestStepsPerSec: null }));
  const ls = lines(report({ iterations: its }));
  const header = ls.findIndex((l) => l.includes('eta s'));
  assert.equal(ls.slice(header + 1, header + 3).map((l) => l.trim().split(/\s+/).slice(-2)), [['2.26', '—'], ['∞', '—']]);
});

test('the step-rate line shows the rate before and after resume, — for the side that did not see it', () => {
  assert.is(lineWith(report(), 'steps/s:'), '  guest steps/s: before 201000, after resume 150000');
  const dest = report({ role: 'destination', guestStepsPerSec: { beforeMigration: null, perPass: [], afterResume: 65_294.4 } });
  assert.is(lineWith(dest, 'steps/s:'), '  guest steps/s: before —, after resume 65294');
});

test('a guest without steps has no step-rate line', () => {
  assert.is(lineWith(report({ guestStepsPerSec: { beforeMigration: null, perPass: [], afterResume: null } }), 'steps/s:'), undefined);
});

test('the last line shows guest steps, digest (16 hex digits) and throttle', () => {
  const ls = lines(report());
  assert.is(ls[ls.length - 1], '  guest steps 123456, digest 00000000deadbeef, throttle 20 %');
});

test('peak resident memory is shown in MiB when the OS reports it, and left out when not', () => {
  assert.is(lineWith(report({ peakRssBytes: 1.5 * 2 ** 30 }), 'peak resident'), '  peak resident memory 1536 MiB (guest memory included)');
  assert.is(lineWith(report(), 'peak resident'), undefined);
});

test('the line before the last names the session and its wall-clock start and end', () => {
  assert.is(lines(report()).at(-2), '  session 0123456789abcdef0123456789abcdef, 2026-12-01T18:00:00.000Z → 2026-12-01T18:00:10.800Z');
  assert.is(lines(report({ sessionId: null })).at(-2)!.startsWith('  session (none),'), true);
});

// ---- query-migrate view and schema ---------------------------------------------------------------

test('the qmp view of a completed live migration carries query-migrate\'s names, in its units', () => {
  const r = report();
  const q = queryMigrate(r);
  assert.is(q.status, 'completed');
  assert.is(q['total-time'], 10_800);
  assert.is(q['setup-time'], Math.round(r.setupTimeMs));
  assert.is(q.downtime, Math.round(r.downtimeMs!));
  assert.is(q['expected-downtime'], Math.round(r.predictedDowntimeMs!));
  assert.is(q['cpu-throttle-percentage'], 20);
  assert.equal(
    [q.ram.transferred, q.ram.total, q.ram.remaining, q.ram.duplicate, q.ram.normal, q.ram['dirty-sync-count']],
    [r.bytesTransferred, 64 * 2 ** 20, 0, r.pagesByEncoding.zero, r.pagesByEncoding.raw + r.pagesByEncoding.lz4, r.iterations.length],
  );
  assert.ok(Math.abs(q.ram.mbps - (r.bytesTransferred * 8) / 1e6 / 10.80025) < 1e-6, `mbps ${q.ram.mbps}`);
  assert.is(q['error-desc'], undefined);
});

test('qmp status: aborted is failed with the error, paused is postcopy-paused, in-doubt stays in-doubt (never "failed")', () => {
  const error = { code: 'MS_ERR_MIGRATION_ABORTED', message: 'policy' };
  const aborted = queryMigrate(report({ outcome: 'aborted', error, downtimeMs: null }));
  assert.equal([aborted.status, aborted['error-desc'], aborted.downtime, aborted.ram.remaining], ['failed', 'MS_ERR_MIGRATION_ABORTED: policy', undefined, undefined]);
  assert.is(queryMigrate(report({ outcome: 'paused' })).status, 'postcopy-paused');
  assert.is(queryMigrate(report({ outcome: 'in-doubt' })).status, 'in-doubt');
});

test('a report survives JSON and matches the schema; a field the schema does not know, or a wrong type, does not', () => {
  const json = JSON.parse(JSON.stringify(report())) as Record<string, unknown>;
  assert.is(reportSchemaErrors(json), null);
  assert.ok(reportSchemaErrors({ ...json, surprise: 1 }) !== null, 'unknown field');
  assert.ok(reportSchemaErrors({ ...json, totalTimeMs: '10' }) !== null, 'string for a number');
  assert.ok(reportSchemaErrors({ ...json, schemaVersion: 99 }) !== null, 'another schema version');
});

test('a destination report lists each pass as it was received, with its apply time', () => {
  const r = report({ role: 'destination', iterations: [], receivedPasses: [{ iteration: 1, pages: 262_144, bytes: 1_074_000_000, ms: 540.2, applyMs: 120.7, endedAtMs: 560 }] });
  const header = lines(r).findIndex((l) => l.startsWith('  pass received'));
  assert.ok(header > 0, 'a received-pass table');
  assert.is(lines(r)[header + 1], '     1              262144    1074.0    540.2    1.99     120.7');
});

test.run();
