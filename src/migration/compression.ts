// Whether LZ4 pays on this link, decided by the source from what it measures (--compress auto).
// LZ4 costs encoder time and saves wire bytes: it pays when the link, not the compressor, limits the
// pass. With B the link's rate (wire bytes/s), C the encoders' LZ4 rate (page bytes/s they compress)
// and r the compressed share of a page's bytes (sampled from the guest at the start):
//
//   raw pages move at B page-bytes/s;  LZ4 pages at min(C, B / r)  →  LZ4 on when that is ≥ GAIN × B
//
// The link's rate is measured on raw passes (with LZ4 on, the wire rate is the compressed rate, which
// understates the link when the compressor limits), so a decision to compress holds until a raw
// measurement says otherwise: it is re-made at each pass start from the best link rate seen.

/** LZ4 must move pages at least this much faster than raw to be switched on (hysteresis against noise). */
export const LZ4_GAIN = 1.25;

export type CompressMode = 'none' | 'lz4' | 'auto';
export const COMPRESS_MODES: readonly CompressMode[] = ['none', 'lz4', 'auto'];

export interface Lz4Sample {
  /** Page bytes per second the encoders compress together. */
  bytesPerSecond: number;
  /** Compressed bytes over page bytes, over the sampled pages (1 when none compressed). */
  ratio: number;
  pages: number;
}

export interface CompressionDecision {
  lz4: boolean;
  reason: string;
}

const mbs = (bytesPerSecond: number): string => `${(bytesPerSecond / 1e6).toFixed(0)} MB/s`;

/** The decision for a link measured at `linkBytesPerSecond` (0: not measured yet). */
export function decideCompression(mode: CompressMode, sample: Lz4Sample | null, linkBytesPerSecond: number): CompressionDecision {
  if (mode === 'none') return { lz4: false, reason: 'compression off (--compress none)' };
  if (mode === 'lz4') return { lz4: true, reason: 'LZ4 on every raw page (--compress lz4)' };
  if (sample === null || sample.pages === 0) return { lz4: false, reason: 'no sample of the guest to judge LZ4 by' };
  if (linkBytesPerSecond <= 0) return { lz4: false, reason: 'link not measured yet' };
  const withLz4 = Math.min(sample.bytesPerSecond, linkBytesPerSecond / Math.max(sample.ratio, 1e-3));
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
export class Compression implements CompressionDecision {
  lz4: boolean;
  reason: string;
  private linkRate = 0;
  private rawThroughout = true;
  private judgedMidPass = false;

  constructor(readonly mode: CompressMode, private readonly sample: Lz4Sample | null) {
    ({ lz4: this.lz4, reason: this.reason } = decideCompression(mode, sample, 0));
  }

  /** A pass starts: auto re-decides on the link rate measured so far. */
  passStarting(): void {
    if (this.mode === 'auto') this.decide();
    this.rawThroughout = !this.lz4;
    this.judgedMidPass = false;
  }

  /** `bytes` sent so far in `ms` of this pass: once a raw pass has measured the link (the first pass is the big one), LZ4 may start mid-pass. */
  sent(bytes: number, ms: number): void {
    if (this.mode !== 'auto' || this.lz4 || this.judgedMidPass || ms < MID_PASS_MS || bytes < MID_PASS_BYTES) return;
    this.judgedMidPass = true;
    this.linkRate = (bytes * 1000) / ms;
    this.decide();
    if (this.lz4) this.rawThroughout = false;
  }

  /**
   * The pass sent `bytes` in `ms`. A raw pass measured the link itself; under LZ4 the wire rate only
   * bounds it from below. A small pass measures latency more than the link: it leaves the last good
   * measurement alone.
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
