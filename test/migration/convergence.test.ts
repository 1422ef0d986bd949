// convergence: decideConvergence is a pure function, so every rule is a table row of (metrics, policy)
// → (action, rule, forced, throttlePercent). Time is a fake clock: elapsedMs is passed in. The rows
// sit on the boundaries the header documents (≤ the limit, ≥ the cap, two iterations in a row, over
// exactly N iterations); a closing simulation drives the function over a synthetic guest.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  DEFAULT_POLICY, STALL_POLICIES, decideConvergence, expectedDowntimeMs,
  type Action, type ConvergenceMetrics, type ConvergencePolicy, type Decision, type RuleName, type StallPolicy,
  MEASURABLE_PASS_BYTES, SWITCHOVER_COST_MS, predictedDowntimeMs, smallPassRate,
} from '../../src/migration/convergence.js';

const PAGE = 4096;
/** 4.096 MB/s: one page per millisecond, so N remaining pages mean N ms of expected downtime. */
const BW = 1000 * PAGE;

/** Nothing fires: iteration 3 of 30, 1000 pages (1000 ms expected) against a 300 ms limit, shrinking. */
function metrics(over: Partial<ConvergenceMetrics> = {}): ConvergenceMetrics {
  const remainingPages = over.remainingPages ?? 1000;
  return {
    iteration: 3,
    elapsedMs: 10_000,
    remainingPages,
    remainingBytes: remainingPages * PAGE,
    bandwidth: BW,
    dirtyRate: 0,
    previousDirtyRate: 0,
    previousBandwidth: BW,
    remainingHistory: [3000, 2000, remainingPages],
    throttlePercent: 0,
    ...over,
  };
}

/** Without a switchover cost unless a row sets one: the rows are about the rules' boundaries. */
function policy(over: Partial<ConvergencePolicy> = {}): ConvergencePolicy {
  return { ...DEFAULT_POLICY, downtimeLimitMs: 300, maxIterations: 30, maxTimeMs: 60_000, stallIterations: 4, onStall: 'force', postcopyAfter: null, switchoverCostMs: 0, ...over };
}

/** Guest dirties twice what the link sends, this iteration and the one before (rule 5 fires). */
const DIRTYING = { iteration: 2, dirtyRate: 2 * BW, previousDirtyRate: 2 * BW, previousBandwidth: BW };
/** Best of the previous 4 iterations was 900 pages; 1000 remain now (rule 6 fires for N = 4). */
const STUCK = { remainingPages: 1000, remainingHistory: [1000, 900, 950, 980, 1000] };

interface Row {
  name: string;
  metrics: ConvergenceMetrics;
  policy: ConvergencePolicy;
  expect: { action: Action; rule: RuleName; forced?: boolean; throttlePercent?: number };
}

