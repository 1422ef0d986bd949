// The source's driver: owns every side effect of a migration (connection, encoder pool, pausing and
// resuming the guest, timing) and feeds events to the state machine in machine.ts, which alone decides
// what comes next. Convergence is decided by the pure decideConvergence, passed in with the policy.
//
//   setup ─ connect, HELLO/HELLO_ACK, pool ─► pass 1 (every page) ─► sync ─► decide ─┬─► pass n …
//                                                                                   └─► pause ─► final pass ─►
//   DEVICE_STATE ─► SWITCHOVER(digest) ─► RESUMED ─► release guest ─► COMPLETE
//
// Cold: the guest is paused before connecting; warm: right after the handshake; both then make one
// pass as the final one. Live: pre-copy passes until a rule switches over.

import { randomBytes } from 'node:crypto';
import type net from 'node:net';
import { ErrorCode, MemshiftError, toMemshiftError } from '../../errors.js';
import { DirtyTracker } from '../../memory/dirty-tracker.js';
import { sessionDigest } from '../../memory/slab.js';
import type { MemorySource } from '../../memory/types.js';
import { EncoderPool } from '../../pipeline/pool.js';
import { Capability, ChannelRole, FrameType, Limits, SwitchoverMode, type MigrationMode } from '../../protocol/constants.js';
import { decodeHelloAck, encodeHello } from '../../protocol/handshake.js';
import { decodePostcopyDone, decodeResumed, encodeComplete, encodeDeviceState, encodeIterationEnd, encodeSwitchover } from '../../protocol/control.js';
import { Channel } from '../../transport/channel.js';
import { formatAddress, type Address } from '../../transport/tcp.js';
import { RateLimiter } from '../../transport/rate-limit.js';
import { decideConvergence, expectedDowntimeMs, type ConvergencePolicy, type Decision } from '../convergence.js';
import { Inbox } from '../inbox.js';
import { BandwidthMeter, addCounts, type IterationRecord } from '../metrics.js';
import { throttledProgress, type Progress } from '../progress.js';
import { emptyReport, hex64, type Report } from '../report.js';
import { PageSender } from '../../pipeline/page-sender.js';
import { UrgentServer, faultFeed, missingPagesFrames } from './postcopy.js';
import { PushPlanner } from '../../pipeline/push-planner.js';
import { BoardState } from '../postcopy-board.js';
import { isFinal, stepSource, type SourceState } from './machine.js';

export interface SourceOptions {
  address: Address;
  /** A connected socket to use instead of connecting to `address` (which then names the peer). */
  socket?: net.Socket;
  mode: MigrationMode;
  policy: ConvergencePolicy;
  xbzrle: boolean;
  lz4: boolean;
  encoders?: number;
  /** Cap on bytes per second sent (null: as fast as the link goes). */
  maxBandwidth: number | null;
  connectTimeoutMs: number;
  /** How long to wait for each answer of the destination (HELLO_ACK, RESUMED). */
  answerTimeoutMs: number;
  signal?: AbortSignal;
  onProgress?: (p: Progress) => void;
}

