// The migration report: JSON for tools (these field names are an interface; add, never rename) and a
// readable summary for operators. Both sides write one; the source's is the authoritative account of
// the switchover, the destination's of what it received and how long the guest waited on faults.

import { ErrorCode, type MemshiftError } from '../errors.js';
import type { MigrationMode } from '../protocol/constants.js';
import type { Action, RuleName } from './convergence.js';
import { emptyCounts, type EncodingCounts, type IterationRecord } from './metrics.js';

export type Outcome = 'completed' | 'failed' | 'aborted' | 'cancelled' | 'in-doubt' | 'paused';

export interface DowntimeBreakdown {
  /** Stopping the vCPU at a step boundary. */
  pauseMs: number;
  /** Encoding and sending the pages dirty at the pause. */
  finalPagesMs: number;
  finalPages: number;
  /** Saving and sending device state. */
  deviceStateMs: number;
  /** Destination: applying what arrived after SWITCHOVER was read (usually ~0: pages apply as they arrive). */
  destinationApplyMs: number;
  /** Destination: comparing the memory digests. */
  digestCheckMs: number;
  /** Destination: loading state and starting the vCPU. */
  resumeMs: number;
  /** The rest: network latency of the last frames and the RESUMED answer. */
  otherMs: number;
}

export interface PostcopyStats {
  faults: number;
  faultLatencyUs: { p50: number; p99: number; max: number };
  pagesRequested: number;
  pagesPushed: number;
  /** Destination resume → every page present. */
  postcopyTimeMs: number;
  /** Destination: pages written from urgent answers, and copies discarded because the page was there. */
  pagesAnswered?: number;
  duplicates?: number;
  /** Destination: pushed pages written when the first urgent answer was (an answer that beat the push). */
  pushedBeforeFirstAnswer?: number;
  /** Destination, disks faulted in post-copy: blocks still on the source at the switchover, and the guest's faults on them. */
  blocksMissing?: number;
  blockFaults?: number;
}

/** A lost link that was recovered: where and when, how long the migration stood still, what went again. */
export interface Recovery {
  /** The state the loss interrupted: precopy or stop-and-copy (source), receiving (destination), postcopy-running. */
  phase: string;
  /** When the link was lost, in ms since this side started. */
  lostAtMs: number;
  /** Link lost → post-copy running again over the new link. */
  pausedMs: number;
  /** Pages that went again: post-copy, those the destination still lacked; pre-copy, those whose hashes differed. */
  missingPages: number;
  /** Disk blocks that went again (source, with disks): those the destination did not hold as last sent. */
  blocksAgain?: number;
  /** Connections tried until one recovered (the destination counts the one it accepted). */
  attempts: number;
  /** Why the link was lost. */
  cause: string;
}

/** A pass as the destination received it: pages applied, bytes read, its span, and the time applying took. */
export interface ReceivedPass {
  iteration: number;
  pages: number;
  bytes: number;
  ms: number;
  applyMs: number;
  /** When its ITERATION_END arrived, in ms since this side started. */
  endedAtMs: number;
}

/** The report layout's version: bumped when a field changes meaning or goes away (adding one does not). */
export const REPORT_SCHEMA_VERSION = 2;

