// The destination's driver: accepts connections, runs the handshake, allocates the target memory,
// receives and applies pages, and resumes the guest when the source switches over. All decisions go
// through stepDest (machine.ts); this file does the I/O.
//
//   accept ─► preface + HELLO (small buffer) ─► allocate target, [pre-touch] ─► receive into arena
//   ─► HELLO_ACK ─► PAGE_BATCH* ITERATION_END … DEVICE_STATE SWITCHOVER ─► digest check ─► load state
//   ─► resume ─► RESUMED ─► COMPLETE
//
// Accepting connections and the handshake's first checks live in accept.ts. Once a session is past
// the handshake, its failure ends the wait: the guest is never started from a partial copy.

import { ErrorCode, MemshiftError, toMemshiftError } from '../../errors.js';
import { sessionDigest, type Slab } from '../../memory/slab.js';
import { ScratchAgent } from '../../memory/scratch-agents.js';
import type { MemoryTarget, Region } from '../../memory/types.js';
import { Capability, FrameType, Limits, SwitchoverMode } from '../../protocol/constants.js';
import { decodeIterationEnd, decodeSwitchover, encodeResumed, decodeError, peerError, decodeComplete, decodeMissingPages, encodePostcopyDone, type Switchover } from '../../protocol/control.js';
import { encodeHelloAck, type Hello } from '../../protocol/handshake.js';
import { frameTypeName } from '../../protocol/frame.js';
import type { Frame } from '../../protocol/frame-reader.js';
import { Channel } from '../../transport/channel.js';
import { viewsOf } from '../../wasm/views.js';
import { throttledProgress, type Progress } from '../progress.js';
import { emptyReport, hex64, type Report } from '../report.js';
import { BatchApplier } from '../../pipeline/apply.js';
import { isFinalDest, stepDest, type DestState } from './machine.js';
import { FaultClient } from './postcopy.js';
import { BoardState } from '../postcopy-board.js';

export interface DestinationOptions {
  /** Allocates memory for the regions a source announced; throws MS_ERR_INVALID_ARGUMENT to refuse them. */
  createTarget(regions: readonly Region[]): MemoryTarget;
  /** Touch every page of the target before acknowledging the handshake (like -mem-prealloc). */
  prealloc: boolean;
  handshakeTimeoutMs: number;
  /** Largest guest this destination accepts, in bytes (default: physical memory). */
  maxGuestBytes?: number;
  signal?: AbortSignal;
  onProgress?: (p: Progress) => void;
  onLog?: (line: string) => void;
}

export interface DestinationResult {
  report: Report;
  /** The received guest (running after a completed migration), or null when none was accepted. */
  target: MemoryTarget | null;
}

const OUR_CAPABILITIES = Capability.XBZRLE | Capability.LZ4 | Capability.POSTCOPY;
/** Touches every RAM page once so that receiving does not pay the host's first-write cost. */
export function pretouch(slabs: readonly Slab[]): void {
  for (const s of slabs) {
    const { i32 } = viewsOf(s.memory);
    const words = s.layout.pageSize >>> 2;
    const base = s.layout.ram >>> 2;
    for (let p = 0; p < s.pageCount; p++) i32[base + p * words] = 0;
  }
}

/** One accepted migration, from HELLO to completion. */
export class Session {
  private state: DestState = { kind: 'awaiting-hello' };
  private readonly report: Report;
  private readonly t0 = performance.now();
  private readonly cpu0 = process.cpuUsage();
  private target: MemoryTarget | null = null;
  private applier: BatchApplier | null = null;
  private deviceState: Uint8Array | null = null;
  /** Time spent applying batches in the current pass and in the last completed one. */
  private passApplyMs = 0;
  private lastPassApplyMs = 0;
  private done = false;
  private readonly progress;
  private lastIterationEnd = 0;
  private faults: FaultClient | null = null;
  private tResume = 0;

  constructor(
    private readonly channel: Channel,
    hello: Hello,
    private readonly options: DestinationOptions,
    private readonly finish: (r: DestinationResult) => void,
  ) {
    this.report = emptyReport('destination', hello.mode);
    this.progress = throttledProgress(options.onProgress);
    this.state = stepDest(this.state, { type: 'hello', mode: hello.mode });
    this.channel.setHandlers({ onFrame: (f) => this.onFrame(f), onClosed: (e) => this.onClosed(e) });
    this.start(hello).catch((err) => this.fail(toMemshiftError(err, ErrorCode.HANDSHAKE_REJECTED, 'destination setup')));
  }

