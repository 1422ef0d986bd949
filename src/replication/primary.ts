// The primary of a replicated guest (Remus, NSDI 2008): the guest runs here and a standby holds a copy
// no older than the last epoch. After a base copy read while the guest runs, every epoch
//
//   pause ─► dirty pages into staging, vCPU state, the epoch's outputs ─► resume ─► EPOCH_PAGES* + EPOCH_END
//        ─► (standby applies it whole) ─► EPOCH_ACK(e) ─► the outputs of every epoch ≤ e are released
//
// The guest runs again as soon as its pages are staged, so an epoch costs it the pause, not the
// transfer. Output commit: what the guest made visible during an epoch leaves only once the standby
// holds that epoch, so anything a client saw survives a failover. A primary that loses its standby
// (link closed, or nothing heard for `standbyTimeoutMs`) stops its guest with MS_ERR_STANDBY_LOST:
// the standby may be taking over, and outputs it could never commit must not leave anyway.

import { randomBytes } from 'node:crypto';
import { ErrorCode, MemshiftError, toMemshiftError } from '../errors.js';
import { DirtyTracker } from '../memory/dirty-tracker.js';
import type { MemorySource } from '../memory/types.js';
import { percentile } from '../migration/report.js';
import { ChannelRole, FrameType, Limits } from '../protocol/constants.js';
import { decodeError, peerError } from '../protocol/control.js';
import { frameTypeName } from '../protocol/frame.js';
import type { Frame } from '../protocol/frame-reader.js';
import { decodeHelloAck, encodeHello } from '../protocol/handshake.js';
import { decodeEmpty, decodeEpochAck, encodeEpochEnd, encodeEpochPagesHead, encodeGoodbye, encodeHeartbeat, maxPagesPerEpochFrame } from '../protocol/replication.js';
import { Channel } from '../transport/channel.js';
import type { LinkSecurity } from '../transport/security.js';
import { formatAddress, type Address } from '../transport/tcp.js';
import { StagedPages } from './staged-pages.js';
import { StagedBlocks } from './staged-blocks.js';
import { SilenceClock } from './silence.js';
import { touchOnThread } from '../memory/pretouch.js';
import { encodeDisks } from '../protocol/blocks.js';

export interface ReplicateOptions<O> {
  security: LinkSecurity;
  /** Milliseconds between epoch pauses (Remus: 25 ms for 40 checkpoints a second). */
  epochMs: number;
  /** Replicate this long, then end on purpose (last epoch, GOODBYE; the guest stays paused). Null: until `signal`. */
  durationMs: number | null;
  /** Nothing heard from the standby for this long: it is lost (default 1000 ms). */
  standbyTimeoutMs?: number;
  /** Most bytes staged per epoch; a larger epoch is sent while the guest stays paused (default: the guest, at most 1 GiB). */
  stagingBytes?: number;
  /**
   * Pages kept as last sent, so that a page written again goes as an XOR delta against that version
   * (default: the guest, at most 256 MiB; 0: every page raw).
   */
  cacheBytes?: number;
  connectTimeoutMs?: number;
  /** Ends the replication like the duration does. */
  signal?: AbortSignal;
  /**
   * The guest's externally visible outputs made since the last call (called paused, once per epoch):
   * whatever the host holds back until the standby has the state that made it.
   */
  takeOutputs?: () => O[];
  /** Outputs whose epoch the standby now holds: they may leave. */
  release?: (outputs: O[]) => void;
  onEpoch?: (e: EpochRecord) => void;
}

export interface EpochRecord {
  epoch: number;
  /** When the epoch's pause began, in ms since replication started. */
  pausedAtMs: number;
  pages: number;
  /** Bytes of page payload sent (deltas and raw pages). */
  bytes: number;
  /** Pages sent as deltas. */
  deltas: number;
  /** Disk blocks (local disks). */
  blocks: number;
  /** The guest paused: from the pause request to running again. */
  pausedMs: number;
  /** From the pause to the standby's acknowledgement (null until it came). */
  commitMs: number | null;
  steps: number;
  outputs: number;
}

