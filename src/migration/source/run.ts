// What one source migration holds while it runs: the guest, the options, the record the report is
// assembled from, and the link to the destination once the handshake made it (channel, encoder pool,
// page sender, dirty tracker, fault thread). Phases read and write it; only the driver creates and
// closes it. Holding the guest's paused/throttled state here is what lets any failure put it back.

import { Compression, type CompressMode, type DeltaMode } from '../compression.js';
import { DirtyingCurve } from '../dirtying.js';
import { sessionDigest } from '../../memory/slab.js';
import type net from 'node:net';
import { ErrorCode, MemshiftError } from '../../errors.js';
import { DirtyTracker } from '../../memory/dirty-tracker.js';
import { scanChangedPages } from '../../memory/file-pages.js';
import { ScratchAgent } from '../../memory/scratch-agents.js';
import type { Slab } from '../../memory/slab.js';
import type { MemorySource } from '../../memory/types.js';
import type { EncoderPool } from '../../pipeline/pool.js';
import type { MigrationMode } from '../../protocol/constants.js';
import type { FrameLink } from '../../transport/channel.js';
import { formatAddress, type Address } from '../../transport/tcp.js';
import type { LinkSecurity } from '../../transport/security.js';
import type { ConvergencePolicy } from '../convergence.js';
import type { Inbox } from '../inbox.js';
import { watchProgress } from '../watchdog.js';
import { BandwidthMeter, type IterationRecord } from '../metrics.js';
import { eventSink, type EventSink } from '../events.js';
import { throttledProgress, type Progress } from '../progress.js';
import { startRecord, type RunRecord } from '../report.js';
import type { BlockSender } from './block-sender.js';
import type { PageSender } from '../../pipeline/page-sender.js';
import type { RateLimiter } from '../../transport/rate-limit.js';
import type { UrgentConnector } from './urgent-connector.js';
import type { PreparedEncoders } from './prepared-encoders.js';

/** A worker touching the XBZRLE caches for the first time (phases/pass.ts). */
export interface CacheTouch {
  /** Settles when the worker is done or stopped (never rejects). */
  done: Promise<void>;
  stop(): void;
}

export interface SourceOptions {
  address: Address;
  /** A connected socket to use instead of connecting to `address` (which then names the peer). */
  socket?: net.Socket;
  /** An already framed link to use instead of either (tests drive the driver over an in-memory one). */
  link?: FrameLink;
  /** How every channel is secured (TLS, PSK or plaintext by choice); the urgent channel uses the same. */
  security: LinkSecurity;
  mode: MigrationMode;
  policy: ConvergencePolicy;
  xbzrle: DeltaMode;
  compress: CompressMode;
  encoders?: number;
  /** Encoder threads started before the migration (prepared-encoders.ts); taken instead of starting new ones. */
  prepared?: PreparedEncoders;
  /** Cap on bytes per second sent (null: as fast as the link goes). */
  maxBandwidth: number | null;
  connectTimeoutMs: number;
  /** How long to wait for each answer of the destination (HELLO_ACK, RESUMED, POSTCOPY_DONE). */
  answerTimeoutMs: number;
  /** The longest the destination may take no bytes while some are queued for it (default 20 s). */
  stallTimeoutMs?: number;
  /**
   * Link lost after a stop-and-copy SWITCHOVER: how long to keep asking the destination (QUERY
   * connections) whether it resumed before leaving the switchover in doubt (default 10 s).
   */
  resolveTimeoutMs?: number;
  /**
   * A link that failed: how long to keep reconnecting (same address, same security) to resume the pass
   * or post-copy it interrupted (default 0: no recovery; a pass fails, post-copy stays paused).
   */
  recoverTimeoutMs?: number;
  /** Opens a new connection to the destination (QUERY, RECOVER) instead of connecting to `address` (tests, over in-memory links). */
  reopen?: (timeoutMs: number) => Promise<FrameLink>;
  signal?: AbortSignal;
  onProgress?: (p: Progress) => void;
  /** What happened, once each: states entered, passes ended, the switchover decision, the outcome (events.ts). */
  onEvent?: EventSink;
}

/** What the handshake negotiated. */
export interface Negotiated {
  session: Uint8Array;
  /** Capabilities both ends have. */
  capabilities: number;
  /** Capabilities our HELLO offered (a QUERY HELLO repeats them). */
  offered: number;
  sender: PageSender;
  /** Present when the guest's disks move (capability BLOCKS). */
  blocks: BlockSender | null;
}

/** The negotiated link with the resources it runs on: what a phase after the handshake uses. */
export interface SourceLink extends Negotiated {
  channel: FrameLink;
  inbox: Inbox;
  pool: EncoderPool;
  /** Present when post-copy was negotiated: the fault thread, connected to the destination's. */
  urgent: UrgentConnector | null;
}