  private log(line: string): void {
    this.options.onLog?.(line);
  }

  private async start(hello: Hello): Promise<void> {
    this.channel.phase = 'setup';
    const target = this.options.createTarget(hello.regions);
    this.target = target;
    const slabs = target.regions.flatMap((r) => [...target.slabsOf(r.id)]);
    if (this.options.prealloc) {
      const t = performance.now();
      pretouch(target.slabsOf(target.regions[0].id));
      this.report.prealloc = { enabled: true, ms: performance.now() - t };
    } else {
      this.report.prealloc = { enabled: false, ms: 0 };
    }
    let capabilities = hello.capabilities & OUR_CAPABILITIES;
    if ((capabilities & Capability.POSTCOPY) !== 0) {
      if (target.enablePageGate === undefined) capabilities &= ~Capability.POSTCOPY;
      else this.faults = await FaultClient.start(target, target.regions[0].id, hello.session, this.channel.localHost);
    }
    this.applier = new BatchApplier(target, capabilities, ScratchAgent.MAIN);
    const receive = slabs[0];
    this.channel.switchReceiveBuffer(new Uint8Array(receive.memory.buffer, receive.layout.arena, receive.layout.arenaBytes), Limits.MAX_FRAME_BODY_BYTES);
    this.channel.phase = 'pre-copy';
    this.report.setupTimeMs = performance.now() - this.t0;
    await this.channel.send(encodeHelloAck({ session: hello.session, capabilities, urgentPort: this.faults?.port ?? 0 }));
    this.log(`accepted ${hello.mode} migration from ${this.channel.peer}: ${hello.regions.map((r) => `${r.name} ${r.pageCount}×${r.pageSize}`).join(', ')}`);
  }

  private onFrame(frame: Frame): void {
    if (this.done) return;
    switch (frame.type) {
      case FrameType.PAGE_BATCH: {
        if (this.applier === null) throw new MemshiftError(ErrorCode.UNEXPECTED_MESSAGE, 'PAGE_BATCH before the handshake finished');
        this.state = stepDest(this.state, { type: 'batch' });
        const t = performance.now();
        const before = this.applier.totals.pages;
        this.applier.apply(frame.buf, frame.bodyOffset, frame.bodyLength, frame.checkedLength);
        this.passApplyMs += performance.now() - t;
        if (this.state.kind === 'postcopy') this.faults!.addBulk(this.applier.totals.pages - before);
        this.progress(() => this.snapshot());
        return;
      }
      case FrameType.ITERATION_END: {
        const m = decodeIterationEnd(frame.buf, frame.bodyOffset, frame.bodyLength);
        this.state = stepDest(this.state, { type: 'iteration-end', iteration: m.iteration });
        this.lastIterationEnd = m.iteration;
        this.lastPassApplyMs = this.passApplyMs;
        this.passApplyMs = 0;
        this.channel.phase = `pre-copy pass ${m.iteration + 1}`;
        this.progress(() => this.snapshot(), true);
        return;
      }
      case FrameType.DEVICE_STATE: {
        const body = frame.buf.slice(frame.bodyOffset, frame.bodyOffset + frame.bodyLength);
        this.target!.checkState(body);
        this.state = stepDest(this.state, { type: 'device-state' });
        this.deviceState = body;
        return;
      }
      case FrameType.MISSING_PAGES: {
        if (this.faults === null || this.state.kind !== 'receiving') throw new MemshiftError(ErrorCode.UNEXPECTED_MESSAGE, 'MISSING_PAGES outside a post-copy switchover');
        const m = decodeMissingPages(frame.buf, frame.bodyOffset, frame.bodyLength);
        const region = this.target!.regions.find((r) => r.id === m.regionId);
        if (region === undefined) throw new MemshiftError(ErrorCode.BATCH_REGION_UNKNOWN, `MISSING_PAGES names region ${m.regionId}`, { regionId: m.regionId });
        this.faults.markMissing(region, this.target!.slabsOf(region.id), m);
        return;
      }
      case FrameType.SWITCHOVER: {
        const m = decodeSwitchover(frame.buf, frame.bodyOffset, frame.bodyLength);
        const postcopy = m.mode === SwitchoverMode.POSTCOPY;
        if (postcopy && this.faults === null) throw new MemshiftError(ErrorCode.UNEXPECTED_MESSAGE, 'post-copy SWITCHOVER without a negotiated post-copy');
        this.state = stepDest(this.state, { type: 'switchover', postcopy });
        this.channel.phase = postcopy ? 'post-copy switchover' : 'switchover';
        const run = postcopy ? this.postcopy(m) : this.switchover(m);
        run.catch((err) => this.fail(toMemshiftError(err, ErrorCode.UNEXPECTED_MESSAGE, 'switchover')));
        return;
      }
      case FrameType.COMPLETE: {
        decodeComplete(frame.buf, frame.bodyOffset, frame.bodyLength);
        this.state = stepDest(this.state, { type: 'complete' });
        if (this.state.kind === 'completed') this.end();
        return;
      }
      case FrameType.ERROR: {
        const err = peerError(decodeError(frame.buf, frame.bodyOffset, frame.bodyLength), this.channel.peer);
        this.fail(err);
        return;
      }
      default:
        throw new MemshiftError(ErrorCode.UNEXPECTED_MESSAGE, `${frameTypeName(frame.type)} is not expected from a source`, { frameType: frame.type });
    }
  }

