// One pass over the pages marked in the snapshots, followed by ITERATION_END: shared by pre-copy and
// the stop-and-copy pass. Accounts bytes, pages and encodings into the run's record as batches go out,
// and feeds the bandwidth window the convergence policy reads.

import { encodeIterationEnd } from '../../../protocol/control.js';
import { Capability } from '../../../protocol/constants.js';
import { addCounts, type IterationRecord } from '../../metrics.js';
import { stepRate } from '../../report.js';
import { resendFits } from '../../compression.js';
import type { CacheTouch, SourceRun } from '../run.js';
import { forgetSentPages } from '../../../memory/slab.js';
import { touchOnThread } from '../../../memory/pretouch.js';
import type { CacheUse } from '../../../pipeline/messages.js';

/**
 * Starts the first pass: collects an external dirty log (so an integrator's mirror is current), then
 * marks every page (or, when both ends agreed that unwritten pages are zero, every page ever written).
 * Returns the pages to send.
 */
export function startFullPass(run: SourceRun): number {
  // A session's first pass: its destination holds nothing of what earlier sessions sent.
  for (const slab of run.slabs) forgetSentPages(slab);
  const pages = run.tracker.startFullPass((run.established.capabilities & Capability.UNWRITTEN_ZERO) !== 0);
  run.lastSync = performance.now();
  run.live.remaining = pages;
  return pages;
}

/** Sends the disk blocks written since the last call (none without moving disks); counted into the run's bytes. */
export async function sendBlocks(run: SourceRun, stopped?: () => boolean): Promise<{ blocks: number; bytes: number; ms: number }> {
  const blocks = run.established.blocks;
  if (blocks === null) return { blocks: 0, bytes: 0, ms: 0 };
  const t = performance.now();
  const sent = await blocks.sendDirty(run.established.channel, { limiter: run.limiter, stopped });
  run.record.bytesTransferred += sent.bytes;
  return { blocks: sent.blocks, bytes: sent.bytes, ms: performance.now() - t };
}

/**
 * The first pass that stores pages in the XBZRLE caches writes them for the first time: on hosts whose
 * first write to a page costs ~10 µs, ~200 ms for 64 MiB (a 7k-page pass 2 of a hot-set guest took
 * 110–190 ms instead of ~15). So a worker touches them (a write of nothing new: safe beside the
 * encoders' stores) as soon as a pre-copy pass sees a sixteenth of the caches' slots dirtied again while
 * deltas are expected on what the link measured so far: the next pass will resend that many pages and
 * store them. Not before the link is measured (--xbzrle auto): beside a loopback hot-set guest's pass 1
 * the touch took the CPU the pass measures the link with, and read as slow, it turned deltas on, which
 * did not pay there (compression.ts). At the latest, beside the first pass that stores pages. A pass
 * that stores pages waits for a touch still under way (beside it, the touch took the pass's CPU); the
 * touch is stopped when deltas go off (they never come back) and at the final pass, which never writes
 * the caches (read-only) and must not wait inside the downtime. Not at the handshake: a guest that
 * dirties nothing resends nothing, and the touch took an idle guest's pass 1 a third of its rate on
 * two cores.
 */
function touchCaches(run: SourceRun): CacheTouch {
  const caches = run.slabs.filter((s) => s.layout.cacheSlots > 0);
  const stop = new AbortController();
  // A touch that fails only leaves the cost of the first writes where it was.
  const done = touchOnThread(caches.map((s) => ({ memory: s.memory, ram: s.layout.cache, pageSize: s.layout.pageSize, from: 0, to: s.layout.cacheSlots })), stop.signal)
    .catch(() => undefined);
  return { done, stop: () => stop.abort() };
}

/** Gets the caches' touch where the pass about to start needs it (above): waited for, stopped, or started. */
async function prepareCaches(run: SourceRun, cache: CacheUse, phase: 'precopy' | 'stop-and-copy'): Promise<void> {
  if (run.cacheTouch !== null && (phase === 'stop-and-copy' || !run.compression.xbzrle)) run.cacheTouch.stop();
  else if (cache === 'read-write' && run.cacheTouch !== null) await run.cacheTouch.done;
  else if (cache === 'read-write') run.cacheTouch = touchCaches(run);
}

/**
 * Sends the snapshot's pages as pass `iteration`; the record's dirty figures and ETA are filled by the
 * caller. The guest's step rate is taken over the pass itself (steps at its start and end). A pre-copy
 * pass stops starting batches at `deadline` (performance.now(); the time cap): what it did not send
 * stays in the snapshot for the pass that follows. A cancel stops it the same way, then fails it.
 */
