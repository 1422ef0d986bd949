// eta: the estimate is a pure function of (metrics, policy, model), so each case is a row computed by
// hand in the comment next to it. Round figures keep the arithmetic exact: B = 100 MB/s, so R bytes take
// R / 1e5 ms; D / B is a power of two or a decimal whose products stay integers. Cases: a converging
// geometric series, the caps (iterations, time), each stall policy when the guest outruns the link,
// post-copy, and the named cases without a finite estimate.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { DEFAULT_POLICY, decideConvergence, type ConvergenceMetrics, type ConvergencePolicy } from '../../src/migration/convergence.js';
import { estimatePrecopy, estimateTransfer, MAX_PROJECTED_PASSES, type Eta, type EtaModel } from '../../src/migration/eta.js';

const PAGE = 4096;
const B = 1e8;
const S = 5;
const MODEL: EtaModel = { bytesPerPage: PAGE, switchoverMs: S, dirtyCapBytes: 1e12 };

function metrics(over: Partial<ConvergenceMetrics> & { remainingBytes: number }): ConvergenceMetrics {
  const remainingPages = over.remainingBytes / PAGE;
  return {
    iteration: 1, elapsedMs: 1000, remainingPages, bandwidth: B, dirtyRate: 0, previousDirtyRate: 0, previousBandwidth: 0,
    remainingHistory: [remainingPages], throttlePercent: 0, ...over,
  };
}

/** Rule 1 without the switchover cost and rule 5 at the full link, as the hand computations below assume. */
function policy(over: Partial<ConvergencePolicy> = {}): ConvergencePolicy {
  return { ...DEFAULT_POLICY, downtimeLimitMs: 100, maxIterations: 30, maxTimeMs: 600_000, onStall: 'force', stallIterations: 4, postcopyAfter: null, switchoverCostMs: 0, throttleTriggerPercent: 100, ...over };
}

const near = (got: number | null, want: number, what: string): void => {
  assert.ok(got !== null && Math.abs(got - want) < 1e-6, `${what}: expected ${want} ms, got ${got}`);
};
const shape = (e: Eta): Omit<Eta, 'ms'> => ({ ending: e.ending, passes: e.passes, rule: e.rule });

// ---- converging -----------------------------------------------------------------------------------

test('a converging guest: passes shrink R by D/B each until R/B meets the limit, then the final pass and S', () => {
  // R 80 MB, D/B = 1/2, limit 100 ms: passes of 800, 400, 200 ms leave 10 MB (100 ms ≤ limit); final
  // 100 ms + S 5 → 1505 ms after 3 more passes.
  const e = estimatePrecopy(metrics({ remainingBytes: 80e6, dirtyRate: 5e7 }), policy(), MODEL);
  near(e.ms, 800 + 400 + 200 + 100 + S, 'geometric');
  assert.equal(shape(e), { ending: 'converges', passes: 3, rule: 'downtime-limit' });
});

test('with a dirtying curve, each projected pass leaves what the curve says for its length, not D·t', () => {
  // R 80 MB at B: pass 2 takes 800 ms. A working set of 4 MB (~977 pages) saturated: every projected
  // pass leaves 4 MB, which takes 40 ms ≤ 100 ms: the final pass and S. D·t (D = B/2) would have
  // projected 800 + 400 + 200 ms of passes.
  const workingSet = 4e6 / PAGE;
  const model: EtaModel = { ...MODEL, dirtiedPages: () => workingSet };
  const e = estimatePrecopy(metrics({ remainingBytes: 80e6, dirtyRate: 5e7 }), policy(), model);
  near(e.ms, 800 + 40 + S, 'saturated working set');
  assert.equal(shape(e), { ending: 'converges', passes: 1, rule: 'downtime-limit' });
  // A curve with no answer (no pass measured yet) falls back to D·t.
  const fallback = estimatePrecopy(metrics({ remainingBytes: 80e6, dirtyRate: 5e7 }), policy(), { ...MODEL, dirtiedPages: () => null });
  near(fallback.ms, 800 + 400 + 200 + 100 + S, 'fallback');
});

