// What pays on this link, decided by the source from what it measures: LZ4 on raw pages
// (--compress auto) and XBZRLE deltas for pages sent before (--xbzrle auto). Each costs CPU and saves
// wire bytes: it pays when the link, not the CPU, limits the pass. With B the link's rate (wire
// bytes/s), C what the CPU encodes (page bytes/s) and r the share of a page's bytes left on the wire:
//
//   raw pages move at B page-bytes/s;  encoded pages at min(C, B / r)  →  on when that is ≥ GAIN × B
//   (one thread compressing and sending in turn, as with inline encoders: at 1 / (1/C + r/B))
//
// LZ4: C is the encoders' rate together and r is sampled from the guest at the start. XBZRLE: C is one
// thread's rate through the delta path (the destination decodes every delta on one thread, at about the
// encoder's rate) and r the deltas' share, both measured at the start on guest pages with a few words
// changed (xbzrle-sample.ts), and C counts only the share of a core the raw pages left idle (host-cpu.ts):
// with the cores busy, the link's rate is what the CPU let through, and deltas would take more of it.
// On loopback (B ≈ 1.5–4 GB/s against C ≈ 1–2 GB/s) deltas made a 200k pages/s writer's downtime half
// again as long; on a link of about 1 GB/s or slower, with cores to spare, they pay.
//
// The link's rate is measured on raw stretches of a pass, over their time less what the source's main
// thread spent encoding when it encodes inline (the socket was given nothing then; pass.ts). A stretch
// under LZ4 measures what LZ4 really moves: page bytes carried per wall-clock second (compressing
// inline is LZ4's own cost). The sample cannot foresee that: the destination decodes every LZ4 page on
// its main thread, and where the cores are busy (a running vCPU, TLS, a destination faulting its memory
// in) the pass is bound by CPU, not by the link, and LZ4 only adds to it. The decision takes the lower
// of the sample's prediction and that measurement, so LZ4 turned on by a prediction goes off again
// within the pass when it does not deliver (the demo over TLS took 11 s with LZ4 held on, 6.5 s
// once it went off). A stretch is a run of batches that went out one way, measured whole every
// MID_PASS_MS once it holds MID_PASS_BYTES; the first MID_PASS_MS of a pass's first stretch (the
// pipeline fills) and of a stretch after a switch (the socket's buffers drain the other kind) are
// not. A pass of deltas only bounds the link from below (its wire rate is small by design). Deltas
// may be switched off at a pass start but never on again: a page sent raw meanwhile leaves its cache
// slot behind the destination's copy, and a delta against it would not apply.

import { idleCores, type CpuTimes, type HostCpuClock } from './host-cpu.js';

/** LZ4 must move pages at least this much faster than raw to be switched on (hysteresis against noise). */
export const LZ4_GAIN = 1.25;

const mbs = (bytesPerSecond: number): string => `${(bytesPerSecond / 1e6).toFixed(0)} MB/s`;

export type CompressMode = 'none' | 'lz4' | 'auto';
export const COMPRESS_MODES: readonly CompressMode[] = ['none', 'lz4', 'auto'];

/** What an encoding does to a sample of the guest's pages (lz4-sample.ts, xbzrle-sample.ts). */
export interface EncodingSample {
  /** Page bytes per second encoded: the encoders together for LZ4, one thread for XBZRLE. */
  bytesPerSecond: number;
  /** Wire bytes over page bytes, over the sampled pages (a page the encoding does not keep counts whole). */
  ratio: number;
  pages: number;
}
export interface Lz4Sample extends EncodingSample {
  /** The thread that sends compresses too (inline encoding): compressing and sending take turns. */
  serial?: boolean;
}
export type XbzrleSample = EncodingSample;

/**
 * Page bytes per second an encoding moves over a link of `linkBytesPerSecond`: its own rate, or the
 * link over its share, whichever is less; where one thread both encodes and sends, a page costs the
 * two times one after the other.
 */
function encodedRate(sample: Lz4Sample, linkBytesPerSecond: number): number {
  const ratio = Math.max(sample.ratio, 1e-3);
  if (sample.serial === true) return 1 / (1 / sample.bytesPerSecond + ratio / linkBytesPerSecond);
  return Math.min(sample.bytesPerSecond, linkBytesPerSecond / ratio);
}

export interface CompressionDecision {
  lz4: boolean;
  reason: string;
}

/** XBZRLE must move a page sent before at least this much faster than raw to be used. */
export const XBZRLE_GAIN = 1.25;

export type DeltaMode = 'on' | 'off' | 'auto';
export const DELTA_MODES: readonly DeltaMode[] = ['auto', 'on', 'off'];

export interface DeltaDecision {
  xbzrle: boolean;
  xbzrleReason: string;
}

