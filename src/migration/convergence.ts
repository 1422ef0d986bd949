// When to stop iterating: a pure function of the latest metrics and the policy, after Cloud
// Hypervisor's is_precopy_converged and QEMU's auto-converge. The rules are tried in order and the
// first that fires decides; the report prints its name and reason.
//
//   1 downtime-limit   expected downtime ≤ the limit → switch over. Expected downtime is the fixed
//                      switchover cost (pause, device state, RESUMED's round trip, resume: ~2.5 ms
//                      on loopback) plus remaining bytes at the slower of the windowed bandwidth and the
//                      last pass's own rate: the final pass is small, and small passes run below the
//                      windowed rate (task round trips and latency weigh more), as measured here.
//   2 postcopy-after   hybrid mode has run its pre-copy iterations → post-copy
//   3 max-iterations   the iteration cap is reached → stall policy (throttle falls back to force)
//   4 max-time         the time cap is reached → stall policy (throttle falls back to force)
//   5 dirty-rate       the guest dirties as fast as the link sends, for 2 iterations in a row → stall policy;
//                      under the throttle and post-copy policies, half as fast (QEMU's
//                      throttle-trigger-threshold, 50 %): the dirty rate here counts distinct pages, which
//                      saturates at the link's rate when the whole working set is dirty each pass, so "as
//                      fast" would rarely fire, and a guest at 0.9× the link shrinks its dirty set by a
//                      tenth a pass, too slow to finish. Both of those policies keep the guest whole and
//                      running; force (a long pause) and abort (no migration) wait for the full link.
//                      Under the post-copy policy one pass is enough when it left at least 90 % of the
//                      pages it sent dirty again: the guest rewrites memory as fast as a pass moves it, a
//                      second pass would move it all again, and post-copy moves each page once more at most
//                      (a 256 MiB flat-out writer here: pass 2 resent all 65 536 pages in ~200 ms).
//   6 no-progress      remaining pages have not shrunk below their minimum over the last N iterations → stall policy
//   7 converging       otherwise: another iteration
//
// Stall policies: force (stop-and-copy now, whatever the downtime), throttle (slow the vCPU: 20 %,
// then +10 % per stalled iteration up to 99 %, as QEMU's auto-converge), abort (give up; the source
// keeps running), postcopy (switch to post-copy: every page moves once more at most).

export type StallPolicy = 'force' | 'throttle' | 'abort' | 'postcopy';
export const STALL_POLICIES: readonly StallPolicy[] = ['force', 'throttle', 'abort', 'postcopy'];

/** `mode`: no rule fired, the mode itself decided (cold and warm: one paused pass; postcopy: resume at once). */
export type RuleName = 'downtime-limit' | 'postcopy-after' | 'max-iterations' | 'max-time' | 'dirty-rate' | 'no-progress' | 'converging' | 'mode';
export type Action = 'continue' | 'switchover' | 'throttle' | 'abort' | 'postcopy';

export interface ConvergencePolicy {
  downtimeLimitMs: number;
  maxIterations: number;
  maxTimeMs: number;
  onStall: StallPolicy;
  /** Iterations without progress before rule 6 fires. */
  stallIterations: number;
  throttleInitial: number;
  throttleStep: number;
  throttleMax: number;
  /** Hybrid: switch to post-copy after this many pre-copy iterations (null: only on stall). */
  postcopyAfter: number | null;
  /** How a converged pre-copy ends: stop-and-copy (live), or post-copy (hybrid). Default stop-and-copy. */
  switchoverTo?: 'stop-and-copy' | 'postcopy';
  /** What a switchover costs besides moving the last pages (DEFAULT_POLICY: SWITCHOVER_COST_MS). */
  switchoverCostMs: number;
  /** Throttle and post-copy policies: rule 5 fires at this share of the bandwidth, in % (DEFAULT_POLICY: 50, as QEMU's throttle-trigger-threshold). */
  throttleTriggerPercent: number;
}

/** Rule 5 after one pass (post-copy policy): the share of the pass's pages dirty again. */
export const REDIRTIED_SHARE = 0.9;

/**
 * Pause + device state + RESUMED's round trip + resume, measured on loopback here: the downtime less
 * the final pages' time, medians of 7 with the code compiled before the switchover (src/import-eagerly.ts):
 * 2.2 ms (1 GiB idle), 2.6 ms (256 MiB, 200k pages/s). It was 3 when that code compiled in the downtime.
 */
export const SWITCHOVER_COST_MS = 2.5;

export const DEFAULT_POLICY: ConvergencePolicy = {
  downtimeLimitMs: 300,
  maxIterations: 30,
  maxTimeMs: 300_000,
  onStall: 'throttle',
  stallIterations: 4,
  throttleInitial: 20,
  throttleStep: 10,
  throttleMax: 99,
  postcopyAfter: null,
  switchoverCostMs: SWITCHOVER_COST_MS,
  throttleTriggerPercent: 50,
};