const ROWS: Row[] = [
  // ---- 1 downtime-limit -------------------------------------------------------------------------
  { name: 'expected downtime exactly at the limit switches over', metrics: metrics({ remainingPages: 300 }), policy: policy(),
    expect: { action: 'switchover', rule: 'downtime-limit' } },
  { name: 'expected downtime 1 ms over the limit does not switch over', metrics: metrics({ remainingPages: 301 }), policy: policy(),
    expect: { action: 'continue', rule: 'converging' } },
  { name: '0 bytes remaining switches over even with bandwidth 0', metrics: metrics({ remainingPages: 0, bandwidth: 0, previousBandwidth: 0 }), policy: policy(),
    expect: { action: 'switchover', rule: 'downtime-limit' } },
  { name: '0 bytes remaining switches over even with a 0 ms limit', metrics: metrics({ remainingPages: 0 }), policy: policy({ downtimeLimitMs: 0 }),
    expect: { action: 'switchover', rule: 'downtime-limit' } },
  { name: 'one byte remaining does not meet a 0 ms limit', metrics: metrics({ remainingPages: 1, remainingBytes: 1 }), policy: policy({ downtimeLimitMs: 0 }),
    expect: { action: 'continue', rule: 'converging' } },
  { name: 'bandwidth 0 with bytes remaining is infinite downtime: no rule-1 switchover under any finite limit',
    metrics: metrics({ remainingPages: 1, bandwidth: 0 }), policy: policy({ downtimeLimitMs: Number.MAX_SAFE_INTEGER }),
    expect: { action: 'continue', rule: 'converging' } },
  { name: 'downtime-limit wins over max-iterations when both apply', metrics: metrics({ remainingPages: 10, iteration: 30 }), policy: policy(),
    expect: { action: 'switchover', rule: 'downtime-limit' } },
  { name: 'downtime-limit wins over postcopy-after when both apply', metrics: metrics({ remainingPages: 10, iteration: 5 }), policy: policy({ postcopyAfter: 2 }),
    expect: { action: 'switchover', rule: 'downtime-limit' } },
  { name: 'downtime-limit wins over max-time when both apply', metrics: metrics({ remainingPages: 10, elapsedMs: 60_000 }), policy: policy(),
    expect: { action: 'switchover', rule: 'downtime-limit' } },
  { name: 'downtime-limit wins over dirty-rate and no-progress when both apply',
    metrics: metrics({ ...DIRTYING, remainingPages: 10, remainingHistory: [10, 10, 10, 10, 10] }), policy: policy(),
    expect: { action: 'switchover', rule: 'downtime-limit' } },

  // ---- 2 postcopy-after -------------------------------------------------------------------------
  { name: 'postcopy-after switches to post-copy at exactly its iteration', metrics: metrics({ iteration: 3 }), policy: policy({ postcopyAfter: 3 }),
    expect: { action: 'postcopy', rule: 'postcopy-after' } },
  { name: 'postcopy-after does not fire one iteration early', metrics: metrics({ iteration: 2 }), policy: policy({ postcopyAfter: 3 }),
    expect: { action: 'continue', rule: 'converging' } },
  { name: 'postcopy-after null never fires, however many iterations ran', metrics: metrics({ iteration: 29 }), policy: policy({ postcopyAfter: null }),
    expect: { action: 'continue', rule: 'converging' } },
  { name: 'postcopy-after beats max-iterations (even with policy abort)', metrics: metrics({ iteration: 30 }), policy: policy({ postcopyAfter: 5, onStall: 'abort' }),
    expect: { action: 'postcopy', rule: 'postcopy-after' } },
  { name: 'postcopy-after beats max-time and dirty-rate', metrics: metrics({ ...DIRTYING, iteration: 5, elapsedMs: 60_000 }), policy: policy({ postcopyAfter: 5, onStall: 'abort' }),
    expect: { action: 'postcopy', rule: 'postcopy-after' } },

  // ---- 3 max-iterations -------------------------------------------------------------------------
  { name: 'max-iterations at the cap with policy force is a forced switchover', metrics: metrics({ iteration: 30 }), policy: policy({ onStall: 'force' }),
    expect: { action: 'switchover', rule: 'max-iterations', forced: true } },
  { name: 'max-iterations one below the cap continues', metrics: metrics({ iteration: 29 }), policy: policy({ onStall: 'force' }),
    expect: { action: 'continue', rule: 'converging' } },
  { name: 'max-iterations with policy throttle falls back to a forced switchover', metrics: metrics({ iteration: 30, throttlePercent: 60 }), policy: policy({ onStall: 'throttle' }),
    expect: { action: 'switchover', rule: 'max-iterations', forced: true } },
  { name: 'max-iterations with policy abort aborts', metrics: metrics({ iteration: 30 }), policy: policy({ onStall: 'abort' }),
    expect: { action: 'abort', rule: 'max-iterations' } },
  { name: 'max-iterations with policy postcopy goes post-copy (not forced)', metrics: metrics({ iteration: 30 }), policy: policy({ onStall: 'postcopy' }),
    expect: { action: 'postcopy', rule: 'max-iterations' } },
  { name: 'max-iterations wins over max-time when both apply', metrics: metrics({ iteration: 30, elapsedMs: 60_000 }), policy: policy(),
    expect: { action: 'switchover', rule: 'max-iterations', forced: true } },

  // ---- 4 max-time (fake clock) ------------------------------------------------------------------
  { name: 'max-time at exactly the cap with policy force is a forced switchover', metrics: metrics({ elapsedMs: 60_000 }), policy: policy({ onStall: 'force' }),
    expect: { action: 'switchover', rule: 'max-time', forced: true } },
  { name: 'max-time 1 ms before the cap continues', metrics: metrics({ elapsedMs: 59_999 }), policy: policy({ onStall: 'force' }),
    expect: { action: 'continue', rule: 'converging' } },
  { name: 'max-time with policy throttle falls back to a forced switchover', metrics: metrics({ elapsedMs: 61_000, throttlePercent: 99 }), policy: policy({ onStall: 'throttle' }),
    expect: { action: 'switchover', rule: 'max-time', forced: true } },
  { name: 'max-time with policy abort aborts', metrics: metrics({ elapsedMs: 60_000 }), policy: policy({ onStall: 'abort' }),
    expect: { action: 'abort', rule: 'max-time' } },
  { name: 'max-time with policy postcopy goes post-copy', metrics: metrics({ elapsedMs: 60_000 }), policy: policy({ onStall: 'postcopy' }),
    expect: { action: 'postcopy', rule: 'max-time' } },
  { name: 'max-time wins over dirty-rate when both apply', metrics: metrics({ ...DIRTYING, elapsedMs: 60_000 }), policy: policy({ onStall: 'abort' }),
    expect: { action: 'abort', rule: 'max-time' } },

  // ---- 5 dirty-rate -----------------------------------------------------------------------------
  { name: 'dirty-rate over two consecutive iterations with policy force is a forced switchover', metrics: metrics(DIRTYING), policy: policy({ onStall: 'force' }),
    expect: { action: 'switchover', rule: 'dirty-rate', forced: true } },
  { name: 'dirty-rate with policy throttle throttles to 20 %', metrics: metrics(DIRTYING), policy: policy({ onStall: 'throttle' }),
    expect: { action: 'throttle', rule: 'dirty-rate', throttlePercent: 20 } },
  { name: 'dirty-rate with policy abort aborts', metrics: metrics(DIRTYING), policy: policy({ onStall: 'abort' }),
    expect: { action: 'abort', rule: 'dirty-rate' } },
  { name: 'dirty-rate with policy postcopy goes post-copy', metrics: metrics(DIRTYING), policy: policy({ onStall: 'postcopy' }),
    expect: { action: 'postcopy', rule: 'dirty-rate' } },
  { name: 'dirty-rate counts a guest dirtying exactly as fast as the link sends', metrics: metrics({ ...DIRTYING, dirtyRate: BW, previousDirtyRate: BW }), policy: policy({ onStall: 'abort' }),
    expect: { action: 'abort', rule: 'dirty-rate' } },
  { name: 'dirty-rate needs two in a row: this iteration alone is not enough', metrics: metrics({ ...DIRTYING, previousDirtyRate: BW - 1 }), policy: policy({ onStall: 'abort' }),
    expect: { action: 'continue', rule: 'converging' } },
  { name: 'dirty-rate needs two in a row: the previous iteration alone is not enough', metrics: metrics({ ...DIRTYING, dirtyRate: BW - 1 }), policy: policy({ onStall: 'abort' }),
    expect: { action: 'continue', rule: 'converging' } },
  { name: 'dirty-rate never fires on iteration 1, whatever the previous-iteration fields say', metrics: metrics({ ...DIRTYING, iteration: 1 }), policy: policy({ onStall: 'abort' }),
    expect: { action: 'continue', rule: 'converging' } },
  { name: 'dirty-rate after pass 1 alone, under the post-copy policy, when 90 % of what it sent is dirty again',
    metrics: metrics({ iteration: 1, remainingPages: 900, passPages: 1000, dirtyRate: BW, previousDirtyRate: 0, previousBandwidth: 0 }), policy: policy({ onStall: 'postcopy' }),
    expect: { action: 'postcopy', rule: 'dirty-rate' } },
  { name: 'dirty-rate after pass 1 does not fire below 90 % dirty again',
    metrics: metrics({ iteration: 1, remainingPages: 899, passPages: 1000, dirtyRate: BW, previousDirtyRate: 0, previousBandwidth: 0 }), policy: policy({ onStall: 'postcopy' }),
    expect: { action: 'continue', rule: 'converging' } },
  { name: 'dirty-rate after pass 1 does not fire for a guest dirtying under half the link, however much it re-dirtied',
    metrics: metrics({ iteration: 1, remainingPages: 1000, passPages: 1000, dirtyRate: BW / 2 - 1, previousDirtyRate: 0, previousBandwidth: 0 }), policy: policy({ onStall: 'postcopy' }),
    expect: { action: 'continue', rule: 'converging' } },
  { name: 'dirty-rate after pass 1 is the post-copy policy\'s alone: force, throttle and abort wait for two passes',
    metrics: metrics({ iteration: 1, remainingPages: 1000, passPages: 1000, dirtyRate: 2 * BW, previousDirtyRate: 0, previousBandwidth: 0 }), policy: policy({ onStall: 'force' }),
    expect: { action: 'continue', rule: 'converging' } },
  { name: 'dirty-rate compares each iteration with its own bandwidth', metrics: metrics({ ...DIRTYING, previousDirtyRate: 2 * BW, previousBandwidth: 3 * BW }), policy: policy({ onStall: 'abort' }),
    expect: { action: 'continue', rule: 'converging' } },
  { name: 'dirty-rate wins over no-progress when both apply', metrics: metrics({ ...DIRTYING, ...STUCK }), policy: policy({ onStall: 'abort' }),
    expect: { action: 'abort', rule: 'dirty-rate' } },

  // ---- 6 no-progress ----------------------------------------------------------------------------
  { name: 'no-progress fires when the last stallIterations iterations did not beat the best before them', metrics: metrics(STUCK), policy: policy({ onStall: 'force' }),
    expect: { action: 'switchover', rule: 'no-progress', forced: true } },
  { name: 'no-progress counts equal as no progress', metrics: metrics({ remainingPages: 900, remainingHistory: [900, 950, 980, 990, 900] }), policy: policy({ onStall: 'abort' }),
    expect: { action: 'abort', rule: 'no-progress' } },
  { name: 'no-progress needs more than stallIterations entries of history', metrics: metrics({ remainingPages: 1000, remainingHistory: [900, 950, 980, 1000] }), policy: policy({ onStall: 'abort' }),
    expect: { action: 'continue', rule: 'converging' } },
  { name: 'no-progress does not fire when the last iteration beat the best of the previous N', metrics: metrics({ remainingPages: 899, remainingHistory: [1000, 900, 950, 980, 899] }), policy: policy({ onStall: 'abort' }),
    expect: { action: 'continue', rule: 'converging' } },
  { name: 'no-progress looks back exactly stallIterations: an older minimum is ignored', metrics: metrics({ remainingPages: 960, remainingHistory: [500, 1000, 990, 980, 970, 960] }), policy: policy({ onStall: 'abort' }),
    expect: { action: 'continue', rule: 'converging' } },
  { name: 'no-progress with stallIterations 1 fires on one iteration without shrinking', metrics: metrics({ remainingPages: 1000, remainingHistory: [1000, 1000] }), policy: policy({ onStall: 'abort', stallIterations: 1 }),
    expect: { action: 'abort', rule: 'no-progress' } },
  { name: 'no-progress with policy throttle throttles to 20 %', metrics: metrics(STUCK), policy: policy({ onStall: 'throttle' }),
    expect: { action: 'throttle', rule: 'no-progress', throttlePercent: 20 } },
  { name: 'no-progress with policy postcopy goes post-copy', metrics: metrics(STUCK), policy: policy({ onStall: 'postcopy' }),
    expect: { action: 'postcopy', rule: 'no-progress' } },

  // ---- throttle policy steps --------------------------------------------------------------------
  { name: 'throttle: the second stall adds 10 (20 → 30)', metrics: metrics({ ...DIRTYING, throttlePercent: 20 }), policy: policy({ onStall: 'throttle' }),
    expect: { action: 'throttle', rule: 'dirty-rate', throttlePercent: 30 } },
  { name: 'throttle: 80 → 90', metrics: metrics({ ...STUCK, throttlePercent: 80 }), policy: policy({ onStall: 'throttle' }),
    expect: { action: 'throttle', rule: 'no-progress', throttlePercent: 90 } },
  { name: 'throttle: 90 + 10 is capped at 99', metrics: metrics({ ...DIRTYING, throttlePercent: 90 }), policy: policy({ onStall: 'throttle' }),
    expect: { action: 'throttle', rule: 'dirty-rate', throttlePercent: 99 } },
  { name: 'throttle: at the 99 % cap it continues and still names the rule', metrics: metrics({ ...DIRTYING, throttlePercent: 99 }), policy: policy({ onStall: 'throttle' }),
    expect: { action: 'continue', rule: 'dirty-rate', throttlePercent: 99 } },
  { name: 'throttle: at the cap on no-progress it continues and names no-progress', metrics: metrics({ ...STUCK, throttlePercent: 99 }), policy: policy({ onStall: 'throttle' }),
    expect: { action: 'continue', rule: 'no-progress', throttlePercent: 99 } },
  { name: 'throttle: custom initial/step/max are honoured (0 → 50)', metrics: metrics(DIRTYING), policy: policy({ onStall: 'throttle', throttleInitial: 50, throttleStep: 25, throttleMax: 80 }),
    expect: { action: 'throttle', rule: 'dirty-rate', throttlePercent: 50 } },
  { name: 'throttle: custom step is capped at the custom max (75 → 80)', metrics: metrics({ ...DIRTYING, throttlePercent: 75 }), policy: policy({ onStall: 'throttle', throttleInitial: 50, throttleStep: 25, throttleMax: 80 }),
    expect: { action: 'throttle', rule: 'dirty-rate', throttlePercent: 80 } },
  { name: 'throttle: at the custom max it continues', metrics: metrics({ ...DIRTYING, throttlePercent: 80 }), policy: policy({ onStall: 'throttle', throttleInitial: 50, throttleStep: 25, throttleMax: 80 }),
    expect: { action: 'continue', rule: 'dirty-rate', throttlePercent: 80 } },

  // ---- 7 converging -----------------------------------------------------------------------------
  { name: 'a shrinking guest over the limit keeps iterating', metrics: metrics(), policy: policy({ onStall: 'abort' }),
    expect: { action: 'continue', rule: 'converging' } },
];