/** What a pass about to start resends, against what the caches hold (one page per slot). */
export interface Resend {
  pages: number;
  cacheSlots: number;
}

/** Whether the caches can hold what a pass resends (one page per slot). */
export function resendFits(resend: Resend): boolean {
  return resend.pages <= resend.cacheSlots;
}

/**
 * The decision for a link measured at `linkBytesPerSecond` (0: not measured yet), for a pass that
 * resends `resend` (when known), with `spareCores` of the host's cores idle while the link was
 * measured (null: not known). More pages than the caches have slots cannot all be in them (a slot
 * holds one page, page mod slots): a pass that large mostly misses, pays for storing what it sends,
 * and evicts what the next pass would have hit (a 256 MiB sweep resent 48k pages into 16k slots and
 * sent no delta in any pass).
 *
 * The delta path's thread runs on what the raw pages left idle: at most the sample's rate times the
 * spare cores (up to one). Where the cores were nearly all busy, the link's rate is a floor the CPU
 * set (on loopback a hot-set guest's pass 1 read 1–1.7 GB/s with 0.2–0.4 of 2 cores idle, its raw
 * pass 2 2–3 GB/s); judged against the sample alone deltas came on, and the passes that sent them
 * moved 1.2 GB/s of pages where raw ones moved 1.5–2.2.
 */
export function decideXbzrle(mode: DeltaMode, sample: XbzrleSample | null, linkBytesPerSecond: number, resend?: Resend, spareCores: number | null = null): DeltaDecision {
  if (mode === 'off') return { xbzrle: false, xbzrleReason: 'XBZRLE off (--xbzrle off)' };
  if (mode === 'on') return { xbzrle: true, xbzrleReason: 'XBZRLE on for every page sent before (--xbzrle on)' };
  if (resend !== undefined && !resendFits(resend)) {
    return { xbzrle: false, xbzrleReason: `XBZRLE off: ${resend.pages} pages to resend and the cache holds ${resend.cacheSlots}: most would miss` };
  }
  if (sample === null || sample.pages === 0) return { xbzrle: true, xbzrleReason: 'XBZRLE on: no sample of the guest to judge deltas by' };
  if (linkBytesPerSecond <= 0) return { xbzrle: true, xbzrleReason: 'XBZRLE on: link not measured yet' };
  const deltaCpu = spareCores === null ? sample.bytesPerSecond : sample.bytesPerSecond * Math.min(1, spareCores);
  const withDeltas = encodedRate({ ...sample, bytesPerSecond: deltaCpu }, linkBytesPerSecond);
  const spare = spareCores === null ? '' : ` with ${spareCores.toFixed(1)} cores idle`;
  const figures = `link ${mbs(linkBytesPerSecond)}${spare}, deltas ${mbs(sample.bytesPerSecond)} on one thread (the destination decodes on one) at ${(sample.ratio * 100).toFixed(0)} % of the bytes: pages sent before would move at ${mbs(withDeltas)} as deltas against ${mbs(linkBytesPerSecond)} raw`;
  return withDeltas >= XBZRLE_GAIN * linkBytesPerSecond
    ? { xbzrle: true, xbzrleReason: `XBZRLE on: ${figures}` }
    : { xbzrle: false, xbzrleReason: `XBZRLE off: ${figures}` };
}

/**
 * The decision for a link measured at `linkBytesPerSecond` (0: not measured yet); `lz4Measured`: the
 * page bytes per second LZ4 moved when last measured on this migration (null: not yet).
 */
export function decideCompression(mode: CompressMode, sample: Lz4Sample | null, linkBytesPerSecond: number, lz4Measured: number | null = null): CompressionDecision {
  if (mode === 'none') return { lz4: false, reason: 'compression off (--compress none)' };
  if (mode === 'lz4') return { lz4: true, reason: 'LZ4 on every raw page (--compress lz4)' };
  if (sample === null || sample.pages === 0) return { lz4: false, reason: 'no sample of the guest to judge LZ4 by' };
  if (linkBytesPerSecond <= 0) return { lz4: false, reason: 'link not measured yet' };
  const predicted = encodedRate(sample, linkBytesPerSecond);
  const withLz4 = lz4Measured === null ? predicted : Math.min(predicted, lz4Measured);
  const measured = lz4Measured === null ? '' : `, measured moving pages at ${mbs(lz4Measured)}`;
  const figures = `link ${mbs(linkBytesPerSecond)}, LZ4 ${mbs(sample.bytesPerSecond)}${sample.serial === true ? ' on the sending thread' : ''} at ${(sample.ratio * 100).toFixed(0)} % of the bytes${measured}: pages would move at ${mbs(withLz4)} compressed against ${mbs(linkBytesPerSecond)} raw`;
  return withLz4 >= LZ4_GAIN * linkBytesPerSecond
    ? { lz4: true, reason: `LZ4 on: ${figures}` }
    : { lz4: false, reason: `LZ4 off: ${figures}` };
}

