// Post-copy on the source, in the machine's two states.
//
// Switching (the guest is paused; until SWITCHOVER is out a failure resumes it here): the pages not
// sent since they were last dirtied are announced as missing, then device state and SWITCHOVER go,
// and RESUMED is awaited. Downtime is the pause to RESUMED.
//
// Running (the destination runs the guest): the fault thread answers what the guest touches, while
// this pushes every remaining page once, pivoting to recent faults (push-planner.ts). Nothing is
// released until POSTCOPY_DONE confirms, with the digest of what the destination holds, that every
// page is present. A lost urgent link while pages are still being pushed is an event that ends the
// push and the phase.
//
// Disk blocks (POSTCOPY_BLOCKS) follow the pages: still dirty at the pause, they are named missing;
// the guest's faults on them reach this thread through the fault ring and are answered here, on the
// bulk channel; the rest go after the pages' push.
//
//   pause ─► MISSING_PAGES* (pages, then blocks) ─► DEVICE_STATE ─► SWITCHOVER(post-copy) ─► RESUMED
//         ─► push (windows around faults) ─► blocks ║ urgent answers ─► POSTCOPY_DONE(digest) ─► release

import { ErrorCode, MemshiftError } from '../../../errors.js';
import { Capability, DISK_REGION_BASE, FrameType, SwitchoverMode } from '../../../protocol/constants.js';
import { decodePostcopyDone } from '../../../protocol/control.js';
import { unsentBlocksFrames, unsentPagesFrames } from '../../missing-pages.js';
import type { BlockSender } from '../block-sender.js';
import { estimateTransfer } from '../../eta.js';
import { addCounts } from '../../metrics.js';
import { hex64 } from '../../report.js';
import type { SourceEvent, SourceState } from '../machine.js';
import type { SourceRun } from '../run.js';
import type { PageSender } from '../../../pipeline/page-sender.js';
import type { PassResult } from '../../../pipeline/batch-writer.js';
import { sendBlocks, startFullPass } from './pass.js';
import { awaitResumed, sendSwitchover } from './switchover.js';

/**
 * The urgent channel closed during the push. Once every page has arrived the destination closes it
 * itself, and on a loaded host that close can overtake the push's own end: when the push then ends
 * with no page left to send, the close was the normal end and POSTCOPY_DONE follows on the bulk link.
 * Otherwise the link was lost (`lost`).
 */
async function pushedEverything(pushing: Promise<PassResult>, sender: PageSender, blocks: BlockSender | null, lost: unknown): Promise<PassResult> {
  const push = await pushing.catch(() => null);
  if (push === null || sender.pending() > 0 || blocks?.pending() === true) throw lost;
  return push;
}

/** The disks' sender when the destination faults their blocks (POSTCOPY_BLOCKS), else null. */
function faultedBlocks(run: SourceRun): BlockSender | null {
  return (run.established.capabilities & Capability.POSTCOPY_BLOCKS) !== 0 ? run.established.blocks : null;
}

export async function runPostcopySwitching(run: SourceRun, state: Extract<SourceState, { kind: 'postcopy-switching' }>): Promise<SourceEvent> {
  if (state.sent !== null) return awaitResumed(run, state.sent, false);
  const { channel } = run.established;
  run.checkCancel('post-copy switchover');
  // Post-copy from the start sets up its one full pass (every page missing) while the guest still
  // runs, where each write is in the dirty log: that costs ~0.3 ms per GiB here, which the pause
  // would otherwise wait for, and the pause then adds only what was written since. A guest with a
  // file-backed slab learns of writes only by scanning: its full pass is set up paused, as before.
  const fullPass = state.iteration === 1;
  const earlyFullPass = fullPass && run.slabs.every((s) => s.file === null);
  if (earlyFullPass) startFullPass(run);
  const pausedAt = performance.now();
  const pauseMs = await run.pause();
  if (fullPass) run.decide({ rule: 'mode', action: 'postcopy', forced: false, reason: 'post-copy migration: the guest resumes on the destination at once' });
  if (earlyFullPass) run.live.remaining = run.tracker.syncPaused();
  else if (fullPass) startFullPass(run);
  else run.live.remaining = await run.syncDirty();
  channel.phase = 'post-copy switchover';
  // A destination that cannot fault disk blocks gets what its disks lack now, paused; otherwise the
  // dirty blocks are named missing with the pages, and go once the guest runs there.
  const blocks = faultedBlocks(run);
  if (blocks === null) await sendBlocks(run);
  let missing = 0;
  for (const region of run.source.regions) {
    const m = unsentPagesFrames(region, run.source.slabsOf(region.id));
    for (const f of m.frames) await channel.send(f);
    missing += m.pages;
  }
  for (const [disk, device] of (blocks?.devices ?? []).entries()) {
    const m = unsentBlocksFrames(disk, device.dirty, device.blocks);
    for (const f of m.frames) await channel.send(f);
    missing += m.blocks;
  }
  return sendSwitchover(run, { mode: SwitchoverMode.POSTCOPY, iteration: state.iteration, pausedAt, pauseMs, finalPagesMs: 0, finalPages: 0, missingPages: missing });
}

