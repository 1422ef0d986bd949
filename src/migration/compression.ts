// What pays on this link, decided by the source from what it measures: LZ4 on raw pages
// (--compress auto) and XBZRLE deltas for pages sent before (--xbzrle auto). Each costs CPU and saves
// wire bytes: it pays when the link, not the CPU, limits the pass. With B the link's rate (wire
// bytes/s), C what the CPU encodes (page bytes/s) and r the share of a page's bytes left on the wire:
//
//   raw pages move at B page-bytes/s;  encoded pages at min(C, B / r)  →  on when that is ≥ GAIN × B
//
// LZ4: C is the encoders' rate together and r is sampled from the guest at the start. XBZRLE: C is one
// thread's rate through the delta path (the destination decodes every delta on one thread, at about the
// encoder's rate) and r the deltas' share, both measured at the start on guest pages with a few words
// changed (xbzrle-sample.ts). On loopback (B ≈ 1.5–4 GB/s against C ≈ 1–2 GB/s) deltas made a 200k
// pages/s writer's downtime half again as long; on a link of about 1 GB/s or slower they pay.
//
// The link's rate is measured on raw passes, over the pass's time less what the source's main thread
// spent encoding when it encodes inline (the socket was given nothing then; pass.ts); not under LZ4,
// whose wire rate is the compressed rate, which understates the link when the compressor limits. So a
// decision to compress holds until a raw measurement says otherwise: it is re-made at each pass start
// from the best link rate seen. Deltas may be switched off at a pass start but never on again: a page
// sent raw meanwhile leaves its cache slot behind the destination's copy, and a delta against it would
// not apply.

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
export type Lz4Sample = EncodingSample;
export type XbzrleSample = EncodingSample;