/** A window of a pass is measured once it has run this long and sent this much (a rate worth trusting). */
export const MID_PASS_MS = 150;
export const MID_PASS_BYTES = 2 ** 20;

/** What one batch put on the wire: the pass reports each as it goes. */
export interface BatchSent {
  wireBytes: number;
  /** Bytes of the pages it carried with content (zero pages cost the link nothing). */
  pageBytes: number;
  /** Whether it was encoded with LZ4 on: what the batch was, whatever the decision is by the time it goes out. */
  lz4: boolean;
}

/**
 * A stretch of a pass whose batches went out one way, raw or LZ4. It is measured as a whole each time
 * it has grown by MID_PASS_MS: a rate over the whole stretch, not over its last slice, which on a
 * shaped link swings 2× either way as the socket's buffers drain in bursts.
 */
interface Window {
  lz4: boolean;
  fromMs: number;
  fromEncodingMs: number;
  wireBytes: number;
  pageBytes: number;
  /** False while the stretch warms up: a pass's first (the pipeline fills), one after a switch (the buffers drain the other kind). */
  measured: boolean;
  judgedAtMs: number;
  /** The host's core times where the stretch started (null: not read). */
  fromCpu: CpuTimes | null;
}

/**
 * The source's compression over a migration: the decision now, and the rates it rests on, kept from
 * what each pass measured. The pass reports what it sends; this decides.
 *
 *   passStarting ─► sent (each batch; each window measured may switch LZ4) ─► passEnded
 *
 * Windows are measured whatever the modes: the caches' touch starts mid-pass on what they measure
 * (deltasExpected). A window holds batches of one kind. Batches are encoded ahead of the socket, so
 * after a switch the old kind keeps going out for a while; the first batch of the other kind starts a
 * new window, with a warm-up.
 */
export class Compression implements CompressionDecision, DeltaDecision {
  lz4: boolean;
  reason: string;
  xbzrle: boolean;
  xbzrleReason: string;
  /** Wire bytes per second raw pages moved: the link, or whatever else limited them. */
  private linkRate = 0;
  /** Page bytes per second LZ4 moved when last measured. */
  private lz4Rate: number | null = null;
  /** The host's cores left idle while raw pages last measured the link (null: not known). */
  private spareCores: number | null = null;
  private passCpu: CpuTimes | null = null;
  private deltasThisPass = false;
  private windowsMeasured = 0;
  /** Kinds of batch with content this pass sent: a pass of one kind is measured whole when no window was. */
  private kinds = { raw: false, lz4: false };
  private window: Window = { lz4: false, fromMs: 0, fromEncodingMs: 0, wireBytes: 0, pageBytes: 0, measured: false, judgedAtMs: 0, fromCpu: null };
  private last = { ms: 0, encodingMs: 0 };

  /**
   * `linkCap`: bytes per second the migration may send (--max-bandwidth), or Infinity. No measurement
   * reads the link above it: under a cap the inline encoder works while the limiter paces the socket,
   * and leaving its time out of the link's (right where the socket waits for it) read a 16 MiB/s cap
   * as a 37 MB/s link. `hostCpu`: the host's core times (host-cpu.ts), read as stretches start and end.
   */
  constructor(
    readonly mode: CompressMode, private readonly sample: Lz4Sample | null,
    readonly deltas: { mode: DeltaMode; sample: XbzrleSample | null } = { mode: 'on', sample: null },
    private readonly linkCap = Number.POSITIVE_INFINITY,
    private readonly hostCpu: HostCpuClock | null = null,
  ) {
    ({ lz4: this.lz4, reason: this.reason } = decideCompression(mode, sample, 0));
    ({ xbzrle: this.xbzrle, xbzrleReason: this.xbzrleReason } = decideXbzrle(deltas.mode, deltas.sample, 0));
  }

  /**
   * A pass starts: auto re-decides on what was measured so far (deltas only ever go off).
   * `resending`: the pass may send pages as deltas (it is not the first), `resend` (when known) how
   * many against the caches' slots; returns whether it does.
   */
  passStarting(resending = false, resend?: Resend): boolean {
    if (this.mode === 'auto') this.decide();
    if (this.deltas.mode === 'auto' && this.xbzrle && resending) ({ xbzrle: this.xbzrle, xbzrleReason: this.xbzrleReason } = decideXbzrle('auto', this.deltas.sample, this.linkRate, resend, this.spareCores));
    this.deltasThisPass = resending && this.xbzrle;
    this.windowsMeasured = 0;
    this.kinds = { raw: false, lz4: false };
    this.passCpu = this.cpuNow();
    this.window = { lz4: this.lz4, fromMs: 0, fromEncodingMs: 0, wireBytes: 0, pageBytes: 0, measured: false, judgedAtMs: 0, fromCpu: this.passCpu };
    this.last = { ms: 0, encodingMs: 0 };
    return this.deltasThisPass;
  }

