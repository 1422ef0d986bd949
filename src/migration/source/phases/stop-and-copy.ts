// Stop-and-copy: the downtime starts here. Pause the guest, send what is still dirty (cold and warm:
// everything, in their single pass), then device state and SWITCHOVER. Cold counts its downtime from
// the start, because its guest was paused before connecting.
//
//   pause ─► [single pass: mark all | sync] ─► final pass ─► DEVICE_STATE ─► SWITCHOVER
//   (resumed after a reconnection: the pause and the snapshot carry on; sync adds nothing new)

import { SwitchoverMode } from '../../../protocol/constants.js';
import { estimateTransfer } from '../../eta.js';
import type { SourceEvent, SourceState } from '../machine.js';
import type { SourceRun } from '../run.js';
import { sendPass, startFullPass } from './pass.js';
import { sendSwitchover } from './switchover.js';

export async function runStopAndCopy(run: SourceRun, state: Extract<SourceState, { kind: 'stop-and-copy' }>): Promise<SourceEvent> {
  const { iteration, singlePass, again } = state;
  run.checkCancel('stop-and-copy');
  let pausedAt = run.options.mode === 'cold' ? run.record.startedAt : performance.now();
  let pauseMs = await run.pause();
  if (again === true && run.pausedSince !== null) {
    // Resumed after a reconnection: the downtime began at the first pause, and the snapshot holds what
    // the destination still lacks (plus anything dirtied before the pause took hold).
    if (run.options.mode !== 'cold') pausedAt = run.pausedSince.at;
    pauseMs = run.pausedSince.ms;
    run.live.remaining = await run.syncDirty();
  } else if (singlePass) {
    run.decide({ rule: 'mode', action: 'switchover', forced: false, reason: `${run.options.mode} migration: guest paused for a single pass` });
    run.record.converged = true;
    run.record.predictedDowntimeMs = null;
    startFullPass(run);
  } else {
    run.live.remaining = await run.syncDirty();
  }
  const tFinal = performance.now();
  const final = await sendPass(run, iteration, 'stop-and-copy', 'stop-and-copy');
  const finalPagesMs = performance.now() - tFinal;
  run.established.channel.phase = 'switchover';
  const sent = await sendSwitchover(run, { mode: SwitchoverMode.STOP_AND_COPY, iteration, pausedAt, pauseMs, finalPagesMs, finalPages: final.pages, missingPages: 0 });
  // The pass's record and events once SWITCHOVER is out: bookkeeping is no part of the downtime. What
  // is left to go is the switchover's round trip.
  const eta = estimateTransfer(0, final.bandwidthBytesPerSec, run.options.policy.switchoverCostMs).ms;
  run.setEta(eta);
  run.recordPass({ ...final, etaMs: eta, endedAtMs: tFinal + finalPagesMs - run.record.startedAt });
  return sent;
}