export interface PrimaryReport {
  role: 'primary';
  outcome: 'ended' | 'failed';
  standby: string;
  epochMs: number;
  /** Pages and milliseconds of the base copy (read while the guest ran). */
  basePages: number;
  baseMs: number;
  epochs: number;
  epochsCommitted: number;
  /** Epochs over the time from the base's end to the end. */
  epochsPerSecond: number;
  /** Epochs per second over the second half of the epochs: the rate once the first, larger ones are done. */
  sustainedEpochsPerSecond: number;
  pausedMs: { p50: number; p99: number; max: number; total: number };
  commitMs: { p50: number; p99: number; max: number };
  pagesPerEpoch: { p50: number; max: number };
  /** Page payload bytes per epoch (after deltas). */
  bytesPerEpoch: { p50: number; max: number };
  /** Share of the epochs' pages that went as deltas. */
  deltaShare: number;
  bytesSent: number;
  guestSteps: number;
  /** Guest steps per second from the end of the base to the end (what replication leaves the guest). */
  guestStepRate: number;
  outputsReleased: number;
  /** Outputs made and never released (their epoch was not committed). */
  outputsHeld: number;
  durationMs: number;
  error: { code: string; message: string } | null;
}

const HEARTBEAT_MS = 50;
const BASE_CHUNK_BYTES = 16 * 2 ** 20;
/** Passes of the base at most: the first of every page, then of the pages written meanwhile. */
const MAX_BASE_PASSES = 5;

/** Epochs per second from the start of the middle epoch to the start of the last (0 with fewer than 4). */
function sustainedRate(starts: readonly number[]): number {
  if (starts.length < 4) return 0;
  const from = Math.floor(starts.length / 2);
  const ms = starts[starts.length - 1] - starts[from];
  return ms > 0 ? ((starts.length - 1 - from) * 1000) / ms : 0;
}

/** Pages, payload bytes and deltas sent. */
interface Sent {
  pages: number;
  bytes: number;
  deltas: number;
}

interface InFlight<O> {
  record: EpochRecord;
  outputs: O[];
}

/**
 * Replicates `source` to the standby at `address` until the duration ends or `signal` aborts (the
 * guest is then left paused after a last committed epoch: outcome `ended`), or the standby is lost
 * (outcome `failed`, MS_ERR_STANDBY_LOST, the guest paused). The guest must be running. Rejects only
 * when the standby cannot be reached at all.
 */