export interface Report {
  /** REPORT_SCHEMA_VERSION of the build that wrote it (the JSON Schema is report-schema.ts). */
  schemaVersion: number;
  /** The migration session's id (hex, the same in both sides' reports); null when no HELLO was exchanged. */
  sessionId: string | null;
  /** Wall-clock time the run started and its report was made, ISO 8601 UTC. */
  startedAt: string;
  endedAt: string;
  role: 'source' | 'destination';
  mode: MigrationMode;
  outcome: Outcome;
  error: { code: string; message: string } | null;
  totalTimeMs: number;
  /**
   * Source: its pause → RESUMED arrived. Destination, as it saw it: its first frame of the paused phase
   * (the final pass, or post-copy's switch) → its guest resumed, inside the source's. Null when no
   * switchover happened.
   */
  downtimeMs: number | null;
  downtimeBreakdown: DowntimeBreakdown | null;
  /**
   * The instants that bound the guest's stop across hosts, in ms since the epoch with sub-ms precision
   * (performance.timeOrigin + performance.now()): the source's pause for the switchover, the
   * destination's resume. Between the two reports of one host (or of hosts with synchronised clocks)
   * their difference is the stop → resume time, without the RESUMED message's way back that the
   * source's `downtimeMs` also counts. Null on the side that did not pause or resume.
   */
  pausedAtEpochMs: number | null;
  resumedAtEpochMs: number | null;
  setupTimeMs: number;
  /** Bytes of guest memory in the session (every region); 0 before the handshake. */
  guestBytes: number;
  bytesTransferred: number;
  pagesTransferred: number;
  pagesByEncoding: EncodingCounts;
  iterations: IterationRecord[];
  /** Destination: each pass as it arrived here (ITERATION_END to ITERATION_END); [] on the source. */
  receivedPasses: ReceivedPass[];
  /** Switched over because expected downtime met the limit (not forced, not post-copy). */
  converged: boolean;
  switchoverReason: { rule: RuleName; action: Action; forced: boolean; reason: string } | null;
  predictedDowntimeMs: number | null;
  throttlePercent: number;
  /** Source: the guest's steps at the pause (or when dumped on failure). Destination: steps when dumped. */
  guestSteps: number;
  /** Session digest of the final memory (hex), equal on both sides after a successful migration. */
  digest: string;
  /** Bytes on the wire over total time. */
  /** Bytes on the wire per second of total time. */
  throughputBytesPerSec: number;
  postcopy: PostcopyStats | null;
  /** Lost links recovered, in order ([] when none): a pass resumed, or post-copy went on. */
  recoveries: Recovery[];
  /**
   * Destination: whether memory was pre-touched, how long that took, and whether it happened before
   * the migration began (a prepared destination: not part of setupTimeMs) or inside its setup.
   */
  prealloc: { enabled: boolean; ms: number; beforeMigration: boolean } | null;
  /**
   * Digest of the memory as it was when the tool stopped the guest (hex, computed from the pages, not
   * from the session); null when not computed. Compare with a replay's to check a migration end to end.
   */
  contentDigest: string | null;
  /** CPU time this process spent during the migration (all threads), in ms: the cost per byte moved. */
  cpuMs: { user: number; system: number } | null;
  /**
   * This process's peak resident memory so far (bytes; the OS's high-water mark, guest memory
   * included): what a host must hold for this side of the migration. Null where the OS does not say.
   */
  peakRssBytes: number | null;
  /**
   * Source: ms from the start until the guest ran on the destination with all of its memory (RESUMED
   * arrived; post-copy: POSTCOPY_DONE), the instant an ETA counts down to; null when that never happened.
   * The release and closing that follow are in totalTimeMs, not here.
   */
  completedAtMs: number | null;
  /** The guest's steps per second around and during the migration: what it cost the guest (GuestStepRate). */
  guestStepsPerSec: GuestStepRate;
  /**
   * Destination of a hypervisor's guest (memshift qemu-dest): the downtime as the hypervisor saw it,
   * from the source's stop to this side's resume by its own event clocks, and its device load.
   */
  hypervisor?: { kind: 'qemu'; stopToResumeMs: number; deviceLoadMs: number; deviceStateBytes: number };
}

/**
 * Guest steps per second, each over a window this side saw; null where the guest does not expose
 * `steps` or the side cannot see the window.
 *   beforeMigration  source: over the setup (connect + handshake), while nothing slows the guest yet
 *                    (cold pauses it as setup begins: the rate covers the few steps before that)
 *   perPass          source: each pass's `guestStepsPerSec` (stop-and-copy: 0, paused); [] when unknown
 *   afterResume      destination: from its resume until its report (post-copy: the whole push)
 */
export interface GuestStepRate {
  beforeMigration: number | null;
  perPass: number[];
  afterResume: number | null;
}

/** Steps per second between two (steps, performance.now()) samples; null without steps or without time between them. */
export function stepRate(steps0: number | undefined, t0: number, steps1: number | undefined, t1: number): number | null {
  if (steps0 === undefined || steps1 === undefined || !(t1 > t0)) return null;
  return Math.max(0, ((steps1 - steps0) * 1000) / (t1 - t0));
}

/**
 * The times of a switchover as the source measured them, plus the destination's own figures from
 * RESUMED. `pausedAt` and `resumedAt` are performance.now() instants: the downtime is between them.
 */
export interface SwitchoverTimes {
  pausedAt: number;
  resumedAt: number;
  pauseMs: number;
  finalPagesMs: number;
  finalPages: number;
  deviceStateMs: number;
  destination: { applyMs: number; digestMs: number; resumeMs: number };
}