for (const row of ROWS) {
  test(row.name, () => {
    const d = decideConvergence(row.metrics, row.policy);
    const got = { action: d.action, rule: d.rule, forced: d.forced, throttlePercent: d.throttlePercent };
    const want = { action: row.expect.action, rule: row.expect.rule, forced: row.expect.forced ?? false, throttlePercent: row.expect.throttlePercent };
    assert.equal(got, want, d.reason);
    assert.ok(d.reason.length > 0);
  });
}

test('the table covers every rule and, for each stall rule, every stall policy', () => {
  const rules = new Set(ROWS.map((r) => r.expect.rule));
  for (const rule of ['downtime-limit', 'postcopy-after', 'max-iterations', 'max-time', 'dirty-rate', 'no-progress', 'converging'] as const) {
    assert.ok(rules.has(rule), `no row for ${rule}`);
  }
  for (const rule of ['max-iterations', 'max-time', 'dirty-rate', 'no-progress'] as const) {
    for (const onStall of STALL_POLICIES) {
      assert.ok(ROWS.some((r) => r.expect.rule === rule && r.policy.onStall === onStall), `no row for ${rule} with policy ${onStall}`);
    }
  }
});

// ---- reasons carry the numbers they decided on ---------------------------------------------------

interface ReasonRow { name: string; metrics: ConvergenceMetrics; policy: ConvergencePolicy; rule: RuleName; contains: string[] }