/** Runs one migration of `source`; always returns a report (its outcome says how it ended). */
export async function runSource(source: MemorySource, options: SourceOptions): Promise<Report> {
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  const report = emptyReport('source', options.mode);
  const slabs = source.regions.flatMap((r) => [...source.slabsOf(r.id)]);
  const pageSize = source.regions[0].pageSize;
  const peer = `destination ${formatAddress(options.address)}`;
  const progress = throttledProgress(options.onProgress);
  let state: SourceState = { kind: 'setup' };
  let paused = false;
  let channel: Channel | null = null;
  let pool: EncoderPool | null = null;
  let urgent: UrgentServer | null = null;
  let throttle = 0;
  let remaining = 0;
  let bandwidth = 0;
  let dirtyRate = 0;
  let predicted = 0;

  const snapshot = (phase: string, iteration: number): Progress => ({
    role: 'source', phase, iteration, remainingPages: remaining, dirtyRate, bandwidth, expectedDowntimeMs: predicted,
    bytesTransferred: report.bytesTransferred, elapsedMs: performance.now() - t0, throttlePercent: throttle,
  });
  const pause = async (): Promise<number> => {
    const t = performance.now();
    await source.pause();
    paused = true;
    return performance.now() - t;
  };
  /** The destination runs the guest: release ours for good, tell the destination, close. */
  const complete = async (ch: Channel): Promise<void> => {
    await source.release?.();
    ch.phase = 'completion';
    await ch.send(encodeComplete());
    await ch.close();
    report.outcome = 'completed';
  };
  const checkCancel = (): void => {
    if (options.signal?.aborted) throw new MemshiftError(ErrorCode.CANCELLED, `migration cancelled during ${state.kind}`);
  };

  try {
    if (options.mode === 'cold') await pause();
    checkCancel();
    const channelOptions = { maxBody: Limits.MAX_CONTROL_BODY_BYTES, peer };
    channel = options.socket !== undefined
      ? Channel.accept(options.socket, channelOptions)
      : await Channel.connect(options.address, { ...channelOptions, timeoutMs: options.connectTimeoutMs, signal: options.signal });
    const inbox = new Inbox(channel, options.signal);
    const session = new Uint8Array(randomBytes(Limits.SESSION_ID_BYTES));
    const wantsPostcopy = options.mode === 'postcopy' || options.mode === 'hybrid' || options.policy.onStall === 'postcopy';
    const ours = (options.xbzrle ? Capability.XBZRLE : 0) | (options.lz4 ? Capability.LZ4 : 0) | (wantsPostcopy ? Capability.POSTCOPY : 0);
    await channel.send(encodeHello({ session, role: ChannelRole.BULK, mode: options.mode, capabilities: ours, regions: [...source.regions] }));
    const ackFrame = await inbox.expect([FrameType.HELLO_ACK], options.answerTimeoutMs);
    const ack = decodeHelloAck(ackFrame.body, 0, ackFrame.body.length);
    if (Buffer.compare(ack.session, session) !== 0) throw new MemshiftError(ErrorCode.HANDSHAKE_REJECTED, `${peer} acknowledged another session`);
    const capabilities = ack.capabilities & ours;
    if (wantsPostcopy && ((capabilities & Capability.POSTCOPY) === 0 || ack.urgentPort === 0)) {
      throw new MemshiftError(ErrorCode.HANDSHAKE_REJECTED, `${peer} cannot receive a post-copy migration`);
    }
    if (wantsPostcopy) {
      urgent = await UrgentServer.start(slabs, source.regions, session, { host: options.address.host, port: ack.urgentPort }, 0);
    }
    report.setupTimeMs = performance.now() - t0;
    pool = new EncoderPool(slabs, options.encoders);
    const sender = new PageSender(slabs, pool, channel, {
      lz4: (capabilities & Capability.LZ4) !== 0,
      limiter: options.maxBandwidth === null ? null : new RateLimiter(options.maxBandwidth),
    });
    const tracker = new DirtyTracker(source);
    const useXbzrle = (capabilities & Capability.XBZRLE) !== 0;
    if (options.mode === 'warm' || options.mode === 'postcopy') await pause();
    state = stepSource(state, { type: 'handshake-done', start: options.mode === 'postcopy' ? 'postcopy' : paused ? 'stop-and-copy' : 'precopy' });
    remaining = tracker.startFullPass();
    const meter = new BandwidthMeter();
    const history: number[] = [];
    let lastSync = performance.now();
    let previous = { dirtyRate: 0, bandwidth: 0 };

    const sendPass = async (iteration: number): Promise<IterationRecord> => {
      channel!.phase = iteration === 1 ? 'pre-copy pass 1' : `${state.kind} pass ${iteration}`;
      const passStart = remaining;
      const tPass = performance.now();
      let sent = 0;
      let sentBytes = 0;
      const pass = await sender.sendPass(iteration, useXbzrle && iteration > 1, (r, bytes) => {
        sent += r.entries;
        sentBytes += bytes;
        report.bytesTransferred += bytes;
        remaining = Math.max(0, passStart - sent);
        // Live figure for the progress line; the decision uses the windowed meter.
        if (bandwidth === 0 || performance.now() - tPass > 100) bandwidth = (sentBytes * 1000) / Math.max(1, performance.now() - tPass);
        progress(() => snapshot(state.kind, iteration));
      });
      await channel!.send(encodeIterationEnd({ iteration, pages: pass.pages, bytes: pass.bytes }));
      report.pagesTransferred += pass.pages;
      report.pagesByEncoding = addCounts(report.pagesByEncoding, pass.counts);
      meter.add(pass.bytes, pass.ms);
      return {
        iteration, pages: pass.pages, bytes: pass.bytes, ms: pass.ms, bandwidth: meter.rate(), dirtyPages: 0, dirtyRate: 0,
        expectedDowntimeMs: 0, throttlePercent: throttle, pagesByEncoding: pass.counts,
      };
    };

    while (state.kind === 'precopy') {
      checkCancel();
      const iteration = state.iteration;
      const record = await sendPass(iteration);
      const now = performance.now();
      remaining = tracker.sync();
      const sinceSync = Math.max(1e-3, (now - lastSync) / 1000);
      lastSync = now;
      bandwidth = record.bandwidth;
      dirtyRate = remaining / sinceSync;
      // Expected cost of the next pass: measured bytes per page after pass 1 (deltas, zero pages),
      // the full page size before (pass 1 is dominated by pages that will never be dirty again).
      const bytesPerPage = iteration === 1 || record.pages === 0 ? pageSize : Math.max(64, record.bytes / record.pages);
      const remainingBytes = remaining * bytesPerPage;
      predicted = expectedDowntimeMs(remainingBytes, bandwidth);
      record.dirtyPages = remaining;
      record.dirtyRate = dirtyRate;
      record.expectedDowntimeMs = predicted;
      report.iterations.push(record);
      history.push(remaining);
      const decision: Decision = decideConvergence({
        iteration, elapsedMs: now - t0, remainingPages: remaining, remainingBytes, bandwidth,
        dirtyRate: dirtyRate * bytesPerPage, previousDirtyRate: previous.dirtyRate, previousBandwidth: previous.bandwidth,
        remainingHistory: history, throttlePercent: throttle,
      }, options.policy);
      previous = { dirtyRate: dirtyRate * bytesPerPage, bandwidth };
      if (decision.action === 'throttle' && decision.throttlePercent !== undefined) {
        throttle = decision.throttlePercent;
        source.throttle(throttle);
      }
      if (decision.action !== 'continue' && decision.action !== 'throttle') {
        report.switchoverReason = { rule: decision.rule, action: decision.action, forced: decision.forced, reason: decision.reason };
        report.converged = decision.action === 'switchover' && !decision.forced;
        report.predictedDowntimeMs = predicted;
      }
      state = stepSource(state, { type: 'iteration-done', decision });
      progress(() => snapshot(state.kind, iteration), true);
    }

    if (state.kind === 'aborted') {
      source.throttle(0);
      throttle = 0;
      const err = new MemshiftError(ErrorCode.MIGRATION_ABORTED, `migration aborted by policy: ${state.decision.reason}`);
      channel.fail(err);
      report.outcome = 'aborted';
      report.error = { code: err.code, message: err.message };
      return report;
    }
    if (state.kind === 'postcopy') {
      // ---- post-copy: downtime is the pause to RESUMED; then the destination pulls and we push ----
      const iteration = state.iteration;
      const tPause = performance.now();
      const pauseMs = paused ? 0 : await pause();
      if (options.mode === 'postcopy') {
        report.switchoverReason = { rule: 'postcopy-after', action: 'postcopy', forced: false, reason: 'post-copy migration: the guest resumes on the destination at once' };
        remaining = tracker.pending();
      } else {
        remaining = tracker.sync();
      }
      channel.phase = 'post-copy switchover';
      let missing = 0;
      for (const region of source.regions) {
        const m = missingPagesFrames(region, source.slabsOf(region.id));
        for (const f of m.frames) await channel.send(f);
        missing += m.missing;
      }
      const tState = performance.now();
      await channel.send(encodeDeviceState(source.saveState()));
      const deviceStateMs = performance.now() - tState;
      report.guestSteps = source.steps ?? 0;
      await channel.send(encodeSwitchover({
        mode: SwitchoverMode.POSTCOPY, iterations: iteration, digest: sessionDigest(source), guestSteps: report.guestSteps,
        pagesSent: report.pagesTransferred, missingPages: missing,
      }));
      const resumedFrame = await inbox.expect([FrameType.RESUMED], options.answerTimeoutMs);
      const resumed = decodeResumed(resumedFrame.body, 0, resumedFrame.body.length);
      report.downtimeMs = performance.now() - tPause;
      const accounted = pauseMs + deviceStateMs + resumed.digestMs + resumed.resumeMs;
      report.downtimeBreakdown = {
        pauseMs, finalPagesMs: 0, finalPages: 0, deviceStateMs, destinationApplyMs: resumed.applyMs,
        digestCheckMs: resumed.digestMs, resumeMs: resumed.resumeMs, otherMs: Math.max(0, report.downtimeMs - accounted),
      };
      const tPost = performance.now();
      channel.phase = 'post-copy';
      const planner = new PushPlanner(source.regions[0].pageCount);
      pool.yieldToFaults();
      const u = urgent!;
      let pushed = 0;
      const push = await sender.pushWindows(source.regions[0].id, faultFeed(u, planner), iteration, (r, bytes) => {
        report.bytesTransferred += bytes;
        pushed += r.entries;
        remaining = Math.max(0, remaining - r.entries);
        progress(() => ({ ...snapshot('post-copy', iteration), pagesPushed: pushed, pagesRequested: u.requests }));
      }, () => u.linkLost);
      if (u.linkLost) throw new MemshiftError(ErrorCode.CONNECTION_CLOSED, `${peer}: urgent channel lost during post-copy`, { peer, phase: 'post-copy' });
      report.pagesTransferred += push.pages;
      report.pagesByEncoding = addCounts(report.pagesByEncoding, push.counts);
      report.iterations.push({
        iteration, pages: push.pages, bytes: push.bytes, ms: push.ms, bandwidth: push.ms > 0 ? (push.bytes * 1000) / push.ms : 0,
        dirtyPages: 0, dirtyRate: 0, expectedDowntimeMs: 0, throttlePercent: throttle, pagesByEncoding: push.counts,
      });
      const doneFrame = await inbox.expect([FrameType.POSTCOPY_DONE], options.answerTimeoutMs);
      const done = decodePostcopyDone(doneFrame.body, 0, doneFrame.body.length);
      const digest = sessionDigest(source);
      report.digest = hex64(digest);
      report.postcopy = {
        faults: done.faults, faultLatencyUs: { p50: done.faultP50Us, p99: done.faultP99Us, max: done.faultMaxUs },
        pagesRequested: u.requests, pagesPushed: push.pages, postcopyTimeMs: done.postcopyMs || performance.now() - tPost,
      };
      if (done.digest !== digest) {
        throw new MemshiftError(ErrorCode.DIGEST_MISMATCH, `destination holds digest ${hex64(done.digest)} after post-copy, source sent ${hex64(digest)}`);
      }
      state = stepSource(state, { type: 'postcopy-done' });
      await u.stop();
      await complete(channel);
      return report;
    }
    if (state.kind !== 'stop-and-copy') throw new MemshiftError(ErrorCode.UNEXPECTED_MESSAGE, `source reached ${state.kind} before stop-and-copy`);

    // ---- stop-and-copy: downtime starts here ----
    const iteration = state.iteration;
    const tPause = performance.now();
    const pauseMs = paused ? 0 : await pause();
    if (report.switchoverReason === null) {
      report.switchoverReason = { rule: 'downtime-limit', action: 'switchover', forced: false, reason: `${options.mode} migration: guest paused for a single pass` };
      report.converged = true;
    }
    const isSinglePass = iteration === 1;
    if (!isSinglePass) remaining = tracker.sync();
    if (isSinglePass) report.predictedDowntimeMs = null;
    const tFinal = performance.now();
    const finalRecord = await sendPass(iteration);
    report.iterations.push({ ...finalRecord, dirtyPages: 0, dirtyRate: 0, expectedDowntimeMs: 0 });
    const finalPagesMs = performance.now() - tFinal;
    const tState = performance.now();
    const deviceState = source.saveState();
    channel.phase = 'switchover';
    await channel.send(encodeDeviceState(deviceState));
    const deviceStateMs = performance.now() - tState;
    const digest = sessionDigest(source);
    report.guestSteps = source.steps ?? 0;
    report.digest = hex64(digest);
    await channel.send(encodeSwitchover({
      mode: SwitchoverMode.STOP_AND_COPY, iterations: iteration, digest, guestSteps: report.guestSteps,
      pagesSent: report.pagesTransferred, missingPages: 0,
    }));
    state = stepSource(state, { type: 'switchover-sent' });
    const resumedFrame = await inbox.expect([FrameType.RESUMED], options.answerTimeoutMs);
    const downtimeMs = performance.now() - (options.mode === 'cold' ? t0 : tPause);
    const resumed = decodeResumed(resumedFrame.body, 0, resumedFrame.body.length);
    state = stepSource(state, { type: 'resumed' });
    report.downtimeMs = downtimeMs;
    const accounted = pauseMs + finalPagesMs + deviceStateMs + resumed.applyMs + resumed.digestMs + resumed.resumeMs;
    report.downtimeBreakdown = {
      pauseMs, finalPagesMs, finalPages: finalRecord.pages, deviceStateMs, destinationApplyMs: resumed.applyMs,
      digestCheckMs: resumed.digestMs, resumeMs: resumed.resumeMs, otherMs: Math.max(0, downtimeMs - accounted),
    };
    if (resumed.digest !== digest) {
      throw new MemshiftError(ErrorCode.DIGEST_MISMATCH, `destination resumed with digest ${hex64(resumed.digest)}, source sent ${hex64(digest)}`);
    }
    await complete(channel);
    return report;
  } catch (err) {
    const e = toMemshiftError(err, ErrorCode.CONNECTION_FAILED, 'source');
    // An ERROR frame from the destination is a definite refusal (it never resumed); anything else
    // after SWITCHOVER leaves the switchover in doubt.
    const refused = e.code === ErrorCode.PEER_ERROR && e.details.peerCode !== ErrorCode.POSTCOPY_PAUSED;
    if (!isFinal(state)) state = stepSource(state, refused ? { type: 'refused', error: e } : { type: 'failed', error: e });
    report.error = { code: e.code, message: e.message };
    report.outcome = state.kind === 'postcopy-paused' ? 'paused' : e.code === ErrorCode.CANCELLED ? 'cancelled' : state.kind === 'in-doubt' ? 'in-doubt' : 'failed';
    if (state.kind === 'postcopy-paused') {
      // The only complete copy is split across both hosts: keep every page and the guest paused.
      report.error = { code: ErrorCode.POSTCOPY_PAUSED, message: `post-copy paused: ${e.message}; every page is kept for recovery` };
    }
    if (state.kind === 'failed') {
      // Nothing reached the point where the destination could run the guest: it keeps running here.
      source.throttle(0);
      throttle = 0;
      if (paused) {
        await source.resume().catch(() => undefined);
        paused = false;
      }
    }
    if (channel !== null && !channel.isClosed) channel.fail(e);
    return report;
  } finally {
    await urgent?.stop(BoardState.LINK_LOST).catch(() => undefined);
    await pool?.close().catch(() => undefined);
    report.totalTimeMs = performance.now() - t0;
    const cpu = process.cpuUsage(cpu0);
    report.cpuMs = { user: cpu.user / 1000, system: cpu.system / 1000 };
    report.throttlePercent = throttle;
    if (report.guestSteps === 0) report.guestSteps = source.steps ?? 0;
    report.throughputGBps = report.totalTimeMs > 0 ? report.bytesTransferred / report.totalTimeMs / 1e6 : 0;
    progress(() => snapshot(report.outcome, report.iterations.length), true);
  }
}