/** The one place a downtime is split into its parts; what no part accounts for is `otherMs`. */
export function downtimeBreakdown(t: SwitchoverTimes): DowntimeBreakdown {
  const downtimeMs = t.resumedAt - t.pausedAt;
  const accounted = t.pauseMs + t.finalPagesMs + t.deviceStateMs + t.destination.applyMs + t.destination.digestMs + t.destination.resumeMs;
  return {
    pauseMs: t.pauseMs, finalPagesMs: t.finalPagesMs, finalPages: t.finalPages, deviceStateMs: t.deviceStateMs,
    destinationApplyMs: t.destination.applyMs, digestCheckMs: t.destination.digestMs, resumeMs: t.destination.resumeMs,
    otherMs: Math.max(0, downtimeMs - accounted),
  };
}

/** The destination's share of a downtime: all it can see of it (it never sees the pause). */
export function destinationDowntime(d: { applyMs: number; digestMs: number; resumeMs: number }): DowntimeBreakdown {
  return {
    pauseMs: 0, finalPagesMs: 0, finalPages: 0, deviceStateMs: 0, destinationApplyMs: d.applyMs,
    digestCheckMs: d.digestMs, resumeMs: d.resumeMs, otherMs: 0,
  };
}

/** How a run ended, as far as the report is concerned. */
export interface Ending {
  outcome: Outcome;
  error: MemshiftError | null;
}

/**
 * What one run measured, written by the phases of either side as they go. `assembleReport` turns it
 * into the Report once, at the end; nothing else builds a Report.
 */
export interface RunRecord {
  role: 'source' | 'destination';
  mode: MigrationMode;
  startedAt: number;
  /** Date.now() at the start (startedAt is performance.now(), for intervals). */
  startedAtWallMs: number;
  /** The session id once the HELLO was sent or received. */
  session: Uint8Array | null;
  cpuAtStart: NodeJS.CpuUsage;
  setupTimeMs: number;
  guestBytes: number;
  bytesTransferred: number;
  pagesTransferred: number;
  pagesByEncoding: EncodingCounts;
  iterations: IterationRecord[];
  receivedPasses: ReceivedPass[];
  switchoverReason: Report['switchoverReason'];
  converged: boolean;
  predictedDowntimeMs: number | null;
  /** Source: the switchover's times. */
  switchover: SwitchoverTimes | null;
  /** Destination: its share of the downtime (it cannot see the pause). */
  destinationDowntime: DowntimeBreakdown | null;
  /** Destination: its first frame of the paused phase → its guest resumed (null: it never resumed it). */
  downtimeSeenMs: number | null;
  /** Destination: when its guest resumed (performance.now()), or null. */
  resumedAt: number | null;
  postcopy: PostcopyStats | null;
  recoveries: Recovery[];
  prealloc: Report['prealloc'];
  throttlePercent: number;
  guestSteps: number;
  digest: bigint;
  /** Source: the guest's step rate over the setup. */
  stepRateBefore: number | null;
  /** Source: when the guest ran on the destination with all of its memory (performance.now()), or null. */
  completedAt: number | null;
  /** Destination: the guest's step rate from its resume until the report. */
  stepRateAfterResume: number | null;
}

export function startRecord(role: 'source' | 'destination', mode: MigrationMode): RunRecord {
  return {
    role, mode, startedAt: performance.now(), startedAtWallMs: Date.now(), session: null, cpuAtStart: process.cpuUsage(), setupTimeMs: 0, guestBytes: 0, bytesTransferred: 0,
    pagesTransferred: 0, pagesByEncoding: emptyCounts(), iterations: [], receivedPasses: [], switchoverReason: null, converged: false,
    predictedDowntimeMs: null, switchover: null, destinationDowntime: null, downtimeSeenMs: null, resumedAt: null, postcopy: null, recoveries: [], prealloc: null,
    throttlePercent: 0, guestSteps: 0, digest: 0n, stepRateBefore: null, stepRateAfterResume: null, completedAt: null,
  };
}