test('after pass 1, the passes still to come move at the small passes\' rate when it is known', () => {
  // The converging guest above, with later passes measured at 2B: R 80 MB takes 400 ms and leaves
  // D·t = 20 MB, which at 2B takes 100 ms ≤ limit: final pass and S, 505 ms after 1 pass (at B: 1505, 3).
  const e = estimatePrecopy(metrics({ iteration: 2, remainingBytes: 80e6, dirtyRate: 5e7, recentBandwidth: 2 * B }), policy(), MODEL);
  near(e.ms, 400 + 100 + S, 'later passes at 2B');
  assert.equal(shape(e), { ending: 'converges', passes: 1, rule: 'downtime-limit' });
});

test('already within the limit: only the final pass and the switchover remain', () => {
  const e = estimatePrecopy(metrics({ remainingBytes: 5e6, dirtyRate: 5e7 }), policy(), MODEL);
  near(e.ms, 50 + S, 'final pass only');
  assert.equal(shape(e), { ending: 'converges', passes: 0, rule: 'downtime-limit' });
});

test('nothing dirty: the switchover cost alone, even before any bandwidth was measured', () => {
  const e = estimatePrecopy(metrics({ remainingBytes: 0, bandwidth: 0 }), policy(), MODEL);
  near(e.ms, S, 'switchover only');
  assert.is(e.ending, 'converges');
});

test('the estimate never decreases as the dirty bytes grow (guest converging, D < B)', () => {
  const rs = [0, 1e6, 1e7, 5e7, 8e7, 1e8, 4e8, 1e9, 4e9];
  const etas = rs.map((r) => estimatePrecopy(metrics({ remainingBytes: r, dirtyRate: 5e7 }), policy(), MODEL).ms);
  for (const ms of etas) assert.ok(ms !== null && Number.isFinite(ms), `finite: ${ms}`);
  for (let i = 1; i < etas.length; i++) assert.ok(etas[i]! >= etas[i - 1]!, `R ${rs[i]}: ${etas[i]} < ${etas[i - 1]} for R ${rs[i - 1]}`);
  assert.ok(etas[etas.length - 1]! > etas[0]!, 'and grows');
});

test('a faster dirtying guest never has a shorter estimate (same R, D < B)', () => {
  const ds = [0, 1e7, 2.5e7, 5e7, 7.5e7, 9e7];
  const etas = ds.map((d) => estimatePrecopy(metrics({ remainingBytes: 4e8, dirtyRate: d }), policy({ downtimeLimitMs: 10 }), MODEL).ms!);
  for (let i = 1; i < etas.length; i++) assert.ok(etas[i] >= etas[i - 1], `D ${ds[i]}: ${etas[i]} < ${etas[i - 1]}`);
});

// ---- caps -----------------------------------------------------------------------------------------

test('the iteration cap ends the projection: a forced final pass at the cap, never more passes', () => {
  // D/B = 0.9, R 1 GB, limit 10 ms, cap 5: passes 2..5 take 10 000, 9000, 8100, 7290 ms; at iteration 5
  // the cap forces the final pass of 6561 ms; + S.
  const e = estimatePrecopy(metrics({ remainingBytes: 1e9, dirtyRate: 9e7 }), policy({ downtimeLimitMs: 10, maxIterations: 5 }), MODEL);
  near(e.ms, 10_000 + 9000 + 8100 + 7290 + 6561 + S, 'iteration cap');
  assert.equal(shape(e), { ending: 'forced', passes: 4, rule: 'max-iterations' });
});

test('the time cap counts the projected passes from the elapsed time', () => {
  // Elapsed 1000 ms, cap 15 s: passes of 10 000 (→ 11 s) and 9000 ms (→ 20 s ≥ cap); forced final 8100 + S.
  const e = estimatePrecopy(metrics({ remainingBytes: 1e9, dirtyRate: 9e7 }), policy({ downtimeLimitMs: 10, maxTimeMs: 15_000 }), MODEL);
  near(e.ms, 10_000 + 9000 + 8100 + S, 'time cap');
  assert.equal(shape(e), { ending: 'forced', passes: 2, rule: 'max-time' });
});