/** Figures the progress line shows between passes. */
export interface LiveFigures {
  remaining: number;
  bandwidth: number;
  dirtyRate: number;
  predicted: number;
}

/** Pages per hash-scan task (8 MiB of 4 KiB pages): enough to amortize a task's round trip, small enough to share out. */
const SCAN_SEGMENT_PAGES = 2048;

/** The longest a destination may take no bytes while some are queued for it. */
export const DEFAULT_STALL_TIMEOUT_MS = 20_000;

export class SourceRun {
  readonly record: RunRecord;
  readonly slabs: readonly Slab[];
  readonly pageSize: number;
  readonly peer: string;
  readonly tracker: DirtyTracker;
  readonly meter = new BandwidthMeter();
  readonly live: LiveFigures = { remaining: 0, bandwidth: 0, dirtyRate: 0, predicted: 0 };
  readonly progress: (make: () => Progress, force?: boolean) => void;
  link: Negotiated | null = null;
  /** What must be closed or failed at the end, set as soon as each exists (the link may never complete). */
  channel: FrameLink | null = null;
  /** The channel's control frames, from the moment it exists. */
  inbox: Inbox | null = null;
  pool: EncoderPool | null = null;
  urgent: UrgentConnector | null = null;
  /** The post-copy push under way (settles, never rejects): a recovery waits for it before pushing again. */
  pushing: Promise<void> | null = null;
  /** The --max-bandwidth limiter, kept across the links of one migration. */
  limiter: RateLimiter | null = null;
  /** The guest is paused by us (and must be resumed if the migration fails before switchover). */
  paused = false;
  throttlePercent = 0;
  lastSync = 0;
  /** Pages dirtied against time since a sync, sampled in the pre-copy passes (the ETA's projection). */
  readonly dirtying = new DirtyingCurve();
  previous = { dirtyRate: 0, bandwidth: 0 };
  /** Bytes per second the latest pre-copy pass after the first moved, of those big enough to measure (precopy.ts). */
  laterPassRate: number | null = null;
  /** Whether encoders use LZ4 now and why (compression.ts); the handshake replaces it once LZ4 is negotiated. */
  compression = new Compression('none', null);
  /** The XBZRLE caches' first touch on a worker (pass.ts), once pages are expected to be stored in them. */
  cacheTouch: CacheTouch | null = null;
  /** The latest ETA (ms, null: none finite) and when it was made; the progress line counts down from it. */
  eta: { ms: number | null; at: number } | null = null;
  /** Guest pages: the most that can be dirty at once. */
  readonly guestPages: number;
  /** The guest's steps when the run started (undefined: it does not expose them). */
  readonly stepsAtStart: number | undefined;

  constructor(readonly source: MemorySource, readonly options: SourceOptions) {
    this.record = startRecord('source', options.mode);
    this.slabs = source.regions.flatMap((r) => [...source.slabsOf(r.id)]);
    this.pageSize = source.regions[0].pageSize;
    this.peer = `destination ${formatAddress(options.address)}`;
    this.tracker = new DirtyTracker(source);
    this.progress = throttledProgress(options.onProgress);
    this.emit = eventSink(options.onEvent);
    this.guestPages = source.regions.reduce((n, r) => n + r.pageCount, 0);
    this.stepsAtStart = source.steps;
  }

  /** Reports events to the caller's onEvent (never throws). */
  readonly emit: EventSink;

  /** A pass ended: into the report, and out as an event. */
  recordPass(pass: IterationRecord): void {
    this.record.iterations.push(pass);
    this.emit({ type: 'pass', role: 'source', pass });
  }

  /** The decision that ends pre-copy (or starts post-copy): into the report, and out as an event. */
  decide(decision: NonNullable<RunRecord['switchoverReason']>): void {
    this.record.switchoverReason = decision;
    this.emit({ type: 'switchover', role: 'source', decision });
  }

  /** The session digest as it stands: memory's, XOR the disks' blocks as they went out (disk-digest.ts). */
  digest(): bigint {
    return sessionDigest(this.source) ^ (this.link?.blocks?.digest.value ?? 0n);
  }

  /** Records a new ETA made now; returns now. */
  setEta(ms: number | null): number {
    this.eta = { ms, at: performance.now() };
    return this.eta.at;
  }

  /** Stops the stall watchdog (set once the channel exists). */
  unwatch: () => void = () => undefined;