/** The report of a finished run. */
export function assembleReport(r: RunRecord, end: Ending): Report {
  const totalTimeMs = performance.now() - r.startedAt;
  const cpu = process.cpuUsage(r.cpuAtStart);
  return {
    schemaVersion: REPORT_SCHEMA_VERSION,
    sessionId: r.session === null ? null : Buffer.from(r.session).toString('hex'),
    startedAt: new Date(r.startedAtWallMs).toISOString(),
    endedAt: new Date(r.startedAtWallMs + totalTimeMs).toISOString(),
    role: r.role, mode: r.mode, outcome: end.outcome, error: end.error === null ? null : { code: end.error.code, message: end.error.message },
    totalTimeMs,
    downtimeMs: r.switchover === null ? r.downtimeSeenMs : r.switchover.resumedAt - r.switchover.pausedAt,
    downtimeBreakdown: r.switchover === null ? r.destinationDowntime : downtimeBreakdown(r.switchover),
    pausedAtEpochMs: r.switchover === null ? null : performance.timeOrigin + r.switchover.pausedAt,
    resumedAtEpochMs: r.resumedAt === null ? null : performance.timeOrigin + r.resumedAt,
    setupTimeMs: r.setupTimeMs, guestBytes: r.guestBytes, bytesTransferred: r.bytesTransferred, pagesTransferred: r.pagesTransferred,
    pagesByEncoding: { ...r.pagesByEncoding }, iterations: r.iterations, receivedPasses: r.receivedPasses, converged: r.converged,
    switchoverReason: r.switchoverReason, predictedDowntimeMs: r.predictedDowntimeMs, throttlePercent: r.throttlePercent,
    guestSteps: r.guestSteps, digest: hex64(r.digest),
    throughputBytesPerSec: totalTimeMs > 0 ? (r.bytesTransferred * 1000) / totalTimeMs : 0,
    postcopy: r.postcopy, recoveries: r.recoveries, prealloc: r.prealloc, contentDigest: null,
    cpuMs: { user: cpu.user / 1000, system: cpu.system / 1000 },
    peakRssBytes: peakRssBytes(),
    completedAtMs: r.completedAt === null ? null : r.completedAt - r.startedAt,
    guestStepsPerSec: {
      beforeMigration: r.stepRateBefore,
      perPass: r.iterations.flatMap((it) => (it.guestStepsPerSec === null ? [] : [it.guestStepsPerSec])),
      afterResume: r.stepRateAfterResume,
    },
  };
}

/** The outcome a failure error stands for when the run did not reach a more specific end. */
export function failureOutcome(error: MemshiftError): Outcome {
  return error.code === ErrorCode.CANCELLED ? 'cancelled' : 'failed';
}

export function hex64(v: bigint): string {
  return v.toString(16).padStart(16, '0');
}

const f1 = (n: number | null): string => (n === null ? '—' : n.toFixed(1));
const gb = (bytes: number): string => (bytes / 1e9).toFixed(3);
const f0 = (n: number | null): string => (n === null ? '—' : n.toFixed(0));
/** An ETA in seconds; ∞ when there is no finite estimate. */
const etaCell = (ms: number | null): string => (ms === null ? '∞' : (ms / 1000).toFixed(2));