test('the cap already reached: the forced final pass now', () => {
  const e = estimatePrecopy(metrics({ remainingBytes: 1e9, dirtyRate: 9e7, iteration: 30 }), policy({ downtimeLimitMs: 10 }), MODEL);
  near(e.ms, 10_000 + S, 'at the cap');
  assert.equal(shape(e), { ending: 'forced', passes: 0, rule: 'max-iterations' });
});

// ---- D ≥ B: the stall policies --------------------------------------------------------------------

test('D ≥ B under force: one more pass (rule 5 needs two in a row), then the forced pass of what the guest could dirty', () => {
  // D = 2B, R 100 MB: pass 2 takes 1000 ms and would leave 200 MB, capped at the guest's 150 MB; rule
  // dirty-rate then forces the final pass of 1500 ms; + S.
  const e = estimatePrecopy(metrics({ remainingBytes: 1e8, dirtyRate: 2e8 }), policy({ downtimeLimitMs: 10 }), { ...MODEL, dirtyCapBytes: 1.5e8 });
  near(e.ms, 1000 + 1500 + S, 'forced');
  assert.equal(shape(e), { ending: 'forced', passes: 1, rule: 'dirty-rate' });
});

test('D ≥ B under abort: no estimate, the guest never runs on the destination', () => {
  const e = estimatePrecopy(metrics({ remainingBytes: 1e8, dirtyRate: 2e8, iteration: 2, previousDirtyRate: 2e8, previousBandwidth: B }), policy({ onStall: 'abort', downtimeLimitMs: 10 }), MODEL);
  assert.equal({ ms: e.ms, ...shape(e) }, { ms: null, ending: 'aborted', passes: 0, rule: 'dirty-rate' });
});

test('D ≥ B under throttle: each step scales D by the vCPU share until D < B, then the series converges', () => {
  // D = 2B, rule 5 fires now: throttle 50 % → D = B; pass of 1000 ms leaves 100 MB; rule 5 again:
  // 75 % → D = B/2; pass of 1000 ms leaves 50 MB; then passes of 500, 250, 125, 62.5, 31.25, 15.625 ms
  // leave 7.8125 ms ≤ 10: final 7.8125 + S. 8 passes.
  const e = estimatePrecopy(
    metrics({ remainingBytes: 1e8, dirtyRate: 2e8, iteration: 2, previousDirtyRate: 2e8, previousBandwidth: B }),
    policy({ onStall: 'throttle', throttleInitial: 50, throttleStep: 25, downtimeLimitMs: 10 }), MODEL,
  );
  near(e.ms, 1000 + 1000 + 500 + 250 + 125 + 62.5 + 31.25 + 15.625 + 7.8125 + S, 'throttled');
  assert.equal(shape(e), { ending: 'converges', passes: 8, rule: 'downtime-limit' });
});

test('D ≥ B under throttle at its maximum: the projection runs to the iteration cap and forces', () => {
  // Already at 99 % and still D = 2B: rule 5 says continue (throttle at maximum) until the cap of 6.
  const e = estimatePrecopy(
    metrics({ remainingBytes: 1e8, dirtyRate: 2e8, iteration: 2, previousDirtyRate: 2e8, previousBandwidth: B, throttlePercent: 99 }),
    policy({ onStall: 'throttle', downtimeLimitMs: 10, maxIterations: 6 }), { ...MODEL, dirtyCapBytes: 1e8 },
  );
  // R stays at the 100 MB cap: passes 3..6 of 1000 ms each, then the forced final pass of 1000 ms.
  near(e.ms, 4 * 1000 + 1000 + S, 'throttle at max');
  assert.equal(shape(e), { ending: 'forced', passes: 4, rule: 'max-iterations' });
});