  private async switchover(m: Switchover): Promise<void> {
    const target = this.target!;
    // The final pass (stop-and-copy) is the last one that ended: its apply time is our share of downtime.
    const applyMs = this.lastPassApplyMs + this.passApplyMs;
    const tDigest = performance.now();
    const digest = sessionDigest(target);
    if (digest !== m.digest) {
      throw new MemshiftError(ErrorCode.DIGEST_MISMATCH, `memory digest ${hex64(digest)} differs from the source's ${hex64(m.digest)}: not resuming`);
    }
    const digestMs = performance.now() - tDigest;
    if (this.faults !== null) {
      // Post-copy was negotiated but not used: every page is here.
      this.faults.openGate();
      await this.faults.stop();
    }
    const tState = performance.now();
    target.loadState(this.deviceState!);
    const stateMs = performance.now() - tState;
    const tResume = performance.now();
    await target.resume();
    const resumeMs = performance.now() - tResume;
    this.state = stepDest(this.state, { type: 'resumed' });
    this.report.digest = hex64(digest);
    this.report.downtimeBreakdown = {
      pauseMs: 0, finalPagesMs: 0, finalPages: 0, deviceStateMs: 0, destinationApplyMs: applyMs,
      digestCheckMs: digestMs, resumeMs: resumeMs + stateMs, otherMs: 0,
    };
    this.channel.phase = 'completion';
    await this.channel.send(encodeResumed({
      digest, pagesReceived: this.applier!.totals.pages, applyMs, stateMs, digestMs, resumeMs,
    }));
  }

  /** Post-copy: check what is here, resume at once, then wait until every missing page arrived. */
  private async postcopy(m: Switchover): Promise<void> {
    const target = this.target!;
    const faults = this.faults!;
    const tDigest = performance.now();
    const digest = sessionDigest(target);
    if (digest !== m.digest) {
      throw new MemshiftError(ErrorCode.DIGEST_MISMATCH, `memory digest ${hex64(digest)} differs from the source's ${hex64(m.digest)} before post-copy: not resuming`);
    }
    const digestMs = performance.now() - tDigest;
    faults.begin(m.missingPages);
    await faults.waitConnected(10_000);
    if (faults.complete) faults.openGate();
    const tState = performance.now();
    target.loadState(this.deviceState!);
    const stateMs = performance.now() - tState;
    this.applier!.claim = true;
    const tResume = performance.now();
    await target.resume();
    this.tResume = performance.now();
    const resumeMs = this.tResume - tResume;
    this.report.downtimeBreakdown = {
      pauseMs: 0, finalPagesMs: 0, finalPages: 0, deviceStateMs: 0, destinationApplyMs: 0, digestCheckMs: digestMs, resumeMs: resumeMs + stateMs, otherMs: 0,
    };
    this.channel.phase = 'post-copy';
    await this.channel.send(encodeResumed({ digest, pagesReceived: this.applier!.totals.pages, applyMs: 0, stateMs, digestMs, resumeMs }));
    this.log(`guest resumed in post-copy with ${m.missingPages} pages still on the source`);
    await faults.waitUntilDone();
    if (this.done) return;
    if (!faults.complete) {
      this.onClosed(new MemshiftError(ErrorCode.CONNECTION_CLOSED, `${this.channel.peer}: urgent channel lost during post-copy`, { peer: this.channel.peer, phase: 'post-copy' }));
      return;
    }
    faults.openGate();
    const postcopyMs = performance.now() - this.tResume;
    const final = sessionDigest(target);
    const lat = faults.latencyUs();
    const stats = faults.stats();
    this.report.postcopy = {
      faults: stats.faults, faultLatencyUs: lat, pagesRequested: stats.requested, pagesPushed: stats.bulk, postcopyTimeMs: postcopyMs,
      pagesAnswered: stats.urgent, duplicates: stats.duplicates, pushedBeforeFirstAnswer: stats.bulkAtFirstAnswer,
    };
    this.report.digest = hex64(final);
    this.state = stepDest(this.state, { type: 'all-present' });
    await this.channel.send(encodePostcopyDone({
      digest: final, pagesReceived: this.applier!.totals.pages, faults: stats.faults,
      faultP50Us: lat.p50, faultP99Us: lat.p99, faultMaxUs: lat.max, postcopyMs,
    }));
    await faults.stop();
    if (this.state.kind === 'completed') this.end();
  }