export interface ConvergenceMetrics {
  /** Iterations completed. */
  iteration: number;
  elapsedMs: number;
  remainingPages: number;
  remainingBytes: number;
  /** Bytes per second. */
  bandwidth: number;
  /**
   * Bytes per second a small final pass will likely move, from the passes after the first (precopy.ts),
   * when there were any; else the window.
   */
  recentBandwidth?: number;
  /** Bytes per second the guest dirties (pages/s × bytes per page). */
  dirtyRate: number;
  /** Dirty rate of the iteration before, for rule 5's "two in a row". */
  previousDirtyRate: number;
  previousBandwidth: number;
  /** Remaining pages after each completed iteration, oldest first (this one last). */
  remainingHistory: readonly number[];
  /** Pages the iteration just ended sent (rule 5 after one pass; absent: the rule waits for two). */
  passPages?: number;
  throttlePercent: number;
  /**
   * A source whose dirty pages are found by hash-scan: how long its last scan took. The final pass
   * scans once more with the guest paused, so that time is downtime too.
   */
  finalScanMs?: number;
}

export interface Decision {
  action: Action;
  rule: RuleName;
  reason: string;
  /** For action 'throttle': the new percentage. */
  throttlePercent?: number;
  /** True when switching over although the downtime limit was not met. */
  forced: boolean;
}

export function expectedDowntimeMs(remainingBytes: number, bandwidth: number): number {
  if (remainingBytes === 0) return 0;
  return bandwidth > 0 ? (remainingBytes * 1000) / bandwidth : Infinity;
}

const fmt = (n: number): string => (Number.isFinite(n) ? (n >= 100 ? n.toFixed(0) : n.toFixed(1)) : '∞');
const mbs = (bytesPerSecond: number): string => `${fmt(bytesPerSecond / 1e6)} MB/s`;

/**
 * A pass sending less than this says little about the link: on loopback the sockets' buffers take ~10
 * MiB at once, and a 4 MiB pass "moved" at 2.9 GB/s, as fast as it was copied into them.
 */
export const MEASURABLE_PASS_BYTES = 16 * 2 ** 20;

/**
 * The rate a small final pass will likely see, after a pass (not the first) of `pass.bytes` in
 * `pass.ms`: its own, slower where latency dominates, but held to `laterPassRate`, the latest later
 * pass big enough to measure (MEASURABLE_PASS_BYTES), or to the window before there is one. (A hot-set
 * guest's later passes on loopback moved 1.8–2.8 GB/s where its pass 1 moved 1.2–1.6: the window, held
 * by pass 1, had predicted its downtime 38 % long.) Undefined when the pass took no time.
 */
export function smallPassRate(pass: { bytes: number; ms: number }, laterPassRate: number | null, windowRate: number): number | undefined {
  if (!(pass.ms > 0)) return undefined;
  return Math.min((pass.bytes * 1000) / pass.ms, laterPassRate ?? windowRate);
}

/** Rule 1's expected downtime: the fixed switchover cost plus the last pages at the rate a small pass sees. */
export function predictedDowntimeMs(m: ConvergenceMetrics, p: ConvergencePolicy): number {
  return expectedDowntimeMs(m.remainingBytes, transferBandwidth(m)) + p.switchoverCostMs + (m.finalScanMs ?? 0);
}

/** Bytes per second the passes still to come (small ones) are expected to move. */
export function transferBandwidth(m: ConvergenceMetrics): number {
  return m.recentBandwidth !== undefined && m.recentBandwidth > 0 ? m.recentBandwidth : m.bandwidth;
}

