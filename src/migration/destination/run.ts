// What one received migration holds while it runs: the channel, the options, the record the report is
// assembled from, and what the setup made (target, applier, urgent listener). Phases read and write
// it; only the driver creates and ends it.

import type { AdmissionLimits } from './admission.js';
import type { BlockDevice, Region, MemoryTarget } from '../../memory/types.js';
import type { DiskShape } from '../../protocol/blocks.js';
import type { DiskDigest } from '../disk-digest.js';
import { sessionDigest } from '../../memory/slab.js';
import type { BlockBuffers } from '../../pipeline/block-buffers.js';
import type { FrameLink } from '../../transport/channel.js';
import type { LinkSecurity } from '../../transport/security.js';
import { throttledProgress, type Progress } from '../progress.js';
import { startRecord, type RunRecord } from '../report.js';
import type { BatchApplier } from '../../pipeline/apply.js';
import type { UrgentListener } from './urgent-listener.js';
import type { MigrationMode } from '../../protocol/constants.js';
import type { Report } from '../report.js';
import { eventSink, type EventSink } from '../events.js';

export interface DestinationOptions {
  /** Allocates memory for the regions a source announced; throw to refuse them. */
  createTarget(regions: readonly Region[]): MemoryTarget;
  /** Touch every page of the target before acknowledging the handshake (like -mem-prealloc). */
  prealloc: boolean;
  /** The target was pre-touched before the migration began, in this many ms (a prepared destination). */
  preallocatedMs?: number;
  /** How every channel is secured (TLS, PSK or plaintext by choice); the urgent channel uses the same. */
  security: LinkSecurity;
  /** How long a connection may take to authenticate and send HELLO (the urgent port's too). */
  handshakeTimeoutMs: number;
  /** While the source is due to send (receiving, post-copy), the longest silence accepted (default 20 s). */
  idleTimeoutMs?: number;
  /**
   * After a stop-and-copy SWITCHOVER arrived and the link was lost, how long the session lingers
   * answering the source's QUERY connections (did it resume?) before it ends (default 10 s).
   */
  confirmTimeoutMs?: number;
  /**
   * A link that failed: how long the session waits for the source to reconnect (HELLO role RECOVER)
   * before it ends, failed before SWITCHOVER or paused in post-copy (default 0: at once).
   */
  recoverTimeoutMs?: number;
  /** Largest guest this destination accepts, in bytes (default: three quarters of the memory available). */
  maxGuestBytes?: number;
  /** Most RAM regions accepted in one guest (default DEFAULT_MAX_REGIONS in accept.ts). */
  maxRegions?: number;
  /** Connections in their handshake at once, in all and per address (default DEFAULT_ADMISSION). */
  admission?: AdmissionLimits;
  signal?: AbortSignal;
  onProgress?: (p: Progress) => void;
  /** What happened, once each: states entered and the outcome (events.ts). */
  onEvent?: EventSink;
  onLog?: (line: string, level: LogLevel) => void;
}

/** How much a log line matters: `dest --quiet` prints only notices. */
export type LogLevel = 'info' | 'notice';

export interface DestinationResult {
  report: Report;
  /** The received guest (running after a completed migration), or null when none was accepted. */
  target: MemoryTarget | null;
}

