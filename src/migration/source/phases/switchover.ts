// The two ends of every switchover, whatever came before it: device state and SWITCHOVER out (with
// the session digest the destination must match before it resumes), then RESUMED back. The
// destination's figures in RESUMED complete the downtime breakdown.
//
//   DEVICE_STATE ─► SWITCHOVER(mode, digest, missing) ─► … ─► RESUMED(digest, apply/digest/resume ms)

import { ErrorCode, MemshiftError } from '../../../errors.js';
import { FrameType } from '../../../protocol/constants.js';
import { decodeResumed, encodeDeviceState, encodeSwitchover } from '../../../protocol/control.js';
import { hex64 } from '../../report.js';
import type { SourceEvent, SwitchoverSent } from '../machine.js';
import type { SourceRun } from '../run.js';
import { crashPoint } from '../../crash-point.js';
import { handOverStorage } from '../../shared-storage.js';

export interface SwitchoverPlan {
  mode: number;
  iteration: number;
  pausedAt: number;
  pauseMs: number;
  finalPagesMs: number;
  finalPages: number;
  missingPages: number;
}

/** Sends DEVICE_STATE and SWITCHOVER; the guest is paused and every page it needs is sent or announced missing. */
export async function sendSwitchover(run: SourceRun, plan: SwitchoverPlan): Promise<SourceEvent> {
  const { channel } = run.established;
  const tState = performance.now();
  // Queued, not waited for: SWITCHOVER follows on the same ordered channel and is waited for.
  channel.send(encodeDeviceState(await run.source.saveState())).catch(() => undefined);
  const deviceStateMs = performance.now() - tState;
  // From here the guest may run only where the lease is: the destination's once SWITCHOVER lands.
  handOverStorage(run.source.storage, run.established.session);
  const digest = run.digest();
  run.record.guestSteps = run.source.steps ?? 0;
  run.record.digest = digest;
  await channel.send(encodeSwitchover({
    mode: plan.mode, iterations: plan.iteration, digest, guestSteps: run.record.guestSteps,
    pagesSent: run.record.pagesTransferred, missingPages: plan.missingPages,
  }));
  crashPoint('source-after-switchover-sent');
  const sent: SwitchoverSent = {
    pausedAt: plan.pausedAt, pauseMs: plan.pauseMs, finalPagesMs: plan.finalPagesMs, finalPages: plan.finalPages, deviceStateMs, digest,
  };
  return { type: 'switchover-sent', sent };
}

/**
 * Waits for RESUMED and records the downtime; a digest the destination disagrees on is an error.
 * `completes`: every page is there (stop-and-copy), so RESUMED is when the migration completed. The
 * same check reads the RESUMED a destination repeats over a QUERY channel (resolve.ts); the downtime
 * then runs to when that answer came, an upper bound.
 */
export async function awaitResumed(run: SourceRun, sent: SwitchoverSent, completes = true, timeoutMs = run.options.answerTimeoutMs): Promise<SourceEvent> {
  const { inbox } = run.established;
  const frame = await inbox.expect([FrameType.RESUMED], timeoutMs);
  const resumedAt = performance.now();
  const resumed = decodeResumed(frame.body, 0, frame.body.length);
  run.record.switchover = {
    pausedAt: sent.pausedAt, resumedAt, pauseMs: sent.pauseMs, finalPagesMs: sent.finalPagesMs, finalPages: sent.finalPages,
    deviceStateMs: sent.deviceStateMs, destination: { applyMs: resumed.applyMs, digestMs: resumed.digestMs, resumeMs: resumed.resumeMs },
  };
  if (resumed.digest !== sent.digest) {
    throw new MemshiftError(ErrorCode.DIGEST_MISMATCH, `destination resumed with digest ${hex64(resumed.digest)}, source sent ${hex64(sent.digest)}`);
  }
  // Stop-and-copy: the guest runs there with all of its memory (post-copy completes at POSTCOPY_DONE).
  if (completes) run.record.completedAt = resumedAt;
  return { type: 'resumed' };
}