export function decideConvergence(m: ConvergenceMetrics, p: ConvergencePolicy): Decision {
  const downtime = predictedDowntimeMs(m, p);
  if (downtime <= p.downtimeLimitMs) {
    const cost = (p.switchoverCostMs ? ` + ${fmt(p.switchoverCostMs)} ms switchover` : '') + (m.finalScanMs ? ` + ${fmt(m.finalScanMs)} ms hash-scan` : '');
    const reason = `expected downtime ${fmt(downtime)} ms (${m.remainingPages} pages, ${Math.round(m.remainingBytes)} B at ${mbs(transferBandwidth(m))}${cost}) ≤ limit ${p.downtimeLimitMs} ms`;
    if (p.switchoverTo === 'postcopy') {
      return { action: 'postcopy', rule: 'downtime-limit', forced: false, reason: `${reason}; hybrid: post-copy instead of stop-and-copy` };
    }
    return { action: 'switchover', rule: 'downtime-limit', forced: false, reason };
  }
  // A hash-scan that alone takes the limit can never meet it: switch over at the least downtime within
  // reach instead, the scan plus what the limit allows for the pages, rather than iterate until a cap
  // (unless the caller would rather abort than exceed the limit: then the stall rules decide).
  const floor = p.switchoverCostMs + (m.finalScanMs ?? 0);
  if (m.finalScanMs !== undefined && floor >= p.downtimeLimitMs && downtime <= floor + p.downtimeLimitMs && p.switchoverTo !== 'postcopy' && p.onStall !== 'abort') {
    return {
      action: 'switchover', rule: 'downtime-limit', forced: true,
      reason: `the final hash-scan alone takes ${fmt(m.finalScanMs)} ms, at or above the limit of ${p.downtimeLimitMs} ms: switching over at expected downtime ${fmt(downtime)} ms (${m.remainingPages} pages at ${mbs(transferBandwidth(m))} on top of the scan and ${fmt(p.switchoverCostMs)} ms switchover)`,
    };
  }
  if (p.postcopyAfter !== null && m.iteration >= p.postcopyAfter) {
    return { action: 'postcopy', rule: 'postcopy-after', forced: false, reason: `${m.iteration} pre-copy iterations done (postcopy-after ${p.postcopyAfter}); ${m.remainingPages} pages left for post-copy` };
  }
  if (m.iteration >= p.maxIterations) {
    return stall(m, p, 'max-iterations', `${m.iteration} iterations reached the cap of ${p.maxIterations} with expected downtime ${fmt(downtime)} ms`, true);
  }
  if (m.elapsedMs >= p.maxTimeMs) {
    return stall(m, p, 'max-time', `${fmt(m.elapsedMs / 1000)} s reached the cap of ${fmt(p.maxTimeMs / 1000)} s with expected downtime ${fmt(downtime)} ms`, true);
  }
  const trigger = p.onStall === 'throttle' || p.onStall === 'postcopy' ? p.throttleTriggerPercent / 100 : 1;
  if (p.onStall === 'postcopy' && m.iteration === 1 && m.passPages !== undefined && m.passPages > 0 &&
    m.remainingPages >= REDIRTIED_SHARE * m.passPages && m.dirtyRate >= trigger * m.bandwidth) {
    return stall(m, p, 'dirty-rate', `pass 1 sent ${m.passPages} pages and ${m.remainingPages} are dirty again (guest dirties ${mbs(m.dirtyRate)}, link sends ${mbs(m.bandwidth)}): a second pass would resend them all`, false);
  }
  if (m.iteration >= 2 && m.dirtyRate >= trigger * m.bandwidth && m.previousDirtyRate >= trigger * m.previousBandwidth) {
    const share = trigger < 1 ? ` (${p.onStall} trigger: ${Math.round(trigger * 100)} % of the link)` : '';
    return stall(m, p, 'dirty-rate', `guest dirties ${mbs(m.dirtyRate)}, link sends ${mbs(m.bandwidth)} (and ${mbs(m.previousDirtyRate)} vs ${mbs(m.previousBandwidth)} the iteration before)${share}`, false);
  }
  const h = m.remainingHistory;
  if (h.length > p.stallIterations) {
    const before = Math.min(...h.slice(h.length - 1 - p.stallIterations, h.length - 1));
    if (h[h.length - 1] >= before) {
      return stall(m, p, 'no-progress', `${h[h.length - 1]} pages remain, no fewer than the best (${before}) of the previous ${p.stallIterations} iterations`, false);
    }
  }
  return { action: 'continue', rule: 'converging', forced: false, reason: `expected downtime ${fmt(downtime)} ms > limit ${p.downtimeLimitMs} ms; ${m.remainingPages} pages remain` };
}

function stall(m: ConvergenceMetrics, p: ConvergencePolicy, rule: RuleName, why: string, hardCap: boolean): Decision {
  switch (p.onStall) {
    case 'force':
      return { action: 'switchover', rule, forced: true, reason: `${why}; policy force: stop-and-copy now` };
    case 'abort':
      return { action: 'abort', rule, forced: false, reason: `${why}; policy abort: migration abandoned, source keeps running` };
    case 'postcopy':
      return { action: 'postcopy', rule, forced: false, reason: `${why}; policy postcopy: switching to post-copy` };
    case 'throttle': {
      if (hardCap) return { action: 'switchover', rule, forced: true, reason: `${why}; throttling at ${m.throttlePercent} % did not converge in time: stop-and-copy now` };
      if (m.throttlePercent >= p.throttleMax) {
        return { action: 'continue', rule, forced: false, throttlePercent: m.throttlePercent, reason: `${why}; throttle already at its maximum ${p.throttleMax} %` };
      }
      const next = m.throttlePercent === 0 ? p.throttleInitial : Math.min(p.throttleMax, m.throttlePercent + p.throttleStep);
      return { action: 'throttle', rule, forced: false, throttlePercent: next, reason: `${why}; policy throttle: vCPU throttled to ${next} %` };
    }
    default: {
      const never: never = p.onStall;
      throw new Error(`unknown stall policy ${String(never)}`);
    }
  }
}