export async function runPostcopyRunning(run: SourceRun, state: Extract<SourceState, { kind: 'postcopy-running' }>): Promise<SourceEvent> {
  const { channel, inbox, sender, urgent, pool } = run.established;
  if (urgent === null) throw new MemshiftError(ErrorCode.UNEXPECTED_MESSAGE, 'post-copy running without an urgent channel');
  const { iteration } = state;
  const tPost = performance.now();
  channel.phase = 'post-copy';
  pool.yieldToFaults();
  let pushed = 0;
  let pushedBytes = 0;
  const lost = urgent.lost.then((e: unknown): never => { throw e; });
  const blocks = faultedBlocks(run);
  // The guest's faults on disk blocks are answered here, as they come, ahead of the push.
  if (blocks !== null) urgent.onBlockFault = (regionId, block) => blocks.answer(regionId - DISK_REGION_BASE, block, channel);
  const pushingPages = sender.push({
    iteration,
    faults: () => urgent.newFaults(),
    stopped: () => urgent.isLost || channel.isClosed,
    onBatch: (r, bytes) => {
      run.record.bytesTransferred += bytes;
      pushed += r.entries;
      pushedBytes += bytes;
      run.live.remaining = Math.max(0, run.live.remaining - r.entries);
      // ETA of the push: what remains at the bytes per page and the rate measured so far.
      const ms = performance.now() - tPost;
      if (ms >= 50) run.setEta(estimateTransfer(run.live.remaining * (pushedBytes / pushed), (pushedBytes * 1000) / ms, 0).ms);
      run.progress(() => ({ ...run.snapshot('postcopy-running', iteration), pagesPushed: pushed, pagesRequested: urgent.requests }));
    },
  });
  // Then the disks' blocks still to send, the guest's faults still answered first.
  const pushing = blocks === null ? pushingPages : pushingPages.then(async (pages) => {
    const sent = await blocks.sendDirty(channel, { keepZeros: true, zeroRuns: (run.established.capabilities & Capability.ZERO_BLOCKS) !== 0, limiter: run.limiter });
    await blocks.answered();
    run.record.bytesTransferred += sent.bytes + blocks.answeredBytes;
    return pages;
  });
  // A lost urgent link ends the phase at once; the push notices (stopped) and a recovery waits for it.
  run.pushing = pushing.then(() => undefined, () => undefined);
  const push = await Promise.race([pushing, blocks?.refused ?? pushing, lost.catch((e: unknown) => pushedEverything(pushing, sender, blocks, e))]);
  run.record.pagesTransferred += push.pages;
  run.record.pagesByEncoding = addCounts(run.record.pagesByEncoding, push.counts);
  run.recordPass({
    iteration, pages: push.pages, bytes: push.bytes, ms: push.ms, bandwidthBytesPerSec: push.ms > 0 ? (push.bytes * 1000) / push.ms : 0,
    dirtyPages: 0, dirtyPagesPerSec: 0, expectedDowntimeMs: 0, throttlePercent: run.throttlePercent, pagesByEncoding: push.counts,
    // Every page is pushed: nothing is left but POSTCOPY_DONE. The guest runs on the destination (its
    // report's afterResume), so this side has no step rate for the push.
    endedAtMs: run.setEta(0) - run.record.startedAt, etaMs: 0, guestStepsPerSec: null,
    compression: { lz4: run.compression.lz4, reason: run.compression.reason, xbzrle: false, xbzrleReason: run.compression.xbzrleReason },
  });
  // Every page is out: the urgent channel has no more work, and the destination may close it first.
  const doneFrame = await inbox.expect([FrameType.POSTCOPY_DONE], run.options.answerTimeoutMs);
  const done = decodePostcopyDone(doneFrame.body, 0, doneFrame.body.length);
  const doneAt = performance.now();
  const digest = run.digest();
  run.record.digest = digest;
  run.record.postcopy = {
    faults: done.faults, faultLatencyUs: { p50: done.faultP50Us, p99: done.faultP99Us, max: done.faultMaxUs },
    pagesRequested: urgent.requests, pagesPushed: push.pages, postcopyTimeMs: done.postcopyMs || performance.now() - tPost,
  };
  if (done.digest !== digest) {
    throw new MemshiftError(ErrorCode.DIGEST_MISMATCH, `destination holds digest ${hex64(done.digest)} after post-copy, source sent ${hex64(digest)}`);
  }
  run.record.completedAt = doneAt;
  await urgent.stop();
  return { type: 'postcopy-done' };
}