  /**
   * `batch` went out `ms` into the pass, `encodingMs` of which the sending thread spent encoding.
   * Each window measured re-decides LZ4 (auto, on a pass without deltas).
   */
  sent(batch: BatchSent, ms: number, encodingMs = 0): void {
    const content = batch.pageBytes > 0;
    if (content) this.kinds[batch.lz4 ? 'lz4' : 'raw'] = true;
    let w = this.window;
    if (content && batch.lz4 !== w.lz4) {
      // The other kind: a warm-up first, as at a pass's start. The socket's buffers still hold batches
      // of the kind before (over a 100 Mbit/s veth with 2 MiB batches, LZ4 measured at once read 9 MB/s
      // of pages during their drain, and went off again); then its window is measured whole.
      w = this.window = { lz4: batch.lz4, fromMs: this.last.ms, fromEncodingMs: this.last.encodingMs, wireBytes: 0, pageBytes: 0, measured: false, judgedAtMs: this.last.ms, fromCpu: null };
    }
    w.wireBytes += batch.wireBytes;
    w.pageBytes += batch.pageBytes;
    this.last = { ms, encodingMs };
    if (this.deltasThisPass || ms - w.judgedAtMs < MID_PASS_MS || w.wireBytes < MID_PASS_BYTES) return;
    if (!w.measured) {
      // The warm-up is over: the stretch to measure starts here.
      this.window = { lz4: w.lz4, fromMs: ms, fromEncodingMs: encodingMs, wireBytes: 0, pageBytes: 0, measured: true, judgedAtMs: ms, fromCpu: this.cpuNow() };
      return;
    }
    this.measured(w.lz4, w.wireBytes, w.pageBytes, ms - w.fromMs, encodingMs - w.fromEncodingMs, w.fromCpu);
    this.windowsMeasured++;
    w.judgedAtMs = ms;
    this.decide();
  }

  /**
   * The pass sent `wireBytes` carrying `pageBytes` in `ms` (`encodingMs` of it encoding). Where no
   * window of it was measured and its batches were of one kind, the pass as a whole is; a small pass
   * measures latency more than the link, and leaves the last good measurement alone. Deltas only
   * bound the link from below.
   */
  passEnded(wireBytes: number, pageBytes: number, ms: number, encodingMs = 0): void {
    if (this.deltasThisPass) {
      if (ms - encodingMs > 0) this.linkRate = Math.max(this.linkRate, Math.min(this.linkCap, (wireBytes * 1000) / (ms - encodingMs)));
      return;
    }
    if (this.windowsMeasured > 0 || (this.kinds.raw && this.kinds.lz4) || (ms < MID_PASS_MS && wireBytes < MID_PASS_BYTES)) return;
    // Batches not reported one by one (or none with content): the setting is what went out.
    const underLz4 = this.kinds.lz4 || (!this.kinds.raw && this.lz4);
    this.measured(underLz4, wireBytes, pageBytes, ms, encodingMs, this.passCpu);
  }

  /**
   * Whether a pass resending what fits the caches would send deltas on what is measured so far: not
   * under auto before the link is measured. What the caches' touch waits for (pass.ts).
   */
  deltasExpected(): boolean {
    if (!this.xbzrle || this.deltas.mode !== 'auto') return this.xbzrle;
    return this.linkRate > 0 && decideXbzrle('auto', this.deltas.sample, this.linkRate, undefined, this.spareCores).xbzrle;
  }

  /**
   * A stretch under one setting, from `fromCpu`: raw measures the link and the host's idle cores
   * meanwhile (a stretch too short to tell leaves the last reading); LZ4 what LZ4 moves, and the link
   * from below.
   */
  private measured(underLz4: boolean, wireBytes: number, pageBytes: number, ms: number, encodingMs: number, fromCpu: CpuTimes | null): void {
    const linkMs = ms - encodingMs;
    if (linkMs <= 0) return;
    const wireRate = Math.min(this.linkCap, (wireBytes * 1000) / linkMs);
    if (!underLz4) {
      this.linkRate = wireRate;
      const to = this.cpuNow();
      const idle = fromCpu === null || to === null ? null : idleCores(fromCpu, to);
      if (idle !== null) this.spareCores = idle;
      return;
    }
    this.lz4Rate = (pageBytes * 1000) / ms;
    this.linkRate = Math.max(this.linkRate, wireRate);
  }

  private cpuNow(): CpuTimes | null {
    return this.hostCpu === null ? null : this.hostCpu();
  }

  private decide(): void {
    ({ lz4: this.lz4, reason: this.reason } = decideCompression(this.mode, this.sample, this.linkRate, this.lz4Rate));
  }
}