/** A readable summary of a report (the demo and the CLI print it). */
export function formatReport(r: Report): string {
  const lines: string[] = [];
  lines.push(`${r.role} ${r.mode} migration: ${r.outcome}${r.error ? ` (${r.error.code}: ${r.error.message})` : ''}`);
  lines.push(`  total ${f1(r.totalTimeMs)} ms, setup ${f1(r.setupTimeMs)} ms, downtime ${f1(r.downtimeMs)} ms (predicted ${f1(r.predictedDowntimeMs)} ms)`);
  lines.push(`  ${gb(r.bytesTransferred)} GB in ${r.pagesTransferred} pages, ${(r.throughputBytesPerSec / 1e9).toFixed(2)} GB/s; zero ${r.pagesByEncoding.zero}, raw ${r.pagesByEncoding.raw}, xbzrle ${r.pagesByEncoding.xbzrle}, lz4 ${r.pagesByEncoding.lz4}`);
  if (r.iterations.length > 0) {
    lines.push('  iter      pages        MB       ms    GB/s  dirty pages   dirty/s  exp.downtime  throttle     eta s   steps/s');
    for (const it of r.iterations) {
      lines.push(`  ${String(it.iteration).padStart(4)} ${String(it.pages).padStart(10)} ${(it.bytes / 1e6).toFixed(1).padStart(9)} ${it.ms.toFixed(1).padStart(8)} ${(it.bandwidthBytesPerSec / 1e9).toFixed(2).padStart(7)} ${String(it.dirtyPages).padStart(12)} ${it.dirtyPagesPerSec.toFixed(0).padStart(9)} ${(Number.isFinite(it.expectedDowntimeMs) ? it.expectedDowntimeMs.toFixed(1) : '∞').padStart(13)} ${String(it.throttlePercent).padStart(8)}% ${etaCell(it.etaMs).padStart(9)} ${(it.guestStepsPerSec === null ? '—' : it.guestStepsPerSec.toFixed(0)).padStart(9)}`);
    }
  }  if (r.receivedPasses.length > 0) {
    lines.push('  pass received      pages        MB       ms    GB/s  apply ms');
    for (const p of r.receivedPasses) {
      lines.push(`  ${String(p.iteration).padStart(4)}          ${String(p.pages).padStart(10)} ${(p.bytes / 1e6).toFixed(1).padStart(9)} ${p.ms.toFixed(1).padStart(8)} ${(p.ms > 0 ? p.bytes / p.ms / 1e6 : 0).toFixed(2).padStart(7)} ${p.applyMs.toFixed(1).padStart(9)}`);
    }
  }

  if (r.switchoverReason) {
    lines.push(`  switchover: ${r.switchoverReason.action} by rule ${r.switchoverReason.rule}${r.switchoverReason.forced ? ' (forced)' : ''}: ${r.switchoverReason.reason}`);
  }
  if (r.downtimeBreakdown) {
    const b = r.downtimeBreakdown;
    lines.push(`  downtime: pause ${f1(b.pauseMs)} + final pages ${f1(b.finalPagesMs)} (${b.finalPages} pages) + device state ${f1(b.deviceStateMs)} + apply ${f1(b.destinationApplyMs)} + digest ${f1(b.digestCheckMs)} + resume ${f1(b.resumeMs)} + other ${f1(b.otherMs)} ms`);
  }
  if (r.hypervisor !== undefined) {
    const h = r.hypervisor;
    lines.push(`  ${h.kind === 'qemu' ? 'QEMU' : h.kind}: stop → resume ${f1(h.stopToResumeMs)} ms by its own clocks (device state ${h.deviceStateBytes} B, loaded in ${f1(h.deviceLoadMs)} ms)`);
  }
  if (r.postcopy) {
    const p = r.postcopy;
    lines.push(`  post-copy: ${p.faults} faults (latency p50 ${p.faultLatencyUs.p50.toFixed(0)} µs, p99 ${p.faultLatencyUs.p99.toFixed(0)} µs, max ${p.faultLatencyUs.max.toFixed(0)} µs), ${p.pagesRequested} pages requested, ${p.pagesPushed} pushed, ${f1(p.postcopyTimeMs)} ms to all present`);
  }
  for (const v of r.recoveries) {
    lines.push(`  recovered: link lost in ${v.phase} at ${f1(v.lostAtMs)} ms (${v.cause}); back after ${f1(v.pausedMs)} ms, ${v.attempts} attempt(s), ${v.missingPages} pages${v.blocksAgain !== undefined ? ` and ${v.blocksAgain} disk blocks` : ''} went again`);
  }
  if (r.prealloc?.enabled) lines.push(`  destination memory pre-touched in ${f1(r.prealloc.ms)} ms ${r.prealloc.beforeMigration ? 'before the migration began' : 'during setup, before receiving'}`);
  if (r.cpuMs !== null) {
    const cpu = r.cpuMs.user + r.cpuMs.system;
    lines.push(`  cpu ${cpu.toFixed(0)} ms (user ${r.cpuMs.user.toFixed(0)}, system ${r.cpuMs.system.toFixed(0)}): ${(r.bytesTransferred / 1e6 / Math.max(1, cpu)).toFixed(2)} GB per cpu-second`);
  }
  if (r.peakRssBytes !== null) lines.push(`  peak resident memory ${(r.peakRssBytes / 2 ** 20).toFixed(0)} MiB (guest memory included)`);
  const g = r.guestStepsPerSec;
  // Per pass: the iteration table's steps/s column (a summary would mix running and paused passes).
  if (g.beforeMigration !== null || g.afterResume !== null) {
    lines.push(`  guest steps/s: before ${f0(g.beforeMigration)}, after resume ${f0(g.afterResume)}`);
  }
  lines.push(`  session ${r.sessionId ?? '(none)'}, ${r.startedAt} → ${r.endedAt}`);
  lines.push(`  guest steps ${r.guestSteps}, digest ${r.digest}, throttle ${r.throttlePercent} %`);
  return lines.join('\n');
}

/** p-th percentile (0..100) of `values` (nearest rank); 0 for none. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  // p·n/100 rather than (p/100)·n: the latter can land just above an integer (28/100·25 = 7.000…01).
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p * sorted.length) / 100) - 1));
  return sorted[rank];
}

/** The process's resident-memory high-water mark in bytes (maxRSS is in KiB), or null when unknown. */
function peakRssBytes(): number | null {
  const kib = process.resourceUsage().maxRSS;
  return kib > 0 ? kib * 1024 : null;
}