const REASONS: ReasonRow[] = [
  { name: 'downtime-limit names the expected downtime, pages, bytes, bandwidth and limit', metrics: metrics({ remainingPages: 300 }), policy: policy(),
    rule: 'downtime-limit', contains: ['expected downtime 300 ms', '300 pages', '1228800 B', '4.1 MB/s', 'limit 300 ms'] },
  { name: 'converging names the expected downtime, the limit and the pages left', metrics: metrics({ remainingPages: 301 }), policy: policy(),
    rule: 'converging', contains: ['expected downtime 301 ms', 'limit 300 ms', '301 pages remain'] },
  { name: 'converging at bandwidth 0 shows an infinite expected downtime', metrics: metrics({ remainingPages: 5, bandwidth: 0 }), policy: policy(),
    rule: 'converging', contains: ['expected downtime ∞ ms', '5 pages remain'] },
  { name: 'postcopy-after names the iterations done, the setting and the pages left', metrics: metrics({ iteration: 7, remainingPages: 1234 }), policy: policy({ postcopyAfter: 7 }),
    rule: 'postcopy-after', contains: ['7 pre-copy iterations', 'postcopy-after 7', '1234 pages left'] },
  { name: 'max-iterations names the iteration count, the cap and the expected downtime', metrics: metrics({ iteration: 30, remainingPages: 1500 }), policy: policy(),
    rule: 'max-iterations', contains: ['30 iterations', 'cap of 30', 'expected downtime 1500 ms', 'policy force'] },
  { name: 'max-time names the elapsed time, the cap and the expected downtime', metrics: metrics({ elapsedMs: 125_000, remainingPages: 2000 }), policy: policy({ maxTimeMs: 120_000, onStall: 'abort' }),
    rule: 'max-time', contains: ['125 s', 'cap of 120 s', 'expected downtime 2000 ms', 'policy abort'] },
  { name: 'dirty-rate names both iterations\' dirty rates and bandwidths', metrics: metrics({ iteration: 4, dirtyRate: 150e6, bandwidth: 120e6, previousDirtyRate: 140e6, previousBandwidth: 110e6, remainingPages: 100_000 }), policy: policy({ onStall: 'postcopy' }),
    rule: 'dirty-rate', contains: ['150 MB/s', '120 MB/s', '140 MB/s', '110 MB/s', 'policy postcopy'] },
  { name: 'no-progress names the pages remaining, the best before and the window', metrics: metrics(STUCK), policy: policy({ onStall: 'abort' }),
    rule: 'no-progress', contains: ['1000 pages remain', '(900)', 'previous 4 iterations'] },
  { name: 'a throttle decision names the new percentage', metrics: metrics({ ...DIRTYING, throttlePercent: 40 }), policy: policy({ onStall: 'throttle' }),
    rule: 'dirty-rate', contains: ['throttled to 50 %'] },
  { name: 'a throttle at its maximum names the maximum', metrics: metrics({ ...DIRTYING, throttlePercent: 99 }), policy: policy({ onStall: 'throttle' }),
    rule: 'dirty-rate', contains: ['maximum 99 %'] },
  { name: 'a hard cap under policy throttle names the throttle that did not help', metrics: metrics({ iteration: 30, throttlePercent: 70 }), policy: policy({ onStall: 'throttle' }),
    rule: 'max-iterations', contains: ['cap of 30', 'throttling at 70 %', 'stop-and-copy'] },
];