  /** The link; a phase that needs it before the handshake made it is a bug in the machine. */
  get established(): SourceLink {
    const { link, channel, inbox, pool } = this;
    if (link === null || channel === null || inbox === null || pool === null) throw new MemshiftError(ErrorCode.UNEXPECTED_MESSAGE, 'no link to the destination yet');
    return { ...link, channel, inbox, pool, urgent: this.urgent };
  }

  /** When we paused the guest and how long pausing took (a resumed stop-and-copy pass keeps counting from there). */
  pausedSince: { at: number; ms: number } | null = null;

  /**
   * Moves what was dirtied since the last sync into the snapshot and returns the pages it holds. Pages
   * of file-backed regions that no dirty log covers are hash-scanned first (file-pages.ts), in segments
   * over the encoder pool.
   */
  async syncDirty(): Promise<number> {
    if (this.source.collectDirtyLog === undefined && this.slabs.some((s) => s.file !== null)) {
      const t = performance.now();
      await this.scanFiles();
      this.lastScanMs = performance.now() - t;
    }
    return this.tracker.sync();
  }

  /** How long the last hash-scan took (ms); null before one or without file-backed regions. */
  lastScanMs: number | null = null;

  /**
   * Hash-scans every file-backed slab, in segments pulled by each encoder thread and by this thread
   * (its window is free on a source): both cores scan while the guest waits.
   */
  private async scanFiles(): Promise<void> {
    const { pool } = this.established;
    const segments: { slab: number; from: number; to: number }[] = [];
    this.slabs.forEach((s, slab) => {
      if (s.file === null) return;
      for (let from = 0; from < s.pageCount; from += SCAN_SEGMENT_PAGES) segments.push({ slab, from, to: Math.min(s.pageCount, from + SCAN_SEGMENT_PAGES) });
    });
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < segments.length) await pool.scan(segments[next++]);
    };
    const here = async (): Promise<void> => {
      while (next < segments.length) {
        const seg = segments[next++];
        scanChangedPages(this.slabs[seg.slab], ScratchAgent.MAIN, seg.from, seg.to);
        // The workers' answers come in between two segments.
        await new Promise((r) => setImmediate(r));
      }
    };
    await Promise.all([here(), ...Array.from({ length: Math.min(segments.length, 2 * pool.size) }, worker)]);
  }

  /** Whether dirty pages are known only at a sync (an integrator's log, or hash-scan): no curve within a pass. */
  get dirtyKnownAtSyncOnly(): boolean {
    return this.source.collectDirtyLog !== undefined || this.slabs.some((s) => s.file !== null);
  }

  /** Pauses the guest (once); returns how long it took. */
  async pause(): Promise<number> {
    if (this.paused) return 0;
    const t = performance.now();
    await this.source.pause();
    this.paused = true;
    this.pausedSince = { at: t, ms: performance.now() - t };
    return this.pausedSince.ms;
  }

  throttle(percent: number): void {
    if (percent === this.throttlePercent) return;
    this.throttlePercent = percent;
    this.record.throttlePercent = percent;
    this.source.throttle(percent);
  }

  /**
   * Fails the channel when bytes are queued for the destination and the kernel took none of them for
   * `limitMs` (a frozen or wedged destination): every pending send then rejects with the timeout, so
   * the phase fails and the machine decides what it means for the guest. Returns the stop function.
   */
  watchStalls(channel: FrameLink, limitMs: number): void {
    this.unwatch = watchProgress(() => channel.flushedBytes, () => channel.queuedBytes > 0, limitMs, (silentMs) => {
      // Destroyed, not failed: an ERROR frame would queue behind what the peer is not taking, and a
      // failed channel lingers with the writes pending, which holds a push (and its recovery) up.
      channel.destroy(new MemshiftError(ErrorCode.TIMEOUT, `${this.peer} took no bytes for ${Math.round(silentMs)} ms during ${channel.phase} (${channel.queuedBytes} queued)`, { peer: this.peer, phase: channel.phase }));
    });
  }

  checkCancel(phase: string): void {
    if (this.options.signal?.aborted) throw new MemshiftError(ErrorCode.CANCELLED, `migration cancelled during ${phase}`);
  }

  snapshot(phase: string, iteration: number): Progress {
    const l = this.live;
    return {
      role: 'source', phase, iteration, remainingPages: l.remaining, dirtyPagesPerSec: l.dirtyRate, bandwidthBytesPerSec: l.bandwidth,
      expectedDowntimeMs: l.predicted, bytesTransferred: this.record.bytesTransferred,
      elapsedMs: performance.now() - this.record.startedAt, throttlePercent: this.throttlePercent,
      ...(this.eta === null ? {} : { etaMs: this.eta.ms === null ? null : Math.max(0, this.eta.ms - (performance.now() - this.eta.at)) }),
    };
  }
}
