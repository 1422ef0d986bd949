// The stop-and-copy switchover on the destination: the only place the guest starts after pre-copy.
// Every page arrived (the final pass ended before SWITCHOVER); the session digest (memory and disks)
// must equal the source's, then device state is loaded, the guest resumed, and RESUMED carries our
// share of the downtime back.
//
//   SWITCHOVER ─► digest check ─► [post-copy armed but unused: open the gate] ─► load state
//   ─► [shared storage: accept the lease the source handed over, or not resuming] ─► commit (the machine: resuming, or no: the link was lost) ─► resume ─► (the machine: running) ─► RESUMED
//
// The commit is asked of the machine synchronously, right before the target's resume: a session that
// failed meanwhile (and may be telling a querying source it never resumed) must not start the guest.

import { ErrorCode, MemshiftError } from '../../../errors.js';
import type { Switchover } from '../../../protocol/control.js';
import { encodeResumed } from '../../../protocol/control.js';
import { destinationDowntime, hex64 } from '../../report.js';
import type { DestEvent } from '../machine.js';
import type { DestinationRun } from '../run.js';
import { crashPoint } from '../../crash-point.js';
import { acceptStorage, keepStorage } from '../../shared-storage.js';

/** Compares the session digest (memory and disks) with the one the source announced; a mismatch never resumes. */
export function checkDigest(run: DestinationRun, order: Switchover, when: string): { digest: bigint; ms: number } {
  const t = performance.now();
  const digest = run.digest();
  if (digest !== order.digest) {
    throw new MemshiftError(ErrorCode.DIGEST_MISMATCH, `session digest ${hex64(digest)} (memory and disks) differs from the source's ${hex64(order.digest)}${when}: not resuming`);
  }
  return { digest, ms: performance.now() - t };
}

/** Loads the received device state; whatever the target throws is invalid device state. */
export function loadDeviceState(run: DestinationRun): number {
  const t = performance.now();
  try {
    run.target!.loadState(run.deviceState!);
  } catch (err) {
    if (err instanceof MemshiftError) throw err;
    throw new MemshiftError(ErrorCode.DEVICE_STATE_INVALID, `the target could not load the device state: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  return performance.now() - t;
}

/**
 * `commit` steps the machine to `resuming` and says whether it got there; after it, a failed resume is
 * `resume-failed` (the guest did not start), never a plain error.
 */
export async function runSwitchover(run: DestinationRun, order: Switchover, commit: () => boolean): Promise<DestEvent> {
  // Pages apply as they arrive, while the source is still sending them (its finalPagesMs): only what
  // was applied after the final pass ended adds to the downtime.
  const applyMs = run.passApplyMs;
  keepStorage(run.target!.storage, run.session);
  const { digest, ms: digestMs } = checkDigest(run, order, '');
  if (run.urgent !== null) {
    // Post-copy was negotiated but not used: every page is here.
    run.urgent.openGate();
    await run.urgent.stop();
  }
  // Every block that arrived is on the disk before the guest may read it here or the source lets go.
  await run.flushDisks();
  const stateMs = loadDeviceState(run);
  acceptStorage(run.target!.storage, run.session);
  if (!commit()) throw new MemshiftError(ErrorCode.CONNECTION_CLOSED, `${run.channel.peer}: the switchover ended before the guest could resume: not resuming`);
  const tResume = performance.now();
  try {
    await run.target!.resume();
  } catch (err) {
    const error = err instanceof MemshiftError ? err : new MemshiftError(ErrorCode.UNEXPECTED_MESSAGE, `the target could not resume: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    return { type: 'resume-failed', error };
  }
  const resumeMs = performance.now() - tResume;
  crashPoint('destination-after-resume');
  run.channel.phase = 'completion';
  // Kept: a source that lost the link before reading it asks again over a QUERY channel.
  run.resumedAnswer = encodeResumed({ digest, pagesReceived: run.applier!.totals.pages, applyMs, stateMs, digestMs, resumeMs });
  // RESUMED goes out before the bookkeeping (the source's downtime ends when it arrives). The machine
  // steps to running when this returns, before any frame the source sends back is read. A failed send
  // is the channel's to report (it closes): the guest runs here from now on, whatever happens to it.
  run.channel.send(run.resumedAnswer).catch(() => undefined);
  run.noteResumed(tResume + resumeMs, false);
  run.resumeSample = { steps: run.target!.steps, at: tResume + resumeMs };
  run.record.digest = digest;
  run.record.destinationDowntime = destinationDowntime({ applyMs, digestMs, resumeMs: resumeMs + stateMs });
  return { type: 'resumed' };
}