for (const row of REASONS) {
  test(`reason: ${row.name}`, () => {
    const d = decideConvergence(row.metrics, row.policy);
    assert.is(d.rule, row.rule, d.reason);
    for (const s of row.contains) assert.ok(d.reason.includes(s), `expected ${JSON.stringify(s)} in ${JSON.stringify(d.reason)}`);
  });
}

// ---- expectedDowntimeMs and purity ---------------------------------------------------------------

test('expectedDowntimeMs is bytes / bandwidth in ms, 0 for nothing left, ∞ for no bandwidth', () => {
  assert.equal(
    [expectedDowntimeMs(1_228_800, BW), expectedDowntimeMs(0, 0), expectedDowntimeMs(0, BW), expectedDowntimeMs(1, 0)],
    [300, 0, 0, Infinity],
  );
});

test('decideConvergence does not mutate its inputs and gives the same decision twice', () => {
  const m = Object.freeze({ ...metrics({ ...DIRTYING, ...STUCK }), remainingHistory: Object.freeze([...STUCK.remainingHistory]) });
  const p = Object.freeze(policy({ onStall: 'throttle' }));
  const a = decideConvergence(m, p);
  const b = decideConvergence(m, p);
  assert.equal(a, b);
  assert.equal(m.remainingHistory, [1000, 900, 950, 980, 1000]);
});