// ---- post-copy ------------------------------------------------------------------------------------

test('hybrid switching to post-copy: the switchover, then pushing what remains', () => {
  const e = estimatePrecopy(metrics({ remainingBytes: 1e8, dirtyRate: 5e7 }), policy({ postcopyAfter: 1 }), MODEL);
  near(e.ms, S + 1000, 'post-copy');
  assert.equal(shape(e), { ending: 'postcopy', passes: 0, rule: 'postcopy-after' });
});

test('a stall under the postcopy policy projects the push of what the stalled pass left', () => {
  const e = estimatePrecopy(metrics({ remainingBytes: 1e8, dirtyRate: 2e8 }), policy({ onStall: 'postcopy', downtimeLimitMs: 10 }), { ...MODEL, dirtyCapBytes: 1.5e8 });
  near(e.ms, 1000 + S + 1500, 'post-copy stall');
  assert.equal(shape(e), { ending: 'postcopy', passes: 1, rule: 'dirty-rate' });
});

// ---- no finite estimate ---------------------------------------------------------------------------

test('no bandwidth measured with pages left: no estimate, named no-bandwidth', () => {
  assert.equal(estimatePrecopy(metrics({ remainingBytes: 1, bandwidth: 0 }), policy(), MODEL), { ms: null, ending: 'no-bandwidth', passes: 0, rule: null });
  assert.equal(estimateTransfer(1, 0, S), { ms: null, ending: 'no-bandwidth', passes: 0, rule: null });
});

test('a policy that never ends the projection is cut at MAX_PROJECTED_PASSES: no estimate, named unbounded', () => {
  // A 0 ms limit is never met while anything is dirty, and no cap is within reach.
  const e = estimatePrecopy(metrics({ remainingBytes: 1e8, dirtyRate: 5e7 }), policy({ downtimeLimitMs: 0, maxIterations: 1e9, maxTimeMs: Infinity }), MODEL);
  assert.equal({ ms: e.ms, ending: e.ending, passes: e.passes }, { ms: null, ending: 'unbounded', passes: MAX_PROJECTED_PASSES });
});

// ---- single transfers and purity ------------------------------------------------------------------

test('a single transfer (cold, warm, final pass, post-copy push) is R/B + S', () => {
  assert.equal(
    [estimateTransfer(1e8, B, S).ms, estimateTransfer(4096, B, 0).ms, estimateTransfer(0, 0, S).ms, estimateTransfer(0, B, 0).ms],
    [1000 + S, 0.04096, S, 0],
  );
  assert.is(estimateTransfer(1e8, B, S).ending, 'transfer');
});

test('with no projected pass the estimate ends by the rule the policy decides now', () => {
  const cases: [ConvergenceMetrics, ConvergencePolicy][] = [
    [metrics({ remainingBytes: 5e6 }), policy()],
    [metrics({ remainingBytes: 1e9, iteration: 30 }), policy()],
    [metrics({ remainingBytes: 1e8, iteration: 2, dirtyRate: 2e8, previousDirtyRate: 2e8, previousBandwidth: B }), policy({ onStall: 'abort' })],
    [metrics({ remainingBytes: 1e8 }), policy({ postcopyAfter: 1 })],
  ];
  for (const [m, p] of cases) {
    const e = estimatePrecopy(m, p, MODEL);
    assert.is(e.passes, 0);
    assert.is(e.rule, decideConvergence(m, p).rule);
  }
});

test('pure: equal inputs give equal estimates and the inputs are left alone', () => {
  const m = metrics({ remainingBytes: 80e6, dirtyRate: 5e7 });
  const history = [...m.remainingHistory];
  const a = estimatePrecopy(m, policy(), MODEL);
  const b = estimatePrecopy(m, policy(), MODEL);
  assert.equal(a, b);
  assert.equal(m.remainingHistory, history);
  assert.is(m.remainingBytes, 80e6);
});

test.run();