export async function replicate<O>(source: MemorySource, address: Address, options: ReplicateOptions<O>): Promise<PrimaryReport> {
  const t0 = performance.now();
  const standbyTimeoutMs = options.standbyTimeoutMs ?? 1000;
  const pageSize = source.regions[0].pageSize;
  if (source.regions.some((r) => r.pageSize !== pageSize)) throw new MemshiftError(ErrorCode.INVALID_ARGUMENT, 'replication needs one page size across the guest\'s regions', { field: 'source' });
  const guestBytes = source.regions.reduce((n, r) => n + r.pageCount * r.pageSize, 0);
  const staging = new StagedPages(pageSize, Math.min(options.stagingBytes ?? 2 ** 30, guestBytes), Math.min(options.cacheBytes ?? 2 ** 28, guestBytes));
  // Touched by a worker during the connect and handshake, not by the base copy's first chunk, which
  // sent nothing for ~200 ms on a host slow to fault memory in (a touch that fails leaves it there).
  const stagingTouched = touchOnThread(staging.freshMemory()).catch(() => undefined);
  const peer = `standby ${formatAddress(address)}`;
  const records: EpochRecord[] = [];
  const inFlight: InFlight<O>[] = [];
  let outputsReleased = 0;
  const base: Sent = { pages: 0, bytes: 0, deltas: 0 };
  let baseMs = 0;
  let baseEndedAt = 0;
  let stepsAtBase = source.steps ?? 0;
  let failure: MemshiftError | null = null;
  const tickMs = Math.min(HEARTBEAT_MS, standbyTimeoutMs / 4);
  const silence = new SilenceClock(tickMs, standbyTimeoutMs);
  let lastSent = performance.now();
  let lastAck = 0;
  let ackWaiter: { epoch: number; resolve: () => void } | null = null;
  let wake: (() => void) | null = null;
  const lost = (err: MemshiftError): void => {
    if (failure !== null) return;
    failure = err;
    wake?.();
    ackWaiter?.resolve();
  };

  const channel = await Channel.connect(address, { security: options.security, maxBody: Limits.MAX_CONTROL_BODY_BYTES, peer, timeoutMs: options.connectTimeoutMs ?? 10_000 });
  // The connect had its own timeout: silence counts from here.
  silence.heard();
  const session = randomBytes(Limits.SESSION_ID_BYTES);
  let helloAcked: (() => void) | null = null;
  const onFrame = (frame: Frame): void => {
    silence.heard();
    switch (frame.type) {
      case FrameType.HELLO_ACK: {
        const ack = decodeHelloAck(frame.buf, frame.bodyOffset, frame.bodyLength);
        if (!Buffer.from(ack.session).equals(session) || helloAcked === null) throw new MemshiftError(ErrorCode.HANDSHAKE_REJECTED, `${peer} answered another session`);
        helloAcked();
        helloAcked = null;
        return;
      }
      case FrameType.EPOCH_ACK: {
        const epoch = decodeEpochAck(frame.buf, frame.bodyOffset, frame.bodyLength);
        const newest = records.length;
        if (epoch <= lastAck || epoch > newest) throw new MemshiftError(ErrorCode.UNEXPECTED_MESSAGE, `${peer} acknowledged epoch ${epoch}; ${lastAck} was the last acknowledged, ${newest} the last sent`);
        lastAck = epoch;
        commit(epoch);
        return;
      }
      case FrameType.HEARTBEAT:
        decodeEmpty('HEARTBEAT', frame.type, frame.bodyLength);
        return;
      case FrameType.ERROR:
        throw peerError(decodeError(frame.buf, frame.bodyOffset, frame.bodyLength), peer);
      default:
        throw new MemshiftError(ErrorCode.UNEXPECTED_MESSAGE, `${peer} sent ${frameTypeName(frame.type)}`, { frameType: frame.type });
    }
  };
  const commit = (epoch: number): void => {
    const now = performance.now();
    while (inFlight.length > 0 && inFlight[0].record.epoch <= epoch) {
      const f = inFlight.shift()!;
      f.record.commitMs = now - t0 - f.record.pausedAtMs;
      outputsReleased += f.outputs.length;
      if (f.outputs.length > 0) options.release?.(f.outputs);
    }
    if (ackWaiter !== null && epoch >= ackWaiter.epoch) ackWaiter.resolve();
  };
  channel.setHandlers({
    onFrame: (frame) => {
      try {
        onFrame(frame);
      } catch (err) {
        const e = toMemshiftError(err, ErrorCode.STANDBY_LOST, peer);
        channel.fail(e);
        lost(e);
      }
    },
    onClosed: (error) => {
      if (error !== null) lost(new MemshiftError(ErrorCode.STANDBY_LOST, `${peer} lost: ${error.message}`, { peer, cause: error }));
    },
  });
  const send = (bytes: Uint8Array | readonly Uint8Array[]): Promise<void> => {
    lastSent = performance.now();
    return Array.isArray(bytes) ? channel.sendSegments(bytes) : channel.send(bytes as Uint8Array);
  };
  const watchdog = setInterval(() => {
    const now = performance.now();
    const silent = silence.overLimit(now);
    if (silent !== null) {
      const e = new MemshiftError(ErrorCode.STANDBY_LOST, `${peer} silent for ${Math.round(silent)} ms (limit ${standbyTimeoutMs})`, { peer });
      channel.destroy(e);
      lost(e);
    } else if (now - lastSent >= HEARTBEAT_MS && channel.queuedBytes === 0) {
      send(encodeHeartbeat()).catch(() => undefined);
    }
  }, tickMs);
  const check = (): void => {
    if (failure !== null) throw failure;
  };
  const stopRequested = (): boolean => options.signal?.aborted === true || (options.durationMs !== null && performance.now() - t0 >= options.durationMs);

  /** Sends what staging holds as EPOCH_PAGES frames of `epoch`, counted into `sent`; resolves once the socket took them all. */
  const sendStaged = async (epoch: number, sent: Sent): Promise<void> => {
    const sends: Promise<void>[] = [];
    for (const run of staging.encodedRuns(maxPagesPerEpochFrame(pageSize))) {
      sends.push(send([encodeEpochPagesHead(epoch, run.regionId, pageSize, run.pages, run.sizes, run.hashes), run.payload]));
      sent.pages += run.pages.length;
      sent.bytes += run.payload.length;
      sent.deltas += run.deltas;
    }
    await Promise.all(sends);
    staging.clear();
    check();
  };
  /** Stages the snapshot's marked pages, at most `limit`; true when no mark is left. */
  const stage = (limit: number): boolean => {
    for (const r of source.regions) {
      for (const s of source.slabsOf(r.id)) {
        if (staging.count >= limit) return false;
        staging.stageMarked(r.id, s, limit);
      }
    }
    return tracker.pending() === 0;
  };

  const tracker = new DirtyTracker(source);
  // Local disks replicate with the epochs: their blocks captured at the same pause as the pages.
  const disks = (source.blockDevices ?? []).length > 0 ? new StagedBlocks(source.blockDevices!) : null;
  let baseBlocks = 0;
  let paused = false;
  try {
    channel.phase = 'handshake';
    const acked = new Promise<void>((resolve) => (helloAcked = resolve));
    await send(encodeHello({ session, role: ChannelRole.REPLICA, mode: 'live', capabilities: 0, regions: [...source.regions] }));
    await Promise.race([acked, new Promise<void>((resolve) => (wake = resolve))]);
    check();
    if (disks !== null) await send(encodeDisks(disks.shapes));

    // The base: every page (written at some point, when unwritten ones are zero), read while the guest
    // runs; then, as pre-copy does, the pages written meanwhile, pass after pass while that shrinks
    // them fast, so that the first paused epoch holds an epoch's worth and not the whole base's.
    channel.phase = 'base copy';
    await stagingTouched;
    const baseStart = performance.now();
    tracker.startFullPass(source.unwrittenPagesAreZero === true);
    const chunk = Math.max(1, Math.floor(BASE_CHUNK_BYTES / pageSize));
    let before = Infinity;
    for (let pass = 1; pass <= MAX_BASE_PASSES; pass++) {
      const passStart = performance.now();
      for (let done = false; !done;) {
        done = stage(chunk);
        await sendStaged(0, base);
      }
      if (disks !== null) {
        disks.capture();
        baseBlocks += await disks.send(send);
      }
      const dirty = tracker.sync();
      // Done once a pass leaves no more than an epoch would (what was written during it, scaled to an
      // epoch), or stops halving what is left.
      const perEpoch = (dirty * options.epochMs) / Math.max(1, performance.now() - passStart);
      if (dirty <= 2 * perEpoch || dirty > before / 2) break;
      before = dirty;
    }
    await send(encodeEpochEnd({ epoch: 0, pages: base.pages, blocks: baseBlocks, steps: 0, state: new Uint8Array(0) }));
    baseEndedAt = performance.now();
    baseMs = baseEndedAt - baseStart;
    stepsAtBase = source.steps ?? 0;

    let next = performance.now();
    for (let epoch = 1; ; epoch++) {
      next += options.epochMs;
      const wait = next - performance.now();
      if (wait > 0) await new Promise<void>((resolve) => {
        wake = resolve;
        setTimeout(resolve, wait);
      });
      else next = performance.now();
      check();
      const last = stopRequested();
      channel.phase = `epoch ${epoch}`;
      const pausedAt = performance.now();
      await source.pause();
      paused = true;
      tracker.sync();
      let all = stage(staging.capacity);
      disks?.capture();
      const state = await source.saveState();
      const steps = source.steps ?? 0;
      const outputs = options.takeOutputs?.() ?? [];
      // Pages that did not fit staging go while the guest waits (an epoch larger than staging).
      const sent: Sent = { pages: 0, bytes: 0, deltas: 0 };
      while (!all) {
        await sendStaged(epoch, sent);
        all = stage(staging.capacity);
      }
      if (!last) {
        await source.resume();
        paused = false;
      }
      const pausedMs = performance.now() - pausedAt;
      await sendStaged(epoch, sent);
      const blocks = disks === null ? 0 : await disks.send(send);
      await send(encodeEpochEnd({ epoch, pages: sent.pages, blocks, steps, state }));
      const record: EpochRecord = { epoch, pausedAtMs: pausedAt - t0, ...sent, blocks, pausedMs, commitMs: null, steps, outputs: outputs.length };
      records.push(record);
      inFlight.push({ record, outputs });
      options.onEpoch?.(record);
      if (last) {
        // The last epoch: wait for it to be committed (its outputs released), then say goodbye.
        channel.phase = 'last epoch';
        if (lastAck < epoch) {
          await new Promise<void>((resolve) => (ackWaiter = { epoch, resolve }));
        }
        check();
        await send(encodeGoodbye());
        break;
      }
    }
    clearInterval(watchdog);
    await channel.close();
    return report('ended', null);
  } catch (err) {
    clearInterval(watchdog);
    const e = failure ?? toMemshiftError(err, ErrorCode.STANDBY_LOST, peer);
    channel.destroy(e);
    // Fenced: the guest does not run on without its standby.
    if (!paused) await source.pause().catch(() => undefined);
    return report('failed', e);
  }

  function report(outcome: PrimaryReport['outcome'], error: MemshiftError | null): PrimaryReport {
    const end = performance.now();
    const paused = records.map((r) => r.pausedMs);
    const commits = records.flatMap((r) => (r.commitMs === null ? [] : [r.commitMs]));
    const pages = records.map((r) => r.pages);
    const steps = source.steps ?? 0;
    const ranMs = baseEndedAt > 0 ? end - baseEndedAt : 0;
    return {
      role: 'primary', outcome, standby: formatAddress(address), epochMs: options.epochMs, basePages: base.pages, baseMs,
      epochs: records.length, epochsCommitted: lastAck,
      epochsPerSecond: ranMs > 0 ? (records.length * 1000) / ranMs : 0,
      sustainedEpochsPerSecond: sustainedRate(records.map((r) => r.pausedAtMs)),
      pausedMs: { p50: percentile(paused, 50), p99: percentile(paused, 99), max: Math.max(0, ...paused), total: paused.reduce((a, b) => a + b, 0) },
      commitMs: { p50: percentile(commits, 50), p99: percentile(commits, 99), max: Math.max(0, ...commits) },
      pagesPerEpoch: { p50: percentile(pages, 50), max: Math.max(0, ...pages) },
      bytesPerEpoch: { p50: percentile(records.map((r) => r.bytes), 50), max: Math.max(0, ...records.map((r) => r.bytes)) },
      deltaShare: records.reduce((n, r) => n + r.deltas, 0) / Math.max(1, records.reduce((n, r) => n + r.pages, 0)),
      bytesSent: channel.bytesSent, guestSteps: steps,
      guestStepRate: ranMs > 0 ? ((steps - stepsAtBase) * 1000) / ranMs : 0,
      outputsReleased, outputsHeld: inFlight.reduce((n, f) => n + f.outputs.length, 0),
      durationMs: end - t0,
      error: error === null ? null : { code: error.code, message: error.message },
    };
  }
}