// ---- simulation over a synthetic guest -----------------------------------------------------------
//
// Each pass sends what is dirty at the link's bandwidth; while it runs the guest dirties pages at its
// rate × (1 − throttle), capped at its working set. The clock is the sum of pass times.

interface SyntheticGuest { totalPages: number; workingSetPages: number; dirtyPagesPerSec: number; bandwidth: number }
interface SimResult { decisions: Decision[]; final: Decision; iteration: number; elapsedMs: number; remainingPages: number }

function simulate(guest: SyntheticGuest, p: ConvergencePolicy, maxPasses = 200): SimResult {
  let remaining = guest.totalPages;
  let throttle = 0;
  let elapsedMs = 0;
  let previous = { dirtyRate: 0, bandwidth: 0 };
  const history: number[] = [];
  const decisions: Decision[] = [];
  for (let iteration = 1; iteration <= maxPasses; iteration++) {
    const passMs = (remaining * PAGE * 1000) / guest.bandwidth;
    elapsedMs += passMs;
    const pagesPerSec = guest.dirtyPagesPerSec * (1 - throttle / 100);
    remaining = Math.min(guest.workingSetPages, Math.round((pagesPerSec * passMs) / 1000));
    history.push(remaining);
    const d = decideConvergence({
      iteration, elapsedMs, remainingPages: remaining, remainingBytes: remaining * PAGE, bandwidth: guest.bandwidth,
      dirtyRate: pagesPerSec * PAGE, previousDirtyRate: previous.dirtyRate, previousBandwidth: previous.bandwidth,
      remainingHistory: [...history], throttlePercent: throttle,
    }, p);
    decisions.push(d);
    previous = { dirtyRate: pagesPerSec * PAGE, bandwidth: guest.bandwidth };
    if (d.action === 'throttle') throttle = d.throttlePercent!;
    if (d.action !== 'continue' && d.action !== 'throttle') return { decisions, final: d, iteration, elapsedMs, remainingPages: remaining };
  }
  throw new Error(`no decision after ${maxPasses} passes`);
}

/** 1 GiB guest with a 256 MiB working set dirtied at 1.5× a 125 MB/s link. */
const HOT: SyntheticGuest = { totalPages: 262_144, workingSetPages: 65_536, dirtyPagesPerSec: Math.round((1.5 * 125e6) / PAGE), bandwidth: 125e6 };
/** Same guest dirtying at 0.3× the link: each pass shrinks the dirty set, so it converges without a stall. */
const QUIET: SyntheticGuest = { ...HOT, dirtyPagesPerSec: Math.round((0.3 * 125e6) / PAGE) };
const SIM_POLICY = policy({ maxIterations: 1000, maxTimeMs: 3_600_000 });

test('simulation: policy throttle brings a 1.5×-dirtying guest to a rule-1 switchover within 30 iterations', () => {
  const r = simulate(HOT, { ...SIM_POLICY, onStall: 'throttle' });
  assert.equal({ action: r.final.action, rule: r.final.rule, forced: r.final.forced }, { action: 'switchover', rule: 'downtime-limit', forced: false }, r.final.reason);
  assert.ok(r.iteration <= 30, `took ${r.iteration} iterations`);
  assert.ok(r.iteration > 4, `converged at ${r.iteration}, before the throttle could have helped`);
  assert.ok(r.remainingPages * PAGE * 1000 / HOT.bandwidth <= SIM_POLICY.downtimeLimitMs);
  // The throttle climbs 20, 30 … 70 on the stalls of iterations 2 … 7: rule 5 keeps firing under the
  // throttle policy while the guest dirties at least half the link (QEMU's trigger, 50 %). At 70 % it
  // dirties 0.45× the link, the dirty set more than halves each pass, and pass 9 switches over.
  const throttles = r.decisions.flatMap((d, i) => (d.action === 'throttle' ? [[i + 1, d.throttlePercent]] : []));
  assert.equal(throttles, [[2, 20], [3, 30], [4, 40], [5, 50], [6, 60], [7, 70]]);
  assert.is(r.iteration, 9);
});

