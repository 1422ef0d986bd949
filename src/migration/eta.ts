// How long a migration still has to go: a pure estimate from the figures the source has at the end of
// a pass (no clock, no I/O). "To go" ends when the migration completes: the guest runs on the
// destination with all of its memory (stop-and-copy: RESUMED; post-copy: the last page pushed).
//
// Pre-copy is estimated by replaying the convergence policy itself (convergence.ts) on projected
// figures, so the estimate switches over, throttles, forces or gives up exactly where the policy would:
//
//   B  bandwidth (bytes/s: the small passes' rate once known, else the windowed meter)      R  bytes still dirty
//   D  bytes dirtied per second (pages/s × bytes per page)     S  switchover cost (pause, state, resume)
//
//   repeat  decide(R, B, D, …)                                   the policy's own rules, in order
//     continue  → a pass of R/B; it leaves R' = min(D·R/B, cap) dirty    (D < B: R shrinks by D/B per pass)
//                 or, with the dirtying curve u (dirtying.ts), R' = min(u(R/B), cap): a guest whose
//                 working set saturates a long pass dirties a short one faster than D says
//     throttle  → the same, with D scaled to the vCPU's new share: D·(100 − p')/(100 − p)
//     switchover (limit met, or forced by a cap / stall)  → + R/B + S, done
//     postcopy  → + S + R/B (the rest is pushed while the guest runs there), done
//     abort     → no estimate: the guest never runs on the destination
//
// With D ≥ B the loop ends at the first stall rule (force), after the throttle steps (throttle) or at
// the iteration / time cap, so it always ends; MAX_PROJECTED_PASSES only guards absurd policies.
// Single-pass modes (cold, warm) and a post-copy push are one transfer: R/B + S.

import { decideConvergence, expectedDowntimeMs, transferBandwidth, type ConvergenceMetrics, type ConvergencePolicy, type RuleName } from './convergence.js';

/**
 * Downtime not spent on pages (pause at a step boundary, device state, digest check, resume, the
 * RESUMED round trip). Measured on loopback with the simulated guest (256 MiB and 1 GiB): 3–4 ms, the
 * downtime breakdown without finalPagesMs. A constant, because a run switches over only once.
 */
export { SWITCHOVER_COST_MS } from './convergence.js';

/** More projected passes than any sane policy allows: the estimate gives up (`unbounded`). */
export const MAX_PROJECTED_PASSES = 1000;

/**
 * How the projected migration ends:
 *   converges    the downtime limit is met after `passes` more pre-copy passes
 *   forced       a cap or stall rule forces stop-and-copy (force, or throttle at a hard cap)
 *   postcopy     the policy switches to post-copy; the estimate includes pushing what remains
 *   transfer     a single transfer is left (cold / warm pass, final pass, post-copy push)
 *   aborted      the abort policy fires: the guest never runs on the destination (ms null)
 *   no-bandwidth nothing measured yet, or nothing moves (ms null)
 *   unbounded    more than MAX_PROJECTED_PASSES passes (ms null)
 */
export type EtaEnding = 'converges' | 'forced' | 'postcopy' | 'transfer' | 'aborted' | 'no-bandwidth' | 'unbounded';

export interface Eta {
  /** Milliseconds still to go; null when there is no finite estimate (see `ending`). */
  ms: number | null;
  ending: EtaEnding;
  /** Pre-copy passes projected before the last transfer. */
  passes: number;
  /** The policy rule that ends the projection (pre-copy only). */
  rule: RuleName | null;
}

export interface EtaModel {
  /** Bytes one dirty page costs on the wire (the figure convergence uses). */
  bytesPerPage: number;
  /** Cost of the switchover beyond its pages. */
  switchoverMs: number;
  /** Most bytes that can be dirty at once (the guest's size): D·t saturates there. */
  dirtyCapBytes: number;
  /**
   * Pages the guest dirties in `ms` at a throttle (dirtying.ts: the curve sampled during the passes),
   * or null; without it, or when it has no answer, a pass of t leaves D·t dirty.
   */
  dirtiedPages?: (ms: number, throttlePercent: number) => number | null;
}

/** One transfer of `bytes` at `bandwidth`, then `switchoverMs`: cold, warm, a final pass, a post-copy push. */
export function estimateTransfer(bytes: number, bandwidth: number, switchoverMs: number): Eta {
  if (bytes > 0 && !(bandwidth > 0)) return { ms: null, ending: 'no-bandwidth', passes: 0, rule: null };
  return { ms: expectedDowntimeMs(bytes, bandwidth) + switchoverMs, ending: 'transfer', passes: 0, rule: null };
}

/**
 * The rest of a pre-copy migration whose pass `m.iteration` just ended with the metrics `m` (the same
 * the policy decides on). Pure: equal inputs give equal estimates.
 */
export function estimatePrecopy(m: ConvergenceMetrics, policy: ConvergencePolicy, model: EtaModel): Eta {
  if (m.remainingBytes > 0 && !(m.bandwidth > 0)) return { ms: null, ending: 'no-bandwidth', passes: 0, rule: null };
  let cur = m;
  let ms = 0;
  for (let passes = 0; passes <= MAX_PROJECTED_PASSES; passes++) {
    const d = decideConvergence(cur, policy);
    const transfer = expectedDowntimeMs(cur.remainingBytes, transferBandwidth(cur));
    switch (d.action) {
      case 'switchover':
        return { ms: ms + transfer + model.switchoverMs, ending: d.forced ? 'forced' : 'converges', passes, rule: d.rule };
      case 'postcopy':
        return { ms: ms + model.switchoverMs + transfer, ending: 'postcopy', passes, rule: d.rule };
      case 'abort':
        return { ms: null, ending: 'aborted', passes, rule: d.rule };
      case 'continue':
      case 'throttle': {
        const throttle = d.throttlePercent ?? cur.throttlePercent;
        const curve = transfer > 0 ? (model.dirtiedPages?.(transfer, throttle) ?? null) : null;
        const dirtyRate = curve !== null ? (curve * model.bytesPerPage * 1000) / transfer : (cur.dirtyRate * (100 - throttle)) / (100 - cur.throttlePercent);
        const remainingBytes = Math.min(model.dirtyCapBytes, (dirtyRate * transfer) / 1000);
        const remainingPages = remainingBytes / model.bytesPerPage;
        ms += transfer;
        cur = {
          iteration: cur.iteration + 1, elapsedMs: cur.elapsedMs + transfer, remainingPages, remainingBytes,
          bandwidth: cur.bandwidth, recentBandwidth: cur.recentBandwidth, dirtyRate, previousDirtyRate: cur.dirtyRate, previousBandwidth: cur.bandwidth,
          remainingHistory: [...cur.remainingHistory, remainingPages], throttlePercent: throttle, passPages: cur.remainingPages,
        };
        break;
      }
      default: {
        const never: never = d.action;
        throw new Error(`unknown action ${String(never)}`);
      }
    }
  }
  return { ms: null, ending: 'unbounded', passes: MAX_PROJECTED_PASSES, rule: null };
}