/** Page bytes per second an encoding moves over a link of `linkBytesPerSecond`: its own rate, or the link over its share. */
function encodedRate(sample: EncodingSample, linkBytesPerSecond: number): number {
  return Math.min(sample.bytesPerSecond, linkBytesPerSecond / Math.max(sample.ratio, 1e-3));
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

/** The decision for a link measured at `linkBytesPerSecond` (0: not measured yet). */
export function decideXbzrle(mode: DeltaMode, sample: XbzrleSample | null, linkBytesPerSecond: number): DeltaDecision {
  if (mode === 'off') return { xbzrle: false, xbzrleReason: 'XBZRLE off (--xbzrle off)' };
  if (mode === 'on') return { xbzrle: true, xbzrleReason: 'XBZRLE on for every page sent before (--xbzrle on)' };
  if (sample === null || sample.pages === 0) return { xbzrle: true, xbzrleReason: 'XBZRLE on: no sample of the guest to judge deltas by' };
  if (linkBytesPerSecond <= 0) return { xbzrle: true, xbzrleReason: 'XBZRLE on: link not measured yet' };
  const withDeltas = encodedRate(sample, linkBytesPerSecond);
  const figures = `link ${mbs(linkBytesPerSecond)}, deltas ${mbs(sample.bytesPerSecond)} on one thread (the destination decodes on one) at ${(sample.ratio * 100).toFixed(0)} % of the bytes: pages sent before would move at ${mbs(withDeltas)} as deltas against ${mbs(linkBytesPerSecond)} raw`;
  return withDeltas >= XBZRLE_GAIN * linkBytesPerSecond
    ? { xbzrle: true, xbzrleReason: `XBZRLE on: ${figures}` }
    : { xbzrle: false, xbzrleReason: `XBZRLE off: ${figures}` };
}

/** The decision for a link measured at `linkBytesPerSecond` (0: not measured yet). */
export function decideCompression(mode: CompressMode, sample: Lz4Sample | null, linkBytesPerSecond: number): CompressionDecision {
  if (mode === 'none') return { lz4: false, reason: 'compression off (--compress none)' };
  if (mode === 'lz4') return { lz4: true, reason: 'LZ4 on every raw page (--compress lz4)' };
  if (sample === null || sample.pages === 0) return { lz4: false, reason: 'no sample of the guest to judge LZ4 by' };
  if (linkBytesPerSecond <= 0) return { lz4: false, reason: 'link not measured yet' };
  const withLz4 = encodedRate(sample, linkBytesPerSecond);
  const figures = `link ${mbs(linkBytesPerSecond)}, LZ4 ${mbs(sample.bytesPerSecond)} at ${(sample.ratio * 100).toFixed(0)} % of the bytes: pages would move at ${mbs(withLz4)} compressed against ${mbs(linkBytesPerSecond)} raw`;
  return withLz4 >= LZ4_GAIN * linkBytesPerSecond
    ? { lz4: true, reason: `LZ4 on: ${figures}` }
    : { lz4: false, reason: `LZ4 off: ${figures}` };
}

/** A raw pass judges LZ4 once it has run this long and sent this much (a rate worth trusting). */
export const MID_PASS_MS = 150;
export const MID_PASS_BYTES = 2 ** 20;

/**
 * The source's compression over a migration: the decision now, and the link rate it rests on, kept
 * from what each pass measured. The pass reports what it sends; this decides.
 *
 *   passStarting ─► sent (each batch; a raw pass may switch LZ4 on once) ─► passEnded (link rate kept)
 */
export class Compression implements CompressionDecision, DeltaDecision {
  lz4: boolean;
  reason: string;
  xbzrle: boolean;
  xbzrleReason: string;
  private linkRate = 0;
  private rawThroughout = true;
  private judgedMidPass = false;

  constructor(
    readonly mode: CompressMode, private readonly sample: Lz4Sample | null,
    readonly deltas: { mode: DeltaMode; sample: XbzrleSample | null } = { mode: 'on', sample: null },
  ) {
    ({ lz4: this.lz4, reason: this.reason } = decideCompression(mode, sample, 0));
    ({ xbzrle: this.xbzrle, xbzrleReason: this.xbzrleReason } = decideXbzrle(deltas.mode, deltas.sample, 0));
  }

  /**
   * A pass starts: auto re-decides on the link rate measured so far (deltas only ever go off).
   * `resending`: the pass may send pages as deltas (it is not the first); returns whether it does.
   */
  passStarting(resending = false): boolean {
    if (this.mode === 'auto') this.decide();
    if (this.deltas.mode === 'auto' && this.xbzrle && resending) ({ xbzrle: this.xbzrle, xbzrleReason: this.xbzrleReason } = decideXbzrle('auto', this.deltas.sample, this.linkRate));
    const deltas = resending && this.xbzrle;
    // A pass of deltas, like one under LZ4, only bounds the link from below.
    this.rawThroughout = !this.lz4 && !deltas;
    this.judgedMidPass = false;
    return deltas;
  }

  /** `bytes` sent so far in `ms` of this pass: once a raw pass has measured the link (the first pass is the big one), LZ4 may start mid-pass. */
  sent(bytes: number, ms: number): void {
    if (this.mode !== 'auto' || !this.rawThroughout || this.judgedMidPass || ms < MID_PASS_MS || bytes < MID_PASS_BYTES) return;
    this.judgedMidPass = true;
    this.linkRate = (bytes * 1000) / ms;
    this.decide();
    if (this.lz4) this.rawThroughout = false;
  }

  /**
   * The pass sent `bytes` in `ms`. A raw pass measured the link itself; under LZ4 or deltas the wire
   * rate only bounds it from below. A small pass measures latency more than the link: it leaves the
   * last good measurement alone.
   */
  passEnded(bytes: number, ms: number): void {
    const wireRate = ms > 0 ? (bytes * 1000) / ms : 0;
    const measured = ms >= MID_PASS_MS || bytes >= MID_PASS_BYTES;
    if (this.rawThroughout && !this.judgedMidPass && measured) this.linkRate = wireRate;
    else if (!this.rawThroughout) this.linkRate = Math.max(this.linkRate, wireRate);
  }

  private decide(): void {
    ({ lz4: this.lz4, reason: this.reason } = decideCompression(this.mode, this.sample, this.linkRate));
  }
}