test('simulation: policy abort aborts at the first stall, the iteration where throttle first throttled', () => {
  const throttled = simulate(HOT, { ...SIM_POLICY, onStall: 'throttle' });
  const firstStall = throttled.decisions.findIndex((d) => d.action === 'throttle') + 1;
  const r = simulate(HOT, { ...SIM_POLICY, onStall: 'abort' });
  assert.equal({ action: r.final.action, rule: r.final.rule, iteration: r.iteration }, { action: 'abort', rule: 'dirty-rate', iteration: firstStall });
  assert.is(firstStall, 2);
});

test('simulation: policy force stops and copies at the first stall, and says it was forced', () => {
  const r = simulate(HOT, { ...SIM_POLICY, onStall: 'force' });
  assert.equal({ action: r.final.action, rule: r.final.rule, forced: r.final.forced, iteration: r.iteration }, { action: 'switchover', rule: 'dirty-rate', forced: true, iteration: 2 });
});

test('simulation: policy postcopy goes post-copy at the first stall', () => {
  const r = simulate(HOT, { ...SIM_POLICY, onStall: 'postcopy' });
  assert.equal({ action: r.final.action, rule: r.final.rule, iteration: r.iteration }, { action: 'postcopy', rule: 'dirty-rate', iteration: 2 });
});

test('simulation: a 0.3×-dirtying guest converges by rule 1 in 3 passes, identically under every stall policy', () => {
  const outcomes = STALL_POLICIES.map((onStall: StallPolicy) => {
    const r = simulate(QUIET, { ...SIM_POLICY, onStall });
    return { action: r.final.action, rule: r.final.rule, iteration: r.iteration, stalls: r.decisions.filter((d) => d.rule !== 'converging' && d.rule !== 'downtime-limit').length };
  });
  // 1 GiB → 65536 pages (working set, 2147 ms) → 19661 (644 ms) → 5898 (193 ms ≤ 300 ms).
  assert.equal(outcomes[0], { action: 'switchover', rule: 'downtime-limit', iteration: 3, stalls: 0 });
  for (const o of outcomes) assert.equal(o, outcomes[0]);
});

test('simulation: a hot guest under throttle with a 6-iteration cap is force-switched by max-iterations', () => {
  const r = simulate(HOT, { ...SIM_POLICY, onStall: 'throttle', maxIterations: 6 });
  assert.equal({ action: r.final.action, rule: r.final.rule, forced: r.final.forced, iteration: r.iteration }, { action: 'switchover', rule: 'max-iterations', forced: true, iteration: 6 });
});

test('simulation: with the throttle trigger at 100 % (the rule of the other policies) the same guest takes far longer', () => {
  const strict = simulate(HOT, { ...SIM_POLICY, onStall: 'throttle', throttleTriggerPercent: 100 });
  const throttles = strict.decisions.flatMap((d, i) => (d.action === 'throttle' ? [[i + 1, d.throttlePercent]] : []));
  // Throttled only while it dirties faster than the link: 20, 30, 40; then 0.9× the link, a tenth less a pass.
  assert.equal(throttles, [[2, 20], [3, 30], [4, 40]]);
  assert.ok(strict.iteration > 20, `converged at ${strict.iteration}`);
});

test('rule 5 under the throttle and post-copy policies fires at half the link, under force and abort only at the full link', () => {
  const half = { iteration: 3, dirtyRate: 0.6 * BW, previousDirtyRate: 0.6 * BW, previousBandwidth: BW };
  assert.equal(pick(decideConvergence(metrics(half), policy({ onStall: 'throttle' }))), { action: 'throttle', rule: 'dirty-rate' });
  assert.equal(pick(decideConvergence(metrics(half), policy({ onStall: 'postcopy' }))), { action: 'postcopy', rule: 'dirty-rate' });
  for (const onStall of ['force', 'abort'] as const) {
    assert.equal(pick(decideConvergence(metrics(half), policy({ onStall }))), { action: 'continue', rule: 'converging' }, onStall);
  }
  const below = { ...half, dirtyRate: 0.4 * BW, previousDirtyRate: 0.4 * BW };
  for (const onStall of ['throttle', 'postcopy'] as const) {
    assert.equal(pick(decideConvergence(metrics(below), policy({ onStall }))), { action: 'continue', rule: 'converging' }, onStall);
  }
});