  private snapshot(): Progress {
    const t = this.applier?.totals;
    return {
      role: 'destination', phase: this.state.kind, iteration: this.lastIterationEnd + 1, remainingPages: 0, pagesReceived: t?.pages ?? 0,
      dirtyRate: 0, bandwidth: (this.channel.bytesReceived * 1000) / Math.max(1, performance.now() - this.t0), expectedDowntimeMs: 0,
      bytesTransferred: this.channel.bytesReceived, elapsedMs: performance.now() - this.t0, throttlePercent: 0,
    };
  }

  private onClosed(error: MemshiftError | null): void {
    if (this.done) return;
    const err = error ?? new MemshiftError(ErrorCode.CONNECTION_CLOSED, `${this.channel.peer} closed the connection during ${this.channel.phase}`);
    this.state = stepDest(this.state, { type: 'closed', error: err });
    if (this.state.kind === 'postcopy-paused') {
      // The only complete copy is split across both hosts: keep every page, leave the vCPU blocked.
      void this.faults?.stop(BoardState.LINK_LOST);
      this.channel.destroy();
    }
    if (this.state.kind === 'completed') this.log(`${this.channel.peer} closed without confirming it released the guest; the guest runs here`);
    this.end();
  }

  private fail(err: MemshiftError): void {
    if (this.done) return;
    if (!isFinalDest(this.state)) this.state = stepDest(this.state, { type: 'error', error: err });
    if (this.state.kind === 'postcopy-paused') void this.faults?.stop(BoardState.LINK_LOST);
    else void this.faults?.stop();
    this.channel.fail(err);
    this.end();
  }

  cancel(): void {
    this.fail(new MemshiftError(ErrorCode.CANCELLED, `migration cancelled during ${this.channel.phase}`));
  }

  private end(): void {
    if (this.done) return;
    this.done = true;
    const r = this.report;
    const t = this.applier?.totals;
    r.totalTimeMs = performance.now() - this.t0;
    const cpu = process.cpuUsage(this.cpu0);
    r.cpuMs = { user: cpu.user / 1000, system: cpu.system / 1000 };
    r.bytesTransferred = this.channel.bytesReceived;
    r.pagesTransferred = t?.pages ?? 0;
    if (t) r.pagesByEncoding = { ...t.counts };
    r.throughputGBps = r.totalTimeMs > 0 ? r.bytesTransferred / r.totalTimeMs / 1e6 : 0;
    const s = this.state;
    if (s.kind === 'completed') {
      r.outcome = 'completed';
      r.converged = true;
    } else if (s.kind === 'failed') {
      r.outcome = s.error.code === ErrorCode.CANCELLED ? 'cancelled' : 'failed';
      r.error = { code: s.error.code, message: s.error.message };
    } else if (s.kind === 'postcopy-paused') {
      r.outcome = 'paused';
      r.error = { code: ErrorCode.POSTCOPY_PAUSED, message: s.error.message };
    }
    if (this.target !== null && r.digest === hex64(0n)) r.digest = hex64(sessionDigest(this.target));
    if (this.faults !== null && r.postcopy === null && this.tResume > 0) {
      const stats = this.faults.stats();
      r.postcopy = {
        faults: stats.faults, faultLatencyUs: this.faults.latencyUs(), pagesRequested: stats.requested, pagesPushed: stats.bulk,
        postcopyTimeMs: performance.now() - this.tResume, pagesAnswered: stats.urgent, duplicates: stats.duplicates,
        pushedBeforeFirstAnswer: stats.bulkAtFirstAnswer,
      };
    }
    this.progress(() => this.snapshot(), true);
    if (this.state.kind !== 'completed') this.channel.destroy();
    this.finish({ report: r, target: this.target });
  }
}