export async function sendPass(run: SourceRun, iteration: number, label: string, phase: 'precopy' | 'stop-and-copy', deadline = Infinity): Promise<IterationRecord> {
  const { channel, sender, capabilities, pool } = run.established;
  const c = run.compression;
  const cacheSlots = run.slabs.reduce((n, s) => n + s.layout.cacheSlots, 0);
  const useXbzrle = c.passStarting((capabilities & Capability.XBZRLE) !== 0 && iteration > 1, { pages: run.live.remaining, cacheSlots });
  const cache: CacheUse = !useXbzrle ? 'off' : phase === 'stop-and-copy' ? 'read-only' : 'read-write';
  await prepareCaches(run, cache, phase);
  channel.phase = `${label} pass ${iteration}`;
  const passStart = run.live.remaining;
  const tPass = performance.now();
  // The link is measured over the pass less the time this thread spent encoding (inline encoders).
  const encodingAtStart = pool.encodingMs;
  const encodingMs = (): number => pool.encodingMs - encodingAtStart;
  const stepsAtStart = run.source.steps;
  let sent = 0;
  let sentBytes = 0;
  // Bytes of the pages sent with content (zero pages cost the link nothing): what LZ4 is judged by.
  let contentBytes = 0;
  // A cancel ends the pass at the next batch rather than after the whole of guest memory.
  const signal = run.options.signal;
  const stop = (): boolean => performance.now() >= deadline || signal?.aborted === true;
  // The dirtying curve (dirtying.ts) is sampled between batches of a pre-copy pass: the dirty log
  // since the sync that started it. A log brought in only at a sync (an integrator's, hash-scan): not sampled.
  const sampleDirtying = phase === 'precopy' && !run.dirtyKnownAtSyncOnly;
  if (sampleDirtying) run.dirtying.passStarting(run.throttlePercent);
  // The caches are touched once a sixteenth of their slots is dirty again (a quarter was reached only
  // after ~190 ms of a 200k pages/s writer whose hot set is 4096 pages), and the touch is stopped once
  // more pages are dirty than they hold: under auto the next pass will not use them (compression.ts).
  const watchCaches = (capabilities & Capability.XBZRLE) !== 0 && sampleDirtying;
  // The disks' share of the pass goes beside its pages (what was written since their last pass; the
  // guest paused: the rest), so that the destination's device writes while pages arrive.
  let pagesFailed = false;
  const sendingBlocks = sendBlocks(run, () => pagesFailed);
  sendingBlocks.catch(() => undefined);
  const pass = await sender.sendPass(iteration, cache, (r, bytes) => {
    const dirtied = sampleDirtying ? run.tracker.peekDirty() : 0;
    if (sampleDirtying) run.dirtying.sample(performance.now() - run.lastSync, dirtied);
    sent += r.entries;
    sentBytes += bytes;
    const content = r.entries > 0 ? (r.pageBytes * (r.raw + r.lz4 + r.xbzrle)) / r.entries : 0;
    contentBytes += content;
    run.record.bytesTransferred += bytes;
    run.live.remaining = Math.max(0, passStart - sent);
    // Live figure for the progress line; the decision uses the windowed meter.
    const ms = performance.now() - tPass;
    if (run.live.bandwidth === 0 || ms > 100) run.live.bandwidth = (sentBytes * 1000) / Math.max(1, ms);
    c.sent({ wireBytes: bytes, pageBytes: content, lz4: r.lz4Tried }, ms, encodingMs());
    if (watchCaches && c.xbzrle) {
      const fits = resendFits({ pages: dirtied, cacheSlots });
      if (run.cacheTouch === null && dirtied >= cacheSlots / 16 && fits && c.deltasExpected()) run.cacheTouch = touchCaches(run);
      else if (run.cacheTouch !== null && !fits && c.deltas.mode === 'auto') run.cacheTouch.stop();
    }
    run.progress(() => run.snapshot(phase, iteration));
  }, stop).catch(async (e: unknown) => {
    // The blocks' half stops before its next run: a recovery must not mark what is left to send again
    // while that half still takes marks and records hashes.
    pagesFailed = true;
    await sendingBlocks.catch(() => undefined);
    throw e;
  });
  c.passEnded(pass.bytes, contentBytes, pass.ms, encodingMs());
  run.checkCancel(channel.phase);
  const disks = await sendingBlocks;
  const ended = channel.send(encodeIterationEnd({ iteration, pages: pass.pages, bytes: pass.bytes }));
  // The final pass does not wait for the socket to take its end: SWITCHOVER follows on the same
  // ordered channel, and its send fails if this one did (each wait is an event-loop turn of downtime).
  if (phase === 'precopy') await ended;
  else ended.catch(() => undefined);
  run.record.pagesTransferred += pass.pages;
  run.record.pagesByEncoding = addCounts(run.record.pagesByEncoding, pass.counts);
  run.meter.add(pass.bytes + disks.bytes, Math.max(pass.ms, disks.ms));
  const now = performance.now();
  return {
    iteration, pages: pass.pages, bytes: pass.bytes, ms: pass.ms, bandwidthBytesPerSec: run.meter.rate(), dirtyPages: 0, dirtyPagesPerSec: 0,
    expectedDowntimeMs: 0, throttlePercent: run.throttlePercent, pagesByEncoding: pass.counts,
    endedAtMs: now - run.record.startedAt, etaMs: null, guestStepsPerSec: stepRate(stepsAtStart, tPass, run.source.steps, now),
    compression: { lz4: c.lz4, reason: c.reason, xbzrle: useXbzrle, xbzrleReason: c.xbzrleReason },
    ...(run.established.blocks !== null ? { blocks: { sent: disks.blocks, bytes: disks.bytes, ms: disks.ms, dirty: 0 } } : {}),
  };
}