function pick(d: Decision): { action: Action; rule: RuleName } {
  return { action: d.action, rule: d.rule };
}

test('rule 1 counts the switchover cost: a transfer just under the limit no longer fits once the cost is added', () => {
  // 1000 pages at BW: exactly what the rows call "at the limit" when the cost is 0.
  const at = metrics({ remainingPages: 1000 });
  const t = (at.remainingBytes * 1000) / BW;
  assert.is(decideConvergence(at, policy({ downtimeLimitMs: Math.ceil(t) })).rule, 'downtime-limit');
  const costly = policy({ downtimeLimitMs: Math.ceil(t), switchoverCostMs: 3 });
  assert.is(predictedDowntimeMs(at, costly), t + 3);
  assert.is(decideConvergence(at, costly).action, 'continue');
  assert.is(decideConvergence(at, policy({ downtimeLimitMs: Math.ceil(t) + 3, switchoverCostMs: 3 })).rule, 'downtime-limit');
  assert.equal(DEFAULT_POLICY.switchoverCostMs, SWITCHOVER_COST_MS);
});

test('rule 1 sends the last pages at the small passes\' rate when there is one, else at the window', () => {
  const m = metrics({ remainingPages: 1000 });
  const p = policy();
  assert.is(predictedDowntimeMs({ ...m, recentBandwidth: BW / 4 }, p), (m.remainingBytes * 4000) / BW, 'a slow small pass predicts a slow final pass');
  assert.is(predictedDowntimeMs({ ...m, recentBandwidth: BW * 2 }, p), (m.remainingBytes * 500) / BW, 'fast small passes predict a fast one');
  assert.is(predictedDowntimeMs({ ...m, recentBandwidth: 0 }, p), (m.remainingBytes * 1000) / BW, 'no rate measured: the window');
});

test('a small pass\'s rate is its own, held to the latest later pass big enough to measure, or to the window', () => {
  const mb = 1e6;
  // 4 MB in 1.5 ms (2.7 GB/s: the sockets' buffers took it) after a 28 MB pass at 1.8 GB/s: 1.8.
  assert.is(smallPassRate({ bytes: 4 * mb, ms: 1.5 }, 1800 * mb, 1200 * mb), 1800 * mb);
  assert.is(smallPassRate({ bytes: 4 * mb, ms: 8 }, 1800 * mb, 1200 * mb), 500 * mb, 'slower on its own (latency): its own');
  assert.is(smallPassRate({ bytes: 4 * mb, ms: 1.5 }, null, 1200 * mb), 1200 * mb, 'none measured yet: the window');
  assert.is(smallPassRate({ bytes: 0, ms: 0 }, 1800 * mb, 1200 * mb), undefined);
  assert.ok(MEASURABLE_PASS_BYTES > 10 * 2 ** 20, 'more than loopback\'s socket buffers take at once');
});

test('a hash-scan source: the final scan is part of the predicted downtime, and the reason names it', () => {
  // 200 pages = 200 ms, + 80 ms scan = 280 ms ≤ 300.
  const m = metrics({ remainingPages: 200, finalScanMs: 80 });
  assert.is(predictedDowntimeMs(m, policy()), 280);
  const d = decideConvergence(m, policy());
  assert.is(d.action, 'switchover');
  assert.is(d.forced, false);
  assert.match(d.reason, /\+ 80(\.0)? ms hash-scan/);
  // 250 pages + 80 ms scan = 330 ms: over the limit, and the scan does not reach it: iterate on.
  assert.is(decideConvergence(metrics({ remainingPages: 250, finalScanMs: 80 }), policy()).action, 'continue');
});

test('a hash-scan that alone takes the limit: switch over once the pages fit in one more limit on top of the scan, marked forced', () => {
  // Scan 400 ms ≥ limit 300: the floor is 400; 250 pages → 650 ms ≤ 400 + 300.
  const near = decideConvergence(metrics({ remainingPages: 250, finalScanMs: 400 }), policy());
  assert.is(near.action, 'switchover');
  assert.is(near.rule, 'downtime-limit');
  assert.is(near.forced, true);
  assert.match(near.reason, /hash-scan alone takes 400 ms/);
  // 350 pages → 750 ms > 700: the pages can still shrink, so keep going.
  assert.is(decideConvergence(metrics({ remainingPages: 350, finalScanMs: 400 }), policy()).action, 'continue');
  // A caller who would rather abort than exceed the limit is not switched over past it.
  assert.is(decideConvergence(metrics({ remainingPages: 250, finalScanMs: 400 }), policy({ onStall: 'abort' })).action, 'continue');
});

test.run();
