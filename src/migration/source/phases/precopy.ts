// One pre-copy iteration: send what the snapshot holds while the guest runs, sync the dirty log, measure,
// and let the convergence policy decide. The decision goes to the machine, which moves on; the
// throttle it asks for is applied here, before the next pass starts.
//
//   [pass 1: mark every page] ─► send pass ─► ITERATION_END ─► sync dirty ─► measure ─► decide, estimate

import { MEASURABLE_PASS_BYTES, decideConvergence, predictedDowntimeMs, smallPassRate, type ConvergenceMetrics } from '../../convergence.js';
import { estimatePrecopy } from '../../eta.js';
import type { SourceEvent, SourceState } from '../machine.js';
import type { SourceRun } from '../run.js';
import { sendPass, startFullPass } from './pass.js';

export async function runPrecopyPass(run: SourceRun, state: Extract<SourceState, { kind: 'precopy' }>): Promise<SourceEvent> {
  const { iteration } = state;
  run.checkCancel(`pre-copy pass ${iteration}`);
  // A pass resumed after a reconnection already holds what is left of it (and what the link lost).
  if (iteration === 1 && state.again !== true) startFullPass(run);
  // The time cap holds inside a pass too: a pass still running at it stops, and the policy decides.
  const record = await sendPass(run, iteration, 'pre-copy', 'precopy', run.record.startedAt + run.options.policy.maxTimeMs);
  const now = performance.now();
  const remaining = await run.syncDirty();
  const sinceSync = Math.max(1e-3, (now - run.lastSync) / 1000);
  run.dirtying.passEnded(sinceSync * 1000, remaining);
  run.lastSync = now;
  // Expected cost of the next pass: measured bytes per page after pass 1 (deltas, zero pages), the
  // full page size before (pass 1 is dominated by pages that will never be dirty again).
  const bytesPerPage = iteration === 1 || record.pages === 0 ? run.pageSize : Math.max(64, record.bytes / record.pages);
  // Blocks written since their marks were taken (at this pass's start) go in the next pass too, or
  // paused in the final one: they count in what is left and in the dirtying rate.
  const dirtyBlocks = run.established.blocks?.dirtyNow() ?? { blocks: 0, bytes: 0 };
  const remainingBytes = remaining * bytesPerPage + dirtyBlocks.bytes;
  const dirtyRate = remaining / sinceSync;
  // Pass 1 is the bulk of memory; later passes are the small ones a final pass resembles.
  if (iteration > 1 && record.ms > 0 && record.bytes >= MEASURABLE_PASS_BYTES) run.laterPassRate = (record.bytes * 1000) / record.ms;
  const metrics: ConvergenceMetrics = {
    iteration, elapsedMs: now - run.record.startedAt, remainingPages: remaining, remainingBytes, bandwidth: record.bandwidthBytesPerSec,
    recentBandwidth: iteration > 1 ? smallPassRate(record, run.laterPassRate, record.bandwidthBytesPerSec) : undefined,
    dirtyRate: dirtyRate * bytesPerPage + dirtyBlocks.bytes / sinceSync, previousDirtyRate: run.previous.dirtyRate, previousBandwidth: run.previous.bandwidth,
    remainingHistory: [...state.remainingHistory, remaining], throttlePercent: state.throttlePercent, passPages: record.pages,
    ...(run.lastScanMs !== null ? { finalScanMs: run.lastScanMs } : {}),
  };
  const predicted = predictedDowntimeMs(metrics, run.options.policy);
  Object.assign(run.live, { remaining, bandwidth: record.bandwidthBytesPerSec, dirtyRate, predicted });
  const decision = decideConvergence(metrics, run.options.policy);
  // The same figures, projected until the migration completes (eta.ts replays the policy on them).
  // A dirty log brought in only at a sync (an integrator's, or hash-scan) would make the curve flat.
  const dirtiedPages = !run.dirtyKnownAtSyncOnly ? (ms: number, p: number) => run.dirtying.pagesIn(ms, p) : undefined;
  const eta = estimatePrecopy(metrics, run.options.policy, { bytesPerPage, switchoverMs: run.options.policy.switchoverCostMs + (run.lastScanMs ?? 0), dirtyCapBytes: run.guestPages * bytesPerPage, dirtiedPages });
  const at = run.setEta(eta.ms);
  const blocks = record.blocks !== undefined ? { blocks: { ...record.blocks, dirty: dirtyBlocks.blocks } } : {};
  run.recordPass({ ...record, ...blocks, dirtyPages: remaining, dirtyPagesPerSec: dirtyRate, expectedDowntimeMs: predicted, etaMs: eta.ms, endedAtMs: at - run.record.startedAt });
  run.previous = { dirtyRate: metrics.dirtyRate, bandwidth: record.bandwidthBytesPerSec };
  if (decision.action === 'throttle' && decision.throttlePercent !== undefined) run.throttle(decision.throttlePercent);
  if (decision.action !== 'continue' && decision.action !== 'throttle') {
    run.decide({ rule: decision.rule, action: decision.action, forced: decision.forced, reason: decision.reason });
    run.record.converged = decision.action === 'switchover' && !decision.forced;
    run.record.predictedDowntimeMs = predicted;
  }
  run.progress(() => run.snapshot('precopy', iteration), true);
  return { type: 'iteration-done', decision, remaining };
}
