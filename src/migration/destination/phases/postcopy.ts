// Post-copy on the destination, in the machine's two states.
//
// Switching: every page not announced missing is here (digest check over them), so the guest may
// start: count arrivals from the announced total, wait for the source's urgent connection, load state,
// resume with the page gate armed, and say RESUMED. Confirming (every missing page arrived): open the
// gate, report the fault figures, and send POSTCOPY_DONE with the digest of the whole memory.
//
//   SWITCHOVER(post-copy) ─► digest ─► begin(missing) ─► urgent connected ─► load ─► [lease] ─► resume ─► RESUMED
//   … all-present ─► open gate ─► POSTCOPY_DONE(digest, fault latencies) ─► (COMPLETE)

import { ErrorCode, MemshiftError } from '../../../errors.js';
import { encodePostcopyDone, encodeResumed, type Switchover } from '../../../protocol/control.js';
import { destinationDowntime, type PostcopyStats } from '../../report.js';
import type { DestEvent } from '../machine.js';
import type { DestinationRun } from '../run.js';
import { crashPoint } from '../../crash-point.js';
import { acceptStorage, keepStorage } from '../../shared-storage.js';
import { checkDigest, loadDeviceState } from './switchover.js';

/** How long the source may take to connect the urgent channel once asked to switch over. */
const URGENT_CONNECT_TIMEOUT_MS = 10_000;

export async function runPostcopySwitchover(run: DestinationRun, order: Switchover): Promise<DestEvent> {
  const urgent = run.urgent!;
  // The wait for the urgent channel may outlast the lease's term: the hand-over is kept meanwhile.
  keepStorage(run.target!.storage, run.session);
  const { digest, ms: digestMs } = checkDigest(run, order, ' before post-copy');
  urgent.begin(order.missingPages);
  await withTimeout(urgent.connected, URGENT_CONNECT_TIMEOUT_MS, () => new MemshiftError(ErrorCode.CONNECTION_FAILED, 'the source did not open the urgent channel'));
  if (urgent.complete) urgent.openGate();
  // Every block that arrived is on the disk before the guest may read it here or the source lets go.
  await run.flushDisks();
  const stateMs = loadDeviceState(run);
  acceptStorage(run.target!.storage, run.session);
  run.resumeCommitted = true;
  const tResume = performance.now();
  await run.target!.resume();
  run.resumedAt = performance.now();
  crashPoint('destination-after-resume');
  run.noteResumed(run.resumedAt, true);
  const resumeMs = run.resumedAt - tResume;
  run.resumeSample = { steps: run.target!.steps, at: run.resumedAt };
  run.record.destinationDowntime = destinationDowntime({ applyMs: 0, digestMs, resumeMs: resumeMs + stateMs });
  run.channel.phase = 'post-copy';
  // Out at once, as after a stop-and-copy (switchover.ts): the source's downtime ends when it arrives.
  run.channel.send(encodeResumed({ digest, pagesReceived: run.applier!.totals.pages, applyMs: 0, stateMs, digestMs, resumeMs })).catch(() => undefined);
  // A notice: from here the guest depends on both hosts until every page has arrived.
  const blocks = urgent.stats().blocksMissing;
  run.log(`guest resumed in post-copy with ${order.missingPages - blocks} pages${blocks > 0 ? ` and ${blocks} disk blocks` : ''} still on the source`, 'notice');
  return { type: 'resumed' };
}

/** Every page is here: let the vCPU run unchecked and tell the source, with the digest of the whole memory. */
export async function confirmPostcopy(run: DestinationRun): Promise<DestEvent | null> {
  const urgent = run.urgent!;
  urgent.openGate();
  // Blocks that arrived after the resume are on the disk before the source may let its copy go.
  await run.flushDisks();
  const stats = postcopyStats(run);
  const final = run.digest();
  run.record.postcopy = stats;
  run.record.digest = final;
  await run.channel.send(encodePostcopyDone({
    digest: final, pagesReceived: run.applier!.totals.pages, faults: stats.faults,
    faultP50Us: stats.faultLatencyUs.p50, faultP99Us: stats.faultLatencyUs.p99, faultMaxUs: stats.faultLatencyUs.max, postcopyMs: stats.postcopyTimeMs,
  }));
  // The urgent channel stays up until the session ends: the source may still be finishing its push.
  return null;
}

/** The post-copy figures so far (the guest resumed at `run.resumedAt`). */
export function postcopyStats(run: DestinationRun): PostcopyStats {
  const urgent = run.urgent!;
  const s = urgent.stats();
  return {
    faults: s.faults, faultLatencyUs: urgent.latencyUs(), pagesRequested: s.requested, pagesPushed: s.bulk,
    postcopyTimeMs: performance.now() - run.resumedAt, pagesAnswered: s.urgent, duplicates: s.duplicates,
    pushedBeforeFirstAnswer: s.bulkAtFirstAnswer,
    ...(run.disks !== null && s.blocksMissing > 0 ? { blocksMissing: s.blocksMissing, blockFaults: s.blockFaults } : {}),
  };
}

async function withTimeout<T>(p: Promise<T>, ms: number, error: () => MemshiftError): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => { timer = setTimeout(() => reject(error()), ms); })]);
  } finally {
    clearTimeout(timer);
  }
}
