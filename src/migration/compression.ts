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