export class DestinationRun {
  readonly record: RunRecord;
  readonly progress: (make: () => Progress, force?: boolean) => void;
  target: MemoryTarget | null = null;
  applier: BatchApplier | null = null;
  urgent: UrgentListener | null = null;
  /** The capabilities HELLO_ACK granted (a recovery's HELLO_ACK repeats them). */
  capabilities = 0;
  /**
   * Set once the lease was accepted on the way to a post-copy resume (which has no commit step): from
   * then on the guest may run here, so a failure must never give the lease back.
   */
  resumeCommitted = false;
  /** The disks the source named (DISKS) and where their blocks are written; null until then. */
  disks: { shapes: DiskShape[]; devices: readonly BlockDevice[]; buffers: BlockBuffers; digest: DiskDigest; flushing: Promise<void> } | null = null;
  /** Device state as received, loaded at the switchover. */
  deviceState: Uint8Array | null = null;
  /** Time spent applying batches since the last ITERATION_END. */
  passApplyMs = 0;
  /** Where the pass being received began: pages applied and bytes read then, and when (setup end, then each ITERATION_END). */
  passStart = { pages: 0, bytes: 0, at: 0 };
  lastIteration = 0;
  /** RESUMED as sent at a stop-and-copy resume, kept for the answer to a QUERY after the link was lost (null: never resumed). */
  resumedAnswer: Uint8Array | null = null;
  /** When the first frame after the last ITERATION_END arrived (0: none yet): post-copy's switch begins there. */
  sinceLastPass = 0;
  /** When the last pass that ITERATION_END closed began (its first frame): a stop-and-copy's final pass. */
  lastPassBegan = 0;
  /** When the guest resumed in post-copy (0 before). */
  resumedAt = 0;
  /** The guest's steps when it resumed here, and when (null before): the start of its after-resume step rate. */
  resumeSample: { steps: number | undefined; at: number } | null = null;

  /** The bulk link: the accepted one, or the RECOVER channel that replaced it after a loss. */
  channel: FrameLink;
  /** Bytes received over the links that were replaced. */
  private bytesBefore = 0;

  constructor(channel: FrameLink, readonly options: DestinationOptions, mode: MigrationMode, readonly session: Uint8Array) {
    this.channel = channel;
    this.record = startRecord('destination', mode);
    this.progress = throttledProgress(options.onProgress);
    this.emit = eventSink(options.onEvent);
  }

  /** Reports events to the caller's onEvent (never throws). */
  readonly emit: EventSink;

  /** The session digest as it stands: the target memory's, XOR the disks' blocks as they landed (disk-digest.ts). */
  digest(): bigint {
    return sessionDigest(this.target!) ^ (this.disks?.digest.value ?? 0n);
  }

  /**
   * Makes the disk blocks received so far durable: started in the background after each pass, so that
   * the one awaited before the guest resumes has only the last pass's blocks left. Resolves after every
   * flush started before it.
   */
  flushDisks(): Promise<void> {
    const disks = this.disks;
    if (disks === null) return Promise.resolve();
    disks.flushing = disks.flushing.then(() => Promise.all(disks.devices.map((d) => d.flush()))).then(() => undefined);
    return disks.flushing;
  }

  /** Makes `channel` the bulk link from now on (a recovery). */
  replaceChannel(channel: FrameLink): void {
    if (channel === this.channel) return;
    this.bytesBefore += this.channel.bytesReceived;
    this.channel = channel;
  }

  /**
   * The guest resumed here now: the downtime as this side saw it, from its first frame of the paused
   * phase (a stop-and-copy's final pass; post-copy's switch, which follows the last pass) to the resume.
   */
  noteResumed(at: number, postcopy: boolean): void {
    const began = postcopy ? this.sinceLastPass : this.lastPassBegan;
    if (began > 0) this.record.downtimeSeenMs = at - began;
    this.record.resumedAt = at;
  }

  /** Bytes received from the source over every link of the session. */
  get bytesReceived(): number {
    return this.bytesBefore + this.channel.bytesReceived;
  }

  /** A line for the operator: `notice` for what needs attention (a refusal, a lost link), `info` for the routine. */
  log(line: string, level: LogLevel = 'info'): void {
    this.options.onLog?.(line, level);
  }

  snapshot(phase: string): Progress {
    const t = this.applier?.totals;
    const elapsedMs = performance.now() - this.record.startedAt;
    return {
      role: 'destination', phase, iteration: this.lastIteration + 1, remainingPages: 0, pagesReceived: t?.pages ?? 0,
      dirtyPagesPerSec: 0, bandwidthBytesPerSec: (this.bytesReceived * 1000) / Math.max(1, elapsedMs), expectedDowntimeMs: 0,
      bytesTransferred: this.bytesReceived, elapsedMs, throttlePercent: 0,
    };
  }
}
